"""Loops over pages yield to the event loop every page, and a cancel from another task
is honoured within one page: a listing of 10,200 jobs on local (the farm service) and
dummy (answers from memory, never suspends by itself), and a log of 10,200 lines."""

from __future__ import annotations

import gc
import math
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio
import anyio.lowlevel
import pytest

from aiofarm import Client, JobSpec

from .stalls import StallTracer

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

N_JOBS = 10_200
PAGE = 500


@pytest.fixture(params=["local", "dummy"])
async def farm(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Client]:
    url = f"local://{tmp_path}/state" if request.param == "local" else "dummy://"
    async with Client(url) as client:
        for start in range(0, N_JOBS, 2_000):
            n = min(2_000, N_JOBS - start)
            await client.jobs.submit([JobSpec(command=["true"], paused=True, name=f"j{start + i}") for i in range(n)])
        yield client


class Ticker:
    """A task that counts how often it gets the loop, and the longest gap between two."""

    def __init__(self) -> None:
        self.ticks = 0
        self.longest = 0.0

    async def run(self) -> None:
        last = time.perf_counter()
        while True:
            await anyio.lowlevel.checkpoint()
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now
            self.ticks += 1


async def _listing_yields_every_page(farm: Client, figure: Callable[[str, object], None]) -> None:
    ticker = Ticker()
    seen = 0
    # the fixture's 10,200 submitted specs are garbage by now: collected here, so a
    # full collection they are due is not counted as the listing's stall
    gc.collect()
    with StallTracer() as tracer:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            await anyio.lowlevel.checkpoint()
            before = ticker.ticks
            async with farm.jobs.list(page_size=PAGE) as it:
                async for _ in it:
                    seen += 1  # a consumer that never awaits: only the listing can yield
            ticks = ticker.ticks - before
            tg.cancel_scope.cancel()
    pages = math.ceil(N_JOBS / PAGE)
    assert seen == N_JOBS
    # at least once between two pages (a driver that suspends itself adds more)
    assert ticks >= pages - 1, f"the loop ran other tasks {ticks} times over {pages} pages"
    name = f"{farm.driver_name}: listing {N_JOBS} jobs"
    figure(f"{name}, longest loop stall", f"{ticker.longest * 1000:.1f} ms")
    figure(f"{name}, longest loop iteration", str(tracer.longest))
    figure(f"{name}, costliest loop iteration", str(tracer.costliest))


async def _listing_cancel_is_honoured_within_one_page(farm: Client) -> None:
    seen = 0
    at_cancel: list[int] = []
    with anyio.CancelScope() as scope:

        async def cancel_after_first_page() -> None:
            while seen == 0:
                await anyio.lowlevel.checkpoint()
            at_cancel.append(seen)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_after_first_page)
            async with farm.jobs.list(page_size=PAGE) as it:
                async for _ in it:
                    seen += 1
    assert scope.cancelled_caught
    assert at_cancel and seen <= at_cancel[0] + PAGE, (at_cancel, seen)
    assert seen < N_JOBS


async def _sorted_listing_yields(farm: Client) -> None:
    ticker = Ticker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker.run)
        await anyio.lowlevel.checkpoint()
        before = ticker.ticks
        async with farm.jobs.list(page_size=PAGE, sort="-name", where="name matches 'j1'") as it:
            names = [job.name async for job in it]
        ticks = ticker.ticks - before
        tg.cancel_scope.cancel()
    assert names and names == sorted(names, reverse=True)
    assert ticks >= 2


async def test_listing_of_10200_jobs(farm: Client, figure: Callable[[str, object], None]) -> None:
    """Yields every page (a consumer that never awaits still lets other tasks run),
    a cancel from another task stops it within one page, and a listing sorted in the
    client yields while it gathers."""
    await _listing_yields_every_page(farm, figure)
    await _listing_cancel_is_honoured_within_one_page(farm)
    await _sorted_listing_yields(farm)


async def test_log_read_yields_every_page(tmp_path: Path) -> None:
    async with Client("dummy://") as farm:
        (job,) = await farm.jobs.submit([JobSpec(command=["true"])])
        driver = farm.driver
        for i in range(N_JOBS):
            driver.write_log(job.id, f"line {i}")  # type: ignore[attr-defined]
        ticker = Ticker()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)
            await anyio.lowlevel.checkpoint()
            before = ticker.ticks
            text = await farm.logs.read(job.id)
            ticks = ticker.ticks - before
            tg.cancel_scope.cancel()
    assert text.count("\n") == N_JOBS
    assert ticks >= 2
