"""What an adaptor author writes against: :class:`AsyncAdaptor` (start once, run many
tasks, stop, clean up), :class:`AsyncCommandAdaptor` (one process per task), and the
:class:`AdaptorContext` every hook reaches as ``self.ctx``."""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import anyio.abc

from .output import OutputSink
from .process import ApplicationExited, AsyncProcess, RegexCallback
from .protocol import ENV_PREFIX, FAIL_PREFIX, PROGRESS_PREFIX, STATUS_PREFIX

if TYPE_CHECKING:
    from aiofarm.models import PathMappingRule

_log = logging.getLogger("aiofarm.adaptors")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _one_line(text: str) -> str:
    return " ".join(str(text).splitlines()).strip()


class AdaptorContext:
    """Talks to the session runner (progress, status, failure, environment) and starts
    the application. Every method is safe to call from any phase."""

    def __init__(
        self,
        sink: OutputSink,
        *,
        task_group: anyio.abc.TaskGroup | None = None,
        on_application_exit: Callable[[ApplicationExited], None] | None = None,
        on_application_start: Callable[[], None] | None = None,
    ) -> None:
        self._sink = sink
        self._task_group = task_group
        self._on_application_exit = on_application_exit
        self._on_application_start = on_application_start
        self._processes: list[AsyncProcess] = []

    def emit(self, line: str) -> None:
        """One line of output, as is (use the methods below for protocol lines)."""
        self._sink.emit(line)

    def progress(self, percent: float) -> None:
        """``openjd_progress: <percent>``; clamped to 0-100, non-finite values ignored."""
        try:
            value = float(percent)
        except (TypeError, ValueError):
            _log.warning("Ignoring progress %r: not a number.", percent)
            return
        if not math.isfinite(value):
            _log.warning("Ignoring non-finite progress %r.", percent)
            return
        value = min(100.0, max(0.0, value))
        self._sink.emit(f"{PROGRESS_PREFIX}{value}")

    def status(self, message: str) -> None:
        """``openjd_status: <message>`` (newlines become spaces)."""
        self._sink.emit(f"{STATUS_PREFIX}{_one_line(message)}")

    def fail(self, message: str) -> None:
        """``openjd_fail: <message>``: the session shows it as the action's failure.
        Raising from a hook does this for you; call it to add detail."""
        self._sink.emit(f"{FAIL_PREFIX}{_one_line(message)}")

    def set_env(self, name: str, value: str) -> None:
        """``openjd_env: NAME=VALUE``: sets a variable for every later action of the
        session. Session runners honour it only while an environment is being entered,
        i.e. from ``on_start`` under ``daemon start``."""
        if not _ENV_NAME.match(name):
            raise ValueError(f"environment variable name {name!r} is not valid")
        if "\n" in value or "\r" in value:
            raise ValueError(f"the value of {name} must be a single line")
        self._sink.emit(f"{ENV_PREFIX}{name}={value}")

    async def start_process(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = True,
        stdout_callbacks: Sequence[RegexCallback] = (),
        stderr_callbacks: Sequence[RegexCallback] = (),
        grace: float = 10.0,
        line_limit: int = 64 * 1024,
        fail_on_exit: bool = True,
    ) -> AsyncProcess:
        """Start the application for the whole adaptor session: it outlives the phase
        that started it, its output is forwarded line by line, and it is terminated
        after ``on_cleanup`` if still running. With ``fail_on_exit`` an exit nobody
        asked for (see :meth:`AsyncProcess.expect_exit`) fails the running task, or the
        next one."""
        if self._task_group is None:
            raise RuntimeError("start_process is available while the adaptor runs")
        proc = await AsyncProcess.start(
            argv,
            task_group=self._task_group,
            cwd=cwd,
            env=env,
            stdin=stdin,
            emit=self._sink.emit,
            stdout_callbacks=stdout_callbacks,
            stderr_callbacks=stderr_callbacks,
            grace=grace,
            line_limit=line_limit,
            on_unexpected_exit=self._unexpected_exit if fail_on_exit else None,
        )
        self._processes = [p for p in self._processes if p.running]
        self._processes.append(proc)
        if fail_on_exit and self._on_application_start is not None:
            self._on_application_start()
        _log.info("Started %s (pid %d).", os.path.basename(proc.argv[0]), proc.pid)
        return proc

    def _unexpected_exit(self, proc: AsyncProcess) -> None:
        if self._on_application_exit is not None:
            self._on_application_exit(ApplicationExited(proc.argv[0], proc.returncode))

    async def terminate_processes(self) -> None:
        """Terminate every application this context started that still runs."""
        procs, self._processes = self._processes, []
        for proc in procs:
            await proc.terminate()


