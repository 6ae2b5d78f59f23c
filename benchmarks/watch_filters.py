"""Filter watches on a polling driver: ``watch(where)`` fed by the client's Hub (ONE
listing per poll round for every filter watch of the client) beside the reference,
one listing loop per watch (what ``Jobs._poll_filter`` did before, re-created here on
the same back-off), measured in the same run on the in-memory dummy driver.

Each contender opens ``--watches`` filter watches (``priority == k``) over ``--jobs``
jobs, waits until every watch has had its first events, then changes one job of each
filter and waits until every watch has reported it. We count the driver's requests
(``list_page`` calls) and the jobs they carried, per poll round while nothing
changes (per second: a round's length depends on the work it does), the client's CPU
time, and the time from the change until the last watch saw it. The dummy filters
one comparison natively but not an ``|`` of them, so the Hub's one listing carries
every job while each reference loop carries only its matches: requests are what a
remote back end charges for, and what this figure is about.

    .venv/bin/python benchmarks/watch_filters.py [--jobs 5000 --watches 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiofarm import Client, Job, JobSpec, JobStatus, where
from aiofarm.backoff import Backoff
from aiofarm.drivers.dummy import DummyDriver

ROUND = 0.5  # the back-off's first and, here, every step (max_interval=0.5)


@asynccontextmanager
async def per_watch_loop(farm: Client, expr: object) -> AsyncIterator[Callable[[], Awaitable[Job]]]:
    """The reference: one listing loop per watch, on the same back-off."""
    send, receive = anyio.create_memory_object_stream[Job](float("inf"))
    seen: dict[str, JobStatus] = {}

    async def loop() -> None:
        backoff = Backoff(ROUND, ROUND)
        first = True
        while True:
            async with farm.jobs.list(where=expr) as it:  # type: ignore[arg-type]
                async for job in it:
                    if seen.get(job.id) is not job.status:
                        seen[job.id] = job.status
                        if not first or job.status.is_active:
                            send.send_nowait(job)
            first = False
            await backoff.sleep()

    async with anyio.create_task_group() as tg, send, receive:
        tg.start_soon(loop)
        yield receive.receive
        tg.cancel_scope.cancel()


@asynccontextmanager
async def hub_watch(farm: Client, expr: object) -> AsyncIterator[Callable[[], Awaitable[Job]]]:
    async with farm.jobs.watch(expr, max_interval=ROUND) as events:  # type: ignore[arg-type]

        async def next_job() -> Job:
            return (await events.__anext__()).job

        yield next_job


async def measure(kind: str, jobs: int, watches: int, quiet_rounds: int) -> dict[str, float]:
    opener = hub_watch if kind == "hub" else per_watch_loop
    async with Client("dummy://") as farm:
        driver = farm.driver
        assert isinstance(driver, DummyDriver)
        submitted = await farm.jobs.submit(
            [JobSpec(command=["x"], priority=i % watches) for i in range(jobs)]
        )
        per_filter = jobs // watches
        async with AsyncExitStack() as stack:
            nexts = [await stack.enter_async_context(opener(farm, where.priority == k)) for k in range(watches)]
            with anyio.fail_after(120):
                for nxt in nexts:  # every watch reports its active matches first
                    for _ in range(per_filter):
                        await nxt()
            calls, listed = driver.calls["list_page"], driver.calls["listed"]
            quiet_start, cpu_start = time.monotonic(), time.process_time()
            # nothing changes for a while: what does watching cost?
            with anyio.move_on_after(quiet_rounds * ROUND):
                await anyio.sleep_forever()
            quiet = time.monotonic() - quiet_start
            cpu = (time.process_time() - cpu_start) / quiet
            per_second_calls = (driver.calls["list_page"] - calls) / quiet
            per_second_jobs = (driver.calls["listed"] - listed) / quiet
            t0 = time.monotonic()
            for k in range(watches):
                driver.set_status(submitted[k].id, JobStatus.SUCCEEDED)
            with anyio.fail_after(120):
                for nxt in nexts:
                    job = await nxt()
                    assert job.status is JobStatus.SUCCEEDED
            noticed = time.monotonic() - t0
    return {"requests": per_second_calls, "jobs": per_second_jobs, "cpu": cpu, "noticed": noticed}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--watches", type=int, default=50)
    parser.add_argument("--quiet-rounds", type=int, default=6)
    args = parser.parse_args()
    hub = await measure("hub", args.jobs, args.watches, args.quiet_rounds)
    ref = await measure("loop", args.jobs, args.watches, args.quiet_rounds)
    print(f"{args.watches} filter watches over {args.jobs} jobs (dummy driver, rounds every {ROUND} s)")
    print(f"{'':38} {'Hub (one listing)':>18} {'loop per watch':>16}")
    print(f"{'list requests per second':38} {hub['requests']:>18.1f} {ref['requests']:>16.1f}")
    print(f"{'jobs sent per second':38} {hub['jobs']:>18.0f} {ref['jobs']:>16.0f}")
    print(f"{'client CPU seconds per second':38} {hub['cpu']:>18.2f} {ref['cpu']:>16.2f}")
    print(f"{'change noticed by every watch (s)':38} {hub['noticed']:>18.2f} {ref['noticed']:>16.2f}")


if __name__ == "__main__":
    anyio.run(main)
