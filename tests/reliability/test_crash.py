"""kill -9 of the client and of the local farm service at random points of a 200-job
run. After each kill the client is started again and carries on (it submits only the
ids the farm does not have yet: client-chosen ids make the resubmission idempotent).
At the end: every submission the client saw acknowledged is on the farm (0 lost), no
job's command ran twice, and no job process is left running (0 orphans)."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from aiofarm import Client, JobStatus
from tests.services import services_with_env

from .conftest import FULL

pytestmark = pytest.mark.anyio

JOBS = 200
KILLS = 20
BATCH = 20

CLIENT = textwrap.dedent(
    """
    import sys
    import anyio
    import aiofarm
    from aiofarm import JobSpec

    url, n, runs, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    # each job's command appends its id to `runs`: a second run would show twice
    command = ["sh", "-c", 'echo "$AIOFARM_JOB_ID" >> "$1"; sleep 0.2', "sh", runs]

    async def main():
        async with aiofarm.Client(url) as farm:
            async with farm.jobs.list() as it:
                have = {job.id async for job in it}
            missing = [f"crash-{i:03d}" for i in range(n) if f"crash-{i:03d}" not in have]
            for start in range(0, len(missing), batch):
                chunk = missing[start:start + batch]
                await farm.jobs.submit([JobSpec(command=command, id=i) for i in chunk])
                print("acked", *chunk, flush=True)
            ids = [f"crash-{i:03d}" for i in range(n)]
            async for _ in farm.jobs.as_completed(ids):
                pass
            print("done", flush=True)

    anyio.run(main)
    """
)


def _job_processes(marker: str) -> list[int]:
    """Pids of live processes started as jobs of this test's farm."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if b"AIOFARM_TEST_MARK=" + marker.encode() in env and any(e.startswith(b"AIOFARM_JOB_ID=") for e in env):
            found.append(int(name))
    return found


async def test_kill_client_and_service_at_random_points(tmp_path: Path, figure: Callable[[str, object], None]) -> None:
    marker = os.environ["AIOFARM_TEST_MARK"]
    url = f"local://{tmp_path}/state?slots=8"
    runs = tmp_path / "runs.log"
    runs.touch()
    rng = random.Random(16)
    acked: set[str] = set()
    kills: collections.Counter[str] = collections.Counter()

    def start_client() -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", CLIENT, url, str(JOBS), str(runs), str(BATCH)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )  # fmt: skip

    def collect(proc: subprocess.Popen[str]) -> str:
        out, _ = proc.communicate(timeout=120)
        for line in out.splitlines():
            if line.startswith("acked "):
                acked.update(line.split()[1:])
        return out

    kill_window = 6.0 if FULL else 3.0
    for n in range(KILLS):
        proc = start_client()
        await anyio.sleep(rng.uniform(0.05, kill_window))  # a random point of the run, not a wait for state
        victim = "client" if n % 2 == 0 else "service"
        if victim == "client":
            proc.send_signal(signal.SIGKILL)
        else:
            for pid in services_with_env("AIOFARM_TEST_MARK", marker):
                os.kill(pid, signal.SIGKILL)
            proc.send_signal(signal.SIGKILL)  # a client whose service died may be mid-call
        kills[victim] += 1
        collect(proc)
    started = time.monotonic()
    final = start_client()
    out = await anyio.to_thread.run_sync(collect, final)
    assert "done" in out.splitlines(), out[-2000:]
    async with Client(url) as farm, farm.jobs.list() as it:
        jobs = {job.id: job async for job in it}
    counts = collections.Counter(runs.read_text().split())
    twice = {job_id: c for job_id, c in counts.items() if c > 1}
    lost = acked - set(jobs)
    statuses = collections.Counter(job.status.value for job in jobs.values())
    died = sum(1 for job in jobs.values() if job.status is JobStatus.FAILED)
    figure(
        f"local: kill -9 x{KILLS} ({dict(kills)}) in a {JOBS}-job run",
        f"lost {len(lost)}, ran twice {len(twice)}, statuses {dict(statuses)}, finish {time.monotonic() - started:.1f}s",
    )
    assert not lost, sorted(lost)[:10]
    assert not twice, twice
    assert set(jobs) >= {f"crash-{i:03d}" for i in range(JOBS)}
    assert all(job.status.is_finished for job in jobs.values())
    # a job that died with its service is FAILED with the reason, never rerun
    for job in jobs.values():
        if job.status is JobStatus.FAILED:
            assert job.reason and "lost" in job.reason, (job.id, job.reason)
    assert died <= KILLS * 8  # at most one slot-full per service kill
    with anyio.fail_after(20):
        while _job_processes(marker):  # noqa: ASYNC110 - no event says a process ended
            await anyio.sleep(0.1)

