"""Starting, watching and reaping one task attempt's process.

Everything that touches a child process of the local farm lives here, so the
interactive layer (``interactive.py``) has one place to hook into:
:class:`RunningTask` is the live attempt. Through it you get

* ``pid`` / ``pgid`` (the task runs in its own session: ``pgid == pid``), ``argv``,
  ``cwd``, ``env`` (the full environment it was started with; ``envb`` as bytes), ``tty``;
* ``stdin_fd``: a non-blocking fd writing to the process's stdin (the pty master for
  ``tty`` jobs, a pipe for ``stdin`` jobs, None otherwise) and :meth:`close_stdin`;
* :meth:`add_listener`: a fan-out of the raw output chunks as they arrive
  (``callback(fileno, data)``; ``data == b""`` once that stream is at EOF) — the
  same bytes also go to the job's log file, line by line with timestamps;
* :meth:`wait`: the exit code (negative: killed by that signal);
* :meth:`signal_group`: a signal to the whole process group.

Design (measured on this machine, see benchmarks/p2_local_throughput.py): the process
is started and reaped by :mod:`aiofarm.drivers.childproc` (the one child-process
module: ``subprocess.Popen``, i.e. vfork + exec, in a session of its own, reaped
through a pidfd on the event loop, no child watcher thread, no global loop policy).
Output comes through pipes (stdout's enlarged to ``PIPE_SIZE``) watched with
``loop.add_reader`` (from ``ARM_DELAY`` after the start, or at once for a job someone
follows; a task that ends sooner is drained at exit). A plain task's output (no tty,
no OpenJD message hook, no attacher) is moved in the kernel with ``os.splice`` to a
raw file per stream, and an index record per move goes to the job's log
(``logfile``): no copy through Python, no record per line; a pipe that a move finds
full is enlarged to ``PIPE_MAX``. Otherwise, or once a move fails (a full disk), the
output is read with ``os.read`` and written as a record per line, because each line
goes to the attacher or the hook as well as to the log.

When the task's main process exits, whatever it left behind in its process group
is killed with SIGKILL before the zombie is reaped (so the pgid cannot have been
recycled): a finished task leaves no process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import signal
import sys
import termios
import time
from collections.abc import Callable, Mapping, Sequence

from .. import childproc
from ..childproc import Child
from . import logfile
from .model import proc_start

__all__ = ["OutputListener", "RunningTask", "spawn"]

OutputListener = Callable[[int, bytes], None]

_READ_SIZE = 256 << 10
#: the size asked for a task's stdout pipe (the default is 64 KiB): a task writing
#: fast blocks less often, and each wake-up reads more. Bounded so that many running
#: tasks stay under the per-user pipe quota (pipe-user-pages-soft, 64 MiB)
PIPE_SIZE = 256 << 10
#: output pipes are watched only once a task has run this long: most short tasks end
#: before, and their output is drained at exit, which saves two add_reader/remove_reader
#: pairs (~0.1 ms of parent CPU) per task. The cost: a line written in that window is
#: stamped up to this late; a task that fills a pipe in it waits up to PEEK (below).
ARM_DELAY = 0.05
#: until then, the pipes are looked at (FIONREAD, one ioctl each) this often, and
#: watched at once when one holds PEEK_FULL bytes: a fast writer waits ~PEEK, not
#: ARM_DELAY, and a trivial task, gone before the first look, costs nothing more
PEEK = 0.005
PEEK_FULL = 32 << 10
#: a pipe that a splice finds full is enlarged to this (Linux's pipe-max-size default):
#: only tasks that write fast hold big pipes, so many tasks stay under the quota
PIPE_MAX = 1 << 20
_F_GETPIPE_SZ = 1032
_F_SETPIPE_SZ = 1031


class _Raw:
    """A stream spliced to its raw file: ``end`` bytes in the file, ``indexed`` of
    them covered by index records."""

    __slots__ = ("end", "fd", "indexed", "kind", "pipe")

    def __init__(self, fd: int, kind: bytes, end: int, pipe: int) -> None:
        self.fd = fd
        self.kind = kind
        self.end = self.indexed = end
        self.pipe = pipe  # the pipe's capacity



def _pieces(line: bytes) -> list[bytes]:
    """A line as records of at most MAX_LINE bytes (readers rely on the bound)."""
    size = logfile.MAX_LINE
    return [line[i : i + size] for i in range(0, len(line), size)] or [line]


class RunningTask:
    """One live task attempt. Created by :func:`spawn`; the driver owns it."""

    def __init__(
        self,
        *,
        loop: asyncio.AbstractEventLoop,
        child: Child,
        outputs: dict[int, tuple[int, bytes]],
        stdin_fd: int | None,
        log_path: str,
        task_index: int,
        job_id: str,
        task_id: str,
        argv: Sequence[str],
        attempt: int | None = None,
        cwd: str | None,
        env: Mapping[bytes, bytes],
        tty: bool,
        on_exit: Callable[[RunningTask], None],
    ) -> None:
        self.loop = loop
        self.child = child
        self.pid = child.pid
        self.pgid = child.pgid  # the task leads its own group
        self.job_id = job_id
        self.task_id = task_id
        self.task_index = task_index
        self.attempt = attempt  # recorded on each log line (logs.attempt)
        self.argv = tuple(argv)
        self.cwd = cwd
        self.envb = env
        self._env: dict[str, str] | None = None
        self.tty = tty
        self.stdin_fd = stdin_fd
        self.started = time.time()
        self.returncode: int | None = None
        self._outputs = outputs  # read fd -> (fileno, log kind)
        self._bufs: dict[int, bytes] = {fd: b"" for fd in outputs}
        self._log_path = log_path
        self._log_fd: int | None = None
        self._listeners: list[OutputListener] = []
        self._notify: list[Callable[[], None]] = []
        self._raw: dict[int, _Raw] = {}  # read fd -> its raw file, while spliced
        self._lines: set[int] = set()  # read fds read and logged line by line
        self._waiters: list[asyncio.Future[int]] = []
        self._on_exit = on_exit
        self.exited = False
        #: called with each batch of complete stdout lines (OpenJD action messages)
        self.line_hook: Callable[[list[bytes]], None] | None = None
        #: lines that could not be written to the log (a full disk), not yet reported
        self.dropped_lines = 0
        for fd in outputs:
            os.set_blocking(fd, False)
        self._armed = False
        self._arm_timer: asyncio.TimerHandle | None = loop.call_later(PEEK, self._peek)
        child.add_exit_callback(self._exited)

    def _peek(self) -> None:
        """Watch the pipes once one has much in it, or once ARM_DELAY is over."""
        self._arm_timer = None
        if self._armed or self.exited:
            return
        if time.time() - self.started < ARM_DELAY - PEEK:
            size = bytearray(4)
            for fd in self._outputs:
                with contextlib.suppress(OSError):
                    fcntl.ioctl(fd, termios.FIONREAD, size)
                    if int.from_bytes(size, sys.byteorder) >= PEEK_FULL:
                        break
            else:
                self._arm_timer = self.loop.call_later(PEEK, self._peek)
                return
        self._arm()

    def _arm(self) -> None:
        self._arm_timer = None
        if self._armed or self.exited:
            return
        self._armed = True
        for fd in self._outputs:
            self.loop.add_reader(fd, self._readable, fd)

    # -- the hook for interactive.py ---------------------------------------------
    @property
    def env(self) -> Mapping[str, str]:
        """The full environment the task was started with (decoded on first use)."""
        if self._env is None:
            self._env = {os.fsdecode(k): os.fsdecode(v) for k, v in self.envb.items()}
        return self._env

    def add_listener(self, callback: OutputListener) -> Callable[[], None]:
        """Call ``callback(fileno, data)`` with every output chunk from now on;
        returns the function that removes it."""
        self._listeners.append(callback)
        for fd in list(self._raw):
            self._unsplice(fd)  # the listener gets the bytes: they go through Python now
        self.watch()

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._listeners.remove(callback)

        return remove

    def add_notify(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` each time new output is in the log (a follower); returns
        the function that removes it."""
        self._notify.append(callback)
        self.watch()

        def remove() -> None:
            with contextlib.suppress(ValueError):
                self._notify.remove(callback)

        return remove

    def watch(self) -> None:
        """Someone watches live: read output as it comes from now on."""
        if self._arm_timer is not None:
            self._arm_timer.cancel()
            self._arm()

    def close_stdin(self) -> None:
        fd, self.stdin_fd = self.stdin_fd, None
        if fd is not None and fd not in self._outputs:
            os.close(fd)

    async def wait(self) -> int:
        if self.returncode is not None:
            return self.returncode
        fut: asyncio.Future[int] = self.loop.create_future()
        self._waiters.append(fut)
        return await fut

    def signal_group(self, sig: int) -> bool:
        """Send ``sig`` to the task's process group; False if it is already gone."""
        return self.child.signal_group(sig)

    def log_message(self, text: str) -> None:
        """A line from the farm itself (stream ``aiofarm``) in the task's log."""
        self._write(logfile.format_records(b"x", self.task_index, [text.encode()], time.time(), self.attempt))

    # -- internals ---------------------------------------------------------------
    def _write(self, data: bytes | list[bytes | memoryview]) -> None:
        if not self._append(data):
            # a full disk must not kill the scheduler: count what is lost
            self.dropped_lines += _count_lines(data)

    def _append(self, data: bytes | list[bytes | memoryview]) -> bool:
        """Append records to the log, whole or not at all (False)."""
        if self._log_fd is None:
            # opened on first output: a silent task never creates a file
            try:
                self._log_fd = os.open(
                    self._log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600
                )
            except OSError:
                return False
        if self.dropped_lines:
            # space is back: say once how much is missing, then carry on
            if not append_whole(self._log_fd, dropped_note(self.task_index, self.dropped_lines)):
                return False
            self.dropped_lines = 0
        return append_whole(self._log_fd, data)

    def _spliced(self, fd: int) -> bool:
        """Whether ``fd``'s output goes to a raw file (decided at its first output)."""
        if fd in self._raw:
            return True
        if fd in self._lines or self.tty or self.line_hook is not None or self._listeners or self.attempt is None:
            self._lines.add(fd)
            return False
        _, kind = self._outputs[fd]
        path = logfile.raw_path(self._log_path, kind, self.task_index, self.attempt)
        try:
            try:
                raw_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except FileNotFoundError:
                folder = os.path.dirname(path)
                with contextlib.suppress(FileExistsError):
                    os.mkdir(folder, 0o700)
                    os.chmod(folder, 0o700)  # whatever the umask
                raw_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            self._lines.add(fd)  # no raw file (a full disk): line by line
            return False
        # an attempt started again after a crash appends: earlier index records stay right
        self._raw[fd] = _Raw(raw_fd, kind, os.fstat(raw_fd).st_size, fcntl.fcntl(fd, _F_GETPIPE_SZ))
        return True

    def _splice(self, fd: int) -> bool:
        """Move what is in the pipe to the raw file and index it; False if the pipe is
        empty. At the end of the output, or when a move fails, the stream goes on line
        by line (``_unsplice``)."""
        raw = self._raw[fd]
        try:
            n = os.splice(fd, raw.fd, PIPE_MAX, offset_dst=raw.end, flags=os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            return False
        except OSError:
            n = -1  # the bytes stay in the pipe: the read path takes them (and counts drops)
        if n <= 0:
            self._unsplice(fd)
            if n == 0:
                self._feed(fd, b"")  # end of output: a last piece without newline, then close
            return True
        raw.end += n
        if n > raw.pipe * 3 // 4 and raw.pipe < PIPE_MAX:  # full (in pages; writes leave gaps)
            with contextlib.suppress(OSError):
                raw.pipe = fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_MAX)
        record = logfile.index_record(raw.kind, self.task_index, self.attempt or 0, time.time(), raw.indexed, n)
        if not self._append(record):
            self._unsplice(fd)  # what is not indexed goes line by line (or is counted)
            return True
        raw.indexed = raw.end
        for notify in tuple(self._notify):
            notify()
        return True

    def _unsplice(self, fd: int) -> None:
        """Go on line by line: the unfinished last piece and whatever is not yet indexed
        are fed to the line path (no index record yields them)."""
        raw = self._raw.pop(fd)
        self._lines.add(fd)
        try:
            start = logfile.piece_start(raw.fd, raw.indexed)
            data = os.pread(raw.fd, raw.end - start, start)
        except OSError:
            data = b""
        finally:
            os.close(raw.fd)
        self._bufs[fd] = b""
        if data:
            self._log_lines(fd, data)

    def _readable(self, fd: int) -> None:
        if self._spliced(fd):
            self._splice(fd)
            return
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: pty whose slave side is closed = EOF
                raise
            data = b""
        self._feed(fd, data)

    def _feed(self, fd: int, data: bytes) -> None:
        fileno, _ = self._outputs[fd]
        for listener in tuple(self._listeners):
            listener(fileno, data)
        if not data:
            self._close_output(fd)
            return
        self._log_lines(fd, data)
        for notify in tuple(self._notify):
            notify()

    def _log_lines(self, fd: int, data: bytes) -> None:
        _, kind = self._outputs[fd]
        rest = self._bufs[fd]
        buf = rest + data if rest else data
        if b"\n" not in data and len(buf) < logfile.MAX_LINE:
            self._bufs[fd] = buf
            return
        if not self.tty and (self.line_hook is None or b"openjd_" not in buf):
            # the common case, at the speed of a copy: no Python object per line
            split = logfile.split_records(kind, self.task_index, buf, time.time(), self.attempt)
            if split is not None:
                buffers, self._bufs[fd] = split
                if buffers:
                    self._write(buffers)
                return
        lines = buf.split(b"\n")
        rest = lines.pop()
        if any(len(line) > logfile.MAX_LINE for line in lines):
            lines = [piece for line in lines for piece in _pieces(line)]
        while len(rest) >= logfile.MAX_LINE:
            lines.append(rest[: logfile.MAX_LINE])
            rest = rest[logfile.MAX_LINE :]
        self._bufs[fd] = rest
        if self.tty:
            lines = [line[:-1] if line.endswith(b"\r") else line for line in lines]
        if lines:
            self._write(logfile.format_records(kind, self.task_index, lines, time.time(), self.attempt))
            if self.line_hook is not None and b"openjd_" in buf:
                self.line_hook(lines)

    def take_output(self) -> None:
        """Log whatever output is already in the pipes, a partial last line included (an
        OpenJD session's task boundary: the next output belongs to the next task)."""
        for fd in list(self._raw):
            self._unsplice(fd)
        for fd in list(self._outputs):
            while fd in self._outputs:
                try:
                    data = os.read(fd, _READ_SIZE)
                except BlockingIOError:
                    break
                except OSError:
                    data = b""
                self._feed(fd, data)
                if not data:
                    break
            rest = self._bufs.get(fd)
            if rest:
                self._bufs[fd] = b""
                _, kind = self._outputs[fd]
                self._write(logfile.format_records(kind, self.task_index, [rest], time.time(), self.attempt))

    def _close_output(self, fd: int) -> None:
        rest = self._bufs.pop(fd, b"")
        _, kind = self._outputs.pop(fd)
        if rest:
            if self.tty and rest.endswith(b"\r"):
                rest = rest[:-1]
            self._write(logfile.format_records(kind, self.task_index, [rest], time.time(), self.attempt))
            if self.line_hook is not None and b"openjd_" in rest:
                self.line_hook([rest])
        if self._armed:
            self.loop.remove_reader(fd)
        if fd == self.stdin_fd:
            self.stdin_fd = None
        os.close(fd)

    def _drain(self) -> None:
        for fd in list(self._outputs):
            while fd in self._outputs:
                if fd in self._raw:
                    if not self._splice(fd):
                        # an escaped grandchild may hold the write end: stop here anyway
                        self._unsplice(fd)
                        self._feed(fd, b"")
                    continue
                try:
                    data = os.read(fd, _READ_SIZE)
                except BlockingIOError:
                    # an escaped grandchild may hold the write end: stop here anyway
                    data = b""
                except OSError:
                    data = b""
                self._feed(fd, data)

    def _exited(self, child: Child) -> None:
        # childproc has killed what the task left in its group and reaped it
        if self._arm_timer is not None:
            self._arm_timer.cancel()
            self._arm_timer = None
        code = child.returncode
        assert code is not None
        self.returncode = code
        self.exited = True
        if not self._armed:
            # drained only now: a task that ended within ARM_DELAY is not worth a raw file
            self._lines.update(self._outputs)
        self._drain()
        self.close_stdin()
        if self._log_fd is not None:
            os.close(self._log_fd)
            self._log_fd = None
        try:
            self._on_exit(self)
        finally:
            for fut in self._waiters:
                if not fut.done():
                    fut.set_result(code)
            self._waiters.clear()


