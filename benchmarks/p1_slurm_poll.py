"""P1 on Slurm: waiting on many jobs with slurmrestd 22.05, 24.11 and 26.05 --
aiofarm's shared poller (one conditional ``GET /jobs?update_time=`` per round for
every watched id: nothing when no job changed, every record when one did) vs a
per-job poller (``GET /job/{id}`` for every job every round), against the real
clusters the test suite starts, in the same run.

Per cluster and contender: a gate job (``--gate`` s) and ``--jobs`` jobs that depend
on it (afterok) and print ``date +%s.%N`` as their last act; the waits start while
the gate runs. Both poll with the same back-off (0.5 s doubling to
``--max-interval``), reset when something changed. Measured:

* requests per poll round: HTTP requests sent while waiting / poll rounds (aiofarm:
  the shared poller's ``get_jobs`` calls; per-job: the most polls any one job had,
  i.e. passes over the job set), and of aiofarm's, how many were ``GET /jobs`` and
  how many of those the cluster answered with nothing (no job changed),
* notice latency: from the last job's completion (the latest timestamp the jobs
  printed) to the moment the client's last wait returned.

    .venv/bin/python benchmarks/p1_slurm_poll.py --jobs 1000 --clusters 22.05,24.11,26.05
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiofarm import Client, JobSpec
from aiofarm.backoff import Backoff
from aiofarm.drivers.slurm import SlurmDriver
from tests.backends.slurm import Cluster, start_cluster_sync

FINISHED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
async def submit_set(farm: Client, n: int, gate_s: float) -> list[str]:
    gate = await farm.jobs.start(["sleep", str(gate_s)], name="p1-gate")
    jobs = await farm.jobs.submit(
        [JobSpec(command=["date", "+%s.%N"], name="p1", depends_on=[gate.id]) for _ in range(n)]
    )
    return [j.id for j in jobs]


def last_completion(log_dir: str, ids: list[str]) -> float:
    return max(float(Path(f"{log_dir}/slurm-{i}.out").read_text().split()[0]) for i in ids)


async def run_aiofarm(cluster: Cluster, n: int, gate_s: float, max_interval: float) -> dict[str, Any]:
    async with Client(cluster.url) as farm:
        driver = farm.driver
        assert isinstance(driver, SlurmDriver) and driver.api is not None
        ids = await submit_set(farm, n, gate_s)
        calls = 0
        paths: Counter[str] = Counter()
        empty = 0
        real_get, real_call = driver.get_jobs, driver.http.call

        async def counting_get(chunk):  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            return await real_get(chunk)

        async def counting_call(method, path, **kw):  # type: ignore[no-untyped-def]
            nonlocal empty
            paths[path.split("?")[0].rsplit("/slurm/", 1)[-1].split("/", 1)[-1]] += 1
            status, data = await real_call(method, path, **kw)
            if kw.get("params") and path.endswith("/jobs") and driver.api.wire.unchanged(status, data):
                empty += 1
            return status, data

        driver.get_jobs = counting_get  # type: ignore[method-assign]
        driver.http.call = counting_call  # type: ignore[method-assign]
        before = driver.http.requests
        results = {}

        async def wait(job_id: str) -> None:
            results[job_id] = await farm.jobs.wait(job_id, timeout=900, max_interval=max_interval)

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(wait, job_id)
        noticed = time.time()
        requests = driver.http.requests - before
        driver.get_jobs, driver.http.call = real_get, real_call  # type: ignore[method-assign]
        assert all(r.status.value == "succeeded" for r in results.values())
        version = driver.api.version
    return {
        "version": version,
        "requests": requests,
        "rounds": calls,
        "per_round": requests / max(1, calls),
        "state": empty,
        "full": paths["jobs"],
        "latency": noticed - last_completion(driver.log_dir, ids),
    }


async def run_per_job(cluster: Cluster, n: int, gate_s: float, max_interval: float) -> dict[str, Any]:
    import aiohttp

    async with Client(cluster.url) as farm:
        driver = farm.driver
        assert isinstance(driver, SlurmDriver) and driver.api is not None
        version, log_dir = driver.api.version, driver.log_dir
        ids = await submit_set(farm, n, gate_s)
    headers = {"X-SLURM-USER-NAME": cluster.user, "X-SLURM-USER-TOKEN": cluster.token}
    requests = 0
    polls: dict[str, int] = {}
    async with aiohttp.ClientSession(headers=headers, connector=aiohttp.TCPConnector(limit=32)) as session:

        async def wait(job_id: str) -> None:
            nonlocal requests
            backoff = Backoff(0.5, max_interval)
            last_state = None
            while True:
                requests += 1
                polls[job_id] = polls.get(job_id, 0) + 1
                try:
                    async with session.get(f"{cluster.rest}/slurm/{version}/job/{job_id}") as resp:
                        data = await resp.json(content_type=None) if resp.status < 500 else {}
                except aiohttp.ClientResponseError:
                    data = {}  # 26.05 answers an unknown job with a doubled 404
                if not data.get("jobs"):
                    return  # it ended and slurmctld already forgot it (MinJobAge=10 on 24.11/26.05)
                state = data["jobs"][0]["job_state"]
                state = state[0] if isinstance(state, list) else state
                if state in FINISHED:
                    return
                if state != last_state:
                    backoff.reset()
                    last_state = state
                await backoff.sleep()

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(wait, job_id)
        noticed = time.time()
    rounds = max(polls.values())
    return {
        "version": version,
        "requests": requests,
        "rounds": rounds,
        "per_round": requests / rounds,
        "state": 0,
        "full": 0,
        "latency": noticed - last_completion(log_dir, ids),
    }


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--gate", type=float, default=5.0, help="seconds the gate job sleeps")
    ap.add_argument("--max-interval", type=float, default=2.0)
    ap.add_argument("--clusters", default="22.05,24.11,26.05", help="comma-separated: 22.05, 24.11, 26.05")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("needs root: starts the real Slurm clusters")
    rows = []
    load_before = os.getloadavg()
    for name in args.clusters.split(","):
        cluster = await anyio.to_thread.run_sync(start_cluster_sync, name)
        for label, fn in (("aiofarm shared poller", run_aiofarm), ("per-job GET /job/{id}", run_per_job)):
            t0 = time.perf_counter()
            out = await fn(cluster, args.jobs, args.gate, args.max_interval)
            out["wall"] = time.perf_counter() - t0
            rows.append((name, label, out))
            print(f"  done: {name} {label}", file=sys.stderr)
    load_after = os.getloadavg()
    print(f"\nP1 Slurm: waiting on {args.jobs} jobs (back-off 0.5 s doubling to {args.max_interval:g} s), same run")
    print("load average (1/5/15 min): at start " + " ".join(f"{x:.2f}" for x in load_before)
          + ", at end " + " ".join(f"{x:.2f}" for x in load_after))
    print(
        f"{'cluster':<8} {'api':<8} {'poller':<24} {'requests/round':>15} {'rounds':>7} {'requests':>9} "
        f"{'GET /jobs':>10} {'unchanged':>10} {'notice latency':>15} {'wall':>7}"
    )
    for name, label, out in rows:
        print(
            f"{name:<8} {out['version']:<8} {label:<24} {out['per_round']:>15.2f} {int(out['rounds']):>7} "
            f"{int(out['requests']):>9} {int(out['full']):>10} {int(out['state']):>10} {out['latency']:>14.2f}s "
            f"{out['wall']:>6.1f}s"
        )


if __name__ == "__main__":
    anyio.run(main)
