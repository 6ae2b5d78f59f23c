"""One behaviour contract for every driver (parametrised in conftest.py).

A feature the driver does not list in ``capabilities`` must raise
UnsupportedError naming it; a feature it lists must behave the same as on
every other driver.
"""

from __future__ import annotations

import uuid
from types import ModuleType

import anyio
import pytest

from aiofarm import (
    Capability,
    Client,
    InvalidSpec,
    JobNotFound,
    JobSpec,
    JobStatus,
    UnsupportedError,
    where,
)

pytestmark = pytest.mark.anyio


def _tag() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


def _executes(backend: ModuleType) -> bool:
    return bool(getattr(backend, "EXECUTES", True))


async def _until_status(farm: Client, job_id: str, status: JobStatus, timeout: float = 60) -> None:
    with anyio.fail_after(timeout):
        async with farm.jobs.watch(job_id, max_interval=1) as events:
            async for ev in events:
                if ev.status is status:
                    return
                assert not ev.status.is_finished, f"{job_id} finished as {ev.status} before {status}"


async def test_success_output_and_exit_code(farm: Client, backend: ModuleType) -> None:
    job = await farm.jobs.start(["sh", "-c", "echo hello; echo oops >&2"], name="ok", tags=[_tag()])
    assert job.status in JobStatus.active_items()
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    assert result.status is JobStatus.SUCCEEDED
    assert result.job.exit_code == 0
    assert result.failed_tasks == ()
    assert result.job.finished_at is not None and result.job.finished_at.tzinfo is not None
    if _executes(backend) and Capability.LOGS in farm.capabilities:
        text = await farm.logs.read(job.id)
        assert "hello" in text and "oops" in text
        if getattr(backend, "SEPARATE_STDERR", True):
            async with farm.logs.stream(job.id, follow=False, streams=["stderr"]) as lines:
                got = [(ln.stream, ln.text) async for ln in lines]
            assert got == [("stderr", "oops")]


async def test_failure_carries_exit_code_and_failed_tasks(farm: Client, backend: ModuleType) -> None:
    job = await farm.jobs.start(["sh", "-c", "exit 3"])
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    assert result.status is JobStatus.FAILED
    if _executes(backend):
        assert result.job.exit_code == 3
    if Capability.TASKS in farm.capabilities:
        assert len(result.failed_tasks) == 1
        assert result.failed_tasks[0].status is JobStatus.FAILED


async def test_dependency_chain_runs_in_order(farm: Client) -> None:
    tag = _tag()
    jobs = await farm.jobs.submit(
        [
            JobSpec(command=["sh", "-c", "sleep 0.3"], id=f"{tag}-c", depends_on=[f"{tag}-b"], tags=[tag]),
            JobSpec(command=["sh", "-c", "sleep 0.3"], id=f"{tag}-a", tags=[tag]),
            JobSpec(command=["sh", "-c", "sleep 0.3"], id=f"{tag}-b", depends_on=[f"{tag}-a"], tags=[tag]),
        ]
    )
    assert len({j.id for j in jobs}) == 3
    c, a, b = [await farm.jobs.wait(j.id, timeout=120, max_interval=1) for j in jobs]
    assert [r.status for r in (a, b, c)] == [JobStatus.SUCCEEDED] * 3
    for before, after in ((a, b), (b, c)):
        assert before.job.finished_at is not None and after.job.started_at is not None
        assert after.job.started_at >= before.job.finished_at.replace(microsecond=0)


async def test_failed_dependency_fails_the_dependant(farm: Client) -> None:
    tag = _tag()
    first, second = await farm.jobs.submit(
        [
            JobSpec(command=["sh", "-c", "exit 1"], id=f"{tag}-x"),
            JobSpec(command=["true"], id=f"{tag}-y", depends_on=[f"{tag}-x"]),
        ]
    )
    result = await farm.jobs.wait(second.id, timeout=120, max_interval=1)
    assert result.status in (JobStatus.FAILED, JobStatus.CANCELED)
    assert result.job.reason
    assert (await farm.jobs.get(first.id)).status is JobStatus.FAILED


async def test_cancel_running_job(farm: Client) -> None:
    job = await farm.jobs.start(["sleep", "120"])
    await _until_status(farm, job.id, JobStatus.RUNNING)
    await farm.jobs.cancel(job.id)
    result = await farm.jobs.wait(job.id, timeout=60, max_interval=1)
    assert result.status is JobStatus.CANCELED


