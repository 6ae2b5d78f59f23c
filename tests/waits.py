"""Waiting on a job the way a user would, through the client's own watch and log
follow (events with a deadline, never sleeps), and a fresh tag to find a test's jobs."""

from __future__ import annotations

import uuid

import anyio

from aiofarm import Client, Job, JobStatus


def tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def until_status(
    farm: Client, job_id: str, status: JobStatus, timeout: float = 60, max_interval: float = 0.5
) -> Job:
    """The job once it has ``status``; an AssertionError if it finishes otherwise."""
    with anyio.fail_after(timeout):
        async with farm.jobs.watch(job_id, max_interval=max_interval) as events:
            async for ev in events:
                if ev.status is status:
                    return ev.job
                assert not ev.status.is_finished, f"{job_id} finished as {ev.status} before {status}"
    raise AssertionError(f"the watch of {job_id} ended")


async def until_log(farm: Client, job_id: str, text: str, timeout: float = 60) -> None:
    """Follow the job's log until a line holds ``text``."""
    with anyio.fail_after(timeout):
        async with farm.logs.stream(job_id, follow=True) as lines:
            async for line in lines:
                if text in line.text:
                    return
    raise AssertionError(f"{text!r} never appeared in the log of {job_id}")
