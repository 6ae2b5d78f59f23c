"""The local farm's scheduler: pools of slots, priority then FIFO, dependencies,
retries, timeouts, cancel (SIGTERM, then SIGKILL after a grace period).

Every task is durably recorded as launching (``store.record_launches``, with the
token its process carries in ``AIOFARM_LAUNCH``) before its process is started:
whatever happens to the farm after that, recovery finds the process and never runs
the task a second time (launch.py starts the processes). While the state cannot
be written, nothing is started.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import json
import os
import signal as _signal
import socket
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ...models import JobStatus, StatusTransition
from . import launch, processes, sessions, store
from .codec import spec_from_json, to_dt
from .model import (
    CANCELED,
    CLOSED_REASON,
    FAILED,
    INTENTS,
    PENDING,
    RUNNING,
    SUCCEEDED,
    SUSPENDED,
    FarmJob,
    FarmPool,
    FarmStep,
    FarmTask,
    current_user,
    describe_exit,
    job_model,
    now,
)
from .writer import StateWriter

if TYPE_CHECKING:
    import anyio.abc

    from .processes import RunningTask


class Scheduler(StateWriter):
    """The scheduling core of a farm that owns its state dir."""

    def __init__(self, state_dir: str, *, cancel_grace: float = 10.0) -> None:
        super().__init__(state_dir)
        self.cancel_grace = cancel_grace
        self._wake: asyncio.Event | None = None
        self._jobs: dict[str, FarmJob] = {}
        self._dependants: dict[str, set[str]] = {}
        self._pools: dict[str, FarmPool] = {}
        self._running: set[FarmTask] = set()
        self._between: set[FarmJob] = set()  # RUNNING jobs between two tasks, settled after dispatch
        self._workdirs: set[int] = set()  # jobs whose work/<seq> directory is made (sessions.job_workdir)
        self._base_env: dict[bytes, bytes] = {}
        self._worker_enabled = True
        self._worker_reason: str | None = None
        self._closing = False
        self._instance = os.urandom(6).hex()  # tells this farm's launches from another's
        #: (log path, task index, lines) of tasks that ended while their log could not be written
        self._dropped: list[tuple[str, int, int]] = []
        self.role: str | None = None  # "owner" | "reader" once open
        self.hostname = socket.gethostname()
        self._owner = current_user()
        self._next_seq = 1
        #: jobs someone follows the log of (follow.py): their tasks' output is read from
        #: the first byte, not after ARM_DELAY
        self.followed: collections.Counter[str] = collections.Counter()

    async def _scheduler(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._wake is not None
        with anyio.CancelScope() as scope:
            self._scopes.append(scope)
            task_status.started()
            self._kick()
            while True:
                await self._wake.wait()
                self._wake.clear()
                self._dispatch()
                self._settle()
                self._mark_changed()

    def _on_write_recovered(self) -> None:
        self._write_dropped_notes()
        self._kick()

    def _write_dropped_notes(self) -> None:
        """Say in each log how many of its lines a full disk swallowed."""
        pending, self._dropped = self._dropped, []
        for path, idx, count in pending:
            try:
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self._dropped.append((path, idx, count))
                continue
            try:
                if not processes.append_whole(fd, processes.dropped_note(idx, count)):
                    self._dropped.append((path, idx, count))
            finally:
                os.close(fd)

    def _kick(self) -> None:
        if self._wake is not None:
            self._wake.set()

    def _link(self, job: FarmJob) -> None:
        """Derived state of a job whose steps and tasks are set."""
        by_name = {s.name: s for s in job.steps}
        counts: dict[str, int] = {}
        for step in job.steps:
            step.deps = [by_name[d] for d in step.depends_on if d in by_name]
            for dep in step.deps:
                dep.dependants.append(step)
            step.remaining = sum(1 for t in step.tasks if t.status is not SUCCEEDED)
        for t in job.tasks:
            counts[t.status.value] = counts.get(t.status.value, 0) + 1
            if t.status is FAILED:
                job.failed += 1
        job.counts = counts
        self._rebuild_ready(job)

    def _rebuild_ready(self, job: FarmJob) -> None:
        for step in job.steps:
            step.released = all(d.remaining == 0 for d in step.deps)
        job.ready = collections.deque(t for t in job.tasks if t.status is PENDING and t.step.released)

    def _set_status(self, job: FarmJob, status: JobStatus, reason: str | None = None) -> None:
        if status is job.status and reason == job.reason:
            return
        job.reason = reason
        self._dirty_jobs.add(job)
        if status is job.status:
            return
        job.status = status
        t = now()
        job.history.append(StatusTransition(status, to_dt(t), reason))  # type: ignore[arg-type]
        self._new_history.append((job.seq, t, status.value, reason))
        if self._subscribers:
            # delivered by _flush once committed: a pushed status is already on disk
            self._outbox.append(job_model(job))

    def _task_status(self, t: FarmTask, status: JobStatus, reason: str | None = None) -> None:
        job = t.job
        if status is not t.status:
            counts = job.counts
            counts[t.status.value] -= 1
            counts[status.value] = counts.get(status.value, 0) + 1
            t.status = status
        t.reason = reason
        self._dirty_tasks.add(t)
        self._dirty_jobs.add(job)

    def _refresh(self, job: FarmJob) -> None:
        """PENDING / RUNNING / SUSPENDED from the job's flags, for an unfinished job."""
        if job.paused:
            self._set_status(job, SUSPENDED, "paused")
        elif job.running:
            reason = f"stopping: {job.ending[1]}" if job.ending is not None else None
            self._set_status(job, RUNNING, reason)
        elif job.status is RUNNING and job.ready and job.ending is None and not job.waiting and self._wake is not None:
            # Between two of its tasks: the next one starts on the coming dispatch. PENDING
            # only if it does not, or every task would add a PENDING/RUNNING pair to the
            # history that each pushed event then carries whole (quadratic in the tasks).
            self._between.add(job)
            self._kick()
        else:
            self._set_status(job, PENDING, None)

    def _settle(self) -> None:
        between, self._between = self._between, set()
        for job in between:
            if not job.finished and not job.running and job.status is RUNNING:
                self._set_status(job, PENDING, None)


    def _load_jobs(self, where: str, params: Sequence[Any]) -> list[FarmJob]:
        rows, step_rows, task_rows, history = store.load_rows(self._require_db(), where, params)
        if not rows:
            return []
        by_seq: dict[int, FarmJob] = {}
        for (seq, job_id, status, owner, reason, created, started, finished, code, paused, spec,
             name, tags, description, priority, pool) in rows:
            job = FarmJob(seq, job_id, spec_from_json(spec))
            job.status = JobStatus(status)
            job.owner = owner
            job.reason = reason
            job.created_at = created
            job.started_at = started
            job.finished_at = finished
            job.exit_code = code
            job.paused = bool(paused)
            job.name = name
            job.tags = tuple(json.loads(tags))
            job.description = description
            job.priority = priority
            job.pool = pool
            by_seq[seq] = job
        for seq, idx, name, deps in step_rows:
            by_seq[seq].steps.append(FarmStep(idx, name, json.loads(deps)))
        for (seq, idx, tid, step, params_, status, attempts, failures, code, started, finished,
             reason, pid, pgid, pstart) in task_rows:
            job = by_seq[seq]
            t = FarmTask(job, idx, tid, job.steps[step], json.loads(params_))
            t.status = JobStatus(status)
            t.attempts = attempts
            t.failures = failures
            t.exit_code = code
            t.started_at = started
            t.finished_at = finished
            t.reason = reason
            t.pid, t.pgid, t.pstart = pid, pgid, pstart
            job.tasks.append(t)
            t.step.tasks.append(t)
        for seq, job in by_seq.items():
            job.history = history[seq]
            self._link(job)
        return list(by_seq.values())

    # -- scheduling --------------------------------------------------------------
    def _enqueue(self, job: FarmJob, force: bool = False) -> None:
        if job.queued and not force:
            return
        pool = self._pools.get(job.pool)
        if pool is None:
            return
        job.version += 1
        job.queued = True
        heapq.heappush(pool.heap, (-job.priority, job.seq, job.version, job))
        self._kick()

    def _dispatch(self) -> None:
        if self._dropped:
            self._write_dropped_notes()
        if not self._worker_enabled or self._closing or self.write_error is not None:
            return
        batch: list[tuple[FarmTask, FarmPool]] = []
        for pool in self._pools.values():
            heap = pool.heap
            while heap and pool.used < pool.slots:
                _, _, version, job = heap[0]
                if version != job.version:
                    heapq.heappop(heap)
                    continue
                limit = job.spec.max_workers
                if (
                    job.finished
                    or job.paused
                    or job.waiting
                    or job.ending is not None
                    or (limit is not None and job.running >= limit)
                ):
                    # re-queued by _check when what holds it changes
                    heapq.heappop(heap)
                    job.queued = False
                    continue
                task = None
                while job.ready:
                    cand = job.ready.popleft()
                    if cand.status is PENDING and cand.proc is None:
                        task = cand
                        break
                if task is None:
                    heapq.heappop(heap)
                    job.queued = False
                    continue
                if job.slots > pool.slots - pool.used:
                    job.ready.appendleft(task)
                    break  # strict priority: nothing behind it starts first
                # the slot is taken now; the process starts once its launch is on disk
                pool.used += job.slots
                job.running += 1
                batch.append((task, pool))
        if batch:
            launch.launch(self, batch)

    def _log_path(self, seq: int) -> str:
        return os.path.join(self.state_dir, "logs", f"{seq}.log")

    def _on_timeout(self, t: FarmTask) -> None:
        t.timer = None
        if t.proc is not None:
            t.proc.log_message("timeout: the task ran longer than its limit; stopping it")
            self._terminate(t, "timeout")

    def _terminate(self, t: FarmTask, intent: str) -> None:
        """SIGTERM to the task's process group now, SIGKILL after the grace period."""
        proc = t.proc
        if proc is None:
            return
        already = t.intent is not None
        if not already or INTENTS[intent] > INTENTS[t.intent]:  # type: ignore[index]
            t.intent = intent
        if already:
            return
        proc.signal_group(_signal.SIGTERM)
        grace = t.grace if t.grace is not None else self.cancel_grace
        assert self._loop is not None
        t.kill_timer = self._loop.call_later(grace, proc.signal_group, _signal.SIGKILL)

    def _on_exit(self, t: FarmTask, proc: RunningTask) -> None:
        job = t.job
        for timer in (t.timer, t.kill_timer):
            if timer is not None:
                timer.cancel()
        t.timer = t.kill_timer = None
        t.proc = None
        self._running.discard(t)
        pool = self._pools.get(job.pool)
        if pool is not None:
            pool.used -= job.slots
        job.running -= 1
        code = proc.returncode
        if proc.dropped_lines:
            self._dropped.append((self._log_path(job.seq), t.idx, proc.dropped_lines))
            self._write_dropped_notes()
        t.exit_code = code
        t.finished_at = now()
        job.last_code = code
        sessions.end_session(t)
        intent, t.intent = t.intent, None
        if intent == "requeue":
            t.attempts -= 1  # a stop for pause is not an attempt of the task
            self._task_status(t, PENDING, "requeued: paused with stop_work")
            if t.step.released:
                job.ready.appendleft(t)
        elif intent == "lost":
            job.fail_code = code
            self._task_status(t, FAILED, CLOSED_REASON)
            job.failed += 1
            self._abort(job, CLOSED_REASON)
        elif intent == "cancel":
            self._task_status(t, CANCELED, "canceled")
        elif intent is None and code == 0:
            self._task_status(t, SUCCEEDED)
            self._step_progress(t)
        else:
            why = "timeout" if intent == "timeout" else (t.fail_message or describe_exit(code))
            self._attempt_failed(t, why, code)
        self._check(job)
        self._kick()

    def _attempt_failed(self, t: FarmTask, reason: str, code: int | None) -> None:
        job = t.job
        t.failures += 1
        job.fail_code = code
        if t.failures <= job.spec.retries and job.ending is None and not self._closing:
            self._task_status(t, PENDING, f"retrying after {reason}")
            job.ready.appendleft(t)
            self._enqueue(job)
            return
        self._task_status(t, FAILED, reason)
        job.failed += 1
        # Unset, a failed task never cancels its siblings (a render farm's default): the
        # job ends FAILED when nothing more can run, listing what failed.
        limit = job.spec.max_failed_tasks
        if len(job.tasks) == 1 or (limit is not None and job.failed > limit):
            what = reason if len(job.tasks) == 1 else f"task {t.id} failed: {reason}"
            self._abort(job, what)

    def _step_progress(self, t: FarmTask) -> None:
        step = t.step
        step.remaining -= 1
        if step.remaining:
            return
        job = t.job
        released = False
        for nxt in step.dependants:
            if not nxt.released and all(d.remaining == 0 for d in nxt.deps):
                nxt.released = True
                job.ready.extend(x for x in nxt.tasks if x.status is PENDING)
                released = True
        if released:
            self._enqueue(job)

    def _abort(self, job: FarmJob, reason: str, status: JobStatus = FAILED) -> None:
        """End the job with ``status``: pending tasks will not run, running ones are stopped."""
        if job.finished:
            return
        if job.ending is None or (status is FAILED and job.ending[0] is not FAILED):
            job.ending = (status, reason)
        for t in job.tasks:
            if t.status is PENDING:
                self._task_status(t, CANCELED, f"not run: {reason}")
            elif t.status is RUNNING:
                self._terminate(t, "lost" if reason.startswith("lost") else "cancel")
        job.ready.clear()
        self._check(job)

    def _check(self, job: FarmJob) -> None:
        """Finish the job when nothing is left to do; else set its active status."""
        if job.finished:
            return
        if job.running:
            self._refresh(job)
            if job.ready and not job.paused and not job.waiting and job.ending is None:
                self._enqueue(job)
            return
        if job.ending is not None:
            self._finish(job, *job.ending)
            return
        n = len(job.tasks)
        counts = job.counts
        if counts.get(SUCCEEDED.value, 0) == n:
            self._finish(job, SUCCEEDED, None)
            return
        if counts.get(PENDING.value, 0) and counts.get(FAILED.value, 0) and not job.ready:
            self._cancel_doomed(job)
        if not counts.get(PENDING.value, 0):
            failed = counts.get(FAILED.value, 0)
            self._finish(job, FAILED, f"{failed} of {n} tasks failed")
            return
        self._refresh(job)
        if job.ready and not job.paused and not job.waiting:
            self._enqueue(job)

    def _cancel_doomed(self, job: FarmJob) -> None:
        """Pending tasks of steps that wait on a step with a failed task can never run
        (the failure stayed within ``max_failed_tasks``): they are CANCELED, so the
        job can end instead of waiting forever."""
        doomed: set[str] = set()
        for step in job.steps:  # plans list steps in dependency order
            if any(t.status is FAILED for t in step.tasks) or any(d.name in doomed for d in step.deps):
                doomed.add(step.name)
        for step in job.steps:
            if step.name in doomed and not step.released:
                failed = next(d.name for d in step.deps if d.name in doomed)
                for t in step.tasks:
                    if t.status is PENDING:
                        self._task_status(t, CANCELED, f"not run: step {failed} has failed tasks")

    def _finish(self, job: FarmJob, status: JobStatus, reason: str | None) -> None:
        job.finished = True
        job.finished_at = now()
        job.queued = False
        job.ready.clear()
        if status is SUCCEEDED:
            job.exit_code = job.last_code if job.last_code is not None else 0
        else:
            job.exit_code = job.fail_code if job.fail_code is not None else job.last_code
        self._set_status(job, status, reason)
        self._jobs.pop(job.id, None)
        self._recent[job.id] = job
        for fut in job.done:
            if not fut.done():
                fut.set_result(None)
        job.done.clear()
        for dep_id in sorted(self._dependants.pop(job.id, ()), key=lambda i: self._jobs[i].seq if i in self._jobs else 0):
            other = self._jobs.get(dep_id)
            if other is None or other.finished:
                continue
            other.waiting.discard(job.id)
            if status is SUCCEEDED:
                self._check(other)
            else:
                self._abort(other, f"dependency {job.id} {status.value}")
        self._kick()

    def _lookup_status(self, job_id: str) -> JobStatus | None:
        job = self._jobs.get(job_id) or self._recent.get(job_id)
        if job is not None:
            return job.status
        return store.status_of(self._require_db(), job_id)

    def _resolve_deps(self, job: FarmJob) -> None:
        job.waiting = set()
        for dep in job.depends_on:
            other = self._jobs.get(dep)
            if other is not None and not other.finished:
                job.waiting.add(dep)
                self._dependants.setdefault(dep, set()).add(job.id)
                continue
            status = self._lookup_status(dep)
            if status is SUCCEEDED:
                continue
            what = "not found" if status is None else status.value
            self._abort(job, f"dependency {dep} {what}")
            return
