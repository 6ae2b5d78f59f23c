"""Reads of the local farm: jobs, pages, tasks, logs, explain; push for readers;
and the hooks the interactive layer uses (live tasks, the job's port address)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ...errors import ConnectionLost, InvalidSpec, JobNotFound, StateLocked
from ...models import Job, LogPage, Task
from ..base import ListPlan, ListQuery, LogQuery, StdioChannel, page_number
from . import filtering, logfile, store
from .codec import from_dt, to_dt
from .model import PENDING, SUCCEEDED, job_model
from .scheduler import Scheduler
from .writer import translate

if TYPE_CHECKING:
    import anyio.abc

    from .processes import RunningTask


class Queries(Scheduler):
    def _require_owner(self, what: str) -> None:
        self._require_db()
        if self.role != "owner":
            raise StateLocked(
                f"cannot {what}: {self.state_dir} is owned by another process; this client only reads it"
            )

    def subscribe(self, callback: Callable[[Job], None]) -> None:
        if self.role == "reader":
            # a reader hears nothing of the owner's changes: the client polls it
            raise self._unsupported("push")
        super().subscribe(callback)

    def _sync(self) -> sqlite3.Connection:
        db = self._require_db()
        if self.role == "owner":
            self._flush()
        return db

    def _jobs_from_db(self, where: str, params: Sequence[Any], tail: str = "") -> list[Job]:
        return store.jobs_where(self._sync(), where, params, tail)

    @translate
    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        out: dict[str, Job] = {}
        rest = []
        for job_id in ids:
            job = self._jobs.get(job_id) if self.role == "owner" else None
            if job is not None:
                out[job_id] = job_model(job)
            else:
                rest.append(job_id)
        for chunk in store.chunks(rest, 900):
            marks = ",".join("?" * len(chunk))
            for model in self._jobs_from_db(f"id IN ({marks})", chunk):
                out[model.id] = model
        return out

    async def _get(self, job_id: str) -> Job:
        found = await self.get_jobs([job_id])
        if job_id not in found:
            raise JobNotFound(job_id, driver="local")
        return found[job_id]

    def plan_list(self, query: ListQuery) -> ListPlan:
        return filtering.plan(query)

    @translate
    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        if query.statuses is not None and not query.statuses:
            return [], None
        size = max(1, int(page_size))
        if query.where is None and not query.sort:
            after = page_number(page_token, "local")
            jobs = store.list_jobs(self._sync(), query, after, size + 1)
            token = None
            if len(jobs) > size:
                jobs = jobs[:size]
                token = str(jobs[-1].raw["seq"])
            return jobs, token
        # a native filter or sort: pages by offset into one ordered answer
        offset = page_number(page_token, "local", "o") or 0
        where, params = self._native_where(query)
        order = filtering.order_by(query.sort, query.reverse)
        jobs = store.jobs_where(self._sync(), where, params, f"{order} LIMIT {size + 1} OFFSET {offset}")
        if len(jobs) > size:
            return jobs[:size], f"o{offset + size}"
        return jobs, None

    @translate
    async def count_jobs(self, query: ListQuery) -> int:
        if query.statuses is not None and not query.statuses:
            return 0
        where, params = self._native_where(query)
        return store.count_where(self._sync(), where, params)

    def _native_where(self, query: ListQuery) -> tuple[str, list[Any]]:
        filtering.register_functions(self._sync())
        where, params = store.structured_where(query)
        native, native_params = filtering.sql_where(query.where)
        return " AND ".join([*where, native]), [*params, *native_params]

    @translate
    async def tasks(self, job_id: str) -> list[Task]:
        job = self._jobs.get(job_id) if self.role == "owner" else None
        if job is not None:
            path = self._log_path(job.seq)
            return [
                Task(
                    id=t.id,
                    job_id=job.id,
                    status=t.status,
                    step=t.step.name,
                    parameters=t.params,
                    attempts=t.attempts,
                    exit_code=t.exit_code,
                    started_at=to_dt(t.started_at),
                    finished_at=to_dt(t.finished_at),
                    reason=t.reason,
                    log=path,
                    raw={"index": t.idx, "failures": t.failures, "pid": t.pid, "pgid": t.pgid},
                    progress=t.progress,
                    status_message=t.status_message,
                )
                for t in job.tasks
            ]
        db = self._sync()
        seq = store.seq_of(db, job_id)
        if seq is None:
            raise JobNotFound(job_id, driver="local")
        return store.tasks_from_db(db, seq, job_id, self._log_path(seq))

    @translate
    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        path, ids = self.log_source(job_id)
        task_index = task_index_of(job_id, query, ids)
        lines, next_token = logfile.read_page(
            path,
            token,
            limit=query.limit,
            task_index=task_index,
            streams=query.streams,
            start=from_dt(query.start_time) if query.start_time else None,
            end=from_dt(query.end_time) if query.end_time else None,
            task_ids=ids,
            attempt=query.attempt,
        )
        return LogPage(tuple(lines), next_token)

    def log_source(self, job_id: str) -> tuple[str, dict[int, str]]:
        """The job's log file and its task ids by index (JobNotFound if none)."""
        db = self._sync()
        job = self._jobs.get(job_id) if self.role == "owner" else None
        if job is not None:
            return self._log_path(job.seq), {t.idx: t.id for t in job.tasks}
        seq = store.seq_of(db, job_id)
        if seq is None:
            raise JobNotFound(job_id, driver="local")
        return self._log_path(seq), store.task_ids(db, seq)

    async def connect_port(self, job_id: str, port: int) -> anyio.abc.ByteStream:
        # a byte stream for the generic relay; the address comes from interactive.py
        self._require_db()
        host, real_port = await self.port_address(job_id, port)
        try:
            return await anyio.connect_tcp(host, real_port)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to port {port} of job {job_id}: {exc.strerror or exc}") from None

    def running_tasks(self, job_id: str) -> list[RunningTask]:
        """The live attempts of a job (the hook for interactive.py); [] when none runs
        or this driver is a reader."""
        job = self._jobs.get(job_id)
        if job is None:
            return []
        return [t.proc for t in job.tasks if t.proc is not None]

    # -- interactive: delegated to interactive.py ----------------------------------
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
        from . import interactive

        return await interactive.driver_open_stdio(
            self, job_id, command, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size
        )

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        from . import interactive

        return await interactive.driver_port_address(self, job_id, port)

    @translate
    async def explain(self, job_id: str) -> str:
        job = self._jobs.get(job_id) if self.role == "owner" else None
        if job is None:
            model = await self._get(job_id)
            if model.status.is_finished:
                why = f" ({model.reason})" if model.reason else ""
                return f"job {job_id} is {model.status.value}{why}: it has finished, nothing is holding it"
            if self.role != "owner":
                return (
                    f"job {job_id} is {model.status.value}; another process owns this farm's scheduler,"
                    " so this client cannot say more"
                )
            return f"job {job_id} is {model.status.value}"
        lines: list[str] = []
        n = len(job.tasks)
        done = job.counts.get(SUCCEEDED.value, 0)
        lines.append(f"job {job.id} is {job.status.value} ({done}/{n} tasks succeeded)")
        if job.running:
            lines.append(f"running {job.running} task(s)")
        if job.ending is not None:
            lines.append(f"ending: {job.ending[1]}; waiting for its running tasks to stop")
        if job.paused:
            lines.append("paused: resume it to let its pending tasks run")
        for dep in sorted(job.waiting):
            status = self._lookup_status(dep)
            lines.append(f"waiting on dependency {dep} ({status.value if status else 'unknown'})")
        pool = self._pools.get(job.pool)
        if not self._worker_enabled:
            why = f": {self._worker_reason}" if self._worker_reason else ""
            lines.append(f"worker {self.hostname} is disabled{why}: nothing is dispatched")
        pending = [t for t in job.tasks if t.status is PENDING]
        if pending and not job.ready and not job.waiting and not job.paused:
            blocked = sorted({t.step.name for t in pending if not t.step.released})
            if blocked:
                lines.append(f"steps {', '.join(blocked)} wait for the steps they depend on")
        if job.ready and pool is not None and not job.paused and not job.waiting and job.ending is None:
            free = pool.slots - pool.used
            ahead = sum(
                1
                for other in self._jobs.values()
                if other is not job
                and other.pool == job.pool
                and other.ready
                and not other.paused
                and not other.waiting
                and other.ending is None
                and (-other.priority, other.seq) < (-job.priority, job.seq)
            )
            if free < job.slots:
                lines.append(
                    f"pool {pool.name} full ({pool.used}/{pool.slots} slots used; a task needs {job.slots})"
                )
            else:
                lines.append(f"pool {pool.name} has {free}/{pool.slots} slots free: dispatching soon")
            if ahead:
                lines.append(f"behind {ahead} higher-priority or earlier job(s) in pool {pool.name}")
        return "; ".join(lines)


def task_index_of(job_id: str, query: LogQuery, ids: dict[int, str]) -> int | None:
    """The index of the task ``query`` asks for (by id or index), or None for all."""
    if query.limit < 1:
        raise InvalidSpec("limit", "must be >= 1")
    if query.task is None:
        return None
    matches = [i for i, tid in ids.items() if tid == query.task or str(i) == query.task]
    if not matches:
        raise InvalidSpec("task", f"job {job_id} has no task {query.task!r} (tasks: {', '.join(ids.values())})")
    return matches[0]

