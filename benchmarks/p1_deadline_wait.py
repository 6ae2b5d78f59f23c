"""P1: waiting on many Deadline Cloud jobs — aiofarm's shared poller vs the official
client's ``wait_for_job_completion`` (one call per job in a thread pool of 32), both
against the same fake Deadline Cloud service, measured in the same run.

For each contender the jobs are seeded RUNNING, the waits start, and after a warm-up
(``--warmup`` s of polling) every job completes at once (t0). Both poll on the same
back-off: 0.5 s doubling to ``--max-interval``. We measure

* requests per poll round: the API requests it takes to look at every job once
  (aiofarm: BatchGetJob calls per round of its shared poller, measured; official:
  GetJob calls per job per poll, measured, times the number of jobs);
* requests per ``--max-interval`` of watching: everything aiofarm sends while
  nothing changes — its rounds and the change-feed probes (one SearchJobs each)
  between them — against the official client's round;
* time to notice all: from t0 until the last wait has returned. aiofarm's t0 falls
  at a uniformly random point of its poll schedule, ``--repeats`` times (mean, and
  the range); the official client is throughput-bound, so its t0 is simply the end
  of the warm-up.

The official client gets a fresh boto3 client per wait call (that is how
``wait_for_job_completion`` works), so 10,000 of them take minutes on this machine:
by default it is measured on ``--official-jobs`` jobs and its time scaled linearly to
``--jobs`` (a pool of 32 threads works through the jobs in waves, so time grows with
the job count once it is well above 32). The table says which figures are scaled.

``--latency`` adds the same per-request delay on the fake for both contenders (an AWS
round trip is tens of milliseconds; loopback is well under one).

    .venv/bin/python benchmarks/p1_deadline_wait.py --jobs 10000 --official-jobs 10000
"""

from __future__ import annotations

import argparse
import concurrent.futures
import math
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiofarm
from tests.fakes.deadline.process import FakeDeadlineProcess, aws_env, fake_env, patched_environ

TEMPLATE = (
    '{"specificationVersion":"jobtemplate-2023-09","name":"p1","steps":[{"name":"s",'
    '"script":{"actions":{"onRun":{"command":"true"}}}}]}'
)


def seed(fake: FakeDeadlineProcess, n: int) -> list[str]:
    fake.reset()
    ids: list[str] = []
    while len(ids) < n:
        batch = min(2000, n - len(ids))
        ids += fake.admin("seed", {"count": batch, "template": TEMPLATE, "templateType": "JSON"})[
            "jobIds"
        ]
    fake.advance(1)  # every job RUNNING: the next step finishes them all
    return ids


def set_latency(fake: FakeDeadlineProcess, latency: float) -> None:
    if latency > 0:
        fake.faults(rate=1.0, kinds=["slow"], slow_seconds=latency)


async def run_aiofarm(
    fake: FakeDeadlineProcess,
    ids: list[str],
    warmup: float,
    latency: float,
    max_interval: float,
    rng: random.Random,
) -> dict[str, float]:
    done: list[float] = []
    async with aiofarm.Client(fake.url()) as farm:
        set_latency(fake, latency)

        async def wait(job_id: str) -> None:
            result = await farm.jobs.wait(job_id, max_interval=max_interval)
            assert result.status is aiofarm.JobStatus.SUCCEEDED
            done.append(time.monotonic())

        async def next_round() -> tuple[int, dict[str, int], float]:
            r = hub.rounds
            while hub.rounds == r:  # noqa: ASYNC110 - the hub's round counter has no event
                await anyio.sleep(0.005)
            return hub.rounds, fake.stats(), time.monotonic()

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(wait, job_id)
            await anyio.sleep(warmup)
            hub = farm.hub
            # one whole round: from the end of one to the end of the next
            await next_round()
            r0, s0, m0 = await next_round()
            r1, s1, m1 = await next_round()
            # every job finishes at a random point of the poll schedule
            await anyio.sleep(rng.uniform(0, m1 - m0))
            t0 = time.monotonic()
            fake.faults(rate=0)
            fake.advance(1)
            set_latency(fake, latency)
        fake.faults(rate=0)
    stats = fake.stats()
    rounds = r1 - r0
    period = (m1 - m0) / rounds
    gets = (s1.get("BatchGetJob", 0) - s0.get("BatchGetJob", 0)) / rounds
    probes = (s1.get("SearchJobs", 0) - s0.get("SearchJobs", 0)) / rounds
    return {
        "requests_per_round": gets,
        "probes_per_round": probes,
        "round_period": period,
        "requests_per_interval": (gets + probes) * max_interval / period,
        "notice_all": max(done) - t0,
        "notice_first": min(done) - t0,
        "get_job": stats.get("GetJob", 0),
        "jobs": len(ids),
    }


