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

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


def _session_template(marker: str, n: int, fail: int | None = None) -> dict[str, Any]:
    # the environment counts its entries and exits in the marker file; each task
    # records its frame there and sees the environment's variable
    run = f"echo task {{{{Task.Param.F}}}} $ENTERED >> {marker}; pwd > {marker}.{{{{Task.Param.F}}}}"
    if fail is not None:
        run += f"; [ {{{{Task.Param.F}}}} -ne {fail} ]"
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "sessions",
        "jobEnvironments": [{
            "name": "Env",
            "script": {"actions": {
                "onEnter": {"command": "sh", "args": ["-c", f"echo enter >> {marker}; echo 'openjd_env: ENTERED=yes'"]},
                "onExit": {"command": "sh", "args": ["-c", f"echo exit >> {marker}"]},
            }},
        }],
        "steps": [{
            "name": "S",
            "parameterSpace": {"taskParameterDefinitions": [{"name": "F", "type": "INT", "range": f"1-{n}"}]},
            "script": {"actions": {"onRun": {"command": "sh", "args": ["-c", run]}}},
        }],
    }


def _read(path: str) -> str:
    return Path(path).read_text()


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
    # a task's log is its session's output, where the runner marks each task
    assert "task 3" in await farm.logs.read(job.id, task="3")
    # each session ran in a directory of its own, removed when the session ended;
    # what the client wrote for it at submit time stays (a retry starts from it)
    dirs = {_read(marker + f".{i}").strip() for i in range(1, 7)}
    assert len(dirs) == 2
    assert _removed_with_inputs_kept(dirs)


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
