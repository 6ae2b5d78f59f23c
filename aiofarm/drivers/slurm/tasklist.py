"""A job's tasks as the driver reports them (``tasks()``, ``Job.task_counts``, logs):
one per array element, except in a step run in sessions, whose tasks come from the
session runners' results files (:mod:`.sessions`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio.to_thread
import attrs

from ...models import Job, Task
from . import mapping, sessions
from .records import Rec
from .store import JobStore

__all__ = ["count_tasks", "session_tasks", "task_list"]

#: (step name, its records, the ``sessions`` its comment names or None) per step
Steps = list[tuple["str | None", list[Rec], Any]]


def _steps(store: JobStore, job_id: str) -> Steps:
    sub = store.submitted.get(job_id)
    found: Steps = []
    for step, jid in store.step_jobs(job_id):
        name = step or (sub.steps[0][0] if sub is not None else None)
        recs = store.lookup(jid) or []
        found.append((name, recs, mapping.parse_meta(recs[0].comment).get("sessions") if recs else None))
    return found


async def _results(jobs: Sequence[Steps]) -> sessions.Results:
    """The results files of these jobs' session steps, read in one thread."""
    paths = [p for found in jobs for _, _, meta in found for p in sessions.results_paths(meta)]
    return await anyio.to_thread.run_sync(sessions.read_results, paths) if paths else {}


def _expand(store: JobStore, job_id: str, found: Steps, results: sessions.Results) -> list[sessions.Entry]:
    sub = store.submitted.get(job_id)
    multi = len(found) > 1
    out: list[sessions.Entry] = []
    for name, recs, meta in found:
        params = sub.parameters.get(name, []) if sub is not None and name is not None else []
        by_index = {r.array_task_id: r for r in recs if r.array_task_id is not None}
        elements: list[sessions.Entry] = []
        for task in mapping.tasks_from_records(job_id, recs, name):
            index = int(task.id) if task.id.isdigit() else None
            rec = (by_index.get(index) if index is not None else None) or next((r for r in recs if r.raw is task.raw), recs[0])
            elements.append((task, index, rec))
        expanded = sessions.expand(elements, meta, results, params)
        if expanded is None:
            expanded = [
                (attrs.evolve(task, parameters=params[index]) if index is not None and index < len(params) else task, index, rec)
                for task, index, rec in elements
            ]
        for task, index, rec in expanded:
            out.append((attrs.evolve(task, id=f"{name}/{task.id}") if multi else task, index, rec))
    return out


async def task_list(store: JobStore, job_id: str) -> list[tuple[Task, int | None, Rec]]:
    """(Task, array index, record) for every task of every step of ``job_id``."""
    found = _steps(store, job_id)
    return _expand(store, job_id, found, await _results([found]))


async def count_tasks(store: JobStore, jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` with the counts of steps run in sessions made per task, as
    :func:`task_list` gives them, instead of per session (array element)."""
    with_sessions: dict[str, Steps] = {}
    for job in jobs:
        if not any('"sessions"' in rec.comment for rec in store.collect(job.id) or ()):
            continue  # a poll round reads every watched job: no JSON for the others
        found = _steps(store, job.id)
        if any(meta is not None for _, _, meta in found):
            with_sessions[job.id] = found
    if not with_sessions:
        return list(jobs)
    results = await _results(list(with_sessions.values()))
    return [
        attrs.evolve(job, task_counts=sessions.task_counts(_expand(store, job.id, with_sessions[job.id], results)))
        if job.id in with_sessions
        else job
        for job in jobs
    ]


def session_tasks(store: JobStore, job_id: str) -> set[str]:
    """The ids of the tasks of ``job_id`` that run in sessions (their output is marked)."""
    found = _steps(store, job_id)
    multi = len(found) > 1
    return {
        f"{name}/{i}" if multi else str(i) for name, _, meta in found for i in range(sessions.task_total(meta))
    }
