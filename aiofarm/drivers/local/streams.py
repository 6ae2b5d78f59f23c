"""Attach and exec over the service's WebSocket ``GET /v1/stdio``: the service holds
every task's stdio and runs exec'd commands where the job runs (its cwd and
environment, as its own children), and a client in any process reaches them here.

The client's first frame is JSON text, what it asks for: ``{"job": id, "command":
argv or null (attach), "tty", "stdin", "stdout", "stderr": bool, "size": [rows,
cols] or null}``. The service answers ``{"ok": true, "tty": bool, "pid": int or
null, "session": id}`` or an error (as ``wire.error_to``). Then binary frames carry
output, the first byte the fileno (``1``/``2``) and the rest the bytes; text frames
carry control: ``{"eof": true}`` (every output stream has ended; an exec's
``read_out`` then ends, an attacher's with the exit), ``{"exit": code}``
(the process or job ended; the service closes), ``{"cut": msg}`` (an attacher
fell too far behind), ``{"werr": msg}`` (a stdin write failed). From the client:
binary frames are stdin data, text frames ``{"eof": true}`` and ``{"resize":
[rows, cols]}``.

Ending a session: ``POST /v1/stdio_end {"session": id}`` detaches an attacher or
kills an exec'd command (its whole process group) and answers once it is reaped,
however stuck the WebSocket is (a command that does not read its stdin leaves the
service blocked writing it, the client's close frame unread behind the data); the
client sends it when it leaves a session that is not over. A close frame alone
ends a session too, answered once the command is reaped.
A client that vanishes ends its sessions too: the service notices the socket's
hang-up even while it is not reading from it.

Flow control: the service awaits each send (WebSocket frames ride the unix
socket's backpressure) and stops reading the client while a write to stdin waits,
so stdin and exec output never queue more than a chunk or two beyond the pipes;
an attached task's output is buffered per attacher up to ``ATTACH_BUFFER`` before
that attacher is cut off (the job itself never waits).
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import select
import socket
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ...errors import ConnectionLost, FarmError, InvalidSpec
from ...models import Message
from ..base import StdioChannel
from ..childproc import READ_BUFFER, stdin_closed
from . import wire

if TYPE_CHECKING:
    from aiohttp import ClientWebSocketResponse, web

    from .embedded import EmbeddedDriver

#: the most stdin bytes one frame carries (a big write is sent a frame at a time)
STDIN_FRAME = 256 << 10


class _Live:
    __slots__ = ("done", "scope")

    def __init__(self) -> None:
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()


class StdioSessions:
    """The service's attach and exec sessions."""

    def __init__(self, farm: EmbeddedDriver) -> None:
        self.farm = farm
        self._live: dict[str, _Live] = {}

    def __len__(self) -> int:
        return len(self._live)

    async def serve(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import WSMsgType, web

        # autoclose off: the close answering a client's is sent once its command is
        # reaped, so leaving an exec in the client means the process is gone
        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0, autoclose=False)
        await ws.prepare(request)
        session = os.urandom(8).hex()
        live = _Live()
        channel: StdioChannel | None = None
        try:
            first = await ws.receive()
            if first.type != WSMsgType.TEXT:
                return ws  # the client went before asking
            try:
                channel = await self._open(first.data)
            except FarmError as exc:
                await ws.send_str(wire.dumps(wire.error_to(exc)))
                return ws
            self._live[session] = live
            pid = getattr(channel, "pid", None)
            await ws.send_str(wire.dumps({"ok": True, "tty": channel.tty, "pid": pid, "session": session}))
            with live.scope:
                await relay(ws, channel, request)
        except (ConnectionError, RuntimeError):
            pass  # the client vanished mid-send
        finally:
            with anyio.CancelScope(shield=True):
                self._live.pop(session, None)
                if channel is not None:
                    await channel.aclose()  # exec: killed and reaped; attach: detached
                live.done.set()
                await ws.close()
        return ws

    async def _open(self, text: str) -> StdioChannel:
        from .interactive import live_task, open_stdio

        try:
            req = json.loads(text)
            job_id = str(req["job"])
            command = req.get("command")
            flags = {k: bool(req.get(k)) for k in ("tty", "stdin", "stdout", "stderr")}
            size = req.get("size")
        except (ValueError, TypeError, KeyError) as exc:
            raise InvalidSpec("request", f"malformed stdio request to the farm service: {exc!r}") from None
        if command is not None and (
            not isinstance(command, list) or not command or not all(isinstance(a, str) for a in command)
        ):
            raise InvalidSpec("command", "must be a non-empty list of str")
        if size is not None:
            if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
                raise InvalidSpec("size", "must be [rows, cols]")
            size = (size[0], size[1])
        task = await live_task(self.farm, job_id, "attach" if command is None else "exec")
        return open_stdio(task, command, size=size, **flags)

    async def end(self, session: str) -> None:
        """Detach or kill a session; returns once it has been (an unknown one has ended)."""
        live = self._live.get(session)
        if live is not None:
            live.scope.cancel()
            await live.done.wait()


