"""The data aiofarm passes around: frozen, slotted attrs classes.

Models hold data only. Conversion to and from a back end's wire format lives in
the driver that speaks it (``drivers/<name>/wire.py``), never here.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any

import attrs

__all__ = [
    "Capability",
    "CompletionResult",
    "Job",
    "JobEvent",
    "JobSpec",
    "JobStatus",
    "LogLine",
    "LogPage",
    "Message",
    "PathMappingRule",
    "Pool",
    "Resources",
    "Secret",
    "StatusTransition",
    "Task",
    "TransferProgress",
    "Worker",
]

_EMPTY: Mapping[str, Any] = MappingProxyType({})


def frozen_map(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """attrs converter: a read-only mapping (the shared empty one for nothing)."""
    if not value:
        return _EMPTY
    if isinstance(value, MappingProxyType):
        return value
    return MappingProxyType(dict(value))


def _env_repr(env: Mapping[str, Any]) -> str:
    # an environment carries credentials under any name: no value is ever shown
    return repr(dict.fromkeys(env, "***"))


def _options_repr(values: Mapping[str, Any]) -> str:
    from .redaction import redact_mapping

    return repr(redact_mapping(values))


def as_tuple(value: Sequence[Any] | None) -> tuple[Any, ...]:
    """attrs converter: a tuple (empty for None)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(value)


def _command(value: Sequence[str] | str | None) -> tuple[str, ...] | str | None:
    if value is None or isinstance(value, str):
        return value
    return tuple(value)


def _convert(convert: Callable[[Any], Any], value: Any, field: str, expected: str) -> Any:
    """``convert(value)`` for a JobSpec field, failing as InvalidSpec naming the field
    (a user builds JobSpecs by hand: ``JobSpec(env=True)`` is bad input, not a TypeError)."""
    if isinstance(value, (bytes, bytearray)) or (expected == "a mapping" and value and not isinstance(value, Mapping)):
        raise _invalid(field, f"must be {expected}, got {type(value).__name__}")
    try:
        return convert(value)
    except (TypeError, ValueError):
        raise _invalid(field, f"must be {expected}, got {type(value).__name__}") from None


def _spec_command(value: Sequence[str] | str | None) -> tuple[str, ...] | str | None:
    return _convert(_command, value, "command", "a sequence of strings or a string")  # type: ignore[no-any-return]


