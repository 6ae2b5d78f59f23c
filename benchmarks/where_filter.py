"""Filter cost: ``Expr.evaluate`` of a parsed ``aiofarm.where`` expression over many
Jobs, beside the same test written as a plain Python lambda (the reference, measured in
the same run), plus the cost of parsing the text once.

    .venv/bin/python benchmarks/where_filter.py [--jobs 100000]
"""

from __future__ import annotations

import argparse
import re
import time
from datetime import datetime, timedelta, timezone

from aiofarm.models import Job, JobStatus
from aiofarm.where import parse

TEXT = 'status in (failed, canceled) and priority < 50 or name matches "^Cleanup \\d{5}"'
PATTERN = re.compile(r"^Cleanup \d{5}")
BAD = frozenset({JobStatus.FAILED, JobStatus.CANCELED})


def reference(job: Job) -> bool:
    return (job.status in BAD and job.priority < 50) or (
        job.name is not None and PATTERN.search(job.name) is not None
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=100_000)
    args = parser.parse_args()
    statuses = list(JobStatus)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    jobs = [
        Job(
            id=f"j{i}",
            status=statuses[i % len(statuses)],
            driver="bench",
            name=f"Cleanup {i:05d}" if i % 10 == 0 else f"render {i}",
            priority=i % 100,
            created_at=t0 + timedelta(seconds=i),
        )
        for i in range(args.jobs)
    ]
    start = time.perf_counter()
    for _ in range(1000):
        expr = parse(TEXT)
    parse_us = (time.perf_counter() - start) * 1000

    start = time.perf_counter()
    expected = [reference(j) for j in jobs]
    ref_s = time.perf_counter() - start
    start = time.perf_counter()
    got = [expr.evaluate(j) for j in jobs]
    where_s = time.perf_counter() - start
    assert got == expected

    print(f"filter: {TEXT}")
    print(f"{'':<28}{'jobs/s':>12}{'us/job':>9}")
    print(
        f"{'python lambda (reference)':<28}{args.jobs / ref_s:>12,.0f}{ref_s / args.jobs * 1e6:>9.2f}"
    )
    print(
        f"{'where Expr.evaluate':<28}{args.jobs / where_s:>12,.0f}{where_s / args.jobs * 1e6:>9.2f}"
    )
    print(f"ratio where/reference time: {where_s / ref_s:.1f}x")
    print(f"parse(text): {parse_us:.1f} us per parse")


if __name__ == "__main__":
    main()
