"""rich output for the CLI: the job table, one job's details, the wait progress bar.

Imported only by the commands that draw, since rich takes a while to import.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..models import Job, JobStatus, TransferProgress
from .common import STATUS_STYLE
from .output import duration, end_detail, local_time

if TYPE_CHECKING:
    from ..client import Client

_MARK = {JobStatus.SUCCEEDED: "✓", JobStatus.FAILED: "✗", JobStatus.CANCELED: "⊘"}


def _console(stderr: bool = False) -> Console:
    console = Console(stderr=stderr)
    if not console.is_terminal:
        # piped into grep or a file: never squeeze ids or names into "…"
        console = Console(stderr=stderr, width=max(console.width, 200))
    return console


def _status(status: JobStatus) -> Text:
    return Text(status.value, style=STATUS_STYLE.get(status, ""))


def jobs_table(jobs: Sequence[Job]) -> None:
    console = _console()
    if not jobs:
        console.print("no jobs", style="dim")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("ID", no_wrap=True, min_width=max(len(j.id) for j in jobs))
    table.add_column("NAME", overflow="ellipsis", max_width=48, no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("POOL", no_wrap=True)
    table.add_column("PRI", justify="right")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("TIME", justify="right", no_wrap=True)
    table.add_column("EXIT", justify="right")
    for job in jobs:
        table.add_row(
            job.id,
            job.name or "-",
            _status(job.status),
            job.pool or "-",
            str(job.priority),
            local_time(job.created_at),
            duration(job),
            "-" if job.exit_code is None else str(job.exit_code),
        )
    console.print(table)


def job_details(job: Job) -> None:
    console = _console()
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows: list[tuple[str, str | Text]] = [
        ("id", job.id),
        ("name", job.name or "-"),
        ("status", _status(job.status)),
        ("reason", job.reason or "-"),
        ("exit code", "-" if job.exit_code is None else str(job.exit_code)),
        ("pool", job.pool or "-"),
        ("owner", job.owner or "-"),
        ("priority", str(job.priority)),
        ("tags", ", ".join(job.tags) or "-"),
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
    for key, value in rows:
        grid.add_row(key, value if isinstance(value, Text) else Text(value))
    console.print(grid)
    if job.history:
        console.print()
        history = Table(box=None, header_style="bold", pad_edge=False, title=None)
        history.add_column("TIME", no_wrap=True)
        history.add_column("STATUS", no_wrap=True)
        history.add_column("REASON")
        for step in job.history:
            # milliseconds: a job's transitions often share one second
            when = step.time.astimezone().strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
            history.add_row(when, _status(step.status), step.reason or "")
        console.print(history)


async def wait_progress(farm: Client, ids: list[str], timeout: float | None) -> bool:
    """Wait for ``ids`` with a progress bar on stderr; True when every job succeeded."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    counts: Counter[JobStatus] = Counter()
    progress = Progress(
        TextColumn("waiting"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[summary]}"),
        console=console,
        disable=not console.is_terminal,  # in a log file the per-job lines say it all
    )
    with progress:
        bar = progress.add_task("wait", total=len(ids), summary="")
        async for job in farm.jobs.as_completed(ids, timeout=timeout):
            counts[job.status] += 1
            style = STATUS_STYLE.get(job.status, "")
            extra = ""
            if job.status is not JobStatus.SUCCEEDED:
                detail = end_detail(job)
                extra = f" ({escape(detail)})" if detail else ""
            name = f" {escape(job.name)}" if job.name else ""
            progress.console.print(
                f"[{style}]{_MARK.get(job.status, '?')} {escape(job.id)}[/]{name} "
                f"[{style}]{job.status.value}[/]{extra}",
                highlight=False,
            )
            summary = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items()))
            progress.update(bar, advance=1, summary=summary)
    return counts[JobStatus.SUCCEEDED] == len(ids)


class TransferBar:
    """A progress bar on stderr for moving a job's files (``on_progress`` of
    ``jobs.submit_bundle`` and ``jobs.download_outputs``): one bar per phase, in bytes,
    with what was skipped. Use as a context manager; call it with each report."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        console = Console(stderr=True)
        self.progress = Progress(
            TextColumn("{task.description:<11}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[files]}"),
            console=console,
            disable=not console.is_terminal,
        )
        self._bars: dict[str, object] = {}

    def __enter__(self) -> TransferBar:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(None, None, None)

    def __call__(self, report: TransferProgress) -> None:
        from rich.progress import TaskID

        bar = self._bars.get(report.phase)
        if bar is None:
            bar = self._bars[report.phase] = self.progress.add_task(
                report.phase, total=report.bytes_total, files=""
            )
        files = f"{report.files_done}/{report.files_total} files"
        if report.files_skipped:
            files += f" ({report.files_skipped} unchanged)"
        assert isinstance(bar, int)
        self.progress.update(TaskID(bar), completed=report.bytes_done, files=files)