def _spec_env(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return _convert(frozen_map, value, "env", "a mapping")  # type: ignore[no-any-return]


def _spec_parameters(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _convert(frozen_map, value, "parameters", "a mapping")  # type: ignore[no-any-return]


def _spec_options(value: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return _convert(frozen_map, value, "options", "a mapping")  # type: ignore[no-any-return]


def _spec_labels(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return _convert(frozen_map, value, "labels", "a mapping")  # type: ignore[no-any-return]


def _spec_tags(value: Sequence[str] | None) -> tuple[str, ...]:
    return _convert(as_tuple, value, "tags", "a sequence of strings")  # type: ignore[no-any-return]


def _spec_depends_on(value: Sequence[str] | str | None) -> tuple[str, ...]:
    return _convert(as_tuple, value, "depends_on", "a job id or a sequence of job ids")  # type: ignore[no-any-return]


def _spec_path_mapping(value: Sequence[PathMappingRule] | None) -> tuple[PathMappingRule, ...]:
    return _convert(as_tuple, value, "path_mapping", "a sequence of PathMappingRule")  # type: ignore[no-any-return]


def _invalid(field: str, reason: str) -> Exception:
    from .errors import InvalidSpec

    return InvalidSpec(field, reason)


class Secret:
    """One secret value: shown as ``***`` by ``repr``, ``str`` and formatting; the
    value itself only through :meth:`reveal`. Equal to another Secret of the same
    value; not hashable by value (a dict key would leak it through ordering)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if isinstance(value, Secret):
            value = value.reveal()
        if not isinstance(value, str):
            raise _invalid("secret", f"must be a string, got {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    __hash__ = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[Any, ...]:
        return (Secret, (self._value,))


#: the shell a ``str`` command runs through (documented in docs/decisions.md)
SHELL = "/bin/sh"


def command_argv(command: Sequence[str] | str) -> tuple[str, ...]:
    """The argv of a command: a ``str`` runs through ``/bin/sh -c``, a sequence is
    exec'd as is. The one place that rule lives (jobs, exec, every driver)."""
    if isinstance(command, str):
        return (SHELL, "-c", command)
    return tuple(command)


# Label syntax: Kubernetes' (labels carry over to and from Ray metadata, k8s and apolo
# unchanged): a name of at most 63 of [A-Za-z0-9-_.] starting and ending with an
# alphanumeric, optionally after a DNS-subdomain prefix and a slash; a value is such a
# name or empty. The client checks it (validation.py, where/fields.py).
_LABEL_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_LABEL_PREFIX = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")
MAX_LABELS = 64


def label_key_problem(key: str) -> str | None:
    """What is wrong with a label key (``team``, ``example.com/team``), None if nothing."""
    prefix, slash, name = key.rpartition("/")
    if slash and (not prefix or len(prefix) > 253 or not _LABEL_PREFIX.fullmatch(prefix)):
        return f"{key!r}: the prefix before '/' must be a lower-case DNS name of at most 253 characters"
    if not _LABEL_NAME.fullmatch(name):
        return (
            f"{key!r}: a label name is 1-63 characters of letters, digits and -_. "
            "starting and ending with a letter or digit (an optional 'prefix/' before it)"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """What is wrong with a label value, None if nothing (empty is fine)."""
    if value and not _LABEL_NAME.fullmatch(value):
        return (
            f"{value!r}: a label value is empty or 1-63 characters of letters, digits and -_. "
            "starting and ending with a letter or digit"
        )
    return None


class JobStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUSPENDED = "suspended"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    UNKNOWN = "unknown"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED

    @property
    def is_active(self) -> bool:
        return self in _ACTIVE

    @classmethod
    def active_items(cls) -> frozenset[JobStatus]:
        return _ACTIVE

    @classmethod
    def finished_items(cls) -> frozenset[JobStatus]:
        return _FINISHED

    def __str__(self) -> str:
        return self.value


_ACTIVE = frozenset({JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUSPENDED})
_FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})


class Capability(str, enum.Enum):
    """What a driver can do. ``client.capabilities`` is a frozenset of these.

    Plain names are operations. Dotted names (``operation.parameter``) say that the
    driver honours that parameter of the operation; without one, a call giving the
    parameter a value the back end cannot honour raises ``UnsupportedError`` naming
    the driver and the parameter, before anything is sent (docs/drivers.md).
    """

    SUBMIT = "submit"
    SUBMIT_TEMPLATE = "submit_template"  # OpenJD templates / bundles
    PUSH = "push"  # the driver pushes status changes; no polling needed
    LIST = "list"
    CANCEL = "cancel"
    PAUSE = "pause"
    UPDATE = "update"
    RETRY = "retry"
    DELETE = "delete"
    SIGNAL = "signal"
    TASKS = "tasks"
    LOGS = "logs"
    LOGS_FOLLOW = "logs_follow"
    ATTACH = "attach"
    EXEC = "exec"
    PORT_FORWARD = "port_forward"
    POOLS = "pools"
    POOLS_MANAGE = "pools_manage"  # create / rename / delete
    WORKERS = "workers"
    WORKERS_MANAGE = "workers_manage"  # enable / disable
    EXPLAIN = "explain"
    FUNCTIONS = "functions"
    # -- parameters ----------------------------------------------------------------
    SUBMIT_TTY = "submit.tty"  # a job on a terminal
    SUBMIT_STDIN = "submit.stdin"  # a job whose stdin stays open for attach
    SUBMIT_RETRIES = "submit.retries"  # retries > 0
    SUBMIT_MAX_FAILED_TASKS = "submit.max_failed_tasks"
    SUBMIT_MAX_WORKERS = "submit.max_workers"
    SUBMIT_ENVIRONMENTS = "submit.environments"  # OpenJD environment templates (queue environments)
    CANCEL_STOP_WORK = "cancel.stop_work"  # both values: running work stops, or finishes
    PAUSE_STOP_WORK = "pause.stop_work"  # both values: running work stops, or goes on
    LOGS_SINCE = "logs.since"  # since= / start_time= / end_time=: lines by time
    LOGS_TIMESTAMPS = "logs.timestamps"  # each line's time is known
    LOGS_STREAMS = "logs.streams"  # stdout and stderr apart
    LOGS_TASK = "logs.task"  # one task's lines
    LOGS_ATTEMPT = "logs.attempt"  # one attempt's lines (each line knows its attempt)
    ATTACH_BATCH_STEP = "attach.batch_step"  # attach reaches the job's own process
    ATTACH_STEP = "attach.step"  # attach(step=): one step of the job (Slurm: an srun step)
    EXEC_TTY = "exec.tty"
    WORKERS_STOP_WORK = "workers.stop_work"  # disable(stop_work=True)
    FUNCTIONS_MAX_CONCURRENCY = "functions.max_concurrency"

    @property
    def operation(self) -> str:
        """``pause`` for ``pause.stop_work``; the name itself for an operation."""
        return self.value.partition(".")[0]

    @property
    def parameter(self) -> str | None:
        """``stop_work`` for ``pause.stop_work``; None for an operation."""
        return self.value.partition(".")[2] or None

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class Resources:
    cpu: float = 1
    memory_mb: int | None = None
    gpu: int = 0


@attrs.frozen
class PathMappingRule:
    """Rewrite paths that start with ``source`` (written on ``source_os``) to ``destination``."""

    source_os: str
    source: str
    destination: str


@attrs.frozen
class JobSpec:
    """What to run. Either ``command`` (a plain job: one step, one task) or
    ``template`` (an Open Job Description job template, already validated, as a mapping)
    with ``parameters``.

    ``command`` as a sequence is exec'd as is; as a ``str`` it runs through
    ``/bin/sh -c`` (documented in docs/decisions.md).
    """

    command: tuple[str, ...] | str | None = attrs.field(
        default=None, converter=_spec_command
    )
    name: str | None = None
    env: Mapping[str, str] = attrs.field(
        factory=dict, converter=_spec_env, repr=_env_repr
    )
    cwd: str | None = None
    pool: str | None = None
    tags: tuple[str, ...] = attrs.field(factory=tuple, converter=_spec_tags)
    #: key/value labels to select jobs by (``where.labels["team"] == "fx"``); the key and
    #: value syntax is Kubernetes' (docs/labels.md)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=_spec_labels)
    description: str | None = None
    priority: int = 50
    resources: Resources = attrs.field(factory=Resources)
    timeout: float | None = None
    retries: int = 0  # extra attempts per task (Deadline: maxRetriesPerTask)
    depends_on: tuple[str, ...] = attrs.field(
        factory=tuple, converter=_spec_depends_on
    )
    tty: bool = False
    stdin: bool = False
    paused: bool = False
    id: str | None = None
    template: Mapping[str, Any] | None = None
    parameters: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_spec_parameters, repr=_options_repr
    )
    max_failed_tasks: int | None = None
    max_workers: int | None = None
    path_mapping: tuple[PathMappingRule, ...] = attrs.field(
        factory=tuple, converter=_spec_path_mapping
    )
    # driver-specific extras (e.g. slurm "account", deadline "storageProfileId")
    options: Mapping[str, Any] = attrs.field(
        factory=dict, converter=_spec_options, repr=_options_repr
    )


@attrs.frozen
class StatusTransition:
    status: JobStatus
    time: datetime
    reason: str | None = None


@attrs.frozen
class Job:
    id: str
    status: JobStatus
    driver: str
    name: str | None = None
    owner: str | None = None
    pool: str | None = None
    tags: tuple[str, ...] = attrs.field(factory=tuple, converter=_spec_tags)
    description: str | None = None
    priority: int = 50
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    history: tuple[StatusTransition, ...] = attrs.field(factory=tuple, converter=as_tuple)
    task_counts: Mapping[str, int] = attrs.field(factory=dict, converter=frozen_map)
    depends_on: tuple[str, ...] = attrs.field(factory=tuple, converter=as_tuple)
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_map, repr=False, eq=False)
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_map)

    def _repr_html_(self) -> str:
        from .display import job_html

        return job_html(self)


