"""The one place aiofarm retries a driver call (httpx style: the transport makes one
attempt, the client decides what may be tried again).

A driver makes ONE attempt per primitive and raises :class:`aiofarm.TransientError`
(``BackendUnavailable`` or ``ConnectionFailed``) when the failure may pass, with the
back end's ``retry_after`` when it gave one. The Client puts :class:`RetryMixin` in
front of its driver's class, so every subsystem, the Hub and the client-side holds
call the driver through it. What is retried, with jittered exponential back-off
(:func:`aiofarm.backoff.retry_transient`, ``Driver.retry_attempts`` attempts):

- reads, always (:data:`READS`);
- writes whose repetition changes nothing: ``update``, enabling workers, and the
  ``control`` actions the driver lists in ``Driver.repeatable_actions`` (cancel, pause
  and resume by default; Ray adds delete);
- ``submit`` only when the driver says it is idempotent (``Driver.idempotent_submit``:
  client tokens on Deadline, the submission id on Ray, a tag looked up on Slurm). Every
  attempt of one call carries the same :class:`~aiofarm.drivers.base.SubmitAttempt`
  tokens, so a retry finds what an earlier attempt created instead of creating it again.
  The attempts are counted per spec where the driver reports the jobs it made
  (``SubmitAttempt.made``, Slurm: one POST per spec): a round of attempts that made
  some of the batch's jobs is followed by another, so one failure among many requests
  does not fail a batch of 50 that every attempt brought closer;
- nothing else (``retry`` of jobs, ``delete`` elsewhere, signals, pool changes, stdio,
  port streams, log follows -- the follower resumes from its own cursor -- and event
  streams, which the Hub re-opens).

A call made while another retried call of the same task is running (``describe``
falling back on ``get_jobs``) is not retried again, so attempts never multiply. Drivers
make one attempt each (botocore's own retries are off, see drivers/deadline/api.py).

This is also where a driver call's ``JobNotFound`` / ``PoolNotFound`` learns which farm
it is about: the client's URL, redacted (``Driver.farm_url``), not just ``local://``.
"""

from __future__ import annotations

import signal as _signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

from .backoff import retry_transient
from .drivers.base import Action, Driver, JobUpdate, SubmitAttempt
from .errors import JobNotFound, PoolNotFound, TransientError

if TYPE_CHECKING:
    import anyio.abc

    from .drivers.base import ListQuery, LogQuery, StdioChannel
    from .models import Job, JobSpec, JobStatus, LogPage, Pool, Task, TransferProgress, Worker

__all__ = ["READS", "REPEATABLE_WRITES", "RetryMixin", "retrying"]

T = TypeVar("T")

#: driver primitives that only read: retried on every transient failure
READS = frozenset(
    {
        "get_jobs", "describe", "changes_since", "list_page", "count_jobs", "tasks", "explain",
        "read_log", "download_outputs", "port_address", "list_pools", "capacity", "list_workers",
        "held_jobs",
    }
)  # fmt: skip
#: writes that leave the same state however often they are made (of the ``control``
#: actions, the driver says which: ``Driver.repeatable_actions``)
REPEATABLE_WRITES = frozenset({"control", "update", "set_workers_enabled", "release_held"})
#: primitives (and control actions) not retried here, and why (a test checks every
#: primitive has its rule)
NOT_RETRIED = {
    "submit": "retried only when the driver declares it idempotent (Driver.idempotent_submit)",
    "retry": "a second rerun of failed tasks may rerun what the first one started (not repeatable)",
    "delete": "a repeated delete answers JobNotFound, unless the driver lists it repeatable",
    "send_signal": "a signal delivered twice is two signals",
    "create_pool": "a repeated create answers that the pool exists",
    "rename_pool": "a repeated rename answers that the old name is gone",
    "delete_pool": "a repeated delete answers PoolNotFound",
    "open_stdio": "a stream, not a call: the caller sees the failure",
    "open_step_stdio": "a stream, not a call: the caller sees the failure",
    "connect_port": "a stream, not a call: the port-forward relay redials per connection",
    "follow_log": "the log follower resumes from its last cursor itself",
    "subscribe": "no I/O",
    "job_events": "a stream: the Hub re-opens it on its back-off and re-reads what it watches",
    "new_job_id": "no I/O",
    "plan_list": "no I/O",
}

_retrying: ContextVar[bool] = ContextVar("aiofarm_retrying", default=False)

_classes: dict[type[Driver], type[Driver]] = {}


def retrying(cls: type[Driver]) -> type[Driver]:
    """``cls`` with :class:`RetryMixin` in front (the same class for the same driver)."""
    if issubclass(cls, RetryMixin):
        return cls
    out = _classes.get(cls)
    if out is None:
        out = _classes[cls] = type(cls.__name__, (RetryMixin, cls), {"__module__": cls.__module__})
    return out


def _retry_after(exc: BaseException) -> float | None:
    return exc.retry_after if isinstance(exc, TransientError) else None


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, TransientError)


