"""Submitting to the local farm: validate against the farm (pools, ids, dependencies,
plans), then insert the whole batch in one transaction."""

from __future__ import annotations

import math
import os
import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ...errors import InvalidSpec
from ...models import Job, JobSpec, StatusTransition
from ...openjd.plan import COMMAND_STEP, StepPlan, TaskPlan, plan_job
from . import store
from .codec import dumps, spec_to_json, to_dt
from .control import Control
from .model import DEFAULT_POOL, PENDING, SUSPENDED, FarmJob, FarmStep, FarmTask, job_model, now
from .writer import translate

if TYPE_CHECKING:
    from ..base import SubmitAttempt

_ONE_TASK = TaskPlan()


class Submit(Control):
    # -- submit ------------------------------------------------------------------
    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        _, models = await self.add_jobs(specs)
        return models

    @translate
    async def add_jobs(
        self, specs: Sequence[JobSpec], *, texts: Sequence[str] | None = None, announce: bool = True
    ) -> tuple[list[FarmJob], list[Job]]:
        """Create a batch; its jobs, and (``announce``) their models, which subscribers
        also hear about. ``texts``: the specs' JSON as it arrived (the service's), stored
        as is instead of encoded again. A caller that does not announce builds its
        answer from the jobs (the service, when only the submitter listens: it answers
        with the jobs itself)."""
        self._require_owner("submit")
        self._record("submit")
        db = self._require_db()
        plans, slots = self._validate(specs)
        t0 = now()
        seq = self._next_seq
        batch_ids: dict[str, int] = {}
        jobs: list[FarmJob] = []
        explicit = [s.id for s in specs if s.id is not None]
        for spec, plan in zip(specs, plans, strict=True):
            job_id = spec.id if spec.id is not None else f"j{seq}"
            job = FarmJob(seq, job_id, spec)
            job.owner = self._owner
            job.created_at = t0
            job.paused = spec.paused
            job.status = SUSPENDED if spec.paused else PENDING
            job.reason = "paused" if spec.paused else None
            job.history = [StatusTransition(job.status, to_dt(t0), job.reason)]  # type: ignore[arg-type]
            tidx = 0
            for sidx, step_plan in enumerate(plan):
                step = FarmStep(sidx, step_plan.name, step_plan.depends_on)
                job.steps.append(step)
                for n, tp in enumerate(step_plan.tasks):
                    t = FarmTask(job, tidx, f"{step.name}/{n}", step, tp.parameters)
                    job.tasks.append(t)
                    step.tasks.append(t)
                    tidx += 1
            self._link(job)
            jobs.append(job)
            batch_ids[job_id] = seq
            seq += 1
        generated = [j.id for j, s in zip(jobs, specs, strict=True) if s.id is None]
        if generated:
            taken = store.existing_ids(db, generated) | set(explicit)
            for job in jobs:
                if job.spec.id is None and job.id in taken:
                    job.id = f"j{job.seq}-{os.urandom(3).hex()}"
        job_rows = []
        step_rows = []
        task_rows = []
        hist_rows = []
        upd = self._updated + 1  # readers pick up changes by this counter
        if texts is None:
            texts = [spec_to_json(j.spec) for j in jobs]
        for job, n_slots, text in zip(jobs, slots, texts, strict=True):
            job.slots = n_slots
            job_rows.append(
                (
                    job.seq, job.id, job.name, job.status.value, job.owner, job.pool, dumps(job.tags),
                    job.description, job.priority, t0, int(job.paused), job.slots, dumps(job.depends_on),
                    dumps(job.counts), upd, text, dumps(job.spec.labels),
                )
            )
            for step in job.steps:
                step_rows.append((job.seq, step.idx, step.name, dumps(step.depends_on)))
            for t in job.tasks:
                task_rows.append((job.seq, t.idx, t.id, t.step.idx, dumps(t.params) if t.params else "{}", "pending"))
            hist_rows.append((job.seq, t0, job.status.value, job.reason))
        try:
            store.insert_jobs(db, job_rows, step_rows, task_rows, hist_rows)
        except (sqlite3.Error, OSError) as exc:
            # nothing of the batch exists: the caller hears why, the farm goes on
            raise self._storage_failed("submit", exc) from None
        self._updated = upd
        self._next_seq = seq
        for job in jobs:
            self._jobs[job.id] = job
        for job in jobs:
            self._resolve_deps(job)
            if not job.finished:
                self._check(job)
        models = [job_model(j) for j in jobs] if announce else []
        if self._subscribers:
            # jobs whose status changed meanwhile were announced by that change
            self._outbox.extend(m for m in models if len(m.history) == 1)
        self._flush()
        self._kick()
        return jobs, models

    def _validate(self, specs: Sequence[JobSpec]) -> tuple[list[tuple[StepPlan, ...]], list[int]]:
        db = self._require_db()
        plans: list[tuple[StepPlan, ...]] = []
        slots: list[int] = []
        seen: dict[str, int] = {}
        explicit = [s.id for s in specs if s.id is not None]
        existing = store.existing_ids(db, explicit) if explicit else set()
        dep_ids = {d for s in specs for d in s.depends_on}
        known_deps = store.existing_ids(db, list(dep_ids)) if dep_ids else set()
        dirs: dict[str, bool] = {}  # a batch's specs mostly share their cwd: one stat each
        for i, spec in enumerate(specs):
            field = f"specs[{i}]"
            if not isinstance(spec, JobSpec):
                raise InvalidSpec(field, f"must be an aiofarm.JobSpec, got {type(spec).__name__}")
            if spec.template is None:
                if spec.command is None:
                    raise InvalidSpec(f"{field}.command", "a job needs a command (or a template)")
                if not spec.command or (isinstance(spec.command, str) and not spec.command.strip()):
                    raise InvalidSpec(f"{field}.command", "cannot be empty")
            if isinstance(spec.priority, bool) or not isinstance(spec.priority, int) or spec.priority < 0:
                raise InvalidSpec(f"{field}.priority", f"must be an integer >= 0, got {spec.priority!r}")
            if spec.retries < 0:
                raise InvalidSpec(f"{field}.retries", "must be >= 0")
            if spec.timeout is not None and spec.timeout <= 0:
                raise InvalidSpec(f"{field}.timeout", "must be > 0 seconds")
            pool_name = spec.pool or DEFAULT_POOL
            pool = self._pools.get(pool_name)
            if pool is None:
                raise InvalidSpec(
                    f"{field}.pool", f"no pool {pool_name!r} on local:// (pools: {', '.join(sorted(self._pools))})"
                )
            n_slots = max(1, math.ceil(spec.resources.cpu))
            if n_slots > pool.slots:
                raise InvalidSpec(
                    f"{field}.resources.cpu",
                    f"needs {n_slots} slots but pool {pool_name!r} has only {pool.slots}",
                )
            for key, value in spec.env.items():
                if not isinstance(key, str) or not isinstance(value, str) or "=" in key or not key:
                    raise InvalidSpec(f"{field}.env[{key!r}]", "names and values must be strings; a name has no '='")
            if spec.max_workers is not None and spec.max_workers < 1:
                raise InvalidSpec(f"{field}.max_workers", "must be >= 1")
            if spec.cwd is not None:
                is_dir = dirs.get(spec.cwd)
                if is_dir is None:
                    is_dir = dirs[spec.cwd] = os.path.isdir(spec.cwd)
                if not is_dir:
                    raise InvalidSpec(f"{field}.cwd", f"no such directory: {spec.cwd}")
            if spec.id is not None:
                if spec.id in seen:
                    raise InvalidSpec(f"{field}.id", f"duplicate id {spec.id!r} (also specs[{seen[spec.id]}])")
                if spec.id in existing:
                    raise InvalidSpec(f"{field}.id", f"a job {spec.id!r} already exists")
                seen[spec.id] = i
            for dep in spec.depends_on:
                if dep not in seen and dep not in known_deps:
                    raise InvalidSpec(f"{field}.depends_on", f"unknown job id {dep!r}")
                if dep == spec.id:
                    raise InvalidSpec(f"{field}.depends_on", "a job cannot depend on itself")
            if spec.template is None:
                plans.append((StepPlan(COMMAND_STEP, (_ONE_TASK,)),))
            else:
                plan = plan_job(spec)
                if not plan or not any(s.tasks for s in plan):
                    raise InvalidSpec(f"{field}.template", "the template has no task to run")
                plans.append(plan)
            slots.append(n_slots)
        return plans, slots