def run_official(
    fake: FakeDeadlineProcess, ids: list[str], warmup: float, latency: float, max_interval: float
) -> dict[str, float]:
    from deadline.client import api
    from deadline.client.config import config_file

    config = config_file.read_config()
    config_file.set_setting("defaults.farm_id", fake.farm_id, config=config)
    config_file.set_setting("defaults.queue_id", fake.queue_id, config=config)
    done: list[float] = []

    def wait(job_id: str) -> None:
        result = api.wait_for_job_completion(
            fake.farm_id, fake.queue_id, job_id, max_poll_interval=max_interval, config=config
        )
        assert result.status == "SUCCEEDED", result
        done.append(time.monotonic())

    set_latency(fake, latency)
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        futures = [pool.submit(wait, j) for j in ids]
        time.sleep(warmup)
        before = fake.stats().get("GetJob", 0)
        fake.faults(rate=0)
        fake.advance(1)
        t0 = time.monotonic()
        set_latency(fake, latency)
        for f in futures:
            f.result()
    fake.faults(rate=0)
    after = fake.stats().get("GetJob", 0)
    # after t0 every job still to be noticed costs GetJob calls; per job per poll:
    remaining = sum(1 for t in done if t >= t0)
    per_job_poll = (after - before) / max(1, remaining)
    return {
        "requests_per_round": per_job_poll * len(ids),
        "per_job_poll": per_job_poll,
        "notice_all": max(done) - t0,
        "notice_first": min(t for t in done if t >= t0) - t0,
        "get_job": after,
        "jobs": len(ids),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument(
        "--official-jobs",
        type=int,
        default=1_000,
        help="jobs the official client waits on (scaled to --jobs)",
    )
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument(
        "--max-interval", type=float, default=2.0, help="longest poll interval, both contenders"
    )
    parser.add_argument(
        "--latency", type=float, default=0.0, help="seconds added to every request on the fake"
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="aiofarm runs, each with t0 at a random point"
    )
    parser.add_argument("--seed", type=int, default=1, help="of the random t0 points")
    args = parser.parse_args()
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as home, FakeDeadlineProcess(moto=False, workers=32) as fake:
        env = {
            **aws_env(home),
            **fake_env(fake, home),
            "DEADLINE_CONFIG_FILE_PATH": os.path.join(home, "deadline-config"),
            "DEADLINE_CLOUD_TELEMETRY_OPT_OUT": "true",
        }
        with patched_environ(env):
            runs = []
            for _ in range(args.repeats):
                ids = seed(fake, args.jobs)
                runs.append(
                    anyio.run(
                        run_aiofarm, fake, ids, args.warmup, args.latency, args.max_interval, rng
                    )
                )
            n_off = min(args.official_jobs, args.jobs)
            ids = seed(fake, n_off)
            theirs = run_official(fake, ids, args.warmup, args.latency, args.max_interval)

    def mean(key: str) -> float:
        return statistics.fmean(r[key] for r in runs)

    notice = [r["notice_all"] for r in runs]
    scale = args.jobs / n_off
    official_round = theirs["per_job_poll"] * args.jobs
    official_notice = theirs["notice_all"] * scale
    scaled = f" (scaled from {n_off:,} jobs)" if scale != 1 else ""
    rows = [
        (
            "requests per poll round",
            f"{mean('requests_per_round'):.0f}",
            f"{official_round:,.0f}",
            official_round / mean("requests_per_round"),
        ),
        (
            f"requests per {args.max_interval:g} s watching",
            f"{mean('requests_per_interval'):.1f}",
            f"{official_round:,.0f}",
            official_round / mean("requests_per_interval"),
        ),
        (
            "time to notice all (s)",
            f"{statistics.fmean(notice):.2f}",
            f"{official_notice:.2f}{scaled}",
            official_notice / statistics.fmean(notice),
        ),
    ]
    print(
        f"P1: waiting on {args.jobs:,} Deadline Cloud jobs (fake service, added latency "
        f"{args.latency * 1000:.0f} ms/request, poll back-off 0.5 s doubling to {args.max_interval:g} s for both)"
    )
    print(
        f"{'':28}{'aiofarm':>12}  {'official wait_for_job_completion x32 threads':>46}  {'ratio':>7}"
    )
    for name, a, b, ratio in rows:
        print(f"{name:28}{a:>12}  {b:>46}  {ratio:>6.0f}x")
    print(
        f"aiofarm over {args.repeats} runs with t0 at a random point: notice all "
        f"{min(notice):.2f}-{max(notice):.2f} s; first completion noticed after "
        f"{mean('notice_first'):.2f} s; last after first {mean('notice_all') - mean('notice_first'):.2f} s"
    )
    print(
        f"aiofarm's schedule: a round of {mean('requests_per_round'):.0f} BatchGetJob every "
        f"{mean('round_period'):.2f} s, {mean('probes_per_round'):.1f} change-feed probes "
        f"(SearchJobs) between rounds; GetJob calls: {sum(r['get_job'] for r in runs):.0f}"
    )
    print(
        f"official: {theirs['per_job_poll']:.2f} GetJob per job per poll; measured on {n_off:,} jobs: "
        f"{theirs['notice_all']:.2f} s to notice all (first after {theirs['notice_first']:.2f} s)"
    )
    if not math.isfinite(official_notice):
        sys.exit(1)


if __name__ == "__main__":
    main()
