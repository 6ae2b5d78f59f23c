"""Child processes on this host: the one module every driver that runs local
processes uses (the local farm's tasks and exec sessions, Slurm's ``srun`` and
``sattach``).

Three layers, each usable alone:

:func:`spawn` → :class:`Child`
    Start ``argv`` in a session and process group of its own (``pgid == pid``),
    wired to pipes, to ``/dev/null``, or to a fresh pty that becomes its
    controlling terminal (``setsid`` + ``TIOCSCTTY``, so ``^C``, job control and
    ``SIGWINCH`` work) at a given size, optionally raw (for a client such as
    ``srun --pty`` whose remote end interprets the keys), optionally as another
    user. The child is reaped through a pidfd on the event loop (no child watcher
    thread, no global loop policy); where the kernel gives no pidfd, a thread
    waits without reaping (``waitid(WNOWAIT)``) and the loop reaps. The parent's
    ends of the pipes are in ``Child.stdin_fd`` / ``stdout_fd`` / ``stderr_fd``
    (``pty_fd`` for a terminal: input and output both), non-blocking and
    close-on-exec; whoever reads them owns them.
:class:`ChildStdio`
    Output fds read with loop readers into one queue with flow control, one input
    fd written with ``wait_writable``, EOF (close, or the terminal's VEOF), resize.
    Writing to a stdin that is closed raises :class:`~aiofarm.errors.ConnectionLost`,
    the one error for it, whichever driver and whether pipe or pty.
:class:`ChildChannel`
    Both, as a driver's :class:`~aiofarm.drivers.base.StdioChannel`. Closing it
    stops what still runs: SIGTERM to the group, SIGKILL after ``grace`` seconds
    (at once with ``grace=0``), then reaps.

Exit statuses decode one way (:func:`exit_code`): the exit code, or minus the
signal number that killed the process. ``command_argv`` (``aiofarm.models``) is
the one rule turning a ``str`` command into ``/bin/sh -c``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import fcntl
import os
import signal
import struct
import subprocess
import termios
import threading
import tty as _ttymode
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import anyio

from ..errors import ConnectionLost, InvalidSpec
from ..models import Message
from .base import StdioChannel

__all__ = [
    "UNKNOWN_EXIT",
    "Child",
    "ChildChannel",
    "ChildStdio",
    "Wakeup",
    "acquire_ctty",
    "describe_exit",
    "exit_code",
    "invalid_command",
    "open_pty",
    "set_winsize",
    "spawn",
    "stdin_closed",
    "veof",
]

#: the exit code reported when someone else reaped the child and its status is lost
UNKNOWN_EXIT = -255
#: bytes queued for the reader before the fds stop being read (resumed at half)
READ_BUFFER = 256 * 1024
_CHUNK = 64 * 1024
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

Env = Mapping[str, str] | Mapping[bytes, bytes]

# indirection so tests can take the pidfd away and exercise the fallback
_pidfd_open: Callable[[int], int] | None = getattr(os, "pidfd_open", None)


# -- exit status -----------------------------------------------------------------------


def exit_code(status: int) -> int:
    """A ``waitpid`` status as an exit code: the code, or minus the killing signal."""
    return os.waitstatus_to_exitcode(status)


def describe_exit(code: int) -> str:
    """``exit code 3`` / ``killed by SIGKILL``, for reasons and messages."""
    if code == UNKNOWN_EXIT:
        return "exit status unknown"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


# -- terminals -----------------------------------------------------------------------


def set_winsize(fd: int, rows: int, cols: int) -> None:
    """Set the window size of the terminal behind ``fd`` (either end of a pty); the
    foreground process group of a terminal that is its controlling tty gets SIGWINCH."""
    if not (0 < rows < 65536 and 0 < cols < 65536):
        raise InvalidSpec("rows/cols", f"terminal size {rows}x{cols} out of range")
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))


def open_pty(rows: int = 24, cols: int = 80, *, raw: bool = False) -> tuple[int, int]:
    """A new pty pair (master, slave), both close-on-exec, the master non-blocking."""
    master, slave = os.openpty()
    try:
        if raw:
            _ttymode.setraw(slave)
        set_winsize(slave, rows, cols)
        os.set_blocking(master, False)
    except BaseException:
        os.close(master)
        os.close(slave)
        raise
    return master, slave


def acquire_ctty() -> None:  # pragma: no cover - runs in the forked child
    """``preexec_fn``: make stdin (the pty slave) the controlling terminal. Popen has
    already called ``setsid()`` (``start_new_session=True``) at this point."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def veof(fd: int) -> bytes:
    """The terminal's end-of-file character (what a pty reader takes as EOF)."""
    try:
        ch = termios.tcgetattr(fd)[6][termios.VEOF]
        return ch if isinstance(ch, bytes) else bytes([ch])
    except (termios.error, OSError):
        return b"\x04"


