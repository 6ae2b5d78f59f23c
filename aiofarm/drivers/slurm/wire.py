"""Pure conversions between aiofarm models and slurmrestd v0.0.38 JSON.

No I/O here: the driver fetches records and hands them in. Keeping this pure lets
the mapping rules (states, wait statuses, array aggregation, batch scripts) be
tested without a cluster.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ...errors import InvalidSpec
from ...models import Job, JobSpec, JobStatus, StatusTransition, Task

__all__ = [
    "API_VERSION",
    "COMMENT_PREFIX",
    "aggregate",
    "batch_script",
    "decode_wait_status",
    "expand_path",
    "job_from_records",
    "parse_comment",
    "parse_dependency",
    "parse_index_expr",
    "record_status",
    "submit_body",
    "tasks_from_records",
]

API_VERSION = "v0.0.38"
DRIVER = "slurm"
#: tags and description ride in the job's ``comment`` (Slurm has no tags)
COMMENT_PREFIX = "aiofarm:"
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
#: JobSpec.options keys passed to Slurm as job properties of the same name
SLURM_OPTIONS = ("account", "qos", "reservation", "constraints", "exclusive", "nodes", "wckey")

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
    """Slurm's ``exit_code`` is a wait(2) status: 768 is exit 3, 15 is SIGTERM.
    Returns the exit code, or minus the signal number (the subprocess convention)."""
    if not isinstance(raw, int) or raw < 0 or raw > 0xFFFF:
        return None  # unset / garbage while the job runs (e.g. 4294901708)
    sig = raw & 0x7F
    if sig == 0:
        return (raw >> 8) & 0xFF
    if sig == 0x7F:
        return None  # stopped, not ended
    return -sig


def _time(value: Any) -> datetime | None:
    if isinstance(value, int) and value > 0:
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


_DEP_RE = re.compile(r"(?:after\w*|singleton)(?::[^,?]*)?")


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


def expand_path(pattern: str, record: Mapping[str, Any], task: int | None = None) -> str:
    """Expand the filename patterns aiofarm uses (and the common ones) in an output path."""
    job_id = record.get("job_id")
    array_job = record.get("array_job_id") or job_id
    if task is None:
        t = record.get("array_task_id")
        task = t if isinstance(t, int) else None
    repl = {
        "j": str(job_id),
        "A": str(array_job),
        "a": str(task) if task is not None else "4294967294",
        "x": str(record.get("name") or ""),
        "u": str(record.get("user_name") or ""),
        "%": "%",
    }

    def sub(m: re.Match[str]) -> str:
        return repl.get(m.group(1), m.group(0))

    return re.sub(r"%([jAaxu%])", sub, pattern)


# -- records -> models -------------------------------------------------------------


def record_status(record: Mapping[str, Any]) -> tuple[JobStatus, str | None]:
    """(status, reason) of one Slurm job record."""
    state = str(record.get("job_state") or "")
    reason_raw = record.get("state_reason")
    reason = reason_raw if isinstance(reason_raw, str) and reason_raw not in ("", "None") else None
    desc = record.get("state_description")
    if reason and isinstance(desc, str) and desc:
        reason = f"{reason}: {desc}"
    if state in _FINISHED_STATES:
        status = _FINISHED_STATES[state]
        if state != "COMPLETED" and reason is None:
            reason = state
        elif state == "COMPLETED":
            reason = None
        return status, reason
    if state == "PENDING" and isinstance(reason_raw, str) and reason_raw in _HELD_REASONS:
        return JobStatus.SUSPENDED, "paused (held)"
    status = _ACTIVE_STATES.get(state, JobStatus.UNKNOWN)
    if status is JobStatus.UNKNOWN and reason is None:
        reason = f"unknown Slurm state {state!r}"
    return status, reason


def _task_entries(records: Iterable[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    """(array index, record) per task; a pending remainder record stands for many."""
    out: list[tuple[int, Mapping[str, Any]]] = []
    for rec in records:
        tid = rec.get("array_task_id")
        if isinstance(tid, int):
            out.append((tid, rec))
            continue
        expr = rec.get("array_task_string")
        if isinstance(expr, str) and expr:
            try:
                out.extend((i, rec) for i in parse_index_expr(expr))
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
    if JobStatus.RUNNING in s:
        return JobStatus.RUNNING
    if JobStatus.PENDING in s:
        return JobStatus.PENDING
    if JobStatus.SUSPENDED in s:
        return JobStatus.SUSPENDED
    if JobStatus.UNKNOWN in s:
        return JobStatus.UNKNOWN
    if JobStatus.FAILED in s:
        return JobStatus.FAILED
    if JobStatus.CANCELED in s:
        return JobStatus.CANCELED
    return JobStatus.SUCCEEDED


def tasks_from_records(
    job_id: str, records: Sequence[Mapping[str, Any]], step: str | None = None
) -> list[Task]:
    tasks: list[Task] = []
    for index, rec in _task_entries(records):
        status, reason = record_status(rec)
        out = rec.get("standard_output")
        tasks.append(
            Task(
                id=str(index),
                job_id=job_id,
                status=status,
                step=step,
                parameters={},
                attempts=1 + int(rec.get("restart_cnt") or 0) if status is not JobStatus.PENDING else 0,
                exit_code=decode_wait_status(rec.get("exit_code")) if status.is_finished else None,
                started_at=_time(rec.get("start_time")) if status is not JobStatus.PENDING else None,
                finished_at=_time(rec.get("end_time")) if status.is_finished else None,
                reason=reason,
                log=expand_path(out, rec, index) if isinstance(out, str) and out else None,
                raw=rec,
            )
        )
    return tasks


def job_from_records(job_id: str, records: Sequence[Mapping[str, Any]]) -> Job:
    """One aiofarm Job from the Slurm records of one job (one record, or every task
    record of an array job plus its pending remainder)."""
    if not records:
        raise ValueError("no records")
    # the record that carries the job's own id holds the name/comment/etc.
    head = next((r for r in records if str(r.get("job_id")) == job_id), records[0])
    entries = _task_entries(records)
    per_task = [record_status(rec) for _, rec in entries]
    status = aggregate([s for s, _ in per_task])
    is_array = bool(head.get("array_job_id")) or len(entries) > 1
    reason: str | None
    if is_array:
        reason = next((r for s, r in per_task if s is status and r), None)
    else:
        reason = per_task[0][1] if per_task else None
    counts: dict[str, int] = {}
    for s, _ in per_task:
        counts[s.value] = counts.get(s.value, 0) + 1

    tags, description = parse_comment(head.get("comment"))
    nice = head.get("nice")
    priority = 100 - nice if isinstance(nice, int) else 50
    submits = [t for r in records if (t := _time(r.get("submit_time"))) is not None]
    starts = [
        t
        for (_, r), (s, _) in zip(entries, per_task, strict=True)
        if s is not JobStatus.PENDING and (t := _time(r.get("start_time"))) is not None
    ]
    ends = [t for r in records if (t := _time(r.get("end_time"))) is not None]
    created = min(submits) if submits else None
    started = min(starts) if starts else None
    finished = max(ends) if ends and status.is_finished else None

    exit_code: int | None = None
    if status.is_finished:
        codes = [
            decode_wait_status(rec.get("exit_code"))
            for (_, rec), (s, _) in zip(entries, per_task, strict=True)
            if s.is_finished
        ]
        nonzero = [c for c in codes if c not in (None, 0)]
        exit_code = nonzero[0] if nonzero else (codes[0] if codes else None)

    history: list[StatusTransition] = []
    if created is not None:
        history.append(StatusTransition(JobStatus.PENDING, created))
    if started is not None:
        history.append(StatusTransition(JobStatus.RUNNING, started))
    if finished is not None:
        history.append(StatusTransition(status, finished, reason))

    raw: Mapping[str, Any] = head if len(records) == 1 else {"records": list(records), **head}
    return Job(
        id=job_id,
        status=status,
        driver=DRIVER,
        name=head.get("name") or None,
        owner=head.get("user_name") or None,
        pool=head.get("partition") or None,
        tags=tags,
        description=description,
        priority=priority,
        created_at=created,
        started_at=started,
        finished_at=finished,
        exit_code=exit_code,
        reason=reason,
        history=tuple(history),
        task_counts=counts,
        depends_on=parse_dependency(head.get("dependency")),
        raw=raw,
    )


def group_records(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    """Records by aiofarm job id: an array task is filed under its array's id."""
    out: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        arr = rec.get("array_job_id")
        key = str(arr) if isinstance(arr, int) and arr > 0 else str(rec.get("job_id"))
        out.setdefault(key, []).append(rec)
    return out


