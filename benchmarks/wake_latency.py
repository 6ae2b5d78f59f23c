"""Wake latency across processes: a job exits → ``wait()`` returns in another
process (a client of the farm service), beside the same wait in an embedded farm
(same process, no socket) measured in this run. Goal: service p50 <= 5 ms.

The job's last act is ``exec date +%s.%N > stamp`` (the exit follows the write
within microseconds); the waiting process, separate from the one that submitted,
records when ``wait`` returned. Each job is gated on a file
so the waiter is parked in ``wait`` before the job ends.

    .venv/bin/python benchmarks/wake_latency.py [--jobs 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import textwrap
import time

from aiofarm import Client
from aiofarm.drivers.local.connect import stop_service

WAITER = textwrap.dedent(
    """
    import sys, time, anyio
    from aiofarm import Client

    async def main(url, job_id, out):
        async with Client(url) as farm:
            print("ready", flush=True)
            await farm.jobs.wait(job_id)
            t = time.time()
        with open(out, "w") as f:
            f.write(repr(t))

    anyio.run(main, *sys.argv[1:])
    """
)


def touch(path: str) -> None:
    with open(path, "w"):
        pass


def read(path: str) -> str:
    with open(path) as f:
        return f.read()


async def one(farm: Client, url: str, tmp: str, i: int, other_process: bool) -> float:
    gate, stamp, out = (os.path.join(tmp, f"{name}{i}") for name in ("gate", "stamp", "out"))
    command = f"while [ ! -e {gate} ]; do sleep 0.005; done; exec date +%s.%N > {stamp}"
    job = await farm.jobs.start(command=command)
    if other_process:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", WAITER, url, job.id, out, stdout=asyncio.subprocess.PIPE
        )
        assert proc.stdout is not None
        await proc.stdout.readline()  # parked in wait()
        await asyncio.sleep(0.05)
        touch(gate)
        await proc.wait()
        woke = float(read(out))
    else:
        waiter = asyncio.ensure_future(farm.jobs.wait(job.id))
        await asyncio.sleep(0.05)
        touch(gate)
        await waiter
        woke = time.time()
    return (woke - float(read(stamp))) * 1000


async def series(url: str, n: int, other_process: bool) -> list[float]:
    with tempfile.TemporaryDirectory(prefix="aiofarm-wake-") as tmp:
        async with Client(url) as farm:
            return [await one(farm, url, tmp, i, other_process) for i in range(n)]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="aiofarm-wake-state-") as state:
        try:
            service = await series(f"local://{state}", args.jobs, True)
        finally:
            stop_service(state, cancel_jobs=True)
    with tempfile.TemporaryDirectory(prefix="aiofarm-wake-state-") as state:
        embedded = await series(f"local://{state}?embedded=true", args.jobs, False)

    def row(name: str, xs: list[float]) -> str:
        xs = sorted(xs)
        p50 = statistics.median(xs)
        p99 = xs[min(len(xs) - 1, int(len(xs) * 0.99))]
        return f"{name:>40} | {p50:>8.2f} | {p99:>8.2f}"

    print(f"Wake latency: job exit -> wait() returns, ms, {args.jobs} jobs; goal: service p50 <= 5 ms")
    print(f"{'':>40} | {'p50':>8} | {'p99':>8}")
    print(row("service, wait() in another process", service))
    print(row("embedded, wait() in the farm's process (ref)", embedded))


if __name__ == "__main__":
    asyncio.run(main())
