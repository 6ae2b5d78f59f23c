"""Listing with a filter: the driver's native plan (``Driver.plan_list``) beside the
client-side reference (the base class's plan: the driver filters nothing and the client
evaluates every job), on the same driver and data, measured in the same run.

``--jobs`` jobs are seeded, ``--matches`` of them carry the tag ``hit``; the filter is
``tags contains hit and priority >= 0`` on the default (dummy) back end. It reports
the requests, the jobs they carried, the time to list, and ``jobs.count`` on the same
filter. The dummy driver filters comparisons natively but not tags, so its native
plan is the structured ``priority`` test plus the client's tag check: pass
``--where 'priority == 7'`` for a filter it translates whole. The dummy keeps its jobs
in memory, so the times show only the client layer's own costs; the requests and
the jobs they carry are what a remote or SQL back end pays for.

    .venv/bin/python benchmarks/list_native.py [--jobs 50000 --matches 100]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiofarm import Client, JobSpec
from aiofarm.drivers.base import Driver, ListPlan, ListQuery
from aiofarm.drivers.dummy import DummyDriver


def client_side(self: Driver, query: ListQuery) -> ListPlan:
    return Driver.plan_list(self, query)


async def measure(farm: Client, where: str, native: bool) -> dict[str, Any]:
    driver = farm.driver
    assert isinstance(driver, DummyDriver)
    if not native:
        driver.plan_list = client_side.__get__(driver)  # type: ignore[method-assign]
    driver.calls.clear()
    t0 = time.perf_counter()
    async with farm.jobs.list(where=where) as it:
        found = [job.id async for job in it]
    listed = time.perf_counter() - t0
    list_calls, sent = driver.calls["list_page"], driver.calls["listed"]
    t0 = time.perf_counter()
    count = await farm.jobs.count(where=where)
    counted = time.perf_counter() - t0
    if not native:
        del driver.plan_list
    return {
        "found": len(found),
        "requests": list_calls,
        "sent": sent,
        "list_s": listed,
        "count": count,
        "count_s": counted,
        "count_requests": driver.calls["list_page"] - list_calls + driver.calls["count_jobs"],
    }


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=50_000)
    parser.add_argument("--matches", type=int, default=100)
    parser.add_argument("--where", default="tags contains hit and priority >= 0")
    args = parser.parse_args()
    every = max(1, args.jobs // args.matches)
    async with Client("dummy://") as farm:
        await farm.jobs.submit(
            [
                JobSpec(command=["x"], tags=["hit"] if i % every == 0 else [], priority=7 if i % every == 0 else 1)
                for i in range(args.jobs)
            ]
        )
        for _ in range(2):  # the first pass warms up (compiled filters, the driver's cursor)
            native = await measure(farm, args.where, native=True)
            client = await measure(farm, args.where, native=False)
    assert native["found"] == client["found"] and native["count"] == client["count"]
    print(f"list {args.where!r}: {native['found']} of {args.jobs} jobs (dummy driver)")
    print(f"{'':28} {'native plan':>12} {'client-side':>12}")
    print(f"{'list requests':28} {native['requests']:>12} {client['requests']:>12}")
    print(f"{'jobs sent by the driver':28} {native['sent']:>12} {client['sent']:>12}")
    print(f"{'list time (ms)':28} {native['list_s'] * 1e3:>12.1f} {client['list_s'] * 1e3:>12.1f}")
    print(f"{'count requests':28} {native['count_requests']:>12} {client['count_requests']:>12}")
    print(f"{'count time (ms)':28} {native['count_s'] * 1e3:>12.1f} {client['count_s'] * 1e3:>12.1f}")


if __name__ == "__main__":
    anyio.run(main)
