"""The fake's records: jobs, steps, tasks, sessions and session actions, and the shared
helpers of its handlers (errors as the API returns them, pages, ids, time)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ACTIVE", "PRECEDENCE", "ROLE_ARN", "TERMINAL", "USER", "Action", "ApiError", "Job",
    "Session", "Step", "Task", "aggregate", "drop_none", "hexid", "invalid", "log_group",
    "not_found", "now", "page", "task_kind",
]  # fmt: skip

USER = "aiofarm-fake-user"
ROLE_ARN = "arn:aws:iam::123456789012:role/fake-deadline-role"
ACTIVE = (
    "READY",
    "ASSIGNED",
    "STARTING",
    "SCHEDULED",
    "RUNNING",
    "INTERRUPTING",
    "PENDING",
    "SUSPENDED",
)
TERMINAL = ("SUCCEEDED", "FAILED", "CANCELED", "NOT_COMPATIBLE")
# aggregate precedence: the first status present among a job's tasks is the job's status
PRECEDENCE = (
    "RUNNING", "INTERRUPTING", "STARTING", "ASSIGNED", "SCHEDULED", "READY", "PENDING",
    "SUSPENDED", "FAILED", "CANCELED", "NOT_COMPATIBLE", "SUCCEEDED",
)  # fmt: skip


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def hexid() -> str:
    return uuid.uuid4().hex


class ApiError(Exception):
    """An error the API returns; ``fields`` are the error shape's extra members."""

    def __init__(self, code: str, message: str, **fields: Any) -> None:
        self.code = code
        self.message = message
        self.fields = fields
        super().__init__(f"{code}: {message}")


def invalid(message: str) -> ApiError:
    return ApiError("ValidationException", message, reason="FIELD_VALIDATION_FAILED")


def not_found(kind: str, rid: str) -> ApiError:
    return ApiError(
        "ResourceNotFoundException", f"{kind} {rid} not found", resourceId=rid, resourceType=kind
    )


def page(
    items: list[Any], req: dict[str, Any], default: int = 100
) -> tuple[list[Any], dict[str, Any]]:
    start = 0
    token = req.get("nextToken")
    if token:
        try:
            start = int(token)
        except ValueError:
            raise invalid(f"bad nextToken {token!r}") from None
    size = req.get("maxResults") or default
    chunk = items[start : start + size]
    extra: dict[str, Any] = {}
    if start + size < len(items):
        extra["nextToken"] = str(start + size)
    return chunk, extra


def drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


class Task:
    __slots__ = (
        "attempts",
        "created",
        "ended",
        "executing",
        "failure_retries",
        "index",
        "latest_action",
        "parameters",
        "running_since_tick",
        "started",
        "status",
        "step",
        "target",
        "task_id",
        "updated",
    )  # fmt: skip

    def __init__(self, step: Step, index: int, parameters: dict[str, Any], status: str) -> None:
        self.step = step
        self.index = index
        self.task_id = f"task-{step.hex}-{index}"
        self.parameters = parameters  # wire form: {"Frame": {"int": "1"}}
        self.status = status
        self.target: str | None = None
        self.failure_retries = 0
        self.attempts = 0
        self.latest_action: str | None = None
        self.started: dt.datetime | None = None
        self.ended: dt.datetime | None = None
        self.created = now()
        self.updated: dt.datetime | None = None
        self.running_since_tick = -1
        self.executing = False

    def plain_parameters(self) -> dict[str, str]:
        return {k: next(iter(v.values())) for k, v in self.parameters.items()}

    def summary(self) -> dict[str, Any]:
        return drop_none(
            {
                "taskId": self.task_id,
                "createdAt": self.created,
                "createdBy": USER,
                "runStatus": self.status,
                "targetRunStatus": self.target,
                "failureRetryCount": self.failure_retries,
                "startedAt": self.started,
                "endedAt": self.ended,
                "updatedAt": self.updated,
                "updatedBy": USER if self.updated else None,
                "latestSessionActionId": self.latest_action,
                "parameters": self.parameters or None,
            }
        )


