"""Commands of the ``aiofarm`` CLI. Each one opens a :class:`aiofarm.Client`, does one
thing, and closes it. Exit codes: the job's own for ``run``; 0 ok; 1 a job did not
succeed; 2 bad usage or any aiofarm error (one red line, no traceback); 130 interrupted.

rich is imported only by the commands that draw tables or progress bars, so ``run``
and ``logs`` start fast.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

import click

from ..errors import FarmError
from ..models import JobStatus

if TYPE_CHECKING:
    from ..client import Client
    from ..models import Job, LogLine

__all__ = ["cli", "main"]

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE

_STATUS_STYLE = {
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


# -- plumbing --------------------------------------------------------------------------


class _Options:
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
    click.secho(f"aiofarm: error: {first}", fg="red", err=True, color=_color())
    if rest:  # a filter parse error: the text and a caret line under the column
        click.echo(rest, err=True)


def _run(fn: Callable[[], Awaitable[int]]) -> int:
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


def _color() -> bool | None:
    # https://no-color.org: any non-empty NO_COLOR turns colour off; None lets click
    # decide by whether the stream is a terminal
    return False if os.environ.get("NO_COLOR") else None


def _note(message: str, *, fg: str | None = None, dim: bool = False) -> None:
    click.secho(f"aiofarm: {message}", fg=fg, dim=dim, err=True, color=_color())


class _Output:
    """Job output to our stdout/stderr. Buffered, since a flush per line costs more than
    the rest of the path; flushed when the line's stream changes, so ``2>&1`` into one
    file keeps the job's order, and by :meth:`ticker` every 50 ms, so a pipe still sees
    output live. A reader that went away (``| head``) sets ``broken`` instead of raising
    from inside a task group."""

    def __init__(self) -> None:
        self._last: TextIO | None = None
        self.broken = False

    def write(self, line: LogLine) -> None:
        out: TextIO = sys.stderr if line.stream == "stderr" else sys.stdout
        try:
            if self._last is not None and out is not self._last:
                self._last.flush()
            out.write(line.text if line.text.endswith("\n") else line.text + "\n")
        except BrokenPipeError:
            self.broken = True
        self._last = out

    def flush(self) -> None:
        if self._last is not None:
            self._last = None
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            except BrokenPipeError:
                self.broken = True

    async def ticker(self) -> None:
        import anyio

        while not self.broken:
            await anyio.sleep(0.05)
            self.flush()


def _local(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(job: Job) -> str:
    if job.started_at is None:
        return "-"
    end = job.finished_at or datetime.now(timezone.utc)
    seconds = max(0.0, (end - job.started_at).total_seconds())
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{sec:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _exit_code(job: Job) -> int:
    """The shell's convention: the job's code, 128+N when killed by signal N, else 1."""
    if job.status is JobStatus.SUCCEEDED:
        return 0
    code = job.exit_code
    if code is not None and code < 0:
        return min(128 - code, 255)
    if code:
        return code & 0xFF or EXIT_FAILED
    return EXIT_FAILED


def _end_detail(job: Job) -> str:
    """``exit code 3; timed out`` (the reason often repeats the exit code: said once)."""
    detail = [f"exit code {job.exit_code}"] if job.exit_code is not None else []
    if job.reason and job.reason not in detail:
        detail.append(job.reason)
    return "; ".join(detail)


def _describe_end(job: Job) -> str:
    detail = _end_detail(job)
    text = f"job {job.id} {job.status.value}"
    return f"{text} ({detail})" if detail else text


def _job_dict(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status.value,
        "owner": job.owner,
        "pool": job.pool,
        "tags": list(job.tags),
        "description": job.description,
        "priority": job.priority,
        "created_at": job.created_at.isoformat() if job.created_at else None,
        "started_at": job.started_at.isoformat() if job.started_at else None,
        "finished_at": job.finished_at.isoformat() if job.finished_at else None,
        "exit_code": job.exit_code,
        "reason": job.reason,
        "depends_on": list(job.depends_on),
        "task_counts": dict(job.task_counts),
        "driver": job.driver,
        "history": [
            {"status": h.status.value, "time": h.time.isoformat(), "reason": h.reason}
            for h in job.history
        ],
    }


def _parse_statuses(
    ctx: click.Context, param: click.Parameter, values: Sequence[str]
) -> frozenset[JobStatus] | None:
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


def _parse_env(ctx: click.Context, param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
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


# -- the group ---------------------------------------------------------------------------


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    default=None,
    help="Farm to talk to (local://DIR, slurm+http://HOST:PORT, deadline://FARM/QUEUE). "
    "Default: $AIOFARM_URL, else $XDG_CONFIG_HOME/aiofarm/config.toml, else local://.",
)
@click.version_option(package_name="aiofarm", prog_name="aiofarm")
@click.pass_context
def cli(ctx: click.Context, url: str | None) -> None:
    """Run jobs on a compute farm and watch them: the local machine, Slurm, Deadline Cloud.

    \b
      aiofarm run -- echo hello from aiofarm
      aiofarm ls --status failed --where 'priority < 50'
      aiofarm logs -f JOB_ID
    """
    ctx.obj = _Options(url)


# -- run ---------------------------------------------------------------------------------


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", help="Job name (default: the command line, shortened).")
@click.option("--pool", help="Pool (queue, partition) to run in.")
@click.option("--priority", type=int, default=50, show_default=True, help="0..100, higher first.")
@click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_parse_env,
    help="Set an environment variable (repeatable); KEY alone passes this shell's value.",
)
@click.option("--cwd", help="Working directory of the job.")
@click.option("--tag", "tags", multiple=True, help="Tag the job (repeatable).")
@click.option("--timeout", type=float, help="Kill the job after this many seconds.")
@click.option(
    "--retries", type=int, default=0, show_default=True, help="Extra attempts on failure."
)
@click.option(
    "--shell",
    is_flag=True,
    help="Run the command through /bin/sh -c (the words joined by spaces).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the job's own output.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run(
    opts: _Options,
    name: str | None,
    pool: str | None,
    priority: int,
    env: dict[str, str],
    cwd: str | None,
    tags: tuple[str, ...],
    timeout: float | None,
    retries: int,
    shell: bool,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Submit COMMAND, stream its output here, and exit with its exit code.

    Job stdout goes to stdout and job stderr to stderr. Ctrl-C cancels the job;
    a second Ctrl-C kills it; a third stops waiting. Put -- before the command
    when it starts with a dash or you want to be explicit:

    \b
      aiofarm run -- echo hello from aiofarm
      aiofarm run --pool gpu -e SEED=3 -- python render.py --frames 1-10
    """
    cmd: str | tuple[str, ...] = " ".join(command) if shell else command
    if name is None:
        line = cmd if isinstance(cmd, str) else shlex.join(cmd)
        name = line if len(line) <= 60 else line[:59] + "…"
    sys.exit(
        _run(
            lambda: _run_job(
                opts,
                cmd,
                name=name,
                pool=pool,
                priority=priority,
                env=env,
                cwd=cwd,
                tags=tags,
                timeout=timeout,
                retries=retries,
                quiet=quiet,
            )
        )
    )


