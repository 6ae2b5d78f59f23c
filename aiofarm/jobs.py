"""``client.jobs``: submit, find, wait for and control jobs on any driver."""

from __future__ import annotations

import builtins
import contextlib
import inspect
import math
import signal as _signal
import time
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from .errors import InvalidSpec, JobNotFound, WaitTimeout
from .models import Capability, CompletionResult, Job, JobEvent, JobSpec, JobStatus, Resources, Task
from .validation import as_ids, check_id, check_priority, dependency_order, validate_spec
from .watch import DEFAULT_MAX_INTERVAL, CallbackSubscription, Waiter, batched_get

if TYPE_CHECKING:
    from .client import Client
    from .drivers.base import Driver, ListQuery
    from .portforward import ForwardError, PortForward
    from .stdio import StdStream
    from .where import Expr

__all__ = ["Jobs"]

_NO_TIMEOUT = contextlib.nullcontext()

StatusCallback = Callable[[Job], "bool | Awaitable[bool | None] | None"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _check_interval(max_interval: object) -> float:
    if isinstance(max_interval, bool) or not isinstance(max_interval, (int, float)) or not max_interval > 0:
        raise InvalidSpec("max_interval", f"must be a number > 0, got {max_interval!r}")
    return float(max_interval)


def _check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
        raise InvalidSpec("timeout", f"must be None or a number >= 0, got {timeout!r}")
    return float(timeout)


class Jobs:
    def __init__(self, client: Client) -> None:
        self._client = client

    @property
    def _driver(self) -> Driver:
        return self._client.driver

    # -- submit ------------------------------------------------------------------
    async def start(
        self,
        command: Sequence[str] | str,
        *,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        cwd: str | Path | None = None,
        pool: str | None = None,
        tags: Sequence[str] = (),
        description: str | None = None,
        priority: int = 50,
        resources: Resources | None = None,
        timeout: float | None = None,
        retries: int = 0,
        depends_on: str | Sequence[str] = (),
        tty: bool = False,
        stdin: bool = False,
        paused: bool = False,
        id: str | None = None,
    ) -> Job:
        """Submit one command job. A sequence is exec'd; a ``str`` runs through ``/bin/sh -c``."""
        if not isinstance(command, (str, Sequence)):
            raise InvalidSpec("command", f"must be a sequence of strings or a string, got {type(command).__name__}")
        if isinstance(tags, str):
            raise InvalidSpec("tags", "must be a sequence of strings, not one string")
        if env is not None and not isinstance(env, Mapping):
            raise InvalidSpec("env", f"must be a mapping of str to str, got {type(env).__name__}")
        spec = JobSpec(
            command=command,
            name=name,
            env=env or {},
            cwd=str(cwd) if isinstance(cwd, Path) else cwd,
            pool=pool,
            tags=tags,
            description=description,
            priority=priority,
            resources=resources if resources is not None else Resources(),
            timeout=timeout,
            retries=retries,
            depends_on=depends_on,
            tty=tty,
            stdin=stdin,
            paused=paused,
            id=id,
        )
        try:
            (job,) = await self.submit([spec])
        except InvalidSpec as exc:
            # one spec: name its fields as the caller wrote them, not specs[0].x
            if exc.field.startswith("specs[0]."):
                raise InvalidSpec(exc.field[len("specs[0].") :], exc.reason) from None
            raise
        return job

    async def submit(self, specs: Sequence[JobSpec]) -> builtins.list[Job]:
        """Submit a batch; the jobs come back in input order. A spec may set its own
        ``id`` and others of the batch may name it in ``depends_on``. The whole batch is
        validated before anything is created."""
        if isinstance(specs, JobSpec):
            specs = [specs]
        if not isinstance(specs, Sequence) or isinstance(specs, (str, bytes)):
            raise InvalidSpec("specs", f"must be a sequence of JobSpec, got {type(specs).__name__}")
        if not specs:
            return []
        checked = [validate_spec(spec, f"specs[{i}]") for i, spec in enumerate(specs)]
        rules = self._client.path_mapping.list()
        if rules or any(s.path_mapping for s in checked):
            from .pathmap import prepare_spec

            checked = [prepare_spec(s, rules) for s in checked]
        if any(s.template is not None for s in checked):
            self._client.require(Capability.SUBMIT_TEMPLATE, "template jobs")
        order, external = dependency_order(checked)
        driver = self._driver
        own_ids = [s.id for s in checked if s.id is not None]
        probe = sorted(external | set(own_ids))
        if probe:
            found = await self._get_many(probe)
            for i, spec in enumerate(checked):
                if spec.id is not None and spec.id in found:
                    raise InvalidSpec(f"specs[{i}].id", f"a job with id {spec.id!r} already exists")
                for k, dep in enumerate(spec.depends_on):
                    if dep in external and dep not in found:
                        raise InvalidSpec(f"specs[{i}].depends_on[{k}]", f"unknown job id {dep!r}")
        created = await driver.submit([checked[i] for i in order])
        if len(created) != len(checked):  # pragma: no cover - a driver bug
            raise AssertionError(f"{driver.name} driver returned {len(created)} jobs for {len(checked)} specs")
        result: list[Job | None] = [None] * len(checked)
        for pos, i in enumerate(order):
            result[i] = created[pos]
        return [job for job in result if job is not None]

    async def submit_bundle(
        self,
        path: str | Path,
        *,
        parameters: Mapping[str, Any] | None = None,
        name: str | None = None,
        priority: int | None = None,
        paused: bool | None = None,
        max_failed_tasks: int | None = None,
        max_retries_per_task: int | None = None,
        pool: str | None = None,
        tags: Sequence[str] = (),
    ) -> Job:
        """Submit an Open Job Description job bundle directory (as the Deadline Cloud
        client reads it: template.yaml|json, parameter_values, asset_references).
        Settings left as None come from the bundle's parameter values
        (``deadline:priority``, ``deadline:targetTaskRunStatus``, ...)."""
        from . import bundles

        spec = bundles.load_bundle(
            path,
            parameters=parameters,
            name=name,
            priority=priority,
            paused=paused,
            max_failed_tasks=max_failed_tasks,
            max_retries_per_task=max_retries_per_task,
            pool=pool,
            tags=tags,
        )
        (job,) = await self.submit([spec])
        return job

    async def submit_template(
        self,
        template: str | Mapping[str, Any],
        *,
        parameters: Mapping[str, Any] | None = None,
        name: str | None = None,
        priority: int | None = None,
        paused: bool | None = None,
        max_failed_tasks: int | None = None,
        max_retries_per_task: int | None = None,
        pool: str | None = None,
        tags: Sequence[str] = (),
    ) -> Job:
        """Submit an Open Job Description job template given as text or a mapping."""
        from . import bundles

        spec = bundles.template_spec(
            template,
            parameters=parameters,
            name=name,
            priority=priority,
            paused=paused,
            max_failed_tasks=max_failed_tasks,
            max_retries_per_task=max_retries_per_task,
            pool=pool,
            tags=tags,
        )
        (job,) = await self.submit([spec])
        return job

    # -- read --------------------------------------------------------------------
    async def _get_many(self, ids: Sequence[str]) -> dict[str, Job]:
        found, error = await batched_get(self._driver, ids)
        if error is not None:
            raise error
        return found

    async def get(self, job_id: str) -> Job:
        check_id(job_id, "job_id")
        job = (await self._driver.get_jobs([job_id])).get(job_id)
        if job is None:
            raise JobNotFound(job_id, driver=self._driver.name)
        return job

    async def get_many(self, ids: str | Sequence[str]) -> builtins.list[Job]:
        """Several jobs in batched calls, in the order asked. Raises JobNotFound for the first unknown id."""
        wanted = as_ids(ids)
        found = await self._get_many(wanted)
        for job_id in wanted:
            if job_id not in found:
                raise JobNotFound(job_id, driver=self._driver.name)
        return [found[i] for i in wanted]

    @asynccontextmanager
    async def list(
        self,
        *,
        statuses: Iterable[JobStatus | str] | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        owners: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        reverse: bool = False,
        limit: int | None = None,
        pool: str | None = None,
        where: Expr | str | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[AsyncIterator[Job]]:
        """``async with farm.jobs.list(...) as it: async for job in it: ...``

        The driver filters what its back end can; the client re-checks every job
        against the whole query, so results are the same on every driver."""
        query = _build_query(statuses, name, tags, owners, since, until, pool, where, reverse)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise InvalidSpec("limit", f"must be None or an integer >= 0, got {limit!r}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or page_size < 1:
            raise InvalidSpec("page_size", f"must be an integer >= 1, got {page_size!r}")
        driver = self._driver

        async def iterate() -> AsyncGenerator[Job, None]:
            count = 0
            token: str | None = None
            if limit == 0:
                return
            while True:
                jobs, token = await driver.list_page(query, token, page_size)
                for job in jobs:
                    if _matches(query, job):
                        yield job
                        count += 1
                        if limit is not None and count >= limit:
                            return
                if token is None:
                    return

        it = iterate()
        try:
            yield it
        finally:
            await it.aclose()

    async def tasks(self, job_id: str) -> builtins.list[Task]:
        check_id(job_id, "job_id")
        return await self._driver.tasks(job_id)

    async def explain(self, job_id: str) -> str:
        """In words, why a pending job is not running (Smedge's dispatch log)."""
        check_id(job_id, "job_id")
        return await self._driver.explain(job_id)

    # -- wait --------------------------------------------------------------------
    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        max_interval: float = DEFAULT_MAX_INTERVAL,
        on_status: StatusCallback | None = None,
    ) -> CompletionResult:
        """Wait until the job is finished. Push drivers wake on the event; polling
        drivers share one batched poller per client (0.5 s doubling to ``max_interval``).
        ``on_status(job)`` is called with the first state seen and on every status change."""
        check_id(job_id, "job_id")
        limit = _check_timeout(timeout)
        interval = _check_interval(max_interval)
        started = time.monotonic()
        hub = self._client.hub
        waiter = Waiter(job_id, interval)
        hub.register(waiter)
        # one coroutine frame per wait, no cancel scope unless a timeout is asked
        try:
            with _NO_TIMEOUT if limit is None else anyio.fail_after(limit):
                while True:
                    # `state` is rebound to the next future before any await, so no
                    # Job stays alive per waiting coroutine
                    state = waiter.next()
                    if not isinstance(state, Job):
                        await state
                        continue
                    if on_status is not None:
                        outcome = on_status(state)
                        if inspect.isawaitable(outcome):
                            await outcome
                    if state.status.is_finished:
                        job = state
                        break
        except TimeoutError:
            raise WaitTimeout(job_id, limit or 0.0, waiter.seen) from None
        finally:
            hub.unregister(waiter)
        failed: tuple[Task, ...] = ()
        if job.status in (JobStatus.FAILED, JobStatus.CANCELED) and Capability.TASKS in self._client.capabilities:
            failed = tuple(t for t in await self._driver.tasks(job_id) if t.status is JobStatus.FAILED)
        return CompletionResult(job, job.status, failed, timedelta(seconds=time.monotonic() - started))

    async def as_completed(
        self,
        job_ids: str | Sequence[str],
        *,
        timeout: float | None = None,
        max_interval: float = DEFAULT_MAX_INTERVAL,
    ) -> AsyncIterator[Job]:
        """Yield each job as it finishes, in the order they finish."""
        ids = as_ids(job_ids, "job_ids")
        limit = _check_timeout(timeout)
        interval = _check_interval(max_interval)
        send, receive = anyio.create_memory_object_stream[Job | BaseException](math.inf)
        done: set[str] = set()

        def on_job(job: Job) -> None:
            if job.status.is_finished and job.id not in done:
                done.add(job.id)
                send.send_nowait(job)

        def on_error(job_id: str, exc: BaseException) -> None:
            if job_id not in done:
                done.add(job_id)
                send.send_nowait(exc)

        hub = self._client.hub
        sub = CallbackSubscription(tuple(ids), interval, on_job, on_error)
        hub.register(sub)
        try:
            with receive, send:
                deadline = None if limit is None else time.monotonic() + limit
                for _ in ids:
                    try:
                        if deadline is None:
                            item = await receive.receive()
                        else:
                            with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                                item = await receive.receive()
                    except TimeoutError:
                        raise WaitTimeout([i for i in ids if i not in done], limit or 0.0) from None
                    if isinstance(item, BaseException):
                        raise item
                    yield item
        finally:
            hub.unregister(sub)

    @asynccontextmanager
    async def watch(
        self,
        jobs: str | Sequence[str] | Expr,
        *,
        max_interval: float = DEFAULT_MAX_INTERVAL,
        buffer: float = math.inf,
    ) -> AsyncIterator[AsyncIterator[JobEvent]]:
        """``async with farm.jobs.watch(ids_or_filter) as events: async for ev in events``

        With ids: one event per status change of those jobs (the first state seen
        included, with ``previous=None``). With a ``where`` filter: events for every
        job that matches, including jobs submitted later."""
        from .where import Expr

        interval = _check_interval(max_interval)
        send, receive = anyio.create_memory_object_stream[JobEvent | BaseException](buffer)
        last: dict[str, JobStatus] = {}

        def on_job(job: Job) -> None:
            prev = last.get(job.id)
            if prev is job.status:
                return
            last[job.id] = job.status
            send.send_nowait(JobEvent(job, prev, job.status, _utcnow()))

        def on_error(job_id: str, exc: BaseException) -> None:
            send.send_nowait(exc)

        async def events() -> AsyncGenerator[JobEvent, None]:
            async for item in receive:
                if isinstance(item, BaseException):
                    raise item
                yield item

        hub = self._client.hub
        if isinstance(jobs, Expr):
            expr = jobs
            if Capability.PUSH in self._client.capabilities:

                def on_any(job: Job) -> None:
                    if expr.evaluate(job):
                        on_job(job)

                remove = hub.add_listener(on_any)
                try:
                    async with self.list(where=expr) as current:
                        async for job in current:
                            if job.status.is_active:
                                on_job(job)
                    async with send, receive:
                        it = events()
                        try:
                            yield it
                        finally:
                            await it.aclose()
                finally:
                    remove()
            else:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._poll_filter, expr, interval, on_job, on_error)
                    async with send, receive:
                        it = events()
                        try:
                            yield it
                        finally:
                            await it.aclose()
                    tg.cancel_scope.cancel()
            return
        ids = as_ids(jobs, "jobs")
        sub = CallbackSubscription(tuple(ids), interval, on_job, on_error)
        hub.register(sub)
        try:
            async with send, receive:
                it = events()
                try:
                    yield it
                finally:
                    await it.aclose()
        finally:
            hub.unregister(sub)

    async def _poll_filter(
        self,
        expr: Expr,
        max_interval: float,
        on_job: Callable[[Job], None],
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        """Polling drivers: list the matching jobs on the shared back-off schedule."""
        from .backoff import Backoff
        from .errors import ConnectionLost

        backoff = Backoff(0.5, max(0.5, max_interval))
        seen: dict[str, JobStatus] = {}
        first = True
        while True:
            changed = False
            try:
                async with self.list(where=expr) as it:
                    async for job in it:
                        if seen.get(job.id) is not job.status:
                            seen[job.id] = job.status
                            changed = True
                            # as with push drivers: what had already finished before
                            # the watch began is not news
                            if not first or job.status.is_active:
                                on_job(job)
                first = False
            except ConnectionLost:
                pass
            if changed:
                backoff.reset()
            await backoff.sleep()

    # -- control -----------------------------------------------------------------
    async def _control(self, ids: str | Sequence[str], action: str, stop_work: bool) -> None:
        from .drivers.base import Action

        wanted = as_ids(ids)
        if wanted:
            await self._driver.control(wanted, Action(action), stop_work=stop_work)

    async def cancel(self, ids: str | Sequence[str], *, stop_work: bool = True) -> None:
        await self._control(ids, "cancel", stop_work)

    async def pause(self, ids: str | Sequence[str], *, stop_work: bool = False) -> None:
        """Hold pending work; with ``stop_work`` also stop what is running (it reruns on resume)."""
        await self._control(ids, "pause", stop_work)

    async def resume(self, ids: str | Sequence[str]) -> None:
        await self._control(ids, "resume", False)

    async def retry(self, ids: str | Sequence[str]) -> None:
        """Rerun failed and canceled tasks and reset failure counts."""
        await self._control(ids, "retry", False)

    async def delete(self, ids: str | Sequence[str]) -> None:
        await self._control(ids, "delete", True)

    async def update(
        self,
        ids: str | Sequence[str],
        *,
        priority: int | None = None,
        name: str | None = None,
        tags: Sequence[str] | None = None,
    ) -> None:
        """Set one or more fields on many jobs at once (Smedge's update)."""
        from .drivers.base import JobUpdate

        wanted = as_ids(ids)
        if priority is None and name is None and tags is None:
            raise InvalidSpec("update", "nothing to update: give priority, name or tags")
        if priority is not None:
            check_priority(priority, "priority")
        if name is not None and (not isinstance(name, str) or not name):
            raise InvalidSpec("name", "must be a non-empty string")
        if tags is not None:
            if isinstance(tags, str) or not all(isinstance(t, str) and t for t in tags):
                raise InvalidSpec("tags", "must be a sequence of non-empty strings")
            tags = tuple(tags)
        if wanted:
            await self._driver.update(wanted, JobUpdate(priority=priority, name=name, tags=tags))

    async def send_signal(self, job_id: str, sig: int | _signal.Signals = _signal.SIGTERM) -> None:
        check_id(job_id, "job_id")
        try:
            signum = _signal.Signals(sig)
        except (ValueError, TypeError):
            raise InvalidSpec("signal", f"{sig!r} is not a signal") from None
        await self._driver.send_signal(job_id, signum)

    # -- interactive (aiofarm.stdio / aiofarm.portforward) --------------------------
    def attach(
        self, job_id: str, *, stdin: bool = True, stdout: bool = True, stderr: bool = True
    ) -> AbstractAsyncContextManager[StdStream]:
        """``async with farm.jobs.attach(id) as stream:`` — the job's own stdio."""
        from . import stdio

        check_id(job_id, "job_id")
        return stdio.open_attach(self._driver, job_id, stdin=stdin, stdout=stdout, stderr=stderr)

    def exec(
        self,
        job_id: str,
        command: Sequence[str],
        *,
        tty: bool = False,
        stdin: bool = True,
        stdout: bool = True,
        stderr: bool = True,
        size: tuple[int, int] | None = None,
    ) -> AbstractAsyncContextManager[StdStream]:
        """``async with farm.jobs.exec(id, ["bash"], tty=True) as stream:``

        ``size=(rows, cols)`` starts a tty at that size (no resize race at start)."""
        from . import stdio

        check_id(job_id, "job_id")
        return stdio.open_exec(
            self._driver, job_id, command, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size
        )

    def port_forward(
        self,
        job_id: str,
        *,
        local_port: int = 0,
        job_port: int,
        on_error: Callable[[ForwardError], None] | None = None,
    ) -> AbstractAsyncContextManager[PortForward]:
        """``async with farm.jobs.port_forward(id, job_port=8080) as fwd: fwd.local_port``

        Listens on 127.0.0.1 (``local_port=0`` picks a free port). Each connection's
        failure is reported to ``on_error``, ``fwd.errors`` and ``fwd.events()``."""
        from . import portforward

        check_id(job_id, "job_id")
        return portforward.port_forward(self._driver, job_id, local_port, job_port, on_error=on_error)


def _coerce_status(value: JobStatus | str, field: str) -> JobStatus:
    if isinstance(value, JobStatus):
        return value
    if isinstance(value, str):
        try:
            return JobStatus(value.lower())
        except ValueError:
            pass
    choices = ", ".join(s.value for s in JobStatus)
    raise InvalidSpec(field, f"{value!r} is not a status ({choices})")


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidSpec(field, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise InvalidSpec(field, "must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return value


def _build_query(
    statuses: Iterable[JobStatus | str] | None,
    name: str | None,
    tags: Sequence[str],
    owners: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    pool: str | None,
    where: Expr | str | None,
    reverse: bool,
) -> ListQuery:
    from .drivers.base import ListQuery

    status_set: frozenset[JobStatus] | None = None
    if statuses is not None:
        if isinstance(statuses, (str, JobStatus)):
            statuses = [statuses]
        status_set = frozenset(_coerce_status(s, "statuses") for s in statuses)
    for field, value in (("name", name), ("pool", pool)):
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidSpec(field, "must be a non-empty string")
    for field, seq in (("tags", tags), ("owners", owners)):
        if isinstance(seq, str) or not all(isinstance(x, str) for x in seq):
            raise InvalidSpec(field, "must be a sequence of strings")
    expr: Expr | None
    if isinstance(where, str):
        from .where import parse

        expr = parse(where)
    else:
        from .where import Expr as _Expr

        if where is not None and not isinstance(where, _Expr):
            raise InvalidSpec("where", f"must be an aiofarm.where expression or text, got {type(where).__name__}")
        expr = where
    return ListQuery(
        statuses=status_set,
        name=name,
        tags=tuple(tags),
        owners=tuple(owners),
        since=_aware(since, "since"),
        until=_aware(until, "until"),
        pool=pool,
        where=expr,
        reverse=bool(reverse),
    )


def _matches(q: ListQuery, job: Job) -> bool:
    if q.statuses is not None and job.status not in q.statuses:
        return False
    if q.name is not None and job.name != q.name:
        return False
    if q.tags and not set(q.tags).issubset(job.tags):
        return False
    if q.owners and job.owner not in q.owners:
        return False
    if q.pool is not None and job.pool != q.pool:
        return False
    if q.since is not None and (job.created_at is None or job.created_at < q.since):
        return False
    if q.until is not None and (job.created_at is None or job.created_at > q.until):
        return False
    return q.where is None or q.where.evaluate(job)
