"""watch(where_expr) is fed by the client's Hub: a baseline listing when it starts,
then pushes, or ONE listing per poll round shared by every filter watch."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import anyio
import pytest

from aiofarm import BackendError, Client, JobEvent, JobSpec, JobStatus, where
from tests.dummy import dummy

pytestmark = pytest.mark.anyio


async def next_event(events: AsyncIterator[JobEvent]) -> JobEvent:
    with anyio.fail_after(10):
        return await events.__anext__()


async def test_filter_watches_share_one_listing_per_round() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        jobs = await farm.jobs.submit([JobSpec(command=["x"], name=f"j{i}", priority=i) for i in range(5)])
        async with AsyncExitStack() as stack:
            streams = [
                await stack.enter_async_context(farm.jobs.watch(where.priority >= i, max_interval=0.5))
                for i in range(5)
            ]
            baseline = driver.calls["list_page"]
            assert baseline == 5  # one listing each, when it started
            # what was active when each watch started came first
            for i, events in enumerate(streams):
                got = {(await next_event(events)).job.name for _ in range(5 - i)}
                assert got == {f"j{k}" for k in range(i, 5)}
            rounds = farm.hub.rounds
            driver.set_status(jobs[4].id, JobStatus.SUCCEEDED)
            for events in streams:  # j4 matches every filter: every watch hears it
                ev = await next_event(events)
                assert (ev.job.name, ev.previous, ev.status) == ("j4", JobStatus.PENDING, JobStatus.SUCCEEDED)
            driver.set_status(jobs[0].id, JobStatus.FAILED)
            ev = await next_event(streams[0])  # only the first filter matches j0
            assert (ev.job.name, ev.status) == ("j0", JobStatus.FAILED)
            listings = driver.calls["list_page"] - baseline
            assert listings == farm.hub.rounds - rounds >= 1  # one per round, not one per watch
            assert driver.calls["get_jobs"] == 0  # no id is watched: no batched reads at all


async def test_a_finished_job_is_history_a_later_change_is_news() -> None:
    async with Client("dummy://?push=1") as farm:
        driver = dummy(farm)
        done, active = await farm.jobs.submit([JobSpec(command=["x"], tags=["t"]) for _ in range(2)])
        driver.set_status(done.id, JobStatus.SUCCEEDED)
        async with farm.jobs.watch(where.tags.contains("t")) as events:
            first = await next_event(events)
            assert (first.job.id, first.previous, first.status) == (active.id, None, JobStatus.PENDING)
            driver.set_status(done.id, JobStatus.FAILED)  # it changed after the watch began
            ev = await next_event(events)
            assert (ev.job.id, ev.status) == (done.id, JobStatus.FAILED)
            (new,) = await farm.jobs.submit([JobSpec(command=["x"], tags=["t"])])
            driver.set_status(new.id, JobStatus.RUNNING)  # a job submitted later
            ev = await next_event(events)
            assert (ev.job.id, ev.status) == (new.id, JobStatus.RUNNING)
        assert farm.hub.watched == 0 and not farm.hub._filters


async def test_listing_errors_reach_the_watcher() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        await farm.jobs.submit([JobSpec(command=["x"])])
        async with farm.jobs.watch(where.status == JobStatus.PENDING, max_interval=0.5) as events:
            await next_event(events)

            async def broken(*args: object) -> object:
                raise BackendError("dummy", 403, "listing denied")

            driver.list_page = broken  # type: ignore[method-assign]
            with pytest.raises(BackendError, match="listing denied"):
                await next_event(events)


async def test_a_baseline_error_raises_from_watch_itself() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)

        async def broken(*args: object) -> object:
            raise BackendError("dummy", 500, "down")

        driver.list_page = broken  # type: ignore[method-assign]
        with pytest.raises(BackendError):
            async with farm.jobs.watch(where.name == "x"):
                pass
        assert not farm.hub._filters
