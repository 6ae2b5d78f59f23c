"""P3: log follow through the farm service.

Throughput: a job writes ``--mb`` MB of 100-byte lines as fast as it can. Reference:
the same program writing to a file alone (no farm). Through the farm, a client in
this process follows the job's log (``logs.stream(follow=True)``) from the start;
we report the job's own run time (submit → finished; the farm moves its pipe to the
log while serving the follower) and the follower's (submit → last line received),
each as MB/s and as a ratio to the reference. Goal: >= 0.8.

Floors, measured in the same run (the job's run time as MB/s and as a ratio to the
reference): the program piped through ``cat > file``, and through a loop that
only moves a 1 MiB pipe to a file with ``os.splice`` (the least any farm that drains
a pipe to a file can cost), each also with one core kept busy (a follower that
parses 2 million lines is one busy core for the whole run: on 2 cores the job, the
farm and the follower share two), the program alone with a busy core, and the farm
with nobody following (its pipes are watched once full, ``processes.PEEK``).

Latency: a job prints a line every 10 ms carrying the time it was written; the
follower computes receive time - write time. Goal: p50 <= 10 ms, p99 <= 50 ms.

With ``--repeat N`` every throughput figure is measured N times, in turns, and
medians are printed (the machine is shared: one run is noisy).

    .venv/bin/python benchmarks/p3_log_follow.py [--mb 200] [--lines 300] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

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


@contextlib.contextmanager
def busy_core(on: bool) -> Iterator[None]:
    """One core kept busy (the CPU a follower takes), or nothing."""
    if not on:
        yield
        return
    spin = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.1)  # running before the measured job starts
        yield
    finally:
        spin.kill()
        spin.wait()


def alone(mb: int, busy: bool = False) -> float:
    with tempfile.TemporaryFile() as f, busy_core(busy):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", WRITER, str(mb)], stdout=f, check=True)
        return time.perf_counter() - t0


# the least any farm that drains a pipe to a file can cost: a 1 MiB pipe moved to the
# file by the kernel (os.splice), in a loop that does nothing else
SPLICER = (
    "import fcntl, os\n"
    "fcntl.fcntl(0, 1031, 1 << 20)\n"  # F_SETPIPE_SZ
    "off = 0\n"
    "while n := os.splice(0, 1, 1 << 20, offset_dst=off):\n"
    "    off += n\n"
)


def through(mb: int, mover: list[str], busy: bool = False) -> float:
    """The job's run time with its stdout piped to ``mover`` (``cat``, the splicer),
    whose stdout is a file."""
    with tempfile.TemporaryFile() as f, busy_core(busy):
        t0 = time.perf_counter()
        sink = subprocess.Popen(mover, stdin=subprocess.PIPE, stdout=f)
        assert sink.stdin is not None
        subprocess.run([sys.executable, "-c", WRITER, str(mb)], stdout=sink.stdin, check=True)
        took = time.perf_counter() - t0
        sink.stdin.close()
        sink.wait()
        return took


async def unfollowed(farm: Client, mb: int) -> float:
    t0 = time.perf_counter()
    job = await farm.jobs.start(command=[sys.executable, "-c", WRITER, str(mb)])
    await farm.jobs.wait(job.id)
    took = time.perf_counter() - t0
    await farm.jobs.delete(job.id)  # 200 MB of log per run
    return took


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
    await farm.jobs.delete(job.id)
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
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    mb = args.mb
    times: dict[str, list[float]] = {}

    def record(name: str, took: float) -> None:
        times.setdefault(name, []).append(took)

    with tempfile.TemporaryDirectory(prefix="aiofarm-p3-") as state:
        try:
            async with Client(f"local://{state}") as farm:
                for _ in range(args.repeat):
                    record("alone", alone(mb))
                    job_s, follow_s, count = await followed(farm, mb)
                    assert count == mb * 10000, count
                    record("followed", job_s)
                    record("follower", follow_s)
                    record("unfollowed", await unfollowed(farm, mb))
                    record("cat", through(mb, ["cat"]))
                    record("cat, busy core", through(mb, ["cat"], busy=True))
                    record("splice", through(mb, [sys.executable, "-c", SPLICER]))
                    record("splice, busy core", through(mb, [sys.executable, "-c", SPLICER], busy=True))
                    record("alone, busy core", alone(mb, busy=True))
                lat = sorted(await latency(farm, args.lines))
        finally:
            stop_service(state, cancel_jobs=True)
    took = {name: statistics.median(xs) for name, xs in times.items()}
    ref = took["alone"]
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; medians of {args.repeat} run(s)")
    print(f"P3: a job writing {mb} MB of 100-byte lines, MB/s (higher is better); goal ratio >= 0.8")
    print(f"{'alone, to a file (ref)':>24} | {'job, followed':>13} | {'ratio':>5} | {'follower':>8} | {'ratio':>5}")
    print(
        f"{mb / ref:>24.0f} | {mb / took['followed']:>13.0f} | {ref / took['followed']:>5.2f}"
        f" | {mb / took['follower']:>8.1f} | {ref / took['follower']:>5.2f}"
    )
    print("P3 floors: the job's run time, MB/s and ratio to the reference")
    for name, label in (
        ("cat", "piped to `cat > file`"),
        ("cat, busy core", "piped to `cat > file`, one core busy"),
        ("splice", "piped to an os.splice loop to a file"),
        ("splice, busy core", "piped to an os.splice loop, one core busy"),
        ("alone, busy core", "alone, to a file, one core busy"),
        ("unfollowed", "through the farm, nobody following"),
    ):
        print(f"{label:>42} | {mb / took[name]:>6.0f} | {ref / took[name]:>5.2f}")
    p50 = statistics.median(lat)
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))]
    print(f"P3: line latency, write -> follower's async for, ms, {len(lat)} lines; goal p50 <= 10, p99 <= 50")
    print(f"{'p50':>8} | {'p99':>8} | {'max':>8}")
    print(f"{p50:>8.2f} | {p99:>8.2f} | {lat[-1]:>8.2f}")


if __name__ == "__main__":
    asyncio.run(main())
