"""Port forwarding through the farm service: ``GET /v1/port_forward?job=ID&port=N``.

The service dials the job's port where the job runs (as kubectl port-forward goes
through the API server to the kubelet) and relays the connection over this
WebSocket; the client's relay (aiofarm/portforward.py, the one relay) runs on top
of it through :class:`TunnelStream`. One WebSocket per forwarded connection.

The first frame from the service is JSON text: ``{"ok": true}`` once it is
connected, or an error (as ``wire.error_to``: JobNotRunning, ConnectionLost when
nothing listens). Then binary frames carry the bytes both ways, and a text frame
``{"eof": true}`` a half-close (each side says it once). The service closes the
WebSocket when both directions are done or the job's side breaks.

Flow control: the service reads the job's connection with a protocol whose
callback writes each chunk to the client as one frame, and stops reading while
``OUT_HIGH`` bytes wait for the client's socket (resumed once it drains); it
writes what the client sends to the job and reads the next frame only once the
job's socket takes it. The client's reader stops while the relay's write buffer
is full. Neither side buffers more than about a megabyte per connection: a
client that does not read holds the job itself back (tests/local/test_tunnel.py).

Speed: the job's bytes cross two more processes than a direct connection, so
what each hop costs per chunk is the figure (P4). From the job to the client a
chunk costs the service one ``recv_into`` a reused buffer and one ``send`` of the
frame header and the bytes together (no copy, no task switch, no pause and
resume of reading per chunk); the unix socket's send buffer is raised (``SOCKET_BUFFER``, within the
kernel's ``wmem_max``) so a frame is mostly taken by one ``send`` instead of
being copied into the transport's buffer and moved down it; the client hands a
frame on whole (a memoryview walks it when the reader asks for less).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ...errors import ConnectionLost, FarmError, InvalidSpec
from . import wire

if TYPE_CHECKING:
    from aiohttp import ClientWebSocketResponse, web

    from .embedded import EmbeddedDriver

_EOF = '{"eof":true}'
#: the unix socket's send buffer asked for on a tunnel (the kernel caps it at wmem_max)
SOCKET_BUFFER = 4 << 20
#: bytes waiting for the client's socket before the job's connection is no longer read
OUT_HIGH = 1 << 20


def widen(transport: Any) -> None:
    """Ask for a send buffer of ``SOCKET_BUFFER`` on the transport's socket."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)


def _frame_header(opcode: int, size: int) -> bytes:
    """A final, unmasked frame's header (RFC 6455 5.2): what a server sends."""
    if size < 126:
        return struct.pack("!BB", 0x80 | opcode, size)
    if size < 1 << 16:
        return struct.pack("!BBH", 0x80 | opcode, 126, size)
    return struct.pack("!BBQ", 0x80 | opcode, 127, size)


_EOF_FRAME = _frame_header(0x1, len(_EOF)) + _EOF.encode()


#: the most one read from the job's connection takes
READ_SIZE = 256 << 10
_HEAD = 10  # room before the bytes for the longest frame header


class _JobSide(asyncio.BufferedProtocol):
    """The service's connection to the job's port. What the job sends goes to the
    client at once as one binary frame from the loop's callback, with no task or
    await per chunk: the job's bytes are read into a buffer with room for the
    frame's header in front, and header and bytes go out in one write, with no
    copy and no new buffer per chunk (a 256 KiB allocation per read made the
    allocator hand pages back and fault them in again). Reading stops only while
    the client's socket holds ``OUT_HIGH`` bytes it has not taken."""

    def __init__(self, out: asyncio.WriteTransport) -> None:
        self.out = out
        self.transport: asyncio.Transport | None = None
        self.backed_up = asyncio.Event()  # reading paused for the client's socket
        self.writable = asyncio.Event()  # the job takes what is written to it
        self.writable.set()
        self._buf = bytearray(_HEAD + READ_SIZE)
        self.ended = asyncio.Event()  # the job half-closed or the connection is gone
        self.gone = asyncio.Event()  # the connection is gone
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.pause_reading()  # until the client has its answer: no frame before it

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self._buf)[_HEAD:]

    def buffer_updated(self, nbytes: int) -> None:
        out = self.out
        if out.is_closing():
            return
        head = _frame_header(0x2, nbytes)
        start = _HEAD - len(head)
        self._buf[start:_HEAD] = head
        out.write(memoryview(self._buf)[start : _HEAD + nbytes])
        if out.get_write_buffer_size():
            # the transport kept some of it (by reference, from Python 3.12): the
            # next read goes to a new buffer
            self._buf = bytearray(_HEAD + READ_SIZE)
            if out.get_write_buffer_size() > OUT_HIGH:
                assert self.transport is not None
                self.transport.pause_reading()
                self.backed_up.set()

    def eof_received(self) -> bool:
        if not self.out.is_closing():
            self.out.write(_EOF_FRAME)
        self.ended.set()
        return True  # half-open: the client may still send

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.writable.set()
        self.ended.set()
        self.gone.set()