# -- spawning --------------------------------------------------------------------------


def invalid_command(exc: OSError, argv: Sequence[str], cwd: str | None) -> InvalidSpec:
    """What :func:`spawn` raised, as the caller's bad input (``command`` or ``cwd``), for
    callers that start a command the user gave."""
    if isinstance(exc, NotADirectoryError):
        return InvalidSpec("cwd", f"{cwd!r}: not a directory")
    if isinstance(exc, FileNotFoundError):
        what = "cwd" if cwd is not None and not os.path.isdir(cwd) else "command"
        return InvalidSpec(what, f"{exc.filename or argv[0]!r}: no such file or directory")
    if isinstance(exc, PermissionError):
        return InvalidSpec("command", f"{argv[0]!r}: permission denied")
    return InvalidSpec("command", f"{argv[0]!r}: cannot start: {exc.strerror or exc}")


def spawn(
    argv: Sequence[str],
    *,
    cwd: str | None = None,
    env: Env | None = None,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    tty: bool = False,
    size: tuple[int, int] = (24, 80),
    raw: bool = False,
    user: str | None = None,
    reap_group: bool = True,
    pass_fds: Sequence[int] = (),
    pipe_size: int | None = None,
) -> Child:
    """Start ``argv`` in its own session; see the module docstring. Call it from the
    event loop thread. ``tty``: the child's stdin, stdout and stderr are the slave of a
    new pty of ``size`` (rows, cols), its output arrives on ``pty_fd`` (stdout and
    stderr merged, as on any terminal), and ``stdin`` only says whether the caller will
    write to it. ``user``: run as that user with its primary group and no others (we
    are root). ``reap_group``: when the child exits, kill what it left in its group.
    ``pass_fds``: more descriptors the child keeps (as Popen's). ``pipe_size``: the
    capacity asked for the stdout pipe (``F_SETPIPE_SZ``; the kernel's default, 64 KiB,
    if it refuses): a child that writes fast blocks less often.

    Raises OSError when the program cannot be started (see :func:`invalid_command`)."""
    if not argv:
        raise InvalidSpec("command", "must not be empty")
    child_ends: list[int] = []  # closed in the parent once the child has them
    ours: list[int] = []  # closed only if starting fails
    stdin_fd = stdout_fd = stderr_fd = pty_fd = None
    preexec: Callable[[], None] | None = None
    try:
        if tty:
            master, slave = open_pty(*size, raw=raw)
            ours.append(master)
            child_ends.append(slave)
            child_in = child_out = child_err = slave
            pty_fd = stdout_fd = master
            stdin_fd = master if stdin else None
            preexec = acquire_ctty
        else:
            devnull = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
            child_ends.append(devnull)
            child_in = child_out = child_err = devnull
            if stdin:
                r, w = os.pipe2(os.O_CLOEXEC)
                child_ends.append(r)
                ours.append(w)
                child_in, stdin_fd = r, w
            if stdout:
                r, w = os.pipe2(os.O_CLOEXEC)
                child_ends.append(w)
                ours.append(r)
                child_out, stdout_fd = w, r
                if pipe_size is not None:
                    with contextlib.suppress(OSError):
                        fcntl.fcntl(r, F_SETPIPE_SZ, pipe_size)
            if stderr:
                r, w = os.pipe2(os.O_CLOEXEC)
                child_ends.append(w)
                ours.append(r)
                child_err, stderr_fd = w, r
        for fd in ours:
            os.set_blocking(fd, False)
        gid: int | None = None
        if user is not None:
            import pwd

            try:
                gid = pwd.getpwnam(user).pw_gid
            except KeyError:
                raise OSError(errno.EINVAL, f"no such user {user!r}") from None
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=child_in,
                stdout=child_out,
                stderr=child_err,
                cwd=cwd,
                env=cast("Any", env),  # str or bytes mappings, as Popen takes
                start_new_session=True,
                pass_fds=tuple(pass_fds),
                preexec_fn=preexec,  # only for a tty: TIOCSCTTY must run in the child
                user=user,
                group=gid,
                extra_groups=None if user is None else [],
            )
        except subprocess.SubprocessError as exc:
            raise OSError(errno.EIO, str(exc)) from None
        try:
            child = Child(proc, reap_group=reap_group)
        except BaseException:
            # nothing may run unwatched
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
    except BaseException:
        for fd in ours:
            os.close(fd)
        raise
    finally:
        for fd in child_ends:
            os.close(fd)
    child.stdin_fd, child.stdout_fd, child.stderr_fd, child.pty_fd = (
        stdin_fd,
        stdout_fd,
        stderr_fd,
        pty_fd,
    )
    return child


