"""Cancellation at every suspension point: each operation (wait, as_completed, watch,
logs.stream, exec, attach, port_forward, submit) is run once to count the points
where its task suspends, then again and again, cancelled at the 1st, the 2nd, ...
of those points in turn (not after a sleep: the count is exact). After each cancel
no task is left over; after all of them no file descriptor, socket or child process
is; a ResourceWarning fails the test (warnings are errors)."""

from __future__ import annotations

import asyncio
import math
import os
import sys
from collections.abc import Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import psutil
import pytest

from aiofarm import Client, JobSpec, JobStatus

from .conftest import FULL
from .programs import ECHO_SERVER

pytestmark = pytest.mark.anyio

#: how many cancel points per operation at most (spread evenly over all of them)
POINTS = 400 if FULL else 40



class CancelAt:
    """Runs a coroutine, counting each time it suspends; at the ``at``-th suspension
    it cancels ``scope`` (the cancel lands exactly at that await)."""

    def __init__(self, coro: Awaitable[Any], scope: anyio.CancelScope, at: float) -> None:
        self.coro = coro
        self.scope = scope
        self.at = at
        self.count = 0

    def __await__(self) -> Generator[Any, Any, Any]:
        inner = self.coro.__await__()
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = inner.send(value) if error is None else inner.throw(error)
            except StopIteration as stop:
                return stop.value
            error = None
            self.count += 1
            if self.count == self.at:
                self.scope.cancel()
            try:
                value = yield yielded
            except BaseException as exc:
                value, error = None, exc


def _children() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True) if p.status() != psutil.STATUS_ZOMBIE}


async def _settled_tasks(baseline: int) -> int:
    """The number of tasks once what a cancel left finishing has finished (2 s at most)."""
    with anyio.move_on_after(2):
        while len(asyncio.all_tasks()) > baseline:  # noqa: ASYNC110 - no event says a task ended
            await anyio.sleep(0.01)
    return len(asyncio.all_tasks())


async def _each_point(name: str, op: Callable[[], Awaitable[Any]], figure: Callable[[str, object], None]) -> None:
    probe = CancelAt(op(), anyio.CancelScope(), math.inf)
    await probe
    total = probe.count
    step = max(1, math.ceil(total / POINTS))
    baseline = len(asyncio.all_tasks())
    cancelled = 0
    for at in range(1, total + 1, step):
        with anyio.CancelScope() as scope:
            runner = CancelAt(op(), scope, at)
            await runner
        cancelled += scope.cancelled_caught
        left = await _settled_tasks(baseline)
        assert left <= baseline, f"{name}: cancelled at point {at} of {total}: {left - baseline} tasks left"
    figure(f"{name}: cancelled at suspension points", f"{cancelled} of {total} (every {step})")
    assert cancelled >= 1 or total == 0  # an op that never suspends cannot be cancelled midway


@pytest.fixture(params=["local-embedded", "local-service", "dummy"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # embedded: the farm's processes and sockets are this process's, so leaks show;
    # through the service every call is a request on the unix socket
    return {
        "local-embedded": f"local://{tmp_path}/state?embedded=true&cancel_grace=1&slots=16",
        "local-service": f"local://{tmp_path}/service?cancel_grace=1&slots=16",
        "dummy": "dummy://?push=1",
    }[request.param]


async def test_cancel_at_every_point(url: str, tmp_path: Path, figure: Callable[[str, object], None]) -> None:
    fds_before = set(os.listdir("/proc/self/fd"))
    children_before = _children()
    local = url.startswith("local")
    async with Client(url) as farm:
        dummy: Any = None if local else farm.driver

        async def finished_job() -> str:
            (job,) = await farm.jobs.submit([JobSpec(command=["sh", "-c", "echo a; echo b"])])
            if dummy is not None:
                dummy.write_log(job.id, "a")
                dummy.set_status(job.id, JobStatus.SUCCEEDED)
            return job.id

        async def short_job() -> str:
            (job,) = await farm.jobs.submit([JobSpec(command=["sh", "-c", "sleep 0.05; echo done"])])
            if dummy is not None:
                # finished by the loop a moment later, as a back end would
                asyncio.get_running_loop().call_later(0.05, dummy.set_status, job.id, JobStatus.SUCCEEDED)
            return job.id

        async def op_submit() -> None:
            await farm.jobs.submit([JobSpec(command=["true"], paused=True)])

        async def op_wait() -> None:
            await farm.jobs.wait(await short_job(), timeout=60)

        async def op_as_completed() -> None:
            ids = [await short_job() for _ in range(2)]
            async for _ in farm.jobs.as_completed(ids, timeout=60):
                pass

        async def op_watch() -> None:
            job_id = await short_job()
            async with farm.jobs.watch([job_id]) as events:
                async for event in events:
                    if event.status.is_finished:
                        break

        async def op_stream() -> None:
            job_id = await finished_job()
            async with farm.logs.stream(job_id, follow=True) as lines:
                async for _ in lines:
                    pass

        ops: dict[str, Callable[[], Awaitable[Any]]] = {
            "submit": op_submit, "wait": op_wait, "as_completed": op_as_completed, "watch": op_watch,
            "logs.stream": op_stream,
        }
        server: Any = None
        if local:
            cat = await farm.jobs.start(["cat"], stdin=True)
            server = await farm.jobs.start([sys.executable, "-c", ECHO_SERVER])
            port = 0
            with anyio.fail_after(60):
                async with farm.logs.stream(server.id) as lines:
                    async for line in lines:
                        if line.text.startswith("port "):
                            port = int(line.text.split()[1])
                            break

            async def op_exec() -> None:
                async with farm.jobs.exec(cat.id, ["echo", "hi"], stdin=False) as stream:
                    while await stream.read_out() is not None:
                        pass

            async def op_attach() -> None:
                async with farm.jobs.attach(cat.id, stdin=True) as stream:
                    await stream.write_in(b"ping\n")
                    got = b""
                    while b"ping" not in got:
                        msg = await stream.read_out()
                        assert msg is not None
                        got += msg.data

            async def op_forward() -> None:
                async with farm.jobs.port_forward(server.id, job_port=port) as fwd:
                    conn = await anyio.connect_tcp("127.0.0.1", fwd.local_port)
                    async with conn:
                        await conn.send(b"hello")
                        assert await conn.receive() == b"HELLO"

            ops |= {"exec": op_exec, "attach": op_attach, "port_forward": op_forward}
        for name, op in ops.items():
            await _each_point(f"{farm.driver_name} {name}", op, figure)
        if local:
            await farm.jobs.cancel([cat.id, server.id])
            for job_id in (cat.id, server.id):
                await farm.jobs.wait(job_id, timeout=60)
    # the client closed: everything it opened is closed, every process it started gone
    assert set(os.listdir("/proc/self/fd")) <= fds_before
    if "embedded" not in url:
        return  # the farm service outlives its clients by design (stopped by the test setup)
    with anyio.fail_after(10):
        while _children() - children_before:  # noqa: ASYNC110 - no event says a process is reaped
            await anyio.sleep(0.05)
