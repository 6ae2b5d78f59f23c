"""Plain-text output of the CLI: a job's log lines to our stdout/stderr, and jobs as
words, durations, exit codes and JSON. (Tables and progress bars are in
:mod:`.render`, which imports rich.)"""

from __future__ import annotations

import sys
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TextIO

from ..models import JobStatus
from .common import EXIT_FAILED

if TYPE_CHECKING:
    from ..client import Client
    from ..models import Job, LogLine

__all__ = [
    "LineWriter",
    "describe_end",
    "duration",
    "end_detail",
    "job_dict",
    "job_exit_code",
    "local_time",
    "print_logs",
    "shell_status",
]


class LineWriter:
    """Job output to our stdout/stderr. Buffered, since a flush per line costs more than
    the rest of the path; flushed when the line's stream changes, so ``2>&1`` into one
    file keeps the job's order, and by :meth:`ticker` every 50 ms, so a pipe still sees
    output live. A reader that went away (``| head``) sets ``broken`` instead of raising
    from inside a task group."""

    def __init__(self) -> None:
        self._last: TextIO | None = None
        self.broken = False

    def write(self, line: LogLine, prefix: str = "") -> None:
        out: TextIO = sys.stderr if line.stream == "stderr" else sys.stdout
        text = line.text if line.text.endswith("\n") else line.text + "\n"
        self.write_raw(out, prefix + text if prefix else text)

    def write_raw(self, out: TextIO, text: str) -> None:
        try:
            if self._last is not None and out is not self._last:
                self._last.flush()
            out.write(text)
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


async def print_logs(farm: Client, job_id: str, *, follow: bool, timestamps: bool, skip: int = 0) -> int:
    """Print a job's log lines; returns how many lines the stream held (skipped included)."""
    import anyio

    count = 0
    output = LineWriter()
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


def local_time(t: datetime | None) -> str:
    return "-" if t is None else t.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(job: Job) -> str:
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


def shell_status(code: int) -> int:
    """A process's exit code as the shell reports it: the code, 128+N when killed by
    signal N (aiofarm reports that as the negative code -N)."""
    return min(128 - code, 255) if code < 0 else code & 0xFF


def job_exit_code(job: Job) -> int:
    """``aiofarm run``'s exit code for a finished job: 0 when it succeeded, else the
    shell's status of its exit code, else 1."""
    if job.status is JobStatus.SUCCEEDED:
        return 0
    if job.exit_code is None:
        return EXIT_FAILED
    return shell_status(job.exit_code) or EXIT_FAILED


def end_detail(job: Job) -> str:
    """``exit code 3; timed out`` (the reason often repeats the exit code: said once)."""
    detail = [f"exit code {job.exit_code}"] if job.exit_code is not None else []
    if job.reason and job.reason not in detail:
        detail.append(job.reason)
    return "; ".join(detail)


def describe_end(job: Job) -> str:
    detail = end_detail(job)
    text = f"job {job.id} {job.status.value}"
    return f"{text} ({detail})" if detail else text


def job_dict(job: Job) -> dict[str, Any]:
    """A job as ``--json`` prints it."""
    return {
        "id": job.id,
        "name": job.name,
        "status": job.status.value,
        "owner": job.owner,
        "pool": job.pool,
        "tags": list(job.tags),
        "labels": dict(getattr(job, "labels", None) or {}),
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
