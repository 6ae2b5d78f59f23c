"""P5: resident memory per concurrent `wait()` with 10,000 waits (goal <= 1.5 KB each).

    python benchmarks/p5_wait_memory.py [n] [url]

Submits n paused jobs to a fresh local farm (or the given URL), starts one
`farm.jobs.wait()` task per job, measures the RSS growth once every wait is
registered, then cancels the jobs so every wait returns. The reference,
measured in the same run, is n bare asyncio tasks each awaiting a future: the
floor any per-wait design pays for the task that waits. Tasks are plain
asyncio tasks in both cases (an anyio task group adds ~2.5 KB per task of its
own bookkeeping, whatever the task does).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import tempfile

import anyio
import psutil

from aiofarm import Client, JobSpec, JobStatus

GOAL_BYTES = 1.5 * 1024


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


async def reference(n: int) -> float:
    loop = asyncio.get_running_loop()
    futures = [loop.create_future() for _ in range(n)]

    async def waiter(fut: asyncio.Future[None]) -> None:
        await fut

    before = rss()
    tasks = [asyncio.ensure_future(waiter(fut)) for fut in futures]
    await anyio.sleep(0.5)
    after = rss()
    for fut in futures:
        fut.set_result(None)
    await asyncio.gather(*tasks)
    return (after - before) / n


async def measure(n: int, url: str) -> tuple[float, int]:
    async with Client(url) as farm:
        jobs = await farm.jobs.submit([JobSpec(command=["true"], paused=True) for _ in range(n)])
        ids = [j.id for j in jobs]
        done = 0

        async def waiter(job_id: str) -> None:
            nonlocal done
            result = await farm.jobs.wait(job_id)
            assert result.status is JobStatus.CANCELED
            done += 1

        # warm-up: one wait end to end, so lazily imported code is not counted
        await farm.jobs.cancel(ids[0])
        await farm.jobs.wait(ids[0])
        ids = ids[1:]
        before = rss()
        tasks = [asyncio.ensure_future(waiter(job_id)) for job_id in ids]
        await anyio.sleep(0.5)
        assert farm.hub.watched == len(ids), "not every wait registered yet"
        after = rss()
        await farm.jobs.cancel(ids)
        await asyncio.gather(*tasks)
        return (after - before) / len(ids), done


async def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    with tempfile.TemporaryDirectory() as tmp:
        url = sys.argv[2] if len(sys.argv) > 2 else f"local://{tmp}"
        ref = await reference(n)
        per_wait, done = await measure(n, url)
    print(f"{'case':46} {'bytes each':>11}")
    print(f"{'bare asyncio task awaiting a future (reference)':46} {ref:11.0f}")
    print(f"{'aiofarm jobs.wait() on ' + url.split(':')[0] + '://':46} {per_wait:11.0f}")
    print(f"{'aiofarm overhead over the bare task':46} {per_wait - ref:11.0f}")
    print(f"\n{done} waits completed; goal <= {GOAL_BYTES:.0f} B each: {'PASS' if per_wait <= GOAL_BYTES else 'FAIL'}")


if __name__ == "__main__":
    anyio.run(main)
