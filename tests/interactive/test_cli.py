"""``aiofarm exec / attach / port-forward`` as real child processes, -it on a real pty.

The test process owns the local farm (it started the job); the CLI is a second
client of the same state dir, as it is for a user typing in another terminal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import termios
from pathlib import Path

import anyio
import pytest

from aiofarm import Client
from aiofarm.drivers.local.interactive import open_job_pty
from aiofarm.errors import JobNotFound
from aiofarm.models import JobStatus, Message
from tests.streams import receive_to_eof

from .conftest import gone, until

pytestmark = pytest.mark.anyio

CLI = (sys.executable, "-m", "aiofarm.cli")


@pytest.fixture
async def owner(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with Client(f"local://{tmp_path}/state") as farm:
        yield farm, f"local://{tmp_path}/state"


async def _running(farm: Client, command: list[str], **kw: object) -> str:
    job = await farm.jobs.start(command=command, **kw)  # type: ignore[arg-type]

    async def running() -> bool:
        return (await farm.jobs.get(job.id)).status.value == "running"

    await until(running, 20)
    return job.id


def _terminal_size(pid: int) -> tuple[int, int]:
    """(rows, cols) of the terminal on ``pid``'s stdin."""
    fd = os.open(f"/proc/{pid}/fd/0", os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        cols, rows = os.get_terminal_size(fd)
    finally:
        os.close(fd)
    return rows, cols


def _cli(url: str, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    env = dict(os.environ, NO_COLOR="1")
    return subprocess.run(
        [*CLI, "--url", url, *args], input=stdin, capture_output=True, timeout=60, env=env
    )


async def pty_until(master: int, needle: bytes, out: bytes, timeout: float = 30) -> bytes:
    """Read the pty until ``needle``; on timeout, fail showing what came."""
    try:
        with anyio.fail_after(timeout):
            while needle not in out:
                await anyio.wait_readable(master)
                out += os.read(master, 65536)
    except TimeoutError:
        raise AssertionError(f"no {needle!r} on the terminal; it shows {out!r}") from None
    return out


def _on_pty(slave: int, url: str, *args: str) -> subprocess.Popen[bytes]:
    """The CLI with the pty slave as its terminal, as in an interactive shell."""
    return subprocess.Popen(
        [*CLI, "--url", url, *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env=dict(os.environ, NO_COLOR="1"),
    )


async def test_exec_from_another_process_uses_job_context(owner, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(farm, ["sleep", "60"], cwd=str(tmp_path), env={"JOBVAR": "42"})
    r = await anyio.to_thread.run_sync(
        lambda: _cli(url, "exec", job, "--", "sh", "-c", 'pwd; echo "$JOBVAR"; echo e >&2; exit 3')
    )
    assert r.returncode == 3
    assert r.stdout.decode().split() == [str(tmp_path), "42"]
    assert r.stderr == b"e\n"
    r = await anyio.to_thread.run_sync(lambda: _cli(url, "exec", "-i", job, "--", "cat"))
    assert r.returncode == 0 and r.stdout == b""
    r = await anyio.to_thread.run_sync(
        lambda: _cli(url, "exec", "-i", job, "--", "tr", "a-z", "A-Z", stdin=b"piped in\n")
    )
    assert (r.returncode, r.stdout) == (0, b"PIPED IN\n")
    await farm.jobs.cancel(job)


async def test_exec_errors_exit_2_with_one_line(owner) -> None:  # type: ignore[no-untyped-def]
    _, url = owner
    r = await anyio.to_thread.run_sync(lambda: _cli(url, "exec", "no-such-job", "--", "true"))
    assert r.returncode == 2
    assert b"not found" in r.stderr and b"Traceback" not in r.stderr


async def test_exec_it_raw_terminal_size_and_restore(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(farm, ["sleep", "60"])
    master, slave = open_job_pty(rows=31, cols=101)
    before = termios.tcgetattr(slave)
    # the remote pty has this terminal's size from the first instant
    script = "test -t 0 && echo IS-TTY; stty size; read x; echo got-$x"
    proc = _on_pty(slave, url, "exec", "-it", job, "--", "sh", "-c", script)
    out = b""
    try:
        with anyio.fail_after(60):
            out = await pty_until(master, b"31 101", out)
            # while the session runs, the local terminal is raw (no canonical mode)
            await until(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON)
            os.write(master, b"typed\r")
            out = await pty_until(master, b"got-typed", out)
            code = await anyio.to_thread.run_sync(proc.wait)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert b"IS-TTY" in out
    assert code == 0
    assert after == before  # restored on exit
    await farm.jobs.cancel(job)


async def test_exec_it_forwards_window_size_changes(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(farm, ["sleep", "60"])
    master, slave = open_job_pty(rows=20, cols=70)
    script = "echo ready $$; read x; stty size; read x; stty size"
    proc = _on_pty(slave, url, "exec", "-it", job, "--", "sh", "-c", script)
    out = b""
    try:
        with anyio.fail_after(60):
            out = await pty_until(master, b"ready", out)
            out = await pty_until(master, b"\n", out)
            shell = int(out.split(b"ready", 1)[1].split()[0])
            await until(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON)
            os.write(master, b"\r")
            out = await pty_until(master, b"20 70", out)
            # the terminal changes size: the kernel signals the CLI, which resizes the remote pty
            from aiofarm.drivers.local.interactive import set_winsize

            set_winsize(master, 44, 132)
            os.killpg(proc.pid, signal.SIGWINCH)  # no controlling tty in the test: say it
            # the remote shell's terminal has the new size (state of another process)
            await until(lambda: _terminal_size(shell) == (44, 132))
            os.write(master, b"\r")
            out = await pty_until(master, b"44 132", out)
            assert await anyio.to_thread.run_sync(proc.wait) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        os.close(slave)
    await farm.jobs.cancel(job)


async def test_port_forward_command(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    from .test_portforward import ECHO_SERVER, free_port, wait_port

    port = free_port()
    job = await _running(farm, [sys.executable, "-c", ECHO_SERVER, str(port)])
    await wait_port(port)
    local = free_port()
    proc = await anyio.open_process(
        [*CLI, "--url", url, "port-forward", job, f"{local}:{port}"],
        env=dict(os.environ, NO_COLOR="1"),
    )
    try:
        await wait_port(local)
        async with await anyio.connect_tcp("127.0.0.1", local) as s:
            await s.send(b"hello")
            await s.send_eof()
            got = await receive_to_eof(s)
        assert got == b"hello<eof>"
        await farm.jobs.cancel(job)  # the forward stops by itself once the job ends
        with anyio.fail_after(30):
            assert await proc.wait() == 0
        assert proc.stdout is not None
        out = (await proc.stdout.receive()).decode()  # kubectl's words, on stdout
        assert f"Forwarding from 127.0.0.1:{local} -> {port}" in out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()


async def test_bad_port_spec(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(farm, ["sleep", "60"])
    r = await anyio.to_thread.run_sync(lambda: _cli(url, "port-forward", job, "x:y"))
    assert r.returncode == 2 and b"LOCAL:REMOTE" in r.stderr
    await farm.jobs.cancel(job)


async def test_attach_from_a_second_client_goes_through_the_owner(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(
        farm, ["sh", "-c", "while read x; do echo got $x; done; exit 6"], stdin=True
    )
    async with Client(url) as reader:
        for word in (b"one", b"two"):  # attach, talk, detach, twice: the job goes on
            async with reader.jobs.attach(job, stdin=True) as stream:
                await stream.write_in(word + b"\n")
                with anyio.fail_after(10):
                    assert await stream.read_out() == Message(1, b"got " + word + b"\n")
            assert (await farm.jobs.get(job)).status is JobStatus.RUNNING
        with pytest.raises(JobNotFound):
            async with reader.jobs.attach("no-such-job"):
                pass
        async with reader.jobs.attach(job, stdin=True) as stream:
            await stream.close_in()
            assert await stream.wait() == 6
            assert stream.exit_code == 6


async def test_attach_command_pipes_stdin_and_exits_with_the_jobs_code(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(
        farm, ["sh", "-c", "while read x; do echo got $x; done; exit 6"], stdin=True
    )
    r = await anyio.to_thread.run_sync(lambda: _cli(url, "attach", "-i", job, stdin=b"one\ntwo\n"))
    assert (r.returncode, r.stdout) == (6, b"got one\ngot two\n")


async def test_attach_it_to_a_tty_job_and_detach_with_ctrl_bracket(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(
        farm, ["sh", "-c", "while read x; do echo got-$x; stty size; done"], tty=True, stdin=True
    )
    master, slave = open_job_pty(rows=27, cols=91)
    before = termios.tcgetattr(slave)
    proc = _on_pty(slave, url, "attach", "-i", job)
    out = b""
    try:
        with anyio.fail_after(60):
            out = await pty_until(master, b"Ctrl-] detaches", out)
            await until(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON)
            os.write(master, b"hello\r")
            out = await pty_until(master, b"got-hello", out)
            out = await pty_until(master, b"27 91", out)
            os.write(master, b"\x1d")  # Ctrl-]
            code = await anyio.to_thread.run_sync(proc.wait)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        after = termios.tcgetattr(slave)
        os.close(master)
        os.close(slave)
    assert code == 0
    assert after == before
    assert (await farm.jobs.get(job)).status is JobStatus.RUNNING  # detaching left it alone
    await farm.jobs.cancel(job)


async def test_sigterm_to_exec_kills_the_command_too(owner) -> None:  # type: ignore[no-untyped-def]
    farm, url = owner
    job = await _running(farm, ["sleep", "60"])
    proc = await anyio.open_process(
        [*CLI, "--url", url, "exec", job, "--", "sh", "-c", "echo $$; exec sleep 60"],
        env=dict(os.environ, NO_COLOR="1"),
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            pid = int((await proc.stdout.receive()).strip())
            assert not gone(pid)
            proc.send_signal(signal.SIGTERM)
            assert await proc.wait() == 128 + signal.SIGTERM
        await until(lambda: gone(pid), 10)  # not orphaned: the CLI killed it on its way out
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()
    await farm.jobs.cancel(job)