@attrs.frozen
class Task:
    id: str
    job_id: str
    status: JobStatus
    step: str | None = None
    parameters: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_map)
    attempts: int = 0
    exit_code: int | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    reason: str | None = None
    log: str | None = None  # where this task's log is (a path, a log stream name, a URL)
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_map, repr=False, eq=False)
    # what the task last reported (OpenJD ``openjd_progress``: 0-100; ``openjd_status``)
    progress: float | None = None
    status_message: str | None = None


@attrs.frozen
class CompletionResult:
    job: Job
    status: JobStatus
    failed_tasks: tuple[Task, ...]
    elapsed: timedelta

    @property
    def succeeded(self) -> bool:
        return self.status is JobStatus.SUCCEEDED

    def _repr_html_(self) -> str:
        from .display import completion_html

        return completion_html(self)


@attrs.frozen
class JobEvent:
    job: Job
    previous: JobStatus | None
    status: JobStatus
    time: datetime


@attrs.frozen
class LogLine:
    time: datetime | None
    stream: str  # "stdout" | "stderr" | driver-specific (e.g. a session id)
    text: str
    task_id: str | None = None
    #: the job the line belongs to (set by streams over several jobs, else None)
    job_id: str | None = None
    #: the attempt of the task that wrote it (1 = first run), where the back end records it
    attempt: int | None = None


@attrs.frozen
class LogPage:
    lines: tuple[LogLine, ...]
    next_token: str | None  # opaque cursor; pass back to continue after the last line

    def _repr_html_(self) -> str:
        from .display import lines_html

        return lines_html(self.lines)


@attrs.frozen
class Pool:
    id: str
    name: str
    slots: int | None = None
    driver: str = ""
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_map, repr=False, eq=False)

    def _repr_html_(self) -> str:
        from .display import pools_html

        return pools_html([self])


@attrs.frozen
class Worker:
    id: str
    name: str
    enabled: bool
    status: str
    pool: str | None = None
    cpus: int | None = None
    reason: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_map, repr=False, eq=False)


@attrs.frozen
class Message:
    """A chunk of a job's output from attach/exec. ``fileno`` 1 = stdout, 2 = stderr."""

    fileno: int
    data: bytes


@attrs.frozen
class TransferProgress:
    """Progress of moving a job's files (Deadline job attachments): ``phase`` is
    "hashing", "uploading" or "downloading"; ``skipped`` counts what did not need to move
    (unchanged, already stored, already downloaded)."""

    phase: str
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
    files_skipped: int = 0
    bytes_skipped: int = 0

    @property
    def fraction(self) -> float:
        return 1.0 if not self.bytes_total else min(1.0, self.bytes_done / self.bytes_total)
