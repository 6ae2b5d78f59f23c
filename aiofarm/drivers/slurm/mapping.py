"""Slurm records (:class:`~.records.Rec`, any API version) to aiofarm models.

No I/O here: the driver fetches records and hands them in. Keeping this pure lets
the mapping rules (states, array aggregation, comments) be tested without a cluster.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

from ...models import Job, JobStatus, StatusTransition, Task
from .records import Rec

__all__ = [
    "COMMENT_PREFIX",
    "aggregate",
    "decode_wait_status",
    "expand_path",
    "group_records",
    "job_from_records",
    "make_comment",
    "parse_comment",
    "parse_dependency",
    "parse_index_expr",
    "parse_meta",
    "record_status",
    "retag_comment",
    "state_status",
    "tasks_from_records",
]

DRIVER = "slurm"
#: tags, labels and description ride in the job's ``comment`` (Slurm has no tags;
#: docs/labels.md)
COMMENT_PREFIX = "aiofarm:"

_FINISHED_STATES: dict[str, JobStatus] = {
    "COMPLETED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
    "TIMEOUT": JobStatus.FAILED,
    "NODE_FAIL": JobStatus.FAILED,
    "BOOT_FAIL": JobStatus.FAILED,
    "DEADLINE": JobStatus.FAILED,
    "OUT_OF_MEMORY": JobStatus.FAILED,
    "PREEMPTED": JobStatus.CANCELED,
    "CANCELLED": JobStatus.CANCELED,
}
_ACTIVE_STATES: dict[str, JobStatus] = {
    "PENDING": JobStatus.PENDING,
    "REQUEUED": JobStatus.PENDING,
    "RESV_DEL_HOLD": JobStatus.SUSPENDED,
    "REQUEUE_HOLD": JobStatus.SUSPENDED,
    "REQUEUE_FED": JobStatus.PENDING,
    "RESIZING": JobStatus.RUNNING,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETING": JobStatus.RUNNING,
    "CONFIGURING": JobStatus.RUNNING,
    "STAGE_OUT": JobStatus.RUNNING,
    "SIGNALING": JobStatus.RUNNING,
    "SUSPENDED": JobStatus.SUSPENDED,
    "STOPPED": JobStatus.SUSPENDED,
}
#: state_reason values of a pending job that mean "held", i.e. aiofarm's paused
_HELD_REASONS = frozenset({"JobHeldUser", "JobHeldAdmin"})


# -- small decoders ----------------------------------------------------------------


def decode_wait_status(raw: Any) -> int | None:
    """A wait(2) status (v0.0.38's ``exit_code``: 768 is exit 3, 15 is SIGTERM) as
    the exit code, or minus the signal number (the subprocess convention)."""
    if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0 or raw > 0xFFFF:
        return None  # unset / garbage while the job runs (e.g. 4294901708)
    sig = raw & 0x7F
    if sig == 0:
        return (raw >> 8) & 0xFF
    if sig == 0x7F:
        return None  # stopped, not ended
    return -sig


def _time(value: int) -> datetime | None:
    if value > 0:
        return datetime.fromtimestamp(value, tz=timezone.utc)
    return None


def parse_comment(comment: Any) -> tuple[tuple[str, ...], str | None]:
    """(tags, description) stored by :func:`submit_body`; a foreign comment is the description."""
    if not isinstance(comment, str) or not comment:
        return (), None
    if comment.startswith(COMMENT_PREFIX):
        try:
            data = json.loads(comment[len(COMMENT_PREFIX) :])
        except ValueError:
            return (), comment
        if isinstance(data, dict):
            tags = tuple(str(t) for t in data.get("tags", ()) if isinstance(t, str))
            desc = data.get("description")
            return tags, desc if isinstance(desc, str) else None
    return (), comment


def parse_meta(comment: Any) -> dict[str, Any]:
    """Everything aiofarm stored in the comment (tags, description, and for the Slurm
    jobs of a multi-step job: ``steps`` on the head, ``parent``/``step`` on the others)."""
    if isinstance(comment, str) and comment.startswith(COMMENT_PREFIX):
        try:
            data = json.loads(comment[len(COMMENT_PREFIX) :])
        except ValueError:
            return {}
        return data if isinstance(data, dict) else {}
    return {}


def comment_labels(comment: Any) -> dict[str, str]:
    """The labels stored in the comment by :func:`make_comment`."""
    labels = parse_meta(comment).get("labels")
    return {str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {}


def make_comment(tags: Sequence[str], description: str | None, **meta: Any) -> str:
    data: dict[str, Any] = {}
    if tags:
        data["tags"] = list(tags)
    if description:
        data["description"] = description
    data.update({k: v for k, v in meta.items() if v is not None})
    return COMMENT_PREFIX + json.dumps(data, separators=(",", ":")) if data else ""


def retag_comment(comment: Any, tags: Sequence[str]) -> str:
    """``comment`` with new tags, keeping whatever else it holds."""
    meta = parse_meta(comment)
    if not meta and isinstance(comment, str) and comment:
        meta = {"description": comment}  # a foreign comment reads as the description
    meta.pop("tags", None)
    return make_comment(tags, meta.pop("description", None), **meta)



def parse_dependency(dep: Any) -> tuple[str, ...]:
    """Job ids named by a Slurm dependency string like ``afterok:12(unfulfilled),afterok:13``."""
    if not isinstance(dep, str) or not dep:
        return ()
    out: list[str] = []
    for part in re.split(r"[,?]", dep):
        _, _, ids = part.partition(":")
        for item in ids.split(":"):
            m = re.match(r"(\d+)", item)
            if m and m.group(1) not in out:
                out.append(m.group(1))
    return tuple(out)


def parse_index_expr(expr: str) -> list[int]:
    """Indices of an array range expression: ``"0-9"``, ``"1,3,5-11:2"``, ``"4-49%5"``."""
    expr = expr.split("%", 1)[0].strip()
    out: list[int] = []
    if not expr:
        return out
    for part in expr.split(","):
        rng, _, step_s = part.partition(":")
        step = int(step_s) if step_s else 1
        lo_s, _, hi_s = rng.partition("-")
        lo = int(lo_s)
        hi = int(hi_s) if hi_s else lo
        out.extend(range(lo, hi + 1, max(1, step)))
    return out


def expand_path(pattern: str, rec: Rec, task: int | None = None) -> str:
    """Expand the filename patterns aiofarm uses (and the common ones) in an output
    path; a path Slurm already expanded comes back unchanged."""
    array_job = rec.array_job_id or rec.job_id
    if task is None:
        task = rec.array_task_id
    repl = {
        "j": str(rec.job_id),
        "A": str(array_job),
        "a": str(task) if task is not None else "4294967294",
        "x": rec.name,
        "u": rec.user_name,
        "%": "%",
    }

    def sub(m: re.Match[str]) -> str:
        return repl.get(m.group(1), m.group(0))

    return re.sub(r"%([jAaxu%])", sub, pattern)


# -- records -> models -------------------------------------------------------------


def state_status(state: str, flags: Sequence[str] = (), reason: str | None = None) -> JobStatus:
    """The aiofarm status of a Slurm base state, its flags and its reason."""
    if state in _FINISHED_STATES:
        return _FINISHED_STATES[state]
    if state == "PENDING" and (
        (reason is not None and reason in _HELD_REASONS) or "REQUEUE_HOLD" in flags or "RESV_DEL_HOLD" in flags
    ):
        return JobStatus.SUSPENDED
    return _ACTIVE_STATES.get(state, JobStatus.UNKNOWN)


def record_status(rec: Rec) -> tuple[JobStatus, str | None]:
    """(status, reason) of one Slurm job record."""
    state = rec.state
    reason = rec.reason if rec.reason not in (None, "", "None") else None
    if reason and rec.description:
        reason = f"{reason}: {rec.description}"
    status = state_status(state, rec.flags, rec.reason)
    if state in _FINISHED_STATES:
        return status, (None if state == "COMPLETED" else reason or state)
    if status is JobStatus.SUSPENDED and state == "PENDING":
        return status, "paused (held)"
    if status is JobStatus.UNKNOWN and reason is None:
        reason = f"unknown Slurm state {state!r}"
    return status, reason


def _task_entries(records: Iterable[Rec]) -> list[tuple[int, Rec]]:
    """(array index, record) per task; a pending remainder record stands for many."""
    out: list[tuple[int, Rec]] = []
    for rec in records:
        if rec.array_task_id is not None:
            out.append((rec.array_task_id, rec))
            continue
        if rec.array_task_string:
            try:
                out.extend((i, rec) for i in parse_index_expr(rec.array_task_string))
            except ValueError:
                out.append((-1, rec))
        else:
            out.append((0, rec))
    out.sort(key=lambda e: e[0])
    return out


def aggregate(statuses: Sequence[JobStatus]) -> JobStatus:
    """A job's status from its tasks' (arrays): active while any task is."""
    s = set(statuses)
    if not s:
        return JobStatus.UNKNOWN
    for status in (
        JobStatus.RUNNING,
        JobStatus.PENDING,
        JobStatus.SUSPENDED,
        JobStatus.UNKNOWN,
        JobStatus.FAILED,
        JobStatus.CANCELED,
    ):
        if status in s:
            return status
    return JobStatus.SUCCEEDED


def tasks_from_records(job_id: str, records: Sequence[Rec], step: str | None = None) -> list[Task]:
    tasks: list[Task] = []
    for index, rec in _task_entries(records):
        status, reason = record_status(rec)
        tasks.append(
            Task(
                id=str(index),
                job_id=job_id,
                status=status,
                step=step,
                parameters={},
                attempts=1 + rec.restart_cnt if status is not JobStatus.PENDING else rec.restart_cnt,
                exit_code=rec.exit_code if status.is_finished else None,
                started_at=_time(rec.start_time) if status is not JobStatus.PENDING else None,
                finished_at=_time(rec.end_time) if status.is_finished else None,
                reason=reason,
                log=expand_path(rec.stdout, rec, index) if rec.stdout else None,
                raw=rec.raw,
            )
        )
    return tasks


def job_from_records(job_id: str, records: Sequence[Rec]) -> Job:
    """One aiofarm Job from the Slurm records of one job (one record, or every task
    record of an array job plus its pending remainder)."""
    if not records:
        raise ValueError("no records")
    # the record that carries the job's own id holds the name/comment/etc.
    head = next((r for r in records if str(r.job_id) == job_id), records[0])
    entries = _task_entries(records)
    per_task = [record_status(rec) for _, rec in entries]
    status = aggregate([s for s, _ in per_task])
    is_array = head.array_job_id > 0 or len(entries) > 1
    reason: str | None
    if is_array:
        reason = next((r for s, r in per_task if s is status and r), None)
    else:
        reason = per_task[0][1] if per_task else None
    counts: dict[str, int] = {}
    for s, _ in per_task:
        counts[s.value] = counts.get(s.value, 0) + 1

    tags, description = parse_comment(head.comment)
    priority = 100 - head.nice if head.nice is not None else 50
    submits = [t for r in records if (t := _time(r.submit_time)) is not None]
    starts = [
        t
        for (_, r), (s, _) in zip(entries, per_task, strict=True)
        if s is not JobStatus.PENDING and (t := _time(r.start_time)) is not None
    ]
    ends = [t for r in records if (t := _time(r.end_time)) is not None]
    created = min(submits) if submits else None
    started = min(starts) if starts else None
    finished = max(ends) if ends and status.is_finished else None

    exit_code: int | None = None
    if status.is_finished:
        codes = [rec.exit_code for (_, rec), (s, _) in zip(entries, per_task, strict=True) if s.is_finished]
        nonzero = [c for c in codes if c not in (None, 0)]
        exit_code = nonzero[0] if nonzero else (codes[0] if codes else None)

    history: list[StatusTransition] = []
    if created is not None:
        history.append(StatusTransition(JobStatus.PENDING, created))
    if started is not None:
        history.append(StatusTransition(JobStatus.RUNNING, started))
    if finished is not None:
        history.append(StatusTransition(status, finished, reason))

    raw = head.raw if len(records) == 1 else {"records": [r.raw for r in records], **head.raw}
    return Job(
        id=job_id,
        status=status,
        driver=DRIVER,
        name=head.name or None,
        owner=head.user_name or None,
        pool=head.partition or None,
        tags=tags,
        labels=comment_labels(head.comment),
        description=description,
        priority=priority,
        created_at=created,
        started_at=started,
        finished_at=finished,
        exit_code=exit_code,
        reason=reason,
        history=tuple(history),
        task_counts=counts,
        depends_on=parse_dependency(head.dependency),
        raw=raw,
    )


def group_records(records: Iterable[Rec]) -> dict[str, list[Rec]]:
    """Records by aiofarm job id: an array task is filed under its array's id."""
    out: dict[str, list[Rec]] = {}
    for rec in records:
        out.setdefault(rec.key, []).append(rec)
    return out
