"""What the read commands show of jobs, tasks, pools and workers: their table columns
(``-o table``/``wide``) and their JSON/YAML shape (``-o json|yaml``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import STATUS_STYLE
from .formats import Column
from .output import duration, job_dict, local_time

if TYPE_CHECKING:
    from ..models import Job, Pool, Task, Worker

__all__ = [
    "JOB_COLUMNS",
    "POOL_COLUMNS",
    "TASK_COLUMNS",
    "WORKER_COLUMNS",
    "job_dict",
    "labels_of",
    "pool_dict",
    "task_dict",
    "worker_dict",
]


def labels_of(job: Job) -> dict[str, str]:
    """The job's labels (an empty mapping on a version without them)."""
    return dict(getattr(job, "labels", None) or {})


def _labels_text(job: Job) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels_of(job).items())) or "-"


JOB_COLUMNS: tuple[Column[Job], ...] = (
    Column("ID", lambda j: j.id),
    Column("NAME", lambda j: j.name or "-", max_width=48),
    Column("STATUS", lambda j: j.status.value, style=lambda j: STATUS_STYLE.get(j.status)),
    Column("POOL", lambda j: j.pool or "-"),
    Column("PRI", lambda j: str(j.priority), right=True),
    Column("CREATED", lambda j: local_time(j.created_at)),
    Column("TIME", duration, right=True),
    Column("EXIT", lambda j: "-" if j.exit_code is None else str(j.exit_code), right=True),
    Column("OWNER", lambda j: j.owner or "-", wide=True),
    Column("TAGS", lambda j: ",".join(j.tags) or "-", wide=True),
    Column("LABELS", _labels_text, wide=True),
    Column("TASKS", lambda j: _counts(j.task_counts), wide=True),
    Column("DEPENDS", lambda j: ",".join(j.depends_on) or "-", wide=True),
    Column("REASON", lambda j: j.reason or "-", wide=True),
)


def _counts(counts: Any) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(counts.items()) if v) or "-"


def task_dict(task: Task) -> dict[str, Any]:
    return {
        "id": task.id,
        "job_id": task.job_id,
        "step": task.step,
        # numbers stay numbers (as the API gives them); a path or other value as its text
        "parameters": {
            k: v if isinstance(v, (int, float, str)) else str(v) for k, v in task.parameters.items()
        },
        "status": task.status.value,
        "attempts": task.attempts,
        "exit_code": task.exit_code,
        "progress": task.progress,
        "status_message": task.status_message,
        "reason": task.reason,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
    }


def _task_detail(t: Task) -> str:
    if t.reason and t.status.value == "failed":
        return t.reason
    return t.status_message or "-"


TASK_COLUMNS: tuple[Column[Task], ...] = (
    Column("ID", lambda t: t.id),
    Column("STEP", lambda t: t.step or "-", wide=True),
    Column("PARAMETERS", lambda t: ",".join(f"{k}={v}" for k, v in t.parameters.items()) or "-"),
    Column("STATUS", lambda t: t.status.value, style=lambda t: STATUS_STYLE.get(t.status)),
    Column("PROGRESS", lambda t: "-" if t.progress is None else f"{t.progress:g}%", right=True),
    Column("ATTEMPTS", lambda t: str(t.attempts), right=True, wide=True),
    Column("EXIT", lambda t: "-" if t.exit_code is None else str(t.exit_code), right=True),
    Column("STARTED", lambda t: local_time(t.started_at), wide=True),
    Column("DETAIL", _task_detail, max_width=60),
)


def pool_dict(pool: Pool) -> dict[str, Any]:
    return {"id": pool.id, "name": pool.name, "slots": pool.slots, "driver": pool.driver}


POOL_COLUMNS: tuple[Column[Pool], ...] = (
    Column("NAME", lambda p: p.name),
    Column("SLOTS", lambda p: "-" if p.slots is None else str(p.slots), right=True),
    Column("ID", lambda p: p.id, wide=True),
    Column("DRIVER", lambda p: p.driver or "-", wide=True),
)


def worker_dict(worker: Worker) -> dict[str, Any]:
    return {
        "id": worker.id,
        "name": worker.name,
        "enabled": worker.enabled,
        "status": worker.status,
        "pool": worker.pool,
        "cpus": worker.cpus,
        "reason": worker.reason,
    }


WORKER_COLUMNS: tuple[Column[Worker], ...] = (
    Column("NAME", lambda w: w.name),
    Column("STATUS", lambda w: w.status),
    Column(
        "ENABLED",
        lambda w: "yes" if w.enabled else "no",
        style=lambda w: None if w.enabled else "yellow",
    ),
    Column("POOL", lambda w: w.pool or "-"),
    Column("CPUS", lambda w: "-" if w.cpus is None else str(w.cpus), right=True),
    Column("ID", lambda w: w.id, wide=True),
    Column("REASON", lambda w: w.reason or "-", wide=True),
)
