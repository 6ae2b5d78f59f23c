"""``jobs.as_completed(ids, until=...)`` (aiofarm/jobevents.py): each job as it reaches
a status asked for, or finishes without; the one fan-out ``aiofarm wait --for`` uses."""

from __future__ import annotations

import anyio
import pytest

from aiofarm import Client, InvalidSpec, Job, JobSpec, JobStatus, WaitTimeout

from .dummy import dummy
from .local.helpers import eventually

pytestmark = pytest.mark.anyio

async def test_each_job_comes_as_it_gets_there_or_finishes_without() -> None:
    async with Client("dummy://?push=1") as farm:
        driver = dummy(farm)
        first, second, never = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(3)])
        got: list[Job] = []
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                ids = [first.id, second.id, never.id]
                async for job in farm.jobs.as_completed(ids, timeout=10, until="running"):
                    got.append(job)

            tg.start_soon(consume)
            await eventually(lambda: driver.calls["get_jobs"] >= 1, 10, "the first read")
            driver.set_status(second.id, JobStatus.RUNNING)
            driver.set_status(never.id, JobStatus.CANCELED)  # canceled before it ran
            driver.set_status(first.id, JobStatus.RUNNING)
            driver.set_status(first.id, JobStatus.SUCCEEDED)  # after it was yielded: no more
        assert [(j.id, j.status) for j in got] == [
            (second.id, JobStatus.RUNNING),
            (never.id, JobStatus.CANCELED),
            (first.id, JobStatus.RUNNING),
        ]
        assert farm.hub.watched == 0


async def test_a_job_that_ran_between_two_looks_comes_as_it_ended() -> None:
    async with Client("dummy://") as farm:  # polled
        driver = dummy(farm)
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        driver.set_status(job.id, JobStatus.RUNNING)
        driver.set_status(job.id, JobStatus.SUCCEEDED)
        got = [j async for j in farm.jobs.as_completed(job.id, timeout=10, until={"running", "failed"})]
        # `aiofarm wait --for running` then says it is not running (nothing to exec into)
        assert [j.status for j in got] == [JobStatus.SUCCEEDED] and got[0].started_at is not None


async def test_until_times_out_naming_the_jobs_not_there_yet() -> None:
    async with Client("dummy://?push=1") as farm:
        driver = dummy(farm)
        done, stuck = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(2)])
        driver.set_status(done.id, JobStatus.RUNNING)
        got: list[str] = []
        with pytest.raises(WaitTimeout) as info:
            async for job in farm.jobs.as_completed([done.id, stuck.id], timeout=0.3, until=JobStatus.RUNNING):
                got.append(job.id)
        assert got == [done.id] and info.value.job_ids == [stuck.id]


async def test_a_bad_until_is_named() -> None:
    async with Client("dummy://") as farm:
        with pytest.raises(InvalidSpec) as info:
            async for _ in farm.jobs.as_completed(["a"], until="sideways"):
                pass
        assert info.value.field == "until"
