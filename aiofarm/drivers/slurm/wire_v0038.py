"""slurmrestd v0.0.38 (Slurm 22.05/23.02) JSON <-> records. Pure.

Plain integers (``null`` for unset), ``job_state`` a string, ``exit_code`` a
wait(2) status, the batch script beside ``job`` in the submit body and the
environment as an object. Accounting (``/slurmdb/v0.0.38``) is not read: see
docs/slurm.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .mapping import decode_wait_status
from .records import NodeRec, PartitionRec, Rec, Wire

__all__ = ["VERSIONS", "node", "partition", "record", "since_param", "submit_body", "unchanged", "wire"]

VERSIONS = ("v0.0.38",)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def record(raw: Mapping[str, Any]) -> Rec:
    task = _int(raw.get("array_task_id"))
    return Rec(
        job_id=_int(raw.get("job_id")) or 0,
        array_job_id=_int(raw.get("array_job_id")) or 0,
        array_task_id=task,
        array_task_string=_str(raw.get("array_task_string")),
        state=_str(raw.get("job_state")),
        reason=_str(raw.get("state_reason")) or None,
        description=_str(raw.get("state_description")) or None,
        name=_str(raw.get("name")),
        user_name=_str(raw.get("user_name")),
        partition=_str(raw.get("partition")),
        comment=_str(raw.get("comment")),
        dependency=_str(raw.get("dependency")),
        nice=_int(raw.get("nice")),
        priority=_int(raw.get("priority")),
        # v0.0.38 has no hold field: a held job has priority 0
        hold=raw.get("job_state") == "PENDING" and raw.get("priority") == 0,
        submit_time=_int(raw.get("submit_time")) or 0,
        start_time=_int(raw.get("start_time")) or 0,
        end_time=_int(raw.get("end_time")) or 0,
        exit_code=decode_wait_status(raw.get("exit_code")),
        stdout=_str(raw.get("standard_output")),
        stderr=_str(raw.get("standard_error")),
        cwd=_str(raw.get("current_working_directory")),
        restart_cnt=_int(raw.get("restart_cnt")) or 0,
        batch_host=_str(raw.get("batch_host")),
        nodes=_str(raw.get("nodes")),
        raw=raw,
    )


def submit_body(job: Mapping[str, Any], script: str) -> dict[str, Any]:
    body = dict(job)
    tmp = body.pop("tmp_disk_mb", None)
    if tmp is not None:
        body["minimum_tmp_disk_per_node"] = tmp
    return {"script": script, "job": body}


def update_body(changes: Mapping[str, Any]) -> dict[str, Any]:
    return dict(changes)


def node(raw: Mapping[str, Any]) -> NodeRec:
    flags = raw.get("state_flags")
    parts = raw.get("partitions")
    return NodeRec(
        name=_str(raw.get("name")),
        state=_str(raw.get("state")).lower() or "unknown",
        flags=frozenset(str(f).upper() for f in flags) if isinstance(flags, list) else frozenset(),
        cpus=_int(raw.get("cpus")),
        idle_cpus=_int(raw.get("idle_cpus")),
        partitions=tuple(str(p) for p in parts) if isinstance(parts, list) else (),
        address=_str(raw.get("address")),
        reason=_str(raw.get("reason")),
        raw=raw,
    )


def partition(raw: Mapping[str, Any]) -> PartitionRec:
    return PartitionRec(name=_str(raw.get("name")), cpus=_int(raw.get("total_cpus")), raw=raw)


def ping_ok(data: Mapping[str, Any]) -> bool:
    pings = data.get("pings")
    return isinstance(pings, list) and any(isinstance(p, dict) and p.get("ping") == "UP" for p in pings)


def since_param(wall: float, age: float) -> str:
    """A timestamp of this client's clock (v0.0.38 refuses ``now-N``), one second
    early: a change in the second of the last read is read again, not missed."""
    return str(int(wall) - 1)


def unchanged(status: int, data: Mapping[str, Any]) -> bool:
    return status == 304


def wire(version: str) -> Wire:
    return Wire(
        version=version,
        record=record,
        accounting_record=None,
        since_param=since_param,
        unchanged=unchanged,
        submit_body=submit_body,
        update_body=update_body,
        node=node,
        partition=partition,
        ping_ok=ping_ok,
        ignores_name_update=True,
    )
