"""Dependencies between jobs, which Deadline Cloud does not have. A dependent job is
created suspended with ``hold`` in its aiofarm description line (wire.py), so the
hold is the service's and outlives the client; the client layer (aiofarm/release.py)
watches the dependencies on its one poller and calls :func:`release` once they all
succeeded (resumed, unless it was submitted paused) or one did not (canceled, the
description saying why). Every client adopts the holds :func:`held_jobs` lists."""

from __future__ import annotations

from typing import Any

from ...models import JobStatus
from . import search, wire
from .api import DeadlineApi
from .listing import full_records

__all__ = ["held_jobs", "release"]


async def held_jobs(api: DeadlineApi) -> dict[str, tuple[str, ...]]:
    """Every suspended job of the queue whose description says it is held."""
    out: dict[str, tuple[str, ...]] = {}
    offset: int | None = 0
    filters = search.search_filters(frozenset({JobStatus.SUSPENDED}), None, None, None, None)
    while offset is not None:
        resp = await api.call(
            "search_jobs", farmId=api.farm_id, queueIds=[api.queue_id], itemOffset=offset,
            pageSize=100, filterExpressions=filters,
        )  # fmt: skip
        # search summaries carry no description: read the whole records
        for job in await full_records(api, [item["jobId"] for item in resp.get("jobs", [])]):
            _, meta = wire.split_description(job.raw.get("description"))
            if meta.get("hold"):
                out[job.id] = job.depends_on
        offset = resp.get("nextItemOffset")
    return out


async def release(api: DeadlineApi, job_id: str, failure: str | None) -> None:
    """Resume (or, with ``failure``, cancel) a job still held; anything else is left."""
    found = await full_records(api, [job_id])
    if not found:
        return
    job = found[0]
    description, meta = wire.split_description(job.raw.get("description"))
    if job.status is not JobStatus.SUSPENDED or not meta.get("hold"):
        return  # released by another client, resumed or canceled by hand
    meta["hold"] = False
    fields: dict[str, Any]
    if failure is not None:
        meta["note"] = failure
        fields = {"targetTaskRunStatus": "CANCELED"}
    else:
        fields = {} if meta.get("paused") else {"targetTaskRunStatus": "READY"}
    fields["description"] = wire.join_description(description, meta) or ""
    await api.call("update_job", job_id=job_id, **api.ids(job_id), **fields)
