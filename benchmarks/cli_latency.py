"""CLI latency with the farm service up: wall time of `aiofarm run -q -- true` and
`aiofarm ls`, beside the floor they stand on (a bare Python interpreter, the same
interpreter importing aiofarm's CLI, and importing aiohttp, which every local://
client loads), all measured in this run. Median of N runs, each a fresh process,
against one local:// farm in a temp dir whose service is started first and stopped
at the end. Goal: `ls` <= 150 ms.

    .venv/bin/python benchmarks/cli_latency.py [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def median_ms(argv: list[str], runs: int, env: dict[str, str]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    script = shutil.which("aiofarm", path=str(Path(sys.executable).parent))
    cli = [script] if script else [sys.executable, "-m", "aiofarm.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, AIOFARM_URL=f"local://{tmp}/state", NO_COLOR="1")
        subprocess.run([*cli, "run", "-q", "--", "true"], env=env, check=True)  # starts the service
        try:
            rows = measure(cli, args.runs, env)
        finally:
            subprocess.run([*cli, "farm", "stop", "--cancel-jobs"], env=env, check=True, stdout=subprocess.DEVNULL)
    width = max(len(name) for name, _ in rows)
    print(f"{'command (service up)':<{width}}  median ms ({args.runs} runs)")
    for name, ms in rows:
        print(f"{name:<{width}}  {ms:8.1f}")


def measure(cli: list[str], runs: int, env: dict[str, str]) -> list[tuple[str, float]]:
    py = sys.executable
    return [
        ("python -c pass (reference)", median_ms([py, "-c", "pass"], runs, env)),
        ("python -c 'import aiofarm.cli' (reference)", median_ms([py, "-c", "import aiofarm.cli"], runs, env)),
        ("python -c 'import aiohttp' (reference)", median_ms([py, "-c", "import aiohttp"], runs, env)),
        ("aiofarm --help", median_ms([*cli, "--help"], runs, env)),
        ("aiofarm run -q -- true", median_ms([*cli, "run", "-q", "--", "true"], runs, env)),
        ("aiofarm ls", median_ms([*cli, "ls"], runs, env)),
        ("aiofarm farm status", median_ms([*cli, "farm", "status"], runs, env)),
    ]


if __name__ == "__main__":
    main()
