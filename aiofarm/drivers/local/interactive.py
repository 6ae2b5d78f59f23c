"""Interactive stdio for the local driver: exec with pipes or a real pty, attach to a
running task's stdio, and the address of a job's port.

The local driver delegates to these (signatures are the contract)::

    open_stdio(task, command, *, tty, stdin, stdout, stderr) -> StdioChannel
        task: the job's live ``process.RunningTask`` (anything with the ``TaskIO``
        shape); command None = attach, else exec ``command`` with the task's cwd and
        full environment (no pool slot charged).
    port_address(port) -> ("127.0.0.1", port)
    driver_open_stdio(driver, job_id, ...) / driver_port_address(driver, job_id, port)
        what ``LocalDriver.open_stdio`` / ``port_address`` delegate to: job lookup,
        typed errors, and exec from a reader client (cwd/env from /proc of the task).

``spawn_exec(argv, *, cwd, env, tty, stdin, stdout, stderr, rows=24, cols=80)``
    Start ``argv`` (a list: the client turned a ``str`` into ``/bin/sh -c``) in its own
    session. ``tty=True``: on a fresh pty that is the child's controlling terminal
    (``setsid`` + ``TIOCSCTTY``), window size set with ``TIOCSWINSZ``; stdout and
    stderr arrive merged on fileno 1 as on any terminal. Otherwise pipes; a stream not
    asked for is ``/dev/null``. Reaped through a pidfd. ``aclose()`` SIGKILLs the
    process group if it still runs and reaps it, also under cancellation.

``AttachChannel(task, ...)``
    One of any number of attachers of a running task: output from the moment of
    attaching (through the task's ``add_listener`` fan-out), input into the task's
    stdin (pty master or pipe; one lock per task so attachers' writes never
    interleave). A slow attacher never stalls the task or its log: past
    ``ATTACH_BUFFER`` queued bytes it is cut off with ``ConnectionLost``. Detaching
    never touches the task.
"""

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
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc

from ...errors import (
    ConnectionLost,
    FarmError,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    UnsupportedError,
)
from ...models import JobStatus, Message, Task
from ..base import StdioChannel
from .process import pidfd_or_kill

__all__ = [
    "ATTACH_BUFFER",
    "AttachChannel",
    "ExecChannel",
    "RemoteAttachChannel",
    "TaskIO",
    "acquire_ctty",
    "attach_socket_name",
    "driver_open_stdio",
    "driver_port_address",
    "live_task",
    "open_job_pty",
    "open_stdio",
    "port_address",
    "serve_attach",
    "set_winsize",
    "spawn_exec",
]

#: bytes queued for one reader before the producer is paused (exec) / the attacher is cut (attach)
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


def _veof(fd: int) -> bytes:
    try:
        cc = termios.tcgetattr(fd)[6]
        ch = cc[termios.VEOF]
        return ch if isinstance(ch, bytes) else bytes([ch])
    except (termios.error, OSError):
        return b"\x04"


class _Wakeup:
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
        self._wakeup = _Wakeup()
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
            await self.send(_veof(fd))
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


def port_address(port: int) -> tuple[str, int]:
    """Local jobs share this host's loopback."""
    return ("127.0.0.1", port)


def open_stdio(
    task: TaskIO,
    command: Sequence[str] | None,
    *,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    size: tuple[int, int] | None = None,
) -> StdioChannel:
    """Attach to ``task`` (command None) or exec ``command`` in its context."""
    if command is None:
        return AttachChannel(task, stdin=stdin, stdout=stdout, stderr=stderr)
    rows, cols = size or (24, 80)
    return spawn_exec(
        command,
        cwd=task.cwd,
        env=task.env,
        tty=tty,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        rows=rows,
        cols=cols,
    )