async def _run_job(
    opts: _Options, command: str | tuple[str, ...], *, quiet: bool, **spec: Any
) -> int:
    import anyio
    import anyio.abc

    from ..models import Capability

    tty = sys.stderr.isatty() and not quiet
    job_id: str | None = None
    signals_seen: list[int] = []
    async with opts.client() as farm, anyio.create_task_group() as tg:

        async def cancel_job() -> None:
            assert job_id is not None
            if not quiet:
                _note(f"canceling job {job_id} (Ctrl-C again to kill it)", fg="yellow")
            await farm.jobs.cancel(job_id)

        async def kill_job() -> None:
            assert job_id is not None
            if not quiet:
                _note(f"killing job {job_id} (Ctrl-C again to stop waiting)", fg="yellow")
            # best effort: a job already gone, or a back end without signals, is fine:
            # the cancel is on its way
            with contextlib.suppress(FarmError):
                await farm.jobs.send_signal(job_id, signal.SIGKILL)

        async def on_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            # SIGHUP too: a closed terminal should not leave the job running unwatched
            with anyio.open_signal_receiver(
                signal.SIGINT, signal.SIGTERM, signal.SIGHUP
            ) as received:
                task_status.started()
                async for signum in received:
                    signals_seen.append(signum)
                    if job_id is None:
                        continue  # handled once the job exists
                    if len(signals_seen) == 1:
                        tg.start_soon(cancel_job)
                    elif len(signals_seen) == 2:
                        tg.start_soon(kill_job)
                    else:
                        tg.cancel_scope.cancel()

        await tg.start(on_signals)  # installed before the job exists: no window without it
        job = await farm.jobs.start(command, **spec)
        job_id = job.id
        if tty:
            _note(f"job {job.id} submitted", dim=True)
        if signals_seen:  # Ctrl-C came while submitting
            tg.start_soon(cancel_job)

        if Capability.LOGS_FOLLOW in farm.capabilities:
            try:
                await _pump(farm, job.id, follow=True, timestamps=False)
            except BrokenPipeError:
                # like `cmd | head`: the reader is gone, so the job's output has nowhere
                # to go: cancel it rather than leave it running unread
                with anyio.CancelScope(shield=True):
                    await farm.jobs.cancel(job.id)
                raise
            result = await farm.jobs.wait(job.id)
        else:  # no live logs on this back end: wait, then print what the job wrote
            result = await farm.jobs.wait(job.id)
            if Capability.LOGS in farm.capabilities:
                await _pump(farm, job.id, follow=False, timestamps=False)
        tg.cancel_scope.cancel()

    interrupted = 128 + signals_seen[0] if signals_seen else None
    if len(signals_seen) > 2:
        return interrupted or EXIT_INTERRUPTED
    job = result.job
    code = _exit_code(job)
    if interrupted and job.status is not JobStatus.SUCCEEDED:
        code = interrupted
    if job.status is JobStatus.SUCCEEDED:
        if tty:
            _note(f"job {job.id} succeeded in {_duration(job)}", dim=True)
    elif not quiet:
        _note(_describe_end(job), fg="red")
    return code


