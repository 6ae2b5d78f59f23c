"""attach / exec through StdStream: real processes on pipes and real ptys."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import anyio
import psutil
import pytest

from aiofarm.errors import ConnectionLost, InvalidSpec, JobNotFound, JobNotRunning

from .conftest import PY, Farm, gone, open_fds, read_all, read_until, until

pytestmark = pytest.mark.anyio

SLEEPER = ["sleep", "60"]


async def test_exec_echo_round_trip_over_pipes(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    async with farm.jobs.exec(job, ["cat"], stdin=True) as stream:
        assert not stream.tty
        for line in (b"hello\n", b"second line\n"):
            await stream.write_in(line)
            assert await read_until(stream, line) == line
        await stream.close_in()
        assert await stream.read_out() is None
        assert await stream.wait() == 0
        assert stream.exit_code == 0


async def test_exec_keeps_stdout_and_stderr_apart(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    async with farm.jobs.exec(job, "echo out; echo err >&2; exit 3") as stream:
        out = await read_all(stream)
        assert out == {1: b"out\n", 2: b"err\n"}
        assert await stream.wait() == 3


async def test_exec_runs_in_the_jobs_cwd_and_env(farm: Farm, tmp_path: Path) -> None:
    env = dict(os.environ, AIOFARM_TEST_VALUE="from-the-job")
    job = await farm.start(SLEEPER, cwd=str(tmp_path), env=env)
    async with farm.jobs.exec(job, ["sh", "-c", 'pwd; echo "$AIOFARM_TEST_VALUE"']) as stream:
        out = await read_all(stream)
    assert out[1].decode().split() == [str(tmp_path), "from-the-job"]


@pytest.mark.parametrize(
    ("script", "code"), [("exit 0", 0), ("exit 3", 3), ("kill -KILL $$", -signal.SIGKILL)]
)
async def test_exec_exit_codes(farm: Farm, script: str, code: int) -> None:
    job = await farm.start(SLEEPER)
    async with farm.jobs.exec(job, ["sh", "-c", script]) as stream:
        assert await read_all(stream) == {}
        assert await stream.wait() == code
        assert stream.exit_code == code


async def test_exec_tty_is_a_terminal_and_resize_changes_stty_size(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    script = "test -t 0 && echo IS-TTY; stty size; read x; stty size; exit 5"
    async with farm.jobs.exec(job, ["sh", "-c", script], tty=True, stdin=True) as stream:
        assert stream.tty
        first = await read_until(stream, b"\n24 80")
        assert b"IS-TTY" in first
        await stream.resize(rows=40, cols=120)
        await stream.write_in(b"go\n")
        rest = await read_all(stream)
        assert b"40 120" in rest[1]
        assert list(rest) == [1]  # a terminal merges everything on fileno 1
        assert await stream.wait() == 5


async def test_exec_without_tty_is_not_a_terminal(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    async with farm.jobs.exec(job, ["sh", "-c", "test -t 0"], stdin=True) as stream:
        await read_all(stream)
        assert await stream.wait() == 1


async def test_tty_close_in_sends_eof_to_cat(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    async with farm.jobs.exec(job, ["cat"], tty=True, stdin=True) as stream:
        await stream.write_in(b"abc\n")
        await read_until(stream, b"abc\r\nabc\r\n")  # the echo of the terminal, then cat's
        await stream.close_in()
        await read_all(stream)
        assert await stream.wait() == 0


async def test_leaving_exec_kills_the_process_group(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    before = open_fds()
    async with farm.jobs.exec(job, ["sh", "-c", "sleep 60 & echo $!; wait"]) as stream:
        grandchild = int((await read_until(stream, b"\n")).strip())
        assert psutil.pid_exists(grandchild)
    await until(lambda: gone(grandchild), 5)
    assert not open_fds() - before  # the session's WebSocket may have taken an idle pooled connection


@pytest.mark.parametrize("tty", [False, True])
async def test_cancel_in_the_middle_of_a_read_leaves_nothing(farm: Farm, tty: bool) -> None:
    job = await farm.start(SLEEPER)
    before = open_fds()
    pid = None
    with anyio.move_on_after(0.5) as scope:
        async with farm.jobs.exec(job, ["sleep", "60"], tty=tty) as stream:
            pid = stream._channel.pid
            await stream.read_out()  # blocks: sleep writes nothing
    assert scope.cancelled_caught and pid is not None
    assert not psutil.pid_exists(pid)
    assert not open_fds() - before


async def test_cancel_in_the_middle_of_a_write_leaves_nothing(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    before = open_fds()
    pid = None
    with anyio.move_on_after(0.5) as scope:
        async with farm.jobs.exec(job, ["sleep", "60"], stdin=True) as stream:
            pid = stream._channel.pid
            await stream.write_in(b"x" * (16 << 20))  # nobody reads: the pipe fills up
    assert scope.cancelled_caught and pid is not None
    assert not psutil.pid_exists(pid)
    assert not open_fds() - before


async def test_read_and_write_run_concurrently(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    payload = os.urandom(4 << 20)
    got = bytearray()
    async with farm.jobs.exec(job, ["cat"], stdin=True) as stream:

        async def reader() -> None:
            while (msg := await stream.read_out()) is not None:
                got.extend(msg.data)

        async with anyio.create_task_group() as tg:
            tg.start_soon(reader)
            for i in range(0, len(payload), 100_000):
                await stream.write_in(payload[i : i + 100_000])
            await stream.close_in()
        assert await stream.wait() == 0
    assert bytes(got) == payload


async def test_attach_round_trip_and_detach_keeps_the_job(farm: Farm) -> None:
    job = await farm.start(["cat"], stdin=True)
    for attempt in (b"first\n", b"second\n"):
        async with farm.jobs.attach(job, stdin=True) as stream:
            await stream.write_in(attempt)
            assert await read_until(stream, attempt) == attempt
        assert (await farm.status(job)).status.is_active
    async with farm.jobs.attach(job, stdin=True) as stream:
        await stream.close_in()  # cat sees EOF and ends the job
        assert await stream.read_out() is None
        assert await stream.wait() == 0
    assert (await farm.until_finished(job)).exit_code == 0


async def test_two_attachers_read_at_once(farm: Farm) -> None:
    job = await farm.start(["cat"], stdin=True)
    async with farm.jobs.attach(job, stdin=True) as a, farm.jobs.attach(job, stdin=False) as b:
        await a.write_in(b"to both\n")
        assert await read_until(a, b"to both\n") == b"to both\n"
        assert await read_until(b, b"to both\n") == b"to both\n"
        with pytest.raises(InvalidSpec):
            await b.write_in(b"nope")
    await farm.jobs.cancel(job)


async def test_attach_to_a_tty_job_and_resize(farm: Farm) -> None:
    job = await farm.start(["sh", "-c", "while read x; do stty size; done"], tty=True, stdin=True)
    async with farm.jobs.attach(job, stdin=True) as stream:
        assert stream.tty
        await stream.resize(rows=33, cols=99)
        await stream.write_in(b"a\n")
        await read_until(stream, b"33 99")
        await stream.resize(rows=50, cols=150)
        await stream.write_in(b"b\n")
        await read_until(stream, b"50 150")
    await farm.jobs.cancel(job)


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


async def test_signal_reaches_the_job_process_group(farm: Farm, tmp_path: Path) -> None:
    script = (
        f'trap "echo got >> {tmp_path}/trapped" USR1; '
        f"sleep 60 & echo $! > {tmp_path}/pid; wait; sleep 60"
    )
    job = await farm.start(["sh", "-c", script])
    pidfile = tmp_path / "pid"
    await until(lambda: pidfile.exists() and pidfile.read_text().strip() != "")
    grandchild = int((tmp_path / "pid").read_text())
    # signalled between its fork and its exec, the child would take the shell's trap
    # (and lose it at exec): wait until it is `sleep`
    await until(lambda: _cmdline(grandchild).startswith(b"sleep"))
    await farm.jobs.send_signal(job, signal.SIGUSR1)
    await until((tmp_path / "trapped").exists)  # the shell got it
    await until(lambda: gone(grandchild))  # and so did its child in the same group
    assert (await farm.status(job)).status.is_active  # the shell survived: it trapped it
    await farm.jobs.cancel(job)


async def test_attach_exec_on_unknown_or_finished_jobs_raise_typed_errors(farm: Farm) -> None:
    with pytest.raises(JobNotFound):
        async with farm.jobs.attach("no-such-job"):
            pass
    with pytest.raises(JobNotFound):
        async with farm.jobs.exec("no-such-job", ["true"]):
            pass
    job = await farm.start(["true"], running=False)
    await farm.until_finished(job)
    with pytest.raises(JobNotRunning):
        async with farm.jobs.attach(job):
            pass
    with pytest.raises(JobNotRunning):
        async with farm.jobs.exec(job, ["true"]):
            pass


async def test_bad_exec_input_raises_invalid_spec(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    for command, field in (
        ([], "command"),
        ("  ", "command"),
        ([1], "command[0]"),
        (["/no/such/program"], "command"),
    ):
        with pytest.raises(InvalidSpec) as info:
            async with farm.jobs.exec(job, command):
                pass
        assert info.value.field == field
    async with farm.jobs.exec(job, ["cat"], stdin=True) as stream:
        with pytest.raises(InvalidSpec):
            await stream.resize(rows=0, cols=80)
        with pytest.raises(InvalidSpec):
            await stream.write_in("text")  # type: ignore[arg-type]
        await stream.close_in()
        with pytest.raises(ConnectionLost):
            await stream.write_in(b"after close")


async def test_many_execs_in_parallel(farm: Farm) -> None:
    job = await farm.start(SLEEPER)
    results: dict[int, bytes] = {}

    async def one(i: int) -> None:
        async with farm.jobs.exec(job, [PY, "-c", f"print({i} * 2)"]) as stream:
            results[i] = (await read_all(stream))[1]

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(one, i)
    assert results == {i: b"%d\n" % (i * 2) for i in range(8)}


async def test_exec_tty_starts_with_the_given_size(farm: Farm) -> None:
    from aiofarm.stdio import open_exec

    job = await farm.start(SLEEPER)
    async with open_exec(farm.client.driver, job, ["stty", "size"], tty=True, size=(50, 132)) as s:
        assert (await read_all(s))[1] == b"50 132\r\n"
    with pytest.raises(InvalidSpec) as info:
        async with open_exec(farm.client.driver, job, ["true"], tty=True, size=(0, 80)):
            pass
    assert info.value.field == "size"


async def test_an_embedded_farm_execs_in_the_clients_own_process(tmp_path: Path) -> None:
    from aiofarm import Client

    async with Client(f"local://{tmp_path}/state?embedded=true") as client:
        farm = Farm(client)
        job = await farm.start(SLEEPER)
        async with farm.jobs.exec(job, 'echo "$PPID"; cat', stdin=True, tty=True) as stream:
            assert int(await read_until(stream, b"\n")) == os.getpid()
            pid = stream._channel.pid
            await stream.write_in(b"ping\n")
            await read_until(stream, b"ping\r\nping\r\n")
        assert not psutil.pid_exists(pid)
        await farm.jobs.cancel(job)
