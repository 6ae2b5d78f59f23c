"""Streams of job changes over the client's Hub: ``as_completed`` and ``watch``.

``Jobs.as_completed`` and ``Jobs.watch`` hand back what these functions return, so
the call a user makes is the only frame between them and the Hub.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import anyio

from .errors import InvalidSpec, WaitTimeout
from .models import Job, JobEvent, JobStatus
from .subscriptions import CallbackSubscription, FilterSubscription
from .validation import as_ids, check_interval, check_timeout
from .waiting import check_until

if TYPE_CHECKING:
    from .client import Client
    from .where import Expr

__all__ = ["as_completed", "watch"]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


async def as_completed(
    client: Client,
    job_ids: str | Sequence[str],
    *,
    timeout: float | None,
    max_interval: float,
    progress: bool | None = False,
    until: object = None,
) -> AsyncIterator[Job]:
    """Yield each job as it reaches a status of ``until`` (default: finished), in the
    order they get there; a job that finishes without being seen in one comes in its
    final state."""
    ids = as_ids(job_ids, "job_ids")
    wanted = check_until(until)
    limit = check_timeout(timeout)
    interval = check_interval(max_interval)
    counter = None
    if progress is not False:
        from .progress import count_display

        counter = count_display(len(ids), "finished", progress)
    send, receive = anyio.create_memory_object_stream[Job | BaseException](math.inf)
    done: set[str] = set()

    def on_job(job: Job) -> None:
        if (job.status.is_finished or job.status in wanted) and job.id not in done:
            done.add(job.id)
            send.send_nowait(job)

    def on_error(job_id: str, exc: BaseException) -> None:
        if job_id not in done:
            done.add(job_id)
            send.send_nowait(exc)

    hub = client.hub
    sub = CallbackSubscription(tuple(ids), interval, on_job, on_error)
    hub.register(sub)
    try:
        with receive, send:
            deadline = None if limit is None else time.monotonic() + limit
            for _ in ids:
                try:
                    if deadline is None:
                        item = await receive.receive()
                    else:
                        with anyio.fail_after(max(0.0, deadline - time.monotonic())):
                            item = await receive.receive()
                except TimeoutError:
                    raise WaitTimeout([i for i in ids if i not in done], limit or 0.0) from None
                if isinstance(item, BaseException):
                    raise item
                if counter is not None:
                    counter.add(failed=int(item.status is not JobStatus.SUCCEEDED))
                yield item
    finally:
        hub.unregister(sub)
        if counter is not None:
            counter.close()


@asynccontextmanager
async def watch(
    client: Client,
    jobs: str | Sequence[str] | Expr,
    *,
    max_interval: float,
    buffer: float,
) -> AsyncIterator[AsyncIterator[JobEvent]]:
    """Events for the jobs ``jobs`` names (ids, or a ``where`` filter); see ``Jobs.watch``."""
    from .where import Expr

    interval = check_interval(max_interval)
    if not (buffer == math.inf or (isinstance(buffer, int) and not isinstance(buffer, bool) and 0 <= buffer <= 2**31)):
        raise InvalidSpec("buffer", f"must be math.inf or an integer >= 0, got {buffer!r}"[:200])
    ids = None if isinstance(jobs, Expr) else as_ids(jobs, "jobs")
    send, receive = anyio.create_memory_object_stream[JobEvent | BaseException](buffer)
    last: dict[str, JobStatus] = {}

    def on_job(job: Job) -> None:
        prev = last.get(job.id)
        if prev is job.status:
            return
        last[job.id] = job.status
        send.send_nowait(JobEvent(job, prev, job.status, _utcnow()))

    def on_error(job_id: str | None, exc: BaseException) -> None:
        send.send_nowait(exc)

    async def events() -> AsyncGenerator[JobEvent, None]:
        async for item in receive:
            if isinstance(item, BaseException):
                raise item
            yield item

    hub = client.hub
    if isinstance(jobs, Expr):
        # one feed for every filter watch of the client: push, or one shared listing
        # per poll round (watch.FilterSubscription)
        flt = FilterSubscription(jobs, interval, on_job, on_error)
        async with send, receive:
            await hub.register_filter(flt)
            try:
                it = events()
                try:
                    yield it
                finally:
                    await it.aclose()
            finally:
                hub.unregister_filter(flt)
        return
    assert ids is not None
    sub = CallbackSubscription(tuple(ids), interval, on_job, on_error)
    hub.register(sub)
    try:
        async with send, receive:
            it = events()
            try:
                yield it
            finally:
                await it.aclose()
    finally:
        hub.unregister(sub)
