"""A real TCP proxy of the project's own that injects faults into HTTP/1.1 traffic.

It sits between a client and a back end (the Deadline fake, slurmrestd, the Ray
dashboard), reads each request, and decides one fault per request from a seeded RNG:

- ``"503"`` / ``"500"``: answered at once with that status, never forwarded;
- ``"429"``: answered with a throttling reply (``Retry-After: 0``; the body carries
  AWS's ``ThrottlingException`` so botocore classifies it as throttling);
- ``"reset_before"``: the client's connection is reset before the request is forwarded;
- ``"reset_after"``: the request reaches the back end and is answered there, then the
  client's connection is reset before the answer reaches it (the reply is lost);
- ``"slow"``: forwarded, and the answer is held for ``slow_seconds``;
- ``None``: forwarded untouched.

Each request goes to the back end on a fresh connection with ``Connection: close``,
and the answer is relayed whole, then the client connection is closed (clients
reconnect; keep-alive is not what is tested). WebSocket upgrades are spliced
through both ways (only a ``target``ed ``reset_before`` refuses one); ``drop_streams()``
cuts every spliced connection at once (a forced disconnect during a log follow), and
``drop_all()`` every connection, in-flight requests and long polls too. ``counts``
tallies requests, faults, drops and the ``body_bytes`` of the back end's answers.
``listen_path``/a path ``upstream``: the same on unix sockets.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import re
import socket
import struct
from collections.abc import Sequence

__all__ = ["FaultProxy"]

_THROTTLE_BODY = b'{"__type":"ThrottlingException","message":"Rate exceeded (fault proxy)"}'
_REASONS = {500: b"Internal Server Error", 503: b"Service Unavailable", 429: b"Too Many Requests"}


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a dropped connection looks to the peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


async def _read_head(reader: asyncio.StreamReader) -> bytes | None:
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
        return None


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, sep, value = line.partition(b":")
        if sep and key.strip().lower() == name:
            return value.strip()
    return None


async def _read_body(reader: asyncio.StreamReader, head: bytes) -> bytes:
    length = _header(head, b"content-length")
    if length is not None:
        return await reader.readexactly(int(length))
    if (_header(head, b"transfer-encoding") or b"").lower() == b"chunked":
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            out += size_line + chunk
            if size == 0:
                return bytes(out)
    return b""


async def _read_answer(reader: asyncio.StreamReader) -> bytes:
    """One whole answer: its head and the body its Content-Length (or chunking) frames,
    else everything up to EOF (we asked for ``Connection: close``). Bytes past the
    framed body are dropped (slurmrestd 22.05 sends a few). The head says
    ``Connection: close`` to the client too: we close after each answer, and a client
    must not keep the connection for another request."""
    head = await _read_head(reader)
    if head is None:
        raise ConnectionResetError("the back end closed without an answer")
    status = head.split(b" ", 2)[1] if head.count(b" ") >= 1 else b""
    if status in (b"204", b"304") or _header(head, b"content-length") is not None or (
        (_header(head, b"transfer-encoding") or b"").lower() == b"chunked"
    ):
        return _rewrite_connection(head) + await _read_body(reader, head)
    return _rewrite_connection(head) + await reader.read()


def _rewrite_connection(head: bytes) -> bytes:
    lines = [ln for ln in head[:-4].split(b"\r\n") if not ln.lower().startswith(b"connection:")]
    return b"\r\n".join([*lines, b"Connection: close"]) + b"\r\n\r\n"


class FaultProxy:
    def __init__(
        self,
        upstream: tuple[str, int] | str,
        *,
        listen_path: str | None = None,
        rate: float = 0.0,
        kinds: Sequence[str] = ("503", "429", "reset_before", "reset_after", "slow"),
        slow_seconds: float = 0.3,
        seed: int = 1,
    ) -> None:
        self.upstream = upstream  # (host, port), or a unix socket's path
        self.listen_path = listen_path  # listen on this unix socket instead of 127.0.0.1
        self.rate = rate
        self.kinds = tuple(kinds)
        self.slow_seconds = slow_seconds
        self._rng = random.Random(seed)
        self.counts: collections.Counter[str] = collections.Counter()
        self.paths: collections.Counter[str] = collections.Counter()
        # (method, path pattern, fault, how many more times): checked before the dice
        self.targets: list[list[object]] = []
        self._server: asyncio.AbstractServer | None = None
        self._streams: set[asyncio.StreamWriter] = set()
        self._clients: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        if self.listen_path is not None:
            self._server = await asyncio.start_unix_server(self._serve, self.listen_path)
            os.chmod(self.listen_path, 0o600)
        else:
            self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
            self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _connect_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if isinstance(self.upstream, str):
            return await asyncio.open_unix_connection(self.upstream)
        return await asyncio.open_connection(*self.upstream)

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._streams):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def drop_streams(self) -> int:
        """Reset every spliced (WebSocket, long-poll) connection now; how many."""
        dropped = list(self._streams)
        for writer in dropped:
            _reset(writer)
        self.counts["dropped_streams"] += len(dropped)
        return len(dropped)

    def target(self, method: str, path: str, fault: str, times: int = 1) -> None:
        """Give the next ``times`` requests ``method`` to a path matching ``path`` (a
        regular expression) the fault ``fault``, whatever the rate."""
        self.targets.append([method.upper(), re.compile(path), fault, times])

    def drop_all(self) -> int:
        """Reset every client connection now, in-flight requests and long polls included
        (a forced disconnect); how many."""
        dropped = list(self._clients)
        for writer in dropped:
            _reset(writer)
        self.counts["dropped"] += len(dropped)
        return len(dropped)

    def _targeted(self, method: str, path: str) -> str | None:
        for entry in self.targets:
            wanted, pattern, fault, left = entry
            if left and wanted == method and pattern.search(path):  # type: ignore[union-attr]
                entry[3] = left - 1  # type: ignore[operator]
                return str(fault)
        return None

    def _pick(self, method: str, path: str) -> str | None:
        targeted = self._targeted(method, path)
        if targeted is not None:
            return targeted
        if self.rate and self._rng.random() < self.rate:
            return self._rng.choice(self.kinds)
        return None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._clients.add(writer)
        try:
            while await self._one(reader, writer):
                pass
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            writer.transport.abort()
        finally:
            self._tasks.discard(task)
            self._streams.discard(writer)
            self._clients.discard(writer)
            if not writer.is_closing():
                writer.close()

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request; whether the connection stays open for another."""
        head = await _read_head(reader)
        if head is None:
            return False
        body = await _read_body(reader, head)
        method, _, rest = head.partition(b" ")
        path = rest.split(b" ", 1)[0].decode("latin-1")
        self.paths[path.split("?")[0]] += 1
        self.counts["requests"] += 1
        if (_header(head, b"upgrade") or b"").lower() == b"websocket":
            # an upgrade meets only the faults targeted at it (a stream that cannot
            # come back for a while), never the dice
            if self._targeted(method.decode("latin-1"), path) == "reset_before":
                self.counts["reset_before"] += 1
                _reset(writer)
                return False
            await self._splice(head, body, reader, writer)
            return False
        fault = self._pick(method.decode("latin-1"), path)
        if fault is not None:
            self.counts[fault] += 1
        if fault in ("500", "503", "429"):
            status = int(fault)
            payload = _THROTTLE_BODY if status == 429 else b'{"error":"fault proxy"}'
            extra = b"Retry-After: 0\r\nx-amzn-ErrorType: ThrottlingException\r\n" if status == 429 else b""
            writer.write(
                b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\nConnection: close\r\n\r\n"
                % (status, _REASONS[status], extra, len(payload)) + payload
            )
            await writer.drain()
            return False
        if fault == "reset_before":
            _reset(writer)
            return False
        up_reader, up_writer = await self._connect_upstream()
        try:
            up_writer.write(_rewrite_connection(head) + body)
            await up_writer.drain()
            answer = await _read_answer(up_reader)
        finally:
            up_writer.close()
        self.counts["body_bytes"] += len(answer) - answer.find(b"\r\n\r\n") - 4  # the back end's bodies
        if fault == "reset_after":
            _reset(writer)  # the back end acted; the client never hears of it
            return False
        if fault == "slow":
            await asyncio.sleep(self.slow_seconds)
        writer.write(answer)
        await writer.drain()
        return False

    async def _splice(
        self, head: bytes, body: bytes, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        up_reader, up_writer = await self._connect_upstream()
        self._streams.add(writer)
        self.counts["streams"] += 1
        up_writer.write(head + body)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.transport.abort()

        try:
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.transport.abort()