async def relay(ws: web.WebSocketResponse, channel: StdioChannel, request: web.Request) -> None:
    """The one stdio relay between a client's WebSocket and a channel (attach or exec),
    until the process or job ends (``exit`` sent), the client goes, or it is cut off."""
    from aiohttp import WSMsgType

    async with anyio.create_task_group() as tg:

        async def inbound() -> None:
            failed = False  # input after a failed write is dropped: the client knows
            async for msg in ws:  # ends at the client's close
                try:
                    if msg.type == WSMsgType.BINARY:
                        if not failed:
                            await channel.send(msg.data)
                    elif msg.type == WSMsgType.TEXT:
                        ctl = json.loads(msg.data)
                        if ctl.get("eof"):
                            await channel.send_eof()
                        elif "resize" in ctl:
                            rows, cols = ctl["resize"]
                            await channel.resize(int(rows), int(cols))
                except ConnectionLost as exc:
                    failed = True
                    await ws.send_str(wire.dumps({"werr": str(exc)}))
                except (InvalidSpec, ValueError, TypeError) as exc:
                    await ws.send_str(wire.dumps({"werr": str(exc)}))
            tg.cancel_scope.cancel()

        async def hangup() -> None:
            sock = request.transport.get_extra_info("socket") if request.transport is not None else None
            if sock is not None:
                await peer_hangup(sock)
                tg.cancel_scope.cancel()

        tg.start_soon(inbound)
        tg.start_soon(hangup)
        try:
            while (out := await channel.receive()) is not None:
                await ws.send_bytes(b"%d" % out.fileno + out.data)
            await ws.send_str('{"eof":true}')
            code = await channel.wait()
            await ws.send_str(wire.dumps({"exit": code}))
        except ConnectionLost as exc:
            await ws.send_str(wire.dumps({"cut": str(exc)}))
        tg.cancel_scope.cancel()


async def peer_hangup(sock: socket.socket) -> None:
    """Return once the peer of the stream socket ``sock`` has closed its end, whether
    or not what it sent before has been read (``EPOLLRDHUP`` on an epoll of our own:
    the loop's selector would report the unread data as readable over and over)."""
    fd = os.dup(sock.fileno())
    try:
        with select.epoll(1) as ep:
            ep.register(fd, select.EPOLLRDHUP)  # EPOLLHUP and EPOLLERR come anyway
            while not ep.poll(0):
                await anyio.wait_readable(ep.fileno())
    finally:
        os.close(fd)


async def first_answer(ws: ClientWebSocketResponse[Any], what: str, request: str | None = None) -> dict[str, Any]:
    """The service's first frame on a stream WebSocket (stdio, log follow, port
    forward), after sending it ``request`` if given: its JSON answer, or the error it
    sent raised. On any failure, a cancel included, the WebSocket is closed here: no
    caller holds it yet."""
    try:
        if request is not None:
            try:
                await ws.send_str(request)
            except (ConnectionError, RuntimeError) as exc:
                raise ConnectionLost(f"{what}: the farm service went away: {exc}") from None
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


