"""exec for the local farm: a process started in a job's context, with pipes or a
real pty (its controlling terminal, window size set), reaped through a pidfd, its
output read with loop readers into one flow-controlled queue."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import termios
from collections.abc import Callable, Mapping, Sequence

import anyio

from ...errors import ConnectionLost, InvalidSpec
from ...models import Message
from ..base import StdioChannel
from .processes import pidfd_or_kill

__all__ = [
    "ATTACH_BUFFER",
    "READ_BUFFER",
    "ExecChannel",
    "Wakeup",
    "acquire_ctty",
    "open_job_pty",
    "set_winsize",
    "spawn_exec",
    "veof",
]

READ_BUFFER = 256 * 1024
ATTACH_BUFFER = 4 * 1024 * 1024
_CHUNK = 64 * 1024


def set_winsize(fd: int, rows: int, cols: int) -> None:
    if not (0 < rows < 65536 and 0 < cols < 65536):
        raise InvalidSpec("rows/cols", f"terminal size {rows}x{cols} out of range")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def open_job_pty(rows: int = 24, cols: int = 80) -> tuple[int, int]:
    """A new pty pair: (master, slave). The master is non-blocking and close-on-exec."""
    master, slave = os.openpty()
    try:
        set_winsize(slave, rows, cols)
        os.set_blocking(master, False)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def acquire_ctty() -> None:  # pragma: no cover - runs in the forked child
    """``preexec_fn``: make stdin (the pty slave) the controlling terminal. subprocess
    has already called ``setsid()`` (``start_new_session=True``) at this point."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def veof(fd: int) -> bytes:
    try:
        cc = termios.tcgetattr(fd)[6]
        ch = cc[termios.VEOF]
        return ch if isinstance(ch, bytes) else bytes([ch])
    except (termios.error, OSError):
        return b"\x04"


class Wakeup:
    """Parks the one reader of a queue until its producer has news. A fresh Event per
    wait: a set() with nobody parked must not be remembered past the next check."""

    __slots__ = ("_event",)

    def __init__(self) -> None:
        self._event: anyio.Event | None = None

    def set(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self) -> None:
        event = self._event = anyio.Event()
        await event.wait()


