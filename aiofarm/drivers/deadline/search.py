"""SearchJobs filter expressions: what Deadline Cloud filters natively (pure, no I/O).

A listing's statuses, name, since/until and its ``where`` expression become one
``filterExpressions`` group; the client re-evaluates the whole query on every job that
comes back, so a translation only ever has to select a superset of the true answer.
Parts of ``where`` that have no SearchJobs equivalent (``matches``, tags and
description, which live in the job description, ``Not``) are left to the client.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...models import JobStatus
from .wire import status_filter_values

if TYPE_CHECKING:
    from ...where.nodes import Expr
    from ..base import ListQuery

__all__ = [
    "CHANGE_FIELDS",
    "changes_filter",
    "list_filters",
    "search_filters",
    "translate_where",
]

#: SearchJobs takes at most 3 filters per group
_GROUP_MAX = 3

# a job's status changes when it starts, when it ends, or when someone updates it
# (suspend, cancel, requeue); lesser moves (READY -> ASSIGNED) are left to full rounds
CHANGE_FIELDS = ("STARTED_AT", "ENDED_AT", "UPDATED_AT")

_TIME_FIELDS = {"created_at": "CREATED_AT", "started_at": "STARTED_AT", "finished_at": "ENDED_AT"}
_STRING_FIELDS = {"id": "JOB_ID", "name": "NAME", "owner": "CREATED_BY", "priority": "PRIORITY"}
_OPS = {
    "==": "EQUAL",
    "!=": "NOT_EQUAL",
    "<": "LESS_THAN",
    "<=": "LESS_THAN_EQUAL_TO",
    ">": "GREATER_THAN",
    ">=": "GREATER_THAN_EQUAL_TO",
}


def _group(operator: str, filters: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A filter group; SearchJobs allows at most 3 filters per group, so nest."""
    filters = list(filters)
    while len(filters) > _GROUP_MAX:
        filters = [
            {"groupFilter": {"operator": operator, "filters": filters[i : i + _GROUP_MAX]}}
            for i in range(0, len(filters), _GROUP_MAX)
        ]
    return {"operator": operator, "filters": filters}


def _one(operator: str, filters: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One filter for ``filters`` joined by ``operator`` (itself when alone)."""
    if len(filters) == 1:
        return filters[0]
    return {"groupFilter": _group(operator, filters)}


def _date(name: str, operator: str, value: datetime) -> dict[str, Any]:
    return {"dateTimeFilter": {"name": name, "operator": operator, "dateTime": value}}


def _string(name: str, operator: str, value: str) -> dict[str, Any]:
    return {"stringFilter": {"name": name, "operator": operator, "value": value}}


def changes_filter(since: datetime) -> dict[str, Any]:
    """SearchJobs filterExpressions: jobs started, ended or updated at or after ``since``."""
    return _group("OR", [_date(name, "GREATER_THAN_EQUAL_TO", since) for name in CHANGE_FIELDS])


def _statuses(statuses: frozenset[JobStatus], negate: bool = False) -> dict[str, Any]:
    values = status_filter_values(statuses) or ["__none__"]
    op = "NOT_EQUAL" if negate else "EQUAL"
    return _one("AND" if negate else "OR", [_string("TASK_RUN_STATUS", op, v) for v in values])


def _compare(field: str, op: str, value: Any) -> dict[str, Any] | None:
    """One ``where`` comparison as a filter, or None when SearchJobs has no equivalent."""
    if value is None:
        return None
    if field == "status":
        if op == "==":
            return _statuses(frozenset({value}))
        if op == "!=":
            return _statuses(frozenset({value}), negate=True)
        if op == "in":
            return _statuses(frozenset(value))
        return None
    if field in _TIME_FIELDS:
        name = _TIME_FIELDS[field]
        if op == "in":
            return _one("OR", [_date(name, "EQUAL", v) for v in value]) if value else None
        return _date(name, _OPS[op], value) if op in _OPS else None
    if field in _STRING_FIELDS:
        name = _STRING_FIELDS[field]
        if field == "name" and op == "contains" and value:
            # CONTAINS may match more loosely (case): a superset, which is fine
            return {"searchTermFilter": {"searchTerm": value[:256], "matchType": "CONTAINS"}}
        if field != "priority" and op not in ("==", "!=", "in"):
            return None  # string ordering on the service is not aiofarm's
        texts = [str(v) for v in (value if op == "in" else (value,))]
        if not texts or any(not 1 <= len(t) <= 256 for t in texts):
            return None
        if op == "in":
            return _one("OR", [_string(name, "EQUAL", t) for t in texts])
        return _string(name, _OPS[op], texts[0]) if op in _OPS else None
    return None


def translate_where(expr: Expr | None) -> dict[str, Any] | None:
    """A filter selecting a superset of what ``expr`` matches; None: no native part.

    And keeps whatever parts translate (dropping a part only widens the result); Or
    translates only when every branch does; Not never does."""
    from ...where.nodes import And, Compare, Or

    if expr is None:
        return None
    if isinstance(expr, Compare):
        return _compare(expr.field, expr.op, expr.value)
    if isinstance(expr, And):
        parts = [p for p in (translate_where(expr.left), translate_where(expr.right)) if p]
        return _one("AND", parts) if parts else None
    if isinstance(expr, Or):
        left, right = translate_where(expr.left), translate_where(expr.right)
        return _one("OR", [left, right]) if left and right else None
    return None


def search_filters(
    statuses: frozenset[JobStatus] | None,
    name: str | None,
    since: datetime | None,
    until: datetime | None,
    threshold: tuple[str, datetime] | None,
    where: Expr | None = None,
) -> dict[str, Any] | None:
    """SearchJobs filterExpressions for what Deadline can filter natively.

    ``threshold`` is ("GREATER_THAN_EQUAL_TO" | "LESS_THAN_EQUAL_TO", createdAt): the
    restart point past the service's 10,000-result window."""
    parts: list[dict[str, Any]] = []
    if statuses is not None:
        parts.append(_statuses(statuses))
    if name:
        parts.append({"searchTermFilter": {"searchTerm": name[:256], "matchType": "CONTAINS"}})
    if since is not None:
        parts.append(_date("CREATED_AT", "GREATER_THAN_EQUAL_TO", since))
    if until is not None:
        parts.append(_date("CREATED_AT", "LESS_THAN_EQUAL_TO", until))
    if threshold is not None:
        parts.append(_date("CREATED_AT", threshold[0], threshold[1]))
    native = translate_where(where)
    if native is not None:
        parts.append(native)
    if not parts:
        return None
    if len(parts) == 1 and "groupFilter" in parts[0]:
        return dict(parts[0]["groupFilter"])
    return _group("AND", parts)


def list_filters(query: ListQuery, threshold: tuple[str, datetime] | None) -> dict[str, Any] | None:
    return search_filters(
        query.statuses, query.name, query.since, query.until, threshold, query.where
    )