class TaskIO(Protocol):
    """What attach needs from a live local task (``process.RunningTask`` provides it)."""

    tty: bool
    stdin_fd: int | None
    returncode: int | None
    exited: bool
    cwd: str | None
    env: Mapping[str, str]

    def add_listener(self, callback: Callable[[int, bytes], None]) -> Callable[[], None]: ...

    def close_stdin(self) -> None: ...

    async def wait(self) -> int: ...


# one write lock per task, shared by all its attachers, so concurrent writes never interleave
_task_locks: weakref.WeakKeyDictionary[Any, anyio.Lock] = weakref.WeakKeyDictionary()


class AttachChannel(StdioChannel):
    """One attacher of a running local task. Closing it detaches; the task goes on.

    Output is what the task writes from the moment of attaching. A slow attacher never
    stalls the task or its log: past ``ATTACH_BUFFER`` queued bytes it is cut off with
    ``ConnectionLost``."""

    def __init__(self, task: TaskIO, *, stdin: bool, stdout: bool, stderr: bool) -> None:
        self._task = task
        self.tty = task.tty
        self._stdin = stdin
        # on a tty both streams are one: fileno 1
        self._want = {1: stdout or (task.tty and stderr), 2: stderr and not task.tty}
        self._open_streams = {1} if task.tty else {1, 2}
        self._queue: collections.deque[Message] = collections.deque()
        self._queued = 0
        self._eof = task.exited
        self._overflow = False
        self._wakeup = _Wakeup()
        lock = _task_locks.get(task)
        if lock is None:
            lock = _task_locks[task] = anyio.Lock()
        self._lock = lock
        self._remove: Callable[[], None] | None = None
        if not self._eof:
            self._remove = task.add_listener(self._feed)

    def _feed(self, fileno: int, data: bytes) -> None:
        if self._eof:
            return
        if not data:
            self._open_streams.discard(fileno)
            if not any(self._want.get(f) for f in self._open_streams):
                self._detach()
        elif self._want.get(fileno):
            if self._queued + len(data) > ATTACH_BUFFER:
                self._overflow = True
                self._detach()
            else:
                self._queue.append(Message(fileno, data))
                self._queued += len(data)
        self._wakeup.set()

    def _detach(self) -> None:
        self._eof = True
        remove, self._remove = self._remove, None
        if remove is not None:
            remove()

    async def receive(self) -> Message | None:
        while True:
            if self._queue:
                msg = self._queue.popleft()
                self._queued -= len(msg.data)
                return msg
            if self._overflow:
                self._overflow = False
                raise ConnectionLost(
                    f"attacher fell more than {ATTACH_BUFFER} bytes behind the job's output; detached"
                )
            if self._eof:
                return None
            await self._wakeup.wait()

    async def send(self, data: bytes) -> None:
        if not self._stdin:
            raise ConnectionLost("attached without stdin")
        async with self._lock:
            view = memoryview(data)
            while view:
                fd = self._task.stdin_fd
                if fd is None or self._task.exited:
                    raise ConnectionLost(
                        "the job's stdin is closed (or it was not started with stdin=True)"
                    )
                try:
                    n = os.write(fd, view)
                except (BlockingIOError, InterruptedError):
                    # bounded wait: the driver closes the fd when the task ends
                    with anyio.move_on_after(0.05):
                        await anyio.wait_writable(fd)
                    continue
                except OSError as exc:
                    raise ConnectionLost(f"the job's stdin is closed: {exc.strerror}") from None
                view = view[n:]

    async def send_eof(self) -> None:
        fd = self._task.stdin_fd
        if not self._stdin or fd is None or self._task.exited:
            return
        if self._task.tty:
            await self.send(_veof(fd))
        else:
            async with self._lock:
                self._task.close_stdin()

    async def resize(self, rows: int, cols: int) -> None:
        fd = self._task.stdin_fd
        if self._task.tty and fd is not None and not self._task.exited:
            set_winsize(fd, rows, cols)

    async def wait(self) -> int | None:
        return await self._task.wait()

    @property
    def returncode(self) -> int | None:
        return self._task.returncode

    async def aclose(self) -> None:
        self._detach()
        self._queue.clear()
        self._wakeup.set()


