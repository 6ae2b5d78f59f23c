"""How aiofarm's results look in a notebook: HTML for ``_repr_html_``.

Pure functions of the models (no IPython import: a notebook calls ``_repr_html_``
itself, so users who never display pay nothing). Every value goes through
``html.escape``; ``raw`` records and environment values are never shown (they may
hold secrets).

The list types (:class:`JobList`, :class:`TaskList`, :class:`PoolList`,
:class:`LogLines`) are plain lists that render as a table; the calls that return
several jobs, tasks, pools or lines return them, and ``aiofarm.JobList(jobs)``
wraps any other list (a comprehension over ``jobs.list``).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import CompletionResult, Job, JobStatus, LogLine, LogPage, Pool, Task

__all__ = ["JobList", "LogLines", "PoolList", "TaskList"]

#: rows shown before "... and N more" (a notebook cell is not a spreadsheet)
MAX_ROWS = 200

#: by status value (the models import this module lazily, so it imports none of theirs)
_COLORS: Mapping[str, str] = {
    "pending": "#6c757d",
    "running": "#0d6efd",
    "suspended": "#fd7e14",
    "succeeded": "#198754",
    "failed": "#dc3545",
    "canceled": "#6f42c1",
    "unknown": "#adb5bd",
}
_TABLE = '<table class="aiofarm" style="border-collapse:collapse;font-size:90%">'


def _e(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return html.escape(value.isoformat(sep=" ", timespec="seconds"))
    if isinstance(value, timedelta):
        return html.escape(f"{value.total_seconds():.1f} s")
    return html.escape(str(value))


def badge(status: JobStatus | str) -> str:
    """A status as a coloured label."""
    color = _COLORS.get(str(status), "#adb5bd")
    return (
        f'<span class="aiofarm-status aiofarm-{_e(status)}" style="background:{color};color:white;'
        f'padding:0 .4em;border-radius:.3em">{_e(status)}</span>'
    )


def _labels(labels: Mapping[str, str]) -> str:
    return " ".join(f"<code>{_e(k)}={_e(v)}</code>" for k, v in labels.items())


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], total: int, what: str) -> str:
    head = "".join(f'<th style="text-align:left;padding:2px 8px">{_e(h)}</th>' for h in headers)
    body = []
    for i, row in enumerate(rows):
        if i == MAX_ROWS:
            break
        cells = "".join(f'<td style="text-align:left;padding:2px 8px">{c}</td>' for c in row)
        body.append(f"<tr>{cells}</tr>")
    more = f"<p>... and {total - MAX_ROWS} more {what}</p>" if total > MAX_ROWS else ""
    summary = f"<p><b>{total}</b> {what}</p>" if total != 1 else ""
    return f"{summary}{_TABLE}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _fields(pairs: Iterable[tuple[str, str]]) -> str:
    rows = "".join(
        f'<tr><th style="text-align:left;padding:2px 8px">{_e(k)}</th>'
        f'<td style="text-align:left;padding:2px 8px">{v}</td></tr>'
        for k, v in pairs
        if v
    )
    return f"{_TABLE}<tbody>{rows}</tbody></table>"


def job_html(job: Job) -> str:
    counts = ", ".join(f"{_e(k)} {_e(v)}" for k, v in job.task_counts.items())
    return _fields(
        [
            ("job", f"<code>{_e(job.id)}</code>"),
            ("name", _e(job.name)),
            ("status", badge(job.status)),
            ("exit code", _e(job.exit_code)),
            ("reason", _e(job.reason)),
            ("owner", _e(job.owner)),
            ("pool", _e(job.pool)),
            ("priority", _e(job.priority)),
            ("tags", _e(", ".join(job.tags))),
            ("labels", _labels(job.labels)),
            ("tasks", counts),
            ("depends on", _e(", ".join(job.depends_on))),
            ("created", _e(job.created_at)),
            ("started", _e(job.started_at)),
            ("finished", _e(job.finished_at)),
            ("driver", _e(job.driver)),
        ]
    )


def completion_html(result: CompletionResult) -> str:
    head = f"<p>{badge(result.status)} after {_e(result.elapsed)}</p>"
    failed = tasks_html(result.failed_tasks) if result.failed_tasks else ""
    return head + job_html(result.job) + failed


def jobs_html(jobs: Sequence[Job]) -> str:
    rows = (
        [
            f"<code>{_e(j.id)}</code>",
            _e(j.name),
            badge(j.status),
            _e(j.exit_code),
            _e(j.priority),
            _e(", ".join(j.tags)),
            _labels(j.labels),
            _e(j.created_at),
        ]
        for j in jobs
    )
    headers = ("id", "name", "status", "exit", "priority", "tags", "labels", "created")
    return _table(headers, rows, len(jobs), "jobs" if len(jobs) != 1 else "job")


def tasks_html(tasks: Sequence[Task]) -> str:
    rows = (
        [
            f"<code>{_e(t.id)}</code>",
            _e(t.step),
            badge(t.status),
            _e(t.attempts),
            _e(t.exit_code),
            _e("" if t.progress is None else f"{t.progress:.0f}%"),
            _e(t.status_message or t.reason),
        ]
        for t in tasks
    )
    headers = ("task", "step", "status", "attempts", "exit", "progress", "message")
    return _table(headers, rows, len(tasks), "tasks" if len(tasks) != 1 else "task")


def pools_html(pools: Sequence[Pool]) -> str:
    rows = ([_e(p.name), f"<code>{_e(p.id)}</code>", _e(p.slots), _e(p.driver)] for p in pools)
    return _table(("pool", "id", "slots", "driver"), rows, len(pools), "pools" if len(pools) != 1 else "pool")


def lines_html(lines: Sequence[LogLine]) -> str:
    out = []
    for i, line in enumerate(lines):
        if i == MAX_ROWS * 10:
            out.append(f"... and {len(lines) - i} more lines")
            break
        where = "".join(
            f'<span style="color:#6c757d">{_e(part)} </span>'
            for part in (line.job_id, line.time.isoformat(timespec="milliseconds") if line.time else None)
            if part
        )
        color = ' style="color:#dc3545"' if line.stream == "stderr" else ""
        out.append(f"{where}<span{color}>{_e(line.text)}</span>")
    return '<pre class="aiofarm-log" style="font-size:85%">' + "\n".join(out) + "</pre>"


class JobList(list["Job"]):
    """A list of jobs that shows as a table in a notebook."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return jobs_html(self)


class TaskList(list["Task"]):
    """A list of tasks that shows as a table in a notebook."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return tasks_html(self)


class PoolList(list["Pool"]):
    """A list of pools that shows as a table in a notebook."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return pools_html(self)


class LogLines(list["LogLine"]):
    """Log lines that show as a log (stderr in red; job id and time where known)."""

    __slots__ = ()

    def _repr_html_(self) -> str:
        return lines_html(self)


def page_html(page: LogPage) -> str:
    return lines_html(page.lines)


def as_html(value: Any) -> str | None:
    """The HTML of any aiofarm result, None for anything else (used by the docs)."""
    method = getattr(value, "_repr_html_", None)
    return method() if callable(method) else None
