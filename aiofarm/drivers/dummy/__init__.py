"""An in-memory driver for tests of the client layer (Apache Libcloud's dummy driver).

Jobs never run by themselves: a test moves them with :meth:`DummyDriver.set_status`.
It counts every primitive call in ``calls`` so tests and benchmarks can check
how many back-end requests the client layer makes. ``dummy://?push=1`` makes it
a push driver; by default it is polled, like Slurm or Deadline. ``dummy://?feed=1``
gives it a change feed (``changes_since``) answering at most ``feed_page`` jobs, like
Deadline's SearchJobs. :meth:`DummyDriver.fail_next` makes the next calls of a
primitive fail transiently (after the call took effect, or before), for tests of the
client layer's retries; its submit is idempotent through the attempt's tokens.
"""

from __future__ import annotations

import collections
import itertools
import signal as _signal
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ...errors import ConnectionFailed, ConnectionLost, FarmError, InvalidSpec, JobNotFound
from ...models import Capability, Job, JobSpec, JobStatus, LogLine, LogPage, Pool, StatusTransition
from ...where.native import conjoin, split_native
from ...where.nodes import Compare
from ..base import (
    Action,
    Driver,
    JobUpdate,
    ListPlan,
    ListQuery,
    LogQuery,
    SubmitAttempt,
    sort_jobs,
)

if TYPE_CHECKING:
    import yarl

__all__ = ["DummyDriver"]

_BASE_CAPS = frozenset(
    {
        Capability.SUBMIT,
        Capability.LIST,
        Capability.CANCEL,
        Capability.PAUSE,
        Capability.UPDATE,
        Capability.DELETE,
        Capability.LOGS,
        Capability.LOGS_FOLLOW,
        Capability.POOLS,
        # parameters: log lines are kept with their time and stream; jobs never run,
        # so nothing about running work, terminals or retries is honoured
        Capability.LOGS_TIMESTAMPS,
        Capability.LOGS_STREAMS,
    }
)


def _translatable(part: Compare) -> bool:
    return part.op != "matches" and part.field != "tags"