async def test_paused_submit_and_resume(farm: Client) -> None:
    if Capability.PAUSE not in farm.capabilities:
        with pytest.raises(UnsupportedError):
            await farm.jobs.start(["true"], paused=True)
        return
    job = await farm.jobs.start(["true"], paused=True)
    await anyio.sleep(1)
    assert (await farm.jobs.get(job.id)).status is JobStatus.SUSPENDED
    await farm.jobs.resume(job.id)
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    assert result.status is JobStatus.SUCCEEDED


async def test_update_priority_and_name(farm: Client) -> None:
    job = await farm.jobs.start(["true"], paused=Capability.PAUSE in farm.capabilities, priority=10)
    if Capability.UPDATE not in farm.capabilities:
        with pytest.raises(UnsupportedError):
            await farm.jobs.update(job.id, priority=90)
        return
    await farm.jobs.update([job.id], priority=90, name="renamed")
    got = await farm.jobs.get(job.id)
    assert got.priority == 90 and got.name == "renamed"
    await farm.jobs.cancel(job.id)


async def test_unknown_ids_raise_job_not_found(farm: Client) -> None:
    missing = "999999999" if farm.driver_name.startswith("slurm") else f"job-{uuid.uuid4().hex}"
    with pytest.raises(JobNotFound):
        await farm.jobs.get(missing)
    with pytest.raises(JobNotFound):
        await farm.jobs.wait(missing, timeout=30)
    with pytest.raises(InvalidSpec):
        await farm.jobs.start(["true"], depends_on=[missing])


async def test_list_by_tag_status_and_where(farm: Client) -> None:
    tag = _tag()
    jobs = await farm.jobs.submit(
        [JobSpec(command=["sh", "-c", f"exit {i % 2}"], name=f"{tag}-{i}", tags=[tag]) for i in range(4)]
    )
    for job in jobs:
        await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    async with farm.jobs.list(tags=[tag]) as it:
        listed = {j.id async for j in it}
    assert listed == {j.id for j in jobs}
    async with farm.jobs.list(tags=[tag], statuses=[JobStatus.FAILED]) as it:
        failed = {j.name async for j in it}
    assert failed == {f"{tag}-1", f"{tag}-3"}
    async with farm.jobs.list(where=(where.tags.contains(tag)) & (where.name.matches(r"-[02]$"))) as it:
        named = {j.name async for j in it}
    assert named == {f"{tag}-0", f"{tag}-2"}
    async with farm.jobs.list(tags=[tag], limit=1) as it:
        assert len([j async for j in it]) == 1


async def test_log_follow_gets_every_line_once_and_ends(farm: Client, backend: ModuleType) -> None:
    if not _executes(backend):
        pytest.skip("this back end does not run the command")
    job = await farm.jobs.start(["sh", "-c", "for i in $(seq 1 30); do echo line $i; sleep 0.02; done"])
    with anyio.fail_after(120):
        async with farm.logs.stream(job.id, follow=True) as lines:
            got = [ln.text async for ln in lines]
    assert got == [f"line {i}" for i in range(1, 31)]


async def test_many_concurrent_waits(farm: Client) -> None:
    jobs = await farm.jobs.submit([JobSpec(command=["true"]) for _ in range(20)])
    results = {}

    async def wait(job_id: str) -> None:
        results[job_id] = (await farm.jobs.wait(job_id, timeout=120, max_interval=1)).status

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(wait, job.id)
    assert set(results.values()) == {JobStatus.SUCCEEDED}
    done = []
    async for job in farm.jobs.as_completed([j.id for j in jobs], timeout=30):
        done.append(job.id)
    assert sorted(done) == sorted(j.id for j in jobs)


async def test_functions_run_or_are_unsupported(farm: Client) -> None:
    import operator

    if Capability.FUNCTIONS not in farm.capabilities:
        with pytest.raises(UnsupportedError):
            farm.functions.create(operator.mul)
        return
    fn = farm.functions.create(operator.mul, timeout=120)
    batch = await fn.map([[2, 3], [4, 5]])
    assert batch.is_success
    values = sorted([await farm.functions.result(job) async for job in fn.as_completed(batch.jobs)])
    assert values == [6, 20]
