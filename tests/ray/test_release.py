"""Dependants held by the client (aiofarm.release) on the real Ray head, which has no
dependencies between jobs."""

from __future__ import annotations

import itertools
import logging
import uuid

import anyio
import pytest

from aiofarm import Client, JobNotFound, JobSpec, JobStatus
from tests.backends.ray import Head

pytestmark = [pytest.mark.anyio, pytest.mark.ray]


def _ids(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"r{tag}-{i}" for i in range(n)]


async def test_chain_is_held_then_released_in_order(farm: Client) -> None:
    a, b, c = _ids(3)
    jobs = await farm.jobs.submit(
        [
            JobSpec(command=["sh", "-c", "sleep 2; echo a"], id=a),
            JobSpec(command=["sh", "-c", "echo b"], id=b, depends_on=[a]),
            JobSpec(command=["sh", "-c", "echo c"], id=c, depends_on=[b]),
        ]
    )
    assert [j.id for j in jobs] == [a, b, c]
    # held: pending, saying why, in the Ray cluster not yet
    held = await farm.jobs.get(c)
    assert held.status is JobStatus.PENDING and held.reason and b in held.reason and held.raw["held"]
    assert held.depends_on == (b,)
    async with farm.jobs.list(statuses=[JobStatus.PENDING]) as it:
        assert c in {j.id async for j in it}
    results = [await farm.jobs.wait(i, timeout=120, max_interval=0.5) for i in (a, b, c)]
    assert [r.status for r in results] == [JobStatus.SUCCEEDED] * 3
    for before, after in itertools.pairwise(results):
        assert before.job.finished_at and after.job.created_at and after.job.created_at >= before.job.finished_at
    # released jobs are Ray's own: they carry their dependencies as metadata
    assert (await farm.jobs.get(c)).raw["metadata"]["aiofarm.depends_on"] == f'["{b}"]'


async def test_dependant_of_a_failed_job_fails_with_the_reason(farm: Client) -> None:
    a, b, c = _ids(3)
    await farm.jobs.submit(
        [
            JobSpec(command=["sh", "-c", "exit 4"], id=a),
            JobSpec(command=["true"], id=b, depends_on=[a]),
            JobSpec(command=["true"], id=c, depends_on=[b]),
        ]
    )
    rb = await farm.jobs.wait(b, timeout=120, max_interval=0.5)
    rc = await farm.jobs.wait(c, timeout=120, max_interval=0.5)
    assert rb.status is JobStatus.FAILED and rb.job.reason is not None
    assert rb.job.reason.startswith(f"dependency {a} failed") and "exit code 4" in rb.job.reason
    assert rc.status is JobStatus.FAILED and rc.job.reason is not None and f"dependency {b} failed" in rc.job.reason
    # never submitted to Ray
    assert "metadata" not in rb.job.raw


async def test_cancel_a_held_job_and_close_drops_the_rest(ray_head: Head, caplog: pytest.LogCaptureFixture) -> None:
    a, b, c = _ids(3)
    caplog.set_level(logging.WARNING, logger="aiofarm.release")
    async with ray_head.client() as farm:
        await farm.jobs.submit(
            [
                JobSpec(command=["sleep", "300"], id=a),
                JobSpec(command=["true"], id=b, depends_on=[a]),
                JobSpec(command=["true"], id=c, depends_on=[a]),
            ]
        )
        await farm.jobs.cancel(b)
        got = await farm.jobs.get(b)
        assert got.status is JobStatus.CANCELED and got.reason == "canceled while held for its dependencies"
    # the client closed with c still held: dropped, and it says so
    assert any(c in r.getMessage() and "never submitted" in r.getMessage() for r in caplog.records)
    async with ray_head.client() as farm:
        with pytest.raises(JobNotFound):
            await farm.jobs.get(c)
        await farm.jobs.cancel(a)
        with anyio.fail_after(30):
            assert (await farm.jobs.get(a)).status is JobStatus.CANCELED
