"""Changing jobs: cancel, pause, resume, retry, delete, update, signal."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal as _signal
from collections.abc import Sequence
from typing import Any

from ...errors import InvalidSpec, JobNotFound, JobNotRunning
from ..base import Action, JobUpdate
from . import logfile, store
from .admin import Admin
from .codec import dumps
from .model import CANCELED, FAILED, PENDING, RUNNING, SUSPENDED, FarmJob
from .writer import translate


class Control(Admin):
    # -- control -----------------------------------------------------------------
    def _active_or_check(self, ids: Sequence[str]) -> list[tuple[str, FarmJob | None]]:
        out: list[tuple[str, FarmJob | None]] = []
        missing = [i for i in ids if i not in self._jobs]
        found = store.existing_ids(self._require_db(), missing) if missing else set()
        for job_id in ids:
            job = self._jobs.get(job_id)
            if job is None and job_id not in found:
                raise JobNotFound(job_id, driver="local")
            out.append((job_id, job))
        return out

    @translate
    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        self._require_owner(action.value)
        self._record(action.value)
        targets = self._active_or_check(ids)
        if action is Action.CANCEL:
            for _, job in targets:
                if job is not None:
                    self._cancel(job, stop_work)
        elif action is Action.PAUSE:
            for _, job in targets:
                if job is not None and not job.finished:
                    job.paused = True
                    if stop_work:
                        for t in job.tasks:
                            if t.status is RUNNING:
                                self._terminate(t, "requeue")
                    self._refresh(job)
        elif action is Action.RESUME:
            for _, job in targets:
                if job is not None and job.paused and not job.finished:
                    job.paused = False
                    self._check(job)
        elif action is Action.RETRY:
            self._retry([i for i, _ in targets])
        elif action is Action.DELETE:
            await self._delete(targets)
        self._kick()
        self._committed(action.value)

    def _cancel(self, job: FarmJob, stop_work: bool) -> None:
        if job.finished:
            return
        if job.ending is None:
            job.ending = (CANCELED, "canceled")
        for t in job.tasks:
            if t.status is PENDING:
                self._task_status(t, CANCELED, "not run: canceled")
            elif t.status is RUNNING and stop_work:
                self._terminate(t, "cancel")
        job.ready.clear()
        self._check(job)

    def _retry(self, ids: Sequence[str]) -> None:
        finished = [i for i in ids if i not in self._jobs]
        loaded: dict[str, FarmJob] = {}
        if finished:
            for chunk in store.chunks(finished, 900):
                marks = ",".join("?" * len(chunk))
                for job in self._load_jobs(f"id IN ({marks})", chunk):
                    loaded[job.id] = job
        for job in loaded.values():
            if job.pool not in self._pools:
                raise InvalidSpec("ids", f"job {job.id} ran in pool {job.pool!r}, which no longer exists")
        for job_id in ids:
            found = self._jobs.get(job_id) or loaded.get(job_id)
            if found is None:
                continue
            job = found
            reset = [t for t in job.tasks if t.status in (FAILED, CANCELED)]
            if not reset:
                continue
            for t in reset:
                t.failures = 0
                self._task_status(t, PENDING, None)
            job.failed = 0
            job.ending = None
            job.fail_code = None
            if job_id in loaded:
                job.finished = False
                job.finished_at = None
                job.exit_code = None
                self._jobs[job.id] = job
                self._rebuild_ready(job)
                self._set_status(job, SUSPENDED if job.paused else PENDING, "retried")
                self._resolve_deps(job)
            else:
                self._rebuild_ready(job)
            self._check(job)

    async def _delete(self, targets: Sequence[tuple[str, FarmJob | None]]) -> None:
        # deleting an active job cancels it (stop_work) and waits until its processes
        # are gone, then deletes it: a deleted job never leaves a process behind
        waits = []
        assert self._loop is not None
        for _, job in targets:
            if job is not None and not job.finished:
                fut: asyncio.Future[None] = self._loop.create_future()
                job.done.append(fut)
                waits.append(fut)
                self._cancel(job, True)
        if waits:
            self._kick()
            for fut in waits:
                await fut
        self._record("delete")
        seqs = store.delete_jobs(self._require_db(), [i for i, _ in targets])
        for seq in seqs:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._log_path(seq))
            shutil.rmtree(logfile.raw_dir(self._log_path(seq)), ignore_errors=True)
            shutil.rmtree(os.path.join(self.state_dir, "work", str(seq)), ignore_errors=True)
            self._workdirs.discard(seq)

    @translate
    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        self._require_owner("update")
        self._record("update")
        db = self._require_db()
        if changes.priority is not None and (isinstance(changes.priority, bool) or changes.priority < 0):
            raise InvalidSpec("priority", "must be an integer >= 0")
        targets = self._active_or_check(ids)
        finished = []
        for job_id, job in targets:
            if job is None:
                finished.append(job_id)
                continue
            if changes.priority is not None and changes.priority != job.priority:
                job.priority = changes.priority
                if job.queued:
                    self._enqueue(job, force=True)
            if changes.name is not None:
                job.name = changes.name
            if changes.tags is not None:
                job.tags = tuple(changes.tags)
            self._dirty_jobs.add(job)
        self._committed("update")
        if finished:
            columns: dict[str, Any] = {}
            if changes.priority is not None:
                columns["priority"] = changes.priority
            if changes.name is not None:
                columns["name"] = changes.name
            if changes.tags is not None:
                columns["tags"] = dumps(tuple(changes.tags))
            store.update_jobs(db, columns, finished)

    @translate
    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        self._require_owner("send_signal")
        job = self._jobs.get(job_id)
        if job is None:
            status = self._lookup_status(job_id)
            if status is None:
                raise JobNotFound(job_id, driver="local")
            raise JobNotRunning(job_id, status, "send_signal")
        procs = [t.proc for t in job.tasks if t.proc is not None]
        if not procs:
            raise JobNotRunning(job_id, job.status, "send_signal")
        for proc in procs:
            proc.signal_group(int(sig))

