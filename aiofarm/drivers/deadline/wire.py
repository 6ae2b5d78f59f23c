"""Pure conversions between aiofarm's models and Deadline Cloud's wire shapes.

No I/O here: every function takes and returns plain data, so the mapping is tested
without a service.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any

from ...errors import InvalidSpec, UnsupportedError
from ...models import Job, JobSpec, JobStatus, LogLine, Pool, StatusTransition, Task, Worker

__all__ = [
    "FARM_RE",
    "JOB_RE",
    "QUEUE_RE",
    "command_template",
    "create_job_request",
    "decode_token",
    "encode_token",
    "history",
    "job_from_wire",
    "job_status",
    "log_line",
    "parse_time",
    "pool_from_wire",
    "status_filter_values",
    "task_from_wire",
    "typed_parameters",
    "worker_from_wire",
]

DRIVER = "deadline"
FARM_RE = re.compile(r"^farm-[0-9a-f]{32}$")
QUEUE_RE = re.compile(r"^queue-[0-9a-f]{32}$")
JOB_RE = re.compile(r"^job-[0-9a-f]{32}$")

#: Deadline task run status -> aiofarm status
_STATUS = {
    "PENDING": JobStatus.PENDING,
    "READY": JobStatus.PENDING,
    "ASSIGNED": JobStatus.PENDING,
    "STARTING": JobStatus.PENDING,
    "SCHEDULED": JobStatus.PENDING,
    "RUNNING": JobStatus.RUNNING,
    "INTERRUPTING": JobStatus.RUNNING,
    "SUSPENDED": JobStatus.SUSPENDED,
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
    "NOT_COMPATIBLE": JobStatus.FAILED,  # no fleet can ever run it: it will not finish otherwise
    "CANCELED": JobStatus.CANCELED,
}


def job_status(task_run_status: str | None, lifecycle: str | None = None) -> JobStatus:
    if lifecycle == "CREATE_FAILED":
        return JobStatus.FAILED
    if lifecycle == "CREATE_IN_PROGRESS" or task_run_status is None:
        # a job being created is not finished, whatever its tasks say; one submitted
        # suspended says so from the start
        return JobStatus.SUSPENDED if task_run_status == "SUSPENDED" else JobStatus.PENDING
    return _STATUS.get(task_run_status, JobStatus.UNKNOWN)


def status_filter_values(statuses: frozenset[JobStatus]) -> list[str]:
    """The Deadline task run statuses that map onto any of ``statuses``."""
    return sorted(k for k, v in _STATUS.items() if v in statuses)


def parse_time(value: Any) -> datetime:
    """A timestamp as the service sends it: ISO 8601 text, read by the standard library
    (far faster than dateutil, and the poller reads up to four per job record), or
    whatever else botocore understands. Never naive."""
    if isinstance(value, str):
        t: datetime | None = None
        try:
            t = datetime.fromisoformat(value)  # Python 3.11+ reads "Z" and any fraction
        except ValueError:
            if value.endswith("Z"):  # Python 3.10
                with contextlib.suppress(ValueError):
                    t = datetime.fromisoformat(value[:-1] + "+00:00")
        if t is not None:
            return t if t.tzinfo else t.replace(tzinfo=timezone.utc)
    from botocore.utils import parse_timestamp  # type: ignore[import-untyped]

    result: datetime = parse_timestamp(value)
    return result if result.tzinfo else result.replace(tzinfo=timezone.utc)


def _utc(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        t = parse_time(value)
        if t.tzinfo is timezone.utc:
            return t
        value = t
    if isinstance(value, datetime):
        return (
            value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
        )
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    return None


def _plain(item: Mapping[str, Any]) -> Mapping[str, Any]:
    if "ResponseMetadata" in item:
        item = {k: v for k, v in item.items() if k != "ResponseMetadata"}
    # a record parsed from a response belongs to nobody else: wrapped, not copied
    # (Job would copy any other mapping)
    return MappingProxyType(item)


def job_from_wire(item: Mapping[str, Any], queue_id: str | None = None) -> Job:
    """A Job from a GetJob / BatchGetJob / ListJobs / SearchJobs record."""
    lifecycle = item.get("lifecycleStatus")
    status = job_status(item.get("taskRunStatus"), lifecycle)
    counts: dict[str, int] = {}
    for k, n in (item.get("taskRunStatusCounts") or {}).items():
        if n:
            key = _STATUS.get(k, JobStatus.UNKNOWN).value
            counts[key] = counts.get(key, 0) + int(n)
    description, meta = split_description(item.get("description"))
    reason = meta.get("note")
    if reason is not None:
        reason = str(reason)
    elif meta.get("hold") and status is JobStatus.SUSPENDED:
        reason = f"held until {', '.join(meta.get('depends') or ())} succeeded"
    elif lifecycle == "CREATE_FAILED":
        reason = item.get("lifecycleStatusMessage") or "job creation failed"
    elif item.get("taskRunStatus") == "NOT_COMPATIBLE":
        reason = "no fleet of the queue is compatible with the job's host requirements"
    elif status is JobStatus.FAILED:
        failed = (item.get("taskRunStatusCounts") or {}).get("FAILED", 0)
        reason = f"{failed} task(s) failed"
    return Job(
        id=item["jobId"],
        status=status,
        driver=DRIVER,
        name=item.get("name"),
        owner=item.get("createdBy"),
        pool=item.get("queueId") or queue_id,
        description=description,
        tags=tuple(meta.get("tags") or ()),
        labels=_labels(meta.get("labels")),
        depends_on=tuple(meta.get("depends") or ()),
        # every task of a succeeded job exited 0; a failed job's codes are per task
        exit_code=0 if status is JobStatus.SUCCEEDED else None,
        priority=int(item.get("priority", 50)),
        created_at=_utc(item.get("createdAt")),
        started_at=_utc(item.get("startedAt")),
        finished_at=_utc(item.get("endedAt")) if status.is_finished else None,
        reason=reason,
        task_counts=counts,
        raw=_plain(item),
    )


def _param_value(wire: Mapping[str, Any]) -> Any:
    if not wire:
        return None
    (kind, value), *_ = wire.items()
    if kind == "int":
        return int(value)
    if kind == "float":
        return float(value)
    return value


def task_from_wire(
    job_id: str,
    step_name: str,
    item: Mapping[str, Any],
    *,
    action: Mapping[str, Any] | None = None,
    log_group: str | None = None,
) -> Task:
    """A Task from a ListTasks record and (if it ran) its latest session action."""
    status = _STATUS.get(item.get("runStatus", ""), JobStatus.UNKNOWN)
    session_id = action.get("sessionId") if action else None
    started = item.get("startedAt") is not None or action is not None
    attempts = int(item.get("failureRetryCount") or 0) + (1 if started else 0)
    exit_code = action.get("processExitCode") if action else None
    # what the worker last reported from the action's openjd_progress / openjd_status
    # lines (after a failure: its openjd_fail message)
    progress = action.get("progressPercent") if action else None
    message = (action.get("progressMessage") or None) if action else None
    reason = None
    if status is JobStatus.FAILED:
        reason = f"exit code {exit_code}" if exit_code is not None else "task failed"
        if message:
            reason = f"{message} ({reason})"
    raw = dict(item)
    if action:
        raw["latestSessionAction"] = dict(_plain(action))
    return Task(
        id=item["taskId"],
        job_id=job_id,
        status=status,
        step=step_name,
        parameters={k: _param_value(v) for k, v in (item.get("parameters") or {}).items()},
        attempts=attempts,
        exit_code=exit_code,
        started_at=_utc(item.get("startedAt")),
        finished_at=_utc(item.get("endedAt")),
        reason=reason,
        log=f"{log_group}/{session_id}" if session_id and log_group else session_id,
        raw=raw,
        progress=float(progress) if progress is not None else None,
        status_message=message,
    )


def history(
    job: Job, runs: Sequence[Mapping[str, Any]], failed: Mapping[str, Any] | None
) -> tuple[StatusTransition, ...]:
    """A job's status transitions from its timestamps and its task-run session actions
    (``runs``, oldest first; ``failed``: GetSessionAction of the failed attempt that
    decided the outcome, if any)."""
    out: list[StatusTransition] = []
    if job.created_at is not None:
        out.append(StatusTransition(JobStatus.PENDING, job.created_at, "submitted"))
    first = next((a for a in runs if a.get("startedAt")), None)
    started = _utc(first["startedAt"]) if first else job.started_at
    if started is not None:
        task = first["definition"]["taskRun"].get("taskId") if first else None
        out.append(
            StatusTransition(JobStatus.RUNNING, started, f"task {task} started" if task else None)
        )
    for action in runs:
        ended = _utc(action.get("endedAt"))
        if action.get("status") == "FAILED" and ended is not None and action is not runs[-1]:
            task = action["definition"]["taskRun"].get("taskId")
            out.append(
                StatusTransition(JobStatus.RUNNING, ended, f"task {task} attempt failed")
            )
    if job.status.is_finished:
        when = job.finished_at or _utc(job.raw.get("updatedAt")) or job.created_at
        reason = job.reason
        if job.status is JobStatus.FAILED and failed is not None:
            task = (failed.get("definition") or {}).get("taskRun", {}).get("taskId")
            code = failed.get("processExitCode")
            reason = f"task {task} failed" + (f" with exit code {code}" if code is not None else "")
            if failed.get("progressMessage"):
                reason += f": {failed['progressMessage']}"
        if when is not None:
            out.append(StatusTransition(job.status, when, reason))
    elif job.status is JobStatus.SUSPENDED:
        when = _utc(job.raw.get("updatedAt")) or job.created_at
        if when is not None:
            out.append(StatusTransition(JobStatus.SUSPENDED, when, job.reason))
    return tuple(sorted(out, key=lambda t: t.time))


def pool_from_wire(queue: Mapping[str, Any], slots: int | None) -> Pool:
    return Pool(
        id=queue["queueId"],
        name=queue["displayName"],
        slots=slots,
        driver=DRIVER,
        raw=_plain(queue),
    )


_DISABLED = {"STOPPING", "STOPPED", "NOT_RESPONDING", "NOT_COMPATIBLE"}


def worker_from_wire(item: Mapping[str, Any], pool: str | None) -> Worker:
    host = item.get("hostProperties") or {}
    name = host.get("hostName") or item["workerId"]
    return Worker(
        id=item["workerId"],
        name=name,
        enabled=item.get("status") not in _DISABLED,
        status=str(item.get("status", "UNKNOWN")).lower(),
        pool=pool,
        raw=_plain(item),
    )


def log_line(event: Mapping[str, Any], task_id: str | None) -> LogLine:
    ms = event.get("timestamp")
    time = datetime.fromtimestamp(ms / 1000, timezone.utc) if ms is not None else None
    return LogLine(
        time=time, stream="stdout", text=str(event.get("message", "")).rstrip("\n"), task_id=task_id
    )


# -- what Deadline job records cannot carry ----------------------------------------------
#
# A Deadline job record has no tags or labels (resource tags need one
# ListTagsForResource per job, and CreateJob takes none) and no dependencies on other
# jobs. aiofarm keeps them, and the reason it canceled a job whose dependency failed, in
# one marked line at the end of the job description, which BatchGetJob returns with the
# status: ``[aiofarm]{"tags": [...], "labels": {...}, "depends": [...]}`` (docs/labels.md).

MARKER = "[aiofarm]"
_DESCRIPTION_MAX = 2048


def _labels(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def split_description(text: str | None) -> tuple[str | None, dict[str, Any]]:
    """(the user's description, aiofarm's metadata) from a job description."""
    if not text:
        return None, {}
    head, sep, tail = text.rpartition(MARKER)
    if not sep:
        return text, {}
    try:
        meta = json.loads(tail)
    except ValueError:
        return text, {}
    if not isinstance(meta, dict):
        return text, {}
    # only the one newline join_description put before the marker: the user's own
    # trailing newlines are part of their text
    if head.endswith("\n"):
        head = head[:-1]
    return (head or None), meta


def join_description(
    description: str | None, meta: Mapping[str, Any], field: str = "description"
) -> str | None:
    meta = {k: v for k, v in meta.items() if v}
    text = description or ""
    if meta:
        text = (text + "\n" if text else "") + MARKER + json.dumps(meta, separators=(",", ":"))
    if len(text) > _DESCRIPTION_MAX:
        raise InvalidSpec(
            field,
            f"description, tags, labels and dependencies exceed Deadline's {_DESCRIPTION_MAX} characters",
        )
    return text or None


# -- submission ------------------------------------------------------------------------


def _no_format(value: str, field: str) -> str:
    # OpenJD format strings have no escape for "{{": refuse rather than let the
    # worker evaluate part of a user's argument as an expression
    if "{{" in value:
        raise InvalidSpec(
            field, "cannot contain '{{' (Open Job Description format strings have no escape)"
        )
    return value


def command_template(spec: JobSpec) -> dict[str, Any]:
    """A plain command job as a one-step, one-task Open Job Description template."""
    if spec.command is None:
        raise InvalidSpec("command", "a job needs a command or a template")
    if spec.tty or spec.stdin:
        raise UnsupportedError(
            DRIVER, "tty" if spec.tty else "stdin", "Deadline Cloud jobs have no interactive stdio"
        )
    if isinstance(spec.command, str):
        argv: list[str] = ["/bin/sh", "-c", spec.command]
    else:
        argv = list(spec.command)
    if not argv or not argv[0]:
        raise InvalidSpec("command", "is empty")
    argv = [_no_format(a, f"command[{i}]") for i, a in enumerate(argv)]
    if spec.cwd is not None:
        # cd then exec the argv unchanged; the user's strings are positional
        # arguments of a fixed script, never shell code
        argv = [
            "/bin/sh",
            "-c",
            'cd "$1" && shift && exec "$@"',
            "sh",
            _no_format(spec.cwd, "cwd"),
            *argv,
        ]
    on_run: dict[str, Any] = {"command": argv[0]}
    if argv[1:]:
        on_run["args"] = argv[1:]
    if spec.timeout is not None:
        on_run["timeout"] = max(1, math.ceil(spec.timeout))
    step: dict[str, Any] = {"name": "main", "script": {"actions": {"onRun": on_run}}}
    amounts: list[dict[str, Any]] = []
    res = spec.resources
    if res.cpu and res.cpu > 1:
        amounts.append({"name": "amount.worker.vcpu", "min": math.ceil(res.cpu)})
    if res.memory_mb:
        amounts.append({"name": "amount.worker.memory", "min": int(res.memory_mb)})
    if res.gpu:
        amounts.append({"name": "amount.worker.gpu", "min": int(res.gpu)})
    if amounts:
        step["hostRequirements"] = {"amounts": amounts}
    template: dict[str, Any] = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "aiofarm command",
        "steps": [step],
    }
    return _with_env(template, spec.env)


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _with_env(template: dict[str, Any], env: Mapping[str, str]) -> dict[str, Any]:
    if not env:
        return template
    variables = {}
    for k, v in env.items():
        if not _ENV_NAME.match(k):
            raise InvalidSpec(f"env.{k}", "is not a valid environment variable name")
        variables[k] = _no_format(str(v), f"env.{k}")
    envs = list(template.get("jobEnvironments") or [])
    envs.insert(0, {"name": "aiofarm-env", "variables": variables})
    return {**template, "jobEnvironments": envs}


def with_environments(template: dict[str, Any], docs: Any) -> dict[str, Any]:
    """``template`` with the environment templates a submission named as its first job
    environments (entered before the job's own, exited after them, as a queue
    environment is), their parameter definitions and extensions merged in."""
    if not docs:
        return template
    from ...openjd.documents import decode_environment, plain

    if not isinstance(docs, (list, tuple)):
        raise InvalidSpec("environments", "must be a list of environment templates")
    envs: list[Any] = []
    defs = list(template.get("parameterDefinitions") or [])
    known = {d.get("name") for d in defs}
    extensions = list(template.get("extensions") or [])
    for i, raw in enumerate(docs):
        doc = plain(raw, f"environments[{i}]")
        decode_environment(doc, f"environments[{i}]")
        for definition in doc.get("parameterDefinitions") or []:
            if definition.get("name") not in known:  # the job's own definition wins
                known.add(definition.get("name"))
                defs.append(definition)
        extensions += [e for e in doc.get("extensions") or [] if e not in extensions]
        envs.append(doc["environment"])
    out = {**template, "jobEnvironments": envs + list(template.get("jobEnvironments") or [])}
    if defs:
        out["parameterDefinitions"] = defs
    if extensions:
        out["extensions"] = extensions
    return out


def _validate_template(template: Mapping[str, Any]) -> None:
    from openjd.model import DecodeValidationError, decode_job_template

    from ...openjd.documents import SUPPORTED_EXTENSIONS

    try:
        # the extensions every driver accepts (the service answers for what it runs)
        decode_job_template(template=dict(template), supported_extensions=SUPPORTED_EXTENSIONS)
    except (DecodeValidationError, ValueError) as exc:
        raise InvalidSpec("template", str(exc)) from None


def typed_parameters(
    template: Mapping[str, Any], parameters: Mapping[str, Any]
) -> dict[str, dict[str, str]]:
    """Parameter values keyed by their type in the template (``{"Frames": {"string": "1-9"}}``)."""
    defs = {
        p.get("name"): str(p.get("type", "")).upper()
        for p in template.get("parameterDefinitions") or []
    }
    out: dict[str, dict[str, str]] = {}
    for name, value in parameters.items():
        ptype = defs.get(name)
        field = f"parameters.{name}"
        if ptype is None:
            raise InvalidSpec(field, "is not defined by the template")
        if ptype == "INT":
            if isinstance(value, bool) or not isinstance(value, (int, str)):
                raise InvalidSpec(field, f"INT parameter needs an int, got {value!r}")
            try:
                out[name] = {"int": str(int(value))}
            except ValueError:
                raise InvalidSpec(field, f"INT parameter needs an int, got {value!r}") from None
        elif ptype == "FLOAT":
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise InvalidSpec(field, f"FLOAT parameter needs a number, got {value!r}")
            try:
                number = float(value)
            except ValueError:
                raise InvalidSpec(field, f"FLOAT parameter needs a number, got {value!r}") from None
            if not math.isfinite(number):
                raise InvalidSpec(field, "must be finite")
            out[name] = {"float": repr(number) if not isinstance(value, str) else value.strip()}
        elif ptype in ("STRING", "PATH"):
            if not isinstance(value, str):
                raise InvalidSpec(
                    field, f"{ptype} parameter needs a str, got {type(value).__name__}"
                )
            out[name] = {ptype.lower(): value}
        else:
            raise InvalidSpec(
                field, f"parameter type {ptype} is not supported by the deadline driver"
            )
    return out


def create_job_request(
    farm_id: str,
    queue_id: str,
    spec: JobSpec,
    client_token: str,
    depends_on: Sequence[str] = (),
    attachments: Mapping[str, Any] | None = None,
    storage_profile: str | None = None,
) -> dict[str, Any]:
    """The CreateJob arguments for ``spec`` (``depends_on``: the real ids of the jobs it
    waits for; such a job is created suspended and held until they succeed)."""
    environments = spec.options.get("openjd_environments")
    if spec.template is not None:
        template = with_environments(dict(spec.template), environments)
        template = _with_env(template, spec.env)
        parameters = typed_parameters(template, spec.parameters)
    else:
        template = with_environments(command_template(spec), environments)
        parameters = {}
    _validate_template(template)
    if not 0 <= spec.priority <= 100:
        raise InvalidSpec("priority", "must be between 0 and 100 on Deadline Cloud")
    req: dict[str, Any] = {
        "farmId": farm_id,
        "queueId": queue_id,
        "clientToken": client_token,
        "template": json.dumps(template, separators=(",", ":")),
        "templateType": "JSON",
        "priority": spec.priority,
        "maxRetriesPerTask": spec.retries,
        "targetTaskRunStatus": "SUSPENDED" if spec.paused or depends_on else "READY",
    }
    if parameters:
        req["parameters"] = parameters
    if spec.max_failed_tasks is not None:
        req["maxFailedTasksCount"] = spec.max_failed_tasks
    if spec.max_workers is not None:
        req["maxWorkerCount"] = spec.max_workers
    if spec.name and (spec.template is None or spec.name != spec.template.get("name")):
        if len(spec.name) > 512:
            raise InvalidSpec("name", "is longer than 512 characters")
        req["nameOverride"] = spec.name
    meta: dict[str, Any] = {"tags": list(spec.tags), "labels": dict(spec.labels), "depends": list(depends_on)}
    if depends_on:
        meta["hold"] = True
        meta["paused"] = spec.paused
    description = join_description(spec.description, meta)
    if description:
        req["descriptionOverride"] = description
    profile = spec.options.get("storageProfileId", storage_profile)
    if profile:
        req["storageProfileId"] = profile
    if attachments is not None:
        req["attachments"] = dict(attachments)
    return req


# -- tokens and search -----------------------------------------------------------------


def encode_token(data: Mapping[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def decode_token(token: str, field: str = "token") -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, binascii.Error):
        raise InvalidSpec(field, "is not a token this driver issued") from None
    if not isinstance(data, dict):
        raise InvalidSpec(field, "is not a token this driver issued")
    return data
