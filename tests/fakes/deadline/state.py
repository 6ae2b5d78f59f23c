"""The fake farm: farms, queues, fleets, workers, jobs (expanded from real Open Job
Description templates with openjd-model), steps, tasks, sessions and session actions.

Time is a clock the test drives: :meth:`FakeDeadline.tick` moves every job one step
(finish what ran, unblock dependencies, start what is ready). Which task attempts fail
is decided by rules the test installs. Nothing here talks HTTP; ``server.py`` does.
Operation handlers are methods named like the API operation; they take the validated
request and return the response structure (validated again before it is sent).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .clock import Clock
from .farms import Farms
from .records import (
    TERMINAL,
    ApiError,
    Job,
    Session,
    Step,
    Task,
    invalid,
    log_group,
    not_found,
    now,
    page,
    task_kind,
)  # fmt: skip
from .search import match_group, sort_key

__all__ = ["ApiError", "FakeDeadline"]


class FakeDeadline(Farms, Clock):
    def __init__(self, *, workers: int = 4, log_lines: int = 3) -> None:
        self.farms: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.fleets: dict[str, dict[str, Any]] = {}
        self.workers: dict[str, dict[str, Any]] = {}
        self.associations: list[tuple[str, str]] = []  # (queue, fleet)
        self.jobs: dict[str, Job] = {}
        self.queue_settings: dict[str, dict[str, Any]] = {}
        self.storage_profiles: dict[str, dict[str, Any]] = {}
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
        self._initial = (
            set(self.farms), set(self.queues), set(self.fleets), set(self.workers),
            list(self.associations),
        )  # fmt: skip

    def reset_farms(self, attachments: dict[str, str] | None) -> None:
        """Back to the seeded farm, queue and fleet (``attachments``: the default queue's
        jobAttachmentSettings, None for none); whatever a test added is gone."""
        farms, queues, fleets, workers, associations = self._initial
        for table, keep in ((self.farms, farms), (self.queues, queues),
                            (self.fleets, fleets), (self.workers, workers)):  # fmt: skip
            for key in set(table) - keep:
                del table[key]
        self.associations[:] = associations
        self.storage_profiles.clear()
        self.queue_settings.clear()
        if attachments is not None:
            self.queue_settings[self.default["queueId"]] = {"jobAttachmentSettings": attachments}

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
        job.attachments = req.get("attachments")
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
                variables = {str(k): str(v) for k, v in (getattr(env, "variables", None) or {}).items()}
                step.env.update(variables)
                actions = env.script.actions if env.script is not None else None
                step.environments.append(
                    {
                        "name": str(env.name),
                        "variables": variables,
                        "enter": _argv(actions.onEnter if actions else None),
                        "exit": _argv(actions.onExit if actions else None),
                    }
                )
            initial = "SUSPENDED" if job.target == "SUSPENDED" else ("PENDING" if deps else "READY")
            for i, params in enumerate(StepParameterSpaceIterator(space=mstep.parameterSpace)):
                wire_params = {
                    k: {task_kind(v.type.value): str(v.value)} for k, v in params.items()
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
        items, extra = page(js, req)
        for j in items:
            j.observe()
        return {"jobs": [j.record("list") for j in items], **extra}

    def SearchJobs(self, req: dict[str, Any]) -> dict[str, Any]:
        for q in req["queueIds"]:
            self.queue(req["farmId"], q)
        js = [j for j in self.jobs.values() if j.queue_id in req["queueIds"]]
        if "filterExpressions" in req:
            js = [j for j in js if match_group(j, req["filterExpressions"])]
        for sort in reversed(req.get("sortExpressions") or []):
            if "fieldSort" not in sort:
                raise invalid("only fieldSort is supported by the fake")
            field = sort["fieldSort"]["name"]
            js.sort(
                key=lambda j, f=field: sort_key(j, f),
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
        # READY resumes and reruns what failed or was canceled; only PENDING (requeue)
        # reruns what succeeded
        if target == "PENDING" or (target == "READY" and task.status in ("FAILED", "CANCELED")):
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
        items, extra = page(self.job(req).steps, req)
        return {"steps": [s.summary() for s in items], **extra}

    def GetStep(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.step(req).summary()

    def ListTasks(self, req: dict[str, Any]) -> dict[str, Any]:
        items, extra = page(self.step(req).tasks, req)
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
        items, extra = page(self.job(req).sessions, req)
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
        items, extra = page(actions, req)
        return {"sessionActions": [a.summary() for a in items], **extra}

    def GetSessionAction(self, req: dict[str, Any]) -> dict[str, Any]:
        job = self.job(req)
        for s in job.sessions:
            for a in s.actions:
                if a.action_id == req["sessionActionId"]:
                    return a.record()
        raise not_found("sessionAction", req["sessionActionId"])

    def BatchGetSessionAction(self, req: dict[str, Any]) -> dict[str, Any]:
        found, errors = [], []
        for ident in req["identifiers"]:
            try:
                record = self.GetSessionAction(ident)
            except ApiError as exc:
                errors.append({**ident, "code": exc.code, "message": exc.message})
                continue
            ids = {k: ident[k] for k in ("farmId", "queueId", "jobId")}
            found.append({**ids, **record})
        return {"sessionActions": found, "errors": errors}


_BATCH_UPDATE_CODES = {
    "ConflictException", "InternalServerErrorException", "ResourceNotFoundException",
    "ValidationException", "AccessDeniedException", "ThrottlingException",
}  # fmt: skip


def _argv(action: Any) -> list[str] | None:
    if action is None:
        return None
    return [str(action.command), *[str(a) for a in (action.args or [])]]
