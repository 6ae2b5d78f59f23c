"""``aiofarm bundle submit`` / ``aiofarm template submit`` / ``aiofarm tasks`` run as
the real command, a child process, against a local farm."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ..cli.conftest import Farm
from .samples import FRAMES, MESSAGES, QUEUE_ENV, write_bundle

pytestmark = pytest.mark.anyio


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    return Farm(f"local://{tmp_path / 'state'}", tmp_path)


async def test_submit_prints_the_id_and_json(farm: Farm, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "frames", FRAMES, {"Frames": "1-3", "deadline:priority": 70})
    done = await farm("bundle", "submit", str(bundle), "-p", "Frames=1-5", "--name", "five frames")
    assert done.code == 0, done
    job_id = done.stdout.strip()
    shown = await farm("status", job_id, "--json")
    job = shown.json()
    assert job["name"] == "five frames" and job["priority"] == 70

    as_json = await farm(
        "bundle", "submit", str(bundle), "--json", "--priority", "10", "--submit-as-suspended",
        "--max-worker-count", "1",
    )
    assert as_json.code == 0, as_json
    job = as_json.json()
    assert job["priority"] == 10 and job["status"] == "suspended" and sum(job["task_counts"].values()) == 3


async def test_wait_exit_codes_and_failed_tasks(farm: Farm, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "frames", FRAMES)
    ok = await farm("bundle", "submit", str(bundle), "-p", "Frames=1-4", "--wait")
    assert ok.code == 0, ok
    assert "succeeded" in ok.stderr

    params = tmp_path / "params.yaml"
    params.write_text("Frames: '5'\nBad: ',5,'\n")
    failed = await farm("bundle", "submit", str(bundle), "--parameters-file", str(params), "--wait", "--json")
    assert failed.code == 1, failed
    job = failed.json()
    assert job["status"] == "failed"
    assert [t["parameters"]["Frame"] for t in job["failed_tasks"]] == [5]
    assert "1 failed task(s)" in failed.stderr and f"aiofarm retry {job['id']}" in failed.stderr
    again = await farm("retry", job["id"])
    assert again.code == 0 and again.stdout.strip() == f"retrying {job['id']}"
    waited = await farm("wait", job["id"])
    assert waited.code == 1  # frame 5 fails again
    tasks = (await farm("tasks", job["id"], "--json")).json()
    assert [t["attempts"] for t in tasks] == [2]
    unknown = await farm("retry", "j999")
    assert unknown.code == 2


async def test_template_submit_with_an_environment(farm: Farm, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env_file = tmp_path / "queue-env.yaml"
    env_file.write_text(QUEUE_ENV)
    template = tmp_path / "job.yaml"
    template.write_text(
        "specificationVersion: jobtemplate-2023-09\nname: with env\n"
        "parameterDefinitions:\n- {name: OutDir, type: PATH}\n"
        "steps:\n- name: One\n  script:\n    actions:\n      onRun:\n"
        "        command: /bin/sh\n        args: ['-c', 'echo $STUDIO_TOOLS > {{Param.OutDir}}/tools.txt']\n"
    )
    done = await farm(
        "template", "submit", str(template), "-p", f"OutDir={out}", "--environment", str(env_file), "--wait"
    )
    assert done.code == 0, done
    assert (out / "tools.txt").read_text() == "tools-4.2\n"


async def test_bad_input_exits_2_naming_the_field(farm: Farm, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "frames", FRAMES)
    unknown = await farm("bundle", "submit", str(bundle), "-p", "Nope=1")
    assert unknown.code == 2 and "parameters.Nope" in unknown.stderr
    bad_value = await farm("bundle", "submit", str(bundle), "-p", "Frames=1-x")
    assert bad_value.code == 2 and "parameters.Frames" in bad_value.stderr
    not_a_bundle = await farm("bundle", "submit", str(tmp_path))
    assert not_a_bundle.code == 2 and "template.yaml" in not_a_bundle.stderr
    usage = await farm("bundle", "submit", str(bundle), "-p", "novalue")
    assert usage.code == 2 and "NAME=VALUE" in usage.stderr
async def test_tasks_show_progress_status_and_failure(farm: Farm, tmp_path: Path) -> None:
    template = tmp_path / "talk.yaml"
    template.write_text(MESSAGES)
    done = await farm("template", "submit", str(template), "--wait")
    assert done.code == 1, done
    job_id = done.stdout.strip().splitlines()[0]
    listed = await farm("tasks", job_id, "--json")
    assert listed.code == 0, listed
    tasks = {t["parameters"]["Frame"]: t for t in listed.json()}
    assert tasks[1]["status"] == "succeeded" and tasks[1]["progress"] == 80.5
    assert tasks[1]["status_message"] == "writing frame 1"
    assert tasks[2]["status"] == "failed" and tasks[2]["reason"] == "licence server unreachable for frame 2"
    text = await farm("tasks", job_id)
    assert "licence server unreachable" in text.stdout and "80.5%" in text.stdout
    assert json.dumps(tasks)  # plain JSON throughout
