"""The farm service: one process per state dir that owns the farm (scheduler,
processes, SQLite) and serves every client of its user over HTTP + WebSocket on
a unix socket (aiohttp). See docs/local-driver.md.

``python -m aiofarm.drivers.local.service --state-dir DIR [--detach] [--ready-fd N]
[--slots N] [--cancel-grace S] [--idle-timeout S]``

Requests are JSON ``POST /v1/<primitive>`` (a submit: JSON lines, wire.py; a log
read answers raw records); answers are JSON, an error is ``{"error": type, "args":
[...]}`` with status 422. Streams are WebSockets: ``/v1/events`` (every status
change, as committed; a client that falls ``EVENT_BACKLOG`` events behind is
cut off and re-reads what it watches when it reconnects), ``/v1/stdio`` (attach
to a running task's stdio, or exec a command where the job runs: streams.py),
``/v1/log_follow`` (a job's new log records as they are written, follow.py),
``/v1/port_forward`` (a connection the service dials to a job's port, tunnel.py). The service exits on ``POST /v1/stop``, on SIGTERM/SIGINT, or
after ``idle_timeout`` seconds with no client connected, no request and no job
pending or running (0 = never).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import anyio

from ...errors import FarmError, InvalidSpec
from ..base import Action
from . import config, connect, logfile, wire
from .embedded import EmbeddedDriver, private_dir
from .follow import serve_log_follow
from .streams import StdioSessions
from .tunnel import serve_port_forward

if TYPE_CHECKING:
    from aiohttp import web

_Handler = Callable[[dict[str, Any]], Awaitable[Any]]
#: the most events one frame of the event stream carries
EVENT_FRAME = 1000
#: events queued for one client whose socket is not draining before its stream is cut
#: (it reconnects and re-reads what it watches); a burst from one request to a client
#: that keeps up is never cut, it is bounded by that request
EVENT_BACKLOG = 10_000


class FarmService:
    def __init__(self, cfg: config.FarmConfig) -> None:
        self.cfg = cfg
        grace = 10.0 if cfg.cancel_grace is None else cfg.cancel_grace
        self.farm = EmbeddedDriver(cfg.state_dir, cancel_grace=grace, slots=cfg.slots, role="owner")
        self.idle_timeout = config.DEFAULT_IDLE_TIMEOUT if cfg.idle_timeout is None else cfg.idle_timeout
        self.started = time.time()
        self.clients = 0  # open event streams: one per connected client
        self.in_flight = 0
        self._streams: set[Any] = set()  # transports of open WebSockets, ended at a stop
        self.last_activity = time.monotonic()
        self.stopping = asyncio.Event()
        self._listeners: list[_Listener] = []  # open event streams
        self._origin: str | None = None  # the client whose submit is being recorded
        self.events_cut = 0  # event streams cut for falling behind
        self.stdio = StdioSessions(self.farm)
        self._handlers: dict[str, _Handler] = {
            "hello": self.hello,
            "status": self.status,
            "stop": self.stop,
            "get": self.get,
            "list": self.list_page,
            "count": self.count_jobs,
            "control": self.control,
            "update": self.update,
            "signal": self.signal,
            "tasks": self.tasks,
            "explain": self.explain,
            "stdio_end": self.stdio_end,
            "pools": self.pools,
            "pool_create": self.pool_create,
            "pool_rename": self.pool_rename,
            "pool_delete": self.pool_delete,
            "capacity": self.capacity,
            "workers": self.workers,
            "workers_enable": self.workers_enable,
        }

    # -- the server ----------------------------------------------------------------
    async def run(self, ready: Callable[[str], None]) -> None:
        from aiohttp import web

        async with anyio.create_task_group() as tg:
            try:
                await self.farm.open(tg)
            except FarmError as exc:
                ready("busy" if "owned by another" in str(exc) else f"error: {exc}")
                tg.cancel_scope.cancel()
                return
            app = web.Application(middlewares=[self._middleware], client_max_size=1 << 30)
            app.router.add_post("/v1/log_raw", self._log_raw)
            app.router.add_post("/v1/submit", self._submit)
            app.router.add_post("/v1/{name}", self._call)
            app.router.add_get("/v1/events", self._events)
            app.router.add_get("/v1/stdio", self.stdio.serve)
            app.router.add_get("/v1/log_follow", self._log_follow)
            app.router.add_get("/v1/port_forward", self._port_forward)
            runner = web.AppRunner(app, handle_signals=False, access_log=None)
            await runner.setup()
            sock = connect.bind_socket(os.path.join(self.cfg.state_dir, connect.SOCKET_NAME))
            site = web.SockSite(runner, sock)
            try:
                await site.start()
                _write_private(os.path.join(self.cfg.state_dir, connect.PID_NAME), f"{os.getpid()}\n")
                # what startup made lives as long as the service: out of the collector's
                # way, so a collection walks only what came after
                gc.freeze()
                ready("ready")
                tg.start_soon(self._idle_watch)
                await self.stopping.wait()
            finally:
                with anyio.CancelScope(shield=True):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.cfg.state_dir, connect.SOCKET_NAME))
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(os.path.join(self.cfg.state_dir, connect.PID_NAME))
                    # open WebSockets (a connected client's events, attach, exec,
                    # follows, forwards) would hold aiohttp's graceful shutdown for a
                    # minute: end them, which ends their handlers (an exec is killed)
                    for transport in tuple(self._streams):
                        transport.abort()
                    await runner.cleanup()
                    await self.farm.aclose()
                    tg.cancel_scope.cancel()

    @staticmethod
    def _peer_ok(request: web.Request) -> bool:
        transport = request.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is None:
            return False
        try:
            return connect.peer_uid(sock) == os.getuid()
        except OSError:
            return False

    async def _middleware_impl(self, request: web.Request, handler: Any) -> Any:
        from aiohttp import web

        if not self._peer_ok(request):
            # another user reached the socket (it should not be able to): say nothing
            raise web.HTTPForbidden()
        self.in_flight += 1
        stream = request.transport if request.method == "GET" else None  # GET: a WebSocket
        if stream is not None:
            self._streams.add(stream)
        try:
            return await handler(request)
        finally:
            self._streams.discard(stream)
            self.in_flight -= 1
            self.last_activity = time.monotonic()

    @property
    def _middleware(self) -> Any:
        from aiohttp import web

        @web.middleware
        async def middleware(request: web.Request, handler: Any) -> Any:
            return await self._middleware_impl(request, handler)

        return middleware

    async def _call(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        handler = self._handlers.get(request.match_info["name"])
        if handler is None:
            raise web.HTTPNotFound()

        async def call() -> Any:
            body = await request.json(loads=json.loads) if request.can_read_body else {}
            if not isinstance(body, dict):
                raise InvalidSpec("request", "must be a JSON object")
            return await handler(body)

        return await _respond(call)

    async def _idle_watch(self) -> None:
        if self.idle_timeout <= 0:
            return
        step = min(1.0, self.idle_timeout / 4)
        while True:
            await anyio.sleep(step)
            farm = self.farm
            busy = self.clients or self.in_flight or farm.running_jobs() or farm.pending_jobs()
            if busy:
                self.last_activity = time.monotonic()
            elif time.monotonic() - self.last_activity >= self.idle_timeout:
                print(f"{_stamp()} idle for {self.idle_timeout:g}s: exiting", flush=True)
                self.stopping.set()
                return

    # -- streams -------------------------------------------------------------------
    async def _events(self, request: web.Request) -> web.StreamResponse:
        from aiohttp import web

        ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
        await ws.prepare(request)
        listener = _Listener(request.query.get("client"), request)
        if not self._listeners:
            self.farm.subscribe(self._on_job)
        self._listeners.append(listener)
        self.clients += 1
        try:

            async def pump() -> None:
                with contextlib.suppress(ConnectionError, RuntimeError):  # the client went
                    await send_all()

            async def send_all() -> None:
                while True:
                    await listener.news.wait()
                    # a burst goes in few frames (one wake-up each on the client), encoded
                    # a slice at a time so a big answer being written is not held up
                    queue = listener.queue
                    batch = [wire.job_to(queue.popleft()) for _ in range(min(len(queue), EVENT_FRAME))]
                    if not queue:
                        listener.news.clear()
                    listener.sending = True  # still set if this waits for the socket to drain
                    await ws.send_str(wire.dumps(batch))
                    listener.sending = False
                    await asyncio.sleep(0)

            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                async for _ in ws:  # the client sends nothing; this ends when it goes
                    pass
                tg.cancel_scope.cancel()
        finally:
            if listener in self._listeners:
                self._listeners.remove(listener)
            if not self._listeners:
                self.farm.unsubscribe(self._on_job)
            self.clients -= 1
            self.last_activity = time.monotonic()
        return ws

    def _on_job(self, job: Any) -> None:
        # encoded by each pump, once the request that caused it has been answered
        cut = False
        for listener in self._listeners:
            if listener.client is None or listener.client != self._origin:
                listener.queue.append(job)
                listener.news.set()
                cut = cut or (listener.sending and len(listener.queue) > EVENT_BACKLOG)
        if cut:
            for listener in [x for x in self._listeners if x.sending and len(x.queue) > EVENT_BACKLOG]:
                self._cut(listener)

    def _cut(self, listener: _Listener) -> None:
        """A client that stopped reading its events: drop what it was owed and its
        connection (it cannot take a close frame). It reconnects when it reads again
        and re-reads the jobs it watches; until then it costs nothing here."""
        self._listeners.remove(listener)
        if not self._listeners:
            self.farm.unsubscribe(self._on_job)
        owed = len(listener.queue)
        listener.queue.clear()
        self.events_cut += 1
        print(f"{_stamp()} a client fell {owed} events behind: its event stream is cut", flush=True)
        transport = listener.request.transport
        if transport is not None:
            transport.abort()

    async def _log_follow(self, request: web.Request) -> web.StreamResponse:
        return await serve_log_follow(self.farm, request)

    async def _port_forward(self, request: web.Request) -> web.StreamResponse:
        return await serve_port_forward(self.farm, request)

    # -- primitives ----------------------------------------------------------------
    async def hello(self, body: dict[str, Any]) -> Any:
        if body.get("protocol") != wire.PROTOCOL:
            return {"protocol": wire.PROTOCOL, "ok": False}
        slots = body.get("slots")
        if slots is not None and slots != self.farm.default_slots:
            await self.farm.set_default_slots(int(slots))
        grace = body.get("cancel_grace")
        if grace is not None:
            self.farm.cancel_grace = float(grace)
        return {"protocol": wire.PROTOCOL, "ok": True, "pid": os.getpid()}

    async def status(self, body: dict[str, Any]) -> Any:
        return {
            "pid": os.getpid(),
            "state_dir": self.cfg.state_dir,
            "started": self.started,
            "clients": self.clients,
            "jobs_pending": self.farm.pending_jobs(),
            "jobs_running": self.farm.running_jobs(),
            "jobs_active": self.farm.active_jobs(),
            "idle_timeout": self.idle_timeout,
            "write_error": self.farm.write_error,
            "events_cut": self.events_cut,
            "event_backlog": max((len(x.queue) for x in self._listeners), default=0),
            "stdio_sessions": len(self.stdio),
            "protocol": wire.PROTOCOL,
            "log": os.path.join(self.cfg.state_dir, connect.LOG_NAME),
        }

    async def stop(self, body: dict[str, Any]) -> Any:
        running = self.farm.running_jobs()
        if body.get("cancel_jobs"):
            ids = self.farm.active_ids()
            if ids:
                await self.farm.control(ids, Action.CANCEL, stop_work=True)
                with anyio.move_on_after(self.farm.cancel_grace + 5):
                    await self.farm.wait_idle()
        elif running:
            raise FarmError(
                f"{running} job(s) are running; wait for them, cancel them, or stop with --cancel-jobs"
            )
        asyncio.get_running_loop().call_later(0.01, self.stopping.set)
        return {"stopping": True}

    async def _submit(self, request: web.Request) -> web.StreamResponse:
        text = await request.text()

        async def submit() -> Any:
            with _gc_paused():
                head, specs, texts = wire.submit_from(text)
                origin = head.get("client")
                # a submitter hears of its own new jobs from its answer: models for the
                # events only when another client listens
                announce = any(x.client is None or x.client != origin for x in self._listeners)
                self._origin = origin if isinstance(origin, str) else None
                try:
                    jobs, _ = await self.farm.add_jobs(specs, texts=texts, announce=announce)
                finally:
                    self._origin = None
                return wire.submitted_to(jobs)

        return await _respond(submit)

    async def get(self, body: dict[str, Any]) -> Any:
        found = await self.farm.get_jobs([str(i) for i in body["ids"]])
        return {"jobs": [wire.job_to(j) for j in found.values()]}

    async def list_page(self, body: dict[str, Any]) -> Any:
        jobs, token = await self.farm.list_page(wire.list_query_from(body["query"]), body.get("token"), int(body["size"]))
        return {"jobs": [wire.job_to(j) for j in jobs], "next": token}

    async def count_jobs(self, body: dict[str, Any]) -> Any:
        return {"count": await self.farm.count_jobs(wire.list_query_from(body["query"]))}

    async def control(self, body: dict[str, Any]) -> Any:
        await self.farm.control([str(i) for i in body["ids"]], Action(body["action"]), stop_work=bool(body["stop_work"]))
        return {}

    async def update(self, body: dict[str, Any]) -> Any:
        await self.farm.update([str(i) for i in body["ids"]], wire.update_from(body["changes"]))
        return {}

    async def signal(self, body: dict[str, Any]) -> Any:
        await self.farm.send_signal(str(body["id"]), signal.Signals(int(body["signal"])))
        return {}

    async def tasks(self, body: dict[str, Any]) -> Any:
        return {"tasks": [wire.task_to(t) for t in await self.farm.tasks(str(body["id"]))]}

    async def explain(self, body: dict[str, Any]) -> Any:
        return {"text": await self.farm.explain(str(body["id"]))}

    async def _log_raw(self, request: web.Request) -> web.StreamResponse:
        """A log's whole records from a byte offset, in wire form (``logfile.read_wire``:
        as on disk, each index record with its raw bytes): the client parses them, so
        reading a busy log costs the service a few preads per request."""
        from aiohttp import web

        async def read() -> web.StreamResponse:
            body = await request.json()
            job_id = str(body["id"])
            offset = int(body["offset"])
            raw = body.get("raw")
            size = min(int(body["max"]), 8 << 20)
            path, ids = self.farm.log_source(job_id)
            data, _, _ = logfile.read_wire(path, offset, None if raw is None else int(raw), size)
            headers = {"X-Aiofarm-Tasks": wire.dumps(ids)} if body.get("tasks") else {}
            return web.Response(body=data, headers=headers, content_type="application/octet-stream")

        return await _respond(read)

    async def stdio_end(self, body: dict[str, Any]) -> Any:
        await self.stdio.end(str(body["session"]))
        return {}

    async def pools(self, body: dict[str, Any]) -> Any:
        return {"pools": [wire.pool_to(p) for p in await self.farm.list_pools()]}

    async def pool_create(self, body: dict[str, Any]) -> Any:
        return wire.pool_to(await self.farm.create_pool(body["name"], body.get("slots")))

    async def pool_rename(self, body: dict[str, Any]) -> Any:
        return wire.pool_to(await self.farm.rename_pool(str(body["id"]), body["name"]))

    async def pool_delete(self, body: dict[str, Any]) -> Any:
        await self.farm.delete_pool(str(body["id"]))
        return {}

    async def capacity(self, body: dict[str, Any]) -> Any:
        return await self.farm.capacity()

    async def workers(self, body: dict[str, Any]) -> Any:
        return {"workers": [wire.worker_to(w) for w in await self.farm.list_workers()]}

    async def workers_enable(self, body: dict[str, Any]) -> Any:
        await self.farm.set_workers_enabled(
            [str(n) for n in body["names"]], bool(body["enabled"]), stop_work=bool(body["stop_work"]), reason=body.get("reason")
        )
        return {}


class _Listener:
    """One client's event stream: what is still to send it."""

    __slots__ = ("client", "news", "queue", "request", "sending")

    def __init__(self, client: str | None, request: web.Request) -> None:
        self.client = client
        self.request = request
        self.queue: collections.deque[Any] = collections.deque()
        self.news = asyncio.Event()
        self.sending = False


