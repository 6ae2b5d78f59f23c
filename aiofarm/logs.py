"""``client.logs``: stream, read and page a job's logs on any driver.

Drivers only answer "the lines after this cursor" (``Driver.read_log``). Follow,
resume after a dropped connection, and the end-of-stream rule live here, once:
a followed stream resumes from its last cursor after ``ConnectionLost`` (no line
lost, none repeated) and ends when the job is finished and its output drained.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import attrs

from .backoff import Backoff
from .errors import ConnectionLost, InvalidSpec, JobNotFound, TransientError
from .models import Capability, Job, LogLine, LogPage
from .subscriptions import CallbackSubscription
from .tracing import span
from .validation import (
    MAX_ID_LEN,
    MAX_TAG_LEN,
    as_ids,
    check_count,
    check_datetime,
    check_id,
    check_text,
)

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectSendStream

    from .client import Client
    from .drivers.base import LogQuery
    from .where import Expr

__all__ = ["Logs"]

_STREAMS = frozenset({"stdout", "stderr"})
# Deadline's GetSessionLogs takes at most 10,000 lines a page; no back end pages more
MAX_LOG_PAGE = 10_000
# on polling drivers a followed stream ends at most this long (plus one poll round)
# after its job does; the poll is shared with every other watcher of the client
FOLLOW_MAX_INTERVAL = 2.0


def _query(
    task: str | None,
    streams: Sequence[str],
    start_time: datetime | None,
    end_time: datetime | None,
    limit: int,
    attempt: int | None = None,
) -> LogQuery:
    from .drivers.base import LogQuery

    if isinstance(streams, str):
        streams = (streams,)
    if isinstance(streams, bytes) or not isinstance(streams, Sequence) or not streams:
        raise InvalidSpec("streams", "must name one or more streams (e.g. stdout, stderr)")
    for i, stream in enumerate(streams):
        check_text(stream, f"streams[{i}]", limit=MAX_TAG_LEN)
    for field, value in (("since", start_time), ("end_time", end_time)):
        check_datetime(value, field)
    if task is not None:
        check_id(task, "task")
    check_count(limit, "limit", minimum=1, maximum=MAX_LOG_PAGE)
    if attempt is not None:
        check_count(attempt, "attempt", minimum=1)
    return LogQuery(
        task=task, streams=frozenset(streams), start_time=start_time, end_time=end_time, limit=limit,
        attempt=attempt,
    )  # fmt: skip


def _require(client: Client, query: LogQuery, *, timestamps: bool, follow: bool) -> None:
    client.require(Capability.LOGS)
    if follow:
        client.require(Capability.LOGS_FOLLOW)
    client.require(Capability.LOGS_SINCE, query.start_time)
    client.require(Capability.LOGS_SINCE, query.end_time)
    client.require(Capability.LOGS_TIMESTAMPS, timestamps)
    client.require(Capability.LOGS_STREAMS, query.streams)
    client.require(Capability.LOGS_TASK, query.task)
    client.require(Capability.LOGS_ATTEMPT, query.attempt)


def _stamp(line: LogLine) -> LogLine:
    if line.time is None:
        return line
    return attrs.evolve(line, text=f"{line.time.isoformat()} {line.text}")


async def _job_lines(
    client: Client, job_id: str, query: LogQuery, *, timestamps: bool
) -> AsyncGenerator[LogLine, None]:
    """One job's lines (see :func:`_job_pages`)."""
    pages = _job_pages(client, job_id, query, timestamps=timestamps)
    try:
        async for lines in pages:
            for line in lines:
                yield line
    finally:
        await pages.aclose()


def _stamped(lines: Sequence[LogLine], timestamps: bool) -> Sequence[LogLine]:
    return [_stamp(line) for line in lines] if timestamps else lines


async def _job_pages(
    client: Client, job_id: str, query: LogQuery, *, timestamps: bool
) -> AsyncGenerator[Sequence[LogLine], None]:
    """One job's lines, a page at a time (followed when ``query.follow``): resumed from
    the last cursor after a dropped connection, ended when the job is finished and
    drained."""
    driver = client.driver
    follow = query.follow
    # A follower learns that the job ended from the client's hub (push, or the one
    # shared batched poller), not from a status request of its own per idle read.
    ended: list[BaseException | None] = []

    def on_job(job: Job) -> None:
        if job.status.is_finished and not ended:
            ended.append(None)

    def on_error(job_id: str, exc: BaseException) -> None:
        ended.append(exc)

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
                            await anyio.lowlevel.checkpoint()
                            if page.lines:
                                yield _stamped(page.lines, timestamps)
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
            # once per page, whether or not the driver suspended (see listing._pages)
            await anyio.lowlevel.checkpoint()
            if page.lines:
                yield _stamped(page.lines, timestamps)
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


#: pages of a multi-job stream buffered ahead of the reader (a slow reader slows the pumps)
MERGE_BUFFER = 64


