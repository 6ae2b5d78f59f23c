"""slurmrestd v0.0.40 and v0.0.41 (Slurm 23.11 to 24.11) JSON <-> records. Pure.

What changed from v0.0.38: numbers are ``{"set", "infinite", "number"}``
objects, ``job_state`` is a list (the state, then flags), ``exit_code`` is
``{"status", "return_code", "signal"}``, the batch script goes inside ``job``
and the environment is a list of ``NAME=value``. Output paths come back
expanded. Accounting (``/slurmdb``) records are read here too;
``wire_v0042`` reuses these readers with its own field table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .records import NodeRec, PartitionRec, Rec, Wire

__all__ = [
    "VERSIONS",
    "accounting_record",
    "exit_code",
    "node",
    "number",
    "partition",
    "record",
    "since_param",
    "submit_body",
    "unchanged",
    "wire",
]

VERSIONS = ("v0.0.41", "v0.0.40")

#: where each record field is read, first present key wins (v0.0.42+ adds to this)
JOB_FIELDS: Mapping[str, tuple[str, ...]] = {
    "stdout": ("standard_output",),
    "stderr": ("standard_error",),
}
ACCOUNTING_FIELDS: Mapping[str, tuple[str, ...]] = {
    "stdout": ("stdout_expanded", "stdout"),
    "stderr": ("stderr_expanded", "stderr"),
}


def number(value: Any) -> int | None:
    """A v0.0.4x number: a plain int, or ``{"set", "infinite", "number"}`` (None
    when unset or infinite)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        if not value.get("set") or value.get("infinite"):
            return None
        n = value.get("number")
        return n if isinstance(n, int) and not isinstance(n, bool) else None
    return None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _first(raw: Mapping[str, Any], keys: Sequence[str]) -> str:
    for key in keys:
        value = raw.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def _states(value: Any) -> tuple[str, tuple[str, ...]]:
    if isinstance(value, list) and value:
        items = [str(v) for v in value]
        return items[0], tuple(items[1:])
    if isinstance(value, str):
        return value, ()
    return "", ()


def exit_code(value: Any) -> int | None:
    """``{"status": [...], "return_code": n, "signal": {"id": n}}`` as the exit code,
    or minus the signal that ended the job; None while it has none."""
    if not isinstance(value, dict):
        return None
    status = value.get("status")
    status = [str(s) for s in status] if isinstance(status, list) else []
    signal = value.get("signal")
    sig = number(signal.get("id")) if isinstance(signal, dict) else None
    if sig:
        return -sig
    code = number(value.get("return_code"))
    if code is not None:
        return code
    if "SUCCESS" in status:
        return 0
    return None


def record(raw: Mapping[str, Any], fields: Mapping[str, tuple[str, ...]] = JOB_FIELDS) -> Rec:
    state, flags = _states(raw.get("job_state"))
    array_job = number(raw.get("array_job_id")) or 0
    task = number(raw.get("array_task_id"))
    return Rec(
        job_id=number(raw.get("job_id")) or 0,
        array_job_id=array_job,
        array_task_id=task,
        array_task_string=_str(raw.get("array_task_string")),
        state=state,
        flags=flags,
        reason=_str(raw.get("state_reason")) or None,
        description=_str(raw.get("state_description")) or None,
        name=_str(raw.get("name")),
        user_name=_str(raw.get("user_name")),
        partition=_str(raw.get("partition")),
        comment=_str(raw.get("comment")),
        dependency=_str(raw.get("dependency")),
        nice=number(raw.get("nice")),
        priority=number(raw.get("priority")),
        hold=raw.get("hold") is True,
        submit_time=number(raw.get("submit_time")) or 0,
        start_time=number(raw.get("start_time")) or 0,
        end_time=number(raw.get("end_time")) or 0,
        exit_code=exit_code(raw.get("exit_code")),
        stdout=_first(raw, fields["stdout"]),
        # merged output: 24.11 repeats stdout's path in stderr, 26.05 leaves it empty
        stderr=_first(raw, fields["stderr"]),
        cwd=_str(raw.get("current_working_directory")),
        restart_cnt=number(raw.get("restart_cnt")) or 0,
        batch_host=_str(raw.get("batch_host")),
        nodes=_str(raw.get("nodes")),
        raw=raw,
    )