def spawn(
    loop: asyncio.AbstractEventLoop,
    argv: Sequence[str],
    *,
    env: Mapping[bytes, bytes],
    cwd: str | None,
    tty: bool,
    stdin: bool,
    log_path: str,
    job_id: str,
    task_id: str,
    task_index: int,
    on_exit: Callable[[RunningTask], None],
    pass_fds: Sequence[int] = (),
    attempt: int | None = None,
) -> RunningTask:
    """Start one task attempt. Raises OSError when the program cannot be started.
    ``pass_fds``: more descriptors the child keeps (an OpenJD session's results pipe)."""
    # a tty's master is its stdin whether or not the job takes input (attach writes it)
    child = childproc.spawn(
        argv, cwd=cwd, env=env, stdin=stdin or tty, tty=tty, pass_fds=pass_fds, pipe_size=PIPE_SIZE
    )
    if child.pty_fd is not None:
        outputs = {child.pty_fd: (1, b"o")}
    else:
        assert child.stdout_fd is not None and child.stderr_fd is not None
        outputs = {child.stdout_fd: (1, b"o"), child.stderr_fd: (2, b"e")}
    stdin_fd = child.stdin_fd
    # the fds are ours from here (RunningTask closes them)
    child.stdin_fd = child.stdout_fd = child.stderr_fd = child.pty_fd = None
    return RunningTask(
        loop=loop,
        child=child,
        outputs=outputs,
        stdin_fd=stdin_fd,
        log_path=log_path,
        task_index=task_index,
        job_id=job_id,
        task_id=task_id,
        argv=argv,
        attempt=attempt,
        cwd=cwd,
        env=env,
        tty=tty,
        on_exit=on_exit,
    )


