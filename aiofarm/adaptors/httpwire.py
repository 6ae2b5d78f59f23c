"""HTTP/1.x over a unix socket as the adaptor protocol uses it: heads as bytes, and the
blocking client of a frontend.

Standard library only, and only its cheap modules (socket, json through the callers):
``daemon run`` starts once per task, so what it imports is paid per task. The daemon's
asynchronous server side (:mod:`.http`) shares the head parsing.

The official frontend and backend speak plain HTTP/1.0-style exchanges (one request per
connection, the server closes after answering); that is all either side here sends or
expects, plus one extension: a streamed answer of newline-separated heartbeat bodies
that lasts as long as the phase it follows.
"""

from __future__ import annotations

import socket

TYPE_CHECKING = False  # not typing's: importing typing is paid per task (mypy reads it as true)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
MAX_LINE = 256 * 1024 * 1024


class ProtocolError(Exception):
    """The peer did not speak the expected HTTP."""


def parse_head(raw: bytes) -> tuple[str, dict[str, str]]:
    """The first line and the headers (names lower-cased) of a request or response head."""
    lines = raw.decode("latin-1").split("\r\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise ProtocolError(f"bad header line {line[:80]!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], headers


def body_size(headers: Mapping[str, str]) -> int | None:
    length = headers.get("content-length")
    if length is None:
        return None
    try:
        size = int(length)
    except ValueError:
        raise ProtocolError("bad Content-Length") from None
    if size < 0 or size > MAX_BODY:
        raise ProtocolError("body too large")
    return size


def request_bytes(method: str, target: str, body: bytes | None, headers: Mapping[str, str] | None) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Accept-Encoding: identity"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


# -- the blocking client --------------------------------------------------------------


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


class Connection:
    """One request on a fresh connection, its answer read as it arrives. Closing it (or
    leaving its ``with`` block) drops the connection: an aiofarm daemon then cancels the
    phase the request followed."""

    def __init__(self, socket_path: str, timeout: float | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._buf = bytearray()
        self._eof = False
        try:
            self.sock.settimeout(timeout)
            self.sock.connect(socket_path)
        except BaseException:
            self.sock.close()
            raise

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.sock.close()

    def _fill(self) -> bool:
        if self._eof:
            return False
        data = self.sock.recv(65536)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def until(self, delimiter: bytes, limit: int) -> bytes | None:
        """Bytes up to ``delimiter`` (dropped), or None at the end of the stream."""
        start = 0
        while True:
            at = self._buf.find(delimiter, start)
            if at >= 0:
                out = bytes(self._buf[:at])
                del self._buf[: at + len(delimiter)]
                return out
            if len(self._buf) > limit:
                raise ProtocolError("line or head too large")
            start = max(0, len(self._buf) - len(delimiter) + 1)
            if not self._fill():
                return None

    def exactly(self, size: int) -> bytes:
        while len(self._buf) < size:
            if not self._fill():
                raise ProtocolError("the answer ended early")
        out = bytes(self._buf[:size])
        del self._buf[:size]
        return out

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        while self._fill():
            pass
        out = bytes(self._buf)
        self._buf.clear()
        return out

    def request(
        self, method: str, target: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
    ) -> Response:
        """Send the request and read the answer's head (``Response.body`` empty)."""
        self.sock.sendall(request_bytes(method, target, body, headers))
        head = self.until(b"\r\n\r\n", MAX_HEAD)
        if head is None:
            raise ProtocolError("the server closed the connection without answering")
        first, fields = parse_head(head)
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
            raise ProtocolError(f"bad status line {first[:80]!r}")
        return Response(int(parts[1]), fields, b"")

    def body(self, response: Response) -> bytes:
        size = body_size(response.headers)
        return self.rest() if size is None else self.exactly(size)

    def lines(self, response: Response) -> Iterator[bytes]:
        """The body's lines as they arrive (a streamed follow), until it ends."""
        if body_size(response.headers) is not None:
            yield from self.body(response).splitlines()
            return
        while True:
            line = self.until(b"\n", MAX_LINE)
            if line is None:
                return
            yield line


def call(
    socket_path: str,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    until_eof: bool = False,
    timeout: float | None = 30.0,
) -> Response:
    """One request on a fresh connection; the whole answer. ``until_eof`` then waits
    for the server to close the connection."""
    with Connection(socket_path, timeout) as conn:
        resp = conn.request(method, target, body, headers)
        resp.body = conn.body(resp)
        if until_eof:
            conn.rest()
        return resp
