"""Listing queries: checking a ``jobs.list(...)`` call into a :class:`ListQuery`, and the
client-side test every listed job passes, so results are the same on every driver."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import InvalidSpec
from .models import Job, JobStatus

if TYPE_CHECKING:
    from .drivers.base import ListQuery
    from .where import Expr

__all__ = ["build_query", "matches"]


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
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidSpec(field, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        raise InvalidSpec(field, "must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return value


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
        if value is not None and (not isinstance(value, str) or not value):
            raise InvalidSpec(field, "must be a non-empty string")
    for field, seq in (("tags", tags), ("owners", owners)):
        if isinstance(seq, str) or not all(isinstance(x, str) for x in seq):
            raise InvalidSpec(field, "must be a sequence of strings")
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


def matches(q: ListQuery, job: Job) -> bool:
    if q.statuses is not None and job.status not in q.statuses:
        return False
    if q.name is not None and job.name != q.name:
        return False
    if q.tags and not set(q.tags).issubset(job.tags):
        return False
    if q.owners and job.owner not in q.owners:
        return False
    if q.pool is not None and job.pool != q.pool:
        return False
    if q.since is not None and (job.created_at is None or job.created_at < q.since):
        return False
    if q.until is not None and (job.created_at is None or job.created_at > q.until):
        return False
    return q.where is None or q.where.evaluate(job)
