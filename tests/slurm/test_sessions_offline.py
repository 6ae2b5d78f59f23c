"""OpenJD on Slurm without a cluster (not marked slurm): host requirements as job
properties of every API version, the batch script's session directory, made
fresh from the submit-time inputs and removed when the session ends, and a session
run again (retry) running only the tasks that did not succeed, and a session task's
log: the lines its session's output marks as its own."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from aiofarm import JobSpec, JobStatus, LogLine, Task, UnsupportedError
from aiofarm.drivers.base import LogQuery
from aiofarm.drivers.slurm import script
from aiofarm.drivers.slurm.logs import read_log
from aiofarm.drivers.slurm.mapping import tasks_from_records
from aiofarm.drivers.slurm.records import Rec
from aiofarm.drivers.slurm.requirements import step_requirements
from aiofarm.drivers.slurm.sessions import Entry, expand, read_results, results_paths, task_counts
from aiofarm.drivers.slurm.submit import _plan
from aiofarm.drivers.slurm.wire import for_version
from tests.slurm.templates import session_template


def _spec(requirements: dict[str, Any], **options: Any) -> JobSpec:
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "req",
        "steps": [{
            "name": "S",
            "hostRequirements": requirements,
            "script": {"actions": {"onRun": {"command": "true"}}},
        }],
    }
    return JobSpec(template=template, options=options)


def test_amounts_and_attributes_become_resources_and_constraints() -> None:
    spec = _spec({
        "amounts": [
            {"name": "amount.worker.vcpu", "min": 3},
            {"name": "amount.worker.memory", "min": 1500},
            {"name": "amount.worker.gpu", "min": 1},
            {"name": "amount.worker.disk.scratch", "min": 2},
        ],
        "attributes": [
            {"name": "attr.worker.os.family", "anyOf": ["linux"]},
            {"name": "attr.worker.cpu.arch", "anyOf": ["x86_64", "arm64"]},
            {"name": "attr.custom.site", "allOf": ["fx", "lab"]},
        ],
    })
    reqs = step_requirements(spec, "S")
    assert reqs == {
        "cpus_per_task": 3, "memory_per_node": 1500, "gpus": 1, "tmp_disk_mb": 2048,
        "constraints": "linux&(x86_64|arm64)&fx&lab",
    }
    desc = script.job_description(
        JobSpec(command=["true"], options={"constraints": "big"}), array_size=None, env={}, log_dir="/l",
        dependency_ids=[], default_partition=None, default_name="n", requirements=reqs,
    )
    assert desc["constraints"] == "(big)&(linux&(x86_64|arm64)&fx&lab)"
    old = for_version("v0.0.38").submit_body(desc, "#!/bin/sh\n")["job"]
    assert old["gpus"] == "1" and old["minimum_tmp_disk_per_node"] == 2048 and old["cpus_per_task"] == 3
    for version in ("v0.0.40", "v0.0.42", "v0.0.45"):
        new = for_version(version).submit_body(desc, "#!/bin/sh\n")["job"]
        assert new["tres_per_job"] == "gres/gpu:1" and new["temporary_disk_per_node"] == 2048
        assert new["memory_per_node"] == 1500 and "gpus" not in new and "tmp_disk_mb" not in new


@pytest.mark.parametrize(
    ("requirement", "feature"),
    [
        ({"amounts": [{"name": "amount.worker.gpu.memory", "min": 1024}]}, "hostRequirements.amount.worker.gpu.memory"),
        ({"amounts": [{"name": "amount.custom.licence", "min": 1}]}, "hostRequirements.amount.custom.licence"),
        ({"amounts": [{"name": "amount.worker.vcpu", "min": 1, "max": 4}]}, "hostRequirements.amount.worker.vcpu.max"),
    ],
)
def test_what_slurm_cannot_ask_for_is_refused(requirement: dict[str, Any], feature: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        step_requirements(_spec(requirement), "S")
    assert (info.value.driver, info.value.feature) == ("slurm", feature)
    # unless the submitter says to ignore them, as on the local farm
    assert step_requirements(_spec(requirement, openjd_ignore_host_requirements=True), "S") == {}


def test_session_directory_is_made_fresh_and_removed_at_the_end(tmp_path: Path) -> None:
    session = tmp_path / "0-0"
    inputs = Path(str(session) + script.SESSION_INPUTS)
    inputs.mkdir()
    (inputs / "data.txt").write_text("from submit")
    text = script.batch_script([(["sh", "-c", "cat data.txt; echo more > made.txt; exit 3"], str(session), {}, str(session))])
    for _ in range(2):  # a rerun (retry) gets a fresh directory too
        out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert (out.returncode, out.stdout) == (3, "from submit")
        assert not session.exists() and sorted(p.name for p in inputs.iterdir()) == ["data.txt"]


def _session_spec(marker: Path, frames: int) -> JobSpec:
    # each task appends its frame to <marker>.tasks and fails while <marker>.fail<F> exists
    run = f"echo {{{{Task.Param.F}}}} >> {marker}.tasks; [ ! -e {marker}.fail{{{{Task.Param.F}}}} ]"
    return JobSpec(template=session_template(str(marker), frames, run), max_workers=1)


def _tasks_as(state: str, step: Any) -> list[Entry]:
    """The step's tasks as the driver reports them with its one session in ``state``."""
    rec = Rec(job_id=7, array_job_id=7, array_task_id=None, state=state)
    elements: list[Entry] = [(t, None, rec) for t in tasks_from_records("7", [rec], "S")]
    results = read_results(results_paths(step.sessions))
    expanded = expand(elements, step.sessions, results, step.parameters)
    assert expanded is not None
    return expanded


