"""Listing with a filter on Deadline Cloud: requests to find the 100 matches among
``--jobs`` jobs, with the filter translated into SearchJobs filter expressions (native)
beside the same filter written so that no part of it translates (``not``), which makes
the client read every job and test it itself. Same fake, same jobs, same run.

    .venv/bin/python benchmarks/p_deadline_list.py --jobs 10000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiofarm
from tests.fakes.deadline.process import FakeDeadlineProcess, aws_env, patched_environ

TEMPLATE = (
    '{"specificationVersion":"jobtemplate-2023-09","name":"list","steps":[{"name":"s",'
    '"script":{"actions":{"onRun":{"command":"true"}}}}]}'
)


async def measure(fake: FakeDeadlineProcess, where: str) -> tuple[int, dict[str, int], float]:
    async with aiofarm.Client(fake.url()) as farm:
        await farm.driver.holds.adopted.wait()  # type: ignore[attr-defined]
        fake.admin("stats/reset", {})
        start = time.perf_counter()
        async with farm.jobs.list(where=where, page_size=100) as it:
            found = [j.id async for j in it]
        took = time.perf_counter() - start
        return len(found), fake.stats(), took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--matches", type=int, default=100)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory() as home,
        patched_environ(aws_env(home)),
        FakeDeadlineProcess(moto=False) as fake,
    ):
        base = {"template": TEMPLATE, "templateType": "JSON"}
        fake.admin("seed", {**base, "count": args.jobs - args.matches, "priority": 50})
        fake.admin("seed", {**base, "count": args.matches, "priority": 90})
        native = anyio.run(measure, fake, "priority > 80")
        client = anyio.run(measure, fake, "not priority <= 80")
    rows = [
        ("matches found", native[0], client[0]),
        ("SearchJobs requests", native[1].get("SearchJobs", 0), client[1].get("SearchJobs", 0)),
        ("BatchGetJob requests", native[1].get("BatchGetJob", 0), client[1].get("BatchGetJob", 0)),
        ("all requests", sum(native[1].values()), sum(client[1].values())),
        ("time", f"{native[2]:.2f} s", f"{client[2]:.2f} s"),
    ]
    print(f"listing {args.matches} matches among {args.jobs:,} jobs")
    print(f"{'':22}  {'native (SearchJobs)':>20}  {'client-side':>12}")
    for label, a, b in rows:
        print(f"{label:22}  {a!s:>20}  {b!s:>12}")


if __name__ == "__main__":
    main()
