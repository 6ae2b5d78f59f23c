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

``start_exec(argv, *, cwd, env, tty, stdin, stdout, stderr, size=None)``
    Start ``argv`` (a list: the client turned a ``str`` into ``/bin/sh -c``) through
    :mod:`aiofarm.drivers.childproc` (its own session; pipes or a pty that is its
    controlling terminal at ``size``), as a child of the calling process: the farm
    service (streams.py relays its stdio to the client), or an embedded farm's
    client. Closing the channel stops it (SIGKILL to its group) and reaps it, also
    under cancellation.

``AttachChannel(task, ...)``
    One of any number of attachers of a running task: output from the moment of
    attaching (through the task's ``add_listener`` fan-out), input into the task's
    stdin (pty master or pipe; one lock per task so attachers' writes never
    interleave). A slow attacher never stalls the task or its log: past
    ``ATTACH_BUFFER`` queued bytes it is cut off with ``ConnectionLost``. Detaching
    never touches the task.
"""

from __future__ import annotations

import collections
import os
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import anyio
import anyio.abc

from ...errors import (
    ConnectionLost,
    JobNotFound,
    JobNotRunning,
    UnsupportedError,
)
from ...models import JobStatus, Message, Task
from ..base import StdioChannel
from ..childproc import ChildChannel, Wakeup, invalid_command, set_winsize, stdin_closed, veof
from ..childproc import open_pty as open_job_pty

#: bytes queued for one attacher before it is cut off (the job never waits for it)
ATTACH_BUFFER = 4 * 1024 * 1024


def start_exec(
    command: Sequence[str],
    *,
    cwd: str | None,
    env: Mapping[str, str] | None,
    tty: bool,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    size: tuple[int, int] | None = None,
) -> StdioChannel:
    """exec ``command`` in a job's context, as this process's child (it dies with the
    channel): :class:`aiofarm.drivers.childproc.ChildChannel`."""
    try:
        return ChildChannel.start(
            list(command), cwd=cwd, env=dict(env) if env is not None else None, tty=tty,
            stdin=stdin, stdout=stdout, stderr=stderr, size=size,
        )
    except OSError as exc:
        raise invalid_command(exc, command, cwd) from None


__all__ = [
    "ATTACH_BUFFER",
    "AttachChannel",
    "TaskIO",
    "driver_open_stdio",
    "driver_port_address",
    "live_task",
    "open_job_pty",
    "open_stdio",
    "port_address",
    "set_winsize",
    "start_exec",
]


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
    return start_exec(
        command, cwd=task.cwd, env=task.env, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size
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
        self._wakeup = Wakeup()
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
            raise stdin_closed("it was not opened (stdin=False)")
        async with self._lock:
            view = memoryview(data)
            while view:
                fd = self._task.stdin_fd
                if fd is None or self._task.exited:
                    raise stdin_closed("the job closed it, ended, or was not started with stdin=True")
                try:
                    n = os.write(fd, view)
                except (BlockingIOError, InterruptedError):
                    # bounded wait: the driver closes the fd when the task ends
                    with anyio.move_on_after(0.05):
                        await anyio.wait_writable(fd)
                    continue
                except OSError as exc:
                    raise stdin_closed(exc.strerror or str(exc)) from None
                view = view[n:]

    async def send_eof(self) -> None:
        fd = self._task.stdin_fd
        if not self._stdin or fd is None or self._task.exited:
            return
        if self._task.tty:
            await self.send(veof(fd))
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
    @property
    def role(self) -> str | None: ...

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
        raise UnsupportedError(
            "local", "attach", "from a reader of an embedded farm (the owner process holds the job's stdio)"
        )
    await _running_job(driver, job_id, operation)
    cwd, env = await _context_from_proc(driver, job_id)
    return start_exec(command, cwd=cwd, env=env, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size)


async def driver_port_address(driver: _LocalDriverLike, job_id: str, port: int) -> tuple[str, int]:
    """``LocalDriver.port_address``: the job must be running (any client role: the port
    is on this host's loopback whoever owns the process)."""
    await _running_job(driver, job_id, "port_forward")
    return port_address(port)