async def _pump(farm: Client, job_id: str, *, follow: bool, timestamps: bool, skip: int = 0) -> int:
    """Print a job's log lines; returns how many lines the stream held (skipped included)."""
    import anyio

    count = 0
    output = _Output()
    try:
        async with (
            anyio.create_task_group() as tg,
            farm.logs.stream(job_id, follow=follow, timestamps=timestamps) as lines,
        ):
            tg.start_soon(output.ticker)
            async for line in lines:
                count += 1
                if count > skip:
                    output.write(line)
                    if output.broken:
                        break
            tg.cancel_scope.cancel()
    finally:
        output.flush()
    if output.broken:
        raise BrokenPipeError(32, "the reader of our output went away")
    return count


# -- ls ----------------------------------------------------------------------------------


@cli.command("ls")
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    callback=_parse_statuses,
    metavar="STATUS",
    help="Only jobs in these statuses (repeatable or comma-separated; also active, finished).",
)
@click.option("--where", "-w", "where_text", metavar="EXPR", help="Filter, e.g. 'priority < 50'.")
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Newest N jobs; 0 for all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.option(
    "--quiet", "-q", "ids_only", is_flag=True, help="Print only ids, one a line (for scripts)."
)
@click.pass_obj
def ls(
    opts: _Options,
    statuses: frozenset[JobStatus] | None,
    where_text: str | None,
    limit: int,
    as_json: bool,
    ids_only: bool,
) -> None:
    """List jobs, newest first."""

    async def go() -> int:
        from ..where import parse

        expr = parse(where_text) if where_text is not None else None  # fail before connecting
        want = None if limit == 0 else limit + 1  # one more tells whether there are more
        async with (
            opts.client() as farm,
            farm.jobs.list(statuses=statuses, where=expr, reverse=True, limit=want) as it,
        ):
            jobs = [job async for job in it]
        more = want is not None and len(jobs) > limit
        if more:
            jobs = jobs[:limit]
        if as_json:
            import json

            click.echo(json.dumps([_job_dict(j) for j in jobs], indent=2))
            return 0
        if ids_only:
            click.echo("".join(f"{j.id}\n" for j in jobs), nl=False)
            return 0
        from .render import jobs_table

        jobs_table(jobs)
        if more:
            _note(f"showing the newest {limit}; --limit 0 shows all", dim=True)
        return 0

    sys.exit(_run(go))


