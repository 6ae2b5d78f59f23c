"""Fixtures for the interactive tests: real processes, real ptys, real sockets, on
the local farm through the public client (``Client("local://<tmp>")``)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from aiofarm import Client
from aiofarm.models import Job, JobStatus
from tests.conftest import open_fds
from tests.streams import read_all, read_until

PY = sys.executable


def open_sockets() -> set[int]:
    """This process's open socket fds."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                out.add(int(fd))
        except FileNotFoundError:
            pass
    return out


class Farm:
    """A local farm client plus the waiting helpers the tests share."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.jobs = client.jobs

    async def start(self, command: Sequence[str], *, running: bool = True, **kw: Any) -> str:
        """Start a job; with ``running`` wait until it runs (attach/exec need that)."""
        job = await self.jobs.start(command=list(command), **kw)
        if running:
            await self.until_running(job.id)
        return str(job.id)

    async def until_running(self, job_id: str) -> None:
        async def running() -> bool:
            return (await self.status(job_id)).status is JobStatus.RUNNING

        await until(running, 20)

    async def until_finished(self, job_id: str) -> Job:
        async def finished() -> bool:
            return (await self.status(job_id)).status.is_finished

        await until(finished, 20)
        return await self.status(job_id)

    async def status(self, job_id: str) -> Job:
        return await self.jobs.get(job_id)


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[Farm]:
    async with Client(f"local://{tmp_path}/state") as client:
        yield Farm(client)


async def until(predicate: Callable[[], Awaitable[bool] | bool], timeout: float = 10) -> None:
    """Poll ``predicate`` until true (state outside this process has no event to wait on)."""
    with anyio.fail_after(timeout):
        while True:
            result = predicate()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


__all__ = [
    "PY",
    "Farm",
    "gone",
    "open_fds",
    "open_sockets",
    "read_all",
    "read_until",
    "until",
]
