"""OpenJD session semantics on the local farm: the session directory's lifetime, the
failure defaults of a frame range, host requirements, action messages in tasks()."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiofarm import Client
from aiofarm.models import JobStatus
from aiofarm.openjd.loading import template_spec

from .samples import FRAMES, MESSAGES, SESSION_DIR

pytestmark = pytest.mark.anyio


async def test_session_directory_is_deleted_when_the_session_ends(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_template(SESSION_DIR, parameters={"OutDir": str(out)})
        assert (await farm.jobs.wait(job.id, timeout=60)).status is JobStatus.SUCCEEDED
        dirs = {Path((out / f"dir-{n}.txt").read_text().strip()) for n in (1, 2)}
        assert len(dirs) == 2  # a directory per session
        assert not any(d.exists() for d in dirs)

        kept = template_spec(SESSION_DIR, {"OutDir": str(out)}, options={"openjd_keep_session_dir": True})
        (job,) = await farm.jobs.submit([kept])
        assert (await farm.jobs.wait(job.id, timeout=60)).status is JobStatus.SUCCEEDED
        dirs = {Path((out / f"dir-{n}.txt").read_text().strip()) for n in (1, 2)}
        assert all((d / "scratch.bin").read_text() == "scratch\n" for d in dirs)


async def test_a_thousand_frames_three_fail_the_rest_finish(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_template(FRAMES, parameters={"Frames": "1-1000", "Bad": ",17,500,999,"})
        result = await farm.jobs.wait(job.id, timeout=300)
        assert result.status is JobStatus.FAILED
        assert sorted(t.parameters["Frame"] for t in result.failed_tasks) == [17, 500, 999]
        assert result.job.task_counts == {"succeeded": 997, "failed": 3}
        assert result.job.reason == "3 of 1000 tasks failed"
        # retry reruns just those three
        await farm.jobs.retry(job.id)
        again = await farm.jobs.wait(job.id, timeout=120)
        assert again.status is JobStatus.FAILED
        tasks = await farm.jobs.tasks(job.id)
        rerun = sorted(t.parameters["Frame"] for t in tasks if t.attempts == 2)
        assert rerun == [17, 500, 999]
        assert sum(1 for t in tasks if t.attempts == 1) == 997


async def test_max_failed_tasks_zero_stops_at_the_first_failure(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path / "farm"), slots=1) as farm:
        job = await farm.jobs.submit_template(
            FRAMES, parameters={"Frames": "1-20", "Bad": ",1,"}, max_failed_tasks=0
        )
        result = await farm.jobs.wait(job.id, timeout=60)
        assert result.status is JobStatus.FAILED
        assert result.job.task_counts.get("succeeded", 0) < 19  # the others were canceled


HOSTS = """\
specificationVersion: jobtemplate-2023-09
name: Hosts
steps:
- name: Anywhere
  hostRequirements:
    amounts: [{name: amount.worker.vcpu, min: 1}]
    attributes: [{name: attr.worker.os.family, anyOf: [linux, macos]}]
  script: {actions: {onRun: {command: "true"}}}
- name: NeedsGpu
  hostRequirements:
    amounts: [{name: amount.worker.gpu, min: 1}]
  script: {actions: {onRun: {command: "true"}}}
- name: WindowsOnly
  hostRequirements:
    attributes: [{name: attr.worker.os.family, anyOf: [windows]}]
  script: {actions: {onRun: {command: "true"}}}
- name: Licensed
  hostRequirements:
    amounts: [{name: amount.custom.licence, min: 1}]
  script: {actions: {onRun: {command: "true"}}}
"""


async def test_host_requirements_the_host_cannot_meet_fail_the_task(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_template(HOSTS, max_retries_per_task=3)
        result = await farm.jobs.wait(job.id, timeout=60)
        assert result.status is JobStatus.FAILED
        by_step = {t.step: t for t in await farm.jobs.tasks(job.id)}
        assert by_step["Anywhere"].status is JobStatus.SUCCEEDED
        assert "amount.worker.gpu" in (by_step["NeedsGpu"].reason or "")
        assert "attr.worker.os.family" in (by_step["WindowsOnly"].reason or "")
        assert "amount.custom.licence" in (by_step["Licensed"].reason or "")
        assert by_step["NeedsGpu"].attempts == 1  # not retried: this host will not change

        ignored = template_spec(HOSTS, options={"openjd_ignore_host_requirements": True})
        (job,) = await farm.jobs.submit([ignored])
        assert (await farm.jobs.wait(job.id, timeout=60)).status is JobStatus.SUCCEEDED


async def test_progress_status_and_fail_messages_reach_tasks(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_template(MESSAGES)
        result = await farm.jobs.wait(job.id, timeout=60)
        assert result.status is JobStatus.FAILED
        tasks = {t.parameters["Frame"]: t for t in await farm.jobs.tasks(job.id)}
        assert tasks[1].progress == 80.5 and tasks[1].status_message == "writing frame 1"
        assert tasks[2].reason == "licence server unreachable for frame 2"
        assert tasks[3].status is JobStatus.SUCCEEDED  # the failure canceled nothing
