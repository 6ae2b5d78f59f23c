"""The embedded local farm: jobs are child processes of this host, state in SQLite.

See docs/local-driver.md for the state layout, the log format, ownership and
roles, what closing does, and the decisions taken where the issue is silent.

One driver instance is either the *owner* of its state dir (it holds an flock on
``<state>/lock`` and runs the scheduler) or a *reader* (it reads the same SQLite
file and log files; mutating calls raise :class:`StateLocked`).

The owner keeps every active job (pending, running, suspended) in memory and is
the only writer; changes are marked dirty and written by :meth:`_flush` in one
transaction per scheduler round (and before every read), so a burst of status
changes costs one commit.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import functools
import getpass
import heapq
import json
import math
import os
import re
import shutil
import signal as _signal
import socket
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar, cast

import anyio

from ...errors import (
    BackendError,
    ConnectionLost,
    FarmError,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    PoolNotFound,
    StateLocked,
)
from ...models import (
    Capability,
    Job,
    JobSpec,
    JobStatus,
    LogPage,
    Pool,
    StatusTransition,
    Task,
    Worker,
)
from ...openjd.plan import COMMAND_STEP, RunSpec, StepPlan, TaskPlan, command_argv, plan_job
from ..base import Action, Driver, JobUpdate, ListQuery, LogQuery, StdioChannel
from . import logfile, process, store
from .store import dumps, to_dt

if TYPE_CHECKING:
    import anyio.abc
    import yarl

__all__ = ["LocalDriver"]

P = JobStatus.PENDING
R = JobStatus.RUNNING
S = JobStatus.SUSPENDED
OK = JobStatus.SUCCEEDED
F = JobStatus.FAILED
C = JobStatus.CANCELED

DEFAULT_POOL = "default"
FLUSH_INTERVAL = 0.01  # seconds; bounds commits to ~100/s under a stream of changes
_OPTIONS = ("cancel_grace", "slots", "role", "state_dir")
_POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# precedence of the reasons a running task is being stopped
_INTENTS = {"requeue": 1, "timeout": 2, "cancel": 3, "lost": 4}

_Fn = TypeVar("_Fn", bound=Callable[..., Awaitable[Any]])


def _now() -> float:
    return time.time()


def _proc_start(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22):
    with the pid, it identifies a process even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return float(fields[19])
    except (IndexError, ValueError):
        return None


def _describe_exit(code: int | None) -> str:
    if code is None or code == -255:
        return "exit status lost"
    if code < 0:
        try:
            return f"killed by {_signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


class _Pool:
    __slots__ = ("heap", "id", "name", "slots", "used")

    def __init__(self, pool_id: int, name: str, slots: int) -> None:
        self.id = pool_id
        self.name = name
        self.slots = slots
        self.used = 0
        self.heap: list[tuple[int, int, int, _Job]] = []


class _Step:
    __slots__ = ("dependants", "depends_on", "deps", "idx", "name", "released", "remaining", "tasks")

    def __init__(self, idx: int, name: str, depends_on: Sequence[str]) -> None:
        self.idx = idx
        self.name = name
        self.depends_on = tuple(depends_on)
        self.deps: list[_Step] = []
        self.dependants: list[_Step] = []
        self.tasks: list[_Task] = []
        self.remaining = 0  # tasks not SUCCEEDED
        self.released = False  # every step it depends on has succeeded


class _Task:
    __slots__ = (
        "attempts",
        "exit_code",
        "failures",
        "finished_at",
        "grace",
        "id",
        "idx",
        "intent",
        "job",
        "kill_timer",
        "params",
        "pgid",
        "pid",
        "proc",
        "pstart",
        "reason",
        "started_at",
        "status",
        "step",
        "timer",
    )

    def __init__(self, job: _Job, idx: int, task_id: str, step: _Step, params: Mapping[str, Any]) -> None:
        self.job = job
        self.idx = idx
        self.id = task_id
        self.step = step
        self.params = params
        self.status = P
        self.attempts = 0
        self.failures = 0
        self.exit_code: int | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.reason: str | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.pstart: float | None = None
        self.proc: process.RunningTask | None = None
        self.intent: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.kill_timer: asyncio.TimerHandle | None = None
        self.grace: float | None = None


class _Job:
    __slots__ = (
        "counts",
        "created_at",
        "depends_on",
        "description",
        "done",
        "ending",
        "exit_code",
        "fail_code",
        "failed",
        "finished",
        "finished_at",
        "history",
        "id",
        "last_code",
        "name",
        "owner",
        "paused",
        "pool",
        "priority",
        "queued",
        "ready",
        "reason",
        "running",
        "seq",
        "slots",
        "spec",
        "started_at",
        "status",
        "steps",
        "tags",
        "tasks",
        "version",
        "waiting",
    )

    def __init__(self, seq: int, job_id: str, spec: JobSpec) -> None:
        self.seq = seq
        self.id = job_id
        self.spec = spec
        self.name = spec.name
        self.owner: str | None = None
        self.pool = spec.pool or DEFAULT_POOL
        self.tags = spec.tags
        self.description = spec.description
        self.priority = spec.priority
        self.depends_on = spec.depends_on
        self.slots = max(1, math.ceil(spec.resources.cpu))
        self.status = P
        self.reason: str | None = None
        self.created_at = 0.0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.exit_code: int | None = None
        self.history: list[StatusTransition] = []
        self.steps: list[_Step] = []
        self.tasks: list[_Task] = []
        self.counts: dict[str, int] = {}
        self.ready: collections.deque[_Task] = collections.deque()
        self.waiting: set[str] = set()  # unfinished dependencies
        self.paused = False
        self.running = 0
        self.failed = 0
        self.finished = False
        self.ending: tuple[JobStatus, str] | None = None  # set once the job must end
        self.last_code: int | None = None
        self.fail_code: int | None = None
        self.queued = False
        self.version = 0
        self.done: list[asyncio.Future[None]] = []


def _translate(fn: _Fn) -> _Fn:
    """sqlite3 and OSError never cross the driver boundary."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except sqlite3.Error as exc:
            raise BackendError("local", type(exc).__name__, str(exc)) from exc
        except FarmError:
            raise
        except OSError as exc:
            raise BackendError("local", exc.errno, str(exc)) from exc

    return cast(_Fn, wrapper)


