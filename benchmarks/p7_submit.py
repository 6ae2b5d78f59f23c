"""P7: ``submit`` of 10,000 specs through the local farm service. Goal: <= 0.5 s.

    .venv/bin/python benchmarks/p7_submit.py [--specs 10000] [--repeat 3]

Columns: the reference is the floor any SQLite-backed farm pays — a raw
``executemany`` of one row per spec in one transaction into a WAL database;
"embedded driver.submit" calls an in-process farm (``EmbeddedDriver``) directly;
"service Client.jobs.submit" goes through the client layer (validation, dependency
ordering) and the farm service's socket as a user would (the service is started
before the clock starts, and stopped after). The worker is
disabled first so no job starts while we measure (we time the submit, not the runs).
Best of ``--repeat`` rounds, each on a fresh state dir.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import tempfile
import time

import anyio
import yarl

from aiofarm import Client, JobSpec
from aiofarm.drivers.local import EmbeddedDriver as LocalDriver
from aiofarm.drivers.local.connect import stop_service


def specs(n: int) -> list[JobSpec]:
    return [JobSpec(command=["/bin/echo", str(i)], name=f"job {i}", tags=("bench",)) for i in range(n)]


def raw_sqlite(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="aiofarm-p7-") as d:
        db = sqlite3.connect(os.path.join(d, "x.sqlite"), isolation_level=None)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("CREATE TABLE jobs (seq INTEGER PRIMARY KEY, id TEXT UNIQUE, name TEXT, spec TEXT)")
        t0 = time.perf_counter()
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO jobs VALUES (?, ?, ?, ?)",
            ((i, f"j{i}", f"job {i}", f'{{"command":["/bin/echo","{i}"]}}') for i in range(n)),
        )
        db.execute("COMMIT")
        elapsed = time.perf_counter() - t0
        db.close()
        return elapsed


async def driver_submit(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="aiofarm-p7-") as state:
        driver = LocalDriver.from_url(yarl.URL(f"local://{state}"), {})
        async with anyio.create_task_group() as tg:
            await driver.open(tg)
            try:
                await driver.set_workers_enabled([], False, stop_work=False, reason="benchmark")
                batch = specs(n)
                t0 = time.perf_counter()
                jobs = await driver.submit(batch)
                elapsed = time.perf_counter() - t0
                assert len(jobs) == n
                return elapsed
            finally:
                await driver.aclose()
                tg.cancel_scope.cancel()


async def client_submit(n: int) -> float:
    with tempfile.TemporaryDirectory(prefix="aiofarm-p7-") as state:
        try:
            async with Client(f"local://{state}") as farm:
                await farm.workers.disable(regex=".*", reason="benchmark")
                batch = specs(n)
                t0 = time.perf_counter()
                jobs = await farm.jobs.submit(batch)
                elapsed = time.perf_counter() - t0
                assert len(jobs) == n
                return elapsed
        finally:
            stop_service(state, cancel_jobs=True)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--specs", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.specs
    raws, drvs, clis = [], [], []
    for _ in range(args.repeat):
        raws.append(raw_sqlite(n))
        drvs.append(await driver_submit(n))
        clis.append(await client_submit(n))
    r, d, c = min(raws), min(drvs), min(clis)
    print(f"P7: submit of {n} specs, seconds (lower is better, best of {args.repeat}); goal <= 0.5 s through the service")
    print(f"{'raw SQLite executemany (floor)':>32} | {'embedded driver.submit':>22} | {'service Client.jobs.submit':>26} | goal")
    print(f"{r:>32.3f} | {d:>22.3f} | {c:>26.3f} | {'met' if c <= 0.5 else 'MISSED'}")


if __name__ == "__main__":
    asyncio.run(main())
