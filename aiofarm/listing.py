"""Listing, sorting and counting jobs, once for every driver (``jobs.list`` /
``jobs.count``; Descartes Labs compute's search with sort and count).

Every condition of a listing (``statuses=``, ``name=``, ... and ``where=``) becomes
one filter expression. The driver's :meth:`~aiofarm.drivers.base.Driver.plan_list`
says which part its back end filters natively and whether it sorts and counts; the
client evaluates the remainder on each job, sorts what the back end did not
(fetching every match first), and counts by listing when the back end cannot.
Results are the same on every driver; only the number of requests differs.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import attrs

from .errors import InvalidSpec
from .models import Job

if TYPE_CHECKING:
    from .drivers.base import Driver, ListPlan, ListQuery, SortKey

__all__ = ["count", "iterate", "parse_sort", "plan"]


def parse_sort(sort: str | Sequence[str] | None) -> tuple[SortKey, ...]:
    """``"priority"``, ``"-created_at"`` (descending), or a sequence of those, most
    significant first."""
    from .drivers.base import SortKey
    from .where.fields import FIELDS

    if sort is None:
        return ()
    items = [sort] if isinstance(sort, str) else sort
    if not isinstance(items, Sequence) or isinstance(items, (bytes, bytearray)):
        raise InvalidSpec("sort", f"must be a field name or a sequence of them, got {type(sort).__name__}")
    keys: list[SortKey] = []
    for i, item in enumerate(items):
        field = "sort" if isinstance(sort, str) else f"sort[{i}]"
        if not isinstance(item, str) or not item.lstrip("-+"):
            raise InvalidSpec(field, f"must be a field name such as 'priority' or '-created_at', got {item!r}")
        name = item.lstrip("-+")
        if FIELDS.get(name) in (None, "tags"):
            sortable = ", ".join(f for f, kind in FIELDS.items() if kind != "tags")
            raise InvalidSpec(field, f"cannot sort by {name!r} (one of {sortable})")
        if any(k.field == name for k in keys):
            raise InvalidSpec(field, f"{name!r} appears twice")
        keys.append(SortKey(name, item.startswith("-")))
    return tuple(keys)


def plan(driver: Driver, query: ListQuery) -> tuple[ListQuery, ListPlan]:
    """The query the driver receives (``where`` = its native part) and its plan."""
    from .query import where_of

    whole = attrs.evolve(query, where=where_of(query))
    listing = driver.plan_list(whole)
    return attrs.evolve(query, where=listing.native), listing


async def _pages(
    driver: Driver, query: ListQuery, page_size: int, test: Callable[[Job], bool] | None
) -> AsyncGenerator[Job, None]:
    token: str | None = None
    while True:
        if token is not None:
            # a driver may answer from memory or a buffer without suspending: yield to
            # the loop between pages, so a long listing neither starves other tasks nor
            # outlives a cancel by more than a page
            await anyio.lowlevel.checkpoint()
        jobs, token = await driver.list_page(query, token, page_size)
        for job in jobs:
            if test is None or test(job):
                yield job
        if token is None:
            return


async def iterate(
    driver: Driver, query: ListQuery, *, limit: int | None, page_size: int
) -> AsyncGenerator[Job, None]:
    """The jobs matching ``query``, in its order, at most ``limit``."""
    if limit == 0:
        return
    native, listing = plan(driver, query)
    test = None if listing.remainder is None else listing.remainder.evaluate
    pages = _pages(driver, native, page_size, test)
    try:
        if query.sort and not listing.sorted:
            from .drivers.base import sort_jobs

            everything = [job async for job in pages]
            for job in sort_jobs(everything, query.sort, query.reverse)[:limit]:
                yield job
            return
        n = 0
        async for job in pages:
            yield job
            n += 1
            if limit is not None and n >= limit:
                return
    finally:
        await pages.aclose()


async def count(driver: Driver, query: ListQuery, *, page_size: int = 1000) -> int:
    """How many jobs match ``query``: one native request where the back end counts,
    else by listing (no sort)."""
    native, listing = plan(driver, query)
    if listing.countable and listing.remainder is None:
        return await driver.count_jobs(native)
    test = None if listing.remainder is None else listing.remainder.evaluate
    pages = _pages(driver, attrs.evolve(native, sort=()), page_size, test)
    try:
        return sum([1 async for _ in pages])
    finally:
        await pages.aclose()
