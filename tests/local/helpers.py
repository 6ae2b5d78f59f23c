"""Helpers for the local driver tests: open an embedded farm on a state dir (the farm
the service runs, in this process), wait on push."""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import psutil
import yarl

from aiofarm.drivers.local import EmbeddedDriver
from aiofarm.models import Job, JobStatus

GRACE = 0.5


@asynccontextmanager
async def open_driver(state: Any, **options: Any) -> AsyncIterator[EmbeddedDriver]:
    """The driver open on ``state`` in its own task group; errors come out as
    themselves, not wrapped in an exception group."""
    options.setdefault("cancel_grace", GRACE)
    driver = EmbeddedDriver.from_url(yarl.URL(f"local://{state}"), options)
    error: BaseException | None = None
    async with anyio.create_task_group() as tg:
        try:
            await driver.open(tg)
            yield driver
        except Exception as exc:
            error = exc
        finally:
            with anyio.CancelScope(shield=True):
                await driver.aclose()
            tg.cancel_scope.cancel()
    if error is not None:
        raise error


async def wait_for(driver: EmbeddedDriver, job_id: str, *statuses: JobStatus, timeout: float = 20) -> Job:
    """Wait (on the driver's push, no polling) until ``job_id`` reaches one of
    ``statuses`` (default: any finished status)."""
    wanted = set(statuses) or set(JobStatus.finished_items())
    event = anyio.Event()

    def on_job(job: Job) -> None:
        if job.id == job_id and job.status in wanted:
            event.set()

    driver.subscribe(on_job)
    try:
        job = (await driver.get_jobs([job_id]))[job_id]
        if job.status not in wanted:
            with anyio.fail_after(timeout):
                await event.wait()
        return (await driver.get_jobs([job_id]))[job_id]
    finally:
        driver.unsubscribe(on_job)


def alive(pid: int) -> bool:
    """A process that still runs (a zombie waiting for a reaper does not count)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive(pid):
            return True
        await anyio.sleep(0.02)
    return False


async def read_pids(path: Any, count: int, timeout: float = 10.0) -> list[int]:
    """Pids a job wrote, one per line, once ``count`` of them are there."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = words(path)
        if len(lines) >= count:
            return [int(x) for x in lines[:count]]
        await anyio.sleep(0.02)
    raise AssertionError(f"the job did not write {count} pid(s) to {path}")


def words(path: Any) -> list[str]:
    """The whitespace-separated words of a file ([] while it does not exist)."""
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []


def exists(path: Any) -> bool:
    return os.path.exists(path)


def descendants_of_me() -> list[psutil.Process]:
    me = psutil.Process()
    return [p for p in me.children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE]


def wait_gate(gate: Any) -> str:
    """A shell snippet that waits until ``gate`` exists (see :func:`open_gate`): keeps
    a job running exactly as long as a test needs, whatever the machine's load."""
    return f"while [ ! -e {gate} ]; do sleep 0.02; done"


def open_gate(gate: Any) -> None:
    with open(gate, "w"):
        pass


async def eventually(check: Callable[[], Any], timeout: float = 30.0, what: str = "the condition") -> None:
    """Until ``check()`` (sync or async) is true, polling with a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not come true within {timeout:g}s")
        await anyio.sleep(0.02)
