"""Client-side dependencies for back ends that have none (``Driver.native_dependencies``
False, e.g. Ray): a job of a batch that ``depends_on`` others is held by the client
and submitted once every job it depends on has succeeded.

The Client builds its driver from :func:`holding` (the driver's class with
:class:`HoldMixin` in front), so every subsystem sees held jobs through the usual
primitives: ``get_jobs`` and ``list_page`` answer for them (status PENDING, the
reason says what they wait for), ``cancel`` and ``delete`` work on them, their log
is empty until they run. The dependencies are watched through the client's ONE
poller (:class:`aiofarm.watch.Hub`), so held jobs cost no requests of their own.

- all dependencies SUCCEEDED: the job is submitted with the id it was given when
  held (the driver must honour ``JobSpec.id``), and from then on the back end
  answers for it;
- a dependency FAILED or was CANCELED (or is gone): the held job becomes FAILED
  with the reason, never submitted; its own dependants then fail the same way.

Held jobs live in the client process. When the Client closes, held jobs that were
not released yet are dropped (never submitted) and a warning names them: a
program must wait for its batch before it closes its Client (docs/ray.md).

A back end that assigns its own ids but can keep a job from running
(``Driver.holds_in_backend``, e.g. Deadline Cloud: created suspended, the hold
written into the job) gets the same watching without the client-side records:
the driver creates the dependant held at once (its id is the back end's and
outlives the client), this module watches its dependencies on the Hub and calls
``driver.release_held(job_id, failure)`` once they all succeeded (``failure``
None) or one did not. Every client adopts the holds the back end lists
(``driver.held_jobs()``) when it opens, so a hold made by a client that has
gone is still released by the next one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .drivers.base import Driver, SubmitAttempt
from .errors import AuthError, FarmError, JobNotFound, JobNotRunning
from .models import Job, JobSpec, JobStatus, LogPage, StatusTransition, Task
from .subscriptions import CallbackSubscription

if TYPE_CHECKING:
    from .drivers.base import Action, ListQuery, LogQuery
    from .watch import Hub

__all__ = ["HoldMixin", "holding"]

log = logging.getLogger(__name__)

#: how stale a dependency's state may be before its dependants move (the poller's
#: back-off stops at this while anything is held)
HOLD_MAX_INTERVAL = 2.0


class _Held:
    __slots__ = ("done", "job", "settled", "spec", "sub")

    def __init__(self, spec: JobSpec, job: Job) -> None:
        self.spec = spec
        self.job = job
        self.sub: CallbackSubscription | None = None
        self.done = anyio.Event()  # released (being submitted), or ended without running
        self.settled = anyio.Event()  # submitted, or ended without running


class _Holds:
    def __init__(self) -> None:
        self.jobs: dict[str, _Held] = {}
        #: ``holds_in_backend`` drivers: held job id -> the subscription on its dependencies
        self.backend: dict[str, CallbackSubscription] = {}
        #: set once the holds the back end keeps were adopted (or could not be read)
        self.adopted = anyio.Event()
        self.hub: Hub | None = None
        self.spawn: Callable[[Callable[[], Coroutine[Any, Any, Any]]], None] | None = None


_classes: dict[type[Driver], type[Driver]] = {}


def holding(cls: type[Driver]) -> type[Driver]:
    """``cls`` with client-side holds in front (the same class for the same driver)."""
    if cls.native_dependencies or issubclass(cls, HoldMixin):
        return cls
    out = _classes.get(cls)
    if out is None:
        out = _classes[cls] = type(cls.__name__, (HoldMixin, cls), {"__module__": cls.__module__})
    return out


def _now() -> datetime:
    return datetime.now(timezone.utc)


class HoldMixin(Driver):
    """Put in front of a driver class by :func:`holding`; see the module docstring."""

    def _holds(self) -> _Holds:
        holds: _Holds | None = getattr(self, "_aiofarm_holds", None)
        if holds is None:
            holds = _Holds()
            self._aiofarm_holds = holds
        return holds

    def start_release(self, hub: Hub, spawn: Callable[[Callable[[], Coroutine[Any, Any, Any]]], None]) -> None:
        """Called by the Client once its hub exists."""
        holds = self._holds()
        holds.hub, holds.spawn = hub, spawn
        if self.holds_in_backend:
            spawn(self._adopt)
        else:
            holds.adopted.set()

    async def adopted(self) -> None:
        """Returns once the holds kept by the back end were adopted (at once for a
        driver whose holds live in the client)."""
        await self._holds().adopted.wait()

    def drop_holds(self) -> list[str]:
        """The Client is closing: forget held jobs that never ran (and say which)."""
        holds = self._holds()
        dropped = [i for i, h in holds.jobs.items() if not h.job.status.is_finished]
        if dropped:
            log.warning(
                "aiofarm: the client closed while %d job(s) were held for their dependencies; "
                "they were never submitted: %s", len(dropped), ", ".join(dropped),
            )  # fmt: skip
        holds.jobs.clear()
        holds.backend.clear()  # those holds are the back end's: the next client adopts them
        return dropped

    # -- submit ------------------------------------------------------------------
    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        if self.holds_in_backend:
            jobs = await super().submit(specs, attempt)
            for job in jobs:
                if job.depends_on:
                    self._watch_backend(job.id, job.depends_on)
            return jobs
        holds = self._holds()
        ready = [s for s in specs if not s.depends_on]
        tokens = (attempt or SubmitAttempt.new(len(specs))).tokens
        ready_attempt = SubmitAttempt(tuple(t for s, t in zip(specs, tokens, strict=True) if not s.depends_on))
        created = await super().submit(ready, ready_attempt) if ready else []
        real = {s.id: job.id for s, job in zip(ready, created, strict=True) if s.id is not None}
        by_spec = {id(s): job for s, job in zip(ready, created, strict=True)}
        for spec in specs:
            if not spec.depends_on:
                continue
            job_id = spec.id or self.new_job_id()
            deps = tuple(real.get(d, d) for d in spec.depends_on)
            held_spec = attrs.evolve(spec, id=job_id, depends_on=deps)
            now = _now()
            reason = f"held by the client until {', '.join(deps)} succeeded"
            job = Job(
                id=job_id, status=JobStatus.PENDING, driver=self.name, name=spec.name, tags=spec.tags, labels=spec.labels,
                description=spec.description, priority=spec.priority, created_at=now, reason=reason,
                history=(StatusTransition(JobStatus.PENDING, now, reason),), task_counts={"pending": 1},
                depends_on=deps, raw={"held": True},
            )  # fmt: skip
            held = holds.jobs[job_id] = _Held(held_spec, job)
            if spec.id is not None:
                real[spec.id] = job_id
            by_spec[id(spec)] = job
            self._watch(held)
        return [by_spec[id(s)] for s in specs]

    def _watch(self, held: _Held) -> None:
        holds = self._holds()
        if holds.hub is None:
            raise FarmError("held jobs need the Client's poller; open the driver through a Client")
        seen: dict[str, Job] = {}

        def on_job(job: Job) -> None:
            if held.done.is_set() or not job.status.is_finished:
                return
            seen[job.id] = job
            if job.status is not JobStatus.SUCCEEDED:
                why = f"dependency {job.id} {job.status.value}" + (f": {job.reason}" if job.reason else "")
                self._end(held, JobStatus.FAILED, why)
            elif all(d in seen for d in held.spec.depends_on):
                held.done.set()
                assert holds.spawn is not None
                holds.spawn(lambda: self._release(held))

        def on_error(job_id: str, exc: BaseException) -> None:
            if held.done.is_set():
                return
            why = f"dependency {job_id} not found" if isinstance(exc, JobNotFound) else f"dependency {job_id}: {exc}"
            self._end(held, JobStatus.FAILED, why)

        held.sub = CallbackSubscription(held.spec.depends_on, HOLD_MAX_INTERVAL, on_job, on_error)
        holds.hub.register(held.sub)

    # -- holds kept by the back end -------------------------------------------------
    async def _adopt(self) -> None:
        holds = self._holds()
        try:
            # transient failures are retried beneath (aiofarm/retry.py)
            for job_id, deps in (await self.held_jobs()).items():
                self._watch_backend(job_id, deps)
        except AuthError:
            pass  # may not list the queue: only this client's own holds
        except FarmError as exc:
            log.warning("aiofarm: the jobs held for their dependencies cannot be read: %s", exc)
        finally:
            holds.adopted.set()

    def _watch_backend(self, job_id: str, deps: tuple[str, ...]) -> None:
        holds = self._holds()
        if holds.hub is None:
            raise FarmError("held jobs need the Client's poller; open the driver through a Client")
        if job_id in holds.backend:
            return
        seen: set[str] = set()
        decided: list[bool] = []

        def decide(failure: str | None) -> None:
            if decided:
                return
            decided.append(True)
            self._unwatch_backend(job_id)
            assert holds.spawn is not None
            holds.spawn(lambda: self._release_backend(job_id, failure))

        def on_job(job: Job) -> None:
            if decided:
                return
            if job.id == job_id:
                if job.status.is_finished:  # canceled (or run by hand) meanwhile
                    self._unwatch_backend(job_id)
                return
            if not job.status.is_finished:
                return
            if job.status is not JobStatus.SUCCEEDED:
                decide(f"dependency {job.id} {job.status.value}" + (f": {job.reason}" if job.reason else ""))
                return
            seen.add(job.id)
            if seen.issuperset(deps):
                decide(None)

        def on_error(failed: str, exc: BaseException) -> None:
            if decided:
                return
            if failed == job_id:
                if isinstance(exc, JobNotFound):
                    self._unwatch_backend(job_id)  # deleted meanwhile
                return
            if isinstance(exc, JobNotFound):
                decide(f"dependency {failed} not found")

        sub = CallbackSubscription((*deps, job_id), HOLD_MAX_INTERVAL, on_job, on_error)
        holds.backend[job_id] = sub
        holds.hub.register(sub)

    def _unwatch_backend(self, job_id: str) -> None:
        holds = self._holds()
        sub = holds.backend.pop(job_id, None)
        if sub is not None and holds.hub is not None:
            holds.hub.unregister(sub)

    async def _release_backend(self, job_id: str, failure: str | None) -> None:
        try:
            # transient failures are retried beneath (releasing twice changes nothing)
            await self.release_held(job_id, failure)
        except FarmError as exc:  # still held in the back end: the next client adopts it
            log.warning("aiofarm: job %s could not be released from its hold: %s", job_id, exc)

    def _unwatch(self, held: _Held) -> None:
        hub = self._holds().hub
        if held.sub is not None and hub is not None:
            hub.unregister(held.sub)
        held.sub = None

    def _end(self, held: _Held, status: JobStatus, reason: str) -> None:
        """The held job ends without ever running."""
        now = _now()
        held.job = attrs.evolve(
            held.job, status=status, reason=reason, finished_at=now, task_counts={status.value: 1},
            history=(*held.job.history, StatusTransition(status, now, reason)),
        )  # fmt: skip
        held.done.set()
        held.settled.set()
        self._unwatch(held)

    async def _release(self, held: _Held) -> None:
        self._unwatch(held)
        try:
            # transient failures are retried beneath (aiofarm/retry.py): the driver's
            # submit is idempotent for the id the held job was given
            await super().submit([held.spec])
        except FarmError as exc:
            self._end(held, JobStatus.FAILED, f"submitting it after its dependencies succeeded failed: {exc}")
            return
        holds = self._holds()
        holds.jobs.pop(held.spec.id or "", None)
        held.settled.set()

    def _held(self, job_id: str) -> _Held | None:
        holds: _Holds | None = getattr(self, "_aiofarm_holds", None)
        return holds.jobs.get(job_id) if holds is not None else None

    # -- reads -------------------------------------------------------------------
    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        holds: _Holds | None = getattr(self, "_aiofarm_holds", None)
        if holds is None or not holds.jobs:
            return await super().get_jobs(ids)
        rest = [i for i in ids if i not in holds.jobs]
        out = await super().get_jobs(rest) if rest else {}
        for job_id in ids:
            held = holds.jobs.get(job_id)
            if held is not None and job_id not in out:
                out[job_id] = held.job
        return out

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        jobs, token = await super().list_page(query, page_token, page_size)
        holds: _Holds | None = getattr(self, "_aiofarm_holds", None)
        if page_token is None and holds is not None and holds.jobs:
            listed = {j.id for j in jobs}
            jobs = [h.job for i, h in holds.jobs.items() if i not in listed] + jobs
        return jobs, token

    async def tasks(self, job_id: str) -> list[Task]:
        held = self._held(job_id)
        if held is None:
            return await super().tasks(job_id)
        job = held.job
        return [Task(id="0", job_id=job_id, status=job.status, step="main", reason=job.reason)]

    async def explain(self, job_id: str) -> str:
        held = self._held(job_id)
        if held is None:
            return await super().explain(job_id)
        return f"job {job_id} is {held.job.status.value}: {held.job.reason}"

    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        if self._held(job_id) is not None:
            return LogPage((), token)
        return await super().read_log(job_id, token, query)

    @asynccontextmanager
    async def _follow_held(
        self, held: _Held, job_id: str, token: str | None, query: LogQuery
    ) -> AsyncIterator[AsyncIterator[LogPage]]:
        await held.done.wait()
        if held.job.status.is_finished and self._held(job_id) is held:
            yield _no_pages()  # it ended without running: no output
            return
        # released: wait until the back end has it, then follow it there
        await held.settled.wait()
        if self._held(job_id) is held:
            yield _no_pages()  # its submission failed
            return
        async with super().follow_log(job_id, token, query) as pages:
            yield pages

    def follow_log(self, job_id: str, token: str | None, query: LogQuery) -> Any:
        held = self._held(job_id)
        if held is None:
            return super().follow_log(job_id, token, query)
        return self._follow_held(held, job_id, token, query)

    # -- control -----------------------------------------------------------------
    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        from .drivers.base import Action

        holds = self._holds()
        rest = []
        for job_id in ids:
            held = holds.jobs.get(job_id)
            if held is not None and held.done.is_set() and not held.job.status.is_finished:
                # being submitted right now: act on the job the back end will have
                await held.settled.wait()
                held = self._held(job_id)
            if held is None:
                rest.append(job_id)
            elif action is Action.CANCEL:
                if not held.job.status.is_finished:
                    self._end(held, JobStatus.CANCELED, "canceled while held for its dependencies")
            elif action is Action.DELETE:
                if not held.job.status.is_finished:
                    self._end(held, JobStatus.CANCELED, "deleted while held for its dependencies")
                del holds.jobs[job_id]
            else:
                rest.append(job_id)
        if rest:
            await super().control(rest, action, stop_work=stop_work)

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        held = self._held(job_id)
        if held is not None:
            raise JobNotRunning(job_id, held.job.status, "port_forward")
        return await super().port_address(job_id, port)


async def _no_pages() -> AsyncGenerator[LogPage, None]:
    return
    yield  # an async generator that ends at once
