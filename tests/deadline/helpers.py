"""Steps several Deadline test files take: running a job on the fake's clock to its
success, and a storage profile the default queue may use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import aiofarm
from aiofarm import JobStatus
from tests.fakes.deadline.process import FakeDeadlineProcess

__all__ = ["add_storage_profile", "run_to_success"]


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
