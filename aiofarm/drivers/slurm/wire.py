"""The API generations aiofarm speaks and how it picks one.

One pure module per generation turns that generation's JSON into the records of
:mod:`.records` and a job description into its submit body:

- ``wire_v0038``: v0.0.38 (Slurm 22.05, 23.02)
- ``wire_v0040``: v0.0.40 and v0.0.41 (Slurm 23.11 to 24.11)
- ``wire_v0042``: v0.0.42 and later (Slurm 24.05 to 26.05), the differences
  between them as a table of data

The driver above them is the same for every version.
"""

from __future__ import annotations

from collections.abc import Callable

from . import wire_v0038, wire_v0040, wire_v0042
from .records import Wire

__all__ = ["KNOWN_VERSIONS", "Wire", "for_version"]


def _generations() -> dict[str, Callable[[str], Wire]]:
    out: dict[str, Callable[[str], Wire]] = {}
    for module in (wire_v0038, wire_v0040, wire_v0042):
        for version in module.VERSIONS:
            out[version] = module.wire
    return out


#: every version aiofarm speaks, newest first
KNOWN_VERSIONS: tuple[str, ...] = (
    "v0.0.45",
    "v0.0.44",
    "v0.0.43",
    "v0.0.42",
    "v0.0.41",
    "v0.0.40",
    "v0.0.38",
)


def for_version(version: str) -> Wire:
    """The wire of ``version`` (KeyError: not one aiofarm speaks)."""
    return _generations()[version](version)
