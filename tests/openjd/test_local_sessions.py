"""OpenJD session semantics on the local farm: the session directory's lifetime, the
failure defaults of a frame range, host requirements, action messages in tasks()."""

from __future__ import annotations

import itertools
from pathlib import Path

import anyio
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
        assert tasks[3].status_message == "said on stderr"  # either stream, as the spec says


def _any_exists(paths: set[str]) -> bool:
    return any(Path(p).exists() for p in paths)


def _count(path: Path, word: str) -> int:
    return path.read_text().split().count(word) if path.exists() else 0


async def _entered(log: Path, sessions: int) -> None:
    with anyio.fail_after(60):
        for _ in itertools.count():
            if _count(log, "enter") >= sessions:
                return
            await anyio.sleep(0.05)


HEAVY_ENV = """\
specificationVersion: jobtemplate-2023-09
name: Heavy environment
parameterDefinitions:
- {name: OutDir, type: PATH}
- {name: Frames, type: STRING, default: "1-30"}
jobEnvironments:
- name: Warm
  script:
    actions:
      onEnter:
        command: /bin/sh
        args: ["-c", "echo enter >> '{{Param.OutDir}}/env.log'; echo 'openjd_env: WARM_CACHE={{Session.WorkingDirectory}}'"]
      onExit:
        command: /bin/sh
        args: ["-c", "echo exit >> '{{Param.OutDir}}/env.log'"]
steps:
- name: Frames
  parameterSpace:
    taskParameterDefinitions:
    - {name: Frame, type: INT, range: "{{Param.Frames}}"}
  script:
    actions:
      onRun:
        command: /bin/sh
        args: ["-c", "echo frame {{Task.Param.Frame}} in $WARM_CACHE; echo $WARM_CACHE >> '{{Param.OutDir}}/dirs.log'"]
"""


async def test_a_slot_runs_many_tasks_in_one_session(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    async with Client("local://" + str(tmp_path / "farm"), slots=2) as farm:
        job = await farm.jobs.submit_template(HEAVY_ENV, parameters={"OutDir": str(out)})
        result = await farm.jobs.wait(job.id, timeout=120)
        assert result.status is JobStatus.SUCCEEDED, await farm.logs.read(job.id)
        log = (out / "env.log").read_text().split()
        assert 1 <= log.count("enter") <= 2 and log.count("enter") == log.count("exit")
        dirs = set((out / "dirs.log").read_text().split())
        assert len(dirs) == log.count("enter")  # every task ran inside one of the sessions
        assert not _any_exists(dirs)  # each deleted when its session ended
        tasks = await farm.jobs.tasks(job.id)
        for task in tasks[:5]:  # each task's log holds its own output
            text = await farm.logs.read(job.id, task=task.id)
            frame = task.parameters["Frame"]
            assert f"frame {frame} in" in text
            assert all(f"frame {n} in" not in text for n in range(1, 31) if n != frame)

        per_task = template_spec(
            HEAVY_ENV, {"OutDir": str(out), "Frames": "1-6"}, options={"openjd_session_per_task": True}
        )
        (job,) = await farm.jobs.submit([per_task])
        assert (await farm.jobs.wait(job.id, timeout=120)).status is JobStatus.SUCCEEDED
        assert (out / "env.log").read_text().split().count("enter") == log.count("enter") + 6


async def test_canceling_a_job_ends_its_sessions(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    slow = HEAVY_ENV.replace("echo frame {{Task.Param.Frame}}", "sleep 30; echo frame {{Task.Param.Frame}}")
    async with Client("local://" + str(tmp_path / "farm"), slots=2) as farm:
        job = await farm.jobs.submit_template(slow, parameters={"OutDir": str(out), "Frames": "1-4"})
        await _entered(out / "env.log", 2)  # both sessions are in their first task
        await farm.jobs.cancel(job.id)
        result = await farm.jobs.wait(job.id, timeout=60)
        assert result.status is JobStatus.CANCELED
        assert (await farm.pools.capacity()) == {"default": 2}  # the slots are free again


async def test_a_job_between_two_of_its_tasks_stays_running(tmp_path: Path) -> None:
    # A PENDING/RUNNING pair per task made every pushed event carry a history as long as
    # the job (quadratic: 2,000 frames ran at a third of the raw spawn rate).
    async with Client("local://" + str(tmp_path / "farm"), slots=1) as farm:
        job = await farm.jobs.submit_template(FRAMES, parameters={"Frames": "1-30"})
        assert (await farm.jobs.wait(job.id, timeout=60)).status is JobStatus.SUCCEEDED
        history = (await farm.jobs.get(job.id, history=True)).history
        assert [h.status for h in history] == [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED]


GATED = FRAMES.replace(
    "esac\"]", "esac; if [ {{Task.Param.Frame}} = 1 ]; then while [ ! -e '{{Param.Bad}}' ]; do sleep 0.02; done; fi\"]"
)


async def test_a_job_that_loses_its_slot_between_tasks_is_pending(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with Client("local://" + str(tmp_path / "farm"), slots=1) as farm:
        low = await farm.jobs.submit_template(GATED, parameters={"Frames": "1-2", "Bad": str(gate)}, priority=10)
        async with farm.jobs.watch([low.id]) as events:
            with anyio.fail_after(60):
                async for event in events:
                    if event.status is JobStatus.RUNNING:
                        break
        high = await farm.jobs.start(command=["true"], priority=90)  # waits for the slot
        gate.write_text("")
        assert (await farm.jobs.wait(low.id, timeout=60)).status is JobStatus.SUCCEEDED
        assert (await farm.jobs.wait(high.id, timeout=60)).status is JobStatus.SUCCEEDED
        history = [h.status for h in (await farm.jobs.get(low.id, history=True)).history]
        assert history == [
            JobStatus.PENDING, JobStatus.RUNNING, JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED
        ]