def accounting_record(raw: Mapping[str, Any], fields: Mapping[str, tuple[str, ...]] = ACCOUNTING_FIELDS) -> Rec:
    """A job of ``GET /slurmdb/vX/jobs``: another shape for the same facts."""
    state = raw.get("state")
    current, flags = _states(state.get("current") if isinstance(state, dict) else None)
    reason = _str(state.get("reason")) if isinstance(state, dict) else ""
    times = raw.get("time")
    times = times if isinstance(times, dict) else {}
    array = raw.get("array")
    array = array if isinstance(array, dict) else {}
    comment = raw.get("comment")
    array_job = number(array.get("job_id")) or 0
    return Rec(
        job_id=number(raw.get("job_id")) or 0,
        array_job_id=array_job,
        array_task_id=number(array.get("task_id")) if array_job else None,
        array_task_string=_str(array.get("task")),
        state=current,
        flags=flags,
        reason=reason or None,
        name=_str(raw.get("name")),
        user_name=_str(raw.get("user")),
        partition=_str(raw.get("partition")),
        comment=_str(comment.get("job")) if isinstance(comment, dict) else _str(comment),
        priority=number(raw.get("priority")),
        hold=raw.get("hold") is True,
        submit_time=number(times.get("submission")) or 0,
        start_time=number(times.get("start")) or 0,
        end_time=number(times.get("end")) or 0,
        exit_code=exit_code(raw.get("exit_code")),
        stdout=_first(raw, fields["stdout"]),
        stderr=_first(raw, fields["stderr"]),
        cwd=_str(raw.get("working_directory")),
        restart_cnt=number(raw.get("restart_cnt")) or 0,
        nodes=_str(raw.get("nodes")),
        source="dbd",
        raw=raw,
    )


def since_param(wall: float, age: float) -> str:
    """Relative to slurmctld's clock (``now-N`` seconds), so a skewed client clock
    misses nothing; 24.11's v0.0.40/41 refuse a plain timestamp (error 9202). One
    second of margin: a change in the second of the last read is read again rather
    than missed."""
    return f"now-{math.ceil(age) + 1}"


def unchanged(status: int, data: Mapping[str, Any]) -> bool:
    """Nothing changed: no jobs and ``last_update`` 0 (a cluster without jobs
    answers its real ``last_update``)."""
    jobs = data.get("jobs")
    return not jobs and not number(data.get("last_update"))


#: job description properties that became flags
_FLAGS = {"kill_on_invalid_dependency": "KILL_INVALID_DEPENDENCY"}


def submit_body(job: Mapping[str, Any], script: str) -> dict[str, Any]:
    body = dict(job)
    env = body.get("environment")
    if isinstance(env, Mapping):
        body["environment"] = [f"{k}={v}" for k, v in env.items()]
    flags = [flag for key, flag in _FLAGS.items() if body.pop(key, False)]
    if flags:
        body["flags"] = flags
    gpus = body.pop("gpus", None)
    if gpus is not None:
        body["tres_per_job"] = f"gres/gpu:{gpus}"
    tmp = body.pop("tmp_disk_mb", None)
    if tmp is not None:
        body["temporary_disk_per_node"] = tmp
    mode = body.pop("open_mode", None)
    if mode is not None:
        body["open_mode"] = [str(mode).upper()]  # a flag list from v0.0.40 on
    body["script"] = script
    return {"job": body}


def update_body(changes: Mapping[str, Any]) -> dict[str, Any]:
    return dict(changes)


def node(raw: Mapping[str, Any]) -> NodeRec:
    state, flags = _states(raw.get("state"))
    parts = raw.get("partitions")
    cpus = number(raw.get("cpus"))
    alloc = number(raw.get("alloc_cpus"))
    return NodeRec(
        name=_str(raw.get("name")),
        state=state.lower() or "unknown",
        flags=frozenset(f.upper() for f in flags),
        cpus=cpus,
        idle_cpus=cpus - alloc if cpus is not None and alloc is not None else None,
        partitions=tuple(str(p) for p in parts) if isinstance(parts, list) else (),
        address=_str(raw.get("address")),
        reason=_str(raw.get("reason")),
        raw=raw,
    )


def partition(raw: Mapping[str, Any]) -> PartitionRec:
    cpus = raw.get("cpus")
    return PartitionRec(
        name=_str(raw.get("name")), cpus=number(cpus.get("total")) if isinstance(cpus, dict) else None, raw=raw
    )


def ping_ok(data: Mapping[str, Any]) -> bool:
    """v0.0.40/41 say ``"pinged": "UP"``, v0.0.42 both that and ``"responding"``,
    v0.0.43+ only ``"responding": true``."""
    pings = data.get("pings")
    return isinstance(pings, list) and any(
        isinstance(p, dict) and (p.get("responding") is True or p.get("pinged") == "UP") for p in pings
    )


def wire(version: str) -> Wire:
    return Wire(
        version=version,
        record=record,
        accounting_record=accounting_record,
        since_param=since_param,
        unchanged=unchanged,
        submit_body=submit_body,
        update_body=update_body,
        node=node,
        partition=partition,
        ping_ok=ping_ok,
    )
