"""What a worker's session reports and runs, through the fake's executing worker:
``openjd_progress`` / ``openjd_status`` / ``openjd_fail`` reach ``Task.progress``,
``Task.status_message`` and the failure reason (BatchGetSessionAction), and job
environments (the template's own and environment templates given at submission) are
entered in order before the task and exited after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

import aiofarm
from aiofarm import JobStatus
from aiofarm.models import Task
from tests.fakes.deadline.process import FakeDeadlineProcess

pytestmark = pytest.mark.anyio

# frame 1 reports half way and waits for the test; frame 2 fails saying why
RUN = """
if [ "$1" = 2 ]; then echo 'openjd_fail: no licence for frame 2'; exit 3; fi
echo 'openjd_progress: 50'
echo "openjd_status: rendering frame $1"
while [ ! -e "$2" ]; do sleep 0.05; done
echo 'openjd_progress: 100'
echo "openjd_status: frame $1 written"
"""


def _template(gate: Path) -> dict[str, Any]:
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "progress",
        "steps": [
            {
                "name": "Render",
                "parameterSpace": {
                    "taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": "1-2"}]
                },
                "script": {
                    "actions": {
                        "onRun": {
                            "command": "/bin/sh",
                            "args": ["-c", RUN, "sh", "{{Task.Param.Frame}}", str(gate)],
                        }
                    }
                },
            }
        ],
    }


def _frame(tasks: list[Task], frame: int) -> Task:
    return next(t for t in tasks if t.parameters["Frame"] == frame)


async def test_progress_status_and_fail_messages_reach_tasks(
    fake: FakeDeadlineProcess, url: str, tmp_path: Path
) -> None:
    fake.admin("config", {"execute": True})
    gate = tmp_path / "go"
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.submit_template(_template(gate), max_retries_per_task=0)
        fake.auto(0.05)
        try:
            with anyio.fail_after(60):
                while True:  # the worker's report reaches the service while it runs
                    tasks = await farm.jobs.tasks(job.id)
                    one = _frame(tasks, 1)
                    if one.status is JobStatus.RUNNING and one.progress == 50.0:
                        break
                    await anyio.sleep(0.1)
            assert one.status_message == "rendering frame 1"
            gate.touch()
            result = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
        finally:
            fake.auto(None)
        assert result.status is JobStatus.FAILED
        tasks = await farm.jobs.tasks(job.id)
        done, failed = _frame(tasks, 1), _frame(tasks, 2)
        assert (done.status, done.progress, done.status_message) == (
            JobStatus.SUCCEEDED, 100.0, "frame 1 written",
        )  # fmt: skip
        assert failed.status is JobStatus.FAILED and failed.exit_code == 3
        assert failed.reason == "no licence for frame 2 (exit code 3)"
        assert failed.status_message == "no licence for frame 2"
        assert [t.id for t in result.failed_tasks] == [failed.id]
        # one ListSteps, one ListTasks and ONE BatchGetSessionAction for both tasks
        fake.admin("stats/reset", {})
        await farm.jobs.tasks(job.id)
        assert fake.stats() == {"ListSteps": 1, "ListTasks": 1, "BatchGetSessionAction": 1}


def _env(name: str, enter: str, exit_: str, **extra: Any) -> dict[str, Any]:
    env = {
        "name": name,
        "script": {
            "actions": {
                "onEnter": {"command": "/bin/sh", "args": ["-c", enter]},
                "onExit": {"command": "/bin/sh", "args": ["-c", exit_]},
            }
        },
    }
    return {**env, **extra}


async def test_job_environments_and_environment_templates_run_in_order(
    fake: FakeDeadlineProcess, url: str, tmp_path: Path
) -> None:
    fake.admin("config", {"execute": True})
    trace = tmp_path / "trace.txt"
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "environments",
        "parameterDefinitions": [{"name": "Trace", "type": "STRING"}],
        "jobEnvironments": [
            _env(
                "Venv",
                'echo "enter venv $TOOL" >> {{Param.Trace}}; echo "openjd_env: VENV=/opt/venv"',
                'echo "exit venv" >> {{Param.Trace}}',
            )
        ],
        "steps": [
            {
                "name": "Work",
                "script": {
                    "actions": {
                        "onRun": {
                            "command": "/bin/sh",
                            "args": ["-c", 'echo "task $TOOL $VENV $QUEUE_ROOT" >> {{Param.Trace}}'],
                        }
                    }
                },
            }
        ],
    }
    # an environment template with a parameter of its own, as a queue environment has
    queue_env = {
        "specificationVersion": "environment-2023-09",
        "parameterDefinitions": [
            {"name": "Root", "type": "STRING", "default": "/mnt/q"},
            {"name": "Trace", "type": "STRING"},
        ],
        "environment": _env(
            "Queue",
            'echo "enter queue" >> {{Param.Trace}}; echo \'openjd_env: "QUEUE_ROOT={{Param.Root}}"\'',
            'echo "exit queue" >> {{Param.Trace}}',
            variables={"TOOL": "blender-4"},
        ),
    }
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.submit_template(
            template, parameters={"Trace": str(trace)}, environments=[queue_env]
        )
        fake.auto(0.05)
        try:
            result = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
        finally:
            fake.auto(None)
        assert result.status is JobStatus.SUCCEEDED, await farm.logs.read(job.id)
    assert trace.read_text().splitlines() == [
        "enter queue",
        "enter venv blender-4",
        "task blender-4 /opt/venv /mnt/q",
        "exit venv",
        "exit queue",
    ]


async def test_environment_templates_are_checked(fake: FakeDeadlineProcess, url: str) -> None:
    from aiofarm.errors import InvalidSpec

    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "n",
        "steps": [{"name": "s", "script": {"actions": {"onRun": {"command": "true"}}}}],
    }
    bad = {"specificationVersion": "environment-2023-09", "environment": {"name": "x"}}
    async with aiofarm.Client(url) as farm:
        with pytest.raises(InvalidSpec) as err:
            await farm.jobs.submit_template(template, environments=[bad])
        assert "environments[0]" in err.value.field
        assert fake.stats().get("CreateJob", 0) == 0
