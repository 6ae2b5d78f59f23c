"""P5: memory per concurrent `wait()`, measured as users write it: n `farm.jobs.wait()`
calls in one anyio task group (goal: <= 0.6 KB per wait over a bare anyio task
awaiting an event), and `as_completed` over n ids (goal: <= 250 B per job).

    python benchmarks/p5_wait_memory.py [n] [url]

Submits n + 1 paused jobs to a fresh local farm (or the given URL); one wait end to end
first, so lazily imported code is not counted. Each case runs in a fresh interpreter
and is measured twice, in the same run as its reference:

- traced: the growth of Python's allocations (tracemalloc, started just before the
  case): exact and repeatable, the figure the goals are checked against;
- RSS, in a second pass without tracemalloc: what the OS sees. It understates the
  aiofarm cases: submitting n jobs grew the heap first, and freed memory is reused
  without RSS moving.

References: n anyio tasks in one task group, each awaiting its own `anyio.Event` (the
floor any per-wait design pays for the task that waits, as users write it); n plain
asyncio tasks each awaiting a future (the floor without anyio's task bookkeeping,
beside the same waits as plain asyncio tasks). `as_completed` runs in one task, so its
reference is nothing: all of it is per-job cost.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
import tempfile
import tracemalloc
from collections.abc import Awaitable, Callable

import anyio
import psutil

from aiofarm import Client, JobSpec, JobStatus

GOAL_OVER_FLOOR = 0.6 * 1024
GOAL_AS_COMPLETED = 250.0
SETTLE = 0.5  # seconds for every task to start and every wait to register


def rss() -> int:
    return int(psutil.Process().memory_info().rss)


class Meter:
    """Bytes per item grown between ``start`` and ``stop``: Python's traced allocations
    or, in a separate pass (tracemalloc's own bookkeeping would show in it), RSS."""

    traced_pass = True  # which figure this process measures

    def __init__(self, n: int) -> None:
        self.n = n
        self.bytes = 0.0

    def start(self) -> None:
        gc.collect()
        if self.traced_pass:
            tracemalloc.start()
        self._start = self._now()

    def _now(self) -> int:
        return tracemalloc.get_traced_memory()[0] if self.traced_pass else rss()

    def stop(self) -> None:
        gc.collect()
        self.bytes = (self._now() - self._start) / self.n
        if self.traced_pass:
            tracemalloc.stop()


async def anyio_floor(n: int) -> Meter:
    events = [anyio.Event() for _ in range(n)]
    meter = Meter(n)

    async def waiter(event: anyio.Event) -> None:
        await event.wait()

    async with anyio.create_task_group() as tg:
        meter.start()
        for event in events:
            tg.start_soon(waiter, event)
        await anyio.sleep(SETTLE)
        meter.stop()
        for event in events:
            event.set()
    return meter


async def asyncio_floor(n: int) -> Meter:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(n)]
    meter = Meter(n)

    async def waiter(fut: asyncio.Future[None]) -> None:
        await fut

    meter.start()
    tasks = [asyncio.ensure_future(waiter(fut)) for fut in futures]
    await anyio.sleep(SETTLE)
    meter.stop()
    for fut in futures:
        fut.set_result(None)
    await asyncio.gather(*tasks)
    return meter


async def fresh_jobs(farm: Client, n: int) -> list[str]:
    jobs = await farm.jobs.submit([JobSpec(command=["true"], paused=True) for _ in range(n + 1)])
    ids = [j.id for j in jobs]
    # warm-up: one wait end to end, so lazily imported code is not counted
    await farm.jobs.cancel(ids[0])
    await farm.jobs.wait(ids[0])
    return ids[1:]


async def waits_in_task_group(farm: Client, ids: list[str]) -> Meter:
    meter = Meter(len(ids))
    done = 0

    async def waiter(job_id: str) -> None:
        nonlocal done
        result = await farm.jobs.wait(job_id)
        assert result.status is JobStatus.CANCELED
        done += 1

    async with anyio.create_task_group() as tg:
        meter.start()
        for job_id in ids:
            tg.start_soon(waiter, job_id)
        await anyio.sleep(SETTLE)
        assert farm.hub.watched == len(ids), "not every wait registered yet"
        meter.stop()
        await farm.jobs.cancel(ids)
    assert done == len(ids)
    return meter


