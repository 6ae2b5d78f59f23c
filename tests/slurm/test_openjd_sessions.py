"""Open Job Description on the real clusters: sessions spanning tasks (environments
entered once per session, not per task), host requirements as Slurm resources and
constraints, and session directories removed when their session ends."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

from aiofarm import Client, InvalidSpec, JobStatus, UnsupportedError
from aiofarm.drivers.slurm import SlurmDriver
from aiofarm.drivers.slurm.script import SESSION_INPUTS
from aiofarm.openjd.loading import template_spec
from tests.slurm.templates import session_template

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


def _session_template(marker: str, n: int, fail: int | None = None) -> dict[str, Any]:
    # the environment counts its entries and exits in the marker file; each task
    # records its frame there and sees the environment's variable
    run = f"echo task {{{{Task.Param.F}}}} $ENTERED >> {marker}; pwd > {marker}.{{{{Task.Param.F}}}}"
    if fail is not None:
        run += f"; [ {{{{Task.Param.F}}}} -ne {fail} ]"
    return session_template(marker, n, run)


def _read(path: str) -> str:
    return Path(path).read_text()


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def _removed_with_inputs_kept(dirs: set[str]) -> bool:
    return all(not os.path.exists(d) and os.path.isdir(d + SESSION_INPUTS) for d in dirs)


async def test_a_session_enters_its_environments_once_for_many_tasks(farm: Client) -> None:
    marker = f"/tmp/aiofarm-session-{uuid.uuid4().hex}"
    # two worker slots: two sessions of three consecutive tasks each
    (job,) = await farm.jobs.submit([template_spec(_session_template(marker, 6, fail=4), max_workers=2)])
    result = await farm.jobs.wait(job.id, timeout=120, max_interval=0.5)
    lines = _read(marker).splitlines()
    # two sessions of three tasks: two entries and two exits, not six
    assert lines.count("enter") == 2 and lines.count("exit") == 2, lines
    assert sorted(line for line in lines if line.startswith("task")) == [f"task {i} yes" for i in range(1, 7)]
    # the failed task fails the job, and only it is listed; its session went on
    assert result.status is JobStatus.FAILED
    assert [(t.id, t.exit_code) for t in result.failed_tasks] == [("3", 1)]
    tasks = await farm.jobs.tasks(job.id)
    assert [t.id for t in tasks] == [str(i) for i in range(6)]
    assert [t.parameters.get("F") for t in tasks] == list(range(1, 7))
    assert [t.status for t in tasks] == [JobStatus.SUCCEEDED] * 3 + [JobStatus.FAILED] + [JobStatus.SUCCEEDED] * 2
    # a task's log: the lines the runner marked as its own in its session's output
    own = (await farm.logs.read(job.id, task="3")).splitlines()
    assert own[0].startswith("openjd: task 3: sh -c") and own[-1] == "openjd: task 3: exit code 1", own
    assert not any("environment" in line or "task 2:" in line for line in own), own
    # the whole job's lines carry the task they came from
    async with farm.logs.stream(job.id) as lines:
        tagged = {line.text: line.task_id async for line in lines}
    assert tagged["openjd: task 4: exit code 0"] == "4" and tagged["openjd: task 3: exit code 1"] == "3"
    # each session ran in a directory of its own, removed when the session ended;
    # what the client wrote for it at submit time stays (a retry starts from it)
    dirs = {_read(marker + f".{i}").strip() for i in range(1, 7)}
    assert len(dirs) == 2
    assert _removed_with_inputs_kept(dirs)


async def test_retry_reruns_only_the_failed_task_of_a_session(farm: Client) -> None:
    marker = f"/tmp/aiofarm-session-retry-{uuid.uuid4().hex}"
    # each task appends its frame to <marker>.tasks; frame 3 fails while <marker>.fail exists
    template = session_template(
        marker, 6, f"echo {{{{Task.Param.F}}}} >> {marker}.tasks; [ {{{{Task.Param.F}}}} -ne 3 ] || [ ! -e {marker}.fail ]"
    )
    _write(marker + ".fail", "")
    # two sessions of three frames: frame 3 is the last of the first
    (job,) = await farm.jobs.submit([template_spec(template, max_workers=2)])
    result = await farm.jobs.wait(job.id, timeout=120, max_interval=0.5)
    assert result.status is JobStatus.FAILED
    assert [(t.id, t.parameters.get("F")) for t in result.failed_tasks] == [("2", 3)]
    # counted per task, as tasks() lists them, not per session
    assert result.job.task_counts == {"succeeded": 5, "failed": 1}
    assert (await farm.jobs.get(job.id)).task_counts == {"succeeded": 5, "failed": 1}
    async with farm.jobs.list(name="sessions") as it:
        assert [j.task_counts async for j in it if j.id == job.id] == [{"succeeded": 5, "failed": 1}]
    tasks = await farm.jobs.tasks(job.id)
    assert len(tasks) == 6 and [t.status for t in tasks].count(JobStatus.FAILED) == 1

    os.unlink(marker + ".fail")
    await farm.jobs.retry(job.id)
    again = await farm.jobs.wait(job.id, timeout=180, max_interval=0.5)
    assert again.status is JobStatus.SUCCEEDED, again.job.reason
    assert again.job.task_counts == {"succeeded": 6}
    tasks = await farm.jobs.tasks(job.id)
    assert [t.status for t in tasks] == [JobStatus.SUCCEEDED] * 6
    assert [t.attempts for t in tasks] == [1, 1, 2, 1, 1, 1]
    # only frame 3 ran again, in its session's rerun, with the environment entered
    # and exited around it (three entries: two sessions and one rerun)
    ran = _read(marker + ".tasks").split()
    assert sorted(ran[:6]) == ["1", "2", "3", "4", "5", "6"] and ran[6:] == ["3"], ran
    lines = _read(marker).splitlines()
    assert lines.count("enter") == 3 and lines.count("exit") == 3, lines
    # the task's log holds both its runs (the session's output is appended to on a
    # rerun), and its session's rerun says what it skipped
    log = await farm.logs.read(job.id, task="2")
    assert "task 2: exit code 1" in log and "task 2: exit code 0" in log, log
    assert "openjd: tasks 0, 1 succeeded in an earlier run: not run again" in await farm.logs.read(job.id)


async def test_host_requirements_become_resources_and_constraints(farm: Client) -> None:
    def template(attributes: list[dict[str, Any]], amounts: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "specificationVersion": "jobtemplate-2023-09",
            "name": "req",
            "steps": [{
                "name": "S",
                "hostRequirements": {k: v for k, v in (("amounts", amounts), ("attributes", attributes)) if v},
                "script": {"actions": {"onRun": {"command": "sh", "args": ["-c", "echo cpus $SLURM_JOB_CPUS_PER_NODE"]}}},
            }],
        }

    met = template(
        [{"name": "attr.worker.os.family", "anyOf": ["linux"]}, {"name": "attr.custom.site", "anyOf": ["fx", "lab"]}],
        [{"name": "amount.worker.vcpu", "min": 2}, {"name": "amount.worker.memory", "min": 64}],
    )
    job = await farm.jobs.submit_template(met)
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    assert result.status is JobStatus.SUCCEEDED, result.job.reason
    assert "cpus 2" in await farm.logs.read(job.id)
    driver = farm.driver
    assert isinstance(driver, SlurmDriver)
    (rec,) = driver.store.lookup(job.id) or []
    assert "(fx|lab)" in str(rec.raw.get("features"))
    # a feature no node has: Slurm refuses the job at submit, naming it
    with pytest.raises(InvalidSpec, match="hostRequirements"):
        await farm.jobs.submit_template(template([{"name": "attr.custom.site", "anyOf": ["nowhere"]}], []))
    # what Slurm cannot ask for: refused before anything is submitted
    with pytest.raises(UnsupportedError) as info:
        await farm.jobs.submit_template(template([], [{"name": "amount.worker.gpu.memory", "min": 1}]))
    assert (info.value.driver, info.value.feature) == ("slurm", "hostRequirements.amount.worker.gpu.memory")