class RetryMixin(Driver):
    """Put in front of a driver class by :func:`retrying`; see the module docstring."""

    async def _retried(self, call: Callable[[], Awaitable[T]]) -> T:
        if _retrying.get():
            return await self._named(call)
        reset = _retrying.set(True)
        try:
            return await retry_transient(
                lambda: self._named(call), is_transient=_transient, attempts=self.retry_attempts,
                retry_after=_retry_after,
            )  # fmt: skip
        finally:
            _retrying.reset(reset)

    async def _named(self, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except (JobNotFound, PoolNotFound) as exc:
            exc.name_farm(self.farm_url)
            raise

    # -- submit ------------------------------------------------------------------
    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        first = attempt or SubmitAttempt.new(len(specs))
        if not self.idempotent_submit:
            return await self._named(lambda: super(RetryMixin, self).submit(specs, first))
        tries = [first]

        async def once() -> list[Job]:
            this = tries[-1]
            tries.append(SubmitAttempt(first.tokens, retry=True, made=first.made))
            return await super(RetryMixin, self).submit(specs, this)

        while True:
            before = len(first.made)
            try:
                return await self._retried(once)
            except TransientError:
                # per spec: out of attempts only when a whole round made none of the jobs
                if _retrying.get() or len(first.made) == before:
                    raise

    # -- reads -------------------------------------------------------------------
    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        return await self._retried(lambda: super(RetryMixin, self).get_jobs(ids))

    async def describe(self, job_id: str) -> Job:
        return await self._retried(lambda: super(RetryMixin, self).describe(job_id))

    async def changes_since(self, since: float) -> tuple[dict[str, JobStatus], bool]:
        return await self._retried(lambda: super(RetryMixin, self).changes_since(since))

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        return await self._retried(lambda: super(RetryMixin, self).list_page(query, page_token, page_size))

    async def count_jobs(self, query: ListQuery) -> int:
        return await self._retried(lambda: super(RetryMixin, self).count_jobs(query))

    async def tasks(self, job_id: str) -> list[Task]:
        return await self._retried(lambda: super(RetryMixin, self).tasks(job_id))

    async def explain(self, job_id: str) -> str:
        return await self._retried(lambda: super(RetryMixin, self).explain(job_id))

    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        return await self._retried(lambda: super(RetryMixin, self).read_log(job_id, token, query))

    async def download_outputs(
        self,
        job_id: str,
        *,
        step: str | None,
        task: str | None,
        dest: str | None,
        map_path: Callable[[str], str],
        on_progress: Callable[[TransferProgress], object] | None,
    ) -> list[str]:
        return await self._retried(
            lambda: super(RetryMixin, self).download_outputs(
                job_id, step=step, task=task, dest=dest, map_path=map_path, on_progress=on_progress
            )
        )

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        return await self._retried(lambda: super(RetryMixin, self).port_address(job_id, port))

    async def list_pools(self) -> list[Pool]:
        return await self._retried(lambda: super(RetryMixin, self).list_pools())

    async def capacity(self) -> dict[str, int]:
        return await self._retried(lambda: super(RetryMixin, self).capacity())

    async def list_workers(self) -> list[Worker]:
        return await self._retried(lambda: super(RetryMixin, self).list_workers())

    async def held_jobs(self) -> dict[str, tuple[str, ...]]:
        return await self._retried(lambda: super(RetryMixin, self).held_jobs())

    # -- writes that may be repeated ---------------------------------------------
    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        if action not in self.repeatable_actions:
            return await self._named(lambda: super(RetryMixin, self).control(ids, action, stop_work=stop_work))
        return await self._retried(lambda: super(RetryMixin, self).control(ids, action, stop_work=stop_work))

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        return await self._retried(lambda: super(RetryMixin, self).update(ids, changes))

    async def release_held(self, job_id: str, failure: str | None) -> None:
        return await self._retried(lambda: super(RetryMixin, self).release_held(job_id, failure))

    async def set_workers_enabled(
        self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None
    ) -> None:
        return await self._retried(
            lambda: super(RetryMixin, self).set_workers_enabled(names, enabled, stop_work=stop_work, reason=reason)
        )

    # -- calls not safe to repeat: one attempt, their errors named ------------------
    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        return await self._named(lambda: super(RetryMixin, self).send_signal(job_id, sig))

    async def create_pool(self, name: str, slots: int | None) -> Pool:
        return await self._named(lambda: super(RetryMixin, self).create_pool(name, slots))

    async def rename_pool(self, pool_id: str, new_name: str) -> Pool:
        return await self._named(lambda: super(RetryMixin, self).rename_pool(pool_id, new_name))

    async def delete_pool(self, pool_id: str) -> None:
        return await self._named(lambda: super(RetryMixin, self).delete_pool(pool_id))

    # -- streams: never retried, their errors named --------------------------------
    async def open_stdio(self, job_id: str, *args: Any, **kwargs: Any) -> StdioChannel:
        # the signature is the driver's own (Driver.open_stdio): passed through as given
        return await self._named(lambda: super(RetryMixin, self).open_stdio(job_id, *args, **kwargs))

    async def open_step_stdio(
        self, job_id: str, step: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> StdioChannel:
        return await self._named(
            lambda: super(RetryMixin, self).open_step_stdio(job_id, step, stdin=stdin, stdout=stdout, stderr=stderr)
        )

    async def connect_port(self, job_id: str, port: int) -> anyio.abc.ByteStream:
        return await self._named(lambda: super(RetryMixin, self).connect_port(job_id, port))

    @asynccontextmanager
    async def follow_log(self, job_id: str, token: str | None, query: LogQuery) -> AsyncIterator[AsyncIterator[LogPage]]:
        try:
            async with super().follow_log(job_id, token, query) as pages:
                yield pages
        except JobNotFound as exc:
            if exc.job_id == job_id:
                exc.name_farm(self.farm_url)
            raise