class Child:
    """A started child process leading its own process group; reaped on the loop."""

    def __init__(self, proc: subprocess.Popen[bytes], *, reap_group: bool = True) -> None:
        self._proc = proc
        self.pid = proc.pid
        self.pgid = proc.pid  # start_new_session: the child leads its own group
        self.returncode: int | None = None
        self.stdin_fd: int | None = None
        self.stdout_fd: int | None = None
        self.stderr_fd: int | None = None
        self.pty_fd: int | None = None
        self._reap_group = reap_group
        self._loop = asyncio.get_running_loop()
        self._exited = asyncio.Event()
        self._callbacks: list[Callable[[Child], None]] = []
        self._pidfd: int | None = None
        pidfd = None
        if _pidfd_open is not None:
            try:
                pidfd = _pidfd_open(self.pid)
            except OSError:
                pidfd = None  # no pidfds here (old kernel, seccomp): the thread below
        if pidfd is not None:
            self._pidfd = pidfd
            self._loop.add_reader(pidfd, self._on_exit)
        else:
            threading.Thread(target=self._watch, name=f"aiofarm-child-{self.pid}", daemon=True).start()

    def _watch(self) -> None:
        # WNOWAIT: the child stays a zombie, so its pid (our pgid) cannot be recycled
        # before the loop has killed what is left in the group and reaped it
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            self._loop.call_soon_threadsafe(self._on_exit)

    def _on_exit(self) -> None:
        if self.returncode is not None:
            return
        pidfd, self._pidfd = self._pidfd, None
        if pidfd is not None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
        if self._reap_group:
            # the leader is a zombie: the group id is still ours to signal
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)
        try:
            _, status = os.waitpid(self.pid, 0)
            code = exit_code(status)
        except ChildProcessError:  # reaped by someone else (a waitpid(-1) watcher)
            code = UNKNOWN_EXIT
        self.returncode = self._proc.returncode = code  # Popen must not reap it again
        self._exited.set()
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback(self)

    @property
    def exited(self) -> bool:
        return self.returncode is not None

    def add_exit_callback(self, callback: Callable[[Child], None]) -> None:
        """Call ``callback(child)`` on the loop once it has been reaped (at once if it has)."""
        if self.returncode is not None:
            callback(self)
        else:
            self._callbacks.append(callback)

    async def wait(self) -> int:
        """The exit code (negative: killed by that signal)."""
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the child's process group; False once it has been reaped."""
        if self.returncode is not None:
            return False
        try:
            os.killpg(self.pgid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    async def terminate(self, grace: float) -> int:
        """SIGTERM to the group, SIGKILL if it still runs ``grace`` seconds later (at
        once when ``grace`` is 0); the exit code. Completes even when cancelled."""
        with anyio.CancelScope(shield=True):
            if self.returncode is None and grace > 0 and self.signal_group(signal.SIGTERM):
                with anyio.move_on_after(grace):
                    await self._exited.wait()
            if self.returncode is None:
                self.signal_group(signal.SIGKILL)
            code = await self.wait()
        return code


# -- stdio -----------------------------------------------------------------------------


def stdin_closed(detail: str) -> ConnectionLost:
    """The one error for writing to a stdin that is closed (by us or by the process),
    whichever driver, pipe or pty, here or through a farm service."""
    return ConnectionLost(f"stdin is closed: {detail}")


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


class ChildStdio:
    """Reads output fds with loop readers (no task per fd), merged into one queue with
    flow control; writes one input fd. Owns every fd it is given.

    ``outputs`` are (fd, fileno) pairs; fileno 0 means "drain and drop" (a pty whose
    output nobody asked for must still be read, or the child blocks on a full
    buffer). ``pty_fd`` is the pty master (resize, VEOF), possibly also the input and
    an output."""

    def __init__(
        self, outputs: Sequence[tuple[int, int]], input_fd: int | None, *, pty_fd: int | None = None
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: collections.deque[Message] = collections.deque()
        self._queued = 0
        self._paused = False
        self._open: dict[int, int] = {}  # output fd -> fileno tag, until its EOF
        self._owned: set[int] = set()
        self._wakeup = Wakeup()
        self._input_fd = input_fd
        self._pty_fd = pty_fd
        self._closed = False
        for fd, fileno in outputs:
            os.set_blocking(fd, False)
            self._open[fd] = fileno
            self._owned.add(fd)
            self._loop.add_reader(fd, self._on_readable, fd)
        for extra in (input_fd, pty_fd):
            if extra is not None:
                os.set_blocking(extra, False)
                self._owned.add(extra)

    @classmethod
    def of(cls, child: Child, *, stdout: bool = True, stderr: bool = True) -> ChildStdio:
        """The stdio of ``child`` as :func:`spawn` wired it; takes its fds."""
        if child.pty_fd is not None:
            outputs = [(child.pty_fd, 1 if (stdout or stderr) else 0)]
        else:
            outputs = [(fd, n) for fd, n in ((child.stdout_fd, 1), (child.stderr_fd, 2)) if fd is not None]
        io = cls(outputs, child.stdin_fd, pty_fd=child.pty_fd)
        child.stdin_fd = child.stdout_fd = child.stderr_fd = child.pty_fd = None
        return io

    @property
    def tty(self) -> bool:
        return self._pty_fd is not None

    def _on_readable(self, fd: int) -> None:
        try:
            data = os.read(fd, _CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""  # EIO on a pty master: every slave fd is closed -- EOF
        if not data:
            self._loop.remove_reader(fd)
            del self._open[fd]
            if fd != self._input_fd and fd != self._pty_fd:
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
        """The next chunk (chunks of one stream already queued are joined), or None at
        EOF of every output."""
        while True:
            if self._queue:
                msg = self._queue.popleft()
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
        """Write all of ``data``; ConnectionLost once stdin is closed (by us or the child)."""
        view = memoryview(data)
        while view:
            fd = self._input_fd
            if fd is None or self._closed:
                raise stdin_closed("it was closed or never opened")
            try:
                n = os.write(fd, view)
            except (BlockingIOError, InterruptedError):
                await anyio.wait_writable(fd)
                continue
            except OSError as exc:
                raise stdin_closed(exc.strerror or str(exc)) from None
            view = view[n:]

    async def send_eof(self) -> None:
        fd = self._input_fd
        if fd is None or self._closed:
            return
        if fd == self._pty_fd:
            # a terminal has no half-close: the line discipline turns VEOF into EOF
            # (a raw one passes it on to whoever interprets keys, e.g. a remote pty)
            await self.send(veof(fd))
            return
        self._input_fd = None
        self._owned.discard(fd)
        os.close(fd)

    def resize(self, rows: int, cols: int) -> None:
        if self._pty_fd is None or self._closed:
            return  # pipes have no window: a documented no-op
        set_winsize(self._pty_fd, rows, cols)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in self._open:
            self._loop.remove_reader(fd)
        self._open.clear()
        for fd in self._owned:
            os.close(fd)
        self._owned.clear()
        self._input_fd = self._pty_fd = None
        self._queue.clear()
        self._wakeup.set()


class ChildChannel(StdioChannel):
    """A child this channel started and stops: exec sessions, ``srun``, ``sattach``."""

    def __init__(self, child: Child, io: ChildStdio, *, grace: float = 0.0) -> None:
        self.child = child
        self._io = io
        self._grace = grace
        self.tty = io.tty

    @classmethod
    def start(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | None = None,
        env: Env | None = None,
        tty: bool = False,
        stdin: bool = False,
        stdout: bool = True,
        stderr: bool = True,
        size: tuple[int, int] | None = None,
        raw: bool = False,
        user: str | None = None,
        grace: float = 0.0,
    ) -> ChildChannel:
        """:func:`spawn` and wrap; ``grace``: seconds between SIGTERM and SIGKILL on close."""
        child = spawn(
            argv,
            cwd=cwd,
            env=env,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            tty=tty,
            size=size or (24, 80),
            raw=raw,
            user=user,
        )
        return cls(child, ChildStdio.of(child, stdout=stdout, stderr=stderr), grace=grace)

    @property
    def pid(self) -> int:
        return self.child.pid

    @property
    def returncode(self) -> int | None:
        return self.child.returncode

    async def receive(self) -> Message | None:
        return await self._io.receive()

    async def send(self, data: bytes) -> None:
        await self._io.send(data)

    async def send_eof(self) -> None:
        await self._io.send_eof()

    async def resize(self, rows: int, cols: int) -> None:
        self._io.resize(rows, cols)

    async def wait(self) -> int | None:
        return await self.child.wait()

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            try:
                await self.child.terminate(self._grace)
            finally:
                self._io.close()
