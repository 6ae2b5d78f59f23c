"""CLI figure (issue 15): ``aiofarm logs -f --prefix`` over 100 jobs that each printed
10,000 lines: lines per second through the CLI, beside ``cat`` of the same log files
(the farm's own files, the bytes the CLI's path reads) measured in the same run.

A fresh local:// farm in a temp dir runs the jobs to the end first (``seq``), so the
figure is the CLI's read-and-print rate, not the jobs' speed; ``-f`` on finished jobs
reads everything and ends. Output goes to /dev/null for both. Median of ``--runs``.

    .venv/bin/python benchmarks/cli_logs_prefix.py [--jobs 100] [--lines 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

from aiofarm import Client, JobSpec
from aiofarm.drivers.local.connect import stop_service


async def run_jobs(url: str, jobs: int, lines: int) -> None:
    async with Client(url) as farm:
        spec = JobSpec(command=["seq", "-f", "line %g of a rendered frame", str(lines)], tags=("bench",))
        submitted = await farm.jobs.submit([spec] * jobs)
        async for job in farm.jobs.as_completed([j.id for j in submitted]):
            assert job.status.value == "succeeded", job


def median_s(argv: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with open(os.devnull, "wb") as sink:
            subprocess.run(argv, env=env, check=True, stdout=sink, stderr=sink)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--lines", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    script = shutil.which("aiofarm", path=str(Path(sys.executable).parent))
    cli = [script] if script else [sys.executable, "-m", "aiofarm.cli"]
    total = args.jobs * args.lines
    with tempfile.TemporaryDirectory() as tmp:
        state = f"{tmp}/state"
        env = dict(os.environ, AIOFARM_URL=f"local://{state}", NO_COLOR="1")
        anyio.run(run_jobs, f"local://{state}", args.jobs, args.lines)
        try:
            files = sorted(p for p in glob.glob(f"{state}/**/*", recursive=True) if p.endswith(".log") and "/logs/" in p)
            assert len(files) >= args.jobs, files[:5]
            size = sum(os.path.getsize(f) for f in files)
            cat = median_s(["cat", *files], args.runs, env)
            ours = median_s([*cli, "logs", "-f", "--prefix", "--where", "tags contains bench"], args.runs, env)
        finally:
            stop_service(state, cancel_jobs=True)
    print(f"{args.jobs} jobs x {args.lines} lines = {total} lines, {size / 1e6:.1f} MB of log files ({args.runs} runs, median)")
    print(f"{'reader':<52}  {'seconds':>8}  {'lines/s':>11}")
    for name, secs in (
        ("cat of the same log files (reference)", cat),
        ("aiofarm logs -f --prefix --where 'tags contains bench'", ours),
    ):
        print(f"{name:<52}  {secs:8.2f}  {total / secs:11,.0f}")
    print(f"aiofarm / cat: {cat / ours:.3f} of cat's rate")


if __name__ == "__main__":
    main()
