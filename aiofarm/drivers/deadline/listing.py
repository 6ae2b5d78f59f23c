"""Pages of jobs: SearchJobs with native filters (past its 10,000-result window by
restarting at a ``createdAt`` threshold), or ListJobs when the caller may list but not
search. Summaries lack the description (where tags and dependencies live), so each
page's whole records come from one BatchGetJob."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...errors import AuthError, BackendError
from ...models import Job
from . import search, wire
from .api import NAME, DeadlineApi

if TYPE_CHECKING:
    from ..base import ListQuery

__all__ = ["full_records", "list_page"]

SEARCH_WINDOW = 10_000  # SearchJobs answers at most this many results per query


async def full_records(api: DeadlineApi, ids: list[str]) -> list[Job]:
    """The whole records of ``ids`` (absent: unknown or archived), in their order."""
    found: dict[str, Job] = {}
    for start in range(0, len(ids), 100):  # BatchGetJob's limit
        found.update(await api.batch_get(ids[start : start + 100], keep_archived=False))
    return [found[i] for i in ids if i in found]


async def _list_jobs_page(
    api: DeadlineApi, state: dict[str, Any], page_size: int
) -> tuple[list[Job], str | None]:
    kw: dict[str, Any] = {
        "farmId": api.farm_id,
        "queueId": api.queue_id,
        "maxResults": max(1, min(100, page_size)),
    }
    if state.get("n"):
        kw["nextToken"] = state["n"]
    resp = await api.call("list_jobs", **kw)
    jobs = await full_records(api, [j["jobId"] for j in resp.get("jobs", [])])
    token = resp.get("nextToken")
    return jobs, wire.encode_token({"m": "list", "n": token}) if token else None


async def list_page(
    api: DeadlineApi, query: ListQuery, page_token: str | None, page_size: int
) -> tuple[list[Job], str | None]:
    state = wire.decode_token(page_token, "page_token") if page_token else {}
    if state.get("m") == "list":
        return await _list_jobs_page(api, state, page_size)
    size = max(1, min(100, page_size))
    offset = int(state.get("o", 0))
    threshold: tuple[str, datetime] | None = None
    if "t" in state:
        op = "LESS_THAN_EQUAL_TO" if query.reverse else "GREATER_THAN_EQUAL_TO"
        threshold = (op, datetime.fromisoformat(state["t"]))
    seen = set(state.get("s", ()))
    filters = search.list_filters(query, threshold)
    order = "DESCENDING" if query.reverse else "ASCENDING"
    kw: dict[str, Any] = {
        "farmId": api.farm_id,
        "queueIds": [api.queue_id],
        "itemOffset": offset,
        "pageSize": size,
        "sortExpressions": [{"fieldSort": {"name": "CREATED_AT", "sortOrder": order}}],
    }
    if filters is not None:
        kw["filterExpressions"] = filters
    try:
        resp = await api.call("search_jobs", **kw)
    except AuthError:
        if page_token:
            raise
        # allowed to list but not to search: plain ListJobs, filtered by the client
        return await _list_jobs_page(api, {"m": "list"}, page_size)
    items = resp.get("jobs", [])
    jobs = await full_records(api, [j["jobId"] for j in items if j["jobId"] not in seen])
    nxt = resp.get("nextItemOffset")
    total = int(resp.get("totalResults", 0))
    if nxt is not None and nxt + size <= SEARCH_WINDOW:
        return jobs, wire.encode_token({**state, "o": nxt})
    if items and (nxt is not None or total >= SEARCH_WINDOW):
        # past the window: restart at the last createdAt seen, skipping the jobs
        # already returned that carry exactly that timestamp
        last = items[-1]["createdAt"]
        same = [j["jobId"] for j in items if j["createdAt"] == last]
        if "t" in state and datetime.fromisoformat(state["t"]) == last:
            same = sorted(seen | set(same))
        if len(same) >= len(items) and offset == 0 and "t" in state:
            raise BackendError(
                NAME, None, "more jobs share one createdAt than a SearchJobs page holds"
            )
        return jobs, wire.encode_token({"o": 0, "t": last.isoformat(), "s": same})
    return jobs, None
