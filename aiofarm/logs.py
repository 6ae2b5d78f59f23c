"""``client.logs``: stream, read and page a job's logs on any driver.

Drivers only answer "the lines after this cursor" (``Driver.read_log``). Follow,
resume after a dropped connection, and the end-of-stream rule live here, once:
a followed stream resumes from its last cursor after ``ConnectionLost`` (no line
lost, none repeated) and ends when the job is finished and its output drained.
"""

from __future__ import annotations

import collections
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import attrs

from .backoff import Backoff
from .errors import ConnectionLost, InvalidSpec, JobNotFound, TransientError
from .models import Capability, Job, LogLine, LogPage
from .validation import check_id
from .watch import CallbackSubscription

if TYPE_CHECKING:
    from .client import Client
    from .drivers.base import LogQuery

__all__ = ["Logs"]

_STREAMS = frozenset({"stdout", "stderr"})
# on polling drivers a followed stream ends at most this long (plus one poll round)
# after its job does; the poll is shared with every other watcher of the client
FOLLOW_MAX_INTERVAL = 2.0


def _query(
    task: str | None,
    streams: Sequence[str],
    start_time: datetime | None,
    end_time: datetime | None,
    limit: int,
) -> LogQuery:
    from .drivers.base import LogQuery

    if isinstance(streams, str):
        streams = (streams,)
    bad = [s for s in streams if not isinstance(s, str) or not s]
    if bad or not streams:
        raise InvalidSpec("streams", f"must name one or more streams (e.g. stdout, stderr), got {streams!r}")
    for field, value in (("since", start_time), ("end_time", end_time)):
        if value is not None and (not isinstance(value, datetime) or value.tzinfo is None):
            raise InvalidSpec(field, "must be a timezone-aware datetime")
    if task is not None and (not isinstance(task, str) or not task):
        raise InvalidSpec("task", "must be a task id")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise InvalidSpec("limit", f"must be an integer >= 1, got {limit!r}")
    return LogQuery(task=task, streams=frozenset(streams), start_time=start_time, end_time=end_time, limit=limit)


def _require(client: Client, query: LogQuery, *, timestamps: bool, follow: bool) -> None:
    client.require(Capability.LOGS)
    if follow:
        client.require(Capability.LOGS_FOLLOW)
    client.require(Capability.LOGS_SINCE, query.start_time)
    client.require(Capability.LOGS_SINCE, query.end_time)
    client.require(Capability.LOGS_TIMESTAMPS, timestamps)
    client.require(Capability.LOGS_STREAMS, query.streams)
    client.require(Capability.LOGS_TASK, query.task)


def _stamp(line: LogLine) -> LogLine:
    if line.time is None:
        return line
    return LogLine(line.time, line.stream, f"{line.time.isoformat()} {line.text}", line.task_id)


class Logs:
    def __init__(self, client: Client) -> None:
        self._client = client

    @asynccontextmanager
    async def stream(
        self,
        job_id: str,
        *,
        follow: bool = True,
        since: datetime | None = None,
        timestamps: bool = False,
        task: str | None = None,
        streams: Sequence[str] = ("stdout", "stderr"),
    ) -> AsyncIterator[AsyncIterator[LogLine]]:
        """``async with farm.logs.stream(id) as lines: async for line in lines``

        ``timestamps=True`` also puts each line's time (ISO 8601, UTC) in front of
        its text, as ``kubectl logs --timestamps`` does; ``LogLine.time`` is always set
        where the back end knows it."""
        check_id(job_id, "job_id")
        query = _query(task, streams, since, None, 1000)
        if follow:
            query = attrs.evolve(query, follow=True)
        client = self._client
        driver = client.driver
        _require(client, query, timestamps=timestamps, follow=follow)
        if not follow:
            await client.jobs.get(job_id)  # JobNotFound before the first line, not after

        # A follower learns that the job ended from the client's hub (push, or the one
        # shared batched poller), not from a status request of its own per idle read.
        ended: list[BaseException | None] = []

        def on_job(job: Job) -> None:
            if job.status.is_finished and not ended:
                ended.append(None)

        def on_error(job_id: str, exc: BaseException) -> None:
            ended.append(exc)

        async def lines() -> AsyncGenerator[LogLine, None]:
            token: str | None = None
            idle = Backoff(0.05, 1.0)
            drained_after_finish = False
            sub = CallbackSubscription((job_id,), FOLLOW_MAX_INTERVAL, on_job, on_error)
            polled = follow and not driver.log_push
            if polled:
                client.hub.register(sub)
            try:
                if follow and driver.log_push:
                    # the back end pushes lines; a dropped connection resumes from the
                    # last page's token, and the stream ends when the driver's does
                    while True:
                        try:
                            async with driver.follow_log(job_id, token, query) as pages:
                                async for page in pages:
                                    for line in page.lines:
                                        yield _stamp(line) if timestamps else line
                                    if page.next_token is not None:
                                        token = page.next_token
                                    idle.reset()
                            return
                        except (ConnectionLost, TransientError):
                            await idle.sleep()
                while True:
                    try:
                        page = await driver.read_log(job_id, token, query)
                    except (ConnectionLost, TransientError):
                        if not follow:
                            raise
                        await idle.sleep()  # the back end is away: resume from the same cursor
                        continue
                    for line in page.lines:
                        yield _stamp(line) if timestamps else line
                    if page.next_token is not None:
                        token = page.next_token
                    if page.lines:
                        idle.reset()
                        continue
                    if not follow or drained_after_finish:
                        return
                    if ended:
                        if ended[0] is not None:
                            raise ended[0]
                        # one more read: output written before the end may still be landing
                        drained_after_finish = True
                        continue
                    await idle.sleep()
            finally:
                if polled:
                    client.hub.unregister(sub)

        it = lines()
        try:
            yield it
        finally:
            await it.aclose()

    async def read(
        self, job_id: str, *, tail: int | None = None, task: str | None = None, timestamps: bool = False
    ) -> str:
        """The job's whole log so far as text (the last ``tail`` lines if given)."""
        if tail is not None and (isinstance(tail, bool) or not isinstance(tail, int) or tail < 0):
            raise InvalidSpec("tail", f"must be None or an integer >= 0, got {tail!r}")
        keep: collections.deque[str] = collections.deque(maxlen=tail)
        async with self.stream(job_id, follow=False, task=task, timestamps=timestamps) as lines:
            async for line in lines:
                keep.append(line.text)
        return "".join(text + "\n" for text in keep)

    async def page(
        self,
        job_id: str,
        *,
        limit: int = 100,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        next_token: str | None = None,
        task: str | None = None,
        streams: Sequence[str] = ("stdout", "stderr"),
    ) -> LogPage:
        """One page of lines (Deadline's ``get_session_logs`` paging): pass the
        returned ``next_token`` back for the next page."""
        check_id(job_id, "job_id")
        query = _query(task, streams, start_time, end_time, limit)
        if next_token is not None and not isinstance(next_token, str):
            raise InvalidSpec("next_token", "must be a token from a previous page")
        driver = self._client.driver
        _require(self._client, query, timestamps=False, follow=False)
        page = await driver.read_log(job_id, next_token, query)
        if not page.lines and next_token is None:
            # an unknown job and an empty log look alike to some back ends
            found = await driver.get_jobs([job_id])
            if job_id not in found:
                raise JobNotFound(job_id, driver=driver.name)
        return page
