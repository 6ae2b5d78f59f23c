"""P1 on Slurm: waiting on many jobs — aiofarm's shared poller (one batched
``GET /slurm/v0.0.38/jobs`` per round, ``update_time`` for 304s) vs a per-job poller
(``GET /slurm/v0.0.38/job/{id}`` for every job every round), against the real
single-node cluster that scripts/slurm/start-slurm.sh starts, in the same run.

Per contender: a gate job (``sleep --gate`` s) and ``--jobs`` jobs that depend on it
(afterok) and print ``date +%s.%N`` as their last act; the waits start while the gate
runs. Both poll with the same back-off (0.5 s doubling to ``--max-interval``), reset
when something changed. Measured:

* requests per poll round: HTTP requests sent while waiting / poll rounds
  (aiofarm: driver ``get_jobs`` calls of the shared poller; per-job: the most polls
  any one job had, i.e. passes over the job set),
* of them 304: rounds slurmctld answered "nothing changed since update_time"
  (``--sleep`` makes the jobs run a while, so quiet rounds appear),
* notice latency: from the last job's completion (the latest timestamp the jobs
  printed) to the moment the client's last wait returned.

    .venv/bin/python benchmarks/p1_slurm_poll.py --jobs 500 --max-interval 2
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiofarm import Client, JobSpec
from aiofarm.backoff import Backoff
from aiofarm.drivers.slurm import SlurmDriver
from aiofarm.drivers.slurm.wire import expand_path
from tests.backends.slurm import Cluster, start_cluster_sync

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}


SLEEP = 0.0  # seconds each job sleeps before printing its completion time (--sleep)


async def submit_set(farm: Client, n: int, gate_s: float) -> tuple[str, list[str]]:
    gate = await farm.jobs.start(["sleep", str(gate_s)], name="p1-gate")
    command = ["sh", "-c", f"sleep {SLEEP:g}; date +%s.%N"] if SLEEP else ["date", "+%s.%N"]
    jobs = await farm.jobs.submit(
        [JobSpec(command=command, name="p1", depends_on=[gate.id]) for _ in range(n)]
    )
    return gate.id, [j.id for j in jobs]


def last_completion(records: list[dict[str, object]]) -> float:
    latest = 0.0
    for rec in records:
        path = expand_path(str(rec["standard_output"]), rec)
        latest = max(latest, float(Path(path).read_text().split()[0]))
    return latest


async def run_aiofarm(cluster: Cluster, n: int, gate_s: float, max_interval: float) -> dict[str, float]:
    async with Client(cluster.url) as farm:
        driver = farm.driver
        assert isinstance(driver, SlurmDriver)
        _, ids = await submit_set(farm, n, gate_s)
        calls = 0
        real_get = driver.get_jobs

        async def counting_get(chunk):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real_get(chunk)

        driver.get_jobs = counting_get  # type: ignore[method-assign]
        before = driver.http.requests
        before_304 = driver.http.not_modified
        results = {}

        async def wait(job_id: str) -> None:
            results[job_id] = await farm.jobs.wait(job_id, timeout=600, max_interval=max_interval)

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(wait, job_id)
        noticed = time.time()
        requests = driver.http.requests - before
        not_modified = driver.http.not_modified - before_304
        driver.get_jobs = real_get  # type: ignore[method-assign]
        records = [dict(r.job.raw) for r in results.values()]
        assert all(r.status.value == "succeeded" for r in results.values())
    return {
        "requests": requests,
        "rounds": calls,
        "per_round": requests / max(1, calls),
        "not_modified": not_modified,
        "latency": noticed - last_completion(records),
    }


async def run_per_job(cluster: Cluster, n: int, gate_s: float, max_interval: float) -> dict[str, float]:
    import aiohttp

    async with Client(cluster.url) as farm:
        _, ids = await submit_set(farm, n, gate_s)
    headers = {"X-SLURM-USER-NAME": cluster.user, "X-SLURM-USER-TOKEN": cluster.token}
    requests = 0
    polls: dict[str, int] = {}
    records: list[dict[str, object]] = []
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=32)) as session:

        async def wait(job_id: str) -> None:
            nonlocal requests
            backoff = Backoff(0.5, max_interval)
            last_state = None
            while True:
                requests += 1
                polls[job_id] = polls.get(job_id, 0) + 1
                async with session.get(f"{cluster.rest}/slurm/v0.0.38/job/{job_id}") as resp:
                    data = await resp.json()
                rec = data["jobs"][0]
                if rec["job_state"] in FINISHED:
                    records.append(rec)
                    return
                if rec["job_state"] != last_state:
                    backoff.reset()
                    last_state = rec["job_state"]
                await backoff.sleep()

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(wait, job_id)
        noticed = time.time()
    rounds = max(polls.values())
    return {
        "requests": requests,
        "rounds": rounds,
        "per_round": requests / rounds,
        "not_modified": 0,
        "latency": noticed - last_completion(records),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=500)
    ap.add_argument("--gate", type=float, default=5.0, help="seconds the gate job sleeps")
    ap.add_argument("--max-interval", type=float, default=2.0)
    ap.add_argument("--sleep", type=float, default=0.0, help="seconds each job runs (quiet rounds get 304s)")
    args = ap.parse_args()
    global SLEEP
    SLEEP = args.sleep
    if os.geteuid() != 0:
        sys.exit("needs root: starts the real Slurm cluster")
    cluster = await anyio.to_thread.run_sync(start_cluster_sync)
    rows = []
    for label, fn in (("aiofarm shared poller (GET /jobs)", run_aiofarm), ("per-job poller (GET /job/{id})", run_per_job)):
        t0 = time.perf_counter()
        out = await fn(cluster, args.jobs, args.gate, args.max_interval)
        out["wall"] = time.perf_counter() - t0
        rows.append((label, out))
        print(f"  done: {label}", file=sys.stderr)
    print(f"\nP1 Slurm: waiting on {args.jobs} jobs (back-off 0.5 s doubling to {args.max_interval:g} s), same run")
    print(f"{'poller':<36} {'requests/round':>15} {'rounds':>7} {'requests':>9} {'of them 304':>12} {'notice latency':>15} {'wall':>7}")
    for label, out in rows:
        print(
            f"{label:<36} {out['per_round']:>15.1f} {int(out['rounds']):>7} {int(out['requests']):>9} "
            f"{int(out['not_modified']):>12} {out['latency']:>14.2f}s {out['wall']:>6.1f}s"
        )


if __name__ == "__main__":
    anyio.run(main)