# -- status ------------------------------------------------------------------------------


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(opts: _Options, job_id: str, as_json: bool) -> None:
    """Show one job: its fields and its status history."""

    async def go() -> int:
        async with opts.client() as farm:
            job = await farm.jobs.get(job_id)
        if as_json:
            import json

            click.echo(json.dumps(_job_dict(job), indent=2))
        else:
            from .render import job_details

            job_details(job)
        return 0

    sys.exit(_run(go))


# -- logs --------------------------------------------------------------------------------


@cli.command()
@click.argument("job_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job finishes.")
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its UTC time.")
@click.option("--tail", "-n", type=click.IntRange(min=0), help="Only the last N lines.")
@click.pass_obj
def logs(opts: _Options, job_id: str, follow: bool, timestamps: bool, tail: int | None) -> None:
    """Print a job's output: its stdout to stdout, its stderr to stderr."""

    async def go() -> int:
        async with opts.client() as farm:
            await farm.jobs.get(job_id)  # an unknown id is an error, not empty output
            if tail is None:
                await _pump(farm, job_id, follow=follow, timestamps=timestamps)
                return 0
            last: deque[LogLine] = deque(maxlen=tail)
            seen = 0
            async with farm.logs.stream(job_id, follow=False, timestamps=timestamps) as lines:
                async for line in lines:
                    seen += 1
                    last.append(line)
            output = _Output()
            for line in last:
                output.write(line)
            output.flush()
            if follow:  # resume after what was already there: no line twice
                await _pump(farm, job_id, follow=True, timestamps=timestamps, skip=seen)
        return 0

    sys.exit(_run(go))


# -- wait --------------------------------------------------------------------------------


@cli.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after S seconds (exit 2).")
@click.pass_obj
def wait(opts: _Options, job_ids: tuple[str, ...], timeout: float | None) -> None:
    """Wait until every job has finished; exit 1 if any did not succeed."""

    async def go() -> int:
        from .render import wait_progress

        ids = list(dict.fromkeys(job_ids))
        async with opts.client() as farm:
            await farm.jobs.get_many(ids)  # an unknown id fails before the bar is drawn
            ok = await wait_progress(farm, ids, timeout)
        return 0 if ok else EXIT_FAILED

    sys.exit(_run(go))


# -- cancel ------------------------------------------------------------------------------


@cli.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_obj
def cancel(opts: _Options, job_ids: tuple[str, ...]) -> None:
    """Cancel jobs (running work is stopped)."""

    async def go() -> int:
        async with opts.client() as farm:
            jobs = await farm.jobs.get_many(list(dict.fromkeys(job_ids)))  # unknown ids first
            live = [job.id for job in jobs if not job.status.is_finished]
            if live:
                await farm.jobs.cancel(live)
        for job in jobs:
            if job.status.is_finished:
                click.echo(f"{job.id} already {job.status.value}")
            else:
                click.echo(f"canceled {job.id}")
        return 0

    sys.exit(_run(go))


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``aiofarm`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="aiofarm")