class Step:
    def __init__(self, job: Job, name: str, depends_on: list[str], command: list[str]) -> None:
        self.job = job
        self.env: dict[str, str] = {}
        #: the job's then the step's environments, in entering order, each
        #: {"name", "variables", "enter": argv | None, "exit": argv | None}
        self.environments: list[dict[str, Any]] = []
        self.timeout: int | None = None
        self.hex = hexid()
        self.step_id = f"step-{self.hex}"
        self.name = name
        self.depends_on = depends_on
        self.command = command
        self.tasks: list[Task] = []
        self.created = now()

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tasks:
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    def summary(self) -> dict[str, Any]:
        counts = self.counts()
        started = [t.started for t in self.tasks if t.started]
        ended = [t.ended for t in self.tasks if t.ended]
        done = all(t.status in TERMINAL for t in self.tasks)
        deps_done = sum(1 for d in self.depends_on if self.job.step_by_name(d).succeeded())
        return drop_none(
            {
                "stepId": self.step_id,
                "name": self.name,
                "lifecycleStatus": "CREATE_COMPLETE",
                "taskRunStatus": aggregate(counts),
                "taskRunStatusCounts": counts,
                "taskFailureRetryCount": sum(t.failure_retries for t in self.tasks),
                "createdAt": self.created,
                "createdBy": USER,
                "startedAt": min(started) if started else None,
                "endedAt": max(ended) if done and ended else None,
                "dependencyCounts": {
                    "dependenciesResolved": deps_done,
                    "dependenciesUnresolved": len(self.depends_on) - deps_done,
                    "consumersResolved": 0,
                    "consumersUnresolved": 0,
                },
            }
        )

    def succeeded(self) -> bool:
        return all(t.status == "SUCCEEDED" for t in self.tasks)


def aggregate(counts: dict[str, int]) -> str:
    for status in PRECEDENCE:
        if counts.get(status):
            return status
    return "SUCCEEDED"  # a job with no tasks has nothing left to do


class Session:
    def __init__(self, job: Job, fleet_id: str, worker_id: str) -> None:
        self.hex = hexid()
        self.session_id = f"session-{self.hex}"
        self.job = job
        self.fleet_id = fleet_id
        self.worker_id = worker_id
        self.started = now()
        self.ended: dt.datetime | None = None
        self.actions: list[Action] = []

    def summary(self) -> dict[str, Any]:
        return drop_none(
            {
                "sessionId": self.session_id,
                "fleetId": self.fleet_id,
                "workerId": self.worker_id,
                "startedAt": self.started,
                "lifecycleStatus": "ENDED" if self.ended else "STARTED",
                "endedAt": self.ended,
            }
        )


class Action:
    def __init__(self, session: Session, task: Task) -> None:
        self.session = session
        self.action_id = f"sessionaction-{session.hex}-{len(session.actions)}"
        self.task = task
        self.status = "RUNNING"
        self.started = now()
        self.ended: dt.datetime | None = None
        self.exit_code: int | None = None
        # what the worker reports from the action's openjd_progress / openjd_status /
        # openjd_fail lines (UpdateWorkerSchedule's progressPercent / progressMessage)
        self.progress: float | None = None
        self.message: str | None = None

    def definition(self, full: bool = False) -> dict[str, Any]:
        # GetSessionAction's definition requires the parameters; the summary's does not
        params = self.task.parameters if full else (self.task.parameters or None)
        return {
            "taskRun": drop_none(
                {
                    "taskId": self.task.task_id,
                    "stepId": self.task.step.step_id,
                    "parameters": params,
                }
            )
        }

    def summary(self) -> dict[str, Any]:
        return drop_none(
            {
                "sessionActionId": self.action_id,
                "status": self.status,
                "startedAt": self.started,
                "endedAt": self.ended,
                "progressPercent": self.percent(),
                "definition": self.definition(),
            }
        )

    def percent(self) -> float:
        if self.status == "SUCCEEDED":
            return 100.0
        if self.progress is not None:
            return self.progress
        return 100.0 if self.ended else 0.0

    def record(self) -> dict[str, Any]:
        """GetSessionAction's answer (BatchGetSessionAction's, less the ids)."""
        return drop_none(
            {
                **self.summary(),
                "definition": self.definition(full=True),
                "sessionId": self.session.session_id,
                "processExitCode": self.exit_code,
                "progressMessage": self.message,
            }
        )


