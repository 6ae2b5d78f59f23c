"""Steps several Deadline test files take: running a job on the fake's clock to its
success, and a storage profile the default queue may use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import aiofarm
from aiofarm import JobStatus
from tests.fakes.deadline.process import FakeDeadlineProcess

__all__ = ["add_storage_profile", "path_parameter", "run_to_success", "shell_template"]


async def run_to_success(farm: aiofarm.Client, fake: FakeDeadlineProcess, job_id: str) -> None:
    """Tick the fake until ``job_id`` ends; it must have succeeded (else its log is shown)."""
    fake.auto(0.05)
    try:
        result = await farm.jobs.wait(job_id, timeout=90, max_interval=0.5)
    finally:
        fake.auto(None)
    if result.status is not JobStatus.SUCCEEDED:
        log = await farm.logs.read(job_id)
        raise AssertionError(f"job {result.status.value}:\n{log}")


async def add_storage_profile(
    url: str, fake: FakeDeadlineProcess, name: str, locations: Sequence[Mapping[str, str]]
) -> str:
    """A storage profile the default queue may use (made through the API, as an admin)."""
    async with aiofarm.Client(url) as farm:
        api = farm.driver.api  # type: ignore[attr-defined]
        sp = await api.call(
            "create_storage_profile", farmId=fake.farm_id, displayName=name,
            osFamily="LINUX", fileSystemLocations=[dict(loc) for loc in locations],
        )  # fmt: skip
        await api.call(
            "update_queue", farmId=fake.farm_id, queueId=fake.queue_id,
            allowedStorageProfileIdsToAdd=[sp["storageProfileId"]],
        )  # fmt: skip
        return str(sp["storageProfileId"])


def path_parameter(name: str, flow: str, kind: str = "DIRECTORY") -> dict[str, str]:
    """A PATH parameter definition with a job attachments data flow."""
    return {"name": name, "type": "PATH", "objectType": kind, "dataFlow": flow}


def shell_template(name: str, parameters: Sequence[Mapping[str, str]], script: str) -> dict[str, Any]:
    """A one-step job template running ``script`` with ``sh -c``, each parameter's
    value given as a positional argument ($1, $2, ... in their order)."""
    args = ["-c", script, "sh", *(f"{{{{Param.{p['name']}}}}}" for p in parameters)]
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": name,
        "parameterDefinitions": [dict(p) for p in parameters],
        "steps": [{"name": "Render", "script": {"actions": {"onRun": {"command": "/bin/sh", "args": args}}}}],
    }
