"""Dependencies between jobs, which Deadline Cloud does not have: a dependent job is
created suspended with ``hold`` in its aiofarm description line, and released (resumed)
once every job it depends on succeeded, or canceled, saying why, once one failed or
was canceled."""

from __future__ import annotations

import logging
from typing import Any

import anyio

from ...backoff import Backoff
from ...errors import AuthError, FarmError
from ...models import JobStatus
from . import search, wire
from .api import DeadlineApi
from .listing import full_records

__all__ = ["Holds"]

log = logging.getLogger("aiofarm.deadline")


class Holds:
    def __init__(self, api: DeadlineApi) -> None:
        self.api = api
        self.held: set[str] = set()
        self._wake = anyio.Event()
        #: set once the jobs held by earlier clients were looked for
        self.adopted = anyio.Event()

    def add(self, job_id: str) -> None:
        self.held.add(job_id)
        self._wake.set()

    async def run(self) -> None:
        """Release held jobs while a client is open; jobs held by an earlier client are
        adopted on the first pass."""
        backoff = Backoff(0.5, 5.0)
        adopted = False
        while True:
            if not adopted:
                try:
                    await self._adopt()
                    adopted = True
                except AuthError:
                    adopted = True  # may not search this queue: only our own holds
                except FarmError as exc:
                    log.debug("deadline releaser: adopting held jobs: %s", exc)
                if adopted:
                    self.adopted.set()
            if not self.held:
                self._wake = anyio.Event()
                await self._wake.wait()
                backoff.reset()
            with anyio.move_on_after(backoff.next()):
                self._wake = anyio.Event()
                await self._wake.wait()
            try:
                if await self.release_once():
                    backoff.reset()
            except FarmError as exc:  # the back end is away: try again later
                log.debug("deadline releaser: %s", exc)

    async def _adopt(self) -> None:
        api = self.api
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
                    self.held.add(job.id)
            offset = resp.get("nextItemOffset")

    async def release_once(self) -> bool:
        api = self.api
        held = list(self.held)
        jobs = {j.id: j for j in await full_records(api, held)}
        deps = {d for j in jobs.values() for d in j.depends_on}
        more = sorted(deps - set(jobs))
        dep_jobs = {j.id: j for j in await full_records(api, more)} if more else {}
        dep_jobs.update(jobs)
        changed = False
        for job_id in held:
            job = jobs.get(job_id)
            description, meta = wire.split_description(job.raw.get("description") if job else None)
            if job is None or job.status is not JobStatus.SUSPENDED or not meta.get("hold"):
                self.held.discard(job_id)  # gone, or someone else resumed or canceled it
                continue
            states = [dep_jobs.get(d) for d in job.depends_on]
            bad = (JobStatus.FAILED, JobStatus.CANCELED)
            broken = next(
                (d for d in job.depends_on if dep_jobs.get(d) is None or dep_jobs[d].status in bad),
                None,
            )
            meta["hold"] = False
            fields: dict[str, Any]
            if broken is not None:
                why = (
                    "was deleted"
                    if dep_jobs.get(broken) is None
                    else f"ended {dep_jobs[broken].status.value}"
                )
                meta["note"] = f"dependency {broken} {why}"
                fields = {"targetTaskRunStatus": "CANCELED"}
            elif all(s is not None and s.status is JobStatus.SUCCEEDED for s in states):
                fields = {} if meta.get("paused") else {"targetTaskRunStatus": "READY"}
            else:
                continue
            fields["description"] = wire.join_description(description, meta) or ""
            await api.call("update_job", job_id=job_id, **api.ids(job_id), **fields)
            self.held.discard(job_id)
            changed = True
        return changed
