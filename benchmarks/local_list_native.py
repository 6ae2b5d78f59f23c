"""Listing with a filter on the local farm: its native plan (the ``where`` filter, sort
and count as SQL, drivers/local/filtering.py) beside the client-side reference (the
base class's plan: the farm returns every job and the client evaluates the filter),
on the same farm and jobs, measured in the same run.

``--jobs`` pending jobs (the workers are disabled, nothing runs) are submitted to a
fresh farm, ``--matches`` of them carry the tag ``hit`` and priority 7; the default
filter matches exactly those. Through the farm service (the default ``local://``), or
in-process with ``--embedded``. Best of ``--repeat`` rounds of each, alternated.

    .venv/bin/python benchmarks/local_list_native.py [--jobs 50000 --matches 100 --embedded]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiofarm import Client, JobSpec
from aiofarm.drivers.base import Driver, ListPlan, ListQuery
from aiofarm.drivers.local.connect import stop_service


def client_side(self: Driver, query: ListQuery) -> ListPlan:
    return Driver.plan_list(self, query)


async def measure(farm: Client, where: str, native: bool) -> dict[str, Any]:
    driver = farm.driver
    if not native:
        driver.plan_list = client_side.__get__(driver)  # type: ignore[method-assign]
    try:
        t0 = time.perf_counter()
        async with farm.jobs.list(where=where, page_size=1000) as it:
            found = [job.id async for job in it]
        listed = time.perf_counter() - t0
        t0 = time.perf_counter()
        count = await farm.jobs.count(where=where)
        counted = time.perf_counter() - t0
    finally:
        if not native:
            del driver.plan_list
    return {"found": found, "list_s": listed, "count": count, "count_s": counted}


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--matches", type=int, default=100)
    parser.add_argument("--where", default="tags contains hit and priority == 7")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--embedded", action="store_true")
    args = parser.parse_args()
    every = max(1, args.jobs // args.matches)
    with tempfile.TemporaryDirectory(prefix="aiofarm-list-") as state:
        url = f"local://{state}" + ("?embedded=true" if args.embedded else "")
        try:
            async with Client(url) as farm:
                await farm.workers.disable(regex=".*", reason="benchmark")
                hit = {"tags": ["hit"], "priority": 7}
                for start in range(0, args.jobs, 10_000):
                    await farm.jobs.submit(
                        [
                            JobSpec(command=["true"], name=f"job {i}", **(hit if i % every == 0 else {"priority": i % 5}))
                            for i in range(start, min(args.jobs, start + 10_000))
                        ]
                    )
                natives, clients = [], []
                for _ in range(args.repeat):
                    natives.append(await measure(farm, args.where, native=True))
                    clients.append(await measure(farm, args.where, native=False))
        finally:
            if not args.embedded:
                stop_service(state, cancel_jobs=True)
    assert all(r["found"] == natives[0]["found"] for r in natives + clients)
    assert all(r["count"] == len(natives[0]["found"]) for r in natives + clients)
    native = {k: min(r[k] for r in natives) for k in ("list_s", "count_s")}
    client = {k: min(r[k] for r in clients) for k in ("list_s", "count_s")}
    where = "farm service" if not args.embedded else "embedded farm"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"list {args.where!r}: {len(natives[0]['found'])} of {args.jobs} local jobs ({where}, best of {args.repeat})")
    print(f"{'':16} {'native (SQL)':>13} {'client-side':>12} {'speed-up':>9}")
    for label, key in (("list (ms)", "list_s"), ("count (ms)", "count_s")):
        ratio = client[key] / native[key]
        print(f"{label:16} {native[key] * 1e3:>13.1f} {client[key] * 1e3:>12.1f} {ratio:>8.1f}x")
    print(f"load average: {load}")


if __name__ == "__main__":
    anyio.run(main)