class Job:
    def __init__(self, farm_id: str, queue_id: str, name: str) -> None:
        self.job_id = f"job-{hexid()}"
        self.farm_id = farm_id
        self.queue_id = queue_id
        self.name = name
        self.description: str | None = None
        self.priority = 50
        self.created = now()
        self.updated: dt.datetime | None = None
        self.lifecycle = "CREATE_IN_PROGRESS"
        self.observed = False
        self.target = "READY"
        self.max_failed: int | None = None
        self.max_retries: int | None = None
        self.max_workers: int | None = None
        self.parameters: dict[str, Any] = {}
        self.steps: list[Step] = []
        self.sessions: list[Session] = []
        self.started: dt.datetime | None = None
        self.ended: dt.datetime | None = None
        self.storage_profile: str | None = None
        self.attachments: dict[str, Any] | None = None

    def step_by_name(self, name: str) -> Step:
        return next(s for s in self.steps if s.name == name)

    def tasks(self) -> Iterable[Task]:
        for s in self.steps:
            yield from s.tasks

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for t in self.tasks():
            counts[t.status] = counts.get(t.status, 0) + 1
        return counts

    def observe(self) -> None:
        # the first read of a new job sees CREATE_IN_PROGRESS, later reads CREATE_COMPLETE:
        # clients must wait for creation to finish, and every test exercises that path
        if self.lifecycle == "CREATE_IN_PROGRESS":
            if self.observed:
                self.lifecycle = "CREATE_COMPLETE"
            self.observed = True

    def record(self, kind: str = "get") -> dict[str, Any]:
        counts = self.counts()
        status = aggregate(counts)
        base: dict[str, Any] = {
            "jobId": self.job_id,
            "name": self.name,
            "lifecycleStatus": self.lifecycle,
            "lifecycleStatusMessage": "",
            "priority": self.priority,
            "createdAt": self.created,
            "createdBy": USER,
            "updatedAt": self.updated,
            "updatedBy": USER if self.updated else None,
            "startedAt": self.started,
            "endedAt": self.ended if status in TERMINAL else None,
            "taskRunStatus": status,
            "targetTaskRunStatus": self.target,
            "taskRunStatusCounts": counts,
            "taskFailureRetryCount": sum(t.failure_retries for t in self.tasks()),
            "maxFailedTasksCount": self.max_failed,
            "maxRetriesPerTask": self.max_retries,
            "maxWorkerCount": self.max_workers,
        }
        if kind in ("get", "batch"):
            base["parameters"] = self.parameters or None
            base["description"] = self.description
            base["storageProfileId"] = self.storage_profile
            base["attachments"] = self.attachments
        if kind == "batch":
            base["farmId"] = self.farm_id
            base["queueId"] = self.queue_id
        if kind == "search":
            base["queueId"] = self.queue_id
            base["jobParameters"] = self.parameters or None
        return drop_none(base)


def log_group(job: Job) -> str:
    return f"/aws/deadline/{job.farm_id}/{job.queue_id}"


def task_kind(value_type: str) -> str:
    return {"INT": "int", "FLOAT": "float", "STRING": "string", "PATH": "path"}.get(
        value_type, "chunkInt"
    )


