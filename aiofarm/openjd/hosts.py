"""Host requirements of a step (``hostRequirements``) checked against this host, for
drivers that run tasks here (local). A task whose step asks for what the host cannot
give fails with a reason naming the requirement: silently running it where it was told
not to run is worse (a GPU render on a CPU box, a Windows tool on Linux).

Amounts (``amount.worker.vcpu``, ``amount.worker.memory`` in MiB, ``amount.worker.gpu``,
``amount.worker.gpu.memory``, ``amount.worker.disk.scratch`` in GiB) are compared with
what this host has; attributes ``attr.worker.os.family`` (linux, macos, windows) and
``attr.worker.cpu.arch`` (x86_64, arm64) with what it is. A custom amount or attribute
(``amount.custom.*``, ``attr.custom.*``) names a capability a farm administrator
defines: the local farm has none, so it is unmet. ``spec.options["openjd_ignore_host_requirements"]
= True`` runs the tasks anyway.
"""

from __future__ import annotations

import os
import platform
import shutil
import sys
from typing import Any

from ..errors import InvalidSpec
from ..models import JobSpec

__all__ = ["UnmetRequirement", "host_amounts", "host_attributes", "unmet_requirement"]


class UnmetRequirement(InvalidSpec):
    """A step's host requirement this host cannot meet (retrying does not help)."""


def host_amounts(workdir: str) -> dict[str, float]:
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20
    except (ValueError, OSError, AttributeError):
        memory = 0.0
    amounts = {
        "amount.worker.vcpu": float(os.cpu_count() or 1),
        "amount.worker.memory": float(memory),
        "amount.worker.gpu": 0.0,
        "amount.worker.gpu.memory": 0.0,
    }
    try:
        amounts["amount.worker.disk.scratch"] = shutil.disk_usage(workdir).free / 2**30
    except OSError:
        amounts["amount.worker.disk.scratch"] = 0.0
    return amounts


def host_attributes() -> dict[str, str]:
    family = {"linux": "linux", "darwin": "macos", "win32": "windows"}.get(sys.platform, sys.platform)
    machine = platform.machine().lower()
    arch = {"amd64": "x86_64", "x86_64": "x86_64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return {"attr.worker.os.family": family, "attr.worker.cpu.arch": arch}


def _text(value: Any) -> str:
    return str(getattr(value, "value", value))


def unmet_requirement(spec: JobSpec, step_name: str, workdir: str) -> str | None:
    """Why this host cannot run the step's tasks, or None when it can (or has no say)."""
    from .instance import job_instance

    if spec.template is None or spec.options.get("openjd_ignore_host_requirements") is True:
        return None
    step = job_instance(spec).steps.get(step_name)
    reqs = getattr(step, "hostRequirements", None)
    if reqs is None:
        return None
    amounts: dict[str, float] | None = None
    for req in reqs.amounts or ():
        name = _text(req.name)
        if amounts is None:
            amounts = host_amounts(workdir)
        have = amounts.get(name)
        low = float(req.min) if req.min is not None else None
        high = float(req.max) if getattr(req, "max", None) is not None else None
        if have is None:
            return f"host requirement {name} cannot be met: this host does not define it"
        if low is not None and have < low:
            return f"host requirement {name} >= {low:g} cannot be met: this host has {have:g}"
        if high is not None and have > high:
            return f"host requirement {name} <= {high:g} cannot be met: this host has {have:g}"
    attrs = host_attributes()
    for req in reqs.attributes or ():
        name = _text(req.name)
        have_value = attrs.get(name)
        if have_value is None:
            return f"host requirement {name} cannot be met: this host does not define it"
        any_of = [_text(v).lower() for v in (getattr(req, "anyOf", None) or ())]
        all_of = [_text(v).lower() for v in (getattr(req, "allOf", None) or ())]
        if any_of and have_value not in any_of:
            return f"host requirement {name} in {any_of} cannot be met: this host is {have_value}"
        if all_of and any(v != have_value for v in all_of):
            return f"host requirement {name} all of {all_of} cannot be met: this host is {have_value}"
    return None
