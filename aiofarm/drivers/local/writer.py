"""Writing the farm's changes to SQLite so that the state never lies.

The scheduler marks what changed (jobs, tasks, new history) and the writer commits
it in one transaction per round. A write that fails (a full disk, an I/O error)
drops nothing: the changes stay pending, the writer retries with back-off until it
succeeds, pushed events wait until what they report is on disk, and callers whose
change cannot be recorded get :class:`~aiofarm.errors.StateError` naming what. Reads
keep working from what is committed (and the scheduler's memory).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import os
import sqlite3
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import anyio

from ...backoff import Backoff
from ...errors import BackendError, FarmError, StateError
from ...models import Job
from ..base import Driver
from . import store
from .codec import dumps
from .model import FarmJob, FarmTask, proc_start

if TYPE_CHECKING:
    import anyio.abc

#: seconds between commits while changes keep coming: a burst of changes costs few commits
FLUSH_INTERVAL = 0.01


def storage_message(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return str(exc)


class StateWriter(Driver):
    """Holds the database and what has changed in memory but is not on disk yet."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = os.path.abspath(state_dir)
        self._db: sqlite3.Connection | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._scopes: list[anyio.CancelScope] = []  # of our background tasks
        self._flush_wake: asyncio.Event | None = None
        self._subscribers: list[Callable[[Job], None]] = []
        self._recent: dict[str, FarmJob] = {}  # finished since the last flush
        self._dirty_jobs: set[FarmJob] = set()
        self._dirty_tasks: set[FarmTask] = set()
        self._new_history: list[tuple[int, float, str, str | None]] = []
        self._outbox: list[Job] = []
        self._updated = 0
        #: why the last write failed (None: the last write succeeded)
        self.write_error: str | None = None
        self._write_backoff = Backoff(0.05, 2.0)

    # -- access ------------------------------------------------------------------
    def _require_db(self) -> sqlite3.Connection:
        if self._db is None:
            raise FarmError("the local farm is not open")
        return self._db

    def _pending(self) -> bool:
        return bool(self._dirty_jobs or self._dirty_tasks or self._new_history)

    def _record(self, operation: str) -> None:
        """Before a caller's change: everything pending must be on disk first, so the
        caller hears now (StateError) when its change could not be recorded."""
        if not self._flush():
            raise StateError(operation, self.write_error or "the state cannot be written")

    def _committed(self, operation: str) -> None:
        """After a caller's change: write it; StateError if it stays pending (the farm
        keeps it and writes it as soon as it can)."""
        if not self._flush():
            raise StateError(
                operation, f"{self.write_error}; the change is kept and written once space returns"
            )

    def _storage_failed(self, operation: str, exc: BaseException) -> StateError:
        self.write_error = storage_message(exc)
        return StateError(operation, self.write_error)

    # -- push --------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Job], None]) -> None:
        self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Job], None]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(callback)

    def _deliver(self) -> None:
        outbox, self._outbox = self._outbox, []
        for model in outbox:
            for callback in tuple(self._subscribers):
                try:
                    callback(model)
                except Exception as exc:
                    # a broken subscriber must not stop the scheduler: report it the way
                    # asyncio reports a failing callback
                    if self._loop is not None:
                        self._loop.call_exception_handler(
                            {"message": "aiofarm local farm: a subscriber failed", "exception": exc}
                        )

    # -- flushing ----------------------------------------------------------------
    def _flush(self) -> bool:
        """Write what changed; True when nothing is left pending. Events are delivered
        only once what they report is committed."""
        if self._pending() or self.write_error is not None:
            try:
                self._write_dirty()
            except (sqlite3.Error, OSError) as exc:
                self.write_error = storage_message(exc)
                if self._flush_wake is not None:
                    self._flush_wake.set()  # the flusher retries with back-off
                return False
            if self.write_error is not None:
                self.write_error = None
                self._write_backoff.reset()
                self._on_write_recovered()
        if self._outbox:
            self._deliver()
        return True

    def _on_write_recovered(self) -> None:
        """Hook: writes work again (the scheduler restarts dispatching)."""

    def _write_dirty(self) -> None:
        db = self._require_db()
        upd = self._updated + 1
        jobs = list(self._dirty_jobs)
        tasks = list(self._dirty_tasks)
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
            for j in jobs
        ]
        started = []
        for t in tasks:
            if t.proc is not None and t.pstart is None:
                t.pstart = proc_start(t.proc.pid)
            if t.pid is not None and t.launch is not None:
                started.append((t.job.seq, t.idx))
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
                t.progress,
                t.status_message,
                t.job.seq,
                t.idx,
            )
            for t in tasks
        ]
        history = self._new_history
        # nothing is dropped before the commit: on failure every change stays pending
        store.write_changes(db, jobs_rows, task_rows, history, started, probe=self.write_error is not None)
        self._updated = upd
        self._dirty_jobs.difference_update(jobs)
        self._dirty_tasks.difference_update(tasks)
        del self._new_history[: len(history)]
        for t in tasks:
            if t.pid is not None:
                t.launch = None
        self._recent.clear()

    async def _flusher(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Writes what changed: at once after a quiet spell, then at most once per
        FLUSH_INTERVAL while changes keep coming. After a failed write it retries with
        back-off until the write succeeds."""
        wake = self._flush_wake
        assert wake is not None
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            task_status.started()
            while True:
                await wake.wait()
                wake.clear()
                if self._flush():
                    await anyio.sleep(FLUSH_INTERVAL)
                else:
                    await self._write_backoff.sleep()
                    wake.set()

    def _mark_changed(self) -> None:
        if self._flush_wake is not None and (self._pending() or self._outbox):
            self._flush_wake.set()


_Fn = TypeVar("_Fn", bound=Callable[..., Awaitable[Any]])


def translate(fn: _Fn) -> _Fn:
    """sqlite3 and OSError never cross the driver boundary: a failed write is a
    StateError naming the operation, anything else a BackendError."""

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await fn(*args, **kwargs)
        except FarmError:
            raise
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.OperationalError) and _is_storage_failure(str(exc)):
                raise StateError(fn.__name__, str(exc)) from exc
            raise BackendError("local", type(exc).__name__, str(exc)) from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
                raise StateError(fn.__name__, storage_message(exc)) from exc
            raise BackendError("local", exc.errno, str(exc)) from exc

    return cast(_Fn, wrapper)


def _is_storage_failure(message: str) -> bool:
    return any(w in message for w in ("disk", "full", "I/O", "readonly", "read-only"))
