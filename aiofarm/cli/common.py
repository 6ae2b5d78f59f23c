"""What every ``aiofarm`` command shares: the options of the group, running a command's
coroutine with the CLI's exit codes, notes on stderr, and the option parsers.

Exit codes: the job's own for ``run``; 0 ok; 1 a job did not succeed; 2 bad usage or any
aiofarm error (one red line, no traceback); 130 interrupted; 141 the reader went away.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import click

from ..errors import FarmError
from ..models import JobStatus

if TYPE_CHECKING:
    from ..client import Client

__all__ = [
    "EXIT_BROKEN_PIPE",
    "EXIT_ERROR",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "STATUS_STYLE",
    "Options",
    "color",
    "note",
    "parse_env",
    "parse_statuses",
    "run_command",
]

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

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

    def __init__(self, url: str | None) -> None:
        self.url = url

    def client(self) -> Client:
        from ..client import Client

        return Client(self.url)


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


def _is_broken_pipe(exc: BaseException) -> bool:
    if isinstance(exc, BrokenPipeError):
        return True
    return any(_is_broken_pipe(e) for e in _group(exc))


def _is_interrupt(exc: BaseException) -> bool:
    if isinstance(exc, KeyboardInterrupt):
        return True
    return any(_is_interrupt(e) for e in _group(exc))


def _print_error(err: FarmError) -> None:
    first, _, rest = str(err).partition("\n")
    click.secho(f"aiofarm: error: {first}", fg="red", err=True, color=color())
    if rest:  # a filter parse error: the text and a caret line under the column
        click.echo(rest, err=True)


def run_command(fn: Callable[[], Awaitable[int]]) -> int:
    """Run a command's coroutine; its result, or the exit code of how it failed."""
    import anyio

    try:
        return anyio.run(fn)
    except BaseException as exc:
        if _is_interrupt(exc):
            return EXIT_INTERRUPTED
        if _is_broken_pipe(exc):
            # the shell's answer to a writer whose reader left; point stdout at
            # /dev/null so the interpreter's final flush does not fail again
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return EXIT_BROKEN_PIPE
        err = _farm_error(exc)
        if err is None:
            raise
        _print_error(err)
        return EXIT_ERROR


def color() -> bool | None:
    """click's ``color=``: off with NO_COLOR, else click decides by the stream."""
    # https://no-color.org: any non-empty NO_COLOR turns colour off; None lets click
    # decide by whether the stream is a terminal
    return False if os.environ.get("NO_COLOR") else None


def note(message: str, *, fg: str | None = None, dim: bool = False) -> None:
    """``aiofarm: message`` on stderr."""
    click.secho(f"aiofarm: {message}", fg=fg, dim=dim, err=True, color=color())


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