class DummyDriver(Driver):
    name: ClassVar[str] = "dummy"
    capabilities: ClassVar[frozenset[Capability]] = _BASE_CAPS
    max_batch_get: ClassVar[int] = 100
    idempotent_submit: ClassVar[bool] = True

    def __init__(self, push: bool = False, fail_get: int = 0, feed: bool = False) -> None:
        self.push = push
        self.change_feed = feed  # type: ignore[misc]  # per instance, like capabilities
        self.feed_page = 100
        self.feed_error: FarmError | None = None  # raised by every changes_since call
        self.changed_at: dict[str, float] = {}  # job id -> wall time of its last change
        self.jobs: dict[str, Job] = {}
        self.logs: dict[str, list[LogLine]] = collections.defaultdict(list)
        self.calls: collections.Counter[str] = collections.Counter()
        self.fail_get = fail_get  # the next N get_jobs calls raise ConnectionLost
        self.get_delay = 0.0  # seconds each get_jobs call takes, like a round trip
        self._ids = itertools.count(1)
        self.native_listing = True  # off: a back end that filters, sorts, counts nothing
        self._version = 0  # bumped on every change: a listing's answer is kept until then
        self._answer: tuple[int, ListQuery, list[Job]] | None = None
        self._subscribers: list[Callable[[Job], None]] = []
        self._faults: dict[str, list[bool]] = collections.defaultdict(list)  # op -> after effect?
        self._by_token: dict[str, str] = {}  # submit token -> job id

    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> Driver:
        flags = {}
        for key in ("push", "feed"):
            value = str(options.get(key, url.query.get(key, "0")))
            if value not in ("0", "1", "True", "False"):
                raise InvalidSpec("url", f"{key} must be 0 or 1, got {value!r}")
            flags[key] = value in ("1", "True")
        driver = cls(**flags)
        if driver.push:
            # an instance attribute shadows the class-level set for this driver only
            driver.capabilities = _BASE_CAPS | {Capability.PUSH}  # type: ignore[misc]
        return driver

    # -- test controls -----------------------------------------------------------
    def set_status(self, job_id: str, status: JobStatus, exit_code: int | None = None) -> Job:
        old = self.jobs[job_id]
        now = datetime.now(timezone.utc)
        job = Job(
            id=old.id,
            status=status,
            driver=self.name,
            name=old.name,
            pool=old.pool,
            tags=old.tags,
            labels=old.labels,
            priority=old.priority,
            created_at=old.created_at,
            started_at=old.started_at or (now if status is JobStatus.RUNNING else None),
            finished_at=now if status.is_finished else None,
            exit_code=exit_code,
            history=(*old.history, StatusTransition(status, now)),
        )
        self.jobs[job_id] = job
        self._version += 1
        self.changed_at.pop(job_id, None)  # keeps the dict in order of last change
        self.changed_at[job_id] = time.time()
        for fn in self._subscribers:
            fn(job)
        return job

    def fail_next(self, op: str, times: int = 1, *, after: bool = False) -> None:
        """The next ``times`` calls of primitive ``op`` ("submit", "get_jobs", "cancel"...)
        raise ``ConnectionFailed``: before doing anything, or with ``after`` once the
        call took effect (an answer lost on its way back)."""
        self._faults[op].extend([after] * times)

    def _fault(self, op: str, after: bool) -> None:
        pending = self._faults.get(op)
        if pending and pending[0] is after:
            pending.pop(0)
            raise ConnectionFailed(f"dummy: injected transient failure of {op}")

    def write_log(self, job_id: str, text: str, stream: str = "stdout") -> None:
        self.logs[job_id].append(LogLine(datetime.now(timezone.utc), stream, text))

    # -- primitives --------------------------------------------------------------
    def subscribe(self, callback: Callable[[Job], None]) -> None:
        if not self.push:
            raise self._unsupported("push")
        self._subscribers.append(callback)

    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        self.calls["submit"] += 1
        self._fault("submit", after=False)
        attempt = attempt or SubmitAttempt.new(len(specs))
        out = []
        now = datetime.now(timezone.utc)
        for spec, token in zip(specs, attempt.tokens, strict=True):
            made = self._by_token.get(token)
            if made is not None:
                out.append(self.jobs[made])  # made by an earlier attempt of this call
                continue
            job_id = spec.id or f"dummy-{next(self._ids)}"
            self._by_token[token] = job_id
            status = JobStatus.SUSPENDED if spec.paused else JobStatus.PENDING
            job = Job(
                id=job_id,
                status=status,
                driver=self.name,
                name=spec.name,
                pool=spec.pool,
                tags=spec.tags,
                labels=spec.labels,
                priority=spec.priority,
                created_at=now,
                depends_on=spec.depends_on,
                history=(StatusTransition(status, now),),
            )
            self.jobs[job_id] = job
            self._version += 1
            out.append(job)
        self._fault("submit", after=True)
        return out

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        self.calls["get_jobs"] += 1
        if len(ids) > self.max_batch_get:
            raise AssertionError(f"get_jobs called with {len(ids)} ids > {self.max_batch_get}")
        if self.fail_get > 0:
            self.fail_get -= 1
            raise ConnectionLost("dummy: injected failure")
        self._fault("get_jobs", after=False)
        if self.get_delay:
            await anyio.sleep(self.get_delay)
        return {i: self.jobs[i] for i in ids if i in self.jobs}

    async def changes_since(self, since: float) -> tuple[dict[str, JobStatus], bool]:
        if not self.change_feed:
            raise self._unsupported("changes_since")
        self.calls["changes_since"] += 1
        if self.feed_error is not None:
            raise self.feed_error
        hits = [i for i, t in self.changed_at.items() if t >= since]
        page = hits[::-1][: self.feed_page]  # the latest changes first
        return {i: self.jobs[i].status for i in page}, len(page) == len(hits)

    def plan_list(self, query: ListQuery) -> ListPlan:
        """Like a back end with a query language: comparisons of one field are
        filtered "natively" (here: in memory, before paging), except regular
        expressions and tags, which are left to the client; sorts and counts natively
        unless ``native_listing`` is off."""
        if not self.native_listing:
            return ListPlan(native=None, remainder=query.where)
        native, rest = split_native(query.where, _translatable)
        return ListPlan(native=conjoin(native), remainder=rest, sorted=True, countable=rest is None)

    def _matching(self, query: ListQuery) -> list[Job]:
        # like a database cursor: the pages of one listing come from one answer
        if self._answer is not None and self._answer[0] == self._version and self._answer[1] == query:
            return self._answer[2]
        jobs = list(self.jobs.values())  # insertion order is creation order
        if query.where is not None:
            jobs = [j for j in jobs if query.where.evaluate(j)]
        if query.sort:
            jobs = sort_jobs(jobs, query.sort, query.reverse)
        elif query.reverse:
            jobs.reverse()
        self._answer = (self._version, query, jobs)
        return jobs

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        self.calls["list_page"] += 1
        jobs = self._matching(query)
        start = int(page_token or 0)
        page = jobs[start : start + page_size]
        self.calls["listed"] += len(page)  # jobs sent to the client
        nxt = start + page_size
        return page, (str(nxt) if nxt < len(jobs) else None)

    async def count_jobs(self, query: ListQuery) -> int:
        self.calls["count_jobs"] += 1
        return len(self._matching(query))

    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        self.calls["control"] += 1
        self._fault(action.value, after=False)
        for job_id in ids:
            if job_id not in self.jobs:
                raise JobNotFound(job_id, driver=self.name)
        for job_id in ids:
            if action is Action.CANCEL:
                self.set_status(job_id, JobStatus.CANCELED)
            elif action is Action.PAUSE:
                self.set_status(job_id, JobStatus.SUSPENDED)
            elif action is Action.RESUME:
                self.set_status(job_id, JobStatus.PENDING)
            elif action is Action.DELETE:
                del self.jobs[job_id]
                self._version += 1
            else:
                raise self._unsupported(action.value)
        self._fault(action.value, after=True)

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        import attrs

        for job_id in ids:
            if job_id not in self.jobs:
                raise JobNotFound(job_id, driver=self.name)
        for job_id in ids:
            job = self.jobs[job_id]
            self._version += 1
            self.jobs[job_id] = attrs.evolve(
                job,
                priority=job.priority if changes.priority is None else changes.priority,
                name=job.name if changes.name is None else changes.name,
                tags=job.tags if changes.tags is None else changes.tags,
            )

    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        raise self._unsupported("send_signal")

    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        self.calls["read_log"] += 1
        lines = [ln for ln in self.logs.get(job_id, ()) if ln.stream in query.streams]
        if token is not None and not token.isdigit():
            raise InvalidSpec("next_token", "is not a token this back end gave")
        start = int(token or 0)
        chunk = lines[start : start + query.limit]
        return LogPage(tuple(chunk), str(start + len(chunk)))

    async def list_pools(self) -> list[Pool]:
        return [Pool(id="default", name="default", slots=1, driver=self.name)]

    async def capacity(self) -> dict[str, int]:
        return {"default": 1}