class RemoteStdioChannel(StdioChannel):
    """The client side of an attach or exec through the service.

    A reader task (in the driver's task group) takes the frames as they come, so a
    failed write, the exit or a cut is known at once, also to a caller that only
    writes; output queues up to ``READ_BUFFER`` bytes, then the reader stops and
    the socket's backpressure holds the service (and an exec'd command) back."""

    def __init__(
        self,
        ws: ClientWebSocketResponse[Any],
        *,
        tty: bool,
        stdin: bool,
        pid: int | None,
        session: str | None,
        end: Callable[[str], Awaitable[None]] | None,
        exec_: bool,
    ) -> None:
        self._ws = ws
        self.tty = tty
        self._stdin = stdin
        #: the exec'd command's pid (on this host, a child of the service); None for attach
        self.pid = pid
        self._session = session
        self._end = end
        # an exec's output may end before it exits (wait() then gives the code); an
        # attacher's ends with the job, its exit code known (the CLI exits with it)
        self._exec = exec_
        self._returncode: int | None = None
        self._queue: collections.deque[Message] = collections.deque()
        self._queued = 0
        self._changed = anyio.Event()  # replaced at each change: every waiter wakes
        self._out_done = False  # every output stream has ended
        self._over = False  # the session has ended (exit, cut, or the service went)
        self._error: ConnectionLost | None = None  # cut off: raised by the next read
        self._eof_sent = False
        self._write_error: str | None = None
        self._scope = anyio.CancelScope()

    @classmethod
    async def open(
        cls,
        ws: ClientWebSocketResponse[Any],
        request: dict[str, Any],
        task_group: anyio.abc.TaskGroup,
        *,
        end: Callable[[str], Awaitable[None]] | None = None,
    ) -> RemoteStdioChannel:
        exec_ = request.get("command") is not None
        what = f"{'exec in' if exec_ else 'attach to'} {request['job']}"
        answer = await first_answer(ws, what, wire.dumps(request))
        pid = answer.get("pid")
        session = answer.get("session")
        channel = cls(
            ws,
            tty=bool(answer.get("tty")),
            stdin=bool(request.get("stdin")),
            pid=pid if isinstance(pid, int) else None,
            session=session if isinstance(session, str) else None,
            end=end,
            exec_=exec_,
        )
        task_group.start_soon(channel._read)
        return channel

    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    async def _read(self) -> None:
        from aiohttp import WSMsgType

        try:
            with self._scope:
                while not self._over:
                    while self._queued >= READ_BUFFER:
                        await self._changed.wait()
                    msg = await self._ws.receive()
                    if msg.type == WSMsgType.BINARY:
                        data: bytes = msg.data
                        self._queue.append(Message(data[0] - 48, data[1:]))
                        self._queued += len(data) - 1
                    elif msg.type == WSMsgType.TEXT:
                        self._control(json.loads(msg.data))
                    else:
                        self._out_done = self._over = True  # closed: the service went away
                    self._notify()
        except Exception as exc:  # it runs in the client's task group: never crash that
            self._error = ConnectionLost(f"the farm service's stdio stream broke: {exc!r}")
        finally:
            self._out_done = self._over = True
            self._notify()

    def _control(self, ctl: dict[str, Any]) -> None:
        if "exit" in ctl:
            self._returncode = ctl["exit"]
            self._out_done = self._over = True
        elif ctl.get("eof"):
            self._out_done = self._exec
        elif "cut" in ctl:
            self._out_done = self._over = True
            self._error = ConnectionLost(str(ctl["cut"]))
        elif "werr" in ctl:
            self._write_error = str(ctl["werr"])

    async def receive(self) -> Message | None:
        while True:
            if self._queue:
                msg = self._queue.popleft()
                self._queued -= len(msg.data)
                self._notify()
                return msg
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            if self._out_done:
                return None
            await self._changed.wait()

    async def _send(self, coro: Awaitable[None]) -> None:
        try:
            await coro
        except (ConnectionError, RuntimeError) as exc:
            raise ConnectionLost(f"the farm service went away: {exc}") from None

    async def send(self, data: bytes) -> None:
        if not self._stdin:
            raise stdin_closed("it was not opened (stdin=False)")
        if self._write_error is not None:
            raise ConnectionLost(self._write_error)
        if self._eof_sent or self._over or self._ws.closed:
            raise stdin_closed("it was closed, or the process has ended")
        for i in range(0, len(data), STDIN_FRAME):
            await self._send(self._ws.send_bytes(data if len(data) <= STDIN_FRAME else data[i : i + STDIN_FRAME]))

    async def send_eof(self) -> None:
        if self._stdin and not self._eof_sent and not self._ws.closed:
            # a pipe is closed by this; a terminal stays open for more (VEOF)
            self._eof_sent = not self.tty
            await self._send(self._ws.send_str('{"eof":true}'))

    async def resize(self, rows: int, cols: int) -> None:
        if not self._ws.closed:
            await self._send(self._ws.send_str(wire.dumps({"resize": [rows, cols]})))

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int | None:
        """The exit code (of the exec'd command, or of the attached job); output left
        unread is dropped here."""
        while not self._over:
            self._queue.clear()
            self._queued = 0
            self._notify()
            await self._changed.wait()
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        return self._returncode

    async def aclose(self) -> None:
        """A session not over yet is ended by a request, answered once an exec'd
        command is reaped: the close frame alone may sit unread behind input the
        process does not take."""
        with anyio.CancelScope(shield=True):
            if not self._over and self._session is not None and self._end is not None:
                with contextlib.suppress(FarmError):  # the service is gone, its sessions too
                    await self._end(self._session)
            self._scope.cancel()
            await self._ws.close()
            self._queue.clear()
