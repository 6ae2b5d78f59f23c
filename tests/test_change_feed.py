"""The shared poller with a driver's change feed (``Driver.changes_since``), over the
dummy driver: the feed makes noticing sooner and cheaper; full rounds stay the truth."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

import aiofarm
from aiofarm import Client, JobSpec, JobStatus
from aiofarm.errors import AuthError
from tests.dummy import dummy

pytestmark = pytest.mark.anyio

N = 1000  # ten get_jobs calls per full round: a probe every 0.4 s of a 4 s wait


async def until(predicate: object, seconds: float = 20) -> None:
    with anyio.fail_after(seconds):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - counters have no event
            await anyio.sleep(0.01)


async def start_waits(
    farm: Client, tg: anyio.abc.TaskGroup, ids: Sequence[str], done: dict[str, JobStatus]
) -> None:
    async def wait(job_id: str) -> None:
        done[job_id] = (await farm.jobs.wait(job_id, max_interval=60)).status

    for job_id in ids:
        tg.start_soon(wait, job_id)
    # two full rounds (1 s, then 2 s apart): the next one is 4 s away
    await until(lambda: farm.hub.rounds >= 2)


async def test_feed_notices_between_rounds_with_one_small_read() -> None:
    async with Client("dummy://?feed=1") as farm:
        driver = dummy(farm)
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(N)])
        done: dict[str, JobStatus] = {}
        async with anyio.create_task_group() as tg:
            await start_waits(farm, tg, [j.id for j in jobs], done)
            rounds, gets = farm.hub.rounds, driver.calls["get_jobs"]
            for job in jobs[:5]:
                driver.set_status(job.id, JobStatus.SUCCEEDED, exit_code=0)
            await until(lambda: len(done) == 5)
            assert farm.hub.rounds == rounds  # no full round: the feed said which
            assert driver.calls["get_jobs"] == gets + 1  # just those five, in one read
            assert farm.hub.probes >= 1
            tg.cancel_scope.cancel()
    assert set(done) == {j.id for j in jobs[:5]}
    assert set(done.values()) == {JobStatus.SUCCEEDED}


async def test_feed_overflow_with_a_watched_change_runs_a_full_round_at_once() -> None:
    async with Client("dummy://?feed=1") as farm:
        driver = dummy(farm)
        driver.feed_page = 10
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(N)])
        done: dict[str, JobStatus] = {}
        async with anyio.create_task_group() as tg:
            await start_waits(farm, tg, [j.id for j in jobs], done)
            rounds = farm.hub.rounds
            for job in jobs[:50]:  # more than one answer of the feed holds
                driver.set_status(job.id, JobStatus.FAILED, exit_code=1)
            await until(lambda: len(done) == 50)
            assert farm.hub.rounds == rounds + 1
            tg.cancel_scope.cancel()
    assert set(done.values()) == {JobStatus.FAILED}


async def test_feed_overflow_of_unwatched_jobs_does_not_trigger_rounds() -> None:
    async with Client("dummy://?feed=1") as farm:
        driver = dummy(farm)
        driver.feed_page = 10
        others = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(40)])
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(N)])
        done: dict[str, JobStatus] = {}
        async with anyio.create_task_group() as tg:
            await start_waits(farm, tg, [j.id for j in jobs], done)
            rounds, probes = farm.hub.rounds, farm.hub.probes
            for job in others:  # the feed's one page is all jobs nobody watches
                driver.set_status(job.id, JobStatus.RUNNING)
            await until(lambda: farm.hub.probes >= probes + 3)
            assert farm.hub.rounds == rounds
            assert done == {}
            tg.cancel_scope.cancel()


async def test_rounds_stay_apart_while_watched_jobs_keep_changing() -> None:
    async with Client("dummy://?feed=1") as farm:
        driver = dummy(farm)
        driver.feed_page = 10
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(N)])
        done: dict[str, JobStatus] = {}
        async with anyio.create_task_group() as tg:
            await start_waits(farm, tg, [j.id for j in jobs], done)
            driver.get_delay = 0.15  # a round takes ~0.3 s: jobs change while it reads
            rounds = farm.hub.rounds
            # five more jobs start every 10 ms for 2 s: every probe names watched
            # jobs that moved, in a page too small for all of them
            for start in range(0, N, 5):
                for job in jobs[start : start + 5]:
                    driver.set_status(job.id, JobStatus.RUNNING)
                await anyio.sleep(0.01)
            extra = farm.hub.rounds - rounds
            tg.cancel_scope.cancel()
    # back to back they would be ~6; MIN_ROUND_GAP after each keeps them >= 0.8 s apart
    assert 1 <= extra <= 3, extra


async def test_a_feed_that_fails_leaves_the_rounds_to_notice() -> None:
    async with Client("dummy://?feed=1") as farm:
        driver = dummy(farm)
        driver.feed_error = AuthError("dummy: not allowed to search")
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(N)])
        results: list[aiofarm.CompletionResult] = []

        async def wait(job_id: str) -> None:
            results.append(await farm.jobs.wait(job_id, max_interval=0.5))

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(wait, job.id)
            await until(lambda: driver.calls["changes_since"] >= 1)
            for job in jobs:
                driver.set_status(job.id, JobStatus.SUCCEEDED, exit_code=0)
        probes = farm.hub.probes
    assert len(results) == N
    assert driver.calls["changes_since"] == 1  # asked once, then polling only
    assert probes == 0


async def test_a_round_of_one_request_is_not_probed() -> None:
    async with Client("dummy://?feed=1") as farm:
        driver = dummy(farm)
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(driver.max_batch_get)])
        results: list[aiofarm.CompletionResult] = []

        async def wait(job_id: str) -> None:
            results.append(await farm.jobs.wait(job_id, max_interval=0.5))

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(wait, job.id)
            await until(lambda: farm.hub.rounds >= 3)
            for job in jobs:
                driver.set_status(job.id, JobStatus.SUCCEEDED, exit_code=0)
    assert len(results) == driver.max_batch_get
    assert driver.calls["changes_since"] == 0


async def test_feed_flag_is_checked() -> None:
    with pytest.raises(aiofarm.InvalidSpec, match="feed must be 0 or 1"):
        async with Client("dummy://?feed=yes"):
            pass