# -- spec -> submit body -----------------------------------------------------------


def _exec_line(argv: Sequence[str]) -> str:
    return "exec " + " ".join(shlex.quote(a) for a in argv)


def batch_script(runs: Sequence[tuple[Sequence[str], str | None, Mapping[str, str]]]) -> str:
    """A /bin/sh batch script that execs one argv (a plain job) or, for an array, the
    argv of task ``$SLURM_ARRAY_TASK_ID``. Every word is shell-quoted: no user string
    is ever interpreted by this shell. ``runs`` is (argv, cwd, extra env) per task."""

    def body(argv: Sequence[str], cwd: str | None, env: Mapping[str, str]) -> str:
        parts = [f"cd {shlex.quote(cwd)} || exit 127" ] if cwd else []
        for key, value in env.items():
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                raise InvalidSpec(f"env.{key}", "not a valid environment variable name")
            parts.append(f"export {key}={shlex.quote(value)}")
        parts.append(_exec_line(argv))
        return "; ".join(parts)

    lines = ["#!/bin/sh", "# generated by aiofarm: exec the job's command"]
    if len(runs) == 1:
        lines.append(body(*runs[0]))
        return "\n".join(lines) + "\n"
    lines.append('case "$SLURM_ARRAY_TASK_ID" in')
    for i, run in enumerate(runs):
        lines.append(f"{i}) {body(*run)} ;;")
    lines.append('*) echo "aiofarm: no task $SLURM_ARRAY_TASK_ID" >&2; exit 127 ;;')
    lines.append("esac")
    return "\n".join(lines) + "\n"


