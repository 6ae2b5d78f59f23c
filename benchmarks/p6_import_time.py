"""P6: `import aiofarm` time over a bare interpreter (goal <= 120 ms), and that
it imports neither aiohttp nor aiobotocore.

    python benchmarks/p6_import_time.py [runs]

Each figure is the median wall time of fresh interpreters, measured in this run
next to the bare interpreter (`python -c pass`) as the reference.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

GOAL_MS = 120.0

CASES = [
    ("bare interpreter (reference)", "pass"),
    ("import aiofarm", "import aiofarm"),
    ("from aiofarm import Client, JobSpec", "from aiofarm import Client, JobSpec"),
    ("+ open a local:// client module graph", "import aiofarm.client, aiofarm.jobs, aiofarm.drivers.local"),
]


def timed(code: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    timed("import aiofarm", 2)  # warm the page cache
    bare = timed("pass", runs)
    print(f"{'case':44} {'median ms':>10} {'over bare':>10}")
    over = 0.0
    for label, code in CASES:
        ms = bare if code == "pass" else timed(code, runs)
        if code == "import aiofarm":
            over = ms - bare
        print(f"{label:44} {ms:10.1f} {ms - bare:10.1f}")
    heavy = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, aiofarm; print(','.join(m for m in ('aiohttp','aiobotocore','botocore') if m in sys.modules) or 'none')",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    print(f"\nheavy modules imported by `import aiofarm`: {heavy}")
    print(f"import aiofarm over bare: {over:.1f} ms (goal <= {GOAL_MS:.0f} ms): {'PASS' if over <= GOAL_MS and heavy == 'none' else 'FAIL'}")


if __name__ == "__main__":
    main()
