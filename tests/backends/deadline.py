"""The deadline back end for the shared driver contract suite.

``open_client()`` yields an ``aiofarm.Client("deadline://...")`` pointed at the fake
Deadline Cloud service (with moto's CloudWatch Logs) whose clock advances by itself
(one step every 50 ms) and whose workers run each task's command, so jobs finish
with their real exit codes without the test driving time. One fake process
serves every client of a test session (reset for each client: no job of an earlier
test is visible) and is stopped when the interpreter exits (or with ``shutdown()``).
"""

from __future__ import annotations

import atexit
import contextlib
import tempfile
from collections.abc import AsyncIterator
from typing import Any

import anyio

import aiofarm
from tests.fakes.deadline.process import FakeDeadlineProcess, aws_env, patched_environ

__all__ = ["EXECUTES", "MARKS", "TICK", "fake", "open_client", "shutdown"]

MARKS = ("deadline",)
#: the fake's workers run the command, but Deadline's session logs merge stdout and
#: stderr and frame them with worker lines, so the output checks do not apply
EXECUTES = False
TICK = 0.05
_shared: FakeDeadlineProcess | None = None


def _start() -> FakeDeadlineProcess:
    global _shared
    if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
        _shared = FakeDeadlineProcess(moto=True).start()
        atexit.register(shutdown)
    return _shared


def fake() -> FakeDeadlineProcess:
    """The running fake (for tests that want to steer it: fail rules, faults)."""
    if _shared is None:
        raise RuntimeError("no deadline fake is running; use open_client()")
    return _shared


def shutdown() -> None:
    global _shared
    proc, _shared = _shared, None
    if proc is not None:
        proc.stop()


@contextlib.asynccontextmanager
async def open_client(**options: Any) -> AsyncIterator[aiofarm.Client]:
    process = await anyio.to_thread.run_sync(_start)
    await anyio.to_thread.run_sync(process.reset)
    # its workers really run each task's command (its exit code decides the outcome)
    await anyio.to_thread.run_sync(process.admin, "config", {"execute": True})
    await anyio.to_thread.run_sync(process.auto, TICK)
    try:
        with tempfile.TemporaryDirectory() as home, patched_environ(aws_env(home)):
            async with aiofarm.Client(process.url(), **options) as client:
                yield client
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(process.reset)
