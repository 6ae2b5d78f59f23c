"""``StdStream``: the client-side stdio of an attach or exec session, one implementation
for every driver (it wraps the driver's :class:`~aiofarm.drivers.base.StdioChannel`).

Entry points (``Jobs.attach`` / ``Jobs.exec`` delegate here; ``job_id`` already
normalised by the client)::

    open_attach(driver, job_id, *, stdin=False, stdout=True, stderr=True)
        -> AsyncContextManager[StdStream]
    open_exec(driver, job_id, command, *, tty=False, stdin=False, stdout=True,
              stderr=True, size=None) -> AsyncContextManager[StdStream]

Both first look the job up with ``driver.get_jobs([job_id])``: unknown →
``JobNotFound``, not RUNNING → ``JobNotRunning``. ``command`` as a sequence is exec'd
as is; as a ``str`` it runs through ``/bin/sh -c`` (the same rule as ``JobSpec``).

Leaving the context (normally, by an error, or cancelled) closes the channel: an
exec'd process still running is killed (its whole process group) and reaped; an
attach only detaches, the job goes on.

Concurrency: ``read_out`` may run in one task while ``write_in``/``close_in``/``resize``
run in others. Concurrent readers are served one at a time, as are writers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio

from .drivers.base import Driver, StdioChannel
from .errors import ConnectionLost, FarmError, InvalidSpec, JobNotFound, JobNotRunning, WaitTimeout
from .models import Job, JobStatus, Message, command_argv
from .validation import check_seconds, check_text
from .watch import Hub

# user-facing: StdStream. open_attach / open_exec / check_running are the entry points
# Jobs delegates to (importable, documented above, not re-exported by the package).
__all__ = ["StdStream"]


class StdStream:
    """Read a session's output, write its input, resize its terminal, learn its exit code."""

    def __init__(self, channel: StdioChannel, *, job_id: str, stdin: bool, exec_: bool) -> None:
        self._channel = channel
        self._job_id = job_id
        self._stdin = stdin
        self._exec = exec_
        self._read_lock = anyio.Lock()
        self._write_lock = anyio.Lock()
        self._eof = False
        self._in_closed = False
        self._exit_code: int | None = None
        self._exited = False

    @property
    def job_id(self) -> str:
        return self._job_id

    @property
    def tty(self) -> bool:
        """The process runs on a terminal: stdout and stderr both arrive as fileno 1."""
        return self._channel.tty

    @property
    def exit_code(self) -> int | None:
        """The exit code once known (negative: killed by that signal number), else None.
        For an attach, the job's exit code once it has ended."""
        if not self._exited:
            code = self._channel.returncode
            if code is not None:
                self._exit_code, self._exited = code, True
        return self._exit_code

    async def read_out(self) -> Message | None:
        """The next output chunk as ``Message(fileno, data)`` (1 stdout, 2 stderr), or
        None once every requested output stream is at EOF."""
        async with self._read_lock:
            if self._eof:
                return None
            try:
                msg = await self._channel.receive()
            except FarmError:
                raise
            except OSError as exc:
                raise ConnectionLost(f"reading output of job {self._job_id!r}: {exc}") from exc
            if msg is None:
                self._eof = True
            return msg

    async def __aiter__(self) -> AsyncIterator[Message]:
        while (msg := await self.read_out()) is not None:
            yield msg

    async def write_in(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidSpec("data", f"write_in takes bytes, not {type(data).__name__}")
        if not self._stdin:
            raise InvalidSpec("stdin", "this stream was opened without stdin=True")
        async with self._write_lock:
            if self._in_closed:
                raise ConnectionLost("write_in after close_in")
            try:
                await self._channel.send(bytes(data))
            except FarmError:
                raise
            except OSError as exc:
                raise ConnectionLost(f"writing stdin of job {self._job_id!r}: {exc}") from exc

    async def close_in(self) -> None:
        """End of input. On a pipe the process reads EOF; on a terminal this sends the
        terminal's EOF character (Ctrl-D), which a program in raw mode may ignore."""
        if not self._stdin:
            return
        async with self._write_lock:
            if self._in_closed:
                return
            self._in_closed = True
            try:
                await self._channel.send_eof()
            except OSError as exc:
                raise ConnectionLost(f"closing stdin of job {self._job_id!r}: {exc}") from exc

    async def resize(self, rows: int, cols: int) -> None:
        """Set the terminal window size (the process gets SIGWINCH). No-op without tty."""
        for field, value in (("rows", rows), ("cols", cols)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
                raise InvalidSpec(field, f"must be an int in 1..65535, got {value!r}")
        try:
            await self._channel.resize(rows, cols)
        except OSError as exc:
            raise ConnectionLost(f"resizing terminal of job {self._job_id!r}: {exc}") from exc

    async def wait(self) -> int | None:
        """Wait for the process (exec) or the job (attach) to end; its exit code."""
        if not self._exited:
            self._exit_code = await self._channel.wait()
            self._exited = True
        return self._exit_code


def normalize_command(command: object) -> list[str]:
    if isinstance(command, str):
        if not command.strip():
            raise InvalidSpec("command", "must not be empty")
        check_text(command, "command", limit=None)
        return list(command_argv(command))
    if not isinstance(command, Sequence) or isinstance(command, (bytes, bytearray)):
        raise InvalidSpec(
            "command", f"must be a str or a sequence of str, not {type(command).__name__}"
        )
    argv = list(command)
    if not argv:
        raise InvalidSpec("command", "must not be empty")
    for i, arg in enumerate(argv):
        if not isinstance(arg, str):
            raise InvalidSpec(f"command[{i}]", f"must be a str, not {type(arg).__name__}")
        check_text(arg, f"command[{i}]", limit=None, empty=i > 0)
    return argv


def check_size(size: object) -> tuple[int, int] | None:
    if size is not None and (
        not isinstance(size, tuple)
        or len(size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and 0 < v < 65536 for v in size)
    ):
        raise InvalidSpec("size", f"must be (rows, cols) ints in 1..65535, got {size!r}")
    return size


#: how often a job that has not started yet is looked at (shared poller; push wakes at once)
START_POLL_INTERVAL = 2.0


def check_start_timeout(start_timeout: object) -> float:
    return check_seconds(start_timeout, "start_timeout", allow_inf=True)


async def check_running(
    driver: Driver,
    job_id: str,
    operation: str,
    *,
    hub: Hub | None = None,
    start_timeout: float = 0.0,
) -> Job:
    """The job once it is RUNNING: the one place attach, exec and port_forward check
    it (drivers do not look again). A job that has not started yet is waited for up
    to ``start_timeout`` seconds through the client's ``hub``, as ``kubectl run -it``
    waits for its pod; 0 fails at once. JobNotFound, or JobNotRunning (finished, or
    still not running when the time is up)."""
    if not isinstance(job_id, str) or not job_id:
        raise InvalidSpec("job_id", "must be a non-empty str")
    job = (await driver.get_jobs([job_id])).get(job_id)
    if job is None:
        raise JobNotFound(job_id, driver=driver.name, farm=driver.farm_url)
    if job.status is JobStatus.RUNNING:
        return job
    if job.status.is_finished or hub is None or start_timeout <= 0:
        raise JobNotRunning(job_id, job.status, operation)
    from .waiting import wait

    try:
        result = await wait(
            hub, driver, job_id, until=JobStatus.RUNNING, timeout=start_timeout,
            max_interval=START_POLL_INTERVAL,
        )  # fmt: skip
    except WaitTimeout as exc:
        raise JobNotRunning(job_id, exc.last or job.status, operation) from None
    except JobNotRunning as exc:
        raise JobNotRunning(job_id, exc.status, operation) from None
    return result.job


@asynccontextmanager
async def _session(channel: StdioChannel, stream: StdStream) -> AsyncIterator[StdStream]:
    try:
        yield stream
    finally:
        with anyio.CancelScope(shield=True):
            await channel.aclose()


def _check_flags(**flags: object) -> None:
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise InvalidSpec(name, f"must be a bool, not {type(value).__name__}")


@asynccontextmanager
async def open_attach(
    driver: Driver,
    job_id: str,
    *,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    hub: Hub | None = None,
    start_timeout: float = 0.0,
    step: str | None = None,
) -> AsyncIterator[StdStream]:
    """Attach to a running job's own stdio (it must have been started with ``tty`` or
    ``stdin`` for input to be possible; output can always be read from the moment of
    attaching), or to one ``step`` of it. Detaching never stops the job."""
    _check_flags(stdin=stdin, stdout=stdout, stderr=stderr)
    await check_running(driver, job_id, "attach", hub=hub, start_timeout=start_timeout)
    if step is None:
        channel = await driver.open_stdio(job_id, None, tty=False, stdin=stdin, stdout=stdout, stderr=stderr)
    else:
        channel = await driver.open_step_stdio(job_id, step, stdin=stdin, stdout=stdout, stderr=stderr)
    async with _session(channel, StdStream(channel, job_id=job_id, stdin=stdin, exec_=False)) as s:
        yield s


@asynccontextmanager
async def open_exec(
    driver: Driver,
    job_id: str,
    command: Sequence[str] | str,
    *,
    tty: bool = False,
    stdin: bool = False,
    stdout: bool = True,
    stderr: bool = True,
    size: tuple[int, int] | None = None,
    hub: Hub | None = None,
    start_timeout: float = 0.0,
) -> AsyncIterator[StdStream]:
    """Run ``command`` in the running job's context (its cwd and environment; no pool
    slot is charged). ``tty=True`` gives a real terminal, ``size=(rows, cols)`` its
    size from the first instant (default 24x80). Leaving kills what still runs."""
    _check_flags(tty=tty, stdin=stdin, stdout=stdout, stderr=stderr)
    argv = normalize_command(command)
    check_size(size)
    await check_running(driver, job_id, "exec", hub=hub, start_timeout=start_timeout)
    channel = await driver.open_stdio(
        job_id, argv, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size
    )
    async with _session(channel, StdStream(channel, job_id=job_id, stdin=stdin, exec_=True)) as s:
        yield s
