"""P3: log follow through the farm service.

Throughput: a job writes ``--mb`` MB of 100-byte lines as fast as it can. Reference:
the same program writing to a file alone (no farm). Through the farm, a client in
this process follows the job's log (``logs.stream(follow=True)``) from the start;
we report the job's own run time (submit → finished; the farm reads its pipe and
writes the log while serving the follower) and the follower's (submit → last line
received), each as MB/s and as a ratio to the reference. Goal: >= 0.8.

Latency: a job prints a line every 10 ms carrying the time it was written; the
follower computes receive time - write time. Goal: p50 <= 10 ms, p99 <= 50 ms.

    .venv/bin/python benchmarks/p3_log_follow.py [--mb 200] [--lines 300]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import tempfile
import time

from aiofarm import Client
from aiofarm.drivers.local.connect import stop_service

WRITER = (
    "import sys\n"
    "n = int(sys.argv[1]) * 10000\n"  # 100-byte lines: 10,000 per MB
    "line = b'x' * 99 + b'\\n'\n"
    "chunk = line * 1000\n"
    "w = sys.stdout.buffer.write\n"
    "for _ in range(n // 1000):\n"
    "    w(chunk)\n"
    "sys.stdout.flush()\n"
)
TICKER = (
    "import sys, time\n"
    "for i in range(int(sys.argv[1])):\n"
    "    print(repr(time.time()), flush=True)\n"
    "    time.sleep(0.01)\n"
)


def alone(mb: int) -> float:
    with tempfile.TemporaryFile() as f:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", WRITER, str(mb)], stdout=f, check=True)
        return time.perf_counter() - t0


async def followed(farm: Client, mb: int) -> tuple[float, float, int]:
    t0 = time.perf_counter()
    job = await farm.jobs.start(command=[sys.executable, "-c", WRITER, str(mb)])
    job_done = 0.0

    async def watch_job() -> None:
        nonlocal job_done
        await farm.jobs.wait(job.id)
        job_done = time.perf_counter() - t0

    waiter = asyncio.ensure_future(watch_job())
    count = 0
    async with farm.logs.stream(job.id, follow=True) as lines:
        async for _ in lines:
            count += 1
    follower = time.perf_counter() - t0
    await waiter
    return job_done, follower, count


async def latency(farm: Client, n: int) -> list[float]:
    job = await farm.jobs.start(command=[sys.executable, "-c", TICKER, str(n)])
    out = []
    async with farm.logs.stream(job.id, follow=True) as lines:
        async for line in lines:
            out.append((time.time() - float(line.text)) * 1000)
    return out


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--lines", type=int, default=300)
    args = parser.parse_args()
    ref = alone(args.mb)
    with tempfile.TemporaryDirectory(prefix="aiofarm-p3-") as state:
        try:
            async with Client(f"local://{state}") as farm:
                job_s, follow_s, count = await followed(farm, args.mb)
                lat = sorted(await latency(farm, args.lines))
        finally:
            stop_service(state, cancel_jobs=True)
    assert count == args.mb * 10000, count
    mbps = [args.mb / x for x in (ref, job_s, follow_s)]
    print(f"P3: a job writing {args.mb} MB of 100-byte lines, MB/s (higher is better); goal ratio >= 0.8")
    print(f"{'alone, to a file (ref)':>24} | {'job, followed':>13} | {'ratio':>5} | {'follower':>8} | {'ratio':>5}")
    print(f"{mbps[0]:>24.0f} | {mbps[1]:>13.0f} | {mbps[1] / mbps[0]:>5.2f} | {mbps[2]:>8.1f} | {mbps[2] / mbps[0]:>5.2f}")
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"P3: line latency, write -> follower's async for, ms, {len(lat)} lines; goal p50 <= 10, p99 <= 50")
    print(f"{'p50':>8} | {'p99':>8} | {'max':>8}")
    print(f"{p50:>8.2f} | {p99:>8.2f} | {lat[-1]:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
