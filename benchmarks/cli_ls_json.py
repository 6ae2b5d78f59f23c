"""CLI figure (issue 15): ``aiofarm ls -o json`` over 10,000 jobs (goal <= 1 s) and
``aiofarm --help`` (goal <= 150 ms), each beside ``python -c pass`` measured in the
same run; ``aiofarm ls`` (the newest 50 as a table, issue 10's figure) beside them.

A fresh local:// farm in a temp dir gets N jobs submitted paused (so none runs: we time
the listing, not the jobs); its service is up before the clock starts and stopped at
the end. Each figure is the median of ``--runs`` fresh processes.

    .venv/bin/python benchmarks/cli_ls_json.py [--jobs 10000] [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import anyio

from aiofarm import Client, JobSpec
from aiofarm.drivers.local.connect import stop_service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from cli_latency import median_ms


async def fill(url: str, n: int) -> None:
    async with Client(url) as farm:
        specs = [JobSpec(command=["true"], name=f"job {i}", paused=True) for i in range(n)]
        for start in range(0, n, 2000):
            await farm.jobs.submit(specs[start : start + 2000])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    script = shutil.which("aiofarm", path=str(Path(sys.executable).parent))
    cli = [script] if script else [sys.executable, "-m", "aiofarm.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        state = f"{tmp}/state"
        env = dict(os.environ, AIOFARM_URL=f"local://{state}", NO_COLOR="1")
        anyio.run(fill, f"local://{state}", args.jobs)
        try:
            out = subprocess.run([*cli, "ls", "-o", "json", "-n", "0"], env=env, check=True, capture_output=True)
            listed = len(json.loads(out.stdout))
            assert listed == args.jobs, listed
            py = [sys.executable, "-c", "pass"]
            rows = [
                ("python -c pass (reference)", median_ms(py, args.runs, env), ""),
                ("aiofarm --help", median_ms([*cli, "--help"], args.runs, env), "<= 150"),
                ("aiofarm ls (newest 50, table)", median_ms([*cli, "ls"], args.runs, env), "<= 150"),
                (f"aiofarm ls -o json -n 0 ({listed} jobs)", median_ms([*cli, "ls", "-o", "json", "-n", "0"], args.runs, env), "<= 1000"),
            ]
        finally:
            stop_service(state, cancel_jobs=True)
    width = max(len(r[0]) for r in rows)
    print(f"{'command (service up)':<{width}}  {'median ms':>9}  goal ms   ({args.runs} runs each)")
    for name, ms, goal in rows:
        print(f"{name:<{width}}  {ms:9.1f}  {goal}")


if __name__ == "__main__":
    main()
