"""The daemon's side of the adaptor protocol's HTTP/1.x over a unix socket: reading
requests, sending answers, the peer's uid. Heads are parsed by :mod:`.httpwire`, which
also holds the frontends' blocking client."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from .httpwire import MAX_HEAD, ProtocolError, body_size, parse_head

__all__ = ["ProtocolError", "Request", "peer_uid", "read_request", "response_head", "send_response"]


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


async def _read_body(buffered: BufferedByteReceiveStream, headers: Mapping[str, str]) -> bytes:
    size = body_size(headers)
    return await buffered.receive_exactly(size) if size else b""


async def read_request(buffered: BufferedByteReceiveStream) -> Request:
    try:
        head = await buffered.receive_until(b"\r\n\r\n", MAX_HEAD)
    except anyio.DelimiterNotFound:
        raise ProtocolError("request head too large") from None
    first, headers = parse_head(head)
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
