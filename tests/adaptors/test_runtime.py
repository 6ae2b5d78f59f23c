"""The phase runner in process: cancel as a cancellation, shielded and time-limited
stop/cleanup, an application that dies fails the task, AsyncCommandAdaptor exit codes,
protocol lines."""

from __future__ import annotations

import sys
from typing import Any

import anyio
import pytest

from aiofarm.adaptors import AsyncAdaptor, AsyncCommandAdaptor, AsyncProcess
from aiofarm.adaptors.output import OutputSink
from aiofarm.adaptors.session import open_session
from aiofarm.adaptors.standalone import run_all

pytestmark = pytest.mark.anyio

PY = sys.executable


class Lines(OutputSink):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def emit(self, line: str) -> None:
        self.lines.append(line)


class Sleeper(AsyncAdaptor):
    events: list[str] = []
    stop_timeout = 0.3

    async def on_run(self, run_data: dict[str, Any]) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            self.events.append("run cancelled")
            raise

    async def on_cancel(self) -> None:
        self.events.append("on_cancel")

    async def on_stop(self) -> None:
        if self.init_data.get("hang_stop"):
            await anyio.sleep_forever()  # shielded: only the timeout ends it

    async def on_cleanup(self) -> None:
        self.events.append("cleanup")


async def test_cancel_is_a_cancellation_of_the_running_phase() -> None:
    Sleeper.events = []
    sink = Lines()
    async with open_session(Sleeper, {}, {}, sink) as runner, anyio.create_task_group() as tg:
        assert runner.claim("start") and await runner.start()
        assert runner.claim("run")
        done = anyio.Event()
        result: list[bool] = []

        async def run() -> None:
            result.append(await runner.run({}))
            done.set()

        tg.start_soon(run)
        assert await runner.cancel()
        with anyio.fail_after(10):
            await done.wait()
        assert result == [True]  # cancelled is not failed
        assert runner.state == "canceled"
        assert Sleeper.events == ["on_cancel", "run cancelled"]
        assert await runner.stop()
    assert not [line for line in sink.lines if line.startswith("openjd_fail")]


async def test_stop_is_time_limited_and_cleanup_still_runs() -> None:
    Sleeper.events = []
    sink = Lines()
    async with open_session(Sleeper, {"hang_stop": True}, {}, sink) as runner:
        assert runner.claim("start") and await runner.start()
        with anyio.fail_after(10):
            assert not await runner.stop()
    assert "openjd_fail: Error encountered while stopping adaptor: timed out after 0.3 s" in sink.lines
    assert Sleeper.events == ["cleanup"]


class Dying(AsyncAdaptor):
    app: AsyncProcess

    async def on_start(self) -> None:
        self.app = await self.ctx.start_process([PY, "-c", "import sys; sys.stdin.readline(); sys.exit(3)"])

    async def on_run(self, run_data: dict[str, Any]) -> None:
        if run_data.get("kill"):
            await self.app.send_line("go")
        await anyio.sleep_forever()  # only the application's death ends this task


async def test_an_application_that_exits_fails_the_task_and_the_next() -> None:
    sink = Lines()
    async with open_session(Dying, {}, {}, sink) as runner:
        assert runner.claim("start") and await runner.start()
        assert runner.claim("run")
        with anyio.fail_after(10):
            assert not await runner.run({"kill": True})
        assert runner.claim("run")
        assert not await runner.run({})  # fails at once: the application is gone
    fails = [line for line in sink.lines if line.startswith("openjd_fail: ")]
    assert len(fails) == 2
    assert all("exited unexpectedly (exit code 3)" in line for line in fails)
    assert fails[0].startswith("openjd_fail: Error encountered while running adaptor: The application")


class Command(AsyncCommandAdaptor):
    def get_command(self, run_data: dict[str, Any]) -> list[str]:
        code = int(run_data.get("code", 0))
        return [PY, "-c", f"print('openjd_progress: 50'); print('working'); raise SystemExit({code})"]


async def test_command_adaptor_exit_codes() -> None:
    ok, bad = Lines(), Lines()
    assert await run_all(Command, {}, {}, {"code": 0}, ok) == 0
    assert await run_all(Command, {}, {}, {"code": 5}, bad) == 1
    assert "STDOUT: working" in ok.lines
    assert any(line.endswith("exited with code 5") and line.startswith("openjd_fail: ") for line in bad.lines)


async def test_context_protocol_lines() -> None:
    sink = Lines()
    async with open_session(Sleeper, {}, {}, sink) as runner:
        ctx = runner.ctx
        ctx.progress(42)
        ctx.progress(150)
        ctx.progress(float("nan"))
        ctx.status("two\nlines")
        ctx.fail("bad\r\nthing")
        ctx.set_env("FOO_1", "a=b c")
        with pytest.raises(ValueError):
            ctx.set_env("1BAD", "x")
        with pytest.raises(ValueError):
            ctx.set_env("GOOD", "multi\nline")
    protocol = [line for line in sink.lines if line.startswith("openjd_")]
    assert protocol == [
        "openjd_progress: 42.0",
        "openjd_progress: 100.0",
        "openjd_status: two lines",
        "openjd_fail: bad thing",
        "openjd_env: FOO_1=a=b c",
    ]