async def _respond(fn: Callable[[], Awaitable[Any]]) -> web.StreamResponse:
    """A request's answer: JSON (or the handler's own response), or a typed error."""
    from aiohttp import web

    try:
        result = await fn()
    except FarmError as exc:
        return web.Response(text=wire.dumps(wire.error_to(exc)), status=422, content_type="application/json")
    except (ValueError, KeyError, TypeError) as exc:
        err = InvalidSpec("request", f"malformed request to the farm service: {exc!r}")
        return web.Response(text=wire.dumps(wire.error_to(err)), status=422, content_type="application/json")
    if isinstance(result, web.StreamResponse):
        return result
    return web.Response(text=wire.dumps(result), content_type="application/json")


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a big batch is built: its objects all live
    on, so every collection meanwhile would only walk them again (measured: a third
    of a 10,000-job submit)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stamp() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="aiofarm-service", description="the local farm service")
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("--detach", action="store_true")
    parser.add_argument("--ready-fd", type=int)
    parser.add_argument("--slots", type=int)
    parser.add_argument("--cancel-grace", type=float)
    parser.add_argument("--idle-timeout", type=float)
    args = parser.parse_args(argv)
    if args.detach and os.fork():
        os._exit(0)  # the starter reaps this one at once; the service is nobody's child
    os.umask(0o077)
    ready_fd: int | None = args.ready_fd

    def ready(answer: str) -> None:
        nonlocal ready_fd
        print(f"{_stamp()} pid {os.getpid()}: {answer} on {args.state_dir}", flush=True)
        if ready_fd is not None:
            with contextlib.suppress(OSError):
                os.write(ready_fd, answer.encode() + b"\n")
                os.close(ready_fd)
            ready_fd = None

    try:
        private_dir(args.state_dir)
    except OSError as exc:
        ready(f"error: cannot create {args.state_dir}: {exc.strerror}")
        return 1
    cfg = config.FarmConfig(
        state_dir=os.path.abspath(args.state_dir),
        cancel_grace=args.cancel_grace,
        slots=args.slots,
        idle_timeout=args.idle_timeout,
    )
    service = FarmService(cfg)

    async def amain() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(sig, service.stopping.set)
        await service.run(ready)

    try:
        asyncio.run(amain())
    except BaseException as exc:
        ready(f"error: {exc!r}")
        raise
    finally:
        ready("stopped")  # only reaches a starter that is still waiting
    print(f"{_stamp()} pid {os.getpid()}: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
