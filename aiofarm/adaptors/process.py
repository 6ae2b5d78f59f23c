"""``AsyncProcess``: the application an adaptor drives, on anyio.

The process gets its own process group (so a stop reaches whatever it spawned), its
stdout and stderr are decoded incrementally (invalid UTF-8 becomes ``\\xNN`` escapes,
never an exception) and cut into lines of at most ``line_limit`` characters; each line is
forwarded as ``STDOUT: …``/``STDERR: …`` as soon as it is complete, offered to the regex
callbacks (plain or async functions), and kept for :meth:`AsyncProcess.expect`.
:meth:`AsyncProcess.terminate` sends SIGTERM to the group, then SIGKILL after a grace.
An exit nobody asked for is reported to ``on_unexpected_exit`` (the adaptor runtime
fails the running task with it).

Starting, reaping (pidfd), process groups and TERM-then-KILL are the project's one
child-process module's (:mod:`aiofarm.drivers.childproc`); this module adds the line
handling an adaptor needs on top of it.
"""

from __future__ import annotations

import codecs
import contextlib
import inspect
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc

from ..errors import ConnectionLost

if TYPE_CHECKING:
    from ..drivers.childproc import Child, ChildStdio

LineCallback = Callable[["re.Match[str]"], "Awaitable[None] | None"]


class RegexCallback:
    """Call ``callback(match)`` for every line one of ``patterns`` matches (``re.search``).

    ``exit_if_matched`` stops later callbacks from seeing that line (as the official
    ``RegexCallback`` does)."""

    __slots__ = ("callback", "exit_if_matched", "patterns")

    def __init__(
        self,
        patterns: str | re.Pattern[str] | Sequence[str | re.Pattern[str]],
        callback: LineCallback,
        *,
        exit_if_matched: bool = False,
    ) -> None:
        if isinstance(patterns, (str, re.Pattern)):
            patterns = [patterns]
        self.patterns = [re.compile(p) if isinstance(p, str) else p for p in patterns]
        self.callback = callback
        self.exit_if_matched = exit_if_matched

    def match(self, line: str) -> re.Match[str] | None:
        for pattern in self.patterns:
            found = pattern.search(line)
            if found:
                return found
        return None


class ApplicationExited(Exception):
    """The application ended while the adaptor still needed it."""

    def __init__(self, argv0: str, code: int | None) -> None:
        self.code = code
        super().__init__(f"The application {os.path.basename(argv0)!r} exited unexpectedly (exit code {code})")


