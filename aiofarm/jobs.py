"""``client.jobs``: submit, find, wait for and control jobs on any driver."""

from __future__ import annotations

import builtins
import math
import signal as _signal
from collections.abc import (
    AsyncIterator,
    Callable,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from .capabilities import native_value, require_spec
from .display import JobList, TaskList
from .errors import InvalidSpec, JobNotFound
from .models import (
    Capability,
    CompletionResult,
    Job,
    JobEvent,
    JobSpec,
    JobStatus,
    Resources,
    Task,
    TransferProgress,
)
from .query import build_query
from .tracing import enabled as tracing_enabled
from .tracing import span, traced
from .validation import (
    MAX_PAGE_SIZE,
    MAX_TAG_LEN,
    as_ids,
    check_argv_size,
    check_count,
    check_exec_size,
    check_id,
    check_priority,
    check_text,
    dependency_order,
    validate_spec,
)
from .waiting import StatusCallback
from .watch import DEFAULT_MAX_INTERVAL, batched_get

if TYPE_CHECKING:
    from .client import Client
    from .drivers.base import Driver
    from .portforward import ForwardError, PortForward
    from .stdio import StdStream
    from .where import Expr

__all__ = ["Jobs"]





ProgressCallback = Callable[[TransferProgress], object] | None


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
        labels: Mapping[str, str] | None = None,
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
        for field, mapping in (("env", env), ("labels", labels)):
            if mapping is not None and not isinstance(mapping, Mapping):
                raise InvalidSpec(field, f"must be a mapping of str to str, got {type(mapping).__name__}")
        spec = JobSpec(
            command=command,
            name=name,
            env=env or {},
            cwd=str(cwd) if isinstance(cwd, Path) else cwd,
            pool=pool,
            tags=tags,
            labels=labels or {},
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

    async def submit(
        self,
        specs: Sequence[JobSpec],
        *,
        on_progress: Callable[[TransferProgress], object] | None = None,
    ) -> builtins.list[Job]:
        """Submit a batch; the jobs come back in input order. A spec may set its own
        ``id`` and others of the batch may name it in ``depends_on``. The whole batch is
        validated before anything is created. ``on_progress`` hears how hashing and
        uploading the specs' input files goes, on back ends that upload them (Deadline
        job attachments)."""
        if on_progress is not None and not callable(on_progress):
            raise InvalidSpec("on_progress", "must be a callable")
        if isinstance(specs, JobSpec):
            specs = [specs]
        if not isinstance(specs, Sequence) or isinstance(specs, (str, bytes)):
            raise InvalidSpec("specs", f"must be a sequence of JobSpec, got {type(specs).__name__}")
        if not specs:
            return []
        checked = [validate_spec(spec, f"specs[{i}]") for i, spec in enumerate(specs)]
        with span("aiofarm.jobs.submit", self._driver.name, job_count=len(checked)):
            return await self._submit(checked, on_progress)

    async def _submit(self, checked: builtins.list[JobSpec], on_progress: ProgressCallback) -> builtins.list[Job]:
        rules = self._client.path_mapping.list()
        if rules or any(s.path_mapping for s in checked):
            from .pathmap import prepare_spec

            at_submit = not self._driver.maps_path_parameters
            checked = [prepare_spec(s, rules, map_parameters=at_submit) for s in checked]
        for i, spec in enumerate(checked):
            check_exec_size(spec, self._driver.exec_limits, f"specs[{i}]")
            require_spec(self._driver, spec, f"specs[{i}]")
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
        from .drivers.base import transfer_progress

        reset = transfer_progress.set(on_progress)
        try:
            created = await driver.submit([checked[i] for i in order])
        finally:
            transfer_progress.reset(reset)
        if len(created) != len(checked):  # pragma: no cover - a driver bug
            raise AssertionError(f"{driver.name} driver returned {len(created)} jobs for {len(checked)} specs")
        result: list[Job | None] = [None] * len(checked)
        for pos, i in enumerate(order):
            result[i] = created[pos]
        return JobList(job for job in result if job is not None)

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
        environments: Sequence[str | Path | Mapping[str, Any]] | None = None,
        on_progress: Callable[[TransferProgress], object] | None = None,
    ) -> Job:
        """Submit an Open Job Description job bundle directory (as the Deadline Cloud
        client reads it: template.yaml|json, parameter_values, asset_references).
        Settings left as None come from the bundle's parameter values
        (``deadline:priority``, ``deadline:targetTaskRunStatus``, ...). ``environments``:
        environment templates (paths, YAML/JSON texts or mappings) entered before the job's own, as a
        Deadline queue's environments are. ``on_progress`` hears how hashing and
        uploading the bundle's input files goes, on back ends that upload them
        (Deadline job attachments)."""
        from .openjd.loading import load_bundle

        spec = load_bundle(
            path,
            parameters=parameters,
            name=name,
            priority=priority,
            paused=paused,
            max_failed_tasks=max_failed_tasks,
            max_retries_per_task=max_retries_per_task,
            pool=pool,
            tags=tags,
            environments=environments,
        )
        (job,) = await self.submit([spec], on_progress=on_progress)
        return job

    async def download_outputs(
        self,
        job_id: str,
        step: str | None = None,
        task: str | None = None,
        dest: str | Path | None = None,
        *,
        on_progress: Callable[[TransferProgress], object] | None = None,
    ) -> builtins.list[Path]:
        """Download what the job's tasks produced (of one step, or one task of it), as
        ``deadline job download-output`` does; the files written. ``dest`` None: where
        the outputs were on the submitting host, through the client's path mapping
        rules. ``UnsupportedError`` on back ends without job attachments."""
        check_id(job_id, "job_id")
        for field, value in (("step", step), ("task", task)):
            if value is not None and (not isinstance(value, str) or not value):
                raise InvalidSpec(field, "must be None or a non-empty string")
        if task is not None and step is None:
            raise InvalidSpec("task", "needs its step")
        if dest is not None and not isinstance(dest, (str, Path)):
            raise InvalidSpec("dest", f"must be a path, got {type(dest).__name__}")
        written = await self._driver.download_outputs(
            job_id, step=step, task=task, dest=None if dest is None else str(dest),
            map_path=self._client.path_mapping.apply, on_progress=on_progress,
        )  # fmt: skip
        return [Path(p) for p in written]

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
        environments: Sequence[str | Path | Mapping[str, Any]] | None = None,
    ) -> Job:
        """Submit an Open Job Description job template given as text or a mapping
        (``environments`` as for :meth:`submit_bundle`)."""
        from .openjd.loading import template_spec

        spec = template_spec(
            template,
            parameters=parameters,
            name=name,
            priority=priority,
            paused=paused,
            max_failed_tasks=max_failed_tasks,
            max_retries_per_task=max_retries_per_task,
            pool=pool,
            tags=tags,
            environments=environments,
        )
        (job,) = await self.submit([spec])
        return job

    # -- read --------------------------------------------------------------------
    async def _get_many(self, ids: Sequence[str]) -> dict[str, Job]:
        found, error = await batched_get(self._driver, ids)
        if error is not None:
            raise error
        return found

    async def get(self, job_id: str, *, history: bool = False) -> Job:
        """One job. ``history=True`` also fills ``Job.history`` and a failed job's
        ``exit_code`` from what the back end recorded (it may cost a few requests)."""
        check_id(job_id, "job_id")
        if history:
            return await self._driver.describe(job_id)
        job = (await self._driver.get_jobs([job_id])).get(job_id)
        if job is None:
            raise JobNotFound(job_id, driver=self._driver.name, farm=self._driver.farm_url)
        return job

    async def get_many(self, ids: str | Sequence[str]) -> builtins.list[Job]:
        """Several jobs in batched calls, in the order asked. Raises JobNotFound for the first unknown id."""
        wanted = as_ids(ids)
        found = await self._get_many(wanted)
        for job_id in wanted:
            if job_id not in found:
                raise JobNotFound(job_id, driver=self._driver.name, farm=self._driver.farm_url)
        return JobList(found[i] for i in wanted)

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
        sort: str | Sequence[str] | None = None,
        page_size: int = 500,
    ) -> AsyncIterator[AsyncIterator[Job]]:
        """``async with farm.jobs.list(...) as it: async for job in it: ...``

        ``sort``: a field name (``"priority"``), ``"-field"`` for descending, or a
        sequence of those (unset values last); default: oldest first (``reverse``:
        newest first; with ``sort`` it flips every key). The driver filters and sorts
        what its back end can; the client does the rest, so results are the same on
        every driver (see aiofarm/listing.py)."""
        from . import listing

        query = attrs.evolve(
            build_query(statuses, name, tags, owners, since, until, pool, where, reverse),
            sort=listing.parse_sort(sort),
        )
        check_count(limit, "limit", allow_none=True, maximum=2**63 - 1)
        check_count(page_size, "page_size", minimum=1, maximum=MAX_PAGE_SIZE)
        driver = self._driver
        self._client.require(Capability.LIST)
        it = listing.iterate(driver, query, limit=limit, page_size=page_size)
        try:
            yield it
        finally:
            await it.aclose()

    async def count(
        self,
        *,
        statuses: Iterable[JobStatus | str] | None = None,
        name: str | None = None,
        tags: Sequence[str] = (),
        owners: Sequence[str] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        pool: str | None = None,
        where: Expr | str | None = None,
    ) -> int:
        """How many jobs ``list`` with the same filters would give: one request where
        the back end counts natively, else by listing."""
        from . import listing

        query = build_query(statuses, name, tags, owners, since, until, pool, where, False)
        driver = self._driver
        self._client.require(Capability.LIST)
        return await listing.count(driver, query)

    async def tasks(self, job_id: str) -> builtins.list[Task]:
        check_id(job_id, "job_id")
        self._client.require(Capability.TASKS)
        return TaskList(await self._driver.tasks(job_id))

    async def explain(self, job_id: str) -> str:
        """In words, why a pending job is not running (Smedge's dispatch log)."""
        check_id(job_id, "job_id")
        self._client.require(Capability.EXPLAIN)
        return await self._driver.explain(job_id)

    # -- wait --------------------------------------------------------------------
    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        max_interval: float = DEFAULT_MAX_INTERVAL,
        on_status: StatusCallback | None = None,
        until: JobStatus | str | Iterable[JobStatus | str] | None = None,
        progress: bool | None = False,
    ) -> Coroutine[Any, Any, CompletionResult]:
        """``await farm.jobs.wait(job_id)``: wait until the job is finished, or until
        it reaches a status of ``until`` (one status or several: ``until="running"``).
        A job that finishes without reaching one raises ``StatusNotReached`` (a
        ``JobNotRunning``) saying what it reached; ``WaitTimeout`` after ``timeout`` s.

        Push drivers wake on the event; polling drivers share one batched poller per
        client (0.5 s doubling to ``max_interval``). ``on_status(job)`` is called with
        the first state seen and on every status change. ``progress=True`` shows the
        job's status as it changes (HTML in Jupyter, a line on stderr elsewhere;
        None: only in Jupyter)."""
        from .waiting import wait

        shown = None
        if progress is not False:
            from .progress import status_display

            shown = status_display(job_id, progress)
        waiting = wait(
            self._client.hub, self._driver, job_id, until=until, timeout=timeout,
            max_interval=max_interval, on_status=on_status, progress=shown,
        )  # fmt: skip
        if tracing_enabled():
            return traced(waiting, "aiofarm.jobs.wait", self._driver.name, job_count=1)
        return waiting

    def as_completed(
        self,
        job_ids: str | Sequence[str],
        *,
        timeout: float | None = None,
        max_interval: float = DEFAULT_MAX_INTERVAL,
        progress: bool | None = False,
        until: JobStatus | str | Iterable[JobStatus | str] | None = None,
    ) -> AsyncIterator[Job]:
        """``async for job in farm.jobs.as_completed(ids):`` each job as it finishes, in
        the order they finish; with ``until`` (a status or several, as for ``wait``),
        as it reaches one of them, or finishes without (then in its final state).
        ``progress=True`` shows how many have finished (HTML in Jupyter, a bar on
        stderr elsewhere; None: only in Jupyter)."""
        from .jobevents import as_completed

        return as_completed(
            self._client, job_ids, timeout=timeout, max_interval=max_interval, progress=progress, until=until
        )

    def watch(
        self,
        jobs: str | Sequence[str] | Expr,
        *,
        max_interval: float = DEFAULT_MAX_INTERVAL,
        buffer: float = math.inf,
    ) -> AbstractAsyncContextManager[AsyncIterator[JobEvent]]:
        """``async with farm.jobs.watch(ids_or_filter) as events: async for ev in events``

        With ids: one event per status change of those jobs (the first state seen
        included, with ``previous=None``). With a ``where`` filter: events for every
        job that matches, including jobs submitted later."""
        from .jobevents import watch

        return watch(self._client, jobs, max_interval=max_interval, buffer=buffer)

    # -- control -----------------------------------------------------------------
    async def _control(
        self,
        ids: str | Sequence[str],
        action: str,
        capability: Capability,
        stop_work: bool | None = None,
        stop_work_capability: Capability | None = None,
    ) -> None:
        from .drivers.base import Action

        wanted = as_ids(ids)
        self._client.require(capability)
        stop = False
        if stop_work_capability is not None:
            if stop_work is not None and not isinstance(stop_work, bool):
                raise InvalidSpec("stop_work", f"must be None or a bool, got {stop_work!r}")
            self._client.require(stop_work_capability, stop_work)
            stop = bool(native_value(self._driver, stop_work_capability) if stop_work is None else stop_work)
        if wanted:
            await self._driver.control(wanted, Action(action), stop_work=stop)

    async def cancel(self, ids: str | Sequence[str], *, stop_work: bool | None = None) -> None:
        """Cancel jobs. ``stop_work`` True stops running work at once, False lets it
        finish (only pending work is canceled); None: the back end's way (see
        ``client.capabilities`` and docs/drivers.md; the local farm stops it)."""
        await self._control(ids, "cancel", Capability.CANCEL, stop_work, Capability.CANCEL_STOP_WORK)

    async def pause(self, ids: str | Sequence[str], *, stop_work: bool | None = None) -> None:
        """Hold pending work; with ``stop_work=True`` also stop what is running (it reruns
        on resume), with False let it go on. None: the back end's way (local and Slurm
        let it go on; Deadline Cloud interrupts it)."""
        await self._control(ids, "pause", Capability.PAUSE, stop_work, Capability.PAUSE_STOP_WORK)

    async def resume(self, ids: str | Sequence[str]) -> None:
        await self._control(ids, "resume", Capability.PAUSE)

    async def retry(self, ids: str | Sequence[str]) -> None:
        """Rerun failed and canceled tasks and reset failure counts."""
        await self._control(ids, "retry", Capability.RETRY)

    async def delete(self, ids: str | Sequence[str]) -> None:
        await self._control(ids, "delete", Capability.DELETE)

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
        if name is not None:
            check_text(name, "name")
        if tags is not None:
            if isinstance(tags, str) or not isinstance(tags, Iterable):
                raise InvalidSpec("tags", "must be a sequence of non-empty strings")
            tags = tuple(check_text(t, f"tags[{i}]", limit=MAX_TAG_LEN) for i, t in enumerate(tags))
        self._client.require(Capability.UPDATE)
        if wanted:
            await self._driver.update(wanted, JobUpdate(priority=priority, name=name, tags=tags))

    async def send_signal(self, job_id: str, sig: int | _signal.Signals = _signal.SIGTERM) -> None:
        check_id(job_id, "job_id")
        try:
            signum = _signal.Signals(sig)
        except (ValueError, TypeError):
            raise InvalidSpec("signal", f"{sig!r} is not a signal") from None
        self._client.require(Capability.SIGNAL)
        await self._driver.send_signal(job_id, signum)

    # -- interactive (aiofarm.stdio / aiofarm.portforward) --------------------------
    def attach(
        self,
        job_id: str,
        *,
        stdin: bool = True,
        stdout: bool = True,
        stderr: bool = True,
        start_timeout: float = 300,
        step: str | None = None,
    ) -> AbstractAsyncContextManager[StdStream]:
        """``async with farm.jobs.attach(id) as stream:`` — the job's own stdio, or with
        ``step=`` that of one step of the job (Slurm: an ``srun`` step, ``sattach``).
        A job that has not started yet is waited for up to ``start_timeout`` s (0: fail
        at once)."""
        from . import stdio

        check_id(job_id, "job_id")
        wait = stdio.check_start_timeout(start_timeout)
        self._client.require(Capability.ATTACH)
        if step is None:
            detail = "" if Capability.ATTACH_STEP not in self._client.capabilities else (
                "it attaches to a step of the job only (step=)"
            )
            self._client.require(Capability.ATTACH_BATCH_STEP, detail=detail)
        else:
            check_id(step, "step")
            self._client.require(Capability.ATTACH_STEP, step)
        return stdio.open_attach(
            self._driver, job_id, stdin=stdin, stdout=stdout, stderr=stderr,
            hub=self._client.hub, start_timeout=wait, step=step,
        )  # fmt: skip

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
        start_timeout: float = 300,
    ) -> AbstractAsyncContextManager[StdStream]:
        """``async with farm.jobs.exec(id, ["bash"], tty=True) as stream:``

        ``size=(rows, cols)`` starts a tty at that size (no resize race at start). A job
        that has not started yet is waited for up to ``start_timeout`` s (0: fail at once)."""
        from . import stdio

        check_id(job_id, "job_id")
        wait = stdio.check_start_timeout(start_timeout)
        check_argv_size(stdio.normalize_command(command), self._client._driver_info.exec_limits, "command")
        stdio.check_size(size)
        self._client.require(Capability.EXEC)
        self._client.require(Capability.EXEC_TTY, tty)
        return stdio.open_exec(
            self._driver, job_id, command, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size,
            hub=self._client.hub, start_timeout=wait,
        )  # fmt: skip

    def port_forward(
        self,
        job_id: str,
        *,
        local_port: int = 0,
        job_port: int,
        on_error: Callable[[ForwardError], None] | None = None,
        start_timeout: float = 300,
        host: str = "127.0.0.1",
    ) -> AbstractAsyncContextManager[PortForward]:
        """``async with farm.jobs.port_forward(id, job_port=8080) as fwd: fwd.local_port``

        Listens on ``host`` (default 127.0.0.1: this machine only; ``local_port=0`` picks
        a free port). Each connection's failure is reported to ``on_error``,
        ``fwd.errors`` and ``fwd.events()``."""
        from . import portforward, stdio

        check_id(job_id, "job_id")
        wait = stdio.check_start_timeout(start_timeout)
        portforward.check_port("local_port", local_port, allow_zero=True)
        portforward.check_port("job_port", job_port, allow_zero=False)
        self._client.require(Capability.PORT_FORWARD)
        return portforward.port_forward(
            self._driver, job_id, local_port, job_port, on_error=on_error,
            hub=self._client.hub, start_timeout=wait, host=host,
        )  # fmt: skip

