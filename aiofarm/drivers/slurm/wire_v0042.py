"""slurmrestd v0.0.42 to v0.0.45 (Slurm 24.05 to 26.05) JSON <-> records. Pure.

The same shapes as v0.0.40/41 (``wire_v0040`` reads them); what differs from
one version to the next is data, in :data:`JOB_FIELDS`: v0.0.43 shows the output
paths as submitted again and puts the expanded ones in ``stdout_expanded`` /
``stderr_expanded``. Fields a version dropped or added that aiofarm does not read
(``exclusive``, ``power``, ``step_id``...) need nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from . import wire_v0040
from .records import Rec, Wire

__all__ = ["JOB_FIELDS", "VERSIONS", "wire"]

VERSIONS = ("v0.0.45", "v0.0.44", "v0.0.43", "v0.0.42")

_EXPANDED = {
    "stdout": ("stdout_expanded", "standard_output"),
    "stderr": ("stderr_expanded", "standard_error"),
}
#: where each version keeps the fields that moved (first present key wins)
JOB_FIELDS: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "v0.0.42": wire_v0040.JOB_FIELDS,
    "v0.0.43": _EXPANDED,
    "v0.0.44": _EXPANDED,
    "v0.0.45": _EXPANDED,
}


def record(version: str, raw: Mapping[str, Any]) -> Rec:
    return wire_v0040.record(raw, JOB_FIELDS[version])


def wire(version: str) -> Wire:
    return Wire(
        version=version,
        record=functools.partial(record, version),
        accounting_record=wire_v0040.accounting_record,
        since_param=wire_v0040.since_param,
        unchanged=wire_v0040.unchanged,
        submit_body=wire_v0040.submit_body,
        update_body=wire_v0040.update_body,
        node=wire_v0040.node,
        partition=wire_v0040.partition,
        ping_ok=wire_v0040.ping_ok,
    )
