"""The local farm's values as text: times, the compact JSON of a JobSpec (only the
fields that differ from their defaults), and a jobs row as a Job. No SQL here
(that is store.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import attrs

from ...models import Job, JobSpec, JobStatus, PathMappingRule, Resources, StatusTransition

# -- time ------------------------------------------------------------------------


def to_dt(value: float | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc)


def from_dt(value: datetime) -> float:
    if value.tzinfo is None:
        # naive datetimes are taken as UTC: the models promise aware UTC datetimes
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


# -- JobSpec <-> JSON ------------------------------------------------------------

_SPEC_DEFAULTS: dict[str, Any] = {}
for _f in attrs.fields(JobSpec):
    if _f.default is attrs.NOTHING:  # pragma: no cover - every field has a default
        continue
    if isinstance(_f.default, attrs.Factory):  # type: ignore[arg-type]
        _SPEC_DEFAULTS[_f.name] = _f.default.factory()  # type: ignore[union-attr]
    else:
        _SPEC_DEFAULTS[_f.name] = _f.default
_SPEC_DEFAULTS["env"] = {}
_SPEC_DEFAULTS["parameters"] = {}
_SPEC_DEFAULTS["options"] = {}
_SPEC_DEFAULTS["resources"] = Resources()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    if attrs.has(type(obj)):
        return attrs.asdict(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"))


def dumps(obj: Any) -> str:
    # the empty values are most of what a big batch writes: skip the encoder for them
    if not obj:
        if obj == ():
            return "[]"
        if obj == {}:
            return "{}"
    return _ENCODER.encode(obj)


def spec_to_json(spec: JobSpec) -> str:
    """Only the fields that differ from their defaults: keeps 10,000-spec batches cheap."""
    out: dict[str, Any] = {}
    for name, default in _SPEC_DEFAULTS.items():
        value = getattr(spec, name)
        if value != default:
            out[name] = value
    return dumps(out)


def spec_from_json(text: str) -> JobSpec:
    return spec_from_data(json.loads(text))


def spec_from_data(data: dict[str, Any]) -> JobSpec:
    if "resources" in data:
        data["resources"] = Resources(**data["resources"])
    if "path_mapping" in data:
        data["path_mapping"] = tuple(PathMappingRule(**r) for r in data["path_mapping"])
    if isinstance(data.get("command"), list):
        data["command"] = tuple(data["command"])
    return JobSpec(**data)


def job_from_row(row: Sequence[Any], history: Iterable[StatusTransition], driver: str) -> Job:
    (
        seq,
        job_id,
        name,
        status,
        owner,
        pool,
        tags,
        description,
        priority,
        created_at,
        started_at,
        finished_at,
        exit_code,
        reason,
        paused,
        slots,
        depends_on,
        task_counts,
        updated,
        labels,
    ) = row
    return Job(
        id=job_id,
        status=JobStatus(status),
        driver=driver,
        name=name,
        owner=owner,
        pool=pool,
        tags=tuple(json.loads(tags)),
        description=description,
        priority=priority,
        created_at=to_dt(created_at),
        started_at=to_dt(started_at),
        finished_at=to_dt(finished_at),
        exit_code=exit_code,
        reason=reason,
        history=tuple(history),
        task_counts=json.loads(task_counts),
        depends_on=tuple(json.loads(depends_on)),
        raw={"seq": seq, "paused": bool(paused), "slots": slots, "updated": updated},
        labels=json.loads(labels),
    )
