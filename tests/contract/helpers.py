"""What the contract tests share: commands every back end runs, waiting on events with
a deadline, and the check that an undeclared capability is refused."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from types import ModuleType
from typing import Any

import anyio
import pytest

from aiofarm import Capability, Client, Job, JobStatus, UnsupportedError
from tests.waits import tag, until_status

__all__ = ["LONG", "OK", "executes", "finish", "missing_id", "refused", "running", "tag", "until_status"]

#: runs until canceled (the dummy back end's scheduler reads it the same way)
LONG = ["sleep", "300"]
OK = ["true"]


def executes(backend: ModuleType) -> bool:
    return bool(getattr(backend, "EXECUTES", True))


def missing_id(backend: ModuleType) -> str:
    return str(getattr(backend, "MISSING_ID", f"job-{uuid.uuid4().hex}"))


async def running(farm: Client, command: list[str] | None = None, **kw: Any) -> Job:
    job = await farm.jobs.start(command or LONG, **kw)
    return await until_status(farm, job.id, JobStatus.RUNNING, max_interval=1)


async def refused(farm: Client, capability: Capability, call: Callable[[], object]) -> None:
    """``call()`` (a coroutine, an async context manager or a plain call) raises
    UnsupportedError naming the driver and ``capability``, which it does not declare."""
    assert capability not in farm.capabilities
    with pytest.raises(UnsupportedError) as info:
        result = call()
        if isinstance(result, AbstractAsyncContextManager):
            async with result:
                pass
        elif isinstance(result, Awaitable):
            await result
    assert (info.value.driver, info.value.feature) == (farm.driver.name, capability.value)


async def finish(farm: Client, job_id: str) -> None:
    """Cancel a job a test left running (cleanup; every driver can cancel)."""
    with anyio.CancelScope(shield=True), anyio.fail_after(60):
        await farm.jobs.cancel(job_id)
        await farm.jobs.wait(job_id, max_interval=1)
