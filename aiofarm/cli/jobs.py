"""Commands over existing jobs: ``ls``, ``status``, ``logs``, ``wait``, ``cancel``.

rich is imported only by the commands that draw tables or progress bars (through
:mod:`.render`), so ``logs`` starts fast.
"""

from __future__ import annotations

import sys
from collections import deque
from typing import TYPE_CHECKING

import click

from ..models import JobStatus
from .common import EXIT_FAILED, Options, note, parse_statuses, run_command
from .output import LineWriter, job_dict, print_logs

if TYPE_CHECKING:
    from ..models import LogLine

__all__ = ["cancel", "logs", "ls", "register", "status", "wait"]


@click.command("ls")
@click.option(
    "--status",
    "-s",
    "statuses",
    multiple=True,
    callback=parse_statuses,
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
    opts: Options,
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

            click.echo(json.dumps([job_dict(j) for j in jobs], indent=2))
            return 0
        if ids_only:
            click.echo("".join(f"{j.id}\n" for j in jobs), nl=False)
            return 0
        from .render import jobs_table

        jobs_table(jobs)
        if more:
            note(f"showing the newest {limit}; --limit 0 shows all", dim=True)
        return 0

    sys.exit(run_command(go))


# -- status ------------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def status(opts: Options, job_id: str, as_json: bool) -> None:
    """Show one job: its fields and its status history."""

    async def go() -> int:
        async with opts.client() as farm:
            job = await farm.jobs.get(job_id, history=True)
        if as_json:
            import json

            click.echo(json.dumps(job_dict(job), indent=2))
        else:
            from .render import job_details

            job_details(job)
        return 0

    sys.exit(run_command(go))


# -- logs --------------------------------------------------------------------------------


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job finishes.")
@click.option("--timestamps", "-t", is_flag=True, help="Prefix each line with its UTC time.")
@click.option("--tail", "-n", type=click.IntRange(min=0), help="Only the last N lines.")
@click.pass_obj
def logs(opts: Options, job_id: str, follow: bool, timestamps: bool, tail: int | None) -> None:
    """Print a job's output: its stdout to stdout, its stderr to stderr."""

    async def go() -> int:
        async with opts.client() as farm:
            await farm.jobs.get(job_id)  # an unknown id is an error, not empty output
            if tail is None:
                await print_logs(farm, job_id, follow=follow, timestamps=timestamps)
                return 0
            last: deque[LogLine] = deque(maxlen=tail)
            seen = 0
            async with farm.logs.stream(job_id, follow=False, timestamps=timestamps) as lines:
                async for line in lines:
                    seen += 1
                    last.append(line)
            output = LineWriter()
            for line in last:
                output.write(line)
            output.flush()
            if follow:  # resume after what was already there: no line twice
                await print_logs(farm, job_id, follow=True, timestamps=timestamps, skip=seen)
        return 0

    sys.exit(run_command(go))


# -- wait --------------------------------------------------------------------------------


@click.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True)
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after S seconds (exit 2).")
@click.pass_obj
def wait(opts: Options, job_ids: tuple[str, ...], timeout: float | None) -> None:
    """Wait until every job has finished; exit 1 if any did not succeed."""

    async def go() -> int:
        from .render import wait_progress

        ids = list(dict.fromkeys(job_ids))
        async with opts.client() as farm:
            await farm.jobs.get_many(ids)  # an unknown id fails before the bar is drawn
            ok = await wait_progress(farm, ids, timeout)
        return 0 if ok else EXIT_FAILED

    sys.exit(run_command(go))


# -- cancel ------------------------------------------------------------------------------


@click.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_obj
def cancel(opts: Options, job_ids: tuple[str, ...]) -> None:
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

    sys.exit(run_command(go))


def register(group: click.Group) -> None:
    for command in (ls, status, logs, wait, cancel):
        group.add_command(command)
