"""Slurm job records in one shape, whatever API generation they came from, and
the :class:`Wire` interface every generation's module fills in.

Each wire module (``wire_v0038``, ``wire_v0040``, ``wire_v0042``) turns its
version's JSON into :class:`Rec` / :class:`NodeRec`; everything above (the
models, the driver) reads only these. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

__all__ = ["NodeRec", "PartitionRec", "Rec", "Wire"]


@attrs.frozen
class Rec:
    """One Slurm job (or one array task) as aiofarm reads it."""

    job_id: int
    #: the array's id for an array task, else 0
    array_job_id: int = 0
    #: the task index of an array task that has its own record
    array_task_id: int | None = None
    #: the not yet split remainder of a pending array (e.g. ``"3-49%5"``)
    array_task_string: str = ""
    state: str = ""
    #: the other items of a v0.0.4x ``job_state`` list (``REQUEUED``, ``COMPLETING``...)
    flags: tuple[str, ...] = ()
    reason: str | None = None
    description: str | None = None
    name: str = ""
    user_name: str = ""
    partition: str = ""
    comment: str = ""
    dependency: str = ""
    nice: int | None = None
    priority: int | None = None
    hold: bool = False
    submit_time: int = 0
    start_time: int = 0
    end_time: int = 0
    #: exit code, or minus the signal that ended it; None while unknown
    exit_code: int | None = None
    #: output paths: expanded by Slurm where the version does, else the pattern
    stdout: str = ""
    stderr: str = ""
    cwd: str = ""
    restart_cnt: int = 0
    batch_host: str = ""
    nodes: str = ""
    #: where it came from: "ctld" (slurmctld) or "dbd" (accounting)
    source: str = "ctld"
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)

    @property
    def key(self) -> str:
        """The aiofarm job id this record belongs to (an array task: the array's)."""
        return str(self.array_job_id) if self.array_job_id > 0 else str(self.job_id)


@attrs.frozen
class NodeRec:
    name: str
    state: str  # lower case base state: idle, mixed, allocated, down...
    flags: frozenset[str]  # upper case: DRAIN, NOT_RESPONDING...
    cpus: int | None
    idle_cpus: int | None
    partitions: tuple[str, ...]
    address: str
    reason: str
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen
class PartitionRec:
    name: str
    cpus: int | None
    raw: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.frozen
class Wire:
    """How one API version reads and writes."""

    version: str
    #: a job record of ``GET /jobs`` / ``GET /job/{id}``
    record: Callable[[Mapping[str, Any]], Rec]
    #: a job record of ``GET /slurmdb/{version}/jobs`` (None: aiofarm does not read it)
    accounting_record: Callable[[Mapping[str, Any]], Rec] | None
    #: the ``update_time`` of a conditional ``GET /jobs`` from the wall time of the
    #: last read and its age in seconds (this version's accepted form)
    since_param: Callable[[float, float], str]
    #: whether a conditional ``GET /jobs`` answer (HTTP status, body) says nothing
    #: changed since ``update_time`` (slurmctld answers all its jobs or none)
    unchanged: Callable[[int, Mapping[str, Any]], bool]
    #: (job description, batch script) -> ``POST /job/submit`` body
    submit_body: Callable[[Mapping[str, Any], str], dict[str, Any]]
    #: an update (``POST /job/{id}``) body from a mapping of job properties
    update_body: Callable[[Mapping[str, Any]], dict[str, Any]]
    node: Callable[[Mapping[str, Any]], NodeRec]
    partition: Callable[[Mapping[str, Any]], PartitionRec]
    #: whether a ``GET /ping`` answer says slurmctld responds
    ping_ok: Callable[[Mapping[str, Any]], bool]
    #: slurmrestd answers 200 to a job name change and ignores it (v0.0.38)
    ignores_name_update: bool = False
