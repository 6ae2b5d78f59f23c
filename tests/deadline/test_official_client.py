"""Proof of honesty: the official ``deadline`` package, unmodified, against the fake.

It submits a real job bundle with ``create_job_from_job_bundle`` and waits with
``wait_for_job_completion`` through a failed task, then reads that task's session log
with ``get_session_logs``. aiofarm's driver must then see the same job the same way.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import aiofarm
from aiofarm import JobStatus
from tests.fakes.deadline.process import FakeDeadlineProcess, fake_env

pytestmark = pytest.mark.anyio

BUNDLE = Path(__file__).parent / "bundles" / "render"


def _official_submit_and_wait(fake: FakeDeadlineProcess, home: Path) -> tuple[str, object, object]:
    from deadline.client import api
    from deadline.client.config import config_file

    config = config_file.read_config()
    config_file.set_setting("defaults.farm_id", fake.farm_id, config=config)
    config_file.set_setting("defaults.queue_id", fake.queue_id, config=config)
    printed: list[str] = []
    job_id = api.create_job_from_job_bundle(
        str(BUNDLE),
        job_parameters=[{"name": "Frames", "value": "1-5"}],
        config=config,
        max_retries_per_task=1,
        print_function_callback=printed.append,
    )
    assert job_id is not None
    result = api.wait_for_job_completion(
        fake.farm_id, fake.queue_id, job_id, max_poll_interval=1, timeout=60, config=config
    )
    session_id = result.failed_tasks[0].session_id
    logs = api.get_session_logs(fake.farm_id, fake.queue_id, session_id, config=config)
    return job_id, result, logs


async def test_official_client_submits_and_waits_unmodified(
    fake: FakeDeadlineProcess, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in fake_env(fake, str(tmp_path)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("DEADLINE_CONFIG_FILE_PATH", str(tmp_path / "deadline-config"))
    monkeypatch.setenv("DEADLINE_CLOUD_TELEMETRY_OPT_OUT", "true")
    fake.fail({"job_name": "^Honesty render$", "step": "Render", "task": {"Frame": 3}})
    fake.auto(0.05)
    job_id, result, logs = await anyio.to_thread.run_sync(_official_submit_and_wait, fake, tmp_path)
    fake.auto(None)

    assert result.status == "FAILED"  # type: ignore[attr-defined]
    (failed,) = result.failed_tasks  # type: ignore[attr-defined]
    assert failed.step_name == "Render" and failed.parameters == {"Frame": {"int": "3"}}
    messages = [e.message for e in logs.events]  # type: ignore[attr-defined]
    assert any("exit code 1" in m for m in messages)
    assert logs.log_group == f"/aws/deadline/{fake.farm_id}/{fake.queue_id}"  # type: ignore[attr-defined]
    stats = fake.stats()
    assert stats["CreateJob"] == 1 and stats["GetQueue"] >= 1 and stats["GetJob"] >= 2

    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.get(job_id)
        assert job.status is JobStatus.FAILED and job.priority == 60
        assert job.raw["parameters"]["Message"] == {"string": "from-the-bundle"}
        ours = [t for t in await farm.jobs.tasks(job_id) if t.status is JobStatus.FAILED]
        assert [t.id for t in ours] == [failed.task_id]
        # the session the official client derived from the action id is the one
        # aiofarm got from GetSessionAction
        assert ours[0].log is not None and ours[0].log.endswith(failed.session_id)
        assert ours[0].attempts == 2  # max_retries_per_task=1: two attempts
        text = await farm.logs.read(job_id, task=failed.task_id)
        assert text.count("exit code 1") == 2
