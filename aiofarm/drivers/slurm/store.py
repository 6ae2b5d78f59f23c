"""What the driver knows of Slurm's jobs, and the requests that keep it current.

One poll round is one request for every watched job, however many: a
conditional ``GET /jobs?update_time=`` (the time of the last read). slurmctld
answers it with nothing when no job of the cluster changed since (304 on v0.0.38,
an empty list with ``last_update`` 0 later), else with every job's whole record,
so that one answer carries the states, exit codes and times the round needs; it
never answers "just the changed ones" (measured on 22.05, 24.11 and 26.05, see
docs/slurm.md). Jobs slurmctld has forgotten (``MinJobAge``) come from accounting
(``GET /slurmdb/{version}/jobs``, once per job) where the cluster has it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import anyio
import attrs

from ...errors import BackendError, JobNotFound
from ...models import Job, JobStatus
from . import mapping
from .http import SlurmAPIError, SlurmHTTP
from .negotiate import Api
from .records import Rec

__all__ = ["JobStore", "Submitted"]

DRIVER = "slurm"
#: ids per accounting query (``step=`` parameters in the URL)
DB_CHUNK = 200
#: "Invalid job id specified"
INVALID_JOB_ID = 2017


@attrs.define
class Submitted:
    """What only the submitter knows about a job: its steps' Slurm ids and task parameters."""

    steps: list[tuple[str, str]]  # (step name, Slurm job id), head first
    parameters: dict[str, list[Mapping[str, Any]]]  # step name -> per task


def is_job_id(job_id: str) -> bool:
    return job_id.isascii() and job_id.isdigit() and len(job_id) < 20


