"""Tasks per second: a 2,000-task Open Job Description frame-range job of /bin/true on the
local farm, against the raw spawn limit measured in the same run (asyncio
create_subprocess_exec of /bin/true at the same concurrency). Goal: ratio >= 0.7.

    .venv/bin/python benchmarks/p_tasks_per_second.py [--tasks 2000] [--concurrency N]

A third row runs the same count of plain command jobs on the same farm, to tell the
cost of the OpenJD layer (template expansion, per-task command building) from the
driver's own per-process cost.

Second table (``--env-tasks 500``, 0 skips it): a job whose environment takes 1 s to
enter (``--enter-seconds``), on 2 slots, with an environment per task (the job's
``options["openjd_session_per_task"]``: a session per task) against sessions per worker
slot (the default: entered once per slot, fed many tasks). Goal: >= 10x fewer
environment entries and >= 5x faster end to end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from aiofarm import Client, JobSpec, JobStatus
from aiofarm.drivers.local.connect import stop_service
from aiofarm.openjd.loading import template_spec

TEMPLATE = {
    "specificationVersion": "jobtemplate-2023-09",
    "name": "true x {{Param.Frames}}",
    "parameterDefinitions": [{"name": "Frames", "type": "STRING"}],
    "steps": [
        {
            "name": "Frames",
            "parameterSpace": {
                "taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": "{{Param.Frames}}"}]
            },
            "script": {"actions": {"onRun": {"command": "/bin/true"}}},
        }
    ],
}


async def raw(tasks: int, concurrency: int) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            # the same reference as P2 (benchmarks/p2_local_throughput.py)
            proc = await asyncio.create_subprocess_exec("/bin/true")
            await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(tasks)))
    return time.perf_counter() - start


async def farm(tasks: int, concurrency: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as state, farm_service(state):
        async with Client("local://" + state, slots=concurrency) as client:
            await warm(client)
            start = time.perf_counter()
            job = await client.jobs.submit_template(TEMPLATE, parameters={"Frames": f"1-{tasks}"})
            submitted = time.perf_counter() - start
            result = await client.jobs.wait(job.id, timeout=600)
            elapsed = time.perf_counter() - start
            if result.status is not JobStatus.SUCCEEDED:
                raise SystemExit(f"farm job ended {result.status}: {result.job.reason}")
            return elapsed, submitted


@contextlib.contextmanager
def farm_service(state: str) -> Iterator[None]:
    """The farm service a local:// client starts for ``state`` is stopped on the way out."""
    try:
        yield
    finally:
        stop_service(state, cancel_jobs=True)


async def warm(client: Client) -> None:
    """A small job first: the farm service (started with the client) imports openjd-model
    on its first template job, which is not what the figures measure."""
    job = await client.jobs.submit_template(TEMPLATE, parameters={"Frames": "1-2"})
    await client.jobs.wait(job.id, timeout=120)


async def plain_jobs(tasks: int, concurrency: int) -> float:
    """The same work as plain command jobs: what the driver costs without OpenJD."""
    with tempfile.TemporaryDirectory() as state, farm_service(state):
        async with Client("local://" + state, slots=concurrency) as client:
            start = time.perf_counter()
            jobs = await client.jobs.submit([JobSpec(command=["/bin/true"]) for _ in range(tasks)])
            async for _ in client.jobs.as_completed([j.id for j in jobs], timeout=600):
                pass
            return time.perf_counter() - start


def env_template(enter_seconds: float) -> dict[str, object]:
    """A frame range whose job environment takes ``enter_seconds`` to enter and counts
    its entries in a file (``{{Param.Marks}}``)."""
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "slow env x {{Param.Frames}}",
        "parameterDefinitions": [
            {"name": "Frames", "type": "STRING"},
            {"name": "Marks", "type": "PATH"},
        ],
        "jobEnvironments": [
            {
                "name": "SlowToEnter",
                "script": {
                    "actions": {
                        "onEnter": {
                            "command": "/bin/sh",
                            "args": ["-c", f"sleep {enter_seconds}; echo enter >> '{{{{Param.Marks}}}}'"],
                        }
                    }
                },
            }
        ],
        "steps": TEMPLATE["steps"],
    }


