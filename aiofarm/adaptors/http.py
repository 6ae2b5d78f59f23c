"""Just enough HTTP/1.x over a unix socket for the adaptor protocol, both ways.

The official frontend and backend speak plain HTTP/1.0-style exchanges (one request per
connection, the server closes after answering); that is all either side here sends or
expects, plus one extension: a streamed answer of newline-separated heartbeat bodies
that lasts as long as the phase it follows.
"""

from __future__ import annotations

import contextlib
import json
import socket
import struct
from collections.abc import AsyncIterator, Mapping
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

MAX_HEAD = 64 * 1024
MAX_BODY = 64 * 1024 * 1024
MAX_LINE = 256 * 1024 * 1024


class ProtocolError(Exception):
    """The peer did not speak the expected HTTP."""


class Request:
    __slots__ = ("body", "headers", "method", "path", "query")

    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body.decode("utf-8")) if self.body else {}


def _parse_head(raw: bytes) -> tuple[str, dict[str, str]]:
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


async def _read_body(buffered: BufferedByteReceiveStream, headers: Mapping[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is None:
        return b""
    try:
        size = int(length)
    except ValueError:
        raise ProtocolError("bad Content-Length") from None
    if size < 0 or size > MAX_BODY:
        raise ProtocolError("body too large")
    return await buffered.receive_exactly(size) if size else b""


async def read_request(buffered: BufferedByteReceiveStream) -> Request:
    try:
        head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD)
    except anyio.DelimiterNotFound:
        raise ProtocolError("request head too large") from None
    first, headers = _parse_head(head)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise ProtocolError(f"bad request line {first[:80]!r}")
    import urllib.parse  # the daemon's side only

    target = urllib.parse.urlsplit(parts[1])
    query = urllib.parse.parse_qs(target.query)
    body = await _read_body(buffered, headers)
    return Request(parts[0].upper(), target.path, query, headers, body)


def response_head(status: int, headers: Mapping[str, str] | None = None) -> bytes:
    reason = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {reason}", "Connection: close"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def send_response(
    stream: anyio.abc.ByteSendStream,
    status: int,
    body: bytes = b"",
    headers: Mapping[str, str] | None = None,
) -> None:
    all_headers = dict(headers or {})
    all_headers["Content-Length"] = str(len(body))
    if body and "Content-Type" not in all_headers:
        all_headers["Content-Type"] = "application/json" if body[:1] == b"{" else "text/plain"
    await stream.send(response_head(status, all_headers) + body)


def peer_uid(stream: anyio.abc.SocketStream) -> int | None:
    """The uid of the process at the other end of a unix socket (Linux SO_PEERCRED)."""
    sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:  # pragma: no cover - not Linux
        return None
    raw = sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i"))
    _pid, uid, _gid = struct.unpack("3i", raw)
    return int(uid)


# -- client -------------------------------------------------------------------------


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body


def _request_bytes(
    method: str,
    target: str,
    body: bytes | None,
    headers: Mapping[str, str] | None,
) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", "Host: localhost", "Accept-Encoding: identity"]
    for name, value in (headers or {}).items():
        lines.append(f"{name}: {value}")
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


async def _read_response_head(buffered: BufferedByteReceiveStream) -> tuple[int, dict[str, str]]:
    try:
        head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD)
    except anyio.DelimiterNotFound:
        raise ProtocolError("response head too large") from None
    first, headers = _parse_head(head)
    parts = first.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/"):
        raise ProtocolError(f"bad status line {first[:80]!r}")
    return int(parts[1]), headers


async def _read_to_eof(buffered: BufferedByteReceiveStream) -> bytes:
    chunks = [bytes(buffered.buffer)]
    with contextlib.suppress(anyio.EndOfStream, anyio.IncompleteRead):
        while True:
            chunks.append(await buffered.receive())
    return b"".join(chunks)


async def call(
    socket_path: str,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    until_eof: bool = False,
) -> Response:
    """One request on a fresh connection; the whole answer. ``until_eof`` then waits
    for the server to close the connection."""
    async with await anyio.connect_unix(socket_path) as stream:
        await stream.send(_request_bytes(method, target, body, headers))
        buffered = BufferedByteReceiveStream(stream)
        status, head = await _read_response_head(buffered)
        if "content-length" in head:
            data = await _read_body(buffered, head)
        else:
            data = await _read_to_eof(buffered)
        if until_eof:
            await _read_to_eof(buffered)
        return Response(status, head, data)


@contextlib.asynccontextmanager
async def stream_lines(
    socket_path: str,
    method: str,
    target: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Response, AsyncIterator[bytes]]]:
    """A request whose answer may be a stream of lines; yields the status/headers (body
    empty) and an iterator of the body's lines. Leaving the block drops the connection."""
    async with await anyio.connect_unix(socket_path) as stream:
        await stream.send(_request_bytes(method, target, body, headers))
        buffered = BufferedByteReceiveStream(stream)
        status, head = await _read_response_head(buffered)

        async def lines() -> AsyncIterator[bytes]:
            if "content-length" in head:
                data = await _read_body(buffered, head)
                for line in data.splitlines():
                    yield line
                return
            while True:
                try:
                    yield await buffered.receive_until(b"\n", MAX_LINE)
                except (anyio.IncompleteRead, anyio.EndOfStream):
                    return

        yield Response(status, head, b""), lines()
