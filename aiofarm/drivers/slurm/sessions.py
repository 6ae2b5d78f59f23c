"""The tasks of a step that runs in sessions (OpenJD environments with actions).

Such a step is one Slurm array of ``k`` elements; element ``s`` is one session: the
session runner (:mod:`aiofarm.openjd.session_runner`) enters the environments once,
runs the consecutive tasks :func:`session_split` gives it, and exits them. Slurm knows
the elements; each task's own start and end come from the runner's results file
(``<results><s>.jsonl``, JSON lines beside the logs), named in the step job's comment
(``sessions``: ``{"n", "k", "results"}``) so any client can read them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from ...models import JobStatus, Task
from .records import Rec

__all__ = ["Results", "expand", "read_results", "results_paths", "session_split", "task_counts", "task_total"]

Entry = tuple[Task, "int | None", Rec]
#: results file -> task id -> what its runs recorded (:func:`read_results`)
Results = dict[str, dict[str, dict[str, Any]]]


def session_split(n: int, k: int) -> list[range]:
    """Tasks ``0..n-1`` in ``k`` runs of consecutive tasks, the first ones a task longer."""
    q, r = divmod(n, k)
    return [range(s * q + min(s, r), (s + 1) * q + min(s + 1, r)) for s in range(k)]


def _meta(meta: Any) -> tuple[int, int, str] | None:
    if not isinstance(meta, dict):
        return None
    n, k, results = meta.get("n"), meta.get("k"), meta.get("results")
    if isinstance(n, int) and isinstance(k, int) and isinstance(results, str) and 0 < k <= n:
        return n, k, results
    return None


def task_total(meta: Any) -> int:
    """The tasks of a step run in sessions (0: not such a step)."""
    parsed = _meta(meta)
    return 0 if parsed is None else parsed[0]


def results_paths(meta: Any) -> list[str]:
    parsed = _meta(meta)
    return [] if parsed is None else [f"{parsed[2]}{s}.jsonl" for s in range(parsed[1])]


def _succeeded(slot: Mapping[str, Any]) -> bool:
    end = slot.get("end")
    return end is not None and end.get("exit") == 0


def read_results(paths: Sequence[str]) -> Results:
    """path -> task id -> {"start": True, "end": {...}, "runs": n} as of the session's latest run
    (blocking: call in a thread). A rerun (retry, requeue) appends to the same file
    after a ``run`` line: from there the tasks that had not succeeded are to run again,
    and those that had are skipped and keep their result."""
    out: Results = {}
    for path in paths:
        events: dict[str, dict[str, Any]] = {}
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                for line in f:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        continue  # the line being written, or cut short by a kill
                    if not isinstance(event, dict):
                        continue
                    if event.get("event") == "run":
                        # what did not succeed is to run again: only its count of runs stays
                        events = {i: slot if _succeeded(slot) else {"runs": slot.get("runs", 0)} for i, slot in events.items()}
                    elif event.get("id") is not None:
                        task_id = str(event["id"])
                        runs = events.get(task_id, {}).get("runs", 0)
                        if event.get("event") == "start":
                            events[task_id] = {"start": True, "runs": runs + 1}
                        elif event.get("event") == "end":
                            slot = events.setdefault(task_id, {"runs": runs + 1})
                            slot["start"] = True
                            slot["end"] = event
        except OSError:
            pass
        out[path] = events
    return out


def _task(element: Task, task_id: str, events: Mapping[str, Any], params: Mapping[str, Any]) -> Task:
    # attempts: the runs of its session that started it (a skipped task is not run again)
    base = attrs.evolve(element, id=task_id, parameters=params, attempts=int(events.get("runs", 0)))
    end = events.get("end")
    if element.status in (JobStatus.PENDING, JobStatus.SUSPENDED) and not _succeeded(events):
        # its session waits to run again (retry, requeue): the rerun runs this task
        # again, and skips only those that succeeded
        return attrs.evolve(base, exit_code=None, reason=element.reason, started_at=None, finished_at=None)
    if end is not None:
        code = end.get("exit") if isinstance(end.get("exit"), int) else 1
        fail = end.get("fail") if isinstance(end.get("fail"), str) else None
        ok = code == 0
        return attrs.evolve(
            base, status=JobStatus.SUCCEEDED if ok else JobStatus.FAILED, exit_code=code,
            reason=None if ok else (fail or f"exit code {code}"),
            finished_at=element.finished_at,
        )
    if element.status.is_finished:
        # the session ended before this task did (a cancel, an environment that failed)
        status = JobStatus.CANCELED if element.status is JobStatus.CANCELED else JobStatus.FAILED
        what = "ran" if events.get("start") else "did not run"
        return attrs.evolve(
            base, status=status, exit_code=None, reason=f"{what}: its session ended ({element.reason or status.value})"
        )
    if events.get("start"):
        return attrs.evolve(base, status=JobStatus.RUNNING, exit_code=None, finished_at=None)
    return attrs.evolve(base, status=JobStatus.PENDING, exit_code=None, started_at=None, finished_at=None)


def task_counts(entries: Sequence[Entry]) -> dict[str, int]:
    """``Job.task_counts`` of the tasks :func:`expand` gives."""
    counts: dict[str, int] = {}
    for task, _, _ in entries:
        counts[task.status.value] = counts.get(task.status.value, 0) + 1
    return counts


def expand(
    elements: Sequence[Entry],
    meta: Any,
    results: Mapping[str, Mapping[str, Mapping[str, Any]]],
    params: Sequence[Mapping[str, Any]],
) -> list[Entry] | None:
    """The step's tasks from its session elements (None: not a session step). Each
    task keeps its element's index and record: its log is its session's output."""
    parsed = _meta(meta)
    if parsed is None:
        return None
    n, k, prefix = parsed
    by_index = {index if index is not None else 0: (task, rec) for task, index, rec in elements}
    out: list[Entry] = []
    for s, share in enumerate(session_split(n, k)):
        found = by_index.get(s)
        if found is None:
            continue
        element, rec = found
        events = results.get(f"{prefix}{s}.jsonl", {})
        for i in share:
            task = _task(element, str(i), events.get(str(i), {}), params[i] if i < len(params) else {})
            out.append((task, s if k > 1 else None, rec))
    return out
