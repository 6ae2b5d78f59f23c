"""attach, exec and port_forward on a job that has not started yet wait for it (up to
``start_timeout``), as ``kubectl run -it`` waits for its pod; 0 fails at once."""

from __future__ import annotations

import time

import anyio
import pytest

from aiofarm import InvalidSpec, JobNotRunning, JobStatus

from .conftest import Farm, read_until, until

pytestmark = pytest.mark.anyio


async def test_exec_waits_for_a_held_job_to_start(farm: Farm) -> None:
    job = await farm.start(["sleep", "60"], running=False, paused=True)
    async with anyio.create_task_group() as tg:
        entered = anyio.Event()

        async def exec_when_running() -> None:
            async with farm.jobs.exec(job, ["sh", "-c", "echo inside"], start_timeout=60) as stream:
                entered.set()
                assert b"inside" in await read_until(stream, b"inside\n")

        tg.start_soon(exec_when_running)
        # the exec found the job held and waits for it through the client's hub
        await until(lambda: farm.client.hub.watched == 1)
        assert (await farm.status(job)).status is JobStatus.SUSPENDED
        assert not entered.is_set()
        await farm.jobs.resume(job)
        with anyio.fail_after(30):
            await entered.wait()
    await farm.jobs.cancel(job)


async def test_zero_fails_at_once_and_the_wait_is_bounded(farm: Farm) -> None:
    job = await farm.start(["sleep", "60"], running=False, paused=True)
    for call in (
        lambda t: farm.jobs.attach(job, start_timeout=t),
        lambda t: farm.jobs.exec(job, ["true"], start_timeout=t),
        lambda t: farm.jobs.port_forward(job, job_port=80, start_timeout=t),
    ):
        with pytest.raises(JobNotRunning) as info:
            async with call(0):
                pass
        assert info.value.status is JobStatus.SUSPENDED
    started = time.monotonic()
    with pytest.raises(JobNotRunning):
        async with farm.jobs.attach(job, start_timeout=0.5):
            pass
    assert 0.5 <= time.monotonic() - started < 10
    with pytest.raises(InvalidSpec) as bad:
        farm.jobs.exec(job, ["true"], start_timeout=-1)
    assert bad.value.field == "start_timeout"
    await farm.jobs.cancel(job)


async def test_a_job_that_ends_before_running_is_not_running(farm: Farm) -> None:
    job = await farm.start(["sleep", "60"], running=False, paused=True)
    async with anyio.create_task_group() as tg:
        failed: list[BaseException] = []

        async def attach() -> None:
            try:
                async with farm.jobs.attach(job, start_timeout=60):
                    pass
            except JobNotRunning as exc:
                failed.append(exc)

        tg.start_soon(attach)
        await until(lambda: farm.client.hub.watched == 1)
        await farm.jobs.cancel(job)
    assert len(failed) == 1
    assert failed[0].status is JobStatus.CANCELED  # type: ignore[attr-defined]