def dropped_note(task_index: int, count: int) -> bytes:
    text = b"%d log line(s) dropped: the state dir could not be written (disk full?)" % count
    return logfile.format_records(b"x", task_index, [text], time.time())


def _count_lines(data: bytes | list[bytes | memoryview]) -> int:
    if isinstance(data, bytes):
        return data.count(b"\n")
    return sum(bytes(b).count(b"\n") for b in data)  # only when lines are lost: copies are fine


def append_whole(fd: int, data: bytes | list[bytes | memoryview]) -> bool:
    """Append ``data`` (bytes, or buffers written as one) whole or not at all (a short
    write on a full disk is cut back, so no torn record is left for readers)."""
    try:
        if isinstance(data, bytes):
            size = len(data)
            n = os.write(fd, data)
        else:
            size = sum(len(b) for b in data)
            n = os.writev(fd, data)
    except OSError:
        return False
    if n == size:
        return True
    with contextlib.suppress(OSError):
        os.ftruncate(fd, os.fstat(fd).st_size - n)
    return False


def kill_launched(tokens: Sequence[str]) -> None:
    """Kill the process groups of every process of ours whose environment carries one
    of these launch tokens (``AIOFARM_LAUNCH``): tasks a dead farm had recorded as
    launching but not yet as running."""
    if not tokens:
        return
    wanted = {b"AIOFARM_LAUNCH=" + t.encode() for t in tokens}
    me = os.getuid()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        try:
            if os.stat(f"/proc/{pid}").st_uid != me:
                continue
            with open(f"/proc/{pid}/environ", "rb") as f:
                env = set(f.read().split(b"\0"))
        except OSError:
            continue
        if env & wanted:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(pid), signal.SIGKILL)


def kill_lost(pid: int | None, pgid: int | None, pstart: float | None) -> None:
    """Kill the process group of a task whose owner died, unless the ids were recycled."""
    if pgid is None:
        return
    import psutil  # type: ignore[import-untyped,unused-ignore]

    leader_start = proc_start(pgid)
    if leader_start is not None and pstart is not None and leader_start != pstart:
        return  # pid reused by an unrelated process that leads its own group: not ours
    if leader_start is None:
        # the leader is gone; members left in the group are our orphans unless they
        # started before our task did (then the group id was reused: impossible to be ours)
        members = []
        for p in psutil.process_iter(["pid"]):
            with contextlib.suppress(psutil.Error, OSError):
                if os.getpgid(p.pid) == pgid:
                    members.append(p)
        if not members:
            return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
