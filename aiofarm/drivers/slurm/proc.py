"""A StdioChannel backed by a local child process (``srun`` / ``sattach``).

exec and attach on Slurm run a Slurm client command on this host; its stdio is
the job's stdio. With ``tty`` the child gets the slave end of a fresh pty (``srun
--pty`` then gives the remote command a terminal) and a resize sets the pty size
and sends SIGWINCH. No background task: ``receive`` races the output streams in a
task group of its own, so a channel needs nothing but ``aclose``.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import fcntl
import os
import signal
import struct
import subprocess
import termios
import tty as _ttymode
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import anyio

from ...errors import BackendError
from ...models import Message
from ..base import StdioChannel

if TYPE_CHECKING:
    from anyio.abc import ByteReceiveStream, Process

__all__ = ["ProcessChannel", "start_channel"]

DRIVER = "slurm"
_CHUNK = 65536


def _set_winsize(fd: int, rows: int, cols: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


class ProcessChannel(StdioChannel):
    def __init__(
        self,
        process: Process,
        *,
        master: int | None,
        streams: Sequence[tuple[int, ByteReceiveStream]],
        grace: float,
    ) -> None:
        self._process = process
        self._master = master
        self._open: dict[int, ByteReceiveStream] = dict(streams)
        self._pending: collections.deque[Message] = collections.deque()
        self._pty_open = master is not None
        self._grace = grace
        self._closed = False
        self.tty = master is not None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    # -- output -------------------------------------------------------------------
    async def _read_pty(self) -> None:
        assert self._master is not None
        while True:
            try:
                data = os.read(self._master, _CHUNK)
            except BlockingIOError:
                await anyio.wait_readable(self._master)
                continue
            except OSError as exc:
                if exc.errno == errno.EIO:  # every slave fd closed: the child is gone
                    data = b""
                else:
                    raise
            if not data:
                self._pty_open = False
                return
            self._pending.append(Message(1, data))
            return

    async def _read_one(self, fileno: int, stream: ByteReceiveStream, tg: anyio.abc.TaskGroup) -> None:
        try:
            data = await stream.receive(_CHUNK)
        except (anyio.EndOfStream, anyio.ClosedResourceError, anyio.BrokenResourceError):
            self._open.pop(fileno, None)
            data = b""
        if data:
            self._pending.append(Message(fileno, data))
        tg.cancel_scope.cancel()

    async def receive(self) -> Message | None:
        while not self._pending:
            if self._pty_open:
                await self._read_pty()
                continue
            if not self._open:
                return None
            async with anyio.create_task_group() as tg:
                # cancelling a pending pipe read loses nothing (the data stays buffered)
                for fileno, stream in list(self._open.items()):
                    tg.start_soon(self._read_one, fileno, stream, tg)
        return self._pending.popleft()

    # -- input --------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        if self._master is not None:
            view = memoryview(data)
            while view:
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    await anyio.wait_writable(self._master)
                    continue
                except OSError as exc:
                    raise BackendError(DRIVER, exc.errno, f"stdin closed: {exc.strerror}") from None
                view = view[n:]
            return
        stdin = self._process.stdin
        if stdin is None:
            raise BackendError(DRIVER, None, "stdin was not requested")
        try:
            await stdin.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            raise BackendError(DRIVER, None, f"stdin closed: {exc!r}") from None

    async def send_eof(self) -> None:
        if self._master is not None:
            # a terminal has no half-close: send Ctrl-D, the EOF character of the
            # remote pty (ours is raw, so it passes through srun untouched)
            await self.send(b"\x04")
            return
        stdin = self._process.stdin
        if stdin is not None:
            with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                await stdin.aclose()

    async def resize(self, rows: int, cols: int) -> None:
        if self._master is None:
            return  # no terminal: nothing has a size
        _set_winsize(self._master, rows, cols)
        # the child is not the pty's session leader, so the kernel does not tell it
        with contextlib.suppress(ProcessLookupError):
            self._process.send_signal(signal.SIGWINCH)

    async def wait(self) -> int | None:
        return await self._process.wait()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        with anyio.CancelScope(shield=True):
            proc = self._process
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()  # srun forwards SIGTERM to the remote step
                with anyio.move_on_after(self._grace):
                    await proc.wait()
                if proc.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    await proc.wait()
            await proc.aclose()
            if self._master is not None:
                with contextlib.suppress(OSError):
                    os.close(self._master)
                self._master = None


async def start_channel(
    argv: Sequence[str],
    *,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    env: Mapping[str, str],
    user: str | None,
    size: tuple[int, int] | None,
    grace: float = 2.0,
) -> ProcessChannel:
    """Start ``argv`` (as ``user`` when given: we are root and the job is not ours)."""
    creds: dict[str, object] = {}
    if user is not None:
        creds = {"user": user, "group": _primary_group(user), "extra_groups": []}
    try:
        if tty:
            master, slave = os.openpty()
            try:
                # raw from the start: the remote pty is the terminal that interprets
                # keys; srun --pty makes ours raw too, but only once it runs
                _ttymode.setraw(slave)
                rows, cols = size or (24, 80)
                _set_winsize(master, rows, cols)
                os.set_blocking(master, False)
                process = await anyio.open_process(
                    list(argv), stdin=slave, stdout=slave, stderr=slave, env=dict(env),
                    cwd="/", start_new_session=True, **creds,  # type: ignore[arg-type]
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            return ProcessChannel(process, master=master, streams=(), grace=grace)
        process = await anyio.open_process(
            list(argv),
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=subprocess.PIPE if stderr else subprocess.DEVNULL,
            env=dict(env), cwd="/", start_new_session=True, **creds,  # type: ignore[arg-type]
        )
    except OSError as exc:
        raise BackendError(DRIVER, exc.errno, f"cannot run {argv[0]}: {exc.strerror or exc}") from None
    streams: list[tuple[int, ByteReceiveStream]] = []
    if process.stdout is not None:
        streams.append((1, process.stdout))
    if process.stderr is not None:
        streams.append((2, process.stderr))
    return ProcessChannel(process, master=None, streams=streams, grace=grace)


def _primary_group(user: str) -> int:
    import pwd

    return pwd.getpwnam(user).pw_gid
