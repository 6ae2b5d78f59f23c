"""The client side of ``local://``: a thin driver over the farm service's socket.

Scheduling, processes and SQLite live only in the service (service.py); this
driver sends each primitive as one request and opens one WebSocket for pushed
status changes (``job_events``: the client's Hub keeps it open, which also tells
the service a client is connected, so it does not exit for idleness, and re-opens
it after a drop). It starts the service when none answers.
"""

from __future__ import annotations

import json
import os
import signal as _signal
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import anyio.lowlevel

from ...errors import BackendError, ConnectionLost, FarmError
from ...models import (
    Capability,
    Job,
    JobSpec,
    LogPage,
    Pool,
    Task,
    Worker,
)
from ..base import (
    Action,
    Driver,
    JobUpdate,
    ListPlan,
    ListQuery,
    LogQuery,
    StdioChannel,
    SubmitAttempt,
    host_exec_limits,
)
from . import config, connect, filtering, logfile, wire
from .embedded import CAPABILITIES

if TYPE_CHECKING:
    import aiohttp
    import anyio.abc
    import yarl

#: the most bytes of log records one read asks for
RAW_PAGE = 4 << 20


#: a list answer as the service writes it (wire.dumps of {"jobs": [...], "next": ...})
_PAGE_HEAD = '{"jobs":['
_DECODER = json.JSONDecoder()
#: jobs decoded between two checkpoints
_DECODE_SLICE = 100


class _ConnectFailed(ConnectionLost):
    """Nothing answers on the socket (the request never left)."""


def _connector(path: str, limit: int) -> aiohttp.UnixConnector:
    import aiohttp

    class Connector(aiohttp.UnixConnector):
        async def _create_connection(self, req: Any, traces: Any, timeout: Any) -> Any:
            try:
                sock = connect.connect_socket(self.path)
            except OSError as exc:
                raise _ConnectFailed(f"the farm service at {self.path} does not answer: {exc.strerror}") from None
            _, proto = await self._loop.create_unix_connection(self._factory, sock=sock)
            return proto

    return Connector(path, limit=limit)