class AsyncProcess:
    """A running application. Start one with :meth:`open` (an async context manager that
    terminates it on exit) or, inside an adaptor, with ``ctx.start_process`` (it lives
    as long as the adaptor session and is terminated after ``on_cleanup``)."""

    def __init__(
        self,
        argv: Sequence[str],
        *,
        emit: Callable[[str], None],
        stdout_callbacks: Sequence[RegexCallback] = (),
        stderr_callbacks: Sequence[RegexCallback] = (),
        grace: float = 10.0,
        line_limit: int = 64 * 1024,
        encoding: str = "utf-8",
        keep_lines: int = 10_000,
        on_unexpected_exit: Callable[[AsyncProcess], None] | None = None,
    ) -> None:
        if not argv:
            raise ValueError("argv must name a program")
        self.argv = [str(a) for a in argv]
        self.grace = grace
        self.line_limit = max(1, line_limit)
        self._emit = emit
        self._callbacks = {"stdout": list(stdout_callbacks), "stderr": list(stderr_callbacks)}
        self._encoding = encoding
        self._keep = keep_lines
        self._on_unexpected_exit = on_unexpected_exit
        self._child: Child | None = None
        self._io: ChildStdio | None = None
        self._exited = anyio.Event()
        self._lines: list[str] = []
        self._lines_base = 0  # absolute index of self._lines[0]
        self._cursor = 0  # absolute index expect() resumes from
        self._line_event = anyio.Event()
        self._expected_exit = False
        self.returncode: int | None = None

    # -- starting ---------------------------------------------------------------------
    async def _spawn(
        self,
        task_group: anyio.abc.TaskGroup,
        *,
        cwd: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None,
        stdin: bool,
    ) -> None:
        from ..drivers.childproc import ChildStdio, spawn  # only a daemon pays for it

        # own session and process group; when the application ends, whatever it left
        # in its group is killed (reap_group): nothing outlives it
        self._child = spawn(
            self.argv,
            cwd=os.fspath(cwd) if cwd is not None else None,
            env=dict(env) if env is not None else None,
            stdin=stdin,
        )
        self._io = ChildStdio.of(self._child)
        task_group.start_soon(self._watch)

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        task_group: anyio.abc.TaskGroup,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = True,
        **options: Any,
    ) -> AsyncProcess:
        proc = cls(argv, **options)
        await proc._spawn(task_group, cwd=cwd, env=env, stdin=stdin)
        return proc

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        stdin: bool = True,
        **options: Any,
    ) -> AsyncIterator[AsyncProcess]:
        async with anyio.create_task_group() as tg:
            proc = await cls.start(argv, task_group=tg, cwd=cwd, env=env, stdin=stdin, **options)
            try:
                yield proc
            finally:
                with anyio.CancelScope(shield=True):
                    await proc.terminate()

    # -- state ------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self._child is not None
        return self._child.pid

    @property
    def running(self) -> bool:
        return self._child is not None and not self._exited.is_set()

    def expect_exit(self) -> None:
        """The application is about to end on purpose (e.g. after a ``quit`` command)."""
        self._expected_exit = True

    # -- input ------------------------------------------------------------------------
    async def write(self, data: bytes) -> None:
        if self._io is None:
            raise RuntimeError("the application has not been started")
        try:
            await self._io.send(data)
        except ConnectionLost:
            with anyio.move_on_after(5):  # it closed its stdin: it is probably ending
                await self._exited.wait()
            raise ApplicationExited(self.argv[0], self.returncode) from None

    async def send_line(self, text: str) -> None:
        await self.write(text.encode(self._encoding) + b"\n")

    async def close_stdin(self) -> None:
        if self._io is not None:
            with contextlib.suppress(ConnectionLost, OSError):
                await self._io.send_eof()

    # -- output -----------------------------------------------------------------------
    async def _pump(self) -> None:
        assert self._io is not None
        names = {1: "stdout", 2: "stderr"}
        decoders = {n: codecs.getincrementaldecoder(self._encoding)(errors="backslashreplace") for n in names}
        partial = {n: "" for n in names}
        while (msg := await self._io.receive()) is not None:
            if msg.fileno not in names:
                continue
            text = partial[msg.fileno] + decoders[msg.fileno].decode(msg.data)
            *lines, rest = text.split("\n")
            while len(rest) > self.line_limit:
                lines.append(rest[: self.line_limit])
                rest = rest[self.line_limit :]
            partial[msg.fileno] = rest
            for line in lines:
                await self._line(names[msg.fileno], line)
        for n, name in names.items():
            rest = partial[n] + decoders[n].decode(b"", final=True)
            if rest:
                await self._line(name, rest)

    async def _line(self, name: str, line: str) -> None:
        if line.endswith("\r"):
            line = line[:-1]
        while len(line) > self.line_limit:
            await self._line(name, line[: self.line_limit])
            line = line[self.line_limit :]
        self._emit(f"{name.upper()}: {line}")
        if name == "stdout":
            self._lines.append(line)
            if len(self._lines) > self._keep:
                drop = len(self._lines) - self._keep
                del self._lines[:drop]
                self._lines_base += drop
            self._line_event.set()
            self._line_event = anyio.Event()
        for cb in self._callbacks[name]:
            found = cb.match(line)
            if found is None:
                continue
            result = cb.callback(found)
            if inspect.isawaitable(result):
                await result
            if cb.exit_if_matched:
                break

    async def _watch(self) -> None:
        child, io = self._child, self._io
        assert child is not None and io is not None
        drained = anyio.Event()

        async def pump() -> None:
            try:
                await self._pump()
            finally:
                drained.set()

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pump)
                code = await child.wait()
                # something outside its group may still hold the pipes: drain briefly
                with anyio.move_on_after(1.0):
                    await drained.wait()
                tg.cancel_scope.cancel()
            self.returncode = code
        finally:
            if self.returncode is None:  # cancelled: the session is going away
                self.returncode = await child.terminate(0)
            io.close()
            self._exited.set()
            self._line_event.set()
        if not self._expected_exit and self._on_unexpected_exit is not None:
            self._on_unexpected_exit(self)

    async def expect(
        self, pattern: str | re.Pattern[str], *, timeout: float | None = None
    ) -> re.Match[str]:
        """The next stdout line (since the last ``expect``) that ``pattern`` searches
        successfully; raises :class:`ApplicationExited` if the application ends first
        and ``TimeoutError`` after ``timeout`` seconds."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        with anyio.fail_after(timeout):
            while True:
                start = max(self._cursor, self._lines_base)
                for index in range(start, self._lines_base + len(self._lines)):
                    found = regex.search(self._lines[index - self._lines_base])
                    if found is not None:
                        self._cursor = index + 1
                        return found
                self._cursor = self._lines_base + len(self._lines)
                if self._exited.is_set():
                    raise ApplicationExited(self.argv[0], self.returncode)
                await self._line_event.wait()

    # -- ending -----------------------------------------------------------------------
    async def wait(self) -> int:
        await self._exited.wait()
        assert self.returncode is not None
        return self.returncode

    async def terminate(self, grace: float | None = None) -> int:
        """SIGTERM to the process group, SIGKILL after ``grace`` seconds (default: the
        process's ``grace``); returns the exit code. Safe to call more than once, and
        completes even when cancelled."""
        self._expected_exit = True
        if self._child is None:
            return 0
        with anyio.CancelScope(shield=True):
            await self.close_stdin()
            await self._child.terminate(self.grace if grace is None else grace)
            code = await self.wait()
        return code