async def waits_as_asyncio_tasks(farm: Client, ids: list[str]) -> Meter:
    meter = Meter(len(ids))

    async def waiter(job_id: str) -> None:
        await farm.jobs.wait(job_id)

    meter.start()
    tasks = [asyncio.ensure_future(waiter(job_id)) for job_id in ids]
    await anyio.sleep(SETTLE)
    assert farm.hub.watched == len(ids), "not every wait registered yet"
    meter.stop()
    await farm.jobs.cancel(ids)
    await asyncio.gather(*tasks)
    return meter


async def as_completed(farm: Client, ids: list[str]) -> Meter:
    meter = Meter(len(ids))
    finished = 0
    registered = anyio.Event()

    async def consume() -> None:
        nonlocal finished
        it = farm.jobs.as_completed(ids)
        registered.set()
        async for _ in it:
            finished += 1

    async with anyio.create_task_group() as tg:
        meter.start()
        tg.start_soon(consume)
        await registered.wait()
        await anyio.sleep(SETTLE)
        assert farm.hub.watched == len(ids), "as_completed has not registered its ids yet"
        meter.stop()
        await farm.jobs.cancel(ids)
    assert finished == len(ids)
    return meter


async def case(url: str, n: int, run: Callable[[Client, list[str]], Awaitable[Meter]]) -> Meter:
    async with Client(url) as farm:
        return await run(farm, await fresh_jobs(farm, n))


CASES: dict[str, Callable[[int, str], Awaitable[Meter]]] = {
    "anyio floor": lambda n, url: anyio_floor(n),
    "wait in task group": lambda n, url: case(url, n, waits_in_task_group),
    "asyncio floor": lambda n, url: asyncio_floor(n),
    "wait as asyncio tasks": lambda n, url: case(url, n, waits_as_asyncio_tasks),
    "as_completed": lambda n, url: case(url, n, as_completed),
}


def one(name: str, traced: bool, n: int, url: str) -> float:
    """One case in a fresh interpreter, so each starts from the same small heap."""
    out = subprocess.run(
        [sys.executable, __file__, "--one", name, "traced" if traced else "rss", str(n), url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return float(out.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--one"]:
        name, mode, n, url = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5]
        Meter.traced_pass = mode == "traced"
        print(anyio.run(CASES[name], n, url).bytes)
        return
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    given = sys.argv[2] if len(sys.argv) > 2 else None
    scheme = (given or "local://").split(":")[0]
    figures: dict[tuple[str, bool], float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for traced in (True, False):
            for i, name in enumerate(CASES):
                url = given or f"local://{tmp}/{'traced' if traced else 'rss'}{i}"
                figures[name, traced] = one(name, traced, n, url)

    rows = [
        ("anyio task awaiting an anyio.Event (floor)", "anyio floor", None),
        (f"jobs.wait() in one anyio task group, {scheme}://", "wait in task group", "anyio floor"),
        ("asyncio task awaiting a future (floor)", "asyncio floor", None),
        (f"jobs.wait() as plain asyncio tasks, {scheme}://", "wait as asyncio tasks", "asyncio floor"),
        (f"as_completed over {n} ids, one task", "as_completed", None),
    ]
    print(f"{n} concurrent waits; bytes per wait (per job for as_completed)\n")
    print(f"{'case':52} {'traced':>7} {'over':>6} {'RSS':>7} {'over':>6}")
    for label, key, floor in rows:
        cells = []
        for traced in (True, False):
            value = figures[key, traced]
            over = f"{value - figures[floor, traced]:6.0f}" if floor else f"{'':6}"
            cells.append(f"{value:7.0f} {over}")
        print(f"{label:52} {' '.join(cells)}")
    over_floor = figures["wait in task group", True] - figures["anyio floor", True]
    per_job = figures["as_completed", True]
    print(
        f"\nwait() over the anyio floor (traced): {over_floor:.0f} B (goal <= {GOAL_OVER_FLOOR:.0f} B): "
        f"{'PASS' if over_floor <= GOAL_OVER_FLOOR else 'FAIL'}"
    )
    print(
        f"as_completed (traced): {per_job:.0f} B per job (goal <= {GOAL_AS_COMPLETED:.0f} B): "
        f"{'PASS' if per_job <= GOAL_AS_COMPLETED else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
