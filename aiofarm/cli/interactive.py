"""``aiofarm exec``, ``aiofarm attach``, ``aiofarm port-forward``.

Decisions are in docs/interactive.md:

- ``exec -it``: the command gets a pty sized like this terminal; this terminal goes
  to raw mode (every key, Ctrl-C included, goes to the remote side), window size
  changes follow (SIGWINCH), and the terminal is restored on any exit. The exit code
  is the command's (128+N when killed by signal N).
- ``attach``: output from now on; ``-i`` also forwards input. On a tty job with a
  local terminal the terminal goes raw and Ctrl-] detaches (Ctrl-C goes to the job);
  otherwise Ctrl-C detaches. Detaching never stops the job.
- ``port-forward ID LOCAL:REMOTE...`` (``:REMOTE`` a free port; ``PORT`` the same on both
  sides; the listening address printed on stdout; ``--address``) runs until
  Ctrl-C or the job ends; each failed connection is printed on stderr.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import click

from ..errors import ConnectionLost, InvalidSpec
from .common import SIGNAL_WORDS, Options, note, run_command
from .output import shell_status

if TYPE_CHECKING:
    from ..stdio import StdStream

__all__ = ["attach", "exec_", "port_forward", "register"]

DETACH_KEY = b"\x1d"  # Ctrl-]


@contextlib.contextmanager
def raw_terminal(fd: int, enabled: bool) -> Iterator[None]:
    """Put the terminal on ``fd`` in raw mode; restore it however the block ends."""
    if not enabled:
        yield
        return
    import termios
    import tty

    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view) :]
        except BlockingIOError:
            import select

            select.select([], [fd], [])


async def _pump_stdin(stream: StdStream, *, detach_key: bytes | None) -> bool:
    """Local stdin → the session. Returns True when the user pressed the detach key."""
    import anyio

    fd = sys.stdin.fileno()
    regular = stat.S_ISREG(os.fstat(fd).st_mode)  # epoll refuses regular files
    while True:
        if not regular:
            await anyio.wait_readable(fd)
        data = os.read(fd, 65536)
        if not data:
            await stream.close_in()
            return False
        if detach_key is not None and detach_key in data:
            before = data.split(detach_key, 1)[0]
            if before:
                await stream.write_in(before)
            return True
        try:
            await stream.write_in(data)
        except ConnectionLost:
            return False  # the remote stdin is gone; output may still come


class _Outcome:
    """How a session ended: output over, the user detached, or a signal stopped us."""

    def __init__(self) -> None:
        self.detached = False
        self.signal: int | None = None


async def _follow_signals(
    stream: StdStream, fd: int, raw: bool, outcome: _Outcome, stop: Any, ctrl_c_detaches: bool
) -> None:
    """SIGWINCH → resize (raw sessions); SIGTERM/SIGHUP → leave cleanly, so the terminal
    is restored and an exec'd process is killed, not orphaned; Ctrl-C → detach, where
    that is what it means (attach without a raw terminal)."""
    import anyio

    wanted = [signal.SIGTERM, signal.SIGHUP] + ([signal.SIGWINCH] if raw else [])
    if ctrl_c_detaches:
        wanted.append(signal.SIGINT)
    with anyio.open_signal_receiver(*wanted) as signals:
        async for signum in signals:
            if signum == signal.SIGWINCH:
                size = os.get_terminal_size(fd)
                await stream.resize(rows=size.lines, cols=size.columns)
            elif signum == signal.SIGINT:
                outcome.detached = True
                stop()
                return
            else:
                outcome.signal = int(signum)
                stop()
                return


async def _session(
    stream: StdStream,
    *,
    interactive: bool,
    raw: bool,
    detach_key: bytes | None,
    ctrl_c_detaches: bool = False,
) -> _Outcome:
    """Relay this terminal and the session until the output ends, a detach, or SIGTERM /
    SIGHUP."""
    import anyio

    in_fd = sys.stdin.fileno()
    out_fd, err_fd = sys.stdout.fileno(), sys.stderr.fileno()
    sys.stdout.flush()
    outcome = _Outcome()
    if raw:
        size = os.get_terminal_size(in_fd)
        await stream.resize(rows=size.lines, cols=size.columns)
    with raw_terminal(in_fd, raw):
        async with anyio.create_task_group() as tg:

            async def stdin_task() -> None:
                if await _pump_stdin(stream, detach_key=detach_key):
                    outcome.detached = True
                    tg.cancel_scope.cancel()

            if interactive:
                tg.start_soon(stdin_task)
            tg.start_soon(
                _follow_signals, stream, in_fd, raw, outcome, tg.cancel_scope.cancel, ctrl_c_detaches
            )
            while (msg := await stream.read_out()) is not None:
                _write_all(err_fd if msg.fileno == 2 else out_fd, msg.data)
            tg.cancel_scope.cancel()
    return outcome


async def _exec(
    opts: Options, job_id: str, command: tuple[str, ...], interactive: bool, tty: bool
) -> int:

    raw = tty and interactive and sys.stdin.isatty()
    size = None
    if raw:
        term = os.get_terminal_size(sys.stdin.fileno())
        size = (term.lines, term.columns)  # from the first instant, not a resize later
    async with (
        opts.client() as farm,
        farm.jobs.exec(job_id, list(command), tty=tty, stdin=interactive, size=size) as stream,
    ):
        outcome = await _session(stream, interactive=interactive, raw=raw, detach_key=None)
        if outcome.signal is not None:
            return 128 + outcome.signal  # leaving the context kills the command
        return 0 if (code := await stream.wait()) is None else shell_status(code)


async def _attach(opts: Options, job_id: str, interactive: bool) -> int:
    async with (
        opts.client() as farm,
        farm.jobs.attach(job_id, stdin=interactive, stdout=True, stderr=True) as stream,
    ):
        raw = stream.tty and interactive and sys.stdin.isatty()
        if raw:
            note(f"attached to {job_id}; Ctrl-] detaches", dim=True)
        outcome = await _session(
            stream,
            interactive=interactive,
            raw=raw,
            detach_key=DETACH_KEY if raw else None,
            ctrl_c_detaches=not raw,
        )
        if outcome.signal is not None:
            word = SIGNAL_WORDS.get(signal.Signals(outcome.signal), "signal")
            note(f"{word}: detached from {job_id}; it goes on", dim=True)
            return 128 + outcome.signal
        if outcome.detached:
            note(f"detached from {job_id}; it goes on (aiofarm attach {job_id} re-attaches)", dim=True)
            return 0
        return 0 if stream.exit_code is None else shell_status(stream.exit_code)


def parse_ports(spec: str) -> tuple[int, int]:
    """``LOCAL:REMOTE``; ``:REMOTE`` or ``0:REMOTE`` a free local port; ``PORT`` alone
    the same port on both sides (as kubectl)."""
    local, sep, remote = spec.rpartition(":")
    if not sep:
        local = remote
    try:
        return int(local or "0"), int(remote)
    except ValueError:
        raise InvalidSpec("ports", f"{spec!r} is not LOCAL:REMOTE (e.g. 8080:80, :80 or 80)") from None


async def _port_forward(opts: Options, job_id: str, specs: tuple[str, ...], addresses: list[str]) -> int:
    from ..portforward import ForwardError

    pairs = [parse_ports(spec) for spec in specs]  # all checked before connecting

    def on_error(err: ForwardError) -> None:
        peer = f"{err.peer[0]}:{err.peer[1]}" if err.peer else "?"
        note(f"connection {err.connection} from {peer}: {err.error}", fg="yellow")

    async with opts.client() as farm, contextlib.AsyncExitStack() as stack:
        for local, remote in pairs:
            for address in addresses:
                fwd = await stack.enter_async_context(
                    farm.jobs.port_forward(
                        job_id, local_port=local, job_port=remote, on_error=on_error, host=address
                    )
                )
                # stdout, one line each (kubectl's words): a script can read the free port
                click.echo(f"Forwarding from {fwd.host}:{fwd.local_port} -> {remote}")
        sys.stdout.flush()
        note(f"forwarding to job {job_id} (Ctrl-C stops)", dim=True)
        result = await farm.jobs.wait(job_id)
        note(f"job {job_id} ended ({result.status.value}); stopped forwarding")
    return 0


_PASS_THROUGH = {"ignore_unknown_options": True, "allow_interspersed_args": False}


@click.command("exec", context_settings=_PASS_THROUGH)
@click.option("-i", "--interactive", is_flag=True, help="Forward this terminal's stdin.")
@click.option("-t", "--tty", is_flag=True, help="Run COMMAND on a terminal (pty).")
@click.argument("job_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def exec_(opts: Options, interactive: bool, tty: bool, job_id: str, command: tuple[str, ...]) -> None:
    """Run COMMAND inside running job JOB_ID (its cwd and environment).

    \b
      aiofarm exec JOB_ID -- ls -la
      aiofarm exec -it JOB_ID -- bash
    With -it this terminal goes raw until the command ends; exits with its code.
    """
    if command and command[0] == "--":  # click keeps it once options have ended
        command = command[1:]
    if not command:
        raise click.UsageError("COMMAND is missing after --")
    sys.exit(run_command(lambda: _exec(opts, job_id, command, interactive, tty), signals=False))


@click.command("attach")
@click.option("-i", "--interactive", is_flag=True, help="Forward this terminal's stdin to the job.")
@click.argument("job_id")
@click.pass_obj
def attach(opts: Options, interactive: bool, job_id: str) -> None:
    """Follow running job JOB_ID's output from now on (and, with -i, feed its stdin).

    On a tty job with -i this terminal goes raw: Ctrl-] detaches. Otherwise Ctrl-C
    detaches. Detaching never stops the job.
    """
    sys.exit(run_command(lambda: _attach(opts, job_id, interactive), signals=False))


@click.command("port-forward")
@click.argument("job_id")
@click.argument("ports", metavar="[LOCAL]:REMOTE...", nargs=-1, required=True)
@click.option(
    "--address",
    default="127.0.0.1",
    show_default=True,
    help="Addresses to listen on, comma-separated (0.0.0.0: every interface).",
)
@click.pass_obj
def port_forward(opts: Options, job_id: str, ports: tuple[str, ...], address: str) -> None:
    """Listen on LOCAL and relay connections to port REMOTE of job JOB_ID.

    \b
      aiofarm port-forward JOB_ID 8080:80 :9000      # :9000 picks a free local port
      aiofarm port-forward --address 0.0.0.0 JOB_ID 8888
    Waits for a pending job to start; runs until Ctrl-C or the job ends.
    """
    addresses = [a.strip() for a in address.split(",") if a.strip()] or ["127.0.0.1"]
    sys.exit(run_command(lambda: _port_forward(opts, job_id, ports, addresses), stopped="stopped forwarding"))


def register(group: click.Group) -> None:
    for command in (exec_, attach, port_forward):
        group.add_command(command)