async def serve_port_forward(farm: EmbeddedDriver, request: web.Request) -> web.StreamResponse:
    from aiohttp import WSMsgType, web

    from .streams import peer_hangup

    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0, compress=False)
    await ws.prepare(request)
    job_id = request.query.get("job", "")
    out = request.transport
    try:
        try:
            port = int(request.query.get("port", ""))
        except ValueError:
            raise InvalidSpec("job_port", "must be an integer") from None
        host, real = await farm.port_address(job_id, port)
        assert out is not None
        try:
            _, job = await asyncio.get_running_loop().create_connection(lambda: _JobSide(out), host, real)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to port {port} of job {job_id}: {exc.strerror or exc}") from None
    except FarmError as exc:
        await ws.send_str(wire.dumps(wire.error_to(exc)))
        await ws.close()
        return ws
    conn = job.transport
    assert conn is not None
    widen(out)
    try:
        async with anyio.create_task_group() as tg:
            await ws.send_str('{"ok":true}')
            conn.resume_reading()
            half_closed = False  # the client's half-close reached the job

            async def to_job() -> None:
                nonlocal half_closed
                async for msg in ws:
                    if half_closed or job.lost:
                        continue  # nothing after a half-close; read on to see the close
                    if msg.type == WSMsgType.BINARY:
                        conn.write(msg.data)
                        await job.writable.wait()
                    elif msg.type == WSMsgType.TEXT and json.loads(msg.data).get("eof"):
                        conn.write_eof()
                        half_closed = True
                        if job.ended.is_set():
                            break  # both directions are done
                tg.cancel_scope.cancel()  # the client went away: drop the connection

            async def from_job() -> None:
                await job.ended.wait()
                if not job.lost and not half_closed:
                    await job.gone.wait()  # half-closed: the client may still send
                # both directions are done, or the job's side broke (the client sees the close)
                tg.cancel_scope.cancel()

            async def drained() -> None:
                while True:
                    await job.backed_up.wait()
                    job.backed_up.clear()
                    await request.writer.drain()
                    if not conn.is_closing():
                        conn.resume_reading()

            async def hangup() -> None:
                sock = out.get_extra_info("socket")
                if sock is not None:
                    await peer_hangup(sock)
                    tg.cancel_scope.cancel()

            for task in (from_job, drained, hangup):
                tg.start_soon(task)
            await to_job()
    except (ConnectionError, RuntimeError, OSError):
        pass  # either side vanished mid-send
    finally:
        if half_closed and job.ended.is_set():
            conn.close()  # both directions done: what is buffered for the job still goes
        else:
            conn.abort()
        await ws.close()
    return ws


class TunnelStream(anyio.abc.ByteStream):
    """The client's end of a forwarded connection: the job's port as a byte stream."""

    def __init__(self, ws: ClientWebSocketResponse[Any]) -> None:
        self._ws = ws
        self._eof_in = False
        self._pending = memoryview(b"")  # what a frame held beyond the last receive's max_bytes
        conn = ws.get_extra_info("socket")
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)

    @classmethod
    async def open(cls, ws: ClientWebSocketResponse[Any], job_id: str) -> TunnelStream:
        from .streams import first_answer

        await first_answer(ws, f"port forward to {job_id}")
        return cls(ws)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        from aiohttp import WSMsgType

        while not self._pending and not self._eof_in:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
                if len(data) <= max_bytes:
                    return data  # the common case: a whole frame, no copy
                self._pending = memoryview(data)
                continue
            if msg.type == WSMsgType.TEXT:
                self._eof_in = bool(json.loads(msg.data).get("eof"))
                continue
            # closed without the job's half-close: the connection broke
            raise anyio.BrokenResourceError("the farm service closed the forwarded connection")
        if not self._pending:
            raise anyio.EndOfStream
        piece, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return bytes(piece)

    async def send(self, item: bytes) -> None:
        try:
            await self._ws.send_bytes(item)
        except (ConnectionError, RuntimeError) as exc:
            raise anyio.BrokenResourceError(str(exc)) from None

    async def send_eof(self) -> None:
        try:
            await self._ws.send_str(_EOF)
        except (ConnectionError, RuntimeError) as exc:
            raise anyio.BrokenResourceError(str(exc)) from None

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._ws.close()
