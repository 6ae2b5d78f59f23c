"""What the farm service and its clients send each other: plain JSON values for
aiofarm's models, queries and errors. Times travel as seconds since the epoch."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...errors import (
    BackendError,
    ConnectionLost,
    FarmError,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    PoolNotFound,
    StateError,
    StateLocked,
    UnsupportedError,
)
from ...models import (
    Job,
    JobSpec,
    JobStatus,
    LogLine,
    LogPage,
    Pool,
    StatusTransition,
    Task,
    Worker,
    frozen_map,
)
from ..base import JobUpdate, ListQuery, LogQuery
from . import filtering
from .codec import from_dt, spec_from_data, spec_to_json, to_dt

if TYPE_CHECKING:
    from .model import FarmJob

#: bumped whenever a request or an answer changes shape
PROTOCOL = 8  # 3: listings carry their native ``where`` and ``sort``; ``count``; 4: jobs carry labels; 5: followed logs over /v1/log_follow; 6: port forwards tunnelled by the service (/v1/port_forward); 7: log reads in wire form (index records with their raw bytes); 8: exec runs in the service, attach and exec over /v1/stdio


def _t(value: Any) -> float | None:
    return None if value is None else from_dt(value)


epoch = _t
json_loads = json.loads


# -- jobs ---------------------------------------------------------------------------


def job_to(job: Job) -> list[Any]:
    return [
        job.id,
        job.status.value,
        job.name,
        job.owner,
        job.pool,
        list(job.tags),
        job.description,
        job.priority,
        _t(job.created_at),
        _t(job.started_at),
        _t(job.finished_at),
        job.exit_code,
        job.reason,
        [[h.status.value, from_dt(h.time), h.reason] for h in job.history],
        dict(job.task_counts),
        list(job.depends_on),
        dict(job.raw),
        dict(job.labels),
    ]


def job_from(data: Sequence[Any]) -> Job:
    (job_id, status, name, owner, pool, tags, description, priority, created, started, finished,
     code, reason, history, counts, depends_on, raw, labels) = data
    return Job(
        id=job_id,
        status=JobStatus(status),
        driver="local",
        name=name,
        owner=owner,
        pool=pool,
        tags=tuple(tags),
        description=description,
        priority=priority,
        created_at=to_dt(created),
        started_at=to_dt(started),
        finished_at=to_dt(finished),
        exit_code=code,
        reason=reason,
        history=tuple(StatusTransition(JobStatus(s), to_dt(t), r) for s, t, r in history),  # type: ignore[arg-type]
        task_counts=counts,
        depends_on=tuple(depends_on),
        raw=raw,
        labels=labels,
    )


# A submit travels as lines: a JSON header, then each spec's compact JSON (as the
# store keeps it: the service stores each line as it came, never encodes it again).
# JSON text never holds a raw newline.


def submit_to(specs: Sequence[JobSpec], header: Mapping[str, Any], cwd: str) -> str:
    """``cwd``: where a spec without one runs (where it was submitted from, as in a
    shell); a template job runs in its session's work dir instead."""
    where = '{"cwd":' + dumps(cwd)
    lines = [dumps(header)]
    for spec in specs:
        text = spec_to_json(spec)
        if spec.cwd is None and spec.template is None:
            text = where + ("}" if text == "{}" else "," + text[1:])
        lines.append(text)
    return "\n".join(lines)


def submit_from(body: str) -> tuple[dict[str, Any], list[JobSpec], list[str]]:
    """The header, the specs and their texts; ValueError/TypeError when malformed."""
    header, *texts = body.split("\n")
    head = json.loads(header)
    if not isinstance(head, dict):
        raise ValueError("the submit header must be a JSON object")
    specs = []
    for text in texts:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a spec must be a JSON object")
        specs.append(spec_from_data(data))
    return head, specs, texts


def submitted_to(jobs: Sequence[FarmJob]) -> dict[str, Any]:
    """The answer to a submit, compact for big batches: what a new job's model holds
    beyond its spec, as lists only where a batch's jobs differ; a job whose status
    already changed (a failed dependency) travels whole."""
    from .model import job_model  # the service's side only: asyncio stays out of the CLI

    if not jobs:
        return {"ids": []}
    first = jobs[0]
    tasks = [len(j.tasks) for j in jobs]
    slots = [j.slots for j in jobs]
    return {
        "created": first.created_at,
        "owner": first.owner,
        "seq": first.seq,
        "ids": [j.id for j in jobs],
        "tasks": None if all(n == 1 for n in tasks) else tasks,
        "slots": None if all(n == 1 for n in slots) else slots,
        "status": [[i, j.status.value, j.reason] for i, j in enumerate(jobs) if j.status is not JobStatus.PENDING],
        "full": [[i, job_to(job_model(j))] for i, j in enumerate(jobs) if len(j.history) > 1],
    }


