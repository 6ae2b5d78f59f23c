"""What differs between Slurm releases, against each real cluster: the negotiated
API version, one request per poll round, requeue-based retry, pause that stops the
work, and history of jobs slurmctld has forgotten (accounting)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import anyio
import pytest

from aiofarm import Client, JobSpec, JobStatus, UnsupportedError
from aiofarm.drivers.base import SubmitAttempt
from aiofarm.drivers.slurm import SlurmDriver
from aiofarm.drivers.slurm.http import SlurmAPIError
from aiofarm.drivers.slurm.script import job_description
from aiofarm.drivers.slurm.wire import KNOWN_VERSIONS
from tests.backends.slurm import Cluster
from tests.waits import until_status

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


def _driver(farm: Client) -> SlurmDriver:
    driver = farm.driver
    assert isinstance(driver, SlurmDriver) and driver.api is not None
    return driver


async def test_negotiates_the_newest_version_both_speak(farm: Client, slurm_cluster: Cluster) -> None:
    api = _driver(farm).api
    assert api is not None
    newest = next(v for v in KNOWN_VERSIONS if v in slurm_cluster.api_versions)
    assert api.version == newest
    # 24.11 and 26.05 have accounting; 22.05 not
    assert api.accounting is slurm_cluster.accounting
    # v0.0.45 requeues through REST (retry, pause(stop_work=True)); older ones use scontrol
    assert api.requeue is (api.version == "v0.0.45")


async def test_the_url_picks_a_served_version_and_refuses_others(slurm_cluster: Cluster) -> None:
    for version in slurm_cluster.api_versions:
        async with Client(f"{slurm_cluster.url}&api={version}") as farm:
            assert _driver(farm).api.version == version  # type: ignore[union-attr]
            job = await farm.jobs.start(["sh", "-c", "exit 3"])
            result = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
            assert (result.status, result.job.exit_code) == (JobStatus.FAILED, 3)
    missing = next(v for v in ("v0.0.38", "v0.0.40", "v0.0.45") if v not in slurm_cluster.api_versions)
    # 26.05 answers a path of v0.0.38 with a malformed reply: still a clear refusal, at once
    with anyio.fail_after(30), pytest.raises(UnsupportedError) as info:
        async with Client(f"{slurm_cluster.url}&api={missing}"):
            pass
    text = str(info.value)
    assert missing in text and all(v in text for v in slurm_cluster.api_versions) and "aiofarm speaks" in text


async def test_one_request_per_poll_round_while_jobs_change(farm: Client) -> None:
    """Every round is one request, rounds in which watched jobs start and end
    included: that one answer carries their whole records (exit codes, tasks)."""
    driver = _driver(farm)
    jobs = await farm.jobs.submit(
        [JobSpec(command=["sh", "-c", f"sleep {1 + i % 4}; exit {i % 3}"]) for i in range(20)]
    )
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "arr",
        "steps": [{
            "name": "S",
            "parameterSpace": {"taskParameterDefinitions": [{"name": "F", "type": "INT", "range": "1-4"}]},
            "script": {"actions": {"onRun": {"command": "sleep", "args": ["2"]}}},
        }],
    }
    array = await farm.jobs.submit_template(template)
    ids = [j.id for j in jobs] + [array.id]
    seen: dict[str, JobStatus] = {}
    changed_rounds = rounds = 0
    with anyio.fail_after(90):
        while True:
            before = driver.http.requests
            got = await driver.get_jobs(ids)
            assert driver.http.requests - before == 1, f"round {rounds}"
            assert set(got) == set(ids)
            now = {i: j.status for i, j in got.items()}
            changed_rounds += bool(seen) and now != seen
            rounds += 1
            seen = now
            if all(s.is_finished for s in now.values()):
                break
            await anyio.sleep(0.3)
    assert changed_rounds >= 2
    assert [got[j.id].exit_code for j in jobs] == [i % 3 for i in range(20)]
    assert got[array.id].status is JobStatus.SUCCEEDED
    tasks = await farm.jobs.tasks(array.id)
    assert [t.id for t in tasks] == ["0", "1", "2", "3"]
    # a quiet round, and calls that overlap share one read
    before = driver.http.requests
    await driver.get_jobs(ids)
    assert driver.http.requests - before == 1
    before = driver.http.requests
    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(driver.get_jobs, ids)
    assert driver.http.requests - before <= 2


async def test_retry_requeues_a_failed_job(farm: Client) -> None:
    job = await farm.jobs.start(["sh", "-c", "exit 5"])
    first = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
    assert (first.status, first.job.exit_code) == (JobStatus.FAILED, 5)
    await farm.jobs.retry(job.id)
    # the same Slurm job runs again; the task counts a second attempt
    with anyio.fail_after(90):
        while True:
            (task,) = await farm.jobs.tasks(job.id)
            if task.attempts == 2 and task.status.is_finished:
                break
            await anyio.sleep(0.5)
    assert task.status is JobStatus.FAILED and task.exit_code == 5


async def test_retries_requeue_until_the_command_succeeds(farm: Client, slurm_cluster: Cluster) -> None:
    marker = f"/tmp/aiofarm-retry-{time.monotonic_ns()}"
    # fails on its first run, succeeds on the second
    command = f"n=$(cat {marker} 2>/dev/null || echo 0); echo $((n + 1)) > {marker}; [ $n -ge 1 ]"
    job = await farm.jobs.start(command, retries=1)
    try:
        # the failed run requeued itself: pending again, one restart counted
        with anyio.fail_after(60):
            while True:
                (task,) = await farm.jobs.tasks(job.id)
                if task.attempts == 1 and task.status is JobStatus.PENDING and "BeginTime" in (task.reason or ""):
                    break
                assert not task.status.is_finished, task
                await anyio.sleep(0.5)
        # Slurm holds a requeued job back two minutes; the test does not wait them out
        await anyio.run_process(
            [slurm_cluster.command("scontrol"), "update", f"JobId={job.id}", "StartTime=now+2"], check=True
        )
        result = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
        assert result.status is JobStatus.SUCCEEDED, result.job.reason
        (task,) = await farm.jobs.tasks(job.id)
        assert task.attempts == 2
    finally:
        await farm.jobs.cancel(job.id)


async def test_pause_with_stop_work_requeues_and_holds(farm: Client) -> None:
    job = await farm.jobs.start(["sleep", "300"])
    try:
        await until_status(farm, job.id, JobStatus.RUNNING)
        await farm.jobs.pause(job.id, stop_work=True)
        await until_status(farm, job.id, JobStatus.SUSPENDED)
        await anyio.sleep(1.5)  # several scheduler ticks: it must stay held
        assert (await farm.jobs.get(job.id)).status is JobStatus.SUSPENDED
        await farm.jobs.resume(job.id)
        await until_status(farm, job.id, JobStatus.RUNNING)
    finally:
        await farm.jobs.cancel(job.id)


async def test_a_retried_submit_finds_what_the_first_attempt_made(farm: Client) -> None:
    # the client layer retries a submit with the same tokens and retry=True: the head
    # job's comment tag is looked up instead of submitting again
    driver = _driver(farm)
    specs = [JobSpec(command=["true"], name="once"), JobSpec(command=["sleep", "1"], name="twice")]
    first = SubmitAttempt.new(len(specs))
    made = await driver.submit(specs, first)
    again = await driver.submit(specs, SubmitAttempt(first.tokens, retry=True))
    assert [j.id for j in again] == [j.id for j in made]
    # a cancelled one (what a failed attempt deletes on its way out) is submitted anew
    await farm.jobs.cancel(made[1].id)
    await until_status(farm, made[1].id, JobStatus.CANCELED)
    third = await driver.submit(specs, SubmitAttempt(first.tokens, retry=True))
    assert third[0].id == made[0].id and third[1].id != made[1].id


async def test_a_retried_submit_replaces_a_multi_step_head_left_incomplete(farm: Client) -> None:
    # an attempt whose head step was made (its answer lost, so it was not deleted) but
    # that failed before naming the other steps: the retry deletes it and submits anew
    driver = _driver(farm)
    api = driver.api
    assert api is not None
    attempt = SubmitAttempt.new(1)
    desc = job_description(
        JobSpec(command=["sleep", "60"]), array_size=None, env={}, log_dir=driver.log_dir, dependency_ids=[],
        default_partition=driver.config.partition, default_name="half", meta={"submit": attempt.tokens[0], "step": "A"},
    )
    _, data = await driver.http.call("POST", api.path("/job/submit"), body=api.wire.submit_body(desc, "#!/bin/sh\nsleep 60\n"))
    half = str(data["job_id"])
    steps = [
        {"name": "A", "script": {"actions": {"onRun": {"command": "true"}}}},
        {"name": "B", "dependencies": [{"dependsOn": "A"}], "script": {"actions": {"onRun": {"command": "true"}}}},
    ]
    spec = JobSpec(template={"specificationVersion": "jobtemplate-2023-09", "name": "two", "steps": steps})
    (job,) = await driver.submit([spec], SubmitAttempt(attempt.tokens, retry=True))
    assert job.id != half
    await until_status(farm, half, JobStatus.CANCELED)
    assert (await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)).status is JobStatus.SUCCEEDED


async def test_history_of_forgotten_jobs(farm: Client, slurm_cluster: Cluster) -> None:
    driver = _driver(farm)
    api = driver.api
    assert api is not None
    if not slurm_cluster.accounting:
        # no accounting: history older than slurmctld keeps is refused, not silently short
        with pytest.raises(UnsupportedError, match="accounting"):
            async with farm.jobs.list(since=datetime.now(timezone.utc) - timedelta(days=1)) as it:
                [j async for j in it]
        return
    started = time.time()
    ok, bad = await farm.jobs.submit(
        [JobSpec(command=["sh", "-c", "echo kept"], tags=["hist"]), JobSpec(command=["sh", "-c", "exit 4"])]
    )
    for job in (ok, bad):
        await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
    # slurmctld drops finished jobs MinJobAge (10 s) after they end, at its next purge
    with anyio.fail_after(slurm_cluster.min_job_age + 120):
        while True:
            try:
                await driver.http.call("GET", api.path(f"/job/{bad.id}"))
            except SlurmAPIError as exc:
                # 26.05 sends its 404 page malformed: the status is all there is
                assert exc.number == 2017 or exc.status == 404
                break
            await anyio.sleep(2)
    # a fresh client, which never saw these jobs, reads them from slurmdbd
    async with Client(slurm_cluster.url) as fresh:
        got_ok, got_bad = await fresh.jobs.get(ok.id), await fresh.jobs.get(bad.id)
        assert (got_ok.status, got_ok.exit_code, got_ok.tags) == (JobStatus.SUCCEEDED, 0, ("hist",))
        assert (got_bad.status, got_bad.exit_code) == (JobStatus.FAILED, 4)
        (task,) = await fresh.jobs.tasks(bad.id)
        assert task.exit_code == 4 and task.status is JobStatus.FAILED
        assert (await fresh.logs.read(ok.id)).strip() == "kept"
        async with fresh.jobs.list(since=datetime.fromtimestamp(started - 1, timezone.utc)) as it:
            listed = {j.id: j.status async for j in it}
        assert listed[ok.id] is JobStatus.SUCCEEDED and listed[bad.id] is JobStatus.FAILED
        with pytest.raises(UnsupportedError, match="retry"):
            await fresh.jobs.retry(bad.id)