class ServiceDriver(Driver):
    """``local://`` through the farm service (the default; see docs/local-driver.md)."""

    name: ClassVar[str] = "local"
    exec_limits = host_exec_limits()
    capabilities: ClassVar[frozenset[Capability]] = CAPABILITIES
    max_batch_get: ClassVar[int] = 900
    log_push: ClassVar[bool] = True
    event_stream: ClassVar[bool] = True

    def __init__(self, cfg: config.FarmConfig) -> None:
        self.cfg = cfg
        self.state_dir = cfg.state_dir
        self._session: aiohttp.ClientSession | None = None
        # WebSockets (events, log follows, attach, port forwards) each hold a connection
        # for as long as they last: they have their own session without a limit, so the
        # 65th follow neither waits for the first to end nor starves the requests
        self._stream_session: aiohttp.ClientSession | None = None
        self._subscribers: list[Callable[[Job], None]] = []
        self._task_group: anyio.abc.TaskGroup | None = None  # the client's: stdio readers
        self._task_ids: dict[str, dict[int, str]] = {}  # job id -> task ids by index
        # names our event stream to the service, which then leaves out what we caused
        self._token = os.urandom(8).hex()

    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> Driver:
        cfg = config.parse(url, options)
        if cfg.embedded:
            from .embedded import EmbeddedDriver

            return EmbeddedDriver.from_config(cfg)
        return cls(cfg)

    # -- lifecycle -----------------------------------------------------------------
    async def _ensure_service(self) -> None:
        sock = await connect.ensure_socket(
            self.state_dir,
            start=True,
            slots=self.cfg.slots,
            cancel_grace=self.cfg.cancel_grace,
            idle_timeout=self.cfg.idle_timeout,
        )
        if sock is not None:
            sock.close()

    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        import aiohttp

        await self._ensure_service()
        self._task_group = task_group
        self._session, self._stream_session = (
            aiohttp.ClientSession(
                connector=_connector(self.cfg.socket_path, limit),
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                json_serialize=wire.dumps,
            )
            for limit in (64, 0)
        )
        body = {"protocol": wire.PROTOCOL, "slots": self.cfg.slots, "cancel_grace": self.cfg.cancel_grace}
        try:
            hello = await self._call("hello", body)
        except ConnectionLost:
            # the service we reached went away as we spoke (one dying, or one killed):
            # bring up another, as for none at all
            await self._ensure_service()
            hello = await self._call("hello", body)
        if not hello.get("ok"):
            raise FarmError(
                f"the farm service for {self.state_dir} speaks protocol {hello.get('protocol')}, this"
                f" aiofarm speaks {wire.PROTOCOL} (upgraded?): run `aiofarm farm stop` and retry"
            )

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            for session in (self._session, self._stream_session):
                if session is not None:
                    await session.close()
            self._session = self._stream_session = None

    @asynccontextmanager
    async def job_events(self) -> AsyncIterator[AsyncIterator[Sequence[Job]]]:
        """One connection to the service's stream of job changes: every job of the farm
        but those this client caused (``submit`` hands them to its subscribers itself).
        When it cannot connect, a service is brought up (nothing happens when one
        answers) and it connects once more: after a drop, this is what restarts a
        service that died, for every other request of this client too."""
        import aiohttp

        for attempt in range(2):
            try:
                ws = await self._require(stream=True).ws_connect(
                    "http://farm/v1/events", params={"client": self._token}, heartbeat=None, max_msg_size=0
                )
                break
            except (aiohttp.ClientError, OSError) as exc:  # _ConnectFailed, however wrapped
                if attempt:
                    raise ConnectionLost(f"cannot follow the farm service's events: {exc}") from None
            await self._ensure_service()
        batches = self._event_batches(ws)
        try:
            yield batches
        finally:
            with anyio.CancelScope(shield=True):
                await batches.aclose()
                await ws.close()

    async def _event_batches(self, ws: aiohttp.ClientWebSocketResponse[bool]) -> AsyncGenerator[list[Job], None]:
        import aiohttp

        try:
            async for msg in ws:
                if msg.type == aiohttp.WSMsgType.TEXT:
                    yield [wire.job_from(data) for data in wire.json_loads(msg.data)]
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLost(f"the farm service's events stopped: {exc}") from None
        # the service went away (stopped, crashed) or let this client go
        raise ConnectionLost(f"the farm service for {self.state_dir} closed its events stream")

    def _emit(self, job: Job) -> None:
        for callback in tuple(self._subscribers):
            callback(job)

    def _require(self, *, stream: bool = False) -> aiohttp.ClientSession:
        session = self._stream_session if stream else self._session
        if session is None:
            raise FarmError("the local driver is not open")
        return session

    async def _call(self, name: str, body: Mapping[str, Any]) -> Any:
        return await self._post_raw(name, wire.dumps(body))

    # -- jobs ----------------------------------------------------------------------
    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        # the service does not push these jobs back to us (we would only decode what we
        # already know): our own subscribers hear of them from here
        body = wire.submit_to(specs, {"client": self._token}, os.getcwd())
        jobs = wire.submitted_from(specs, await self._post_raw("submit", body))
        for job in jobs:
            self._emit(job)
        return jobs

    async def _post_raw(self, name: str, text: str, *, decode: bool = True) -> Any:
        """The service's answer to ``name``, decoded from JSON (``decode=False``: its text)."""
        import aiohttp

        for attempt in range(2):
            session = self._require()
            try:
                async with session.post(f"http://farm/v1/{name}", data=text) as resp:
                    if resp.status == 422:
                        raise wire.error_from(await resp.json(loads=wire.json_loads, content_type=None))
                    if not decode:
                        return (await resp.read()).decode()
                    return await resp.json(loads=wire.json_loads, content_type=None)
            except _ConnectFailed:
                if attempt:
                    raise
                await self._ensure_service()
            except (aiohttp.ClientError, OSError) as exc:
                raise ConnectionLost(f"the farm service for {self.state_dir} went away during {name}: {exc}") from None
        raise AssertionError("unreachable")

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        data = await self._call("get", {"ids": list(ids)})
        jobs = (wire.job_from(d) for d in data["jobs"])
        return {j.id: j for j in jobs}

    async def list_page(self, query: ListQuery, page_token: str | None, page_size: int) -> tuple[list[Job], str | None]:
        body = {"query": wire.list_query_to(query), "token": page_token, "size": page_size}
        text = await self._post_raw("list", wire.dumps(body), decode=False)
        # The page is decoded one record at a time, each turned into its Job at once:
        # a whole page decoded first (4 lists a record) set off the collector's young
        # collections many times a page, and what they kept alive piled up into full
        # collections, which walk the whole process's heap (240 ms in CI's process;
        # docs/reliability.md). And a checkpoint between slices of a page.
        if not text.startswith(_PAGE_HEAD):  # the service speaks our PROTOCOL (hello)
            raise BackendError("local", None, f"the farm service answered a listing with {text[:40]!r}")
        scan = _DECODER.raw_decode
        jobs: list[Job] = []
        end = len(_PAGE_HEAD)
        while text[end] != "]":
            record, end = scan(text, end)
            jobs.append(wire.job_from(record))
            if text[end] == ",":
                end += 1
            if len(jobs) % _DECODE_SLICE == 0:
                await anyio.lowlevel.checkpoint()
        return jobs, wire.json_loads("{" + text[end + 2 :])["next"]

    def plan_list(self, query: ListQuery) -> ListPlan:
        return filtering.plan(query)

    async def count_jobs(self, query: ListQuery) -> int:
        return int((await self._call("count", {"query": wire.list_query_to(query)}))["count"])

    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        await self._call("control", {"ids": list(ids), "action": action.value, "stop_work": stop_work})

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        await self._call("update", {"ids": list(ids), "changes": wire.update_to(changes)})

    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        await self._call("signal", {"id": job_id, "signal": int(sig)})

    async def tasks(self, job_id: str) -> list[Task]:
        return [wire.task_from(d) for d in (await self._call("tasks", {"id": job_id}))["tasks"]]

    async def explain(self, job_id: str) -> str:
        return str((await self._call("explain", {"id": job_id}))["text"])

    def subscribe(self, callback: Callable[[Job], None]) -> None:
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Job], None]) -> None:
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    # -- logs ----------------------------------------------------------------------
    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        """The log's records come raw from the service and are parsed here: a busy log
        costs the service one pread per page, the parsing happens in this process."""
        from .codec import from_dt
        from .queries import task_index_of

        offset, raw = start = logfile.decode_token(token)
        ids = self._task_ids.get(job_id)
        # at least two records of the longest kind, so a read always holds a whole one
        size = max(2 * logfile.MAX_LINE, min(RAW_PAGE, query.limit * 256))
        while True:
            data, tasks = await self._raw_log(job_id, offset, raw, size, tasks=ids is None)
            if tasks is not None:
                ids = {int(k): v for k, v in tasks.items()}
                if len(self._task_ids) > 1000:
                    self._task_ids.clear()
                self._task_ids[job_id] = ids
            assert ids is not None
            lines, used, raw = logfile.parse_wire(
                data,
                limit=query.limit,
                task_index=task_index_of(job_id, query, ids),
                streams=query.streams,
                start=from_dt(query.start_time) if query.start_time else None,
                end=from_dt(query.end_time) if query.end_time else None,
                task_ids=ids,
                attempt=query.attempt,
            )
            offset += used
            # a full read whose records all were filtered out (or a record's first part,
            # its lines filtered out): look further
            if lines or not data or (len(data) < size // 2 and raw is None):
                break
        if not lines and (offset, raw) == start:
            return LogPage((), token)
        return LogPage(tuple(lines), logfile.encode_token(offset, raw))

    async def _raw_log(
        self, job_id: str, offset: int, raw: int | None, size: int, *, tasks: bool
    ) -> tuple[bytes, dict[str, str] | None]:
        import aiohttp

        body = {"id": job_id, "offset": offset, "raw": raw, "max": size, "tasks": tasks}
        for attempt in range(2):
            session = self._require()
            try:
                async with session.post("http://farm/v1/log_raw", data=wire.dumps(body)) as resp:
                    if resp.status == 422:
                        raise wire.error_from(await resp.json(loads=wire.json_loads, content_type=None))
                    if resp.status != 200:
                        raise ConnectionLost(f"the farm service answered {resp.status} to a log read")
                    data = await resp.read()
                    header = resp.headers.get("X-Aiofarm-Tasks")
                    return data, (wire.json_loads(header) if header else None)
            except _ConnectFailed:
                if attempt:
                    raise
                await self._ensure_service()
            except (aiohttp.ClientError, OSError) as exc:
                raise ConnectionLost(f"the farm service for {self.state_dir} went away during a log read: {exc}") from None
        raise AssertionError("unreachable")

    @asynccontextmanager
    async def follow_log(self, job_id: str, token: str | None, query: LogQuery) -> AsyncIterator[AsyncIterator[LogPage]]:
        """New records pushed over a WebSocket as the job writes them (follow.py)."""
        import aiohttp

        from .follow import follow_pages

        params = {"job": job_id, "token": token or ""}
        try:
            ws = await self._require(stream=True).ws_connect(
                "http://farm/v1/log_follow", params=params, heartbeat=None, max_msg_size=0
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLost(f"log follow: cannot reach the farm service: {exc}") from None
        pages = follow_pages(ws, job_id, token, query)
        try:
            yield pages
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLost(f"log follow of {job_id}: {exc}") from None
        finally:
            with anyio.CancelScope(shield=True):
                await pages.aclose()
                await ws.close()

    # -- interactive ---------------------------------------------------------------
    async def open_stdio(
        self,
        job_id: str,
        command: Sequence[str] | None,
        *,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        size: tuple[int, int] | None = None,
    ) -> StdioChannel:
        # attach and exec both go through the service, which holds the job's stdio
        # and runs an exec'd command where the job runs (streams.py)
        import aiohttp

        from .streams import RemoteStdioChannel

        request = {
            "job": job_id,
            "command": None if command is None else list(command),
            "tty": tty,
            "stdin": stdin,
            "stdout": stdout,
            "stderr": stderr,
            "size": None if size is None else list(size),
        }
        try:
            ws = await self._require(stream=True).ws_connect("http://farm/v1/stdio", heartbeat=None, max_msg_size=0)
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLost(f"attach/exec: cannot reach the farm service: {exc}") from None
        assert self._task_group is not None
        return await RemoteStdioChannel.open(ws, request, self._task_group, end=self._end_stdio)

    async def _end_stdio(self, session: str) -> None:
        import aiohttp

        # on a connection of its own, closed after: ending a session leaves no socket
        try:
            async with self._require().post(
                "http://farm/v1/stdio_end", data=wire.dumps({"session": session}), headers={"Connection": "close"}
            ) as resp:
                await resp.read()
            # the transport closes its socket on the loop's next turn: let it, so the
            # session is over with nothing of it left open when the caller goes on
            await anyio.lowlevel.checkpoint()
        except (aiohttp.ClientError, OSError, RuntimeError) as exc:  # RuntimeError: the session closed
            raise ConnectionLost(f"the farm service for {self.state_dir} went away: {exc}") from None

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        # the service dials the port where the job runs and tunnels it (connect_port)
        raise self._unsupported("port_address")

    async def connect_port(self, job_id: str, port: int) -> anyio.abc.ByteStream:
        import aiohttp

        from .tunnel import TunnelStream

        try:
            ws = await self._require(stream=True).ws_connect(
                "http://farm/v1/port_forward",
                params={"job": job_id, "port": str(port)},
                heartbeat=None,
                max_msg_size=0,
            )
        except (aiohttp.ClientError, OSError) as exc:
            raise ConnectionLost(f"port forward: cannot reach the farm service: {exc}") from None
        return await TunnelStream.open(ws, job_id)

    # -- pools and workers ---------------------------------------------------------
    async def list_pools(self) -> list[Pool]:
        return [wire.pool_from(d) for d in (await self._call("pools", {}))["pools"]]

    async def create_pool(self, name: str, slots: int | None) -> Pool:
        return wire.pool_from(await self._call("pool_create", {"name": name, "slots": slots}))

    async def rename_pool(self, pool_id: str, new_name: str) -> Pool:
        return wire.pool_from(await self._call("pool_rename", {"id": pool_id, "name": new_name}))

    async def delete_pool(self, pool_id: str) -> None:
        await self._call("pool_delete", {"id": pool_id})

    async def capacity(self) -> dict[str, int]:
        return dict(await self._call("capacity", {}))

    async def list_workers(self) -> list[Worker]:
        return [wire.worker_from(d) for d in (await self._call("workers", {}))["workers"]]

    async def set_workers_enabled(
        self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None
    ) -> None:
        await self._call(
            "workers_enable", {"names": list(names), "enabled": enabled, "stop_work": stop_work, "reason": reason}
        )


__all__ = ["ServiceDriver"]
