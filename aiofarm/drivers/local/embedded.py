"""A local farm in this process: the farm service runs one, and ``local://...?embedded=true``
gives one to a client directly (its jobs then end with the process).

One instance is either the *owner* of its state dir (it holds an flock on
``<state>/lock`` and runs the scheduler) or, in embedded mode only, a *reader*
(it reads the same SQLite file and log files; mutating calls raise
:class:`StateLocked`). Opening as owner recovers what a dead owner left: tasks it
had launched are killed (never run again) and their jobs FAILED with the reason
``lost: farm service died``; pending and suspended jobs carry on.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ...errors import BackendError, InvalidSpec, StateLocked
from ...models import Capability
from ..base import host_exec_limits
from . import config, processes, store
from .model import DEFAULT_POOL, FAILED, LOST_REASON, RUNNING, FarmPool, now
from .submit import Submit

if TYPE_CHECKING:
    import anyio.abc
    import yarl

__all__ = ["CAPABILITIES", "EmbeddedDriver", "private_dir"]

CAPABILITIES = frozenset(
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
        Capability.SUBMIT_ENVIRONMENTS,
        Capability.CANCEL_STOP_WORK,
        Capability.PAUSE_STOP_WORK,
        Capability.LOGS_SINCE,
        Capability.LOGS_TIMESTAMPS,
        Capability.LOGS_STREAMS,
        Capability.LOGS_TASK,
        Capability.LOGS_ATTEMPT,
        Capability.ATTACH_BATCH_STEP,
        Capability.EXEC_TTY,
        Capability.WORKERS_STOP_WORK,
        Capability.FUNCTIONS_MAX_CONCURRENCY,
    }
)


def private_dir(path: str) -> None:
    """Create ``path`` (and parents) and make it 0700 whatever the umask."""
    os.makedirs(path, mode=0o700, exist_ok=True)
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o700)


class EmbeddedDriver(Submit):
    """The farm itself. Options: see :mod:`.config` (``cancel_grace``, ``slots``, ``role``)."""

    name: ClassVar[str] = "local"
    exec_limits = host_exec_limits()
    capabilities: ClassVar[frozenset[Capability]] = CAPABILITIES
    max_batch_get: ClassVar[int] = 900  # SQLite's bound-parameter budget per IN (...)
    jobs_outlive_client: ClassVar[bool] = False  # the farm lives in the client's process

    def __init__(
        self,
        state_dir: str,
        *,
        cancel_grace: float = 10.0,
        slots: int | None = None,
        role: str = "auto",
    ) -> None:
        super().__init__(state_dir, cancel_grace=cancel_grace)
        self.default_slots = slots
        self.wanted_role = role
        self._lock_fd: int | None = None

    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> EmbeddedDriver:
        if "embedded" not in url.query and "embedded" not in options:
            options = {**options, "embedded": True}  # this class is the embedded farm
        return cls.from_config(config.parse(url, options))

    @classmethod
    def from_config(cls, cfg: config.FarmConfig) -> EmbeddedDriver:
        grace = 10.0 if cfg.cancel_grace is None else cfg.cancel_grace
        return cls(cfg.state_dir, cancel_grace=grace, slots=cfg.slots, role=cfg.role)

    # -- lifecycle ---------------------------------------------------------------
    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            private_dir(self.state_dir)
            private_dir(os.path.join(self.state_dir, "logs"))
        except OSError as exc:
            raise InvalidSpec("url", f"cannot create the state dir {self.state_dir}: {exc.strerror}") from None
        self.role = self._take_lock()
        try:
            self._db = store.connect(os.path.join(self.state_dir, "farm.sqlite"))
            store.init_schema(self._db)
            if self.role == "owner":
                self._open_owner()
        except (sqlite3.Error, OSError) as exc:
            raise BackendError("local", type(exc).__name__, f"{self.state_dir}: {exc}") from exc
        if self.role == "owner":
            self._wake = asyncio.Event()
            self._flush_wake = asyncio.Event()
            await task_group.start(self._scheduler)
            await task_group.start(self._flusher)
        else:
            # a reader cannot hear the owner's changes: it is polled by the client's
            # one poller (the Hub), like a remote back end, instead of pushing
            self.capabilities = CAPABILITIES - {Capability.PUSH}  # type: ignore[misc]

    def _take_lock(self) -> str:
        if self.wanted_role == "reader":
            return "reader"
        fd = os.open(os.path.join(self.state_dir, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            if self.wanted_role == "owner":
                raise StateLocked(
                    f"{self.state_dir} is owned by another live process (role=owner was asked)"
                ) from None
            return "reader"
        os.fchmod(fd, 0o600)
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

    def active_jobs(self) -> int:
        """Jobs not finished (pending, running, suspended)."""
        return len(self._jobs)

    def running_jobs(self) -> int:
        return sum(1 for j in self._jobs.values() if j.running)

    def pending_jobs(self) -> int:
        """Jobs waiting to run (not paused): the farm has work to do for them."""
        return sum(1 for j in self._jobs.values() if not j.running and not j.paused)

    async def wait_idle(self) -> None:
        """Until no task runs (after a cancel of everything)."""
        for t in list(self._running):
            if t.proc is not None:
                await t.proc.wait()

    def job_active(self, job_id: str) -> bool:
        """Whether the job is not finished (as this owner knows it)."""
        return job_id in self._jobs

    def active_ids(self) -> list[str]:
        return list(self._jobs)

    async def set_default_slots(self, slots: int) -> None:
        """Resize the default pool (a client's ``slots`` option)."""
        if isinstance(slots, bool) or slots < 1:
            raise InvalidSpec("options.slots", f"must be an integer >= 1, got {slots!r}")
        self._record("resize the default pool")
        store.ensure_default_pool(self._require_db(), DEFAULT_POOL, slots, True, now())
        self.default_slots = slots
        pool = self._pools.get(DEFAULT_POOL)
        if pool is not None:
            pool.slots = slots
        self._kick()

    # -- owner state: load and recover -------------------------------------------
    def _open_owner(self) -> None:
        db = self._require_db()
        # bytes: Popen then skips encoding ~80 variables per spawn (~0.1 ms)
        self._base_env = dict(os.environb)
        self._base_env.pop(b"AIOFARM_LAUNCH", None)
        self._next_seq, self._updated = store.counters(db)
        self._updated -= 1
        self._worker_enabled, self._worker_reason = store.worker_meta(db)
        cpus = os.cpu_count() or 1
        store.ensure_default_pool(
            db, DEFAULT_POOL, self.default_slots or cpus, self.default_slots is not None, now()
        )
        for pid_, name, slots in store.pools(db):
            self._pools[name] = FarmPool(pid_, name, slots)
        jobs = self._load_jobs("status IN ('pending', 'running', 'suspended')", ())
        for job in jobs:
            self._jobs[job.id] = job
        # launched but maybe not yet seen running: find their processes by token
        launched = store.launches(db)
        processes.kill_launched([token for token, _, _ in launched])
        by_seq = {j.seq: j for j in jobs}
        lost_tasks = {(seq, idx) for _, seq, idx in launched}
        lost = []
        for job in jobs:
            hit = False
            for t in job.tasks:
                if t.status is RUNNING:
                    processes.kill_lost(t.pid, t.pgid, t.pstart)
                elif (job.seq, t.idx) in lost_tasks and by_seq.get(job.seq) is job and t.status.is_active:
                    self._task_status(t, RUNNING)  # keep counts right: -> RUNNING -> FAILED
                else:
                    continue
                t.exit_code = None
                t.finished_at = now()
                self._task_status(t, FAILED, LOST_REASON)
                job.failed += 1
                hit = True
            if hit:
                lost.append(job)
        for job in lost:
            self._abort(job, LOST_REASON)
        for job in jobs:
            if not job.finished:
                self._resolve_deps(job)
        for job in jobs:
            if not job.finished:
                self._check(job)
        if not self._flush():
            raise OSError(self.write_error or "cannot write the state")
        if launched:
            store.clear_launches(db)