async def env_job(tasks: int, enter_seconds: float, per_task: bool) -> tuple[float, int]:
    """Seconds to run the job on 2 slots, and how many times its environment was entered."""
    with tempfile.TemporaryDirectory() as state, farm_service(os.path.join(state, "farm")):
        marks = Path(state) / "entries"
        async with Client("local://" + os.path.join(state, "farm"), slots=2) as client:
            await warm(client)
            spec = template_spec(
                env_template(enter_seconds),
                {"Frames": f"1-{tasks}", "Marks": str(marks)},
                options={"openjd_session_per_task": per_task},
            )
            start = time.perf_counter()
            (job,) = await client.jobs.submit([spec])
            result = await client.jobs.wait(job.id, timeout=3600)
            elapsed = time.perf_counter() - start
            if result.status is not JobStatus.SUCCEEDED:
                raise SystemExit(f"env job ended {result.status}: {result.job.reason}")
        return elapsed, marks.read_text().count("enter")


async def sessions_table(tasks: int, enter_seconds: float) -> None:
    per_task, per_task_entries = await env_job(tasks, enter_seconds, per_task=True)
    session, session_entries = await env_job(tasks, enter_seconds, per_task=False)
    print()
    print(f"{tasks} tasks of /bin/true, job environment {enter_seconds:g} s to enter, 2 slots")
    print(f"{'':<34}{'seconds':>10}{'tasks/s':>12}{'entries':>9}")
    print(f"{'environment per task (before)':<34}{per_task:>10.2f}{tasks / per_task:>12.2f}{per_task_entries:>9}")
    print(f"{'session per slot (now)':<34}{session:>10.2f}{tasks / session:>12.2f}{session_entries:>9}")
    fewer = per_task_entries / max(session_entries, 1)
    faster = per_task / session
    print(f"entries {fewer:.0f}x fewer (goal >= 10x), {faster:.1f}x faster (goal >= 5x) -> "
          f"{'met' if fewer >= 10 and faster >= 5 else 'NOT met'}")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of each is kept")
    parser.add_argument("--env-tasks", type=int, default=500, help="tasks of the slow-environment job; 0 skips it")
    parser.add_argument("--enter-seconds", type=float, default=1.0)
    args = parser.parse_args()
    raw_best = farm_best = plain_best = float("inf")
    submit_best = float("inf")
    # warm-up: imports (openjd-model, the driver) and first-use caches stay out of the figures
    await farm(20, args.concurrency)
    await plain_jobs(20, args.concurrency)
    for i in range(args.rounds):
        raw_best = min(raw_best, await raw(args.tasks, args.concurrency))
        # alternate which farm run goes first, so neither always follows the raw burst
        if i % 2:
            plain_best = min(plain_best, await plain_jobs(args.tasks, args.concurrency))
        f, s = await farm(args.tasks, args.concurrency)
        farm_best, submit_best = min(farm_best, f), min(submit_best, s)
        if not i % 2:
            plain_best = min(plain_best, await plain_jobs(args.tasks, args.concurrency))
    raw_rate = args.tasks / raw_best
    farm_rate = args.tasks / farm_best
    plain_rate = args.tasks / plain_best
    print(f"{args.tasks} tasks of /bin/true, concurrency {args.concurrency}, best of {args.rounds}")
    print(f"{'':<34}{'seconds':>10}{'tasks/s':>12}{'ratio':>8}")
    print(f"{'raw create_subprocess_exec':<34}{raw_best:>10.2f}{raw_rate:>12.0f}{1.0:>8.2f}")
    print(f"{'local farm, OpenJD frame range':<34}{farm_best:>10.2f}{farm_rate:>12.0f}{farm_rate / raw_rate:>8.2f}")
    print(f"{'(context) same count of plain jobs':<34}{plain_best:>10.2f}{plain_rate:>12.0f}{plain_rate / raw_rate:>8.2f}")
    print(f"(of which submit incl. template validation + planning: {submit_best:.2f} s)")
    print(f"goal: ratio >= 0.70 -> {'met' if farm_rate / raw_rate >= 0.7 else 'NOT met'}")
    if args.env_tasks:
        await sessions_table(args.env_tasks, args.enter_seconds)


if __name__ == "__main__":
    asyncio.run(main())