def submit_body(
    spec: JobSpec,
    *,
    script: str,
    array_size: int | None,
    env: Mapping[str, str],
    log_dir: str,
    dependency_ids: Sequence[str],
    default_partition: str | None,
    default_name: str,
    meta: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``POST /job/submit`` body for one spec (one step of it: ``meta`` says which)."""
    job: dict[str, Any] = {
        "name": spec.name or default_name,
        # the API requires an environment; PATH first so a bare command name resolves
        "environment": {"PATH": DEFAULT_PATH, **env},
        "current_working_directory": spec.cwd or log_dir,
        "nice": 100 - spec.priority,
        # a failed afterok dependency cancels the dependant instead of leaving it
        # pending forever (DependencyNeverSatisfied)
        "kill_on_invalid_dependency": True,
        "requeue": False,
    }
    if array_size is not None:
        job["standard_output"] = os.path.join(log_dir, "slurm-%A_%a.out")
        job["standard_error"] = os.path.join(log_dir, "slurm-%A_%a.err")
        throttle = f"%{spec.max_workers}" if spec.max_workers else ""
        job["array"] = f"0-{array_size - 1}{throttle}"
    else:
        job["standard_output"] = os.path.join(log_dir, "slurm-%j.out")
        job["standard_error"] = os.path.join(log_dir, "slurm-%j.err")
    partition = spec.pool or default_partition
    if partition:
        job["partition"] = partition
    comment = make_comment(spec.tags, spec.description, **(meta or {}))
    if comment:
        job["comment"] = comment
    if spec.timeout is not None:
        job["time_limit"] = max(1, math.ceil(spec.timeout / 60))
    if dependency_ids:
        job["dependency"] = "afterok:" + ":".join(dependency_ids)
    if spec.paused:
        job["hold"] = True
    res = spec.resources
    if res.cpu and res.cpu > 1:
        job["cpus_per_task"] = math.ceil(res.cpu)
    if res.memory_mb:
        job["memory_per_node"] = int(res.memory_mb)
    if res.gpu:
        job["gpus"] = str(int(res.gpu))
    # options are per-driver extras: the Slurm ones apply, others' (openjd, deadline) are theirs
    for key in SLURM_OPTIONS:
        if key in spec.options:
            job[key] = spec.options[key]
    return {"script": script, "job": job}
