"""What the Hub (aiofarm/watch.py) feeds: one subscription per ``wait``,
``as_completed``, ``watch`` or held job, each told every known state of its ids
(or, for a filter watch, of every job matching its filter) and left to decide
what is news."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .models import Job, JobStatus

if TYPE_CHECKING:
    from .where import Expr

__all__ = ["CallbackSubscription", "FilterSubscription", "Subscription", "Waiter", "version"]


def version(job: Job) -> int:
    """Status transitions only accumulate, so the length of the history orders two
    snapshots of one job; this keeps a late batched read from undoing a push."""
    return len(job.history)


class Subscription:
    """Receives every known state of its ids. Subclasses decide what to do with it."""

    __slots__ = ("max_interval",)

    def __init__(self, max_interval: float) -> None:
        self.max_interval = max_interval

    @property
    def ids(self) -> tuple[str, ...]:
        """The job ids this subscription watches."""
        raise NotImplementedError

    def offer(self, job: Job) -> None:
        raise NotImplementedError

    def fail(self, job_id: str, exc: BaseException) -> None:
        raise NotImplementedError


class Waiter(Subscription):
    """One job. It holds a Job only until the waiting coroutine takes it, so ten
    thousand waits on pending jobs keep a status and a version each, not a Job."""

    __slots__ = ("_exc", "_future", "_news", "job_id", "seen", "version")

    def __init__(self, job_id: str, max_interval: float) -> None:
        super().__init__(max_interval)
        # no ``ids`` tuple kept per waiter (48 B each): the property makes one when
        # the hub registers or unregisters it
        self.job_id = job_id
        self._news: Job | None = None  # a state with a status the waiter has not seen
        self._future: asyncio.Future[None] | None = None
        self._exc: BaseException | None = None
        self.seen: JobStatus | None = None
        self.version = -1

    @property
    def ids(self) -> tuple[str, ...]:
        return (self.job_id,)

    def offer(self, job: Job) -> None:
        v = version(job)
        if v < self.version:
            return
        self.version = v
        if job.status is self.seen:
            self._news = None  # back to what the waiter last saw: nothing to tell
            return
        self._news = job
        fut = self._future
        if fut is not None and not fut.done():
            fut.set_result(None)

    def fail(self, job_id: str, exc: BaseException) -> None:
        self._exc = exc
        fut = self._future
        if fut is not None and not fut.done():
            fut.set_result(None)

    def next(self) -> Job | asyncio.Future[None]:
        """The newest state whose status the waiter has not seen yet; else a future
        that is done when one arrives (awaiting a bare future costs no coroutine
        frame, which matters with ten thousand waits)."""
        if self._exc is not None:
            raise self._exc
        job = self._news
        if job is not None:
            self._news = None
            self.seen = job.status
            return job
        self._future = fut = asyncio.get_running_loop().create_future()
        return fut


class CallbackSubscription(Subscription):
    """Calls ``on_job(job)`` / ``on_error(job_id, exc)`` synchronously from the hub."""

    __slots__ = ("_ids", "_on_error", "_on_job")

    def __init__(
        self,
        ids: tuple[str, ...],
        max_interval: float,
        on_job: Callable[[Job], None],
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        super().__init__(max_interval)
        self._ids = ids
        self._on_job = on_job
        self._on_error = on_error

    @property
    def ids(self) -> tuple[str, ...]:
        return self._ids

    def offer(self, job: Job) -> None:
        self._on_job(job)

    def fail(self, job_id: str, exc: BaseException) -> None:
        self._on_error(job_id, exc)


class FilterSubscription:
    """Every job matching ``expr`` whose status it has not seen yet goes to ``on_job``;
    an error of the listing that feeds it to ``on_error(None, exc)``."""

    __slots__ = ("_on_error", "_on_job", "_seen", "expr", "max_interval")

    def __init__(
        self,
        expr: Expr,
        max_interval: float,
        on_job: Callable[[Job], None],
        on_error: Callable[[str | None, BaseException], None],
    ) -> None:
        self.expr = expr
        self.max_interval = max_interval
        self._on_job = on_job
        self._on_error = on_error
        self._seen: dict[str, tuple[JobStatus, int]] = {}  # job id -> status, version

    def offer(self, job: Job, *, baseline: bool = False) -> bool:
        """True if this is news. ``baseline``: from the listing made when the watch
        started, where only active jobs are news (what had finished is history)."""
        if not self.expr.evaluate(job):
            return False
        v = version(job)
        known = self._seen.get(job.id)
        if known is not None and (known[1] > v or known[0] is job.status):
            return False  # older than what we saw (a late read), or no change
        self._seen[job.id] = (job.status, v)
        if baseline and not job.status.is_active:
            return False
        self._on_job(job)
        return True

    def fail(self, exc: BaseException) -> None:
        self._on_error(None, exc)