class AsyncAdaptor:
    """Subclass and override the hooks. Each hook runs as one phase:

    - ``on_start()`` once (``daemon start``), ``on_run(run_data)`` per task
      (``daemon run``), ``on_stop()`` then ``on_cleanup()`` once (``daemon stop``);
    - a cancel (the session's SIGTERM, or ``PUT /cancel``) first cancels the running
      ``on_start``/``on_run`` as an anyio cancellation, then awaits ``on_cancel()``;
    - ``on_stop`` and ``on_cleanup`` are shielded from cancellation and limited to
      ``stop_timeout``/``cleanup_timeout`` seconds;
    - an exception fails the phase with ``openjd_fail: <official text>: <exception>``.
    """

    #: ``<Major>.<Minor>`` of init-data/run-data, for ``version-info``/``is-compatible``.
    integration_data_interface_version: ClassVar[str] = "0.1"
    stop_timeout: ClassVar[float] = 60.0
    cleanup_timeout: ClassVar[float] = 30.0
    cancel_timeout: ClassVar[float] = 30.0

    def __init__(
        self,
        init_data: Mapping[str, Any],
        *,
        ctx: AdaptorContext,
        config: Mapping[str, Any] | None = None,
        path_mapping_rules: Sequence[PathMappingRule] = (),
    ) -> None:
        self.init_data = dict(init_data)
        self.ctx = ctx
        self.config = dict(config or {})
        self.path_mapping_rules = tuple(path_mapping_rules)

    def map_path(self, path: str) -> str:
        """``path`` rewritten by the session's path mapping rules (longest match)."""
        from aiofarm.pathmap import apply_rules

        return apply_rules(self.path_mapping_rules, path)

    async def on_start(self) -> None:
        """Start the application (once per session)."""

    async def on_run(self, run_data: dict[str, Any]) -> None:
        """Do one task."""
        raise NotImplementedError

    async def on_stop(self) -> None:
        """Ask the application to end."""

    async def on_cleanup(self) -> None:
        """Last chance to remove what the adaptor left behind."""

    async def on_cancel(self) -> None:
        """Called before the running phase is cancelled (e.g. to tell the application
        to abort its current work gracefully)."""


class AsyncCommandAdaptor(AsyncAdaptor):
    """One process per task: ``get_command(run_data)`` is run with its output forwarded;
    a non-zero exit code fails the task (the official ``CommandAdaptor`` ignores it)."""

    stdout_callbacks: ClassVar[Sequence[RegexCallback]] = ()
    stderr_callbacks: ClassVar[Sequence[RegexCallback]] = ()
    grace: ClassVar[float] = 10.0

    def get_command(self, run_data: dict[str, Any]) -> Sequence[str]:
        raise NotImplementedError

    def get_cwd(self, run_data: dict[str, Any]) -> str | None:
        return None

    def get_env(self, run_data: dict[str, Any]) -> Mapping[str, str] | None:
        return None

    async def on_prerun(self, run_data: dict[str, Any]) -> None:
        """Before the command starts."""

    async def on_postrun(self, run_data: dict[str, Any], exit_code: int) -> None:
        """After it exited with code 0."""

    async def on_run(self, run_data: dict[str, Any]) -> None:
        argv = list(self.get_command(run_data))
        await self.on_prerun(run_data)
        proc = await self.ctx.start_process(
            argv,
            cwd=self.get_cwd(run_data),
            env=self.get_env(run_data),
            stdin=False,
            stdout_callbacks=self.stdout_callbacks,
            stderr_callbacks=self.stderr_callbacks,
            grace=self.grace,
            fail_on_exit=False,
        )
        try:
            code = await proc.wait()
        finally:
            # cancelled or failed: the process must not outlive its task
            with anyio.CancelScope(shield=True):
                await proc.terminate()
        if code != 0:
            raise RuntimeError(f"{os.path.basename(argv[0])} exited with code {code}")
        await self.on_postrun(run_data, code)
