"""The fake's clock: each tick finishes what ran, unblocks dependent steps and starts
what is ready; fail rules (or, in execute mode, the real command) decide outcomes."""

from __future__ import annotations

import json
import re
from typing import Any

from .records import TERMINAL, Action, Job, Session, Task, log_group, now
from .worker import resolvable


class Clock:
    jobs: dict[str, Job]
    sessions: dict[str, Session]
    workers: dict[str, dict[str, Any]]
    associations: list[tuple[str, str]]
    busy: dict[str, int]
    fail_rules: list[dict[str, Any]]
    execute: bool
    launches: list[tuple[Task, str, str, str]]
    pending_logs: list[tuple[str, str, int, str]]
    log_lines: int
    ticks: int
    _rr: int

    def set_task(self, task: Task, target: str) -> None:
        raise NotImplementedError

    def tick(self) -> dict[str, int]:
        """One step of simulated time for every job."""
        self.ticks += 1
        changed = 0
        for job in list(self.jobs.values()):
            if job.lifecycle == "CREATE_IN_PROGRESS":
                # creation takes the service about a second: done by the next step
                job.lifecycle = "CREATE_COMPLETE"
                changed += 1
            if job.lifecycle == "ARCHIVED":
                continue
            changed += self._tick_job(job)
        return {"tick": self.ticks, "changed": changed}

    def _tick_job(self, job: Job) -> int:
        changed = 0
        for task in job.tasks():
            if (
                task.status == "RUNNING"
                and task.running_since_tick < self.ticks
                and not task.executing
            ):
                self._finish_task(task)
                changed += 1
        for step in job.steps:
            ready = all(job.step_by_name(d).succeeded() for d in step.depends_on)
            failed_dep = any(
                t.status in ("FAILED", "CANCELED")
                for d in step.depends_on
                for t in job.step_by_name(d).tasks
            )
            for task in step.tasks:
                if task.status == "PENDING" and ready:
                    task.status = "READY"
                    changed += 1
                elif task.status == "PENDING" and failed_dep:
                    # its dependency can no longer succeed, so it will never run
                    task.status = "CANCELED"
                    task.ended = now()
                    changed += 1
        running = sum(1 for t in job.tasks() if t.status == "RUNNING")
        for task in job.tasks():
            if task.status != "READY":
                continue
            if job.max_workers is not None and job.max_workers > 0 and running >= job.max_workers:
                break
            self._start_task(task)
            running += 1
            changed += 1
        self._finish_job(job)
        return changed

    def _finish_job(self, job: Job) -> None:
        if all(t.status in TERMINAL for t in job.tasks()):
            if job.ended is None:
                job.ended = now()
        else:
            job.ended = None

    def _start_task(self, task: Task) -> None:
        job = task.step.job
        fleets = [f for q, f in self.associations if q == job.queue_id]
        workers = [w for w in self.workers.values() if w["fleetId"] in fleets]
        worker = workers[self._rr % len(workers)] if workers else None
        self._rr += 1
        session = Session(
            job,
            worker["fleetId"] if worker else fleets[0],
            worker["workerId"] if worker else f"worker-{'0' * 32}",
        )
        if worker:
            worker["status"] = "RUNNING"
            self.busy[worker["workerId"]] = self.busy.get(worker["workerId"], 0) + 1
        job.sessions.append(session)
        self.sessions[session.session_id] = session
        action = Action(session, task)
        session.actions.append(action)
        task.status = "RUNNING"
        task.attempts += 1
        task.running_since_tick = self.ticks
        task.latest_action = action.action_id
        task.started = task.started or action.started
        task.ended = None
        job.started = job.started or action.started
        group, stream = log_group(job), session.session_id
        self._log(
            group, stream, f"Session {session.session_id} started on worker {session.worker_id}"
        )
        runnable = [task.step.command] + [
            e[k] for e in task.step.environments for k in ("enter", "exit") if e[k]
        ]
        if self.execute and all(resolvable(argv) for argv in runnable):
            task.executing = True
            self.launches.append((task, action.action_id, group, stream))
            return
        self._log(
            group,
            stream,
            f"Running step {task.step.name!r} task {task.task_id} attempt {task.attempts} parameters {json.dumps(task.plain_parameters(), sort_keys=True)}",
        )
        self._log(group, stream, "command: " + json.dumps(task.step.command))
        for i in range(self.log_lines):
            self._log(group, stream, f"output line {i} of {task.task_id}")

    def finish_executed(self, task: Task, action_id: str, code: int) -> None:
        """A process the server ran for ``task`` ended with ``code``."""
        task.executing = False
        if task.status == "RUNNING" and task.latest_action == action_id:
            self._finish_task(task, code)
            self._finish_job(task.step.job)

    def _finish_task(self, task: Task, code: int | None = None) -> None:
        job = task.step.job
        if code is None:
            code = self._exit_code(task)
        self._end_action(task, "SUCCEEDED" if code == 0 else "FAILED", code)
        if code == 0:
            task.status = "SUCCEEDED"
            task.ended = now()
            return
        retries = job.max_retries if job.max_retries is not None else 5
        if task.failure_retries < retries:
            task.failure_retries += 1
            task.status = "READY"
            return
        task.status = "FAILED"
        task.ended = now()
        failed = sum(1 for t in job.tasks() if t.status == "FAILED")
        if job.max_failed is not None and failed >= max(job.max_failed, 1):
            for other in job.tasks():
                if other.status not in TERMINAL:
                    self.set_task(other, "CANCELED")

    def _end_action(self, task: Task, status: str, code: int | None) -> None:
        job = task.step.job
        for session in reversed(job.sessions):
            for action in session.actions:
                if action.action_id == task.latest_action and action.ended is None:
                    action.status = status
                    action.exit_code = code
                    action.ended = session.ended = now()
                    text = f"Task {task.task_id} ended: {status}" + (
                        f" exit code {code}" if code is not None else ""
                    )
                    self._log(log_group(job), session.session_id, text)
                    worker = self.workers.get(session.worker_id)
                    if worker:
                        left = self.busy[session.worker_id] = max(
                            0, self.busy.get(session.worker_id, 0) - 1
                        )
                        worker["status"] = "RUNNING" if left else "IDLE"
                    return

    def _exit_code(self, task: Task) -> int:
        job = task.step.job
        params = task.plain_parameters()
        for rule in self.fail_rules:
            if "job_name" in rule and not re.search(rule["job_name"], job.name):
                continue
            if "job_id" in rule and rule["job_id"] != job.job_id:
                continue
            if "step" in rule and rule["step"] != task.step.name:
                continue
            if "task" in rule and any(params.get(k) != str(v) for k, v in rule["task"].items()):
                continue
            if "times" in rule and task.attempts > rule["times"]:
                continue
            return int(rule.get("exit_code", 1))
        return 0

    def _log(self, group: str, stream: str, text: str) -> None:
        self.pending_logs.append((group, stream, int(now().timestamp() * 1000), text))


