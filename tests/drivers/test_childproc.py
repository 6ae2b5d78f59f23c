"""aiofarm.drivers.childproc on real processes, pipes and ptys (no sleeps: every wait is
on output, on the child's exit, or on a condition with a deadline)."""

from __future__ import annotations

import errno
import os
import signal
import sys

import anyio
import psutil
import pytest

from aiofarm.drivers import childproc
from aiofarm.drivers.childproc import ChildChannel, describe_exit, invalid_command, spawn
from aiofarm.errors import ConnectionLost, InvalidSpec
from aiofarm.models import command_argv
from tests.conftest import open_fds
from tests.streams import read_all, read_until

pytestmark = pytest.mark.anyio

PY = sys.executable


async def until_gone(pid: int, timeout: float = 10) -> None:
    """Wait for another process to end, on its pidfd (readable once it has exited)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        with anyio.fail_after(timeout):
            await anyio.wait_readable(pidfd)
    finally:
        os.close(pidfd)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


# -- commands and exit statuses ------------------------------------------------------------


def test_command_argv_is_the_one_shell_rule() -> None:
    assert command_argv("echo $HOME") == ("/bin/sh", "-c", "echo $HOME")
    assert command_argv(["echo", "$HOME"]) == ("echo", "$HOME")


def test_describe_exit() -> None:
    assert describe_exit(0) == "exit code 0"
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(childproc.UNKNOWN_EXIT) == "exit status unknown"


@pytest.mark.parametrize(
    ("script", "code"), [("exit 0", 0), ("exit 3", 3), ("kill -KILL $$", -signal.SIGKILL), ("kill -TERM $$", -15)]
)
async def test_exit_codes(script: str, code: int) -> None:
    child = spawn(command_argv(script), stdout=False, stderr=False)
    with anyio.fail_after(10):
        assert await child.wait() == code
    assert child.returncode == code and child.exited


# -- pipes -----------------------------------------------------------------------------


async def test_pipe_round_trip_and_eof() -> None:
    channel = ChildChannel.start(["cat"], stdin=True)
    try:
        assert not channel.tty
        for line in (b"hello\n", b"second\n"):
            await channel.send(line)
            assert await read_until(channel, line) == line
        await channel.send_eof()
        assert await channel.receive() is None
        with anyio.fail_after(10):
            assert await channel.wait() == 0
    finally:
        await channel.aclose()


async def test_stdout_and_stderr_stay_apart_and_unrequested_go_to_devnull() -> None:
    channel = ChildChannel.start(command_argv("echo out; echo err >&2; exit 3"))
    try:
        assert await read_all(channel) == {1: b"out\n", 2: b"err\n"}
        assert await channel.wait() == 3
    finally:
        await channel.aclose()
    only_err = ChildChannel.start(command_argv("echo out; echo err >&2"), stdout=False)
    try:
        assert await read_all(only_err) == {2: b"err\n"}
    finally:
        await only_err.aclose()


async def test_cwd_and_env(tmp_path: os.PathLike[str]) -> None:
    channel = ChildChannel.start(
        command_argv('pwd; echo "$X"'), cwd=str(tmp_path), env={"X": "from-env", "PATH": os.environ["PATH"]}
    )
    try:
        out = await read_all(channel)
    finally:
        await channel.aclose()
    assert out[1].decode().split() == [str(tmp_path), "from-env"]


async def test_large_output_is_not_lost_to_flow_control() -> None:
    size = 3 * childproc.READ_BUFFER + 12345
    channel = ChildChannel.start([PY, "-c", f"import sys; sys.stdout.buffer.write(b'x' * {size})"])
    try:
        out = await read_all(channel, timeout=30)
    finally:
        await channel.aclose()
    assert out == {1: b"x" * size}


async def test_writing_to_a_closed_stdin_is_connection_lost() -> None:
    # the child closes its end: EPIPE
    script = "import os, signal; os.close(0); print('closed', flush=True); signal.pause()"
    channel = ChildChannel.start([PY, "-c", script], stdin=True)
    try:
        await read_until(channel, b"closed")
        with pytest.raises(ConnectionLost, match="stdin is closed"):
            for _ in range(64):  # fills nothing: the first write already fails
                await channel.send(b"x" * 65536)
    finally:
        await channel.aclose()
    # we closed it ourselves
    cat = ChildChannel.start(["cat"], stdin=True)
    try:
        await cat.send_eof()
        with pytest.raises(ConnectionLost, match="stdin is closed"):
            await cat.send(b"late\n")
    finally:
        await cat.aclose()
    # it was never opened
    nostdin = ChildChannel.start(["true"])
    try:
        with pytest.raises(ConnectionLost, match="stdin is closed"):
            await nostdin.send(b"x")
    finally:
        await nostdin.aclose()


# -- ptys ------------------------------------------------------------------------------

_TTY_PROBE = """
import os, sys, termios
fd = sys.stdin.fileno()
leader = os.getsid(0) == os.getpid()
fg = os.tcgetpgrp(fd) == os.getpgrp()
cols, rows = os.get_terminal_size(fd)
canon = bool(termios.tcgetattr(fd)[3] & termios.ICANON)
print(f"tty={os.isatty(fd)} leader={leader} foreground={fg} size={rows}x{cols} canon={canon} end", flush=True)
"""


async def test_pty_is_the_controlling_terminal_at_the_given_size() -> None:
    channel = ChildChannel.start([PY, "-c", _TTY_PROBE], tty=True, size=(40, 132))
    try:
        assert channel.tty
        out = (await read_until(channel, b"end")).decode()
        assert "tty=True leader=True foreground=True size=40x132 canon=True" in out
        assert await channel.wait() == 0
    finally:
        await channel.aclose()


async def test_raw_pty() -> None:
    channel = ChildChannel.start([PY, "-c", _TTY_PROBE], tty=True, raw=True)
    try:
        assert "canon=False" in (await read_until(channel, b"end")).decode()
    finally:
        await channel.aclose()


async def test_pty_stdout_and_stderr_arrive_merged_on_fileno_1() -> None:
    channel = ChildChannel.start(command_argv("echo out; echo err >&2"), tty=True)
    try:
        out = await read_all(channel)
    finally:
        await channel.aclose()
    assert set(out) == {1}
    assert out[1].replace(b"\r\n", b"\n") == b"out\nerr\n"


async def test_resize_delivers_sigwinch_with_the_new_size() -> None:
    script = (
        "import os, signal, sys\n"
        "signal.signal(signal.SIGWINCH, lambda *a: print('size=%dx%d' % os.get_terminal_size(0)[::-1], flush=True))\n"
        "print('ready', flush=True)\n"
        "sys.stdin.readline()\n"
    )
    channel = ChildChannel.start([PY, "-c", script], tty=True, stdin=True)
    try:
        await read_until(channel, b"ready")
        await channel.resize(50, 160)
        await read_until(channel, b"size=50x160")
        await channel.send(b"\n")
        assert await channel.wait() == 0
    finally:
        await channel.aclose()


async def test_pty_eof_is_the_terminals_veof() -> None:
    channel = ChildChannel.start(["cat"], tty=True, stdin=True)
    try:
        await channel.send(b"hi\n")
        await read_until(channel, b"hi\r\nhi\r\n")  # the echo, then cat's copy
        await channel.send_eof()
        with anyio.fail_after(10):
            assert await channel.wait() == 0
    finally:
        await channel.aclose()


async def test_unread_pty_output_is_drained_so_the_child_never_blocks() -> None:
    size = 4 * childproc.READ_BUFFER
    channel = ChildChannel.start(
        [PY, "-c", f"import sys; sys.stdout.write('y' * {size}); sys.stdout.flush()"],
        tty=True,
        stdout=False,
        stderr=False,
    )
    try:
        with anyio.fail_after(30):
            assert await channel.wait() == 0
        assert await channel.receive() is None
    finally:
        await channel.aclose()


# -- stopping and reaping ----------------------------------------------------------------


async def test_signal_group_reaches_the_whole_group() -> None:
    channel = ChildChannel.start(command_argv("sleep 600 & echo $!; wait"))
    try:
        pid = int((await read_until(channel, b"\n")).decode())
        assert channel.child.signal_group(signal.SIGTERM)
        with anyio.fail_after(10):
            assert await channel.wait() == -signal.SIGTERM
        await until_gone(pid)
        assert not channel.child.signal_group(signal.SIGTERM)  # reaped: nothing to signal
    finally:
        await channel.aclose()


async def test_what_the_child_leaves_in_its_group_is_killed_when_it_exits() -> None:
    channel = ChildChannel.start(command_argv("sleep 600 >/dev/null 2>&1 & echo $!"))
    try:
        pid = int((await read_until(channel, b"\n")).decode())
        assert await channel.wait() == 0
        await until_gone(pid)
    finally:
        await channel.aclose()


async def test_close_sends_term_then_kill_after_the_grace() -> None:
    # exits on SIGTERM: reported as killed by it
    polite = ChildChannel.start(command_argv("echo ready; exec sleep 600"), grace=30)
    await read_until(polite, b"ready")
    with anyio.fail_after(10):  # well inside the grace: TERM did it
        await polite.aclose()
    assert polite.returncode == -signal.SIGTERM
    # ignores SIGTERM: killed once the grace is over
    stubborn = ChildChannel.start(command_argv("trap '' TERM; echo ready; while :; do :; done"), grace=0.2)
    await read_until(stubborn, b"ready")
    with anyio.fail_after(10):
        await stubborn.aclose()
    assert stubborn.returncode == -signal.SIGKILL


async def test_close_completes_when_cancelled_and_leaks_nothing() -> None:
    before = open_fds()
    pids = []
    for tty in (False, True):
        channel = ChildChannel.start(command_argv("echo ready; exec sleep 600"), tty=tty, stdin=True)
        pids.append(channel.pid)
        await read_until(channel, b"ready")
        with anyio.CancelScope() as scope:
            scope.cancel()
            await channel.aclose()
        assert channel.returncode == -signal.SIGKILL
    assert all(gone(pid) for pid in pids)
    assert open_fds() == before


async def test_reaping_without_pidfd_falls_back_to_a_waiting_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(errno.ENOSYS, "pidfd_open")

    monkeypatch.setattr(childproc, "_pidfd_open", no_pidfd)
    child = spawn(command_argv("exit 7"), stdout=False, stderr=False)
    assert child._pidfd is None
    with anyio.fail_after(10):
        assert await child.wait() == 7
    channel = ChildChannel.start(command_argv("echo ready; exec sleep 600"))
    await read_until(channel, b"ready")
    await channel.aclose()
    assert channel.returncode == -signal.SIGKILL


async def test_exit_callbacks_run_once_reaped() -> None:
    seen: list[int | None] = []
    child = spawn(["true"], stdout=False, stderr=False)
    child.add_exit_callback(lambda c: seen.append(c.returncode))
    await child.wait()
    child.add_exit_callback(lambda c: seen.append(c.returncode))  # already reaped: at once
    assert seen == [0, 0]


# -- starting ----------------------------------------------------------------------------


async def test_start_failures_are_oserrors_the_caller_can_name() -> None:
    before = open_fds()
    with pytest.raises(FileNotFoundError) as missing:
        spawn(["/no/such/program"], stdin=True)
    assert invalid_command(missing.value, ["/no/such/program"], None).field == "command"
    with pytest.raises(OSError) as bad_cwd:
        spawn(["true"], cwd="/no/such/dir")
    assert invalid_command(bad_cwd.value, ["true"], "/no/such/dir").field == "cwd"
    with pytest.raises(PermissionError) as denied:
        spawn(["/etc/passwd"], tty=True)
    err = invalid_command(denied.value, ["/etc/passwd"], None)
    assert isinstance(err, InvalidSpec) and err.field == "command"
    with pytest.raises(InvalidSpec):
        spawn([])
    assert open_fds() == before


@pytest.mark.skipif(os.geteuid() != 0, reason="running as another user needs root")
async def test_runs_as_another_user_with_only_its_primary_group() -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    channel = ChildChannel.start(command_argv("id -u; id -G"), user="nobody")
    try:
        out = (await read_all(channel))[1].decode()
    finally:
        await channel.aclose()
    assert out.split() == [str(nobody.pw_uid), str(nobody.pw_gid)]
