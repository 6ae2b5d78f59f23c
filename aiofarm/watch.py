"""The one place aiofarm learns about job status changes.

A :class:`Hub` belongs to one Client. Every ``wait``, ``as_completed`` and
``watch`` registers a subscription for the ids it cares about; the hub feeds
them from ONE source:

- push drivers (``Capability.PUSH``) call :meth:`Hub.offer` on every change;
- otherwise ONE poller task fetches every watched id in batched ``get_jobs``
  calls (``driver.max_batch_get`` ids per call), starting at 0.5 s and doubling
  up to the smallest ``max_interval`` asked for while nothing changes.

Newly registered ids are fetched at once, batched with every other id
registered in the same tick, so ten thousand concurrent ``wait()`` calls cost
one batched round, not ten thousand requests.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .backoff import Backoff
from .errors import ConnectionLost, FarmError, JobNotFound
from .models import Capability, Job, JobStatus

if TYPE_CHECKING:
    from .drivers.base import Driver

__all__ = ["Hub", "Subscription", "batched_get"]

log = logging.getLogger(__name__)

DEFAULT_MAX_INTERVAL = 120.0


ChunkCallback = Callable[[Sequence[str], "dict[str, Job]"], None]


async def batched_get(
    driver: Driver, ids: Sequence[str], each: ChunkCallback | None = None
) -> tuple[dict[str, Job], FarmError | None]:
    """Every job of ``ids`` the back end knows, in chunks of ``driver.max_batch_get``
    with up to ``driver.max_concurrent_gets`` chunks in flight; ``each(chunk, found)``
    sees every chunk's answer as soon as it arrives. What the chunks that worked
    returned comes back with the first error, so one failed request does not throw
    away the rest of a round."""
    found: dict[str, Job] = {}
    errors: list[FarmError] = []
    limit = anyio.Semaphore(driver.max_concurrent_gets)

    async def one(chunk: Sequence[str]) -> None:
        async with limit:
            try:
                part = await driver.get_jobs(chunk)
            except FarmError as exc:
                errors.append(exc)
                return
        found.update(part)
        if each is not None:
            each(chunk, part)

    batch = driver.max_batch_get
    if len(ids) <= batch:
        await one(ids)
        return found, (errors[0] if errors else None)

    async with anyio.create_task_group() as tg:
        for start in range(0, len(ids), batch):
            tg.start_soon(one, ids[start : start + batch])
    return found, (errors[0] if errors else None)


def version(job: Job) -> int:
    """Status transitions only accumulate, so the length of the history orders two
    snapshots of one job; this keeps a late batched read from undoing a push."""
    return len(job.history)


def _each(subs: Subscription | list[Subscription]) -> tuple[Subscription, ...]:
    return tuple(subs) if isinstance(subs, list) else (subs,)


class Subscription:
    """Receives every known state of its ids. Subclasses decide what to do with it."""

    __slots__ = ("ids", "max_interval")

    def __init__(self, ids: tuple[str, ...], max_interval: float) -> None:
        self.ids = ids
        self.max_interval = max_interval

    def offer(self, job: Job) -> None:
        raise NotImplementedError

    def fail(self, job_id: str, exc: BaseException) -> None:
        raise NotImplementedError


class Waiter(Subscription):
    """One job. It holds a Job only until the waiting coroutine takes it, so ten
    thousand waits on pending jobs keep a status and a version each, not a Job."""

    __slots__ = ("_exc", "_future", "_news", "seen", "version")

    def __init__(self, job_id: str, max_interval: float) -> None:
        super().__init__((job_id,), max_interval)
        self._news: Job | None = None  # a state with a status the waiter has not seen
        self._future: asyncio.Future[None] | None = None
        self._exc: BaseException | None = None
        self.seen: JobStatus | None = None
        self.version = -1

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

    __slots__ = ("_on_error", "_on_job")

    def __init__(
        self,
        ids: tuple[str, ...],
        max_interval: float,
        on_job: Callable[[Job], None],
        on_error: Callable[[str, BaseException], None],
    ) -> None:
        super().__init__(ids, max_interval)
        self._on_job = on_job
        self._on_error = on_error

    def offer(self, job: Job) -> None:
        self._on_job(job)

    def fail(self, job_id: str, exc: BaseException) -> None:
        self._on_error(job_id, exc)


class Hub:
    def __init__(self, driver: Driver, spawn: Callable[[Callable[[], Coroutine[Any, Any, Any]]], None]) -> None:
        self._driver = driver
        self._spawn = spawn  # starts a background task in the Client's task group
        # one Subscription, or a list once a second one watches the same id: most ids
        # have one watcher, and a list per id would cost ~100 B on each of them
        self._subs: dict[str, Subscription | list[Subscription]] = {}
        self._global: list[Callable[[Job], None]] = []
        self._new: set[str] = set()  # registered, never fetched yet
        self._wake: asyncio.Event | None = None
        self._poller_running = False
        self._push = Capability.PUSH in driver.capabilities
        self.rounds = 0  # completed poll rounds (for benchmarks and tests)
        self._status: dict[str, JobStatus] = {}  # last status the poller saw per id
        if self._push:
            driver.subscribe(self.offer)

    # -- registration ------------------------------------------------------------
    def register(self, sub: Subscription) -> None:
        for job_id in sub.ids:
            subs = self._subs.get(job_id)
            if subs is None:
                self._subs[job_id] = sub
                self._new.add(job_id)
            else:
                if isinstance(subs, list):
                    subs.append(sub)
                else:
                    self._subs[job_id] = [subs, sub]
                # someone already watches it: fetch it again for the newcomer (rare;
                # keeping every Job around for it would cost ~800 B per watched id)
                self._new.add(job_id)
        self._ensure_poller()

    def unregister(self, sub: Subscription) -> None:
        for job_id in sub.ids:
            subs = self._subs.get(job_id)
            if subs is None:
                continue
            if isinstance(subs, list):
                if sub in subs:
                    subs.remove(sub)
                if len(subs) == 1:
                    self._subs[job_id] = subs[0]
                continue
            if subs is sub:
                del self._subs[job_id]
                self._new.discard(job_id)
                self._status.pop(job_id, None)

    def add_listener(self, fn: Callable[[Job], None]) -> Callable[[], None]:
        """Every job update the hub sees (push drivers: every job of the farm)."""
        self._global.append(fn)
        return lambda: self._global.remove(fn)

    @property
    def watched(self) -> int:
        return len(self._subs)

    # -- feeding -----------------------------------------------------------------
    def offer(self, job: Job) -> None:
        """A new state of ``job`` (from a push driver, or from the poller)."""
        subs = self._subs.get(job.id)
        if subs is not None:
            for sub in _each(subs):
                sub.offer(job)
        for fn in tuple(self._global):
            fn(job)

    def _fail(self, job_id: str, exc: BaseException) -> None:
        subs = self._subs.get(job_id)
        if subs is not None:
            for sub in _each(subs):
                sub.fail(job_id, exc)

    # -- the poller --------------------------------------------------------------
    def _ensure_poller(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if not self._poller_running and self._subs:
            self._poller_running = True
            self._spawn(self._run)

    async def _fetch(self, ids: Iterable[str]) -> bool:
        """One batched read of ``ids``. True if any watched status changed."""
        changed = False

        def deliver(chunk: Sequence[str], found: dict[str, Job]) -> None:
            # as each chunk lands, not at the end of the round
            nonlocal changed
            for job_id in chunk:
                job = found.get(job_id)
                if job is None:
                    if job_id in self._subs:
                        self._fail(job_id, JobNotFound(job_id, driver=self._driver.name))
                    continue
                if self._status.get(job_id) is not job.status:
                    self._status[job_id] = job.status
                    changed = True
                self.offer(job)

        _, error = await batched_get(self._driver, list(ids), deliver)
        if error is not None:
            raise error
        return changed

    def _max_interval(self) -> float:
        best = math.inf
        for subs in self._subs.values():
            for sub in _each(subs):
                if sub.max_interval < best:
                    best = sub.max_interval
        return DEFAULT_MAX_INTERVAL if best is math.inf else best

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        backoff = Backoff(0.5, max(0.5, self._max_interval()))
        try:
            while self._subs:
                self._wake.clear()
                if self._new:
                    # let every wait() started in this tick register first
                    await asyncio.sleep(0)
                    new, self._new = self._new, set()
                    try:
                        await self._fetch(new)
                    except ConnectionLost:
                        self._new |= {i for i in new if i in self._subs}
                        log.warning("aiofarm: first fetch failed; retrying", exc_info=True)
                        await backoff.sleep()
                        continue
                    except FarmError as exc:
                        for job_id in new:
                            self._fail(job_id, exc)
                        continue
                    if self._push:
                        continue
                if self._push or not self._subs:
                    # push drivers feed offer(); we only serve first fetches
                    await self._wake.wait()
                    continue
                backoff.maximum = max(0.5, self._max_interval())
                delay = backoff.next()
                with anyio.move_on_after(delay):
                    await self._wake.wait()
                if self._new:
                    continue  # woken by a registration: serve it, keep the schedule
                try:
                    changed = await self._fetch(list(self._subs))
                except ConnectionLost:
                    # the back end is down: keep trying on the back-off; waits resume
                    log.warning("aiofarm: poll round failed; retrying", exc_info=True)
                    continue
                except FarmError as exc:
                    for job_id in list(self._subs):
                        self._fail(job_id, exc)
                    continue
                self.rounds += 1
                if changed:
                    backoff.reset()
        finally:
            self._poller_running = False
            self._wake = None

