"""SearchJobs filter expressions, evaluated on the fake's jobs."""

from __future__ import annotations

import datetime as dt
from typing import Any

from .records import USER, Job, aggregate, invalid

__all__ = ["match_group", "sort_key"]

_DATE_FIELDS = {
    "CREATED_AT": "created",
    "UPDATED_AT": "updated",
    "STARTED_AT": "started",
    "ENDED_AT": "ended",
}


def sort_key(job: Job, name: str) -> Any:
    if name in _DATE_FIELDS:
        value = getattr(job, _DATE_FIELDS[name])
        return value or dt.datetime.min.replace(tzinfo=dt.timezone.utc)
    if name == "TASK_RUN_STATUS":
        return aggregate(job.counts())
    if name == "NAME":
        return job.name
    if name == "PRIORITY":
        return job.priority
    if name == "CREATED_BY":
        return USER
    if name == "JOB_ID":
        return job.job_id
    if name == "LIFECYCLE_STATUS":
        return job.lifecycle
    raise invalid(f"unknown search field {name!r}")


def _compare(a: Any, op: str, b: Any) -> bool:
    if op in ("EQUAL", "ANY_EQUALS"):
        return bool(a == b)
    if op in ("NOT_EQUAL", "ALL_NOT_EQUALS"):
        return bool(a != b)
    if op == "GREATER_THAN_EQUAL_TO":
        return bool(a >= b)
    if op == "GREATER_THAN":
        return bool(a > b)
    if op == "LESS_THAN_EQUAL_TO":
        return bool(a <= b)
    return bool(a < b)


def match_group(job: Job, group: dict[str, Any]) -> bool:
    results = (_match_one(job, f) for f in group["filters"])
    return all(results) if group["operator"] == "AND" else any(results)


def _match_one(job: Job, f: dict[str, Any]) -> bool:
    if "groupFilter" in f:
        return match_group(job, f["groupFilter"])
    if "dateTimeFilter" in f:
        e = f["dateTimeFilter"]
        if e["name"] not in _DATE_FIELDS:
            raise invalid(f"unknown date-time field {e['name']!r}")
        value = getattr(job, _DATE_FIELDS[e["name"]])
        return value is not None and _compare(value, e["operator"], e["dateTime"])
    if "stringFilter" in f:
        e = f["stringFilter"]
        value = sort_key(job, e["name"])
        if e["name"] == "PRIORITY":  # a number on the service, though sent as text
            try:
                return _compare(value, e["operator"], int(e["value"]))
            except ValueError:
                raise invalid(f"PRIORITY needs a number, got {e['value']!r}") from None
        return _compare(str(value), e["operator"], e["value"])
    if "stringListFilter" in f:
        e = f["stringListFilter"]
        value = str(sort_key(job, e["name"]))
        if e["operator"] in ("ANY_EQUALS", "EQUAL"):
            return value in e["values"]
        return value not in e["values"]
    if "searchTermFilter" in f:
        term = f["searchTermFilter"]["searchTerm"]
        return term.lower() in job.name.lower()
    if "parameterFilter" in f:
        e = f["parameterFilter"]
        wire = job.parameters.get(e["name"])
        return wire is not None and _compare(next(iter(wire.values())), e["operator"], e["value"])
    raise invalid("empty filter expression")
