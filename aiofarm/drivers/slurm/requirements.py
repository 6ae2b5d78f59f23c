"""Open Job Description host requirements as Slurm job properties. Pure.

A step's ``hostRequirements`` say what a worker host must have; on Slurm they become
what the step's job asks for, so the scheduler picks (or waits for) a node that has it:

- ``amount.worker.vcpu`` min -> ``cpus_per_task``; ``amount.worker.memory`` (MiB) min ->
  ``memory_per_node``; ``amount.worker.gpu`` min -> GPUs (``gres/gpu``);
  ``amount.worker.disk.scratch`` (GiB) min -> temporary disk per node;
- attributes (``attr.worker.os.family``, ``attr.worker.cpu.arch``, ``attr.custom.*``) ->
  node features, the site's names for what its nodes are: each value a feature,
  ``anyOf`` as ``(a|b)``, ``allOf`` as ``a&b``, all of them joined with ``&`` into
  ``constraints`` (the test clusters' node has ``linux``, its machine, ``fx`` and ``lab``).

What Slurm cannot ask for raises ``UnsupportedError("slurm", "hostRequirements.<name>")``:
an amount's ``max`` (Slurm allocates what a job asks, it cannot bound the node), GPU
memory, and custom amounts. ``spec.options["openjd_ignore_host_requirements"] = True``
submits without them, as on the local farm.
"""

from __future__ import annotations

import math
from typing import Any

from ...errors import UnsupportedError
from ...models import JobSpec

__all__ = ["step_requirements"]

DRIVER = "slurm"
# the job description keys each amount's min sets, and how
_AMOUNTS: dict[str, tuple[str, float]] = {
    "amount.worker.vcpu": ("cpus_per_task", 1),
    "amount.worker.memory": ("memory_per_node", 1),  # MiB
    "amount.worker.gpu": ("gpus", 1),
    "amount.worker.disk.scratch": ("tmp_disk_mb", 1024),  # GiB -> MiB
}


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def step_requirements(spec: JobSpec, step_name: str) -> dict[str, Any]:
    """The job description properties that ask Slurm for the step's host requirements."""
    from ...openjd.instance import job_instance

    if spec.template is None or spec.options.get("openjd_ignore_host_requirements") is True:
        return {}
    step = job_instance(spec).steps.get(step_name)
    reqs = getattr(step, "hostRequirements", None)
    if reqs is None:
        return {}
    out: dict[str, Any] = {}
    for req in reqs.amounts or ():
        name = _text(req.name)
        if name not in _AMOUNTS:
            raise UnsupportedError(
                DRIVER, f"hostRequirements.{name}",
                "Slurm asks for CPUs, memory, GPUs and temporary disk (amount.worker.vcpu, memory, gpu, disk.scratch)",
            )
        if getattr(req, "max", None) is not None:
            raise UnsupportedError(
                DRIVER, f"hostRequirements.{name}.max", "Slurm allocates what a job asks for; it cannot bound the node",
            )
        if req.min is not None:
            key, scale = _AMOUNTS[name]
            out[key] = max(1, math.ceil(float(req.min) * scale))
    constraints: list[str] = []
    for req in reqs.attributes or ():
        # openjd-model lets only identifiers through: each a valid feature name
        any_of = [_text(v) for v in (getattr(req, "anyOf", None) or ())]
        all_of = [_text(v) for v in (getattr(req, "allOf", None) or ())]
        if all_of:
            constraints.append("&".join(all_of))
        if any_of:
            constraints.append(any_of[0] if len(any_of) == 1 else "(" + "|".join(any_of) + ")")
    if constraints:
        out["constraints"] = "&".join(constraints)
    return out
