"""The daemon (``daemon _serve``): the adaptor session behind an HTTP server on a unix
socket, speaking the official backend's protocol.

Endpoints (as openjd-adaptor-runtime 0.9.x): ``GET /heartbeat[?ack_id=]`` →
``{state, status, output: {id, output}, failed}``; ``PUT /start``, ``PUT /run`` (body:
run data), ``PUT /stop`` (stop then cleanup), ``PUT /cancel``, ``PUT /shutdown``; 400
while busy, 501 for anything else. What aiofarm adds:

- every connection's peer uid must be ours, and every request must carry the token from
  the 0600 connection file (``Authorization: Bearer``), except when the daemon was
  started by an official frontend, which cannot send one;
- ``X-Aiofarm-Follow: 1`` on a PUT streams heartbeat bodies, one per line, as output
  appears, until the phase it started ends; if that connection drops first, the phase
  is cancelled (a killed ``daemon run`` leaves nothing running);
- ``PUT /stop`` during a run cancels the run first (the official backend answers 400
  and stays up, holding the application);
- no request for ``idle_timeout`` seconds while idle: stop, clean up, exit;
- SIGTERM/SIGINT cancels the running phase; a second one (or one while idle) stops,
  cleans up and exits.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import re
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Any

import anyio
import anyio.abc
from anyio.streams.buffered import BufferedByteReceiveStream

from . import http
from .output import BufferSink
from .protocol import (
    CLEANUP,
    FAIL_PREFIX,
    FOLLOW_HEADER,
    IDLE,
    READY_LINE,
    RUN,
    RUNTIME_HEADER,
    START,
    TOKEN_HEADER,
    WORKING,
    heartbeat_body,
    new_token,
    token_path_for,
    write_connection_file,
)
from .runner import PhaseRunner, describe

_log = logging.getLogger("aiofarm.adaptors")
#: A heartbeat chunk "failed" when one of its lines is a fail message, bare or after a level.
FAILED_LINE = re.compile(r"^(?:\w+: )?" + re.escape(FAIL_PREFIX), re.MULTILINE)
_VERSION = "aiofarm"
#: seconds a stopped daemon waits for its frontend's last heartbeat and shutdown
AFTER_STOP = 3.0


def _socket_dir() -> str:
    base = os.environ.get("XDG_RUNTIME_DIR")
    if not base or not os.path.isdir(base) or not os.access(base, os.W_OK):
        base = tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="aiofarm-adaptor-", dir=base)  # 0700


class Backend:
    def __init__(
        self,
        runner: PhaseRunner,
        sink: BufferSink,
        *,
        token: str,
        strict_token: bool,
        idle_timeout: float,
    ) -> None:
        self.runner = runner
        self.sink = sink
        self.token = token
        self.strict_token = strict_token
        self.idle_timeout = idle_timeout
        self.shutdown = anyio.Event()
        self.pending = 0  # operations accepted but not finished
        self.followers = 0
        self.stopping = False
        self.last_activity = anyio.current_time()
        self.tg: anyio.abc.TaskGroup | None = None
        self.linger: list[anyio.abc.SocketStream] = []

    # -- state ------------------------------------------------------------------------
    def status(self) -> str:
        return WORKING if self.runner.busy or self.pending else IDLE

    def _chunk(self, done: bool | None = None) -> tuple[str, bytes]:
        chunk_id, output = self.sink.chunk()
        failed = bool(FAILED_LINE.search(output))
        return chunk_id, heartbeat_body(
            self.runner.state, self.status(), chunk_id, output, failed, done
        )

    def _spawn(self, op: Callable[[], Awaitable[Any]]) -> None:
        assert self.tg is not None
        self.pending += 1

        async def wrapper() -> None:
            try:
                await op()
            finally:
                self.pending -= 1
                self.last_activity = anyio.current_time()
                self.runner.waker.notify()

        self.tg.start_soon(wrapper)

    # -- connections ------------------------------------------------------------------
    async def handle(self, stream: anyio.abc.SocketStream) -> None:
        try:
            await self._handle(stream)
        except (anyio.BrokenResourceError, anyio.EndOfStream, anyio.IncompleteRead):
            pass
        except http.ProtocolError as exc:
            with contextlib.suppress(Exception):
                await http.send_response(stream, 400, str(exc).encode())
        finally:
            if stream not in self.linger:
                await stream.aclose()

    async def _handle(self, stream: anyio.abc.SocketStream) -> None:
        if http.peer_uid(stream) not in (None, os.getuid()):
            await http.send_response(stream, HTTPStatus.UNAUTHORIZED)
            return
        buffered = BufferedByteReceiveStream(stream)
        with anyio.fail_after(30):
            req = await http.read_request(buffered)
        self.last_activity = anyio.current_time()
        given = req.headers.get(TOKEN_HEADER, "")
        if given or self.strict_token:
            expected = f"Bearer {self.token}"
            if not hmac.compare_digest(given.encode(), expected.encode()):
                await http.send_response(stream, HTTPStatus.UNAUTHORIZED)
                return
        follow = req.headers.get(FOLLOW_HEADER) == "1"
        route = (req.method, req.path)
        if route == ("GET", "/heartbeat"):
            await self._heartbeat(stream, req)
        elif route == ("PUT", "/start"):
            await self._phase(stream, START, None, follow)
        elif route == ("PUT", "/run"):
            try:
                run_data = req.json()
            except ValueError:
                await http.send_response(stream, HTTPStatus.BAD_REQUEST, b"run data is not JSON")
                return
            if not isinstance(run_data, dict):
                await http.send_response(stream, HTTPStatus.BAD_REQUEST, b"run data is not an object")
                return
            await self._phase(stream, RUN, run_data, follow)
        elif route == ("PUT", "/stop"):
            await self._stop(stream, follow)
        elif route == ("PUT", "/cancel"):
            if self.runner.busy and self.runner.state in (START, RUN):
                self._spawn(self.runner.cancel)
                await self._ok(stream)
            else:
                await self._ok(stream, b"No action required")
        elif route == ("PUT", "/shutdown"):
            await self._ok(stream)
            # left open: the client sees it close when this process has ended
            self.linger.append(stream)
            self.shutdown.set()
        else:
            await http.send_response(stream, HTTPStatus.NOT_IMPLEMENTED)

    async def _ok(self, stream: anyio.abc.SocketStream, body: bytes = b"") -> None:
        await http.send_response(stream, HTTPStatus.OK, body, {RUNTIME_HEADER: _VERSION})

    async def _heartbeat(self, stream: anyio.abc.SocketStream, req: http.Request) -> None:
        acks = req.query.get("ack_id", [])
        if len(acks) > 1:
            await http.send_response(stream, HTTPStatus.INTERNAL_SERVER_ERROR)
            return
        if acks:
            self.sink.ack(acks[0])
        _, body = self._chunk()
        await http.send_response(
            stream, HTTPStatus.OK, body, {RUNTIME_HEADER: _VERSION, "Content-Type": "application/json"}
        )

    async def _phase(
        self, stream: anyio.abc.SocketStream, state: str, run_data: dict[str, Any] | None, follow: bool
    ) -> None:
        if self.pending or not self.runner.claim(state):
            await http.send_response(stream, HTTPStatus.BAD_REQUEST)
            return
        if state == START:
            self._spawn(self.runner.start)
        else:
            self._spawn(lambda: self.runner.run(run_data or {}))
        if follow:
            serial = self.runner.serial
            await self._follow(stream, lambda: self.runner.ended >= serial, cancel_on_drop=True)
        else:
            await self._ok(stream)

    async def _stop(self, stream: anyio.abc.SocketStream, follow: bool) -> None:
        # Whatever runs is cancelled and waited for by the stop itself (a dropped
        # frontend's cancel may still be under way); only a second stop is refused.
        if self.stopping:
            await http.send_response(stream, HTTPStatus.BAD_REQUEST)
            return
        self.stopping = True

        async def stop() -> None:
            try:
                await self.runner.stop()
            finally:
                self.stopping = False

        self._spawn(stop)
        if follow:
            await self._follow(
                stream,
                lambda: self.status() == IDLE and self.runner.state == CLEANUP,
                cancel_on_drop=False,
            )
        else:
            await self._ok(stream)

    async def _follow(
        self, stream: anyio.abc.SocketStream, over: Callable[[], bool], *, cancel_on_drop: bool
    ) -> None:
        """Stream heartbeats until ``over()``; the last one carries ``"done": true``. A
        connection dropped before that cancels the phase (``cancel_on_drop``)."""
        await stream.send(
            http.response_head(
                HTTPStatus.OK,
                {"Content-Type": "application/x-ndjson", RUNTIME_HEADER: _VERSION},
            )
        )
        self.followers += 1
        dropped = False
        try:
            async with anyio.create_task_group() as tg:

                async def watch_peer() -> None:
                    nonlocal dropped
                    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                        while await stream.receive():
                            pass
                    dropped = True
                    tg.cancel_scope.cancel()

                tg.start_soon(watch_peer)
                waker = self.runner.waker
                while True:
                    seen = waker.version
                    done = over()
                    chunk_id, body = self._chunk(done)
                    await stream.send(body + b"\n")
                    self.sink.ack(chunk_id)
                    if done:
                        break
                    await waker.wait(seen)
                tg.cancel_scope.cancel()
        except (anyio.BrokenResourceError, OSError):
            dropped = True
        finally:
            self.followers -= 1
            self.last_activity = anyio.current_time()
        if dropped and cancel_on_drop and self.runner.busy and self.runner.state in (START, RUN):
            _log.warning("The frontend following the %s phase went away: canceling it.", self.runner.state)
            self._spawn(self.runner.cancel)

    # -- the daemon's own life -------------------------------------------------------
    async def watch_idle(self) -> None:
        """Shut down after ``idle_timeout`` s without a request while idle, or
        ``AFTER_STOP`` s after a stop (an official frontend whose stop failed never sends
        the shutdown, and a stopped adaptor has nothing left to serve)."""
        waker = self.runner.waker
        while True:
            seen = waker.version
            limit = min(self.idle_timeout, AFTER_STOP) if self.runner.stopped else self.idle_timeout
            deadline = self.last_activity + limit
            now = anyio.current_time()
            if now >= deadline:
                if self.status() == WORKING or self.followers:
                    self.last_activity = now
                    continue
                _log.warning("Nothing to do for %g s: shutting down.", limit)
                self.shutdown.set()
                return
            with anyio.move_on_after(deadline - now):
                await waker.wait(seen)

    async def watch_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self.shutdown.is_set() and self.runner.busy and self.runner.state in (START, RUN):
                    _log.info("%s received: canceling the running phase (again to shut down).", name)
                    self._spawn(self.runner.cancel)
                    async for _again in signals:
                        break
                _log.info("Signal received: shutting down.")
                self.shutdown.set()
                return


async def serve(
    runner: PhaseRunner,
    sink: BufferSink,
    *,
    connection_file: str,
    strict_token: bool,
    idle_timeout: float,
    announce: bool,
) -> None:
    """Listen, write the connection file, serve until shutdown; then stop the adaptor if
    it still runs and remove the socket, token and connection file."""
    sock_dir = _socket_dir()
    sock_path = os.path.join(sock_dir, "s")
    token = new_token()
    created: list[str] = []
    try:
        listener = await anyio.create_unix_listener(sock_path)
        created.append(sock_path)
        async with listener:
            fd = os.open(token_path_for(sock_path), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            created.append(token_path_for(sock_path))
            with os.fdopen(fd, "w") as f:
                f.write(token)
            write_connection_file(connection_file, sock_path, token)
            created.append(connection_file)
            backend = Backend(
                runner, sink, token=token, strict_token=strict_token, idle_timeout=idle_timeout
            )
            async with anyio.create_task_group() as tg:
                backend.tg = tg
                tg.start_soon(backend.watch_signals)
                tg.start_soon(backend.watch_idle)
                tg.start_soon(listener.serve, backend.handle, tg)
                _log.info("Listening on %s", sock_path)
                if announce and not _detach_stdio():
                    _log.warning("The frontend that started this daemon is gone: shutting down.")
                    backend.shutdown.set()
                await backend.shutdown.wait()
                with anyio.CancelScope(shield=True):
                    if runner.started and not runner.stopped:
                        await runner.stop()
                tg.cancel_scope.cancel()
    finally:
        for path in reversed(created):
            with contextlib.suppress(OSError):
                os.unlink(path)
        with contextlib.suppress(OSError):
            os.rmdir(sock_dir)
        _log.info("Background server has been shut down.")


def _detach_stdio() -> bool:
    """Tell the starting frontend we listen, then let go of its pipe: later output goes
    through heartbeats, and a write to a pipe nobody reads must not kill the daemon.
    False when the frontend is already gone (nobody will ever know this daemon)."""
    told = True
    try:
        sys.stdout.write(READY_LINE + "\n")
        sys.stdout.flush()
    except (OSError, ValueError) as exc:
        _log.warning("Could not signal readiness: %s", describe(exc))
        told = False
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return told