class _FdIO:
    """Non-blocking output fds read with loop readers (no task per fd), merged into one
    queue with flow control, plus one input fd written with ``wait_writable``.

    ``outputs`` are (fd, fileno) pairs; fileno 0 means "drain and drop" (a pty whose
    output nobody asked for must still be read, or the child blocks on a full buffer).
    ``control_fd`` is the pty master (resize, VEOF), possibly also the input and output.
    """

    def __init__(
        self,
        outputs: Sequence[tuple[int, int]],
        input_fd: int | None,
        *,
        control_fd: int | None = None,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[Message] = collections.deque()
        self._queued = 0
        self._paused = False
        self._open: dict[int, int] = {}  # output fd -> fileno tag, until its EOF
        self._owned: set[int] = set()  # every fd closed by close_fds
        self._wakeup = Wakeup()
        self._input_fd = input_fd
        self._control_fd = control_fd
        self._write_lock = anyio.Lock()
        self._closed = False
        for fd, fileno in outputs:
            os.set_blocking(fd, False)
            self._open[fd] = fileno
            self._owned.add(fd)
            self._loop.add_reader(fd, self._on_readable, fd)
        for extra in (input_fd, control_fd):
            if extra is not None:
                os.set_blocking(extra, False)
                self._owned.add(extra)

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # EIO on a pty master: every slave fd is closed -- EOF for a terminal
            data = b""
        if not data:
            self._loop.remove_reader(fd)
            del self._open[fd]
            if fd != self._input_fd and fd != self._control_fd:
                self._owned.discard(fd)
                os.close(fd)
        elif self._open[fd]:
            self._queue.append(Message(self._open[fd], data))
            self._queued += len(data)
            if self._queued >= READ_BUFFER and not self._paused:
                self._paused = True
                for ofd in self._open:
                    self._loop.remove_reader(ofd)
        self._wakeup.set()

    async def receive(self) -> Message | None:
        while True:
            if self._queue:
                msg = self._queue.popleft()
                # coalesce what is already queued for the same stream: fewer, larger messages
                if self._queue and self._queue[0].fileno == msg.fileno:
                    parts = [msg.data]
                    while self._queue and self._queue[0].fileno == msg.fileno and len(parts) < 16:
                        parts.append(self._queue.popleft().data)
                    msg = Message(msg.fileno, b"".join(parts))
                self._queued -= len(msg.data)
                if self._paused and self._queued < READ_BUFFER // 2:
                    self._paused = False
                    for ofd in self._open:
                        self._loop.add_reader(ofd, self._on_readable, ofd)
                return msg
            if self._closed or not any(self._open.values()):
                return None
            await self._wakeup.wait()

    async def send(self, data: bytes) -> None:
        async with self._write_lock:
            view = memoryview(data)
            while view:
                fd = self._input_fd
                if fd is None or self._closed:
                    raise ConnectionLost("stdin is not open for writing")
                try:
                    n = os.write(fd, view)
                except (BlockingIOError, InterruptedError):
                    await anyio.wait_writable(fd)
                    continue
                except OSError as exc:
                    raise ConnectionLost(f"stdin is closed: {exc.strerror}") from None
                view = view[n:]

    async def send_eof(self) -> None:
        fd = self._input_fd
        if fd is None or self._closed:
            return
        if fd == self._control_fd:
            # a terminal has no half-close: the line discipline turns VEOF into EOF
            await self.send(veof(fd))
            return
        async with self._write_lock:
            self._input_fd = None
            self._owned.discard(fd)
            os.close(fd)

    async def resize(self, rows: int, cols: int) -> None:
        if self._control_fd is None or self._closed:
            return  # pipes have no window: a documented no-op
        set_winsize(self._control_fd, rows, cols)

    def close_fds(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in self._open:
            self._loop.remove_reader(fd)
        self._open.clear()
        for fd in self._owned:
            os.close(fd)
        self._owned.clear()
        self._input_fd = self._control_fd = None
        self._queue.clear()
        self._wakeup.set()


class ExecChannel(StdioChannel):
    """A process this client started (``exec``); it dies with the channel.

    Reaped through a pidfd on the event loop (like the local driver's tasks): no child
    watcher thread, no global loop policy."""

    def __init__(self, proc: subprocess.Popen[bytes], pidfd: int, io: _FdIO) -> None:
        self._proc = proc
        self._io = io
        self.tty = io._control_fd is not None
        self._returncode: int | None = None
        self._exited = asyncio.Event()
        self._pidfd: int | None = pidfd
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(pidfd, self._reap)

    def _reap(self) -> None:
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is None:
            return
        self._loop.remove_reader(pidfd)
        os.close(pidfd)
        try:
            _, status = os.waitpid(self._proc.pid, 0)
            code = os.waitstatus_to_exitcode(status)
        except ChildProcessError:  # reaped by someone else: status lost
            code = -255
        self._returncode = self._proc.returncode = code
        self._exited.set()

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def receive(self) -> Message | None:
        return await self._io.receive()

    async def send(self, data: bytes) -> None:
        await self._io.send(data)

    async def send_eof(self) -> None:
        await self._io.send_eof()

    async def resize(self, rows: int, cols: int) -> None:
        await self._io.resize(rows, cols)

    async def wait(self) -> int | None:
        await self._exited.wait()
        return self._returncode

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            if self._pidfd is not None:
                # the leader is not reaped yet, so its pid (our pgid) cannot be recycled
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
                await self._exited.wait()
            else:
                # leader gone; whatever it left in its group goes too
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._proc.pid, signal.SIGKILL)
            self._io.close_fds()


def spawn_exec(
    argv: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    rows: int = 24,
    cols: int = 80,
) -> ExecChannel:
    """Start ``argv`` in its own session; see the module docstring. Must be called from
    the event loop thread."""
    if not argv:
        raise InvalidSpec("command", "must not be empty")
    to_close: list[int] = []  # child ends, closed in the parent once spawned
    parent: list[int] = []  # our ends, closed if spawning fails
    outputs: list[tuple[int, int]] = []
    input_fd: int | None = None
    preexec: Callable[[], None] | None = None
    try:
        if tty:
            master, slave = open_job_pty(rows, cols)
            parent.append(master)
            to_close.append(slave)
            child_in = child_out = child_err = slave
            outputs.append((master, 1 if (stdout or stderr) else 0))
            input_fd = master if stdin else None
            preexec = acquire_ctty
        else:
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            to_close.append(devnull)
            child_in = child_out = child_err = devnull
            if stdin:
                r, w = os.pipe2(os.O_CLOEXEC)
                to_close.append(r)
                parent.append(w)
                child_in, input_fd = r, w
            if stdout:
                r, w = os.pipe2(os.O_CLOEXEC)
                to_close.append(w)
                parent.append(r)
                child_out = w
                outputs.append((r, 1))
            if stderr:
                r, w = os.pipe2(os.O_CLOEXEC)
                to_close.append(w)
                parent.append(r)
                child_err = w
                outputs.append((r, 2))
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=child_in,
                stdout=child_out,
                stderr=child_err,
                cwd=cwd,
                env=dict(env) if env is not None else None,
                start_new_session=True,
                preexec_fn=preexec,  # only for tty: TIOCSCTTY needs to run in the child
            )
        except FileNotFoundError as exc:
            what = "cwd" if cwd is not None and not os.path.isdir(cwd) else "command"
            raise InvalidSpec(
                what, f"{exc.filename or argv[0]!r}: no such file or directory"
            ) from None
        except PermissionError:
            raise InvalidSpec("command", f"{argv[0]!r}: permission denied") from None
        except NotADirectoryError:
            raise InvalidSpec("cwd", f"{cwd!r}: not a directory") from None
        except (OSError, subprocess.SubprocessError) as exc:
            raise InvalidSpec("command", f"{argv[0]!r}: cannot start: {exc}") from None
        pidfd = pidfd_or_kill(proc)
    except BaseException:
        for fd in parent:
            os.close(fd)
        raise
    finally:
        for fd in to_close:
            os.close(fd)
    io = _FdIO(outputs, input_fd, control_fd=outputs[0][0] if tty else None)
    return ExecChannel(proc, pidfd, io)


