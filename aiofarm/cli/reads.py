"""Read commands over jobs: ``ls``, ``status``, ``describe``, ``tasks``.

``ls`` and ``status`` take the quick path on a local farm whose service runs
(:mod:`.quick`); everything else goes through a Client. rich is never imported here.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from ..models import JobStatus
from .common import Options, note, parse_statuses, run_command
from .formats import emit, output_option
from .selection import selection_expr, selection_options
from .views import JOB_COLUMNS, TASK_COLUMNS, job_dict, labels_of, task_dict

if TYPE_CHECKING:
    from ..drivers.base import Driver
    from ..models import Job, Task
    from ..where import Expr
    from .quick import QuickReader

__all__ = ["describe", "ls", "register", "status", "tasks"]


def emit_jobs(jobs: list[Job], fmt: str, *, single: bool = False) -> None:
    emit(
        jobs,
        fmt,
        columns=JOB_COLUMNS,
        to_dict=job_dict,
        name=lambda j: j.id,
        empty="no jobs",
        single=single,
    )


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
@selection_options
@click.option(
    "--limit",
    "-n",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Newest N jobs; 0 for all.",
)
@click.option("--sort", metavar="FIELD", help="Sort by FIELD (-FIELD descending); default newest first.")
@output_option
@click.option("--quiet", "-q", "ids_only", is_flag=True, help="Same as -o name: only ids.")
@click.pass_obj
def ls(
    opts: Options,
    statuses: frozenset[JobStatus] | None,
    where_text: str | None,
    selectors: tuple[str, ...],
    limit: int,
    sort: str | None,
    fmt: str,
    as_json: bool,
    ids_only: bool,
) -> None:
    """List jobs, newest first.

    \b
      aiofarm ls -s failed -o wide
      aiofarm ls -l team=fx --where 'priority < 50' -o json
      aiofarm wait $(aiofarm ls -o name -s active)
    """
    fmt = "json" if as_json else "name" if ids_only else fmt
    from .quick import reader

    quick = reader(opts)

    async def go() -> int:
        expr = selection_expr(where_text, selectors)  # fails before connecting
        want = None if limit == 0 else limit + 1  # one more tells whether there are more
        if quick is not None:
            jobs = await _quick_list(quick, statuses, expr, want, sort)
        else:
            async with (
                opts.client() as farm,
                # --sort says the order itself (the library's reverse would flip it)
                farm.jobs.list(statuses=statuses, where=expr, reverse=sort is None, limit=want, sort=sort) as it,
            ):
                jobs = [job async for job in it]
        more = want is not None and len(jobs) > limit
        if more:
            jobs = jobs[:limit]
        emit_jobs(jobs, fmt)
        if more and fmt in ("table", "wide"):
            note(f"showing the newest {limit}; --limit 0 shows all", dim=True)
        return 0

    sys.exit(run_command(go, loop=quick is None))


async def _quick_list(
    quick: QuickReader,
    statuses: frozenset[JobStatus] | None,
    expr: Expr | None,
    want: int | None,
    sort: str | None,
) -> list[Job]:
    """The same listing as ``jobs.list`` (the one listing module), over the quick reader."""
    import attrs

    from ..listing import iterate, parse_sort
    from ..query import build_query

    query = build_query(statuses, None, (), (), None, None, None, expr, sort is None)
    query = attrs.evolve(query, sort=parse_sort(sort))
    driver: Driver = quick
    # a page as big as the answer (a filter the service cannot apply may need more)
    size = 5000 if want is None else max(1, min(want, 5000))
    return [job async for job in iterate(driver, query, limit=want, page_size=size)]


@click.command()
@click.argument("job_id", metavar="ID")
@output_option
@click.pass_obj
def status(opts: Options, job_id: str, fmt: str, as_json: bool) -> None:
    """Show one job: its fields and its status history."""
    fmt = "json" if as_json else fmt
    from .quick import reader

    quick = reader(opts)

    async def go() -> int:
        if quick is not None:
            from ..validation import check_id

            job = await quick.describe(check_id(job_id, "ID"))
        else:
            async with opts.client() as farm:
                job = await farm.jobs.get(job_id, history=True)
        if fmt in ("table", "wide"):
            print_details(job)
        else:
            emit_jobs([job], fmt, single=True)
        return 0

    sys.exit(run_command(go, loop=quick is None))


def print_details(job: Job) -> None:
    """One job as ``key  value`` lines, then its status history."""
    from .output import duration, local_time

    rows = [
        ("id", job.id),
        ("name", job.name or "-"),
        ("status", job.status.value),
        ("reason", job.reason or "-"),
        ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
        ("pool", job.pool or "-"),
        ("owner", job.owner or "-"),
        ("priority", str(job.priority)),
        ("tags", ", ".join(job.tags) or "-"),
        ("labels", ", ".join(f"{k}={v}" for k, v in sorted(labels_of(job).items())) or "-"),
        ("description", job.description or "-"),
        ("depends on", ", ".join(job.depends_on) or "-"),
        ("created", local_time(job.created_at)),
        ("started", local_time(job.started_at)),
        ("finished", local_time(job.finished_at)),
        ("run time", duration(job)),
        ("driver", job.driver),
    ]
    if job.task_counts:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(job.task_counts.items()) if v)
        rows.append(("tasks", counts or "-"))
    _section(None, rows)
    if job.history:
        lines = []
        for step in job.history:
            # milliseconds: a job's transitions often share one second
            when = step.time.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            lines.append((when, f"{step.status.value:<10} {step.reason or ''}".rstrip()))
        _section("history", lines)


def _section(title: str | None, rows: list[tuple[str, str]]) -> None:
    from .common import stdout_color

    colour = stdout_color()
    out = []
    if title is not None:
        out.append("\n" + (click.style(title.upper(), bold=True) if colour else title.upper()) + "\n")
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        label = key.ljust(width)
        out.append(f"{click.style(label, bold=True) if colour else label}  {value}\n")
    sys.stdout.write("".join(out))


@click.command()
@click.argument("job_id", metavar="ID")
@click.option("--tasks/--no-tasks", "show_tasks", default=True, show_default=True, help="List the job's tasks.")
@output_option
@click.pass_obj
def describe(opts: Options, job_id: str, show_tasks: bool, fmt: str, as_json: bool) -> None:
    """Everything about one job: its fields, history, tasks, and why it is not running
    (for a pending job: the farm's explanation)."""
    fmt = "json" if as_json else fmt

    async def go() -> int:
        from ..models import Capability

        async with opts.client() as farm:
            job = await farm.jobs.get(job_id, history=True)
            found: list[Task] = []
            if show_tasks and Capability.TASKS in farm.capabilities:
                found = await farm.jobs.tasks(job_id)
            explain = None
            if not job.status.is_finished and Capability.EXPLAIN in farm.capabilities:
                explain = await farm.jobs.explain(job_id)
        if fmt in ("json", "yaml", "name"):
            data = {**job_dict(job), "tasks": [task_dict(t) for t in found], "explain": explain}
            emit([data], fmt, columns=(), to_dict=lambda d: d, name=lambda d: str(d["id"]), empty="", single=True)
            return 0
        print_details(job)
        if found:
            sys.stdout.write("\nTASKS\n")
            emit(found, "wide" if fmt == "wide" else "table", columns=TASK_COLUMNS, to_dict=task_dict, name=lambda t: t.id, empty="")
        if explain:
            _section("explain", [("", line) for line in explain.splitlines()])
        return 0

    sys.exit(run_command(go))


@click.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--status", "-s", "statuses", multiple=True, callback=parse_statuses, metavar="STATUS",
    help="Only tasks in these statuses (repeatable or comma-separated).",
)
@output_option
@click.pass_obj
def tasks(opts: Options, job_id: str, statuses: frozenset[JobStatus] | None, fmt: str, as_json: bool) -> None:
    """List a job's tasks: status, progress, the task's last status message or why it failed."""
    fmt = "json" if as_json else fmt

    async def go() -> int:
        async with opts.client() as farm:
            found = await farm.jobs.tasks(job_id)
        if statuses:
            found = [t for t in found if t.status in statuses]
        emit(found, fmt, columns=TASK_COLUMNS, to_dict=task_dict, name=lambda t: t.id, empty="no tasks")
        return 0

    sys.exit(run_command(go))


def register(group: click.Group) -> None:
    for command in (ls, status, describe, tasks):
        group.add_command(command)
