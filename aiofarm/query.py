"""Listing queries: checking a ``jobs.list(...)`` call into a :class:`ListQuery`, and all
of its conditions as one filter expression (what a driver's native filter and the
client's remainder are cut from, so results are the same on every driver)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import InvalidSpec
from .models import JobStatus
from .validation import MAX_TAG_LEN, check_datetime, check_text

if TYPE_CHECKING:
    from .drivers.base import ListQuery
    from .where import Expr

__all__ = ["build_query", "where_of"]


def _coerce_status(value: JobStatus | str, field: str) -> JobStatus:
    if isinstance(value, JobStatus):
        return value
    if isinstance(value, str):
        try:
            return JobStatus(value.lower())
        except ValueError:
            pass
    choices = ", ".join(s.value for s in JobStatus)
    raise InvalidSpec(field, f"{value!r} is not a status ({choices})")


def _aware(value: datetime | None, field: str) -> datetime | None:
    return check_datetime(value, field)


def build_query(
    statuses: Iterable[JobStatus | str] | None,
    name: str | None,
    tags: Sequence[str],
    owners: Sequence[str],
    since: datetime | None,
    until: datetime | None,
    pool: str | None,
    where: Expr | str | None,
    reverse: bool,
) -> ListQuery:
    from .drivers.base import ListQuery

    status_set: frozenset[JobStatus] | None = None
    if statuses is not None:
        if isinstance(statuses, (str, JobStatus)):
            statuses = [statuses]
        status_set = frozenset(_coerce_status(s, "statuses") for s in statuses)
    for field, value in (("name", name), ("pool", pool)):
        if value is not None:
            check_text(value, field)
    for field, seq in (("tags", tags), ("owners", owners)):
        if isinstance(seq, (str, bytes)) or not isinstance(seq, Iterable):
            raise InvalidSpec(field, "must be a sequence of strings")
        for i, item in enumerate(seq):
            check_text(item, f"{field}[{i}]", limit=MAX_TAG_LEN)
    expr: Expr | None
    if isinstance(where, str):
        from .where import parse

        expr = parse(where)
    else:
        from .where import Expr as _Expr

        if where is not None and not isinstance(where, _Expr):
            raise InvalidSpec("where", f"must be an aiofarm.where expression or text, got {type(where).__name__}")
        expr = where
    return ListQuery(
        statuses=status_set,
        name=name,
        tags=tuple(tags),
        owners=tuple(owners),
        since=_aware(since, "since"),
        until=_aware(until, "until"),
        pool=pool,
        where=expr,
        reverse=bool(reverse),
    )


def where_of(query: ListQuery) -> Expr | None:
    """Every condition of ``query`` as one expression (None: everything matches)."""
    from .where import conjoin, where

    parts: list[Expr] = []
    if query.statuses is not None:
        parts.append(where.status.in_(sorted(s.value for s in query.statuses)))
    if query.name is not None:
        parts.append(where.name == query.name)
    parts.extend(where.tags.contains(tag) for tag in query.tags)
    if query.owners:
        parts.append(where.owner.in_(query.owners))
    if query.pool is not None:
        parts.append(where.pool == query.pool)
    if query.since is not None:
        parts.append(where.created_at >= query.since)
    if query.until is not None:
        parts.append(where.created_at <= query.until)
    if query.where is not None:
        parts.append(query.where)
    return conjoin(parts)
