"""Waiting for one job to reach a status: ``jobs.wait`` (any status, default
finished) and the start wait of attach, exec and port_forward (RUNNING) share
this one loop over the client's Hub (push wakes at once; polling drivers share
one batched poller that backs off from 0.5 s to ``max_interval``)."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING

import anyio
import attrs

from .errors import InvalidSpec, StatusNotReached, WaitTimeout
from .models import Capability, CompletionResult, Job, JobStatus, Task
from .subscriptions import Waiter
from .validation import check_id, check_interval, check_timeout
from .watch import DEFAULT_MAX_INTERVAL

if TYPE_CHECKING:
    from .drivers.base import Driver
    from .watch import Hub

__all__ = ["FINISHED", "StatusCallback", "check_until", "completion", "wait"]

StatusCallback = Callable[[Job], "bool | Awaitable[bool | None] | None"]
FINISHED = JobStatus.finished_items()


class _NoTimeout:
    """The ``with`` target of a wait without a timeout. Its methods are static, so
    entering binds no method object: with ``contextlib.nullcontext`` that cost 64 B
    per concurrent wait (P5)."""

    __slots__ = ()

    @staticmethod
    def __enter__() -> None:
        return None

    @staticmethod
    def __exit__(*exc_info: object) -> None:
        return None


_NO_TIMEOUT = _NoTimeout()


def check_until(until: object) -> frozenset[JobStatus]:
    """``until`` as a set of statuses: None = finished; a status, its name, or an
    iterable of those."""
    if until is None:
        return FINISHED
    items: Iterable[object] = (until,) if isinstance(until, (str, JobStatus)) else until  # type: ignore[assignment]
    if not isinstance(items, Iterable) or isinstance(items, bytes):
        raise InvalidSpec("until", f"must be a job status or a set of them, got {type(until).__name__}")
    out: set[JobStatus] = set()
    for item in items:
        try:
            out.add(item if isinstance(item, JobStatus) else JobStatus(str(item).strip().lower()))
        except ValueError:
            names = ", ".join(s.value for s in JobStatus)
            raise InvalidSpec("until", f"{item!r} is not a job status (one of {names})") from None
    if not out:
        raise InvalidSpec("until", "names no status")
    return frozenset(out)


async def wait(
    hub: Hub,
    driver: Driver,
    job_id: str,
    *,
    until: object = None,
    timeout: object = None,
    max_interval: object = DEFAULT_MAX_INTERVAL,
    on_status: StatusCallback | None = None,
    progress: Callable[[Job], object] | None = None,
) -> CompletionResult:
    """The job's first state with a status in ``until`` (default: finished) as a
    :class:`CompletionResult`; a job that went through one between two looks and has
    finished since gives its final state. ``StatusNotReached`` if it finishes
    without reaching one,
    ``WaitTimeout`` after ``timeout`` seconds, ``JobNotFound`` (from the hub) for an
    unknown id. ``on_status(job)`` hears the first state seen and every status change.

    ``Jobs.wait`` returns this coroutine itself (validation included), so ten
    thousand concurrent waits pay for one coroutine frame each, not two (P5)."""
    check_id(job_id, "job_id")
    wanted = check_until(until)
    limit = check_timeout(timeout)
    interval = check_interval(max_interval)
    started = time.monotonic()
    waiter = Waiter(job_id, interval)
    hub.register(waiter)
    # no cancel scope unless a timeout is asked
    try:
        with _NO_TIMEOUT if limit is None else anyio.fail_after(limit):
            while True:
                # `state` is rebound to the next future before any await, so no
                # Job stays alive per waiting coroutine
                state = waiter.next()
                if not isinstance(state, Job):
                    await state
                    continue
                if progress is not None:
                    progress(state)
                if on_status is not None:
                    outcome = on_status(state)
                    if inspect.isawaitable(outcome):
                        await outcome
                if state.status in wanted:
                    job = state
                    break
                if state.status.is_finished:
                    if _passed(state, wanted):
                        job = state  # it got there between two looks, and is done now
                        break
                    raise StatusNotReached(job_id, wanted, state.status, state)
    except TimeoutError:
        raise WaitTimeout(job_id, limit or 0.0, waiter.seen) from None
    finally:
        hub.unregister(waiter)
    return await completion(driver, job, started)


def _passed(job: Job, wanted: frozenset[JobStatus]) -> bool:
    """Whether a finished job went through a wanted status that no look caught (a
    job that started has been RUNNING, whatever its history holds)."""
    if JobStatus.RUNNING in wanted and job.started_at is not None:
        return True
    return any(t.status in wanted for t in job.history)


async def completion(driver: Driver, job: Job, started: float) -> CompletionResult:
    """The result of a wait that ended with ``job``: with the failed tasks of a job
    that failed or was canceled (and its exit code from them if it has none)."""
    failed: tuple[Task, ...] = ()
    if job.status in (JobStatus.FAILED, JobStatus.CANCELED) and Capability.TASKS in driver.capabilities:
        failed = tuple(t for t in await driver.tasks(job.id) if t.status is JobStatus.FAILED)
        if job.exit_code is None and job.status is JobStatus.FAILED:
            # the job's exit code is its (last) failed task's
            code = next((t.exit_code for t in reversed(failed) if t.exit_code is not None), None)
            if code is not None:
                job = attrs.evolve(job, exit_code=code)
    return CompletionResult(job, job.status, failed, timedelta(seconds=time.monotonic() - started))