@asynccontextmanager
async def _merged(
    client: Client, ids: Sequence[str], query: LogQuery, *, timestamps: bool
) -> AsyncIterator[AsyncIterator[LogLine]]:
    """The lines of several jobs in arrival order, each with its job id. One task per
    job pumps its pages into one bounded channel (a page per hop, not a line: the
    channel costs two task switches per item); a job's error travels through it too,
    so the reader gets a FarmError, never an exception group."""
    send, receive = anyio.create_memory_object_stream[list[LogLine] | BaseException](MERGE_BUFFER)

    async def pump(job_id: str, out: MemoryObjectSendStream[list[LogLine] | BaseException]) -> None:
        async with out:
            pages = _job_pages(client, job_id, query, timestamps=timestamps)
            try:
                async for lines in pages:
                    await out.send(
                        [LogLine(x.time, x.stream, x.text, x.task_id, job_id, x.attempt) for x in lines]
                    )
            except anyio.get_cancelled_exc_class():
                raise
            except Exception as exc:  # handed to the reader, which raises it
                with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                    await out.send(exc)
            finally:
                await pages.aclose()

    async def read() -> AsyncGenerator[LogLine, None]:
        async for item in receive:
            if isinstance(item, BaseException):
                raise item
            for line in item:
                yield line

    async with anyio.create_task_group() as tg, receive:
        async with send:
            for job_id in ids:
                tg.start_soon(pump, job_id, send.clone())
        it = read()
        try:
            yield it
        finally:
            await it.aclose()
            tg.cancel_scope.cancel()


class Logs:
    def __init__(self, client: Client) -> None:
        self._client = client

    @asynccontextmanager
    async def stream(
        self,
        job_id: str | Sequence[str] | None = None,
        *,
        where: Expr | str | None = None,
        follow: bool = True,
        since: datetime | None = None,
        timestamps: bool = False,
        task: str | None = None,
        attempt: int | None = None,
        streams: Sequence[str] = ("stdout", "stderr"),
    ) -> AsyncIterator[AsyncIterator[LogLine]]:
        """``async with farm.logs.stream(id) as lines: async for line in lines``

        Several jobs (a sequence of ids, or ``where=``: the jobs that match when the
        stream opens, as ``kubectl logs -l`` does) give their lines interleaved in the
        order they arrive, each with its ``LogLine.job_id``; a followed stream ends
        when every job has. ``attempt=N`` keeps the lines of the N-th run of each
        task (1 = the first; where the back end records it: ``logs.attempt``).

        ``timestamps=True`` also puts each line's time (ISO 8601, UTC) in front of
        its text, as ``kubectl logs --timestamps`` does; ``LogLine.time`` is always set
        where the back end knows it."""
        many = not isinstance(job_id, str)
        if many and job_id is None and where is None:
            raise InvalidSpec("job_id", "give a job id, several ids, or where=")
        if isinstance(job_id, str) and where is not None:
            raise InvalidSpec("where", "give job ids or where=, not both")
        query = _query(task, streams, since, None, 1000, attempt)
        if follow:
            query = attrs.evolve(query, follow=True)
        client = self._client
        _require(client, query, timestamps=timestamps, follow=follow)
        if not many:
            assert isinstance(job_id, str)
            check_id(job_id, "job_id")
            if not follow:
                await client.jobs.get(job_id)  # JobNotFound before the first line, not after
            with span("aiofarm.logs.stream", client.driver.name, job_count=1, current=False):
                it = _job_lines(client, job_id, query, timestamps=timestamps)
                try:
                    yield it
                finally:
                    await it.aclose()
            return
        if where is not None:
            if job_id is not None:
                raise InvalidSpec("where", "give job ids or where=, not both")
            async with client.jobs.list(where=where) as found:
                ids = [job.id async for job in found]
        else:
            assert job_id is not None
            ids = as_ids(job_id, "job_id")
            await client.jobs.get_many(ids)  # JobNotFound before the first line
        with span("aiofarm.logs.stream", client.driver.name, job_count=len(ids), current=False):
            async with _merged(client, ids, query, timestamps=timestamps) as lines:
                yield lines

    async def read(
        self,
        job_id: str,
        *,
        tail: int | None = None,
        task: str | None = None,
        timestamps: bool = False,
        attempt: int | None = None,
    ) -> str:
        """The job's whole log so far as text (the last ``tail`` lines if given)."""
        check_count(tail, "tail", allow_none=True)
        keep: collections.deque[str] = collections.deque(maxlen=tail)
        async with self.stream(job_id, follow=False, task=task, timestamps=timestamps, attempt=attempt) as lines:
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
        attempt: int | None = None,
    ) -> LogPage:
        """One page of lines (Deadline's ``get_session_logs`` paging): pass the
        returned ``next_token`` back for the next page."""
        check_id(job_id, "job_id")
        query = _query(task, streams, start_time, end_time, limit, attempt)
        if next_token is not None:
            check_text(next_token, "next_token", limit=MAX_ID_LEN)
        driver = self._client.driver
        _require(self._client, query, timestamps=False, follow=False)
        page = await driver.read_log(job_id, next_token, query)
        if not page.lines and next_token is None:
            # an unknown job and an empty log look alike to some back ends
            found = await driver.get_jobs([job_id])
            if job_id not in found:
                raise JobNotFound(job_id, driver=driver.name, farm=driver.farm_url)
        return page