class _LocalDriverLike(Protocol):
    role: str | None

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Any]: ...

    async def tasks(self, job_id: str) -> list[Task]: ...

    def running_tasks(self, job_id: str) -> Sequence[Any]: ...


async def _running_job(driver: _LocalDriverLike, job_id: str, operation: str) -> None:
    job = (await driver.get_jobs([job_id])).get(job_id)
    if job is None:
        raise JobNotFound(job_id, driver="local")
    if job.status is not JobStatus.RUNNING:
        raise JobNotRunning(job_id, job.status, operation)


async def live_task(driver: _LocalDriverLike, job_id: str, operation: str) -> TaskIO:
    """The running task of a RUNNING job in this (owner) client, the first by index if
    several run."""
    await _running_job(driver, job_id, operation)
    tasks = [t for t in driver.running_tasks(job_id) if not t.exited]
    if not tasks:
        raise JobNotRunning(job_id, JobStatus.RUNNING, operation)
    task: TaskIO = tasks[0]
    return task


def _read_proc_context(pid: int) -> tuple[str, dict[str, str]]:
    # /proc reads never block on I/O
    cwd = os.readlink(f"/proc/{pid}/cwd")
    with open(f"/proc/{pid}/environ", "rb") as f:
        raw = f.read()
    env = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            env[os.fsdecode(key)] = os.fsdecode(value)
    return cwd, env


async def _context_from_proc(driver: _LocalDriverLike, job_id: str) -> tuple[str, dict[str, str]]:
    """cwd and environment of a job that runs under another client (the state dir's
    owner): read from /proc of its task's process, which is the truth anyway."""
    running = [t for t in await driver.tasks(job_id) if t.status is JobStatus.RUNNING]
    for task in running:
        pid = task.raw.get("pid")
        if not isinstance(pid, int):
            continue
        try:
            return _read_proc_context(pid)
        except FileNotFoundError:
            continue  # ended a moment ago
        except PermissionError as exc:
            raise UnsupportedError(
                "local", "exec", f"cannot read the context of pid {pid}: {exc}"
            ) from None
    raise JobNotRunning(job_id, JobStatus.RUNNING, "exec")


async def driver_open_stdio(
    driver: _LocalDriverLike,
    job_id: str,
    command: Sequence[str] | None,
    *,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    size: tuple[int, int] | None = None,
) -> StdioChannel:
    """``LocalDriver.open_stdio``. The owner client attaches through the task's own
    fds; a reader client (another process than the one running the job) attaches
    through the owner's socket (``serve_attach``) and execs with the context read
    from /proc of the job's process."""
    operation = "attach" if command is None else "exec"
    if driver.role == "owner":
        task = await live_task(driver, job_id, operation)
        return open_stdio(
            task, command, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size
        )
    if command is None:
        state_dir = getattr(driver, "state_dir", None)
        if not isinstance(state_dir, str):
            raise UnsupportedError("local", "attach", "from a client that does not own the jobs")
        return await RemoteAttachChannel.connect(
            state_dir, job_id, stdin=stdin, stdout=stdout, stderr=stderr
        )
    await _running_job(driver, job_id, operation)
    cwd, env = await _context_from_proc(driver, job_id)
    return spawn_exec(command, cwd=cwd, env=env, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)


async def driver_port_address(driver: _LocalDriverLike, job_id: str, port: int) -> tuple[str, int]:
    """``LocalDriver.port_address``: the job must be running (any client role: the port
    is on this host's loopback whoever owns the process)."""
    await _running_job(driver, job_id, "port_forward")
    return port_address(port)


