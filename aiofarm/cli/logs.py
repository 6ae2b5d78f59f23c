"""``aiofarm logs``: one job's output, or many jobs' interleaved (``-l``, ``--where``,
several ids), as ``kubectl logs`` does.

The job's stdout goes to our stdout and its stderr to our stderr; ``--prefix`` puts
``[ID] `` in front of each line (on by default for several jobs); ``-o json`` prints
JSON lines (``{"type": "log", "job", "stream", "time", "task", "text"}``) on stdout.
Several jobs come through the library's one stream over many jobs (``logs.stream(ids)``,
lines in arrival order, each with its job id); ``--tail`` is per job, so with it each
job is read by a stream of its own (its last lines, then on from exactly there).
"""

from __future__ import annotations

import sys
from collections import deque
from datetime import datetime, timedelta, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

import click

from ..errors import InvalidSpec
from .common import Options, run_command
from .output import LineWriter
from .selection import select_jobs, selection_expr, selection_options

if TYPE_CHECKING:
    from ..client import Client
    from ..models import LogLine

__all__ = ["logs", "parse_since", "register"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None) -> datetime | None:
    """``--since``: a duration back from now (``90s``, ``10m``, ``2h``, ``1d``) or an
    ISO 8601 time (UTC when it names no zone)."""
    if text is None:
        return None
    unit = text[-1:].lower()
    if unit in _UNITS and text[:-1].replace(".", "", 1).isdigit():
        return datetime.now(timezone.utc) - timedelta(seconds=float(text[:-1]) * _UNITS[unit])
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidSpec("since", f"{text!r} is neither a duration (10m, 2h) nor an ISO time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


class _Printer:
    """Writes lines as text (with an optional prefix) or as JSON lines."""

    def __init__(self, *, as_json: bool, prefix: bool) -> None:
        self.as_json = as_json
        self.prefix = prefix
        self.out = LineWriter()

    def write(self, job_id: str, line: LogLine) -> None:
        if self.as_json:
            import json

            record = {
                "type": "log",
                "job": job_id,
                "stream": line.stream,
                "time": line.time.isoformat() if line.time else None,
                "task": line.task_id,
                "text": line.text.rstrip("\n"),
            }
            self.out.write_raw(sys.stdout, json.dumps(record, ensure_ascii=False) + "\n")
        elif self.prefix:
            self.out.write(line, prefix=f"[{job_id}] ")
        else:
            self.out.write(line)


async def _one(
    farm: Client,
    job_id: str,
    printer: _Printer,
    *,
    follow: bool,
    tail: int,
    stream_args: dict[str, Any],
) -> None:
    """One job's last ``tail`` lines, then (``follow``) on from exactly there."""
    seen = 0
    last: deque[LogLine] = deque(maxlen=tail)
    async with farm.logs.stream(job_id, follow=False, **stream_args) as lines:
        async for line in lines:
            seen += 1
            last.append(line)
    for line in last:
        printer.write(job_id, line)
    if not follow:
        return
    count = 0
    async with farm.logs.stream(job_id, follow=follow, **stream_args) as lines:
        async for line in lines:
            count += 1
            if count > seen:  # after a --tail read, follow on from where it ended
                printer.write(job_id, line)
                if printer.out.broken:
                    raise BrokenPipeError(32, "the reader of our output went away")


@click.command()
@click.argument("job_ids", metavar="[ID]...", nargs=-1)
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the jobs finish.")
@click.option("--tail", "-n", type=click.IntRange(min=0), help="Only the last N lines (of each job).")
@click.option("--since", metavar="WHEN", help="Lines from WHEN on: 10m, 2h, or an ISO time.")
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its UTC time.")
@click.option("--task", metavar="TASK", help="Only this task's lines.")
@click.option("--attempt", type=click.IntRange(min=1), help="Only this attempt of a retried task (1 = first).")
@click.option(
    "--prefix/--no-prefix",
    default=None,
    help="Put [ID] before each line (default: on for several jobs).",
)
@selection_options
@click.option(
    "--output", "-o", "fmt", type=click.Choice(["text", "json"]), default="text",
    show_default=True, help="json: JSON lines with type, job, stream, time, task, text.",
)
@click.pass_obj
def logs(
    opts: Options,
    job_ids: tuple[str, ...],
    follow: bool,
    tail: int | None,
    since: str | None,
    timestamps: bool,
    task: str | None,
    attempt: int | None,
    prefix: bool | None,
    where_text: str | None,
    selectors: tuple[str, ...],
    fmt: str,
) -> None:
    """Print jobs' output: their stdout to stdout, their stderr to stderr.

    \b
      aiofarm logs -f JOB_ID
      aiofarm logs --tail 20 --since 10m JOB_ID
      aiofarm logs -f -l team=fx --prefix
    """
    if not job_ids and where_text is None and not selectors:
        raise click.UsageError("give job ids, or --where / -l to select jobs")

    async def go() -> int:
        import anyio

        expr = selection_expr(where_text, selectors)
        after = parse_since(since)
        stream_args: dict[str, Any] = {"timestamps": timestamps, "task": task, "since": after}
        if attempt is not None:
            stream_args["attempt"] = attempt
        async with opts.client() as farm:
            named, matched = await select_jobs(farm, job_ids, expr)  # unknown ids: an error
            jobs = named + matched
            printer = _Printer(as_json=fmt == "json", prefix=prefix if prefix is not None else len(jobs) > 1)
            try:
                async with anyio.create_task_group() as tg:
                    tg.start_soon(printer.out.ticker)
                    if tail is None and jobs:
                        # the library interleaves many jobs' lines in one stream
                        ids = [j.id for j in jobs]
                        follow_any = follow and any(not j.status.is_finished for j in jobs)
                        async with farm.logs.stream(ids, follow=follow_any, **stream_args) as lines:
                            async for line in lines:
                                printer.write(line.job_id or ids[0], line)
                                if printer.out.broken:
                                    break
                    elif tail is not None:  # per job: each one's last lines, then on from there
                        async with anyio.create_task_group() as readers:
                            for job in jobs:
                                # a finished job has nothing more to come: no follow held open
                                live = follow and not job.status.is_finished
                                readers.start_soon(
                                    partial(_one, farm, job.id, printer, follow=live, tail=tail, stream_args=stream_args)
                                )
                    tg.cancel_scope.cancel()
            finally:
                printer.out.flush()
            if printer.out.broken:
                raise BrokenPipeError(32, "the reader of our output went away")
        return 0

    sys.exit(run_command(go))


def register(group: click.Group) -> None:
    group.add_command(logs)