class JobStore:
    def __init__(self, http: SlurmHTTP) -> None:
        self.http = http
        self.api: Api | None = None
        # the last full /jobs answer, grouped by aiofarm job id
        self.records: dict[str, list[Rec]] = {}
        # when the read that ``records`` is current as of began (wall, monotonic);
        # None: the next read is unconditional
        self._read_at: tuple[float, float] | None = None
        self._last_fresh = False
        self._reading = anyio.Lock()
        # last records of every job a caller asked about: a job that ages out of
        # slurmctld (MinJobAge) keeps its last known state instead of vanishing
        self.last: dict[str, list[Rec]] = {}
        # ids neither slurmctld nor accounting know (asked once)
        self._unknown: set[str] = set()
        self.submitted: dict[str, Submitted] = {}

    @property
    def _api(self) -> Api:
        assert self.api is not None, "the Slurm driver is not open"
        return self.api

    def invalidate(self) -> None:
        """Our own change: the next read is unconditional."""
        self._read_at = None

    def add_submitted(self, job_id: str, submitted: Submitted) -> None:
        self.submitted[job_id] = submitted
        self._unknown.difference_update(jid for _, jid in submitted.steps)

    # -- requests ------------------------------------------------------------------
    async def refresh(self, *, force: bool = False) -> bool:
        """One conditional ``GET /jobs`` (unconditional when ``force``, or after our
        own change): replaces the snapshot. False: nothing changed, the snapshot is
        current. Calls that overlap share one read: a read that began after a call
        was made answers it."""
        api = self._api
        called = time.monotonic()
        async with self._reading:
            if not force and self._read_at is not None and self._read_at[1] >= called:
                return self._last_fresh
            params: dict[str, str] | None = None
            if not force and self._read_at is not None:
                wall, mono = self._read_at
                params = {"update_time": api.wire.since_param(wall, time.monotonic() - mono)}
            started = (time.time(), time.monotonic())
            status, data = await self.http.call("GET", api.path("/jobs"), params=params)
            if params is not None and api.wire.unchanged(status, data):
                self._read_at, self._last_fresh = started, False
                return False
            jobs = data.get("jobs")
            if not isinstance(jobs, list):
                raise BackendError(DRIVER, None, "GET /jobs answered without a jobs list")
            self.records = mapping.group_records(api.wire.record(r) for r in jobs if isinstance(r, dict))
            self._read_at, self._last_fresh = started, True
        for key in self.last.keys() & self.records.keys():
            self.last[key] = self.records[key]
        return True

    async def fetch(self, job_id: str) -> None:
        """Whole records of one job, read now (``GET /job/{id}`` per Slurm job of it):
        for the calls about one job (tasks, explain, signal, retry), which need what
        the state alone does not say (attempts, reasons)."""
        api = self._api
        done: set[str] = set()
        # the head first: its comment names the other steps' Slurm jobs
        while todo := [jid for _, jid in self.step_jobs(job_id) if jid not in done]:
            jid = todo[0]
            done.add(jid)
            try:
                _, data = await self.http.call("GET", api.path(f"/job/{jid}"))
            except SlurmAPIError as exc:
                if exc.number != INVALID_JOB_ID and exc.status != 404:
                    raise exc.to_backend() from None
                self.records.pop(jid, None)
                await self.history([jid])
                continue
            jobs = data.get("jobs")
            recs = [api.wire.record(r) for r in jobs if isinstance(r, dict)] if isinstance(jobs, list) else []
            mine = mapping.group_records(recs).get(jid)
            if mine:
                self.records[jid] = self.last[jid] = mine

    async def history(self, slurm_ids: Iterable[str]) -> None:
        """Accounting records of jobs slurmctld no longer holds (into ``last``)."""
        api = self._api
        record = api.wire.accounting_record
        wanted = [j for j in dict.fromkeys(slurm_ids) if j not in self._unknown]
        if not api.accounting or record is None or not wanted:
            return
        for i in range(0, len(wanted), DB_CHUNK):
            chunk = wanted[i : i + DB_CHUNK]
            try:
                _, data = await self.http.call("GET", api.db_path("/jobs/"), params=[("step", j) for j in chunk])
            except SlurmAPIError as exc:
                raise exc.to_backend() from None
            jobs = data.get("jobs")
            recs = [record(r) for r in jobs if isinstance(r, dict)] if isinstance(jobs, list) else []
            found = _newest(recs)
            for jid in chunk:
                if jid in found:
                    self.last[jid] = found[jid]
                else:
                    self._unknown.add(jid)

    async def history_since(self, since: float) -> list[Rec]:
        """Accounting records of every job active at or after ``since``."""
        api = self._api
        record = api.wire.accounting_record
        assert record is not None
        try:
            _, data = await self.http.call("GET", api.db_path("/jobs/"), params={"start_time": str(int(since))})
        except SlurmAPIError as exc:
            raise exc.to_backend() from None
        jobs = data.get("jobs")
        recs = [record(r) for r in jobs if isinstance(r, dict)] if isinstance(jobs, list) else []
        return [r for group in _newest(recs).values() for r in group]

    async def poll(self, ids: Sequence[str]) -> None:
        """One round for ``ids`` (aiofarm job ids): afterwards ``collect`` answers
        for each of them as of now."""
        fresh = await self.refresh()
        slurm_ids = list(dict.fromkeys(jid for i in ids for _, jid in self.step_jobs(i)))
        if not fresh and any(j not in self.records and j not in self.last and j not in self._unknown for j in slurm_ids):
            # "nothing changed" although a job is newer than the snapshot: the
            # client's clock is ahead of the server's (v0.0.38)
            await self.refresh(force=True)
        # not in slurmctld's answer: it forgot them (MinJobAge); accounting is asked
        # once per job (it answers for finished jobs, which change no more)
        gone = [
            j for j in slurm_ids
            if j not in self.records and j not in self._unknown and not any(r.source == "dbd" for r in self.last.get(j, ()))
        ]
        await self.history(gone)
        if not self._api.accounting:
            self._unknown.update(j for j in gone if j not in self.last)

    # -- lookups ---------------------------------------------------------------------
    def lookup(self, job_id: str) -> list[Rec] | None:
        recs = self.records.get(job_id)
        if recs is not None:
            self.last[job_id] = recs
            return recs
        return self.last.get(job_id)

    def step_jobs(self, job_id: str) -> list[tuple[str | None, str]]:
        """(step name, Slurm job id) of every Slurm job that makes up ``job_id``,
        head first: one for a command or one-step job, one per step otherwise (the
        head's comment lists them, so this works from any client)."""
        recs = self.lookup(job_id)
        if recs:
            steps = mapping.parse_meta(recs[0].comment).get("steps")
            if isinstance(steps, list) and steps:
                pairs = [(str(p[0]), str(p[1])) for p in steps if isinstance(p, list) and len(p) == 2]
                if pairs and pairs[0][1] == job_id:
                    return list(pairs)
        sub = self.submitted.get(job_id)
        if sub is not None:
            return [(name, jid) for name, jid in sub.steps]
        return [(None, job_id)]

    def collect(self, job_id: str) -> list[Rec] | None:
        """The records of every Slurm job of ``job_id`` (None: never seen)."""
        recs = self.lookup(job_id)
        if recs is None:
            return None
        out = list(recs)
        for _, jid in self.step_jobs(job_id)[1:]:
            out.extend(self.lookup(jid) or ())
        return out

    def known(self, job_id: str) -> bool:
        return job_id in self.records or job_id in self.last or job_id in self.submitted

    async def records_of(self, job_id: str) -> list[Rec]:
        """The records of ``job_id``, read if never seen; JobNotFound if Slurm has none."""
        if not is_job_id(job_id):
            raise JobNotFound(job_id, driver=DRIVER)
        if self.collect(job_id) is None:
            await self.fetch(job_id)
        recs = self.collect(job_id)
        if recs is None:
            raise JobNotFound(job_id, driver=DRIVER)
        return recs

    def job(self, job_id: str, records: Sequence[Rec]) -> Job:
        job = mapping.job_from_records(job_id, records)
        from_db = any(r.source == "dbd" for r in records)
        if job_id not in self.records and not from_db and not job.status.is_finished:
            # aged out of slurmctld before we saw it end, and no accounting to ask
            job = attrs.evolve(
                job,
                status=JobStatus.UNKNOWN,
                reason="the job left slurmctld (MinJobAge) before its end was seen",
            )
        return job


def _newest(recs: Iterable[Rec]) -> dict[str, list[Rec]]:
    """Accounting records by aiofarm job id, keeping for each (job id, task) the
    newest submission: job ids repeat when a cluster's counter starts over."""
    best: dict[tuple[int, int | None], Rec] = {}
    for rec in recs:
        slot = (rec.job_id, rec.array_task_id)
        if slot not in best or rec.submit_time > best[slot].submit_time:
            best[slot] = rec
    return mapping.group_records(best.values())