def submitted_from(specs: Sequence[JobSpec], d: Mapping[str, Any]) -> list[Job]:
    from .model import DEFAULT_POOL

    ids = d["ids"]
    if not ids:
        return []
    created = to_dt(d["created"])
    owner, seq, tasks, slots = d["owner"], d["seq"], d["tasks"], d["slots"]
    status = {i: (JobStatus(st), reason) for i, st, reason in d["status"]}
    full = {i: job_from(x) for i, x in d["full"]}
    # the jobs of one batch share their immutable parts
    histories: dict[tuple[JobStatus, str | None], tuple[StatusTransition, ...]] = {}
    counts: dict[int, Mapping[str, int]] = {}
    jobs = []
    for i, (spec, job_id) in enumerate(zip(specs, ids, strict=True)):
        job = full.get(i)
        if job is None:
            st, reason = status.get(i, (JobStatus.PENDING, None))
            history = histories.get((st, reason))
            if history is None:
                history = histories[st, reason] = (StatusTransition(st, created, reason),)  # type: ignore[arg-type]
            n = 1 if tasks is None else tasks[i]
            task_counts = counts.get(n)
            if task_counts is None:
                task_counts = counts[n] = frozen_map({"pending": n})
            job = Job(
                id=job_id,
                status=st,
                driver="local",
                name=spec.name,
                owner=owner,
                pool=spec.pool or DEFAULT_POOL,
                tags=spec.tags,
                description=spec.description,
                priority=spec.priority,
                created_at=created,
                reason=reason,
                history=history,
                task_counts=task_counts,
                depends_on=spec.depends_on,
                raw={"seq": seq + i, "paused": spec.paused, "slots": 1 if slots is None else slots[i]},
                labels=spec.labels,
            )
        jobs.append(job)
    return jobs


def task_to(task: Task) -> list[Any]:
    return [
        task.id, task.job_id, task.status.value, task.step, dict(task.parameters), task.attempts,
        task.exit_code, _t(task.started_at), _t(task.finished_at), task.reason, task.log, dict(task.raw),
        task.progress, task.status_message,
    ]


def task_from(d: Sequence[Any]) -> Task:
    (tid, job_id, status, step, params, attempts, code, started, finished, reason, log, raw) = d[:12]
    progress, message = (d[12], d[13]) if len(d) >= 14 else (None, None)
    return Task(
        id=tid, job_id=job_id, status=JobStatus(status), step=step, parameters=params, attempts=attempts,
        exit_code=code, started_at=to_dt(started), finished_at=to_dt(finished), reason=reason, log=log, raw=raw,
        progress=progress, status_message=message,
    )


def page_to(page: LogPage) -> dict[str, Any]:
    return {
        "lines": [[_t(x.time), x.stream, x.text, x.task_id, x.attempt] for x in page.lines],
        "next": page.next_token,
    }


def page_from(d: Mapping[str, Any]) -> LogPage:
    return LogPage(
        tuple(LogLine(to_dt(t), s, x, tid, attempt=n) for t, s, x, tid, n in d["lines"]), d["next"]
    )


def pool_to(p: Pool) -> dict[str, Any]:
    return {"id": p.id, "name": p.name, "slots": p.slots, "raw": dict(p.raw)}


def pool_from(d: Mapping[str, Any]) -> Pool:
    return Pool(id=d["id"], name=d["name"], slots=d["slots"], driver="local", raw=d["raw"])


def worker_to(w: Worker) -> dict[str, Any]:
    return {
        "id": w.id, "name": w.name, "enabled": w.enabled, "status": w.status, "pool": w.pool,
        "cpus": w.cpus, "reason": w.reason, "raw": dict(w.raw),
    }


def worker_from(d: Mapping[str, Any]) -> Worker:
    return Worker(**d)


# -- queries ------------------------------------------------------------------------


