"""Ray Jobs REST API records to and from aiofarm models: pure functions, no I/O.

Ray 2.60 facts these functions encode (checked against a real head, see docs/ray.md):
a job record is ``{"type", "submission_id", "status", "entrypoint", "message",
"error_type", "start_time", "end_time", "metadata", "runtime_env",
"driver_agent_http_address", "driver_node_id", "driver_exit_code", ...}``;
``GET /api/jobs/`` is a bare array that also holds ``type=DRIVER`` entries (Ray
drivers started outside the Jobs API); ``start_time`` is the submission time and
Ray records no separate time for the start of the entrypoint.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from ...errors import InvalidSpec
from ...models import Job, JobSpec, JobStatus, LogLine, Pool, StatusTransition, Worker

__all__ = [
    "LogCursor",
    "entrypoint",
    "job_from_record",
    "line_stream",
    "pools_from_usage",
    "split_log",
    "submit_body",
    "worker_from_node",
]

STATUS = {
    "PENDING": JobStatus.PENDING,
    "RUNNING": JobStatus.RUNNING,
    # `ray job stop` is the only way a job becomes STOPPED
    "STOPPED": JobStatus.CANCELED,
    "SUCCEEDED": JobStatus.SUCCEEDED,
    "FAILED": JobStatus.FAILED,
}

#: metadata keys aiofarm writes (Ray jobs have no such fields); values are strings
META_NAME, META_TAGS, META_OWNER, META_PRIORITY, META_DESCRIPTION = (
    "name", "tags", "owner", "priority", "description",
)  # fmt: skip
META_DEPENDS = "aiofarm.depends_on"
META_TIMEOUT = "aiofarm.timeout"
#: what the job asked for (Ray's job records do not echo entrypoint_num_cpus & co.)
META_RESOURCES = "aiofarm.resources"
#: metadata keys that are not labels: aiofarm's own, and the id Ray may copy in; every
#: other metadata key is a label (as `ray job submit --metadata-json` writes them)
RESERVED_META = frozenset(
    {META_NAME, META_TAGS, META_OWNER, META_PRIORITY, META_DESCRIPTION, "job_submission_id"}
)
#: coreutils timeout's exit code when the limit was reached
TIMED_OUT = 124

_EPOCH = datetime.fromtimestamp(0, timezone.utc)
#: the line Ray's job supervisor writes before it starts the entrypoint
_ENTRY_MARK = "Running entrypoint for job "


def entrypoint(command: Sequence[str] | str, timeout: float | None = None) -> str:
    """Ray runs the entrypoint with ``/bin/sh -c``: a ``str`` command goes as is (so
    it runs through the shell, as documented for every driver); a sequence is
    quoted with :func:`shlex.join` and ``exec``'d, so the job's process is the
    command itself and its exit code or signal is the command's own.

    Ray jobs have no time limit: ``timeout`` runs the command under coreutils
    ``timeout`` (SIGTERM at the limit, SIGKILL 5 s later; exit code 124)."""
    if timeout is None:
        return command if isinstance(command, str) else "exec " + shlex.join(command)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else list(command)
    return "exec " + shlex.join(["timeout", "-k", "5", f"{timeout:g}", *argv])


def _metadata(spec: JobSpec, owner: str | None, depends_on: Sequence[str]) -> dict[str, str]:
    meta: dict[str, str] = {META_PRIORITY: str(spec.priority)}
    for key, value in spec.labels.items():
        if key in RESERVED_META or key.startswith("aiofarm."):
            raise InvalidSpec(f"labels[{key!r}]", "is a Ray metadata key aiofarm keeps for itself")
        meta[key] = value  # natively: a label is a metadata entry
    if spec.name is not None:
        meta[META_NAME] = spec.name
    if spec.tags:
        meta[META_TAGS] = json.dumps(list(spec.tags))
    if owner:
        meta[META_OWNER] = owner
    if spec.description is not None:
        meta[META_DESCRIPTION] = spec.description
    if depends_on:
        meta[META_DEPENDS] = json.dumps(list(depends_on))
    if spec.timeout is not None:
        meta[META_TIMEOUT] = f"{spec.timeout:g}"
    res = spec.resources
    asked: dict[str, Any] = {"cpu": res.cpu}
    if res.memory_mb is not None:
        asked["memory_mb"] = res.memory_mb
    if res.gpu:
        asked["gpu"] = res.gpu
    if spec.pool is not None:
        asked["pool"] = spec.pool
    meta[META_RESOURCES] = json.dumps(asked, sort_keys=True)
    return meta


def submit_body(
    spec: JobSpec,
    submission_id: str,
    *,
    owner: str | None,
    working_dir: str | None = None,
    depends_on: Sequence[str] = (),
) -> dict[str, Any]:
    """The ``POST /api/jobs/`` body of ``spec`` (its command must be set)."""
    assert spec.command is not None
    runtime_env: dict[str, Any] = {}
    if spec.env:
        runtime_env["env_vars"] = dict(spec.env)
    if working_dir is not None:
        runtime_env["working_dir"] = working_dir
    body: dict[str, Any] = {
        "entrypoint": entrypoint(spec.command, spec.timeout),
        "submission_id": submission_id,
        "metadata": _metadata(spec, owner, depends_on),
    }
    if runtime_env:
        body["runtime_env"] = runtime_env
    res = spec.resources
    body["entrypoint_num_cpus"] = float(res.cpu)
    gpus = float(res.gpu)
    if spec.pool == "GPU":
        gpus = max(gpus, 1.0)
    elif spec.pool is not None and spec.pool != "CPU":
        # a pool is a Ray resource (see pools_from_usage): one unit of a custom one
        body["entrypoint_resources"] = {spec.pool: 1.0}
    if gpus:
        body["entrypoint_num_gpus"] = gpus
    if res.memory_mb is not None:
        body["entrypoint_memory"] = int(res.memory_mb) * 1024 * 1024
    return body


def _time(ms: object) -> datetime | None:
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
        return None
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _json_list(text: object) -> tuple[str, ...]:
    if not isinstance(text, str):
        return ()
    try:
        value = json.loads(text)
    except ValueError:
        return tuple(t for t in text.split(",") if t)  # written by hand: "a,b"
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _priority(text: object) -> int:
    try:
        return int(str(text))
    except ValueError:
        return 50


def job_from_record(rec: Mapping[str, Any], driver: str = "ray") -> Job:
    """A submission job record (``GET /api/jobs/{id}`` or one item of the list)."""
    status = STATUS.get(str(rec.get("status")), JobStatus.UNKNOWN)
    meta = rec.get("metadata")
    meta = meta if isinstance(meta, Mapping) else {}
    created = _time(rec.get("start_time"))
    finished = _time(rec.get("end_time")) if status.is_finished else None
    # Ray keeps no start time of the entrypoint: the submission time stands in
    started = created if status is not JobStatus.PENDING else None
    code = rec.get("driver_exit_code")
    exit_code = code if isinstance(code, int) and not isinstance(code, bool) else None
    message = rec.get("message")
    reason: str | None = None
    if status in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.UNKNOWN) and isinstance(message, str):
        # Ray appends the last log lines to the message of a failed job: keep the first line
        reason = message.split("\n", 1)[0].rstrip(":, ") or None
        err = rec.get("error_type")
        if err and reason and str(err) not in reason:
            reason = f"{reason} ({err})"
    t0 = created or _EPOCH
    limit = meta.get(META_TIMEOUT)
    if status is JobStatus.FAILED and exit_code == TIMED_OUT and isinstance(limit, str):
        reason = f"timed out after {limit} s"
    history = [StatusTransition(JobStatus.PENDING, t0)]
    # a job stopped or failed before its entrypoint started has no exit code: it never ran
    if status is JobStatus.RUNNING or status is JobStatus.SUCCEEDED or exit_code is not None:
        history.append(StatusTransition(JobStatus.RUNNING, started or t0))
    if status.is_finished or status is JobStatus.UNKNOWN:
        history.append(StatusTransition(status, finished or t0, reason))
    entry = rec.get("entrypoint")
    name = meta.get(META_NAME)
    if not isinstance(name, str):
        name = entry.split()[1] if isinstance(entry, str) and entry.startswith("exec ") and len(entry.split()) > 1 else None
    owner = meta.get(META_OWNER)
    desc = meta.get(META_DESCRIPTION)
    pool = requested(rec).get("pool")
    return Job(
        id=str(rec.get("submission_id")),
        status=status,
        driver=driver,
        name=name,
        owner=owner if isinstance(owner, str) else None,
        pool=pool if isinstance(pool, str) else None,
        tags=_json_list(meta.get(META_TAGS)),
        labels={
            k: v for k, v in meta.items()
            if k not in RESERVED_META and not k.startswith("aiofarm.") and isinstance(v, str)
        },
        description=desc if isinstance(desc, str) else None,
        priority=_priority(meta.get(META_PRIORITY, 50)),
        created_at=created,
        started_at=started,
        finished_at=finished,
        exit_code=exit_code,
        reason=reason,
        history=tuple(history),
        task_counts={status.value: 1},
        depends_on=_json_list(meta.get(META_DEPENDS)),
        raw=rec,
    )


def requested(rec: Mapping[str, Any]) -> dict[str, Any]:
    """What a job aiofarm submitted asked for: cpu, memory_mb, gpu, pool."""
    meta = rec.get("metadata")
    text = meta.get(META_RESOURCES) if isinstance(meta, Mapping) else None
    try:
        value = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def submission_records(data: object) -> Iterable[Mapping[str, Any]]:
    """The submission jobs of a ``GET /api/jobs/`` answer (Ray's own drivers left out)."""
    if not isinstance(data, list):
        return ()
    return (
        r
        for r in data
        if isinstance(r, Mapping) and r.get("type") != "DRIVER" and isinstance(r.get("submission_id"), str)
    )


# -- logs ------------------------------------------------------------------------
class LogCursor:
    """Where a reader is in a job's log file: ``offset`` bytes consumed, always the
    end of a complete line. Its text form is the ``next_token`` of a page; a read
    resumes there with a range request (drivers/ray/logs.py)."""

    __slots__ = ("offset",)

    def __init__(self, offset: int = 0) -> None:
        self.offset = offset

    def token(self) -> str:
        return str(self.offset)

    @classmethod
    def parse(cls, token: str | None) -> LogCursor:
        if token is None:
            return cls()
        if not token.isdigit():
            raise ValueError(token)
        return cls(int(token))


#: a line Ray's job manager logs into the job's file ("Runtime env is setting up.")
_RAY_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\t[A-Z]+ job_(manager|supervisor)\.py:\d+ -- ")


def line_stream(line: str, job_id: str) -> str:
    """``"ray"`` for the lines Ray's job supervisor writes into a job's log (the
    runtime env set-up, "Running entrypoint for job ..."), else ``"stdout"``: Ray
    writes the entrypoint's stdout and stderr to one file. Decided line by line:
    the supervisor's "Running entrypoint" line is flushed after the entrypoint has
    started, so a quick command's output may come before it."""
    if line.startswith(_ENTRY_MARK) and line.startswith(f"{_ENTRY_MARK}{job_id}: "):
        return "ray"
    return "ray" if _RAY_LINE.match(line) else "stdout"


def split_log(
    data: bytes, cursor: LogCursor, *, final: bool, limit: int, streams: frozenset[str], job_id: str
) -> list[LogLine]:
    """The lines of ``data`` (the log file's bytes from ``cursor.offset`` on) of
    ``streams``, at most ``limit``, advancing ``cursor`` by the bytes consumed. A last
    line without its newline waits unless ``final``. Lines end at ``\n`` only (a
    ``\r`` before it is dropped; a lone ``\r``, a progress bar's, stays in the line);
    bytes that are not UTF-8 are replaced, never fatal."""
    lines: list[LogLine] = []
    pos = 0
    while len(lines) < limit and pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            if not final:
                break
            end = nxt = len(data)
        else:
            nxt = end + 1
        line = data[pos:end].rstrip(b"\r").decode("utf-8", "replace")
        pos = nxt
        stream = line_stream(line, job_id)
        if stream in streams:
            lines.append(LogLine(None, stream, line))
    cursor.offset += pos
    return lines


# -- pools and workers -----------------------------------------------------------
_INTERNAL = ("node:", "memory", "objectStoreMemory", "object_store_memory")


def pools_from_usage(usage: Mapping[str, Any]) -> list[tuple[Pool, int]]:
    """(pool, free units now) per schedulable resource of ``/api/cluster_status``'s
    ``loadMetricsReport.usage`` (``{resource: [used, total]}``): CPU, GPU and custom
    resources; memory and Ray's internal node resources are left out."""
    out: list[tuple[Pool, int]] = []
    for name, pair in sorted(usage.items()):
        if name.startswith(_INTERNAL) or not isinstance(pair, list) or len(pair) != 2:
            continue
        used, total = pair
        if not isinstance(used, (int, float)) or not isinstance(total, (int, float)):
            continue
        out.append((Pool(id=name, name=name, slots=int(total), driver="ray", raw={"used": used, "total": total}),
                    int(total - used)))
    return out


def worker_from_node(node: Mapping[str, Any]) -> Worker:
    """One item of ``GET /api/v0/nodes``."""
    res = node.get("resources_total")
    cpus = res.get("CPU") if isinstance(res, Mapping) else None
    state = str(node.get("state") or "unknown")
    return Worker(
        id=str(node.get("node_id")),
        name=str(node.get("node_name") or node.get("node_ip") or node.get("node_id")),
        enabled=state == "ALIVE",
        status=state.lower(),
        pool=None,
        cpus=int(cpus) if isinstance(cpus, (int, float)) else None,
        reason=node.get("state_message") or None,
        raw=node,
    )
