"""A job as steps and tasks: the shape drivers that run work themselves (local)
execute, and drivers that submit array jobs (slurm) read.

A plain command job is the one-step, one-task case of the same model, so retry,
``tasks()``, ``failed_tasks`` and task logs work the same for both. A template
(Open Job Description) job's steps and tasks come from its parameter spaces
(:func:`plan_template`); the process of one task from :mod:`aiofarm.openjd.taskrun`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ..models import JobSpec, as_tuple, command_argv, frozen_map

__all__ = ["COMMAND_STEP", "RunSpec", "StepPlan", "TaskPlan", "command_argv", "plan_job", "plan_template"]

COMMAND_STEP = "main"


@attrs.frozen
class TaskPlan:
    """One point of a step's parameter space, e.g. ``{"Frame": 12}``."""

    parameters: Mapping[str, Any] = attrs.field(factory=dict, converter=frozen_map)


@attrs.frozen
class StepPlan:
    name: str
    tasks: tuple[TaskPlan, ...] = attrs.field(converter=as_tuple)
    depends_on: tuple[str, ...] = attrs.field(factory=tuple, converter=as_tuple)  # step names


@attrs.frozen
class RunSpec:
    """One process to start for one task attempt."""

    argv: tuple[str, ...] = attrs.field(converter=as_tuple)
    env: Mapping[str, str] = attrs.field(factory=dict, converter=frozen_map)
    cwd: str | None = None
    timeout: float | None = None
    # seconds between the notify signal (SIGTERM) and SIGKILL on cancel; None: driver default
    cancel_grace: float | None = None
    # the OpenJD session directory: the driver removes it once the process has ended
    # (the spec deletes it when the session ends), unless the job keeps it for debugging
    # (``options["openjd_keep_session_dir"]``); None when the task runs in a shared one
    session_dir: str | None = None


def plan_job(spec: JobSpec) -> tuple[StepPlan, ...]:
    """The steps and tasks of ``spec``."""
    if spec.template is not None:
        return plan_template(spec)
    return (StepPlan(COMMAND_STEP, (TaskPlan(),)),)


def plan_template(spec: JobSpec) -> tuple[StepPlan, ...]:
    """Steps in dependency order, each with the names of the steps it depends on and
    its tasks (one per point of its parameter space; a CHUNK[INT] parameter gives one
    task per chunk, its value a range expression like ``"1-7"``)."""
    from openjd.model import StepDependencyGraph, StepParameterSpaceIterator

    from .instance import job_instance
    from .parameters import typed_value

    ctx = job_instance(spec)
    graph = StepDependencyGraph(job=ctx.job)
    plans = []
    for step in graph.topo_sorted():
        space = StepParameterSpaceIterator(space=step.parameterSpace)
        tasks = tuple(
            TaskPlan({pn: typed_value(pv.type.value, pv.value) if pv.type.value != "CHUNK[INT]" else str(pv.value)
                      for pn, pv in point.items()})
            for point in space
        )
        deps = tuple(str(d.dependsOn) for d in (step.dependencies or ()))
        plans.append(StepPlan(str(step.name), tasks, deps))
    return tuple(plans)
