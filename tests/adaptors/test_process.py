"""AsyncProcess: process group, decoding, line cap, callbacks, expect, TERM then KILL."""

from __future__ import annotations

import os
import re
import signal
import sys

import anyio
import anyio.lowlevel
import psutil
import pytest

from aiofarm.adaptors import ApplicationExited, AsyncProcess, RegexCallback

pytestmark = pytest.mark.anyio

PY = sys.executable


async def test_output_lines_decoded_forwarded_and_capped() -> None:
    lines: list[str] = []
    script = (
        "import sys; w = sys.stdout.buffer.write;"
        "w(b'plain\\n'); w(b'bad \\xff\\xfe utf8\\r\\n'); w(b'x' * 25 + b'\\n');"
        "w(b'no newline at the end'); sys.stderr.write('on stderr\\n')"
    )
    async with AsyncProcess.open([PY, "-c", script], emit=lines.append, line_limit=10, stdin=False) as proc:
        assert await proc.wait() == 0
    assert "STDOUT: plain" in lines
    # backslash-replaced, then cut at 10 characters (the \r of \r\n dropped)
    assert lines[1:3] == ["STDOUT: bad \\xff\\x", "STDOUT: fe utf8"]
    assert lines.count("STDOUT: xxxxxxxxxx") == 2 and "STDOUT: xxxxx" in lines
    tail = [line[len("STDOUT: ") :] for line in lines[6:] if line.startswith("STDOUT: ")]
    assert "".join(tail) == "no newline at the end" and max(map(len, tail)) == 10
    assert "STDERR: on stderr" in lines


async def test_sync_and_async_callbacks_and_expect() -> None:
    seen: list[str] = []
    async_seen: list[str] = []

    async def later(m: re.Match[str]) -> None:
        await anyio.lowlevel.checkpoint()
        async_seen.append(m.group(1))

    callbacks = [
        RegexCallback(r"^progress (\d+)", lambda m: seen.append(m.group(1)), exit_if_matched=True),
        RegexCallback([r"^progress (\d+)", r"^note (\w+)"], later),
    ]
    script = "import sys\nfor line in sys.stdin:\n    print(line.strip(), flush=True)"
    async with AsyncProcess.open([PY, "-c", script], emit=lambda _: None, stdout_callbacks=callbacks) as proc:
        await proc.send_line("progress 10")
        await proc.send_line("note hello")
        found = await proc.expect(r"^note (\w+)$", timeout=10)
        assert found.group(1) == "hello"
        await proc.close_stdin()
        assert await proc.wait() == 0
    assert seen == ["10"]
    assert async_seen == ["hello"]  # exit_if_matched kept the progress line from the second


async def test_expect_raises_when_the_application_exits() -> None:
    async with AsyncProcess.open([PY, "-c", "print('bye')"], emit=lambda _: None) as proc:
        with pytest.raises(ApplicationExited) as info:
            await proc.expect(r"^never$", timeout=10)
        assert info.value.code == 0


async def test_terminate_kills_the_whole_group_after_the_grace() -> None:
    # the application ignores SIGTERM and has a child of its own
    script = (
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\n"
        "print(child.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    async with AsyncProcess.open([PY, "-c", script], emit=lambda _: None, grace=0.5) as proc:
        child_pid = int((await proc.expect(r"^(\d+)$", timeout=10)).group(1))
        assert os.getpgid(proc.pid) == proc.pid  # its own group
        code = await proc.terminate()
    assert code == -signal.SIGKILL
    # the grandchild got the SIGKILL too (it may linger as a zombie of its new parent)
    try:
        child = psutil.Process(child_pid)
    except psutil.NoSuchProcess:
        return
    _, alive = psutil.wait_procs([child], timeout=10)
    assert all(p.status() == psutil.STATUS_ZOMBIE for p in alive)


async def test_unexpected_exit_is_reported_and_expected_exit_is_not() -> None:
    reported: list[int | None] = []
    async with anyio.create_task_group() as tg:
        crash = await AsyncProcess.start(
            [PY, "-c", "import sys; sys.exit(3)"],
            task_group=tg,
            emit=lambda _: None,
            on_unexpected_exit=lambda p: reported.append(p.returncode),
        )
        quiet = await AsyncProcess.start(
            [PY, "-c", "import sys; sys.stdin.readline()"],
            task_group=tg,
            emit=lambda _: None,
            on_unexpected_exit=lambda p: reported.append(p.returncode),
        )
        assert await crash.wait() == 3
        quiet.expect_exit()
        await quiet.send_line("quit")
        assert await quiet.wait() == 0
    assert reported == [3]


async def test_path_mapping_rules_reach_the_adaptor() -> None:
    from aiofarm.adaptors import AdaptorContext, AsyncAdaptor
    from aiofarm.adaptors.output import StdoutSink
    from aiofarm.adaptors.session import rules_from_openjd

    rules = rules_from_openjd(
        {
            "version": "pathmapping-1.0",
            "path_mapping_rules": [
                {"source_path_format": "WINDOWS", "source_path": "Z:\\proj", "destination_path": "/mnt/proj"},
                {"source_path_format": "POSIX", "source_path": "/old", "destination_path": "/new"},
            ],
        }
    )

    class Probe(AsyncAdaptor):
        async def on_run(self, run_data: dict[str, object]) -> None:
            pass

    adaptor = Probe({}, ctx=AdaptorContext(StdoutSink()), path_mapping_rules=rules)
    assert adaptor.map_path("z:\\PROJ\\shot\\a.exr") == "/mnt/proj/shot/a.exr"
    assert adaptor.map_path("/old/x") == "/new/x"
    assert adaptor.map_path("/elsewhere") == "/elsewhere"
