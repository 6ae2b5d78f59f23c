"""What every ``aiofarm`` command shares: the options of the group (farm URL or
context, colour), running a command's coroutine with the CLI's exit codes, notes on
stderr, and the option parsers.

Exit codes (docs/cli.md): the job's own for ``run``; 0 ok; 1 a job did not succeed;
2 bad usage or any aiofarm error (one red line, no traceback); 3 ``farm status``: no
service; 124 ``wait --timeout`` ran out; 130 interrupted (128+N for signal N); 141 the
reader went away.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

from ..errors import FarmError
from ..models import JobStatus

if TYPE_CHECKING:
    from ..client import Client

__all__ = [
    "COLOR_MODE",
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_TIMEOUT",
    "STATUS_STYLE",
    "Options",
    "color",
    "confirm_many",
    "note",
    "parse_env",
    "parse_statuses",
    "run_command",
    "stdout_color",
]

E = TypeVar("E", bound=BaseException)

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE
#: ``wait --timeout`` ran out, as timeout(1) reports it
EXIT_TIMEOUT = 124

#: click/rich colour of each status
STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.SUSPENDED: "magenta",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "red",
    JobStatus.CANCELED: "bright_black",
    JobStatus.UNKNOWN: "white",
}
_STATUS_GROUPS = {
    "active": JobStatus.active_items(),
    "finished": JobStatus.finished_items(),
}


class Options:
    """The group's options, handed to every command as click's ``obj``."""

    def __init__(self, url: str | None, context: str | None = None) -> None:
        self.url = url
        self.context = context

    def resolved_url(self) -> str:
        """``--url``, else ``--context``'s URL, else the library's order (``AIOFARM_URL``,
        ``AIOFARM_CONTEXT``, the config file's current context, ``local://``)."""
        from ..config import context_url, resolve_url

        if self.url is None and self.context is not None:
            return context_url(self.context)
        return resolve_url(self.url)

    def client(self) -> Client:
        from ..client import Client

        return Client(self.resolved_url())


def _farm_error(exc: BaseException) -> FarmError | None:
    """The FarmError behind ``exc``, looking inside exception groups from task groups."""
    if isinstance(exc, FarmError):
        return exc
    for inner in _group(exc):
        found = _farm_error(inner)
        if found is not None:
            return found
    return None


def _group(exc: BaseException) -> Sequence[BaseException]:
    # duck-typed: BaseExceptionGroup is a builtin only from 3.11 (anyio backports it)
    inner = getattr(exc, "exceptions", None)
    return inner if isinstance(inner, tuple) else ()


def _find(exc: BaseException, kind: type[E]) -> E | None:
    """``exc`` if it is a ``kind``, else the first one inside its exception groups."""
    if isinstance(exc, kind):
        return exc
    for inner in _group(exc):
        found = _find(inner, kind)
        if found is not None:
            return found
    return None


def _is_broken_pipe(exc: BaseException) -> bool:
    if isinstance(exc, BrokenPipeError):
        return True
    return any(_is_broken_pipe(e) for e in _group(exc))


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    return any(_is_interrupt(e) for e in _group(exc))


def _print_error(err: FarmError, url: str | None) -> None:
    from ..errors import JobNotFound, PoolNotFound

    if url is not None and isinstance(err, (JobNotFound, PoolNotFound)):
        # a Client names its farm itself; the quick read path has no Client
        from ..client import redact_url

        err.name_farm(redact_url(url))
    first, _, rest = str(err).partition("\n")
    click.secho(f"aiofarm: error: {first}", fg="red", err=True, color=color())
    if rest:  # a filter parse error: the text and a caret line under the column
        click.echo(rest, err=True)


class _NeedsLoop(Exception):
    """A loop-less command reached code that needs an event loop."""


def _drive(coro: Coroutine[Any, Any, int]) -> int:
    """Run a coroutine that never suspends (the quick read path: blocking requests)
    to its end without an event loop, which would cost more to import than the rest.
    Raises _NeedsLoop when it does need one (a checkpoint between listing pages)."""
    try:
        coro.send(None)
    except StopIteration as done:
        return int(done.value)
    except RuntimeError as exc:  # anyio's NoEventLoopError: no loop to checkpoint on
        raise _NeedsLoop() from exc
    coro.close()
    raise _NeedsLoop()


#: how a signal that stopped a command is named in its last message
SIGNAL_WORDS = {
    signal.SIGINT: "Ctrl-C",
    signal.SIGTERM: "SIGTERM",
    signal.SIGHUP: "hang-up (SIGHUP)",
}


async def _until_signal(fn: Callable[[], Coroutine[Any, Any, int]], received: list[int]) -> int:
    """``fn()``, cancelled cleanly by SIGTERM or SIGHUP (so every context manager exits:
    progress bars show the cursor again, raw terminals are restored); the signal is
    put in ``received``."""
    import anyio
    import anyio.abc

    code = EXIT_INTERRUPTED
    async with anyio.create_task_group() as tg:

        async def watch(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGHUP) as signals:
                task_status.started()
                async for signum in signals:
                    received.append(int(signum))
                    tg.cancel_scope.cancel()
                    return

        await tg.start(watch)
        code = await fn()
        tg.cancel_scope.cancel()
    return code


def run_command(
    fn: Callable[[], Coroutine[Any, Any, int]],
    *,
    loop: bool = True,
    signals: bool = True,
    stopped: str | None = None,
) -> int:
    """Run a command's coroutine; its result, or the exit code of how it failed.

    ``loop=False``: a coroutine that never waits (see :func:`_drive`). ``signals``:
    SIGTERM/SIGHUP stop the command cleanly with exit 128+N (commands that handle
    signals themselves pass False). ``stopped``: what to say when a signal or Ctrl-C
    stops it (``stopped waiting; the jobs go on``)."""
    received: list[int] = []
    try:
        if not loop:
            try:
                return _drive(fn())
            except _NeedsLoop:
                pass  # read-only and nothing printed yet: run it again on a loop
        import logging

        import anyio

        # the library's retry warnings are for programs that log; a command's outcome
        # is its output, its exit code and its one error line
        logging.getLogger("aiofarm").addHandler(logging.NullHandler())
        if not signals:
            return anyio.run(fn)
        code = anyio.run(_until_signal, fn, received)
        if received:
            if stopped:
                note(f"{SIGNAL_WORDS.get(signal.Signals(received[0]), 'signal')}: {stopped}", fg="yellow")
            return 128 + received[0]
        return code
    except BaseException as exc:
        if _is_interrupt(exc):
            if stopped:
                note(f"Ctrl-C: {stopped}", fg="yellow")
            return EXIT_INTERRUPTED
        if _is_broken_pipe(exc):
            # the shell's answer to a writer whose reader left; point stdout at
            # /dev/null so the interpreter's final flush does not fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return EXIT_BROKEN_PIPE
        usage = _find(exc, click.ClickException)
        if usage is not None:
            raise usage from None  # a usage error found inside the command: click reports it
        err = _farm_error(exc)
        if err is None:
            raise
        url = None
        ctx = click.get_current_context(silent=True)
        opts = ctx.find_object(Options) if ctx is not None else None
        if opts is not None:
            with contextlib.suppress(FarmError):
                url = opts.resolved_url()
        _print_error(err, url)
        return EXIT_ERROR


#: ``--color``: auto, always or never (set by the group's option)
COLOR_MODE = {"mode": "auto"}


def color(stream_tty: bool | None = None) -> bool | None:
    """click's ``color=``: ``--color always|never`` wins; under ``auto``, ``NO_COLOR``
    (https://no-color.org) turns it off, ``FORCE_COLOR`` on, ``TERM=dumb`` off, else
    click decides by whether the stream is a terminal (None), or ``stream_tty`` says."""
    mode = COLOR_MODE["mode"]
    if mode != "auto":
        return mode == "always"
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR", "") not in ("", "0"):
        return True
    if os.environ.get("TERM") == "dumb":
        return False
    return stream_tty


def stdout_color() -> bool:
    """Whether our stdout gets colour."""
    on = color()
    return sys.stdout.isatty() if on is None else on


def note(message: str, *, fg: str | None = None, dim: bool = False) -> None:
    """``aiofarm: message`` on stderr."""
    click.secho(f"aiofarm: {message}", fg=fg, dim=dim, err=True, color=color())


def confirm_many(verb: str, ids: Sequence[str], yes: bool, *, threshold: int = 1) -> bool:
    """Whether to go on with ``verb`` on more than ``threshold`` jobs: ``--yes``, or a
    yes at a prompt on a terminal. Without a terminal it never prompts: it refuses
    (exit 2 by the caller) and says to pass --yes."""
    if yes or len(ids) <= threshold:
        return True
    if not (sys.stdin.isatty() and sys.stderr.isatty()):
        raise click.UsageError(f"{verb} {len(ids)} jobs needs --yes when not on a terminal")
    shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
    return click.confirm(f"{verb} {len(ids)} jobs ({shown})?", err=True)


def parse_statuses(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> frozenset[JobStatus] | None:
    """click callback: ``-s failed,canceled -s active`` as a set of statuses."""
    if not values:
        return None
    out: set[JobStatus] = set()
    for value in values:
        for item in value.split(","):
            word = item.strip().lower()
            if not word:
                continue
            if word in _STATUS_GROUPS:
                out |= _STATUS_GROUPS[word]
                continue
            try:
                out.add(JobStatus(word))
            except ValueError:
                choices = ", ".join([*(s.value for s in JobStatus), *_STATUS_GROUPS])
                raise click.BadParameter(f"{item!r} is not one of {choices}") from None
    return frozenset(out)


def parse_env(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    """click callback: ``-e KEY=VALUE`` (``-e KEY`` passes this shell's value)."""
    env: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE")
        if not sep:  # `--env KEY` passes this shell's value through, as docker does
            if key not in os.environ:
                raise click.BadParameter(f"{key!r} is not set here; use {key}=VALUE")
            value = os.environ[key]
        env[key] = value
    return env