def list_query_to(q: ListQuery) -> dict[str, Any]:
    # ``where`` is the native part of the plan (filtering.plan): the service runs it as SQL
    return {
        "where": filtering.expr_to_wire(q.where),
        "sort": filtering.sort_to_wire(q.sort),
        "statuses": None if q.statuses is None else sorted(s.value for s in q.statuses),
        "name": q.name,
        "tags": list(q.tags),
        "owners": list(q.owners),
        "since": _t(q.since),
        "until": _t(q.until),
        "pool": q.pool,
        "reverse": q.reverse,
    }


def list_query_from(d: Mapping[str, Any]) -> ListQuery:
    statuses = d.get("statuses")
    return ListQuery(
        statuses=None if statuses is None else frozenset(JobStatus(s) for s in statuses),
        name=d.get("name"),
        tags=tuple(d.get("tags") or ()),
        owners=tuple(d.get("owners") or ()),
        since=to_dt(d.get("since")),
        until=to_dt(d.get("until")),
        pool=d.get("pool"),
        reverse=bool(d.get("reverse")),
        where=filtering.expr_from_wire(d.get("where")),
        sort=filtering.sort_from_wire(d.get("sort")),
    )


def log_query_to(q: LogQuery) -> dict[str, Any]:
    return {
        "task": q.task,
        "streams": sorted(q.streams),
        "start": _t(q.start_time),
        "end": _t(q.end_time),
        "limit": q.limit,
    }


def log_query_from(d: Mapping[str, Any]) -> LogQuery:
    return LogQuery(
        task=d.get("task"),
        streams=frozenset(d.get("streams") or ("stdout", "stderr")),
        start_time=to_dt(d.get("start")),
        end_time=to_dt(d.get("end")),
        limit=int(d.get("limit", 1000)),
    )


def update_to(u: JobUpdate) -> dict[str, Any]:
    return {"priority": u.priority, "name": u.name, "tags": None if u.tags is None else list(u.tags)}


def update_from(d: Mapping[str, Any]) -> JobUpdate:
    tags = d.get("tags")
    return JobUpdate(priority=d.get("priority"), name=d.get("name"), tags=None if tags is None else tuple(tags))


# -- errors -------------------------------------------------------------------------


def error_to(exc: FarmError) -> dict[str, Any]:
    kind = type(exc).__name__
    if isinstance(exc, JobNotFound):
        args: list[Any] = [exc.job_id]
    elif isinstance(exc, PoolNotFound):
        args = [exc.pool]
    elif isinstance(exc, InvalidSpec):
        args = [exc.field, exc.reason]
    elif isinstance(exc, UnsupportedError):
        msg = str(exc)
        base = f"the {exc.driver} driver does not support {exc.feature}"
        args = [exc.driver, exc.feature, msg[len(base) + 2 :] if msg.startswith(base + ": ") else ""]
    elif isinstance(exc, JobNotRunning):
        status = exc.status.value if isinstance(exc.status, JobStatus) else str(exc.status)
        args = [exc.job_id, status, exc.operation]
    elif isinstance(exc, StateError):
        args = [exc.operation, exc.message]
    elif isinstance(exc, BackendError):
        args = [exc.driver, exc.code, exc.message]
    else:
        kind = kind if kind in ("StateLocked", "ConnectionLost") else "FarmError"
        args = [str(exc)]
    return {"error": kind, "args": args}


def error_from(d: Mapping[str, Any]) -> FarmError:
    kind = d.get("error")
    args = list(d.get("args") or ())
    try:
        if kind == "JobNotFound":
            return JobNotFound(args[0], driver="local")
        if kind == "PoolNotFound":
            return PoolNotFound(args[0], driver="local")
        if kind == "InvalidSpec":
            return InvalidSpec(args[0], args[1])
        if kind == "UnsupportedError":
            return UnsupportedError(args[0], args[1], args[2])
        if kind == "JobNotRunning":
            status: Any = args[1]
            with contextlib.suppress(ValueError):
                status = JobStatus(status)
            return JobNotRunning(args[0], status, args[2])
        if kind == "StateError":
            return StateError(args[0], args[1])
        if kind == "BackendError":
            return BackendError(args[0], args[1], args[2])
        if kind == "StateLocked":
            return StateLocked(args[0])
        if kind == "ConnectionLost":
            return ConnectionLost(args[0])
        return FarmError(*args[:1])
    except (IndexError, TypeError):
        return BackendError("local", "protocol", f"the farm service sent a malformed error: {d!r}")


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
