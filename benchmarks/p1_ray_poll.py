"""P1 on Ray: waiting on many Ray jobs — aiofarm's shared poller (one ``GET /api/jobs/``
per round for every watched id) vs Ray's own ``JobSubmissionClient.get_job_status``
per job (run in Ray's venv, as a Ray user would), against a real single-node Ray
2.60 head that this script starts (tests/backends/ray.py) and stops, in the same run.

Per contender ``--jobs`` jobs (``sleep --sleep``) are submitted and waited on at once.
Both poll with the same back-off (0.5 s doubling to ``--max-interval``), reset when
something changed. Measured:

* requests per poll round: HTTP requests sent while waiting / poll rounds (aiofarm:
  the shared poller's ``get_jobs`` calls; Ray's client: passes over the unfinished
  jobs, one ``get_job_status`` each),
* notice latency: from the last job's end (Ray's ``end_time``) to the moment the
  client knew every job had finished.

    .venv/bin/python benchmarks/p1_ray_poll.py --jobs 50 --max-interval 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiofarm import Client, JobSpec
from aiofarm.drivers.ray import RayDriver
from tests.backends.ray import Head, start_head, stop_head

#: Ray's own client, polling job by job (runs in the head's venv: it needs ray)
PER_JOB = r"""
import json, sys, time
from ray.job_submission import JobSubmissionClient, JobStatus
url, token, max_interval, ids = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]
client = JobSubmissionClient(url, headers={"Authorization": "Bearer " + token})
pending, last, requests, rounds, delay = set(ids), {}, 0, 0, 0.5
while pending:
    changed = False
    rounds += 1
    for job_id in sorted(pending):
        requests += 1
        status = client.get_job_status(job_id)
        if status != last.get(job_id):
            last[job_id], changed = status, True
        if status.is_terminal():
            pending.discard(job_id)
    if not pending:
        break
    delay = 0.5 if changed else min(max_interval, delay * 2)
    time.sleep(delay)
print(json.dumps({"noticed": time.time(), "requests": requests, "rounds": rounds}))
"""


async def submit_set(farm: Client, n: int, sleep: float) -> list[str]:
    jobs = await farm.jobs.submit([JobSpec(command=["sleep", f"{sleep:g}"], name="p1") for _ in range(n)])
    return [j.id for j in jobs]


async def last_end(farm: Client, ids: list[str]) -> float:
    jobs = await farm.jobs.get_many(ids)
    assert all(j.status.value == "succeeded" for j in jobs), {j.status for j in jobs}
    return max(j.finished_at.timestamp() for j in jobs if j.finished_at is not None)


async def run_aiofarm(head: Head, n: int, sleep: float, max_interval: float) -> dict[str, float]:
    async with head.client() as farm:
        driver = farm.driver
        assert isinstance(driver, RayDriver)
        ids = await submit_set(farm, n, sleep)
        calls = 0
        real_get = driver.get_jobs

        async def counting_get(chunk):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real_get(chunk)

        driver.get_jobs = counting_get  # type: ignore[method-assign]
        before = driver.http.requests

        async def wait(job_id: str) -> None:
            await farm.jobs.wait(job_id, timeout=900, max_interval=max_interval)

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(wait, job_id)
        noticed = time.time()
        requests = driver.http.requests - before
        driver.get_jobs = real_get  # type: ignore[method-assign]
        end = await last_end(farm, ids)
    return {"requests": requests, "rounds": calls, "per_round": requests / max(1, calls), "latency": noticed - end}


async def run_per_job(head: Head, n: int, sleep: float, max_interval: float) -> dict[str, float]:
    async with head.client() as farm:
        ids = await submit_set(farm, n, sleep)
        argv = [f"{head.venv}/bin/python", "-c", PER_JOB, head.http, head.token, str(max_interval), *ids]
        proc = await anyio.run_process(argv, check=False)
        if proc.returncode != 0:
            raise RuntimeError(proc.stderr.decode()[-2000:])
        out = json.loads(proc.stdout.decode().strip().splitlines()[-1])
        end = await last_end(farm, ids)
    return {
        "requests": out["requests"],
        "rounds": out["rounds"],
        "per_round": out["requests"] / out["rounds"],
        "latency": out["noticed"] - end,
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=50)
    ap.add_argument("--sleep", type=float, default=1.0, help="seconds each job runs")
    ap.add_argument("--max-interval", type=float, default=2.0)
    args = ap.parse_args()
    head = await anyio.to_thread.run_sync(start_head)
    rows = []
    try:
        for label, fn in (
            ("aiofarm shared poller (GET /api/jobs/)", run_aiofarm),
            ("JobSubmissionClient.get_job_status", run_per_job),
        ):
            t0 = time.perf_counter()
            out = await fn(head, args.jobs, args.sleep, args.max_interval)
            out["wall"] = time.perf_counter() - t0
            rows.append((label, out))
            print(f"  done: {label}", file=sys.stderr)
    finally:
        await anyio.to_thread.run_sync(stop_head)
    print(f"\nP1 Ray: waiting on {args.jobs} Ray jobs (back-off 0.5 s doubling to {args.max_interval:g} s), same run")
    print(f"{'poller':<40} {'requests/round':>15} {'rounds':>7} {'requests':>9} {'notice latency':>15} {'wall':>7}")
    for label, out in rows:
        print(
            f"{label:<40} {out['per_round']:>15.1f} {int(out['rounds']):>7} {int(out['requests']):>9} "
            f"{out['latency']:>14.2f}s {out['wall']:>6.1f}s"
        )


if __name__ == "__main__":
    anyio.run(main)
