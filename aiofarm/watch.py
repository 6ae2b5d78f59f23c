"""The one place aiofarm learns about job status changes.

A :class:`Hub` belongs to one Client. Every ``wait``, ``as_completed`` and
``watch`` registers a subscription for the ids it cares about; the hub feeds
them from ONE source:

- push drivers (``Capability.PUSH``) call :meth:`Hub.offer` on every change. When
  the changes come over a connection (``Driver.event_stream``: the local farm
  service's WebSocket), the Hub owns that connection as it owns polling: the driver
  hands it ONE attempt (``Driver.job_events``), and when it drops the Hub opens it
  again on the one back-off and re-reads every job it watches (and lists every
  filter watch again), so a change made while nothing could be pushed is not missed;
- otherwise ONE poller task fetches every watched id in batched ``get_jobs``
  calls (``driver.max_batch_get`` ids per call), starting at 0.5 s and doubling
  up to the smallest ``max_interval`` asked for while nothing changes.

A round that takes many requests is expensive, so it cannot come often. When the
driver has a change feed (``Driver.changes_since``: one request, "what changed
since T", Deadline's SearchJobs) and a round takes more than one request, the
poller asks the feed between rounds (as often as one round's requests allow,
at most four times a second) and reads at once just the watched jobs it names;
the full rounds come half as often and remain the truth, like a Kubernetes
informer's resync, and never closer together than polling alone's. The feed only makes noticing sooner, so a
change it never reports is still noticed by the next round (at most twice the
back-off interval away).

Newly registered ids are fetched at once, batched with every other id
registered in the same tick, so ten thousand concurrent ``wait()`` calls cost
one batched round, not ten thousand requests.

``watch(where_expr)`` registers a :class:`FilterSubscription`: it lists its matches
once when it starts (what is already active is news, what already finished is not),
then push drivers feed it from :meth:`Hub.offer`, and polling drivers from ONE
listing per round for every filter watch of the client together (their filters
joined with ``|``, filtered natively where the driver can), on the same back-off.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from .backoff import Backoff
from .errors import ConnectionLost, FarmError, JobNotFound, TransientError
from .models import Capability, Job, JobStatus
from .subscriptions import FilterSubscription, Subscription

if TYPE_CHECKING:
    import anyio.abc

    from .drivers.base import Driver

__all__ = ["Hub", "batched_get"]

log = logging.getLogger(__name__)

DEFAULT_MAX_INTERVAL = 120.0
MIN_PROBE_INTERVAL = 0.25  # at most four probes a second, however many jobs
MIN_ROUND_GAP = 0.5  # the back-off's first step: after a changed round, as polling
FEED_MARGIN = 1.0  # the feed's clock is the back end's: allow this much skew
FEED_ROUND_FACTOR = 2  # with a feed, full rounds are a consistency check
#: re-opening a dropped event stream: a farm service on this host that restarts (or
#: closed a client whose queue overflowed) is back within milliseconds
STREAM_BACKOFF = (0.05, 2.0)


ChunkCallback = Callable[[Sequence[str], "dict[str, Job]"], None]


async def batched_get(
    driver: Driver, ids: Sequence[str], each: ChunkCallback | None = None
) -> tuple[dict[str, Job], FarmError | None]:
    """Every job of ``ids`` the back end knows, in chunks of ``driver.max_batch_get``
    with up to ``driver.max_concurrent_gets`` chunks in flight. What the chunks that
    worked returned comes back with the first error, so one failed request does not
    throw away the rest of a round.

    With ``each``, ``each(chunk, found)`` sees every chunk's answer as soon as it
    arrives and the jobs are not gathered (the returned mapping is empty): a round
    over ten thousand jobs then holds the chunks in flight, not every Job at once."""
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
        if each is None:
            found.update(part)
        else:
            each(chunk, part)

    batch = driver.max_batch_get
    if len(ids) <= batch:
        await one(ids)
        return found, (errors[0] if errors else None)

    async with anyio.create_task_group() as tg:
        for start in range(0, len(ids), batch):
            tg.start_soon(one, ids[start : start + batch])
    return found, (errors[0] if errors else None)


def _each(subs: Subscription | list[Subscription]) -> tuple[Subscription, ...]:
    return tuple(subs) if isinstance(subs, list) else (subs,)


class Hub:
    def __init__(self, driver: Driver, spawn: Callable[[Callable[[], Coroutine[Any, Any, Any]]], None]) -> None:
        self._driver = driver
        self._spawn = spawn  # starts a background task in the Client's task group
        # one Subscription, or a list once a second one watches the same id: most ids
        # have one watcher, and a list per id would cost ~100 B on each of them
        self._subs: dict[str, Subscription | list[Subscription]] = {}
        self._global: list[Callable[[Job], None]] = []
        self._filters: list[FilterSubscription] = []
        self._new: set[str] = set()  # registered, never fetched yet
        self._wake: asyncio.Event | None = None
        self._poller_running = False
        self._push = Capability.PUSH in driver.capabilities
        self.rounds = 0  # completed poll rounds (for benchmarks and tests)
        self.probes = 0  # answered change-feed probes (for benchmarks and tests)
        self._status: dict[str, JobStatus] = {}  # last status the poller saw per id
        self._feed = driver.change_feed and not self._push
        self._since: float | None = None  # wall time every watched job was last read by
        self._stream: anyio.CancelScope | None = None
        self.reconnects = 0  # event streams re-opened after a drop (for tests)
        if self._push:
            driver.subscribe(self.offer)

    # -- the event stream ---------------------------------------------------------
    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        """Start following the driver's event stream, if it has one: returns once the
        first connection is up, and raises what kept it from coming up."""
        if self._push and self._driver.event_stream:
            await task_group.start(self._follow_events)

    def close(self) -> None:
        """Stop following the event stream (before the driver closes under it)."""
        if self._stream is not None:
            self._stream.cancel()

    async def _follow_events(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        backoff = Backoff(*STREAM_BACKOFF)
        first = True
        with anyio.CancelScope() as scope:
            self._stream = scope
            while True:
                try:
                    async with self._driver.job_events() as batches:
                        if first:
                            first = False
                            task_status.started()
                        else:
                            # the stream does not replay what it could not push: read
                            # now, with the stream already open, so nothing falls between
                            await self._resync()
                            self.reconnects += 1
                        async for batch in batches:
                            # a stream that carries news is up: a drop now is a new
                            # one (a service that lets us go at once is not re-dialled
                            # twenty times a second)
                            backoff.reset()
                            for job in batch:
                                self.offer(job)
                except (ConnectionLost, TransientError):
                    if first:
                        raise
                    log.info("aiofarm: event stream dropped; re-opening", exc_info=True)
                except FarmError as exc:
                    if first:
                        raise
                    # nothing pushes until it comes back: tell everyone waiting why,
                    # and keep trying, as the poller does
                    log.warning("aiofarm: event stream cannot be re-opened; retrying", exc_info=True)
                    self._fail_all(exc)
                await backoff.sleep()

    async def _resync(self) -> None:
        """After the event stream was down: every watched job's state now, and every
        filter watch's matches (what is news goes out, the rest is known already)."""
        if self._subs:
            await self._fetch(list(self._subs))
        if self._filters:
            await self._list(tuple(self._filters))

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

    async def register_filter(self, sub: FilterSubscription) -> None:
        """Start feeding ``sub``: its matches are listed now, in the caller's task (so
        the watch knows what is current before it yields, and an error raises there),
        then it shares the client's feed (push, or one listing per poll round)."""
        self._filters.append(sub)
        try:
            await self._list((sub,), baseline=True)
        except BaseException:
            self.unregister_filter(sub)
            raise
        self._ensure_poller()

    def unregister_filter(self, sub: FilterSubscription) -> None:
        with contextlib.suppress(ValueError):
            self._filters.remove(sub)

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
        for flt in tuple(self._filters):
            flt.offer(job)

    def _fail(self, job_id: str, exc: BaseException) -> None:
        subs = self._subs.get(job_id)
        if subs is not None:
            for sub in _each(subs):
                sub.fail(job_id, exc)

    def _fail_all(self, exc: BaseException) -> None:
        for job_id in list(self._subs):
            self._fail(job_id, exc)
        for flt in tuple(self._filters):
            flt.fail(exc)

    # -- the poller --------------------------------------------------------------
    def _polled(self) -> bool:
        """Anything for the poller to do: ids to read, or filters to list (push
        drivers feed filters themselves)."""
        return bool(self._subs) or (bool(self._filters) and not self._push)

    def _ensure_poller(self) -> None:
        if self._wake is not None:
            self._wake.set()
        if not self._poller_running and self._polled():
            self._poller_running = True
            self._spawn(self._run)

    async def _list(self, subs: Sequence[FilterSubscription], *, baseline: bool = False) -> bool:
        """ONE listing for ``subs`` (their filters joined with ``|``). True if any of
        them had news."""
        from .drivers.base import ListQuery
        from .listing import iterate
        from .where import Or

        expr = subs[0].expr
        for sub in subs[1:]:
            expr = Or(expr, sub.expr)
        changed = False
        jobs = iterate(self._driver, ListQuery(where=expr), limit=None, page_size=1000)
        async with contextlib.aclosing(jobs):
            async for job in jobs:
                for sub in subs:
                    changed = sub.offer(job, baseline=baseline) or changed
        return changed

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
                        self._fail(job_id, JobNotFound(job_id, driver=self._driver.name, farm=self._driver.farm_url))
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
        for flt in self._filters:
            best = min(best, flt.max_interval)
        return DEFAULT_MAX_INTERVAL if best is math.inf else best

    def _round_requests(self) -> int:
        return -(-len(self._subs) // self._driver.max_batch_get)

    def _probing(self) -> bool:
        # a round of one request is as cheap as a probe: then just poll
        return self._feed and self._round_requests() > 1

    def _probe_every(self, round_delay: float) -> float | None:
        """How often to ask the change feed while waiting ``round_delay`` for the next
        round; None: not worth it. The probes of one wait cost no more requests than
        the round they come before, and rounds come half as often with a feed, so a
        feed never makes watching dearer than polling alone."""
        if not self._probing():
            return None
        return max(MIN_PROBE_INTERVAL, round_delay / self._round_requests())

    async def _between_rounds(self, delay: float, moving: bool) -> None:
        """Wait ``delay`` for the next round, or less: a registration ends the wait,
        and so does a probe of the change feed that says to read everything now.
        ``moving``: the last round saw changes, so more may have come in while it
        read; the first probe goes at once."""
        assert self._wake is not None
        loop = asyncio.get_running_loop()
        now = loop.time()
        # after a round that saw changes, as after polling alone's, the next waits
        end, earliest = now + delay, now + (MIN_ROUND_GAP if moving else 0.0)
        while (left := end - loop.time()) > 0:
            every = self._probe_every(delay)
            if every is None or not moving:
                with anyio.move_on_after(left if every is None else min(every, left)):
                    await self._wake.wait()
            moving = False
            if self._new or every is None or loop.time() >= end:
                return
            if not await self._probe():
                if loop.time() >= earliest:
                    return
                # while jobs keep changing, every probe says "read everything": rounds
                # must still not follow each other sooner than polling alone's would
                end = earliest

    async def _probe(self) -> bool:
        """One look at the change feed. False: run the full round now."""
        if self._since is None:
            return True
        try:
            seen, complete = await self._driver.changes_since(self._since - FEED_MARGIN)
        except (ConnectionLost, TransientError):
            log.debug("aiofarm: change feed probe failed", exc_info=True)
            return True
        except FarmError:
            # e.g. not allowed to search: the rounds alone still notice everything
            log.warning("aiofarm: change feed unavailable; polling only", exc_info=True)
            self._feed = False
            return True
        self.probes += 1
        status, subs = self._status, self._subs
        changed = [i for i, s in seen.items() if i in subs and status.get(i) is not s]
        if not changed:
            return True
        if not complete:
            # a watched job changed, and more may have than the answer lists
            return False
        try:
            await self._fetch(changed)
        except FarmError:
            return False
        return True

    async def _run(self) -> None:
        self._wake = asyncio.Event()
        backoff = Backoff(0.5, max(0.5, self._max_interval()))
        moving = False  # the last round saw a change
        try:
            while self._polled():
                self._wake.clear()
                if self._new:
                    # let every wait() started in this tick register first
                    await asyncio.sleep(0)
                    new, self._new = self._new, set()
                    started = time.time()
                    try:
                        await self._fetch(new)
                    except (ConnectionLost, TransientError):
                        self._new |= {i for i in new if i in self._subs}
                        log.warning("aiofarm: first fetch failed; retrying", exc_info=True)
                        await backoff.sleep()
                        continue
                    except FarmError as exc:
                        for job_id in new:
                            self._fail(job_id, exc)
                        continue
                    if self._since is None:
                        self._since = started
                    if self._push:
                        continue
                if self._push or not self._polled():
                    # push drivers feed offer(); we only serve first fetches
                    await self._wake.wait()
                    continue
                backoff.maximum = max(0.5, self._max_interval())
                delay = backoff.next()
                if self._probing():
                    delay *= FEED_ROUND_FACTOR
                await self._between_rounds(delay, moving)
                moving = False
                if self._new:
                    continue  # woken by a registration: serve it, keep the schedule
                started = time.time()
                try:
                    changed = bool(self._subs) and await self._fetch(list(self._subs))
                    if self._filters:
                        changed = await self._list(tuple(self._filters)) or changed
                except (ConnectionLost, TransientError):
                    # the back end is down: keep trying on the back-off; waits resume
                    log.warning("aiofarm: poll round failed; retrying", exc_info=True)
                    continue
                except FarmError as exc:
                    self._fail_all(exc)
                    continue
                self._since = started
                self.rounds += 1
                if changed:
                    backoff.reset()
                    moving = True
        finally:
            self._poller_running = False
            self._wake = None
            self._since = None