# -- attach from another process ---------------------------------------------------
#
# The owner client holds the jobs' stdio fds, so a second process (``aiofarm attach``
# in another terminal) reaches them through the owner: an abstract unix socket named
# after the state dir (no file to go stale, no path length limit), accepting only
# peers of our own uid (SO_PEERCRED). After one JSON line each way (request /
# answer), both sides send frames: 1 byte kind + 4 bytes big-endian length + payload.
#   owner -> client: "1"/"2" output of that fileno, "x" exit code (then close),
#                    "L" cut off (too slow), "w" a stdin write failed (message)
#   client -> owner: "i" stdin data, "e" end of stdin, "r" resize "ROWS COLS"

_FRAME = struct.Struct(">cI")
_MAX_FRAME = 16 << 20


def attach_socket_name(state_dir: str) -> str:
    import hashlib

    digest = hashlib.sha256(os.path.realpath(state_dir).encode()).hexdigest()[:32]
    return f"\0aiofarm-attach-{digest}"


def _frame(kind: bytes, payload: bytes = b"") -> bytes:
    return _FRAME.pack(kind, len(payload)) + payload


async def _read_frame(buffered: Any) -> tuple[bytes, bytes] | None:
    try:
        kind, size = _FRAME.unpack(await buffered.receive_exactly(_FRAME.size))
        if size > _MAX_FRAME:
            return None
        return kind, (await buffered.receive_exactly(size) if size else b"")
    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError, OSError):
        return None


class _OwnerLike(_LocalDriverLike, Protocol):
    state_dir: str


async def serve_attach(
    driver: _OwnerLike, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Run in the owner's task group: serve attach requests from other processes."""
    try:
        listener = await anyio.create_unix_listener(attach_socket_name(driver.state_dir))
    except OSError:
        # someone else serves this name (a stale owner?): attach from other processes
        # is then unavailable, everything else works
        task_status.started()
        return
    async with listener, anyio.create_task_group() as tg:
        task_status.started()
        while True:
            stream = await listener.accept()
            tg.start_soon(_serve_one, driver, stream)


async def _serve_one(driver: _OwnerLike, stream: anyio.abc.SocketStream) -> None:
    import json
    import socket as _socket

    from anyio.streams.buffered import BufferedByteReceiveStream

    async with stream:
        raw = stream.extra(anyio.abc.SocketAttribute.raw_socket)
        _, uid, _ = struct.unpack("3i", raw.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12))
        if uid != os.getuid():
            return
        buffered = BufferedByteReceiveStream(stream)
        try:
            request = json.loads(await buffered.receive_until(b"\n", 65536))
            job_id = str(request["job"])
            flags = {k: bool(request.get(k)) for k in ("stdin", "stdout", "stderr")}
        except (ValueError, KeyError, TypeError, anyio.EndOfStream, anyio.IncompleteRead):
            return
        except anyio.DelimiterNotFound:
            return
        try:
            task = await live_task(driver, job_id, "attach")
        except JobNotFound:
            await stream.send(json.dumps({"error": "not_found"}).encode() + b"\n")
            return
        except JobNotRunning as exc:
            await stream.send(
                json.dumps({"error": "not_running", "status": str(exc.status)}).encode() + b"\n"
            )
            return
        channel = AttachChannel(task, **flags)
        try:
            await stream.send(json.dumps({"ok": True, "tty": task.tty}).encode() + b"\n")
            async with anyio.create_task_group() as tg:

                async def inbound() -> None:
                    while (frame := await _read_frame(buffered)) is not None:
                        kind, payload = frame
                        try:
                            if kind == b"i":
                                await channel.send(payload)
                            elif kind == b"e":
                                await channel.send_eof()
                            elif kind == b"r":
                                rows, cols = (int(v) for v in payload.split())
                                await channel.resize(rows, cols)
                        except (ConnectionLost, InvalidSpec, ValueError) as exc:
                            await stream.send(_frame(b"w", str(exc).encode()))
                    tg.cancel_scope.cancel()  # the attacher went away: detach

                tg.start_soon(inbound)
                try:
                    while (msg := await channel.receive()) is not None:
                        await stream.send(_frame(str(msg.fileno).encode(), msg.data))
                except ConnectionLost as exc:
                    await stream.send(_frame(b"L", str(exc).encode()))
                else:
                    code = await channel.wait()
                    await stream.send(_frame(b"x", b"" if code is None else str(code).encode()))
                tg.cancel_scope.cancel()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass  # the attacher vanished mid-send
        finally:
            await channel.aclose()


