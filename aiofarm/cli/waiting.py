"""``aiofarm wait``: until jobs finish, or reach a status (``--for running``).

Exit codes, as Deadline's ``job wait`` documents its own: 0 every job got there (for
``finished``: every job succeeded); 1 a job did not (failed, canceled, or finished
without ever reaching the asked status); 124 ``--timeout`` ran out; 2 an error. No ids
is not an error: nothing to wait for, exit 0 (``aiofarm wait $(aiofarm ls -o name -s
active)`` when nothing is active).
"""

from __future__ import annotations

import json
import sys

import click

from ..errors import WaitTimeout
from ..models import Job, JobStatus
from .common import EXIT_FAILED, EXIT_TIMEOUT, Options, note, parse_statuses, run_command
from .output import job_dict
from .selection import select_jobs, selection_expr, selection_options

__all__ = ["register", "wait"]


def _parse_for(ctx: click.Context, param: click.Parameter, value: str) -> frozenset[JobStatus]:
    if value == "finished":
        return JobStatus.finished_items()
    statuses = parse_statuses(ctx, param, (value,))
    assert statuses is not None
    return statuses


@click.command()
@click.argument("job_ids", metavar="[ID]...", nargs=-1)
@click.option(
    "--for",
    "until",
    default="finished",
    show_default=True,
    callback=_parse_for,
    metavar="STATUS",
    help="running, finished, or any status (comma-separated: any of them).",
)
@click.option("--timeout", type=click.FloatRange(min=0), help="Give up after S seconds (exit 124).")
@selection_options
@click.option(
    "--output", "-o", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True,
    help="json: a JSON line per job as it gets there (type: job).",
)
@click.pass_obj
def wait(
    opts: Options,
    job_ids: tuple[str, ...],
    until: frozenset[JobStatus],
    timeout: float | None,
    where_text: str | None,
    selectors: tuple[str, ...],
    fmt: str,
) -> None:
    """Wait until jobs finish (exit 1 if any did not succeed), or reach --for STATUS.

    \b
      aiofarm wait JOB_ID --timeout 600
      aiofarm wait --for running JOB_ID && aiofarm exec -it JOB_ID -- bash
      aiofarm wait $(aiofarm ls -o name -s active)
    """
    finished = until == JobStatus.finished_items()

    async def go() -> int:
        expr = selection_expr(where_text, selectors)
        if not job_ids and expr is None:
            note("no jobs given: nothing to wait for")
            return 0
        async with opts.client() as farm:
            named, matched = await select_jobs(farm, job_ids, expr)  # unknown ids fail first
            ids = [j.id for j in named + matched]
            if not ids:
                note("no job matches: nothing to wait for")
                return 0

            def ok(job: Job) -> bool:
                # there now (a job that ran and already finished has no running to exec into)
                return job.status is JobStatus.SUCCEEDED if finished else job.status in until

            # the client layer's one wait over the Hub: each job as it gets there, or
            # finishes without getting there (then shown as it ended)
            events = farm.jobs.as_completed(ids, timeout=timeout, until=until)
            try:
                if fmt == "json":
                    good = 0
                    async for job in events:
                        good += ok(job)
                        click.echo(
                            json.dumps({"type": "job", "reached": ok(job), **job_dict(job)})
                        )
                else:
                    from .render import wait_progress

                    verb = "waiting" if finished else f"waiting for {'|'.join(sorted(s.value for s in until))}"
                    good = await wait_progress(events, len(ids), ok, verb)
            except WaitTimeout:
                note(f"timed out after {timeout:g}s", fg="yellow")
                return EXIT_TIMEOUT
        return 0 if good == len(ids) else EXIT_FAILED

    sys.exit(run_command(go, stopped="stopped waiting; the jobs go on"))


def register(group: click.Group) -> None:
    group.add_command(wait)
