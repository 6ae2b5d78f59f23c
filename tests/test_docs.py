"""docs/drivers.md's capability table is the drivers' own `capabilities`, so it
cannot drift: when a driver gains or loses a feature this test prints the new table."""

from __future__ import annotations

import importlib
from pathlib import Path

from aiofarm import Capability
from aiofarm.drivers.base import Driver

DRIVERS = {
    "local": "aiofarm.drivers.local:LocalDriver",
    "slurm+http / slurm+unix": "aiofarm.drivers.slurm:SlurmDriver",
    "deadline": "aiofarm.drivers.deadline:DeadlineDriver",
    "ray+http / ray+https": "aiofarm.drivers.ray:RayDriver",
    "dummy (tests)": "aiofarm.drivers.dummy:DummyDriver",
}
BEGIN = "<!-- capability-table:begin -->"
END = "<!-- capability-table:end -->"


def render() -> str:
    classes = {}
    for label, target in DRIVERS.items():
        module, _, attr = target.partition(":")
        classes[label] = getattr(importlib.import_module(module), attr)
    head = "| capability | " + " | ".join(classes) + " |"
    rule = "|---|" + "---|" * len(classes)
    rows = [
        f"| `{cap.value}` | " + " | ".join(_cell(cls, cap) for cls in classes.values()) + " |"
        for cap in Capability
    ]
    return "\n".join([head, rule, *rows])


def _cell(cls: type[Driver], cap: Capability) -> str:
    if cap in cls.capabilities:
        return "yes"
    if cap in cls.fixed_parameters:
        return f"only `{cap.parameter}={cls.fixed_parameters[cap]!r}`"
    return "—"


def test_capability_table_matches_the_drivers() -> None:
    text = (Path(__file__).parent.parent / "docs" / "drivers.md").read_text()
    table = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    expected = render()
    assert table == expected, f"docs/drivers.md is stale; the table is now:\n{expected}"