class RemoteAttachChannel(StdioChannel):
    """Attach through the owner client's socket (see ``serve_attach``)."""

    def __init__(
        self, stream: anyio.abc.SocketStream, buffered: Any, *, tty: bool, stdin: bool
    ) -> None:
        self._stream = stream
        self._buffered = buffered
        self.tty = tty
        self._stdin = stdin
        self._returncode: int | None = None
        self._done = False
        self._write_error: str | None = None
        self._read_lock = anyio.Lock()

    @classmethod
    async def connect(
        cls, state_dir: str, job_id: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> RemoteAttachChannel:
        import json

        from anyio.streams.buffered import BufferedByteReceiveStream

        try:
            stream = await anyio.connect_unix(attach_socket_name(state_dir))
        except OSError:
            raise UnsupportedError(
                "local", "attach", "no owner client serves this state dir's jobs"
            ) from None
        try:
            request = {"job": job_id, "stdin": stdin, "stdout": stdout, "stderr": stderr}
            await stream.send(json.dumps(request).encode() + b"\n")
            buffered = BufferedByteReceiveStream(stream)
            answer = json.loads(await buffered.receive_until(b"\n", 65536))
        except BaseException as exc:
            await anyio.aclose_forcefully(stream)
            if isinstance(exc, Exception) and not isinstance(exc, FarmError):
                raise ConnectionLost(f"attach: the owner client did not answer: {exc}") from None
            raise
        if answer.get("error") == "not_found":
            await stream.aclose()
            raise JobNotFound(job_id, driver="local")
        if answer.get("error") == "not_running":
            await stream.aclose()
            raise JobNotRunning(job_id, answer.get("status"), "attach")
        return cls(stream, buffered, tty=bool(answer.get("tty")), stdin=stdin)

    async def receive(self) -> Message | None:
        async with self._read_lock:
            while not self._done:
                frame = await _read_frame(self._buffered)
                if frame is None:
                    self._done = True
                    break
                kind, payload = frame
                if kind in (b"1", b"2"):
                    return Message(int(kind), payload)
                if kind == b"x":
                    self._returncode = int(payload) if payload else None
                    self._done = True
                elif kind == b"L":
                    self._done = True
                    raise ConnectionLost(payload.decode(errors="replace"))
                elif kind == b"w":
                    self._write_error = payload.decode(errors="replace")
            return None

    async def _send(self, frame: bytes) -> None:
        try:
            await self._stream.send(frame)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as exc:
            raise ConnectionLost(f"attach: the owner client went away: {exc}") from None

    async def send(self, data: bytes) -> None:
        if not self._stdin:
            raise ConnectionLost("attached without stdin")
        if self._write_error is not None:
            raise ConnectionLost(self._write_error)
        await self._send(_frame(b"i", data))

    async def send_eof(self) -> None:
        if self._stdin:
            await self._send(_frame(b"e"))

    async def resize(self, rows: int, cols: int) -> None:
        await self._send(_frame(b"r", f"{rows} {cols}".encode()))

    @property
    def returncode(self) -> int | None:
        return self._returncode

    async def wait(self) -> int | None:
        """The job's exit code; what output is left unread is consumed here."""
        while await self.receive() is not None:
            pass
        return self._returncode

    async def aclose(self) -> None:
        await anyio.aclose_forcefully(self._stream)
