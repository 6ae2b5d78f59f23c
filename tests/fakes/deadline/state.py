"""The fake farm: farms, queues, fleets, workers, jobs (expanded from real Open Job
Description templates with openjd-model), steps, tasks, sessions and session actions.

Time is a clock the test drives: :meth:`FakeDeadline.tick` moves every job one step
(finish what ran, unblock dependencies, start what is ready). Which task attempts fail
is decided by rules the test installs. Nothing here talks HTTP; ``server.py`` does.
Operation handlers are methods named like the API operation; they take the validated
request and return the response structure (validated again before it is sent).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

__all__ = ["ApiError", "FakeDeadline"]

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


def _page(
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


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
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
        return _drop_none(
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
        return _drop_none(
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
        return _drop_none(
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

    def definition(self, full: bool = False) -> dict[str, Any]:
        # GetSessionAction's definition requires the parameters; the summary's does not
        params = self.task.parameters if full else (self.task.parameters or None)
        return {
            "taskRun": _drop_none(
                {
                    "taskId": self.task.task_id,
                    "stepId": self.task.step.step_id,
                    "parameters": params,
                }
            )
        }

    def summary(self) -> dict[str, Any]:
        return _drop_none(
            {
                "sessionActionId": self.action_id,
                "status": self.status,
                "startedAt": self.started,
                "endedAt": self.ended,
                "progressPercent": 100.0 if self.ended else 0.0,
                "definition": self.definition(),
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
        if kind == "batch":
            base["farmId"] = self.farm_id
            base["queueId"] = self.queue_id
        if kind == "search":
            base["queueId"] = self.queue_id
            base["jobParameters"] = self.parameters or None
        return _drop_none(base)


class FakeDeadline:
    def __init__(self, *, workers: int = 4, log_lines: int = 3) -> None:
        self.farms: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.fleets: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self.associations: list[tuple[str, str]] = []  # (queue, fleet)
        self.jobs: dict[str, Job] = {}
        self.sessions: dict[str, Session] = {}
        self.busy: dict[str, int] = {}  # worker id -> sessions it runs now
        self.tokens: dict[tuple[str, str], str] = {}
        self.fail_rules: list[dict[str, Any]] = []
        self.log_lines = log_lines
        # execute mode: a started task runs its command for real (when it has no format
        # strings to resolve); the server launches what is queued here
        self.execute = False
        self.launches: list[tuple[Task, str, str, str]] = []  # task, action id, group, stream
        self.pending_logs: list[tuple[str, str, int, str]] = []  # group, stream, ms, text
        self.ticks = 0
        self._rr = 0
        self.templates: dict[str, Any] = {}  # decoded template cache by text
        farm = self.CreateFarm({"displayName": "fake farm"})["farmId"]
        queue = self.CreateQueue({"farmId": farm, "displayName": "fake queue"})["queueId"]
        fleet = self.add_fleet(farm, "fake fleet", workers)
        self.associations.append((queue, fleet))
        self.default = {"farmId": farm, "queueId": queue, "fleetId": fleet}

    # -- lookups ----------------------------------------------------------------
    def farm(self, farm_id: str) -> dict[str, Any]:
        if farm_id not in self.farms:
            raise not_found("farm", farm_id)
        return self.farms[farm_id]

    def queue(self, farm_id: str, queue_id: str) -> dict[str, Any]:
        self.farm(farm_id)
        q = self.queues.get(queue_id)
        if q is None or q["farmId"] != farm_id:
            raise not_found("queue", queue_id)
        return q

    def job(self, req: dict[str, Any]) -> Job:
        self.queue(req["farmId"], req["queueId"])
        job = self.jobs.get(req["jobId"])
        if job is None or job.queue_id != req["queueId"]:
            raise not_found("job", req["jobId"])
        return job

    def step(self, req: dict[str, Any]) -> Step:
        job = self.job(req)
        for s in job.steps:
            if s.step_id == req["stepId"]:
                return s
        raise not_found("step", req["stepId"])

    def task(self, req: dict[str, Any]) -> Task:
        for t in self.step(req).tasks:
            if t.task_id == req["taskId"]:
                return t
        raise not_found("task", req["taskId"])

    # -- farms, queues, fleets --------------------------------------------------
    def CreateFarm(self, req: dict[str, Any]) -> dict[str, Any]:
        farm_id = f"farm-{hexid()}"
        self.farms[farm_id] = {
            "farmId": farm_id,
            "displayName": req["displayName"],
            "createdAt": now(),
            "createdBy": USER,
        }
        return {"farmId": farm_id}

    def GetFarm(self, req: dict[str, Any]) -> dict[str, Any]:
        return {**self.farm(req["farmId"]), "costScaleFactor": 1.0}

    def ListFarms(self, req: dict[str, Any]) -> dict[str, Any]:
        items, extra = _page(list(self.farms.values()), req)
        return {"farms": items, **extra}

    def CreateQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        queue_id = f"queue-{hexid()}"
        self.queues[queue_id] = {
            "farmId": req["farmId"],
            "queueId": queue_id,
            "displayName": req["displayName"],
            "status": "IDLE",
            "defaultBudgetAction": "NONE",
            "createdAt": now(),
            "createdBy": USER,
        }
        return {"queueId": queue_id}

    def GetQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        return {**self.queue(req["farmId"], req["queueId"]), "roleArn": ROLE_ARN}

    def ListQueues(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        qs = [q for q in self.queues.values() if q["farmId"] == req["farmId"]]
        items, extra = _page(qs, req)
        return {"queues": items, **extra}

    def add_fleet(self, farm_id: str, name: str, workers: int) -> str:
        fleet_id = f"fleet-{hexid()}"
        self.fleets[fleet_id] = {
            "fleetId": fleet_id,
            "farmId": farm_id,
            "displayName": name,
            "status": "ACTIVE",
            "workerCount": workers,
            "minWorkerCount": 0,
            "maxWorkerCount": workers,
            "configuration": {
                "customerManaged": {
                    "mode": "NO_SCALING",
                    "workerCapabilities": {
                        "vCpuCount": {"min": 1},
                        "memoryMiB": {"min": 512},
                        "osFamily": "LINUX",
                        "cpuArchitectureType": "x86_64",
                    },
                }
            },
            "createdAt": now(),
            "createdBy": USER,
        }
        for _ in range(workers):
            wid = f"worker-{hexid()}"
            self.workers[wid] = {
                "farmId": farm_id,
                "fleetId": fleet_id,
                "workerId": wid,
                "status": "IDLE",
                "createdAt": now(),
                "createdBy": USER,
            }
        return fleet_id

    def GetFleet(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        fleet = self.fleets.get(req["fleetId"])
        if fleet is None or fleet["farmId"] != req["farmId"]:
            raise not_found("fleet", req["fleetId"])
        return {**fleet, "roleArn": ROLE_ARN}

    def ListFleets(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        fs = [f for f in self.fleets.values() if f["farmId"] == req["farmId"]]
        items, extra = _page(fs, req)
        return {"fleets": items, **extra}

    def ListQueueFleetAssociations(self, req: dict[str, Any]) -> dict[str, Any]:
        self.farm(req["farmId"])
        rows = [
            {
                "queueId": q,
                "fleetId": f,
                "status": "ACTIVE",
                "createdAt": self.queues[q]["createdAt"],
                "createdBy": USER,
            }
            for q, f in self.associations
            if self.queues[q]["farmId"] == req["farmId"]
            and req.get("queueId") in (None, q)
            and req.get("fleetId") in (None, f)
        ]
        items, extra = _page(rows, req)
        return {"queueFleetAssociations": items, **extra}

    def ListWorkers(self, req: dict[str, Any]) -> dict[str, Any]:
        self.GetFleet(req)
        ws = [w for w in self.workers.values() if w["fleetId"] == req["fleetId"]]
        items, extra = _page(ws, req)
        return {"workers": items, **extra}

    def ListQueueEnvironments(self, req: dict[str, Any]) -> dict[str, Any]:
        self.queue(req["farmId"], req["queueId"])
        return {"environments": []}

    def ListStorageProfilesForQueue(self, req: dict[str, Any]) -> dict[str, Any]:
        self.queue(req["farmId"], req["queueId"])
        return {"storageProfiles": []}

    def _credentials(self, req: dict[str, Any]) -> dict[str, Any]:
        self.queue(req["farmId"], req["queueId"])
        return {
            "credentials": {
                "accessKeyId": "ASIAFAKEQUEUEROLE",
                "secretAccessKey": "fake-secret",
                "sessionToken": "fake-session-token",
                "expiration": now() + dt.timedelta(hours=1),
            }
        }

    AssumeQueueRoleForUser = _credentials
    AssumeQueueRoleForRead = _credentials

    # -- jobs -------------------------------------------------------------------
    def CreateJob(self, req: dict[str, Any]) -> dict[str, Any]:
        queue = self.queue(req["farmId"], req["queueId"])
        token = req.get("clientToken")
        if token and (queue["queueId"], token) in self.tokens:
            return {"jobId": self.tokens[(queue["queueId"], token)]}
        if "template" not in req:
            raise invalid("template is required (sourceJobId is not supported by the fake)")
        job = self.build_job(req)
        self.jobs[job.job_id] = job
        if token:
            self.tokens[(queue["queueId"], token)] = job.job_id
        return {"jobId": job.job_id}

    def build_job(self, req: dict[str, Any]) -> Job:
        from openjd.model import StepParameterSpaceIterator

        text, kind = req["template"], req.get("templateType")
        if kind is None:
            raise invalid("templateType is required with template")
        key = (text, kind, json.dumps(req.get("parameters") or {}, sort_keys=True))
        cached = self.templates.get(key)
        if cached is None:
            cached = self.templates[key] = self._expand(text, kind, req.get("parameters") or {})
        model_job, resolved, declared = cached
        job = Job(req["farmId"], req["queueId"], req.get("nameOverride") or model_job.name)
        job.priority = req["priority"]
        job.description = req.get("descriptionOverride") or getattr(model_job, "description", None)
        job.max_failed = req.get("maxFailedTasksCount")
        job.max_retries = req.get("maxRetriesPerTask")
        job.max_workers = req.get("maxWorkerCount")
        job.storage_profile = req.get("storageProfileId")
        job.parameters = {
            k: {v.type.value.lower(): v.value} for k, v in resolved.items() if k in declared
        }
        job.target = req.get("targetTaskRunStatus", "READY")
        for mstep in model_job.steps:
            deps = [d.dependsOn for d in (mstep.dependencies or [])]
            on_run = mstep.script.actions.onRun
            command = [str(on_run.command), *[str(a) for a in (on_run.args or [])]]
            step = Step(job, mstep.name, deps, command)
            step.timeout = on_run.timeout
            for env in list(model_job.jobEnvironments or []) + list(mstep.stepEnvironments or []):
                step.env.update(
                    {str(k): str(v) for k, v in (getattr(env, "variables", None) or {}).items()}
                )
            initial = "SUSPENDED" if job.target == "SUSPENDED" else ("PENDING" if deps else "READY")
            for i, params in enumerate(StepParameterSpaceIterator(space=mstep.parameterSpace)):
                wire_params = {
                    k: {_task_kind(v.type.value): str(v.value)} for k, v in params.items()
                }
                step.tasks.append(Task(step, i, wire_params, initial))
            job.steps.append(step)
        return job

    def _expand(
        self, text: str, kind: str, wire_params: dict[str, Any]
    ) -> tuple[Any, Any, dict[str, str]]:
        """Parse, validate and expand a template with openjd-model (cached per text and
        parameters: a benchmark creates thousands of identical jobs)."""
        from openjd.model import (
            DecodeValidationError,
            create_job,
            decode_job_template,
            preprocess_job_parameters,
        )

        try:
            if kind == "JSON":
                obj = json.loads(text)
            else:
                import yaml  # openjd-model depends on PyYAML

                obj = yaml.safe_load(text)
        except Exception as exc:
            raise invalid(f"template is not valid {kind}: {exc}") from None
        if not isinstance(obj, dict):
            raise invalid("template must be a mapping")
        try:
            template = decode_job_template(template=obj, supported_extensions=["TASK_CHUNKING"])
        except (DecodeValidationError, ValueError) as exc:
            raise invalid(f"invalid job template: {exc}") from None
        declared = {p.name: p.type.value for p in (template.parameterDefinitions or [])}
        values: dict[str, str] = {}
        for name, wire in wire_params.items():
            if name not in declared:
                raise invalid(f"parameter {name} is not defined by the job template")
            (wire_type, value), *_ = wire.items()
            expected = declared[name].lower()
            if wire_type != expected:
                raise invalid(f"parameter {name} is of type {declared[name]}, got {wire_type}")
            values[name] = value
        try:
            resolved = preprocess_job_parameters(
                job_template=template,
                job_parameter_values=values,
                job_template_dir=Path("/"),
                current_working_dir=Path("/"),
            )
            model_job = create_job(job_template=template, job_parameter_values=resolved)
        except (DecodeValidationError, ValueError) as exc:
            raise invalid(f"job parameters: {exc}") from None
        return model_job, resolved, declared

    def GetJob(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.job(req)
        job.observe()
        return job.record("get")

    def BatchGetJob(self, req: dict[str, Any]) -> dict[str, Any]:
        jobs, errors = [], []
        for ident in req["identifiers"]:
            try:
                job = self.job(ident)
            except ApiError as exc:
                errors.append({**ident, "code": exc.code, "message": exc.message})
                continue
            job.observe()
            jobs.append(job.record("batch"))
        return {"jobs": jobs, "errors": errors}

    def ListJobs(self, req: dict[str, Any]) -> dict[str, Any]:
        self.queue(req["farmId"], req["queueId"])
        js = [j for j in self.jobs.values() if j.queue_id == req["queueId"]]
        items, extra = _page(js, req)
        for j in items:
            j.observe()
        return {"jobs": [j.record("list") for j in items], **extra}

    def SearchJobs(self, req: dict[str, Any]) -> dict[str, Any]:
        for q in req["queueIds"]:
            self.queue(req["farmId"], q)
        js = [j for j in self.jobs.values() if j.queue_id in req["queueIds"]]
        if "filterExpressions" in req:
            js = [j for j in js if _match_group(j, req["filterExpressions"])]
        for sort in reversed(req.get("sortExpressions") or []):
            if "fieldSort" not in sort:
                raise invalid("only fieldSort is supported by the fake")
            field = sort["fieldSort"]["name"]
            js.sort(
                key=lambda j, f=field: _field(j, f),
                reverse=sort["fieldSort"]["sortOrder"] == "DESCENDING",
            )
        # the service answers at most 10,000 results per query (itemOffset <= 10,000)
        total = min(len(js), 10_000)
        offset = req["itemOffset"]
        size = req.get("pageSize") or 100
        items = js[offset : min(offset + size, total)]
        out: dict[str, Any] = {"jobs": [j.record("search") for j in items], "totalResults": total}
        if offset + size < total:
            out["nextItemOffset"] = offset + size
        return out

    def _update(self, job: Job, req: dict[str, Any]) -> None:
        if job.lifecycle == "ARCHIVED":
            raise ApiError(
                "ConflictException", f"job {job.job_id} is archived", reason="STATUS_CONFLICT",
                resourceId=job.job_id, resourceType="job",
            )  # fmt: skip
        for key, attr in (
            ("priority", "priority"), ("maxFailedTasksCount", "max_failed"),
            ("maxRetriesPerTask", "max_retries"), ("maxWorkerCount", "max_workers"),
            ("name", "name"), ("description", "description"),
        ):  # fmt: skip
            if key in req:
                setattr(job, attr, req[key])
        if "targetTaskRunStatus" in req:
            self.retarget(job, req["targetTaskRunStatus"])
        if req.get("lifecycleStatus") == "ARCHIVED":
            if any(t.status not in TERMINAL for t in job.tasks()):
                raise ApiError(
                    "ConflictException", "only a finished job can be archived", reason="STATUS_CONFLICT",
                    resourceId=job.job_id, resourceType="job",
                )  # fmt: skip
            job.lifecycle = "ARCHIVED"
        job.updated = now()

    def UpdateJob(self, req: dict[str, Any]) -> dict[str, Any]:
        self._update(self.job(req), req)
        return {}

    def BatchUpdateJob(self, req: dict[str, Any]) -> dict[str, Any]:
        errors = []
        for item in req["jobs"]:
            try:
                self._update(self.job(item), item)
            except ApiError as exc:
                code = exc.code if exc.code in _BATCH_UPDATE_CODES else "ValidationException"
                errors.append(
                    {k: item[k] for k in ("farmId", "queueId", "jobId")}
                    | {"code": code, "message": exc.message}
                )
        return {"errors": errors}

    def retarget(self, job: Job, target: str) -> None:
        job.target = target
        for task in job.tasks():
            self.set_task(task, target)
        self._finish_job(job)

    def set_task(self, task: Task, target: str) -> None:
        t = now()
        if target == "PENDING" or (
            target == "READY" and task.status in ("FAILED", "CANCELED", "SUCCEEDED")
        ):
            # requeue: run it again from scratch
            if task.status == "RUNNING":
                self._end_action(task, "CANCELED", None)
            task.status = "PENDING" if task.step.depends_on else "READY"
            task.failure_retries = 0
            task.ended = None
            task.step.job.ended = None
        elif target == "READY":
            if task.status == "SUSPENDED":
                task.status = "PENDING" if task.step.depends_on else "READY"
        elif task.status not in TERMINAL:
            if task.status == "RUNNING":
                self._end_action(task, "CANCELED" if target != "SUSPENDED" else "INTERRUPTED", None)
            task.status = target
            if target in TERMINAL:
                task.ended = t
        task.updated = t

    # -- steps, tasks, sessions -------------------------------------------------
    def ListSteps(self, req: dict[str, Any]) -> dict[str, Any]:
        items, extra = _page(self.job(req).steps, req)
        return {"steps": [s.summary() for s in items], **extra}

    def GetStep(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.step(req).summary()

    def ListTasks(self, req: dict[str, Any]) -> dict[str, Any]:
        items, extra = _page(self.step(req).tasks, req)
        return {"tasks": [t.summary() for t in items], **extra}

    def GetTask(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.task(req).summary()

    def UpdateTask(self, req: dict[str, Any]) -> dict[str, Any]:
        task = self.task(req)
        self.set_task(task, req["targetRunStatus"])
        task.target = req["targetRunStatus"]
        self._finish_job(task.step.job)
        return {}

    def ListSessions(self, req: dict[str, Any]) -> dict[str, Any]:
        items, extra = _page(self.job(req).sessions, req)
        return {"sessions": [s.summary() for s in items], **extra}

    def GetSession(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.job(req)
        s = self.sessions.get(req["sessionId"])
        if s is None or s.job is not job:
            raise not_found("session", req["sessionId"])
        return {
            **s.summary(),
            "log": {
                "logDriver": "awslogs",
                "options": {"logGroupName": log_group(job), "logStreamName": s.session_id},
            },
        }

    def ListSessionActions(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.job(req)
        actions = [a for s in job.sessions for a in s.actions]
        if "sessionId" in req:
            actions = [a for a in actions if a.session.session_id == req["sessionId"]]
        if "taskId" in req:
            actions = [a for a in actions if a.task.task_id == req["taskId"]]
        items, extra = _page(actions, req)
        return {"sessionActions": [a.summary() for a in items], **extra}

    def GetSessionAction(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.job(req)
        for s in job.sessions:
            for a in s.actions:
                if a.action_id == req["sessionActionId"]:
                    return _drop_none(
                        {
                            **a.summary(),
                            "definition": a.definition(full=True),
                            "sessionId": s.session_id,
                            "processExitCode": a.exit_code,
                        }
                    )
        raise not_found("sessionAction", req["sessionActionId"])

    # -- the clock --------------------------------------------------------------
    def tick(self) -> dict[str, int]:
        """One step of simulated time for every job."""
        self.ticks += 1
        changed = 0
        for job in list(self.jobs.values()):
            if job.lifecycle == "CREATE_IN_PROGRESS":
                job.lifecycle = "CREATE_COMPLETE"
                changed += 1
                continue
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
        if self.execute and not any("{{" in part for part in task.step.command):
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


def log_group(job: Job) -> str:
    return f"/aws/deadline/{job.farm_id}/{job.queue_id}"


def _task_kind(value_type: str) -> str:
    return {"INT": "int", "FLOAT": "float", "STRING": "string", "PATH": "path"}.get(
        value_type, "chunkInt"
    )


_BATCH_UPDATE_CODES = {
    "ConflictException", "InternalServerErrorException", "ResourceNotFoundException",
    "ValidationException", "AccessDeniedException", "ThrottlingException",
}  # fmt: skip

_DATE_FIELDS = {
    "CREATED_AT": "created",
    "UPDATED_AT": "updated",
    "STARTED_AT": "started",
    "ENDED_AT": "ended",
}


def _field(job: Job, name: str) -> Any:
    if name in _DATE_FIELDS:
        value = getattr(job, _DATE_FIELDS[name])
        return value or dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    if name == "TASK_RUN_STATUS":
        return aggregate(job.counts())
    if name == "NAME":
        return job.name
    if name == "PRIORITY":
        return job.priority
    if name == "CREATED_BY":
        return USER
    if name == "JOB_ID":
        return job.job_id
    if name == "LIFECYCLE_STATUS":
        return job.lifecycle
    raise invalid(f"unknown search field {name!r}")


def _compare(a: Any, op: str, b: Any) -> bool:
    if op in ("EQUAL", "ANY_EQUALS"):
        return bool(a == b)
    if op in ("NOT_EQUAL", "ALL_NOT_EQUALS"):
        return bool(a != b)
    if op == "GREATER_THAN_EQUAL_TO":
        return bool(a >= b)
    if op == "GREATER_THAN":
        return bool(a > b)
    if op == "LESS_THAN_EQUAL_TO":
        return bool(a <= b)
    return bool(a < b)


def _match_group(job: Job, group: dict[str, Any]) -> bool:
    results = (_match_one(job, f) for f in group["filters"])
    return all(results) if group["operator"] == "AND" else any(results)


def _match_one(job: Job, f: dict[str, Any]) -> bool:
    if "groupFilter" in f:
        return _match_group(job, f["groupFilter"])
    if "dateTimeFilter" in f:
        e = f["dateTimeFilter"]
        if e["name"] not in _DATE_FIELDS:
            raise invalid(f"unknown date-time field {e['name']!r}")
        value = getattr(job, _DATE_FIELDS[e["name"]])
        return value is not None and _compare(value, e["operator"], e["dateTime"])
    if "stringFilter" in f:
        e = f["stringFilter"]
        value = _field(job, e["name"])
        return _compare(str(value), e["operator"], e["value"])
    if "stringListFilter" in f:
        e = f["stringListFilter"]
        value = str(_field(job, e["name"]))
        if e["operator"] in ("ANY_EQUALS", "EQUAL"):
            return value in e["values"]
        return value not in e["values"]
    if "searchTermFilter" in f:
        term = f["searchTermFilter"]["searchTerm"]
        return term.lower() in job.name.lower()
    if "parameterFilter" in f:
        e = f["parameterFilter"]
        wire = job.parameters.get(e["name"])
        return wire is not None and _compare(next(iter(wire.values())), e["operator"], e["value"])
    raise invalid("empty filter expression")
