"""The fields a filter can test, and turning a comparison into a checked value and a test.

Pure data and functions: :mod:`aiofarm.where.nodes` builds on this, and so can a
driver that translates expressions into its back end's own filter language.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, cast

from ..errors import InvalidSpec
from ..models import JobStatus, label_key_problem

if TYPE_CHECKING:
    from ..models import Job

__all__ = [
    "FIELDS",
    "KIND_OPERATORS",
    "NULLABLE",
    "OPERATORS",
    "OPERATOR_HINTS",
    "Kind",
    "Op",
    "UnknownField",
    "build_test",
    "coerce",
    "kind_of",
    "label_key",
    "unknown_field",
]

Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "contains", "matches"]
Kind = Literal["str", "status", "int", "time", "tags", "label"]

OPERATORS: frozenset[str] = frozenset(
    {"==", "!=", "<", "<=", ">", ">=", "in", "contains", "matches"}
)

#: every field a filter can test, with its kind
FIELDS: Mapping[str, Kind] = MappingProxyType(
    {
        "id": "str",
        "name": "str",
        "status": "status",
        "owner": "str",
        "pool": "str",
        "tags": "tags",
        "description": "str",
        "priority": "int",
        "exit_code": "int",
        "created_at": "time",
        "started_at": "time",
        "finished_at": "time",
    }
)
# fields a Job may leave unset: `== None` / `!= None` make sense only on these
NULLABLE = frozenset(
    {"name", "owner", "pool", "description", "exit_code", "created_at", "started_at", "finished_at"}
)
KIND_OPERATORS: Mapping[Kind, frozenset[str]] = MappingProxyType(
    {
        "str": OPERATORS,
        "status": frozenset({"==", "!=", "in"}),
        "int": frozenset({"==", "!=", "<", "<=", ">", ">=", "in"}),
        "time": frozenset({"==", "!=", "<", "<=", ">", ">=", "in"}),
        "tags": frozenset({"contains", "in", "matches"}),
        "label": OPERATORS,
    }
)
OPERATOR_HINTS: Mapping[Kind, str] = MappingProxyType(
    {
        "tags": "; tags take contains, in (any of) or matches (any tag)",
        "status": "; status takes ==, != or in",
    }
)


#: a label is the field ``labels.<key>``: its value, or None (null) where the job has no such label
LABELS = "labels."


def label_key(field: str) -> str | None:
    """``team`` for the field ``labels.team``; None for any other field."""
    return field[len(LABELS) :] if field.startswith(LABELS) else None


def kind_of(field: str) -> Kind | None:
    """The kind of a filterable field (``labels.<key>`` included), None if it is not one."""
    kind = FIELDS.get(field)
    if kind is None and field.startswith(LABELS):
        problem = label_key_problem(field[len(LABELS) :])
        if problem is not None:
            raise InvalidSpec(f"where.{field}", problem)
        return "label"
    return kind


class UnknownField(InvalidSpec, AttributeError):
    """``where.<name>`` for a name that is not a filterable job field. Also an
    ``AttributeError``, so ``hasattr(where, "x")`` and tools that probe attributes
    keep working."""


# -- coercion ----------------------------------------------------------------------


def _bad(field: str, reason: str) -> InvalidSpec:
    return InvalidSpec(f"where.{field}", reason)


def _coerce_one(field: str, kind: Kind, value: object) -> Any:
    if kind == "status":
        if isinstance(value, JobStatus):
            return value
        if isinstance(value, str):
            try:
                return JobStatus(value.strip().lower())
            except ValueError:
                pass
        names = ", ".join(s.value for s in JobStatus)
        raise _bad(field, f"{value!r} is not a job status (one of {names})")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _bad(field, f"{value!r} is not a number")
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                try:
                    value = float(value)
                except ValueError:
                    raise _bad(field, f"{value!r} is not a number") from None
        if isinstance(value, float) and value != value:  # NaN compares false with everything
            raise _bad(field, "NaN is not a usable number")
        if isinstance(value, float) and value in (math.inf, -math.inf):
            raise _bad(field, "an infinite number is not a usable bound")
        return value
    if kind == "time":
        return _coerce_time(field, value)
    # str and tags both compare against strings
    if not isinstance(value, str):
        raise _bad(field, f"{value!r} is not a string")
    _check_text(field, value)
    return str(value)


def _check_text(field: str, value: str) -> None:
    if "\x00" in value:
        raise _bad(field, "a NUL byte is not usable text")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad(field, "a lone surrogate is not usable text") from None


def _coerce_time(field: str, value: object) -> datetime:
    if isinstance(value, str):
        _check_text(field, value)
        text = value.strip()
        if text[-1:] in ("Z", "z"):  # fromisoformat accepts "Z" only from 3.11
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            try:
                value = datetime.fromtimestamp(float(text), timezone.utc)
            except (ValueError, OverflowError, OSError):
                raise _bad(
                    field, f"{value!r} is not an ISO 8601 time or a Unix timestamp"
                ) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            value = datetime.fromtimestamp(value, timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise _bad(field, f"{value!r} is not a usable Unix timestamp") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise _bad(field, f"{value!r} is not a datetime")
    # a naive time is local wall-clock time, as everywhere in Python (datetime.now())
    try:
        return value.astimezone(timezone.utc)
    except (OverflowError, ValueError, OSError):
        raise _bad(field, f"{value.isoformat()} is out of range in UTC") from None


def coerce(field: str, op: str, value: object) -> Any:
    kind = kind_of(field)
    if kind is None:
        raise UnknownField(f"where.{field}", unknown_field(field))
    if op not in OPERATORS:
        raise _bad(field, f"unknown operator {op!r} (one of {', '.join(sorted(OPERATORS))})")
    if op not in KIND_OPERATORS[kind]:
        raise _bad(field, f"operator {op} does not apply to {field}{OPERATOR_HINTS.get(kind, '')}")
    if op == "in":
        if isinstance(value, str) or not isinstance(value, Iterable):
            value = (value,)
        return tuple(_coerce_one(field, kind, v) for v in cast("Iterable[object]", value))
    if value is None:
        if op in ("==", "!=") and (field in NULLABLE or kind == "label"):
            return None
        if op in ("==", "!="):
            raise _bad(field, f"{field} is always set, so None (null) cannot match it")
        raise _bad(field, f"None (null) works only with == and !=, not {op}")
    if op == "matches":
        if not isinstance(value, str):
            raise _bad(field, f"{value!r} is not a regular expression string")
        _check_text(field, value)
        try:
            re.compile(value)
        except re.error as e:
            raise _bad(field, f"bad regular expression {value[:80]!r}: {e}") from None
        except (RecursionError, OverflowError, MemoryError):
            raise _bad(field, "the regular expression is nested too deeply to compile") from None
        return value
    if op == "contains" and kind == "str" and not isinstance(value, str):
        raise _bad(field, f"{value!r} is not a string")
    return _coerce_one(field, kind, value)


_ORDERING: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType(
    {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
)


def build_test(field: str, op: str, value: Any) -> Callable[[Job], bool]:
    """The predicate for ``Compare(field, op, value)`` (value already coerced).

    Unset fields are SQL-like: only ``==``/``!=`` can match them."""
    kind = kind_of(field)
    get: Callable[[Any], Any] = operator.attrgetter(field)
    key = label_key(field)
    if key is not None:

        def get(job: Any) -> Any:
            return job.labels.get(key)

    if kind == "time":
        raw_get = get

        def get(job: Any) -> Any:
            t = raw_get(job)
            # models promise UTC; a naive time from a driver is read as UTC, not a crash
            return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t

    if kind == "tags":
        if op == "contains":
            return lambda job: value in (get(job) or ())
        if op == "in":
            wanted = frozenset(value)
            return lambda job: not wanted.isdisjoint(get(job) or ())
        pattern = re.compile(value)
        return lambda job: any(pattern.search(t) is not None for t in get(job) or ())
    if op == "==":
        return lambda job: bool(get(job) == value)
    if op == "!=":
        return lambda job: bool(get(job) != value)
    if op == "in":
        members = frozenset(value)  # every coerced value is hashable
        return lambda job: (v := get(job)) is not None and v in members
    if op == "contains":
        return lambda job: (v := get(job)) is not None and value in v
    if op == "matches":
        pattern = re.compile(value)
        return lambda job: (v := get(job)) is not None and pattern.search(v) is not None
    compare = _ORDERING[op]

    def ordered(job: Any) -> bool:
        v = get(job)
        if v is None:
            return False
        try:
            return bool(compare(v, value))
        except TypeError:  # a driver put an odd type in the model: no match, not a crash
            return False

    return ordered


def unknown_field(name: str) -> str:
    return f"unknown field {name!r} (one of {', '.join(FIELDS)}, labels.<key>)"