class LocalDriver(Driver):
    """``local://`` (state under ``$XDG_DATA_HOME/aiofarm``) or ``local:///abs/state/dir``.

    Options (URL query or ``Client(url, **options)``): ``cancel_grace`` (seconds from
    SIGTERM to SIGKILL, default 10), ``slots`` (size of the default pool, default the
    CPU count), ``role`` (``auto`` | ``owner`` | ``reader``), ``state_dir``.
    """

    name: ClassVar[str] = "local"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.SUBMIT,
            Capability.SUBMIT_TEMPLATE,
            Capability.PUSH,
            Capability.LIST,
            Capability.CANCEL,
            Capability.PAUSE,
            Capability.UPDATE,
            Capability.RETRY,
            Capability.DELETE,
            Capability.SIGNAL,
            Capability.TASKS,
            Capability.LOGS,
            Capability.LOGS_FOLLOW,
            Capability.POOLS,
            Capability.POOLS_MANAGE,
            Capability.WORKERS,
            Capability.WORKERS_MANAGE,
            Capability.EXPLAIN,
            Capability.ATTACH,
            Capability.EXEC,
            Capability.PORT_FORWARD,
            Capability.FUNCTIONS,
            # parameters (aiofarm/capabilities.py)
            Capability.SUBMIT_TTY,
            Capability.SUBMIT_STDIN,
            Capability.SUBMIT_RETRIES,
            Capability.SUBMIT_MAX_FAILED_TASKS,
            Capability.SUBMIT_MAX_WORKERS,
            Capability.CANCEL_STOP_WORK,
            Capability.PAUSE_STOP_WORK,
            Capability.LOGS_SINCE,
            Capability.LOGS_TIMESTAMPS,
            Capability.LOGS_STREAMS,
            Capability.LOGS_TASK,
            Capability.ATTACH_BATCH_STEP,
            Capability.EXEC_TTY,
            Capability.WORKERS_STOP_WORK,
            Capability.FUNCTIONS_MAX_CONCURRENCY,
        }
    )
    max_batch_get: ClassVar[int] = 900  # SQLite's bound-parameter budget per IN (...)

    def __init__(
        self,
        state_dir: str,
        *,
        cancel_grace: float = 10.0,
        slots: int | None = None,
        role: str = "auto",
    ) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self.cancel_grace = cancel_grace
        self.default_slots = slots
        self.wanted_role = role
        self.role: str | None = None  # "owner" | "reader" once open
        self.hostname = socket.gethostname()
        self._db: sqlite3.Connection | None = None
        self._lock_fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scopes: list[anyio.CancelScope] = []  # of our background tasks
        self._flush_wake: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._subscribers: list[Callable[[Job], None]] = []
        self._jobs: dict[str, _Job] = {}
        self._recent: dict[str, _Job] = {}  # finished since the last flush
        self._dependants: dict[str, set[str]] = {}
        self._pools: dict[str, _Pool] = {}
        self._running: set[_Task] = set()
        self._dirty_jobs: set[_Job] = set()
        self._dirty_tasks: set[_Task] = set()
        self._new_history: list[tuple[int, float, str, str | None]] = []
        self._outbox: list[Job] = []
        self._next_seq = 1
        self._updated = 0
        self._owner = _user()
        self._base_env: dict[bytes, bytes] = {}
        self._worker_enabled = True
        self._worker_reason: str | None = None
        self._closing = False

    # -- construction ------------------------------------------------------------
    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> LocalDriver:
        if url.scheme != "local":
            raise InvalidSpec("url", f"the local driver takes local:// URLs, not {url.scheme}://")
        if url.host:
            raise InvalidSpec(
                "url", f"local:// takes an absolute path (local:///abs/path), got host {url.host!r}"
            )
        if url.user or url.password or url.port or url.fragment:
            raise InvalidSpec("url", "local:// URLs take only a path and query options")
        merged: dict[str, Any] = dict(url.query)
        for key, value in options.items():
            if key in merged and str(merged[key]) != str(value):
                raise InvalidSpec(f"options.{key}", "given both in the URL and as an option, differently")
            merged[key] = value
        for key in merged:
            if key not in _OPTIONS:
                raise InvalidSpec(f"options.{key}", f"unknown option of local://; known: {', '.join(_OPTIONS)}")
        path = url.path
        if path not in ("", "/") and "state_dir" in merged:
            raise InvalidSpec("options.state_dir", "the URL already names a state dir")
        if "state_dir" in merged:
            path = _str_option(merged, "state_dir")
            if not os.path.isabs(path):
                raise InvalidSpec("options.state_dir", "must be an absolute path")
        elif path in ("", "/"):
            base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
            path = os.path.join(base, "aiofarm")
        grace = _float_option(merged, "cancel_grace", 10.0)
        slots_opt = merged.get("slots")
        slots: int | None = None
        if slots_opt is not None:
            try:
                slots = int(slots_opt)
            except (TypeError, ValueError):
                raise InvalidSpec("options.slots", f"must be an integer, got {slots_opt!r}") from None
            if isinstance(slots_opt, bool) or slots < 1 or (isinstance(slots_opt, float) and slots != slots_opt):
                raise InvalidSpec("options.slots", f"must be an integer >= 1, got {slots_opt!r}")
        role = str(merged.get("role", "auto"))
        if role not in ("auto", "owner", "reader"):
            raise InvalidSpec("options.role", f"must be auto, owner or reader, got {role!r}")
        return cls(path, cancel_grace=grace, slots=slots, role=role)

    # -- lifecycle ---------------------------------------------------------------
    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            os.makedirs(os.path.join(self.state_dir, "logs"), exist_ok=True)
        except OSError as exc:
            raise InvalidSpec("url", f"cannot create the state dir {self.state_dir}: {exc.strerror}") from None
        self.role = self._take_lock()
        try:
            self._db = store.connect(os.path.join(self.state_dir, "farm.sqlite"))
            store.init_schema(self._db)
            if self.role == "owner":
                self._open_owner()
        except sqlite3.Error as exc:
            raise BackendError("local", type(exc).__name__, f"{self.state_dir}: {exc}") from exc
        if self.role == "owner":
            self._wake = asyncio.Event()
            self._flush_wake = asyncio.Event()
            await task_group.start(self._scheduler)
            await task_group.start(self._flusher)
            from . import interactive  # attach from other processes goes through us

            await task_group.start(interactive.serve_attach, self)
        else:
            await task_group.start(self._reader_watch)

    def _take_lock(self) -> str:
        if self.wanted_role == "reader":
            return "reader"
        fd = os.open(os.path.join(self.state_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            if self.wanted_role == "owner":
                raise StateLocked(
                    f"{self.state_dir} is owned by another live process (role=owner was asked)"
                ) from None
            return "reader"
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd
        return "owner"

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            self._closing = True
            for scope in self._scopes:
                scope.cancel()
            self._scopes.clear()
            try:
                if self.role == "owner" and self._db is not None:
                    await self._stop_all_running()
                    with contextlib.suppress(sqlite3.Error):
                        self._flush()
            finally:
                if self._db is not None:
                    self._db.close()
                    self._db = None
                if self._lock_fd is not None:
                    os.close(self._lock_fd)
                    self._lock_fd = None

    async def _stop_all_running(self) -> None:
        tasks = list(self._running)
        if not tasks:
            return
        for t in tasks:
            # a task already being stopped keeps its reason: a cancel the user asked
            # for ends CANCELED, a pause's stop goes back to PENDING for the next open
            self._terminate(t, "lost" if t.intent is None else t.intent)
        procs = [t.proc for t in tasks if t.proc is not None]
        longest = max([self.cancel_grace] + [t.grace or 0.0 for t in tasks]) + 5.0
        with anyio.move_on_after(longest):
            for proc in procs:  # they all stop in parallel; we only wait for each
                await proc.wait()

    async def _scheduler(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._wake is not None
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            task_status.started()
            self._kick()
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._dispatch()
                if self._dirty_jobs or self._dirty_tasks or self._new_history or self._outbox:
                    self._flush_wake.set()  # type: ignore[union-attr]

    async def _flusher(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Writes what changed: at once after a quiet spell, then at most once per
        FLUSH_INTERVAL while changes keep coming, so a burst costs few commits.
        (Reads flush first, so they never see stale state.)"""
        wake = self._flush_wake
        assert wake is not None
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            task_status.started()
            while True:
                await wake.wait()
                wake.clear()
                self._flush()
                await anyio.sleep(FLUSH_INTERVAL)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # -- owner state: load and recover -------------------------------------------
    def _open_owner(self) -> None:
        db = self._require_db()
        # bytes: Popen then skips encoding ~80 variables per spawn (~0.1 ms)
        self._base_env = dict(os.environb)
        row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
        self._next_seq = (row[0] if row else 0) + 1
        self._updated = (db.execute("SELECT max(updated) FROM jobs").fetchone()[0] or 0) + 1
        for key, value in db.execute("SELECT key, value FROM meta WHERE key LIKE 'worker.%'"):
            if key == "worker.enabled":
                self._worker_enabled = value == "1"
            elif key == "worker.reason":
                self._worker_reason = value or None
        cpus = os.cpu_count() or 1
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(
                "INSERT OR IGNORE INTO pools (name, slots, created_at) VALUES (?, ?, ?)",
                (DEFAULT_POOL, self.default_slots or cpus, _now()),
            )
            if self.default_slots is not None:
                db.execute("UPDATE pools SET slots = ? WHERE name = ?", (self.default_slots, DEFAULT_POOL))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for pid_, name, slots in db.execute("SELECT id, name, slots FROM pools"):
            self._pools[name] = _Pool(pid_, name, slots)
        jobs = self._load_jobs("status IN ('pending', 'running', 'suspended')", ())
        for job in jobs:
            self._jobs[job.id] = job
        lost = []
        for job in jobs:
            running = [t for t in job.tasks if t.status is R]
            for t in running:
                _kill_lost(t.pid, t.pgid, t.pstart)
                t.exit_code = None
                t.finished_at = _now()
                self._task_status(t, F, "lost")
            if running:
                lost.append(job)
        for job in lost:
            self._abort(job, "lost")
        for job in jobs:
            if not job.finished:
                self._resolve_deps(job)
        for job in jobs:
            if not job.finished:
                self._check(job)
        self._flush()

    def _load_jobs(self, where: str, params: Sequence[Any]) -> list[_Job]:
        db = self._require_db()
        rows = db.execute(
            "SELECT seq, id, status, owner, reason, created_at, started_at, finished_at, exit_code,"
            f" paused, spec, name, tags, description, priority, pool FROM jobs WHERE {where} ORDER BY seq",
            params,
        ).fetchall()
        if not rows:
            return []
        by_seq: dict[int, _Job] = {}
        for (seq, job_id, status, owner, reason, created, started, finished, code, paused, spec,
             name, tags, description, priority, pool) in rows:
            job = _Job(seq, job_id, store.spec_from_json(spec))
            job.status = JobStatus(status)
            job.owner = owner
            job.reason = reason
            job.created_at = created
            job.started_at = started
            job.finished_at = finished
            job.exit_code = code
            job.paused = bool(paused)
            job.name = name
            job.tags = tuple(json.loads(tags))
            job.description = description
            job.priority = priority
            job.pool = pool
            by_seq[seq] = job
        seqs = list(by_seq)
        for chunk in store.chunks(seqs, 900):
            marks = ",".join("?" * len(chunk))
            for seq, idx, name, deps in db.execute(
                f"SELECT job_seq, idx, name, depends_on FROM steps WHERE job_seq IN ({marks}) ORDER BY job_seq, idx",
                chunk,
            ):
                by_seq[seq].steps.append(_Step(idx, name, json.loads(deps)))
            for (seq, idx, tid, step, params_, status, attempts, failures, code, started, finished,
                 reason, pid, pgid, pstart) in db.execute(
                "SELECT job_seq, idx, id, step, parameters, status, attempts, failures, exit_code,"
                " started_at, finished_at, reason, pid, pgid, pstart"
                f" FROM tasks WHERE job_seq IN ({marks}) ORDER BY job_seq, idx",
                chunk,
            ):
                job = by_seq[seq]
                t = _Task(job, idx, tid, job.steps[step], json.loads(params_))
                t.status = JobStatus(status)
                t.attempts = attempts
                t.failures = failures
                t.exit_code = code
                t.started_at = started
                t.finished_at = finished
                t.reason = reason
                t.pid, t.pgid, t.pstart = pid, pgid, pstart
                job.tasks.append(t)
                t.step.tasks.append(t)
        history = store.history_for(db, seqs)
        for seq, job in by_seq.items():
            job.history = history[seq]
            self._link(job)
        return list(by_seq.values())

    def _link(self, job: _Job) -> None:
        """Derived state of a job whose steps and tasks are set."""
        by_name = {s.name: s for s in job.steps}
        counts: dict[str, int] = {}
        for step in job.steps:
            step.deps = [by_name[d] for d in step.depends_on if d in by_name]
            for dep in step.deps:
                dep.dependants.append(step)
            step.remaining = sum(1 for t in step.tasks if t.status is not OK)
        for t in job.tasks:
            counts[t.status.value] = counts.get(t.status.value, 0) + 1
            if t.status is F:
                job.failed += 1
        job.counts = counts
        self._rebuild_ready(job)

    def _rebuild_ready(self, job: _Job) -> None:
        for step in job.steps:
            step.released = all(d.remaining == 0 for d in step.deps)
        job.ready = collections.deque(t for t in job.tasks if t.status is P and t.step.released)

    # -- the model ---------------------------------------------------------------
    def _job_model(self, job: _Job) -> Job:
        return Job(
            id=job.id,
            status=job.status,
            driver="local",
            name=job.name,
            owner=job.owner,
            pool=job.pool,
            tags=job.tags,
            description=job.description,
            priority=job.priority,
            created_at=to_dt(job.created_at),
            started_at=to_dt(job.started_at),
            finished_at=to_dt(job.finished_at),
            exit_code=job.exit_code,
            reason=job.reason,
            history=tuple(job.history),
            task_counts={k: v for k, v in job.counts.items() if v},
            depends_on=job.depends_on,
            raw={"seq": job.seq, "paused": job.paused, "slots": job.slots},
        )

    def _set_status(self, job: _Job, status: JobStatus, reason: str | None = None) -> None:
        if status is job.status and reason == job.reason:
            return
        job.reason = reason
        self._dirty_jobs.add(job)
        if status is job.status:
            return
        job.status = status
        now = _now()
        job.history.append(StatusTransition(status, to_dt(now), reason))  # type: ignore[arg-type]
        self._new_history.append((job.seq, now, status.value, reason))
        if self._subscribers:
            # delivered by _flush once committed: a pushed status is already on disk
            self._outbox.append(self._job_model(job))

    def _task_status(self, t: _Task, status: JobStatus, reason: str | None = None) -> None:
        job = t.job
        if status is not t.status:
            counts = job.counts
            counts[t.status.value] -= 1
            counts[status.value] = counts.get(status.value, 0) + 1
            t.status = status
        t.reason = reason
        self._dirty_tasks.add(t)
        self._dirty_jobs.add(job)

    def _refresh(self, job: _Job) -> None:
        """PENDING / RUNNING / SUSPENDED from the job's flags, for an unfinished job."""
        if job.paused:
            self._set_status(job, S, "paused")
        elif job.running:
            reason = f"stopping: {job.ending[1]}" if job.ending is not None else None
            self._set_status(job, R, reason)
        else:
            self._set_status(job, P, None)

    # -- flushing ----------------------------------------------------------------
    def _flush(self) -> None:
        if self._dirty_jobs or self._dirty_tasks or self._new_history:
            self._write_dirty()
        if self._outbox:
            outbox, self._outbox = self._outbox, []
            for model in outbox:
                for callback in tuple(self._subscribers):
                    try:
                        callback(model)
                    except Exception as exc:
                        # a broken subscriber must not stop the scheduler: report it
                        # the way asyncio reports a failing callback
                        if self._loop is not None:
                            self._loop.call_exception_handler(
                                {"message": "aiofarm local driver: a subscriber failed", "exception": exc}
                            )

    def _write_dirty(self) -> None:
        db = self._require_db()
        self._updated += 1
        upd = self._updated
        jobs_rows = [
            (
                j.status.value,
                j.name,
                j.priority,
                dumps(j.tags),
                j.pool,
                j.started_at,
                j.finished_at,
                j.exit_code,
                j.reason,
                int(j.paused),
                dumps({k: v for k, v in j.counts.items() if v}),
                upd,
                j.seq,
            )
            for j in self._dirty_jobs
        ]
        for t in self._dirty_tasks:
            if t.proc is not None and t.pstart is None:
                t.pstart = _proc_start(t.proc.pid)
        task_rows = [
            (
                t.status.value,
                t.attempts,
                t.failures,
                t.exit_code,
                t.started_at,
                t.finished_at,
                t.reason,
                t.pid,
                t.pgid,
                t.pstart,
                t.job.seq,
                t.idx,
            )
            for t in self._dirty_tasks
        ]
        history = self._new_history
        self._dirty_jobs = set()
        self._dirty_tasks = set()
        self._new_history = []
        self._recent.clear()
        db.execute("BEGIN IMMEDIATE")
        try:
            if jobs_rows:
                db.executemany(
                    "UPDATE jobs SET status=?, name=?, priority=?, tags=?, pool=?, started_at=?,"
                    " finished_at=?, exit_code=?, reason=?, paused=?, task_counts=?, updated=?"
                    " WHERE seq=?",
                    jobs_rows,
                )
            if task_rows:
                db.executemany(
                    "UPDATE tasks SET status=?, attempts=?, failures=?, exit_code=?, started_at=?,"
                    " finished_at=?, reason=?, pid=?, pgid=?, pstart=? WHERE job_seq=? AND idx=?",
                    task_rows,
                )
            if history:
                db.executemany("INSERT INTO history (job_seq, time, status, reason) VALUES (?, ?, ?, ?)", history)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    # -- scheduling --------------------------------------------------------------
    def _enqueue(self, job: _Job, force: bool = False) -> None:
        if job.queued and not force:
            return
        pool = self._pools.get(job.pool)
        if pool is None:
            return
        job.version += 1
        job.queued = True
        heapq.heappush(pool.heap, (-job.priority, job.seq, job.version, job))
        self._kick()

    def _dispatch(self) -> None:
        if not self._worker_enabled or self._closing:
            return
        for pool in self._pools.values():
            heap = pool.heap
            while heap and pool.used < pool.slots:
                _, _, version, job = heap[0]
                if version != job.version:
                    heapq.heappop(heap)
                    continue
                limit = job.spec.max_workers
                if (
                    job.finished
                    or job.paused
                    or job.waiting
                    or job.ending is not None
                    or (limit is not None and job.running >= limit)
                ):
                    # re-queued by _check when what holds it changes
                    heapq.heappop(heap)
                    job.queued = False
                    continue
                task = None
                while job.ready:
                    cand = job.ready.popleft()
                    if cand.status is P and cand.proc is None:
                        task = cand
                        break
                if task is None:
                    heapq.heappop(heap)
                    job.queued = False
                    continue
                if job.slots > pool.slots - pool.used:
                    job.ready.appendleft(task)
                    break  # strict priority: nothing behind it starts first
                self._start(task, pool)

    def _run_spec(self, t: _Task) -> RunSpec:
        spec = t.job.spec
        if spec.template is not None:
            from ...openjd import taskrun as bundles

            workdir = os.path.join(self.state_dir, "work", str(t.job.seq), str(t.idx))
            return bundles.task_run(spec, t.step.name, t.params, workdir)
        assert spec.command is not None
        return RunSpec(argv=command_argv(spec.command), env=spec.env, cwd=spec.cwd, timeout=spec.timeout)

    def _log_path(self, seq: int) -> str:
        return os.path.join(self.state_dir, "logs", f"{seq}.log")

    def _start(self, t: _Task, pool: _Pool) -> None:
        job = t.job
        loop = self._loop
        assert loop is not None
        now = _now()
        t.attempts += 1
        t.started_at = now
        t.finished_at = None
        t.exit_code = None
        try:
            run = self._run_spec(t)
            env = dict(self._base_env)
            for key, value in run.env.items():
                env[os.fsencode(key)] = os.fsencode(value)
            env[b"AIOFARM_JOB_ID"] = os.fsencode(job.id)
            env[b"AIOFARM_TASK_ID"] = os.fsencode(t.id)
            env[b"AIOFARM_TASK_ATTEMPT"] = b"%d" % t.attempts
            proc = process.spawn(
                loop,
                run.argv,
                env=env,
                cwd=run.cwd,
                tty=job.spec.tty,
                stdin=job.spec.stdin,
                log_path=self._log_path(job.seq),
                job_id=job.id,
                task_id=t.id,
                task_index=t.idx,
                on_exit=functools.partial(self._on_exit, t),
            )
        except Exception as exc:  # whatever stops a start fails the attempt, not the farm
            message = f"cannot start: {exc}"
            _append_log(self._log_path(job.seq), t.idx, message)
            t.finished_at = now
            t.exit_code = 127
            job.last_code = 127
            self._task_status(t, R)  # keep counts right: PENDING -> RUNNING -> FAILED
            self._attempt_failed(t, message, 127)
            self._check(job)
            return
        t.proc = proc
        t.pid = t.pgid = proc.pid
        # the start time that guards crash recovery against pid reuse is read when the
        # RUNNING row is written (_write_dirty): reading /proc right after the exec
        # costs ~0.3 ms, and a task that ends before the next flush never needs it
        t.pstart = None
        t.grace = run.cancel_grace
        self._running.add(t)
        pool.used += job.slots
        job.running += 1
        if job.started_at is None:
            job.started_at = now
        self._task_status(t, R)
        self._refresh(job)
        # a template action's own timeout wins; the job's timeout covers the others
        timeout = run.timeout if run.timeout is not None else job.spec.timeout
        if timeout is not None and timeout > 0:
            t.timer = loop.call_later(timeout, self._on_timeout, t)

    def _on_timeout(self, t: _Task) -> None:
        t.timer = None
        if t.proc is not None:
            t.proc.log_message("timeout: the task ran longer than its limit; stopping it")
            self._terminate(t, "timeout")

    def _terminate(self, t: _Task, intent: str) -> None:
        """SIGTERM to the task's process group now, SIGKILL after the grace period."""
        proc = t.proc
        if proc is None:
            return
        already = t.intent is not None
        if not already or _INTENTS[intent] > _INTENTS[t.intent]:  # type: ignore[index]
            t.intent = intent
        if already:
            return
        proc.signal_group(_signal.SIGTERM)
        grace = t.grace if t.grace is not None else self.cancel_grace
        assert self._loop is not None
        t.kill_timer = self._loop.call_later(grace, proc.signal_group, _signal.SIGKILL)

    def _on_exit(self, t: _Task, proc: process.RunningTask) -> None:
        job = t.job
        for timer in (t.timer, t.kill_timer):
            if timer is not None:
                timer.cancel()
        t.timer = t.kill_timer = None
        t.proc = None
        self._running.discard(t)
        pool = self._pools.get(job.pool)
        if pool is not None:
            pool.used -= job.slots
        job.running -= 1
        code = proc.returncode
        t.exit_code = code
        t.finished_at = _now()
        job.last_code = code
        intent, t.intent = t.intent, None
        if intent == "requeue":
            t.attempts -= 1  # a stop for pause is not an attempt of the task
            self._task_status(t, P, "requeued: paused with stop_work")
            if t.step.released:
                job.ready.appendleft(t)
        elif intent == "lost":
            job.fail_code = code
            self._task_status(t, F, "lost: farm closed")
            job.failed += 1
            self._abort(job, "lost: farm closed")
        elif intent == "cancel":
            self._task_status(t, C, "canceled")
        elif intent is None and code == 0:
            self._task_status(t, OK)
            self._step_progress(t)
        else:
            self._attempt_failed(t, "timeout" if intent == "timeout" else _describe_exit(code), code)
        self._check(job)
        self._kick()

    def _attempt_failed(self, t: _Task, reason: str, code: int | None) -> None:
        job = t.job
        t.failures += 1
        job.fail_code = code
        if t.failures <= job.spec.retries and job.ending is None and not self._closing:
            self._task_status(t, P, f"retrying after {reason}")
            job.ready.appendleft(t)
            self._enqueue(job)
            return
        self._task_status(t, F, reason)
        job.failed += 1
        limit = job.spec.max_failed_tasks or 0
        if job.failed > limit:
            what = reason if len(job.tasks) == 1 else f"task {t.id} failed: {reason}"
            self._abort(job, what)

    def _step_progress(self, t: _Task) -> None:
        step = t.step
        step.remaining -= 1
        if step.remaining:
            return
        job = t.job
        released = False
        for nxt in step.dependants:
            if not nxt.released and all(d.remaining == 0 for d in nxt.deps):
                nxt.released = True
                job.ready.extend(x for x in nxt.tasks if x.status is P)
                released = True
        if released:
            self._enqueue(job)

    def _abort(self, job: _Job, reason: str, status: JobStatus = F) -> None:
        """End the job with ``status``: pending tasks will not run, running ones are stopped."""
        if job.finished:
            return
        if job.ending is None or (status is F and job.ending[0] is not F):
            job.ending = (status, reason)
        for t in job.tasks:
            if t.status is P:
                self._task_status(t, C, f"not run: {reason}")
            elif t.status is R:
                self._terminate(t, "lost" if reason.startswith("lost") else "cancel")
        job.ready.clear()
        self._check(job)

    def _check(self, job: _Job) -> None:
        """Finish the job when nothing is left to do; else set its active status."""
        if job.finished:
            return
        if job.running:
            self._refresh(job)
            if job.ready and not job.paused and not job.waiting and job.ending is None:
                self._enqueue(job)
            return
        if job.ending is not None:
            self._finish(job, *job.ending)
            return
        n = len(job.tasks)
        counts = job.counts
        if counts.get(OK.value, 0) == n:
            self._finish(job, OK, None)
            return
        if counts.get(P.value, 0) and counts.get(F.value, 0) and not job.ready:
            self._cancel_doomed(job)
        if not counts.get(P.value, 0):
            failed = counts.get(F.value, 0)
            self._finish(job, F, f"{failed} of {n} tasks failed")
            return
        self._refresh(job)
        if job.ready and not job.paused and not job.waiting:
            self._enqueue(job)

    def _cancel_doomed(self, job: _Job) -> None:
        """Pending tasks of steps that wait on a step with a failed task can never run
        (the failure stayed within ``max_failed_tasks``): they are CANCELED, so the
        job can end instead of waiting forever."""
        doomed: set[str] = set()
        for step in job.steps:  # plans list steps in dependency order
            if any(t.status is F for t in step.tasks) or any(d.name in doomed for d in step.deps):
                doomed.add(step.name)
        for step in job.steps:
            if step.name in doomed and not step.released:
                failed = next(d.name for d in step.deps if d.name in doomed)
                for t in step.tasks:
                    if t.status is P:
                        self._task_status(t, C, f"not run: step {failed} has failed tasks")

    def _finish(self, job: _Job, status: JobStatus, reason: str | None) -> None:
        job.finished = True
        job.finished_at = _now()
        job.queued = False
        job.ready.clear()
        if status is OK:
            job.exit_code = job.last_code if job.last_code is not None else 0
        else:
            job.exit_code = job.fail_code if job.fail_code is not None else job.last_code
        self._set_status(job, status, reason)
        self._jobs.pop(job.id, None)
        self._recent[job.id] = job
        for fut in job.done:
            if not fut.done():
                fut.set_result(None)
        job.done.clear()
        for dep_id in sorted(self._dependants.pop(job.id, ()), key=lambda i: self._jobs[i].seq if i in self._jobs else 0):
            other = self._jobs.get(dep_id)
            if other is None or other.finished:
                continue
            other.waiting.discard(job.id)
            if status is OK:
                self._check(other)
            else:
                self._abort(other, f"dependency {job.id} {status.value}")
        self._kick()

    def _lookup_status(self, job_id: str) -> JobStatus | None:
        job = self._jobs.get(job_id) or self._recent.get(job_id)
        if job is not None:
            return job.status
        row = self._require_db().execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return JobStatus(row[0]) if row else None

    def _resolve_deps(self, job: _Job) -> None:
        job.waiting = set()
        for dep in job.depends_on:
            other = self._jobs.get(dep)
            if other is not None and not other.finished:
                job.waiting.add(dep)
                self._dependants.setdefault(dep, set()).add(job.id)
                continue
            status = self._lookup_status(dep)
            if status is OK:
                continue
            what = "not found" if status is None else status.value
            self._abort(job, f"dependency {dep} {what}")
            return

    # -- reads -------------------------------------------------------------------
    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise FarmError("the local driver is not open")
        return self._db

    def _require_owner(self, what: str) -> None:
        self._require_db()
        if self.role != "owner":
            raise StateLocked(
                f"cannot {what}: {self.state_dir} is owned by another process; this client only reads it"
            )

    def _sync(self) -> sqlite3.Connection:
        db = self._require_db()
        if self.role == "owner":
            self._flush()
        return db

    def _jobs_from_db(self, where: str, params: Sequence[Any], tail: str = "") -> list[Job]:
        db = self._sync()
        rows = db.execute(f"SELECT {store.JOB_COLUMNS} FROM jobs WHERE {where} {tail}", params).fetchall()
        history = store.history_for(db, [r[0] for r in rows])
        return [store.job_from_row(r, history[r[0]], "local") for r in rows]

    @_translate
    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        out: dict[str, Job] = {}
        rest = []
        for job_id in ids:
            job = self._jobs.get(job_id) if self.role == "owner" else None
            if job is not None:
                out[job_id] = self._job_model(job)
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

    @_translate
    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        where: list[str] = []
        params: list[Any] = []
        if query.statuses is not None:
            if not query.statuses:
                return [], None
            where.append(f"status IN ({','.join('?' * len(query.statuses))})")
            params.extend(s.value for s in query.statuses)
        if query.name is not None:
            where.append("name = ?")
            params.append(query.name)
        if query.pool is not None:
            where.append("pool = ?")
            params.append(query.pool)
        if query.owners:
            where.append(f"owner IN ({','.join('?' * len(query.owners))})")
            params.extend(query.owners)
        if query.since is not None:
            # half a microsecond of slack: datetimes hold microseconds, we store floats;
            # the client re-checks the bounds exactly
            where.append("created_at >= ?")
            params.append(store.from_dt(query.since) - 5e-7)
        if query.until is not None:
            where.append("created_at <= ?")
            params.append(store.from_dt(query.until) + 5e-7)
        for tag in query.tags:
            # a superset: the client re-checks tags exactly
            where.append("instr(tags, ?) > 0")
            params.append(dumps(tag))
        if page_token is not None:
            try:
                after = int(page_token)
            except ValueError:
                raise InvalidSpec("page_token", f"not a token of the local driver: {page_token!r}") from None
            where.append("seq < ?" if query.reverse else "seq > ?")
            params.append(after)
        order = "DESC" if query.reverse else "ASC"
        size = max(1, int(page_size))
        jobs = self._jobs_from_db(
            " AND ".join(where) or "1", params, f"ORDER BY seq {order} LIMIT {size + 1}"
        )
        token = None
        if len(jobs) > size:
            jobs = jobs[:size]
            token = str(jobs[-1].raw["seq"])
        return jobs, token

    @_translate
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
                )
                for t in job.tasks
            ]
        db = self._sync()
        row = db.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobNotFound(job_id, driver="local")
        return store.tasks_from_db(db, row[0], job_id, self._log_path(row[0]))

    @_translate
    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        offset = logfile.decode_token(token)
        db = self._sync()
        job = self._jobs.get(job_id) if self.role == "owner" else None
        ids: dict[int, str]
        if job is not None:
            seq = job.seq
            ids = {t.idx: t.id for t in job.tasks}
        else:
            row = db.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise JobNotFound(job_id, driver="local")
            seq = row[0]
            ids = dict(db.execute("SELECT idx, id FROM tasks WHERE job_seq = ?", (seq,)).fetchall())
        task_index = None
        if query.task is not None:
            matches = [i for i, tid in ids.items() if tid == query.task or str(i) == query.task]
            if not matches:
                raise InvalidSpec("task", f"job {job_id} has no task {query.task!r} (tasks: {', '.join(ids.values())})")
            task_index = matches[0]
        if query.limit < 1:
            raise InvalidSpec("limit", "must be >= 1")
        lines, end = logfile.read_page(
            self._log_path(seq),
            offset,
            limit=query.limit,
            task_index=task_index,
            streams=query.streams,
            start=store.from_dt(query.start_time) if query.start_time else None,
            end=store.from_dt(query.end_time) if query.end_time else None,
            task_ids=ids,
        )
        return LogPage(tuple(lines), logfile.encode_token(end))

    # -- push --------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Job], None]) -> None:
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Job], None]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(callback)

    async def _reader_watch(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """A reader cannot hear the owner's changes: it watches the database's
        ``data_version`` (4 times a second, a cheap pragma) and pushes status changes
        of jobs the owner wrote since."""
        db = self._require_db()
        last = db.execute("SELECT max(updated) FROM jobs").fetchone()[0] or 0
        known: dict[str, JobStatus] = {}
        version = db.execute("PRAGMA data_version").fetchone()[0]
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            task_status.started()
            while True:
                await anyio.sleep(0.25)
                if self._db is None:
                    return
                if not self._subscribers:
                    continue
                try:
                    now_version = self._db.execute("PRAGMA data_version").fetchone()[0]
                    if now_version == version:
                        continue
                    version = now_version
                    changed = self._jobs_from_db("updated > ?", (last,), "ORDER BY updated")
                except sqlite3.Error:
                    continue
                for job in changed:
                    last = max(last, int(job.raw["updated"]))
                    if known.get(job.id) is not job.status:
                        known[job.id] = job.status
                        for callback in tuple(self._subscribers):
                            callback(job)

    # -- submit ------------------------------------------------------------------
    @_translate
    async def submit(self, specs: Sequence[JobSpec]) -> list[Job]:
        self._require_owner("submit")
        db = self._sync()
        plans, slots = self._validate(specs)
        now = _now()
        seq = self._next_seq
        batch_ids: dict[str, int] = {}
        jobs: list[_Job] = []
        explicit = [s.id for s in specs if s.id is not None]
        for spec, plan in zip(specs, plans, strict=True):
            job_id = spec.id if spec.id is not None else f"j{seq}"
            job = _Job(seq, job_id, spec)
            job.owner = self._owner
            job.created_at = now
            job.paused = spec.paused
            job.status = S if spec.paused else P
            job.reason = "paused" if spec.paused else None
            job.history = [StatusTransition(job.status, to_dt(now), job.reason)]  # type: ignore[arg-type]
            tidx = 0
            for sidx, step_plan in enumerate(plan):
                step = _Step(sidx, step_plan.name, step_plan.depends_on)
                job.steps.append(step)
                for n, tp in enumerate(step_plan.tasks):
                    t = _Task(job, tidx, f"{step.name}/{n}", step, tp.parameters)
                    job.tasks.append(t)
                    step.tasks.append(t)
                    tidx += 1
            self._link(job)
            jobs.append(job)
            batch_ids[job_id] = seq
            seq += 1
        generated = [j.id for j, s in zip(jobs, specs, strict=True) if s.id is None]
        if generated:
            taken = self._existing_ids(generated) | set(explicit)
            for job in jobs:
                if job.spec.id is None and job.id in taken:
                    job.id = f"j{job.seq}-{os.urandom(3).hex()}"
        job_rows = []
        step_rows = []
        task_rows = []
        hist_rows = []
        self._updated += 1  # readers pick up changes by this counter
        upd = self._updated
        for job, n_slots in zip(jobs, slots, strict=True):
            job.slots = n_slots
            job_rows.append(
                (
                    job.seq, job.id, job.name, job.status.value, job.owner, job.pool, dumps(job.tags),
                    job.description, job.priority, now, int(job.paused), job.slots, dumps(job.depends_on),
                    dumps(job.counts), upd, store.spec_to_json(job.spec),
                )
            )
            for step in job.steps:
                step_rows.append((job.seq, step.idx, step.name, dumps(step.depends_on)))
            for t in job.tasks:
                task_rows.append((job.seq, t.idx, t.id, t.step.idx, dumps(t.params) if t.params else "{}", "pending"))
            hist_rows.append((job.seq, now, job.status.value, job.reason))
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO jobs (seq, id, name, status, owner, pool, tags, description, priority,"
                " created_at, paused, slots, depends_on, task_counts, updated, spec)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                job_rows,
            )
            db.executemany("INSERT INTO steps (job_seq, idx, name, depends_on) VALUES (?, ?, ?, ?)", step_rows)
            db.executemany(
                "INSERT INTO tasks (job_seq, idx, id, step, parameters, status) VALUES (?, ?, ?, ?, ?, ?)",
                task_rows,
            )
            db.executemany("INSERT INTO history (job_seq, time, status, reason) VALUES (?, ?, ?, ?)", hist_rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._next_seq = seq
        for job in jobs:
            self._jobs[job.id] = job
        for job in jobs:
            self._resolve_deps(job)
            if not job.finished:
                self._check(job)
        models = [self._job_model(j) for j in jobs]
        if self._subscribers:
            self._outbox.extend(m for m, j in zip(models, jobs, strict=True) if len(j.history) == 1)
        self._flush()
        self._kick()
        return models

    def _existing_ids(self, ids: Sequence[str]) -> set[str]:
        db = self._require_db()
        found: set[str] = set()
        for chunk in store.chunks(list(ids), 900):
            marks = ",".join("?" * len(chunk))
            found.update(r[0] for r in db.execute(f"SELECT id FROM jobs WHERE id IN ({marks})", chunk))
        return found

    def _validate(self, specs: Sequence[JobSpec]) -> tuple[list[tuple[StepPlan, ...]], list[int]]:
        plans: list[tuple[StepPlan, ...]] = []
        slots: list[int] = []
        seen: dict[str, int] = {}
        explicit = [s.id for s in specs if s.id is not None]
        existing = self._existing_ids(explicit) if explicit else set()
        dep_ids = {d for s in specs for d in s.depends_on}
        known_deps = self._existing_ids(list(dep_ids)) if dep_ids else set()
        for i, spec in enumerate(specs):
            field = f"specs[{i}]"
            if not isinstance(spec, JobSpec):
                raise InvalidSpec(field, f"must be an aiofarm.JobSpec, got {type(spec).__name__}")
            if spec.template is None:
                if spec.command is None:
                    raise InvalidSpec(f"{field}.command", "a job needs a command (or a template)")
                if not spec.command or (isinstance(spec.command, str) and not spec.command.strip()):
                    raise InvalidSpec(f"{field}.command", "cannot be empty")
            if isinstance(spec.priority, bool) or not isinstance(spec.priority, int) or spec.priority < 0:
                raise InvalidSpec(f"{field}.priority", f"must be an integer >= 0, got {spec.priority!r}")
            if spec.retries < 0:
                raise InvalidSpec(f"{field}.retries", "must be >= 0")
            if spec.timeout is not None and spec.timeout <= 0:
                raise InvalidSpec(f"{field}.timeout", "must be > 0 seconds")
            pool_name = spec.pool or DEFAULT_POOL
            pool = self._pools.get(pool_name)
            if pool is None:
                raise InvalidSpec(
                    f"{field}.pool", f"no pool {pool_name!r} on local:// (pools: {', '.join(sorted(self._pools))})"
                )
            n_slots = max(1, math.ceil(spec.resources.cpu))
            if n_slots > pool.slots:
                raise InvalidSpec(
                    f"{field}.resources.cpu",
                    f"needs {n_slots} slots but pool {pool_name!r} has only {pool.slots}",
                )
            for key, value in spec.env.items():
                if not isinstance(key, str) or not isinstance(value, str) or "=" in key or not key:
                    raise InvalidSpec(f"{field}.env[{key!r}]", "names and values must be strings; a name has no '='")
            if spec.max_workers is not None and spec.max_workers < 1:
                raise InvalidSpec(f"{field}.max_workers", "must be >= 1")
            if spec.cwd is not None and not os.path.isdir(spec.cwd):
                raise InvalidSpec(f"{field}.cwd", f"no such directory: {spec.cwd}")
            if spec.id is not None:
                if spec.id in seen:
                    raise InvalidSpec(f"{field}.id", f"duplicate id {spec.id!r} (also specs[{seen[spec.id]}])")
                if spec.id in existing:
                    raise InvalidSpec(f"{field}.id", f"a job {spec.id!r} already exists")
                seen[spec.id] = i
            for dep in spec.depends_on:
                if dep not in seen and dep not in known_deps:
                    raise InvalidSpec(f"{field}.depends_on", f"unknown job id {dep!r}")
                if dep == spec.id:
                    raise InvalidSpec(f"{field}.depends_on", "a job cannot depend on itself")
            if spec.template is None:
                plans.append((StepPlan(COMMAND_STEP, (_ONE_TASK,)),))
            else:
                plan = plan_job(spec)
                if not plan or not any(s.tasks for s in plan):
                    raise InvalidSpec(f"{field}.template", "the template has no task to run")
                plans.append(plan)
            slots.append(n_slots)
        return plans, slots

    # -- control -----------------------------------------------------------------
    def _active_or_check(self, ids: Sequence[str]) -> list[tuple[str, _Job | None]]:
        out: list[tuple[str, _Job | None]] = []
        missing = [i for i in ids if i not in self._jobs]
        found = self._existing_ids(missing) if missing else set()
        for job_id in ids:
            job = self._jobs.get(job_id)
            if job is None and job_id not in found:
                raise JobNotFound(job_id, driver="local")
            out.append((job_id, job))
        return out

    @_translate
    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        self._require_owner(action.value)
        self._sync()
        targets = self._active_or_check(ids)
        if action is Action.CANCEL:
            for _, job in targets:
                if job is not None:
                    self._cancel(job, stop_work)
        elif action is Action.PAUSE:
            for _, job in targets:
                if job is not None and not job.finished:
                    job.paused = True
                    if stop_work:
                        for t in job.tasks:
                            if t.status is R:
                                self._terminate(t, "requeue")
                    self._refresh(job)
        elif action is Action.RESUME:
            for _, job in targets:
                if job is not None and job.paused and not job.finished:
                    job.paused = False
                    self._check(job)
        elif action is Action.RETRY:
            self._retry([i for i, _ in targets])
        elif action is Action.DELETE:
            await self._delete(targets)
        self._kick()
        self._flush()

    def _cancel(self, job: _Job, stop_work: bool) -> None:
        if job.finished:
            return
        if job.ending is None:
            job.ending = (C, "canceled")
        for t in job.tasks:
            if t.status is P:
                self._task_status(t, C, "not run: canceled")
            elif t.status is R and stop_work:
                self._terminate(t, "cancel")
        job.ready.clear()
        self._check(job)

    def _retry(self, ids: Sequence[str]) -> None:
        finished = [i for i in ids if i not in self._jobs]
        loaded: dict[str, _Job] = {}
        if finished:
            for chunk in store.chunks(finished, 900):
                marks = ",".join("?" * len(chunk))
                for job in self._load_jobs(f"id IN ({marks})", chunk):
                    loaded[job.id] = job
        for job in loaded.values():
            if job.pool not in self._pools:
                raise InvalidSpec("ids", f"job {job.id} ran in pool {job.pool!r}, which no longer exists")
        for job_id in ids:
            found = self._jobs.get(job_id) or loaded.get(job_id)
            if found is None:
                continue
            job = found
            reset = [t for t in job.tasks if t.status in (F, C)]
            if not reset:
                continue
            for t in reset:
                t.failures = 0
                self._task_status(t, P, None)
            job.failed = 0
            job.ending = None
            job.fail_code = None
            if job_id in loaded:
                job.finished = False
                job.finished_at = None
                job.exit_code = None
                self._jobs[job.id] = job
                self._rebuild_ready(job)
                self._set_status(job, S if job.paused else P, "retried")
                self._resolve_deps(job)
            else:
                self._rebuild_ready(job)
            self._check(job)

    async def _delete(self, targets: Sequence[tuple[str, _Job | None]]) -> None:
        # deleting an active job cancels it (stop_work) and waits until its processes
        # are gone, then deletes it: a deleted job never leaves a process behind
        waits = []
        assert self._loop is not None
        for _, job in targets:
            if job is not None and not job.finished:
                fut: asyncio.Future[None] = self._loop.create_future()
                job.done.append(fut)
                waits.append(fut)
                self._cancel(job, True)
        if waits:
            self._kick()
            for fut in waits:
                await fut
        db = self._sync()
        ids = [i for i, _ in targets]
        seqs = []
        for chunk in store.chunks(ids, 900):
            marks = ",".join("?" * len(chunk))
            seqs += [r[0] for r in db.execute(f"SELECT seq FROM jobs WHERE id IN ({marks})", chunk)]
        db.execute("BEGIN IMMEDIATE")
        try:
            for chunk in store.chunks(seqs, 900):
                marks = ",".join("?" * len(chunk))
                for table, col in (("jobs", "seq"), ("steps", "job_seq"), ("tasks", "job_seq"), ("history", "job_seq")):
                    db.execute(f"DELETE FROM {table} WHERE {col} IN ({marks})", chunk)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        for seq in seqs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._log_path(seq))
            shutil.rmtree(os.path.join(self.state_dir, "work", str(seq)), ignore_errors=True)

    @_translate
    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        self._require_owner("update")
        db = self._sync()
        if changes.priority is not None and (isinstance(changes.priority, bool) or changes.priority < 0):
            raise InvalidSpec("priority", "must be an integer >= 0")
        targets = self._active_or_check(ids)
        finished = []
        for job_id, job in targets:
            if job is None:
                finished.append(job_id)
                continue
            if changes.priority is not None and changes.priority != job.priority:
                job.priority = changes.priority
                if job.queued:
                    self._enqueue(job, force=True)
            if changes.name is not None:
                job.name = changes.name
            if changes.tags is not None:
                job.tags = tuple(changes.tags)
            self._dirty_jobs.add(job)
        self._flush()
        if finished:
            sets: list[str] = []
            params: list[Any] = []
            if changes.priority is not None:
                sets.append("priority = ?")
                params.append(changes.priority)
            if changes.name is not None:
                sets.append("name = ?")
                params.append(changes.name)
            if changes.tags is not None:
                sets.append("tags = ?")
                params.append(dumps(tuple(changes.tags)))
            if sets:
                db.execute("BEGIN IMMEDIATE")
                try:
                    db.executemany(
                        f"UPDATE jobs SET {', '.join(sets)} WHERE id = ?", [(*params, i) for i in finished]
                    )
                    db.execute("COMMIT")
                except BaseException:
                    db.execute("ROLLBACK")
                    raise

    @_translate
    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        self._require_owner("send_signal")
        job = self._jobs.get(job_id)
        if job is None:
            status = self._lookup_status(job_id)
            if status is None:
                raise JobNotFound(job_id, driver="local")
            raise JobNotRunning(job_id, status, "send_signal")
        procs = [t.proc for t in job.tasks if t.proc is not None]
        if not procs:
            raise JobNotRunning(job_id, job.status, "send_signal")
        for proc in procs:
            proc.signal_group(int(sig))

    async def connect_port(self, job_id: str, port: int) -> anyio.abc.ByteStream:
        # a byte stream for the generic relay; the address comes from interactive.py
        self._require_db()
        host, real_port = await self.port_address(job_id, port)
        try:
            return await anyio.connect_tcp(host, real_port)
        except OSError as exc:
            raise ConnectionLost(f"cannot connect to port {port} of job {job_id}: {exc.strerror or exc}") from None

    def running_tasks(self, job_id: str) -> list[process.RunningTask]:
        """The live attempts of a job (the hook for interactive.py); [] when none runs
        or this driver is a reader."""
        job = self._jobs.get(job_id)
        if job is None:
            return []
        return [t.proc for t in job.tasks if t.proc is not None]

    # -- interactive: delegated to interactive.py (the "interactive" engineer's) ----
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

    @_translate
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
        done = job.counts.get(OK.value, 0)
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
        pending = [t for t in job.tasks if t.status is P]
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

    # -- pools -------------------------------------------------------------------
    def _pool_model(self, pool_id: int, name: str, slots: int) -> Pool:
        return Pool(id=str(pool_id), name=name, slots=slots, driver="local", raw={"default": name == DEFAULT_POOL})

    @_translate
    async def list_pools(self) -> list[Pool]:
        db = self._sync()
        return [self._pool_model(*r) for r in db.execute("SELECT id, name, slots FROM pools ORDER BY id")]

    def _find_pool(self, pool_id: str) -> tuple[int, str, int]:
        db = self._require_db()
        row = db.execute("SELECT id, name, slots FROM pools WHERE CAST(id AS TEXT) = ?", (pool_id,)).fetchone()
        if row is None:
            row = db.execute("SELECT id, name, slots FROM pools WHERE name = ?", (pool_id,)).fetchone()
        if row is None:
            raise PoolNotFound(pool_id, driver="local")
        return (row[0], row[1], row[2])

    def _write(self, sql: str, params: Sequence[Any]) -> None:
        db = self._require_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(sql, params)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    @_translate
    async def create_pool(self, name: str, slots: int | None) -> Pool:
        self._require_owner("create a pool")
        if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
            raise InvalidSpec("name", f"{name!r}: 1-64 letters, digits and ._-, starting with a letter or digit")
        if slots is None:
            slots = os.cpu_count() or 1
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidSpec("slots", f"must be an integer >= 1, got {slots!r}")
        if name in self._pools:
            raise InvalidSpec("name", f"a pool {name!r} already exists")
        self._write("INSERT INTO pools (name, slots, created_at) VALUES (?, ?, ?)", (name, slots, _now()))
        pid_, name, slots = self._find_pool(name)
        self._pools[name] = _Pool(pid_, name, slots)
        return self._pool_model(pid_, name, slots)

    @_translate
    async def rename_pool(self, pool_id: str, new_name: str) -> Pool:
        self._require_owner("rename a pool")
        self._sync()
        pid_, name, slots = self._find_pool(pool_id)
        if not isinstance(new_name, str) or not _POOL_NAME.fullmatch(new_name):
            raise InvalidSpec("new_name", f"{new_name!r}: 1-64 letters, digits and ._-")
        if name == DEFAULT_POOL:
            raise InvalidSpec("pool", "the default pool cannot be renamed")
        if new_name == name:
            return self._pool_model(pid_, name, slots)
        if new_name in self._pools:
            raise InvalidSpec("new_name", f"a pool {new_name!r} already exists")
        db = self._require_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute("UPDATE pools SET name = ? WHERE id = ?", (new_name, pid_))
            db.execute("UPDATE jobs SET pool = ? WHERE pool = ?", (new_name, name))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        pool = self._pools.pop(name)
        pool.name = new_name
        self._pools[new_name] = pool
        for job in self._jobs.values():
            if job.pool == name:
                job.pool = new_name
        return self._pool_model(pid_, new_name, slots)

    @_translate
    async def delete_pool(self, pool_id: str) -> None:
        self._require_owner("delete a pool")
        self._sync()
        pid_, name, _ = self._find_pool(pool_id)
        if name == DEFAULT_POOL:
            raise InvalidSpec("pool", "the default pool cannot be deleted")
        active = sum(1 for j in self._jobs.values() if j.pool == name)
        if active:
            raise InvalidSpec("pool", f"pool {name!r} has {active} active job(s); cancel or move them first")
        self._write("DELETE FROM pools WHERE id = ?", (pid_,))
        self._pools.pop(name, None)

    @_translate
    async def capacity(self) -> dict[str, int]:
        if self.role == "owner":
            self._require_db()
            return {p.name: max(0, p.slots - p.used) for p in self._pools.values()}
        db = self._sync()
        used = dict(
            db.execute(
                "SELECT j.pool, sum(j.slots) FROM tasks t JOIN jobs j ON j.seq = t.job_seq"
                " WHERE t.status = 'running' GROUP BY j.pool"
            ).fetchall()
        )
        return {name: max(0, slots - (used.get(name) or 0)) for name, slots in db.execute("SELECT name, slots FROM pools")}

    # -- workers -----------------------------------------------------------------
    @_translate
    async def list_workers(self) -> list[Worker]:
        db = self._sync()
        enabled, reason = self._worker_enabled, self._worker_reason
        if self.role != "owner":
            meta = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'worker.%'").fetchall())
            enabled = meta.get("worker.enabled", "1") == "1"
            reason = meta.get("worker.reason") or None
            busy = db.execute("SELECT count(*) FROM tasks WHERE status = 'running'").fetchone()[0]
        else:
            busy = len(self._running)
        status = "disabled" if not enabled else ("busy" if busy else "idle")
        return [
            Worker(
                id=self.hostname,
                name=self.hostname,
                enabled=enabled,
                status=status,
                pool=None,
                cpus=os.cpu_count(),
                reason=reason,
                raw={"running_tasks": busy},
            )
        ]

    @_translate
    async def set_workers_enabled(
        self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None
    ) -> None:
        self._require_owner("enable or disable workers")
        for i, name in enumerate(names):
            if name != self.hostname:
                raise InvalidSpec(f"names[{i}]", f"no worker {name!r}; the local farm has one: {self.hostname!r}")
        self._worker_enabled = enabled
        self._worker_reason = None if enabled else reason
        db = self._require_db()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [("worker.enabled", "1" if enabled else "0"), ("worker.reason", self._worker_reason or "")],
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        if not enabled and stop_work:
            for t in list(self._running):
                self._terminate(t, "requeue")
        self._kick()


_ONE_TASK = TaskPlan()


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None


def _str_option(options: Mapping[str, Any], key: str) -> str:
    value = options[key]
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidSpec(f"options.{key}", f"must be a path string, got {type(value).__name__}")
    return str(os.fspath(value))


def _float_option(options: Mapping[str, Any], key: str, default: float) -> float:
    value = options.get(key, default)
    if isinstance(value, bool):
        raise InvalidSpec(f"options.{key}", f"must be a number of seconds, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"options.{key}", f"must be a number of seconds, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise InvalidSpec(f"options.{key}", f"must be a finite number >= 0, got {value!r}")
    return out


def _append_log(path: str, task_index: int, text: str) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, logfile.format_records(b"x", task_index, [text.encode()], time.time()))
        finally:
            os.close(fd)


def _kill_lost(pid: int | None, pgid: int | None, pstart: float | None) -> None:
    """Kill the process group of a task whose owner died, unless the ids were recycled."""
    if pgid is None:
        return
    import psutil  # type: ignore[import-untyped,unused-ignore]

    leader_start = _proc_start(pgid)
    if leader_start is not None and pstart is not None and leader_start != pstart:
        return  # pid reused by an unrelated process that leads its own group: not ours
    if leader_start is None:
        # the leader is gone; members left in the group are our orphans unless they
        # started before our task did (then the group id was reused: impossible to be ours)
        members = []
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == pgid:
                    members.append(p)
        if not members:
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, _signal.SIGKILL)
