"""Service start: the first client's open with no farm service running (it starts
one and waits until it listens), beside opening a client when the service is
already up and opening an embedded farm (no service), all in this run. Median of N
rounds, each on a fresh state dir; every service started is stopped. Goal: <= 500 ms.

    .venv/bin/python benchmarks/service_start.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time

from aiofarm import Client
from aiofarm.drivers.local.connect import stop_service


async def open_ms(url: str) -> float:
    t0 = time.perf_counter()
    async with Client(url):
        elapsed = (time.perf_counter() - t0) * 1000
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    cold, warm, embedded = [], [], []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory(prefix="aiofarm-start-") as state:
            try:
                cold.append(await open_ms(f"local://{state}"))
                warm.append(await open_ms(f"local://{state}"))
            finally:
                stop_service(state)
        with tempfile.TemporaryDirectory(prefix="aiofarm-start-") as state:
            embedded.append(await open_ms(f"local://{state}?embedded=true"))
    c, w, e = (statistics.median(x) for x in (cold, warm, embedded))
    print(f"Service start: Client open, median ms of {args.rounds} (lower is better); goal: cold <= 500 ms")
    print(f"{'no service (starts one)':>24} | {'service already up':>18} | {'embedded farm (ref)':>19} | goal")
    print(f"{c:>24.0f} | {w:>18.0f} | {e:>19.0f} | {'met' if c <= 500 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
