"""Logs of many jobs in one stream: ``farm.logs.stream(ids)`` over ``--jobs`` finished
local jobs of ``--lines`` lines each, read to the end, in lines/s. Reference, in the
same run: ``cat`` of the same jobs' log files (the bytes the farm stores), and the
same jobs read one after the other with one stream each (what a loop over
``logs.stream(job_id)`` costs).

    .venv/bin/python benchmarks/logs_many.py [--jobs 100] [--lines 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import subprocess
import tempfile
import time

from aiofarm import Client, JobSpec
from aiofarm.drivers.local.connect import stop_service


def _cat(files: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(["cat", *files], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


async def run(jobs: int, lines: int) -> None:
    with tempfile.TemporaryDirectory(prefix="aiofarm-bench-") as state:
        try:
            async with Client(f"local://{state}") as farm:
                script = f"i=0; while [ $i -lt {lines} ]; do echo line $i of a job; i=$((i+1)); done"
                created = await farm.jobs.submit([JobSpec(command=["sh", "-c", script]) for _ in range(jobs)])
                ids = [j.id for j in created]
                async for _ in farm.jobs.as_completed(ids):
                    pass
                total = jobs * lines

                files = sorted(glob.glob(os.path.join(state, "logs", "*.log")))
                t_cat = _cat(files)

                t0 = time.perf_counter()
                n = 0
                async with farm.logs.stream(ids, follow=False) as merged:
                    async for _line in merged:
                        n += 1
                t_many = time.perf_counter() - t0
                assert n == total, (n, total)

                t0 = time.perf_counter()
                n = 0
                for job_id in ids:
                    async with farm.logs.stream(job_id, follow=False) as one:
                        async for _line in one:
                            n += 1
                t_loop = time.perf_counter() - t0
                assert n == total, (n, total)
        finally:
            stop_service(state, cancel_jobs=True)
    print(f"{jobs} jobs x {lines} lines = {total} lines ({len(files)} log files)")
    print("| reader | seconds | lines/s |\n|---|---|---|")
    for name, t in (
        ("`cat` of the log files (reference)", t_cat),
        ("`logs.stream(ids)`: one merged stream", t_many),
        ("`logs.stream(id)` per job, one after another", t_loop),
    ):
        print(f"| {name} | {t:.2f} | {total / t:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--lines", type=int, default=10_000)
    args = parser.parse_args()
    asyncio.run(run(args.jobs, args.lines))


if __name__ == "__main__":
    main()
