"""Waiting for a status on every driver: ``jobs.wait(until=...)``, and attach, exec
and port_forward on a job that has not started yet waiting for it (``start_timeout``)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import anyio
import pytest

from aiofarm import (
    Capability,
    Client,
    InvalidSpec,
    Job,
    JobNotRunning,
    JobStatus,
    StatusNotReached,
    WaitTimeout,
)

from .helpers import LONG, OK, finish, refused

pytestmark = pytest.mark.anyio


async def test_wait_until_a_status(farm: Client) -> None:
    job = await farm.jobs.start(LONG)
    try:
        result = await farm.jobs.wait(job.id, until=JobStatus.RUNNING, timeout=120, max_interval=1)
        assert result.status is JobStatus.RUNNING and result.job.status is JobStatus.RUNNING
        assert result.failed_tasks == ()
        again = await farm.jobs.wait(job.id, until={"running", "succeeded"}, timeout=60, max_interval=1)
        assert again.status is JobStatus.RUNNING
        with pytest.raises(WaitTimeout):  # still running: a finished status is not reached
            await farm.jobs.wait(job.id, timeout=1, max_interval=0.5)
    finally:
        await finish(farm, job.id)
    failing = await farm.jobs.start(["sh", "-c", "exit 3"])
    with pytest.raises(StatusNotReached) as info:
        await farm.jobs.wait(failing.id, until="succeeded", timeout=120, max_interval=1)
    assert isinstance(info.value, JobNotRunning)
    assert info.value.status is JobStatus.FAILED and info.value.wanted == {JobStatus.SUCCEEDED}
    assert "failed" in str(info.value) and "succeeded" in str(info.value)
    assert (await farm.jobs.wait(failing.id, until=[JobStatus.FAILED], timeout=60)).status is JobStatus.FAILED
    for bad in ("nope", 3, [], [JobStatus.RUNNING, "nope"]):
        with pytest.raises(InvalidSpec) as bad_info:
            await farm.jobs.wait(failing.id, until=bad)  # type: ignore[arg-type]
        assert bad_info.value.field == "until"


Opener = Callable[[str, float], AbstractAsyncContextManager[object]]


def _opener(farm: Client) -> Opener | None:
    """An interactive call the driver declares (exec, else port_forward, else attach)."""
    caps = farm.capabilities
    if Capability.EXEC in caps:
        return lambda job_id, wait: farm.jobs.exec(job_id, ["true"], start_timeout=wait)
    if Capability.PORT_FORWARD in caps:
        return lambda job_id, wait: farm.jobs.port_forward(job_id, job_port=9, start_timeout=wait)
    if Capability.ATTACH in caps:
        return lambda job_id, wait: farm.jobs.attach(job_id, stdin=False, start_timeout=wait)
    return None


@asynccontextmanager
async def _held(farm: Client, gate_dir: Path) -> AsyncIterator[tuple[Job, Callable[[], Awaitable[None]]]]:
    """A job that does not start until released: submitted paused where the driver can
    hold jobs, else after a gate job that ends once a file exists (same host)."""
    if Capability.PAUSE in farm.capabilities:
        job = await farm.jobs.start(LONG, paused=True)

        async def resume() -> None:
            await farm.jobs.resume(job.id)

        try:
            yield job, resume
        finally:
            await finish(farm, job.id)
        return
    flag = gate_dir / "go"
    gate = await farm.jobs.start(["sh", "-c", f"while [ ! -e '{flag}' ]; do sleep 0.2; done"])
    job = await farm.jobs.start(LONG, depends_on=[gate.id])

    async def open_gate() -> None:
        flag.touch()

    try:
        yield job, open_gate
    finally:
        flag.touch()
        await finish(farm, job.id)
        await finish(farm, gate.id)


async def test_interactive_calls_wait_for_the_start(farm: Client, tmp_path: Path) -> None:
    opener = _opener(farm)
    if opener is None:
        job = await farm.jobs.start(OK)
        await refused(farm, Capability.EXEC, lambda: farm.jobs.exec(job.id, ["true"], start_timeout=5))
        await refused(farm, Capability.ATTACH, lambda: farm.jobs.attach(job.id, start_timeout=5))
        await refused(farm, Capability.PORT_FORWARD, lambda: farm.jobs.port_forward(job.id, job_port=9, start_timeout=5))
        with pytest.raises(InvalidSpec) as info:
            farm.jobs.exec(job.id, ["true"], start_timeout=-1)
        assert info.value.field == "start_timeout"
        return
    async with _held(farm, tmp_path) as (job, release):
        assert (await farm.jobs.get(job.id)).status in (JobStatus.PENDING, JobStatus.SUSPENDED)
        with pytest.raises(JobNotRunning) as info:  # 0: fail at once
            async with opener(job.id, 0):
                pass
        assert info.value.status in (JobStatus.PENDING, JobStatus.SUSPENDED)
        began = time.monotonic()
        with pytest.raises(JobNotRunning):  # waited for, then given up
            async with opener(job.id, 1.5):
                pass
        assert time.monotonic() - began >= 1.4
        entered = anyio.Event()

        async def use() -> None:
            async with opener(job.id, 180):
                entered.set()

        with anyio.fail_after(180):
            async with anyio.create_task_group() as tg:
                tg.start_soon(use)
                await release()
                await entered.wait()
        assert (await farm.jobs.get(job.id)).status is JobStatus.RUNNING
    done = await farm.jobs.start(OK)
    await farm.jobs.wait(done.id, timeout=120, max_interval=1)
    began = time.monotonic()
    with pytest.raises(JobNotRunning) as info:  # finished: at once, whatever start_timeout
        async with opener(done.id, 300):
            pass
    assert info.value.status.is_finished  # type: ignore[attr-defined]
    assert time.monotonic() - began < 60
