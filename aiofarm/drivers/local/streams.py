"""Attach over the service's WebSocket: the service holds every task's stdio, a
client in any process reaches it through ``GET /v1/attach``.

The first frame from the service is JSON text: ``{"ok": true, "tty": bool}`` or an
error (as ``wire.error_to``). Then binary frames carry output, the first byte the
fileno (``1``/``2``) and the rest the bytes; text frames carry control:
``{"exit": code}`` (the job ended; the service closes), ``{"cut": msg}`` (the
attacher fell too far behind), ``{"werr": msg}`` (a stdin write failed). From the
client: binary frames are stdin data, text frames ``{"eof": true}`` and
``{"resize": [rows, cols]}``.

Flow control: WebSocket frames ride TCP-like backpressure on the unix socket: the
service awaits each send, and the task's output is buffered per attacher up to
``ATTACH_BUFFER`` before that attacher is cut off (the job itself never waits).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import anyio

from ...errors import ConnectionLost, FarmError, InvalidSpec
from ...models import Message
from ..base import StdioChannel
from . import wire

if TYPE_CHECKING:
    from aiohttp import ClientWebSocketResponse, web

    from .embedded import EmbeddedDriver


async def serve_attach(farm: EmbeddedDriver, request: web.Request) -> web.StreamResponse:
    from aiohttp import WSMsgType, web

    from .interactive import AttachChannel, live_task

    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    q = request.query
    flags = {k: q.get(k) == "1" for k in ("stdin", "stdout", "stderr")}
    try:
        task = await live_task(farm, q.get("job", ""), "attach")
    except FarmError as exc:
        await ws.send_str(wire.dumps(wire.error_to(exc)))
        await ws.close()
        return ws
    channel = AttachChannel(task, **flags)
    try:
        await ws.send_str(wire.dumps({"ok": True, "tty": task.tty}))
        async with anyio.create_task_group() as tg:

            async def inbound() -> None:
                async for msg in ws:
                    try:
                        if msg.type == WSMsgType.BINARY:
                            await channel.send(msg.data)
                        elif msg.type == WSMsgType.TEXT:
                            ctl = json.loads(msg.data)
                            if ctl.get("eof"):
                                await channel.send_eof()
                            elif "resize" in ctl:
                                rows, cols = ctl["resize"]
                                await channel.resize(int(rows), int(cols))
                    except (ConnectionLost, InvalidSpec, ValueError, TypeError) as exc:
                        await ws.send_str(wire.dumps({"werr": str(exc)}))
                tg.cancel_scope.cancel()  # the attacher went away: detach

            tg.start_soon(inbound)
            try:
                while (out := await channel.receive()) is not None:
                    await ws.send_bytes(b"%d" % out.fileno + out.data)
            except ConnectionLost as exc:
                await ws.send_str(wire.dumps({"cut": str(exc)}))
            else:
                code = await channel.wait()
                await ws.send_str(wire.dumps({"exit": code}))
            tg.cancel_scope.cancel()
    except (ConnectionError, RuntimeError):
        pass  # the attacher vanished mid-send
    finally:
        await channel.aclose()
        await ws.close()
    return ws


async def first_answer(ws: ClientWebSocketResponse[Any], what: str) -> dict[str, Any]:
    """The service's first frame on a stream WebSocket (attach, log follow, port
    forward): its JSON answer, or the error it sent raised. On any failure, a cancel
    included, the WebSocket is closed here: no caller holds it yet."""
    try:
        first = await ws.receive()
        try:
            answer: dict[str, Any] = json.loads(first.data)
        except (TypeError, ValueError):
            raise ConnectionLost(f"{what}: the farm service did not answer") from None
        if "error" in answer:
            raise wire.error_from(answer)
        return answer
    except BaseException:
        with anyio.CancelScope(shield=True):
            await ws.close()
        raise


class RemoteAttachChannel(StdioChannel):
    """The client side of an attach through the service."""

    def __init__(self, ws: ClientWebSocketResponse[Any], *, tty: bool, stdin: bool) -> None:
        self._ws = ws
        self.tty = tty
        self._stdin = stdin
        self._returncode: int | None = None
        self._done = False
        self._write_error: str | None = None

    @classmethod
    async def open(cls, ws: ClientWebSocketResponse[Any], job_id: str, *, stdin: bool) -> RemoteAttachChannel:
        answer = await first_answer(ws, f"attach to {job_id}")
        return cls(ws, tty=bool(answer.get("tty")), stdin=stdin)

    async def receive(self) -> Message | None:
        from aiohttp import WSMsgType

        while not self._done:
            msg = await self._ws.receive()
            if msg.type == WSMsgType.BINARY:
                data: bytes = msg.data
                return Message(data[0] - 48, data[1:])
            if msg.type == WSMsgType.TEXT:
                ctl = json.loads(msg.data)
                if "exit" in ctl:
                    self._returncode = ctl["exit"]
                    self._done = True
                elif "cut" in ctl:
                    self._done = True
                    raise ConnectionLost(str(ctl["cut"]))
                elif "werr" in ctl:
                    self._write_error = str(ctl["werr"])
                continue
            self._done = True  # closed / error: the service went away
        return None

    async def _send(self, coro: Any) -> None:
        try:
            await coro
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionLost(f"attach: the farm service went away: {exc}") from None

    async def send(self, data: bytes) -> None:
        if not self._stdin:
            raise ConnectionLost("attached without stdin")
        if self._write_error is not None:
            raise ConnectionLost(self._write_error)
        if self._ws.closed:
            raise ConnectionLost("attach: the session has ended")
        await self._send(self._ws.send_bytes(data))

    async def send_eof(self) -> None:
        if self._stdin and not self._ws.closed:
            await self._send(self._ws.send_str('{"eof":true}'))

    async def resize(self, rows: int, cols: int) -> None:
        if not self._ws.closed:
            await self._send(self._ws.send_str(wire.dumps({"resize": [rows, cols]})))

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int | None:
        """The job's exit code; what output is left unread is consumed here."""
        while await self.receive() is not None:
            pass
        return self._returncode

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._ws.close()
