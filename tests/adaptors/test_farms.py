"""The example adaptor in real jobs: an OpenJD job on the local farm (daemon start in
the job environment's onEnter, daemon run per task, daemon stop in onExit), the same job
through the Deadline Cloud fake's executing workers (a session per task there), and a
command job there in the one-shot ``run`` form."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

import aiofarm
from aiofarm import JobStatus

from .helpers import ROOT, processes_with

pytestmark = pytest.mark.anyio

PKG = "examples.adaptors.repl_adaptor"


def adaptor_template(frames: str) -> dict[str, Any]:
    conn = "{{Session.WorkingDirectory}}/connection.json"
    py = sys.executable
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "repl adaptor",
        "jobEnvironments": [
            {
                "name": "ReplAdaptor",
                "variables": {"PYTHONPATH": str(ROOT)},
                "script": {
                    "actions": {
                        "onEnter": {
                            "command": py,
                            "args": ["-m", PKG, "daemon", "start", "--connection-file", conn],
                            "cancelation": {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 30},
                        },
                        "onExit": {
                            "command": py,
                            "args": ["-m", PKG, "daemon", "stop", "--connection-file", conn],
                        },
                    }
                },
            }
        ],
        "steps": [
            {
                "name": "render",
                "parameterSpace": {"taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": frames}]},
                "script": {
                    "actions": {
                        "onRun": {
                            "command": py,
                            "args": [
                                "-m", PKG, "daemon", "run", "--connection-file", conn,
                                "--run-data", '{"frame": {{Task.Param.Frame}}, "steps": 4}',
                            ],
                            "cancelation": {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 30},
                        }
                    }
                },
            }
        ],
    }


async def test_adaptor_job_on_the_local_farm(tmp_path: Path) -> None:
    async with aiofarm.Client(f"local://{tmp_path / 'farm'}") as farm:
        job = await farm.jobs.submit_template(adaptor_template("1-3"))
        result = await farm.jobs.wait(job.id, timeout=120)
        text = await farm.logs.read(job.id)
    assert result.status == JobStatus.SUCCEEDED, text[-3000:]
    for frame in (1, 2, 3):
        assert f"openjd_status: frame {frame} done" in text
    assert "openjd_progress: 100.0" in text
    assert "OPENJD_ADAPTOR_SOCKET=" in text
    assert not [p for p in processes_with("repl_app.py") if str(tmp_path) in " ".join(p.cmdline())]


@pytest.mark.deadline
async def test_adaptor_through_the_deadline_fake_worker(tmp_path: Path) -> None:
    from tests.backends.deadline import open_client

    run_data = json.dumps({"frame": 5, "steps": 2})
    async with open_client() as farm:
        job = await farm.jobs.start(
            command=[sys.executable, "-m", PKG, "run", "--run-data", run_data],
            env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
        )
        result = await farm.jobs.wait(job.id, timeout=120)
        text = await farm.logs.read(job.id)
        failing = await farm.jobs.start(
            command=[sys.executable, "-m", PKG, "run", "--run-data", '{"fail": "no license"}'],
            env={"PYTHONPATH": str(ROOT), "HOME": str(tmp_path)},
            retries=0,
        )
        failed = await farm.jobs.wait(failing.id, timeout=120)
        fail_text = await farm.logs.read(failing.id)
    assert result.status == JobStatus.SUCCEEDED, text[-3000:]
    assert "openjd_status: frame 5 done" in text
    assert failed.status == JobStatus.FAILED
    assert "openjd_fail: Error encountered while running adaptor: no license" in fail_text


@pytest.mark.deadline
async def test_adaptor_daemon_mode_through_the_deadline_fake_worker(tmp_path: Path) -> None:
    # The fake's executing worker runs a session per task: the job environment's onEnter
    # (daemon start, whose openjd_env line sets OPENJD_ADAPTOR_SOCKET), the task (daemon
    # run), the onExit (daemon stop), in one session directory, as a Deadline worker does.
    from tests.backends.deadline import open_client

    async with open_client() as farm:
        job = await farm.jobs.submit_template(adaptor_template("1-2"))
        result = await farm.jobs.wait(job.id, timeout=180)
        text = await farm.logs.read(job.id)
        tasks = await farm.jobs.tasks(job.id)
    assert result.status == JobStatus.SUCCEEDED, text[-3000:]
    assert text.count("INFO: Connected successfully") == 2  # a daemon per session
    for frame in (1, 2):
        assert f"openjd_status: frame {frame} done" in text
    assert {t.status_message for t in tasks} == {"frame 1 done", "frame 2 done"}
    # each daemon (its connection file in its session directory) is gone with its session
    assert not [p for p in processes_with("fake-deadline-session-") if "_serve" in p.cmdline()]
