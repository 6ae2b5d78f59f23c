"""rich output for the CLI: the wait progress bar, the transfer bars.

Imported only by the commands that draw, since rich takes a while to import.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable

from rich.console import Console
from rich.markup import escape

from ..models import Job, JobStatus, TransferProgress
from .common import STATUS_STYLE, color
from .output import end_detail

_MARK = {JobStatus.SUCCEEDED: "✓", JobStatus.FAILED: "✗", JobStatus.CANCELED: "⊘"}


async def wait_progress(
    events: AsyncIterator[Job], total: int, ok: Callable[[Job], bool], verb: str
) -> int:
    """Show jobs as they come from ``events`` with a progress bar on stderr (only on a
    terminal) and a line each; how many were ``ok``."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True, no_color=color() is False, force_terminal=color() or None)
    counts: Counter[JobStatus] = Counter()
    good = 0
    progress = Progress(
        TextColumn(verb),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[summary]}"),
        console=console,
        transient=True,
        disable=not sys.stderr.isatty(),  # spinners and bars only on a terminal
    )
    with progress:
        bar = progress.add_task("wait", total=total, summary="")
        async for job in events:
            counts[job.status] += 1
            good += ok(job)
            style = STATUS_STYLE.get(job.status, "")
            extra = ""
            if job.status.is_finished and job.status is not JobStatus.SUCCEEDED:
                detail = end_detail(job)
                extra = f" ({escape(detail)})" if detail else ""
            name = f" {escape(job.name)}" if job.name else ""
            progress.console.print(
                f"[{style}]{_MARK.get(job.status, '•')} {escape(job.id)}[/]{name} "
                f"[{style}]{job.status.value}[/]{extra}",
                highlight=False,
            )
            summary = ", ".join(f"{n} {s.value}" for s, n in sorted(counts.items()))
            progress.update(bar, advance=1, summary=summary)
    return good


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
