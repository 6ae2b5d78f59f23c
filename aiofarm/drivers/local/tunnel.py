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

Flow control: each side sends the next chunk only once the last has been taken
(the service awaits the WebSocket's drain and the TCP socket's; the client's
reader stops reading while the relay's write buffer is full), so neither the
service nor the client buffers more than a chunk per connection.

Speed: the job's bytes cross two more processes than a direct connection, so
what each hop costs per chunk is the figure (P4). Chunks are as big as asyncio
reads (256 KiB) and go as one frame each; the unix socket's send buffer is
raised (``SOCKET_BUFFER``, within the kernel's ``wmem_max``) so a frame is
mostly taken by one ``send`` instead of being copied into the transport's
buffer and moved down it a piece at a time; the client hands a frame on whole
(a memoryview walks it when the reader asks for less).
"""

from __future__ import annotations

import contextlib
import json
import socket
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ...errors import ConnectionLost, FarmError, InvalidSpec
from . import wire

if TYPE_CHECKING:
    from aiohttp import ClientWebSocketResponse, web

    from .embedded import EmbeddedDriver

_EOF = '{"eof":true}'
_CHUNK = 256 << 10
#: the unix socket's send buffer asked for on a tunnel (the kernel caps it at wmem_max)
SOCKET_BUFFER = 4 << 20


def widen(transport: Any) -> None:
    """Ask for a send buffer of ``SOCKET_BUFFER`` on the transport's socket."""
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_BUFFER)


async def serve_port_forward(farm: EmbeddedDriver, request: web.Request) -> web.StreamResponse:
    from aiohttp import WSMsgType, web

    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    job_id = request.query.get("job", "")
    try:
        try:
            port = int(request.query.get("port", ""))
        except ValueError:
            raise InvalidSpec("job_port", "must be an integer") from None
        host, real = await farm.port_address(job_id, port)
        try:
            conn = await anyio.connect_tcp(host, real)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to port {port} of job {job_id}: {exc.strerror or exc}") from None
    except FarmError as exc:
        await ws.send_str(wire.dumps(wire.error_to(exc)))
        await ws.close()
        return ws
    widen(request.transport)
    try:
        async with conn, anyio.create_task_group() as tg:
            await ws.send_str('{"ok":true}')
            done = {"in": False, "out": False}

            def finished(direction: str) -> None:
                done[direction] = True
                if all(done.values()):
                    tg.cancel_scope.cancel()

            async def to_job() -> None:
                async for msg in ws:
                    if done["in"]:
                        continue  # nothing after a half-close; read on to see the close
                    if msg.type == WSMsgType.BINARY:
                        await conn.send(msg.data)
                    elif msg.type == WSMsgType.TEXT and json.loads(msg.data).get("eof"):
                        await conn.send_eof()
                        finished("in")
                tg.cancel_scope.cancel()  # the client went away: drop the connection

            async def from_job() -> None:
                while True:
                    try:
                        data = await conn.receive(_CHUNK)
                    except anyio.EndOfStream:
                        await ws.send_str(_EOF)
                        finished("out")
                        return
                    await ws.send_bytes(data)

            tg.start_soon(to_job)
            try:
                await from_job()
            except (OSError, anyio.BrokenResourceError):
                tg.cancel_scope.cancel()  # the job's side broke: the client sees the close
    except (ConnectionError, RuntimeError, OSError, anyio.BrokenResourceError):
        pass  # either side vanished mid-send
    finally:
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