def _statuses(entries: list[Entry]) -> list[JobStatus]:
    return [t.status for t, _, _ in entries]


def test_a_rerun_session_runs_only_the_tasks_that_did_not_succeed(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    (step,) = _plan(_session_spec(marker, 4), str(tmp_path / "logs"))
    text = script.batch_script(step.runs)
    env = {"PATH": "/usr/bin:/bin", "SLURM_ARRAY_TASK_ID": "0"}

    def run_session() -> int:
        return subprocess.run(["sh", "-c", text], capture_output=True, env=env).returncode

    Path(f"{marker}.fail3").touch()
    assert run_session() != 0
    tasks = _tasks_as("FAILED", step)
    assert _statuses(tasks) == [JobStatus.SUCCEEDED] * 2 + [JobStatus.FAILED, JobStatus.SUCCEEDED]
    # counted per task, not per session
    assert task_counts(tasks) == {"succeeded": 3, "failed": 1}
    # retried (requeued): until it runs again, the failed task is pending, the others keep their result
    assert _statuses(_tasks_as("PENDING", step)) == [JobStatus.SUCCEEDED] * 2 + [JobStatus.PENDING, JobStatus.SUCCEEDED]
    Path(f"{marker}.fail3").unlink()
    for _ in range(2):  # the second rerun has nothing left to run
        assert run_session() == 0
        assert _statuses(_tasks_as("COMPLETED", step)) == [JobStatus.SUCCEEDED] * 4
    # each task's attempts: the runs that started it
    assert [t.attempts for t, _, _ in _tasks_as("COMPLETED", step)] == [1, 1, 2, 1]
    # only frame 3 ran again; the environment was entered and exited around each run
    assert Path(f"{marker}.tasks").read_text().split() == ["1", "2", "3", "4", "3"]
    assert Path(marker).read_text().split() == ["enter", "exit"] * 3


def test_a_session_steps_output_is_appended_to_on_a_rerun() -> None:
    desc = script.job_description(
        JobSpec(command=["true"]), array_size=2, env={}, log_dir="/l", dependency_ids=[],
        default_partition=None, default_name="n", append_output=True,
    )
    assert for_version("v0.0.38").submit_body(desc, "#!/bin/sh\n")["job"]["open_mode"] == "append"
    for version in ("v0.0.40", "v0.0.42", "v0.0.45"):
        assert for_version(version).submit_body(desc, "#!/bin/sh\n")["job"]["open_mode"] == ["APPEND"]
    plain = script.job_description(
        JobSpec(command=["true"]), array_size=2, env={}, log_dir="/l", dependency_ids=[],
        default_partition=None, default_name="n",
    )
    assert "open_mode" not in for_version("v0.0.45").submit_body(plain, "#!/bin/sh\n")["job"]


_SESSION_OUTPUT = """openjd: enter environment 'Env': sh -c enter
entered
openjd: task 0: sh -c a
a1
a2
openjd: task 0: exit code 0
openjd: task 1: sh -c b
b1
openjd: task 1: timed out after 1s
openjd: task 1: exit code 1
openjd: exit environment 'Env': sh -c exit
"""


async def _read_all(entries: list[Entry], query: LogQuery) -> list[LogLine]:
    async def refreshed() -> dict[str, Task]:
        return {t.id: t for t, _, _ in entries}

    got: list[LogLine] = []
    token = None
    while True:
        page = await read_log("7", token, query, entries, True, refreshed, {"0", "1"})
        if not page.lines:
            return got
        got += page.lines
        token = page.next_token


@pytest.mark.anyio
async def test_a_session_tasks_log_is_the_lines_its_session_marked_as_its_own(tmp_path: Path) -> None:
    out = tmp_path / "slurm-7_0.out"
    out.write_text(_SESSION_OUTPUT)
    rec = Rec(job_id=8, array_job_id=7, array_task_id=0, state="COMPLETED", stdout=str(out))
    entries: list[Entry] = [
        (Task(id="0", job_id="7", status=JobStatus.SUCCEEDED), 0, rec),
        (Task(id="1", job_id="7", status=JobStatus.FAILED), 0, rec),
    ]
    text = _SESSION_OUTPUT.splitlines()
    for limit in (1000, 1):  # in one page, and a line a page (the token keeps its place)
        one = await _read_all(entries, LogQuery(task="1", limit=limit))
        assert [(line.text, line.task_id) for line in one] == [(t, "1") for t in text[6:10]]
        assert [line.text for line in await _read_all(entries, LogQuery(task="0", limit=limit))] == text[2:6]
        # the whole session's output, each line tagged with its task (the
        # environments' with the session's first)
        whole = await _read_all(entries[:1], LogQuery(limit=limit))
        assert [line.text for line in whole] == text
        assert [line.task_id for line in whole] == ["0"] * 6 + ["1"] * 4 + ["0"]
