"""AWS Deadline Cloud through aiobotocore.

One driver instance speaks to one queue of one farm (``deadline://<farm>/<queue>``).
Status of many jobs comes from ``BatchGetJob`` (100 ids per call), listing from
``SearchJobs`` with native filters (listing.py, search.py), what ran from steps ->
tasks -> session actions and logs from CloudWatch Logs (sessions.py), pools and
workers from queues and fleets (fleets.py), and back-end-only operations from
``farm.backend`` (discovery.py). The driver neither waits nor retries on its own:
every call goes through api.py, whose only retry is :func:`aiofarm.backoff.retry_transient`.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import (
    AuthError,
    BackendError,
    InvalidSpec,
    JobNotFound,
    PoolNotFound,
    TransientError,
)
from ...models import (
    Capability,
    Job,
    JobSpec,
    JobStatus,
    LogPage,
    Pool,
    Task,
    TransferProgress,
    Worker,
)
from ..base import Action, Driver, JobUpdate, ListPlan, ListQuery, LogQuery, SubmitAttempt
from . import fleets, holds, listing, search, wire
from .api import AUTH_CODES, NAME, DeadlineApi, concurrently
from .attachments import JobAttachments, attachments_flag, attachments_paths
from .discovery import DeadlineBackend, not_found_message
from .sessions import Sessions

if TYPE_CHECKING:
    import anyio.abc
    import yarl

__all__ = ["DeadlineDriver"]

_TERMINAL_TASK = ("FAILED", "CANCELED", "NOT_COMPATIBLE")
#: task run statuses of tasks that are doing work now (or about to, on a worker)
_BUSY_TASK = ("RUNNING", "INTERRUPTING", "STARTING", "SCHEDULED", "ASSIGNED")
_OPTIONS = {
    "region": None,
    "profile": None,
    "endpoint_url": None,
    "logs_endpoint_url": None,
    "s3_endpoint_url": None,
    "max_attempts": 8,
    "concurrency": 16,
    "retry_mode": "standard",
    "queue_role": None,
    "storage_profile": None,
    "job_attachments_file_system": None,
    "require_paths_exist": None,
    "known_asset_paths": None,
}


class DeadlineDriver(Driver):
    name: ClassVar[str] = NAME
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.SUBMIT,
            Capability.SUBMIT_TEMPLATE,
            Capability.LIST,
            Capability.CANCEL,
            Capability.PAUSE,
            Capability.UPDATE,
            Capability.RETRY,
            Capability.DELETE,
            Capability.TASKS,
            Capability.LOGS,
            Capability.LOGS_FOLLOW,
            Capability.POOLS,
            Capability.WORKERS,
            # parameters (aiofarm/capabilities.py); session logs merge stdout and stderr
            Capability.SUBMIT_RETRIES,
            Capability.SUBMIT_MAX_FAILED_TASKS,
            Capability.SUBMIT_MAX_WORKERS,
            Capability.SUBMIT_ENVIRONMENTS,
            Capability.CANCEL_STOP_WORK,
            Capability.PAUSE_STOP_WORK,
            Capability.LOGS_SINCE,
            Capability.LOGS_TIMESTAMPS,
            Capability.LOGS_TASK,
        }
    )
    #: Deadline's own way (``stop_work=None``): a CANCELED or SUSPENDED target
    #: interrupts running tasks; ``stop_work=False`` is honoured task by task
    fixed_parameters: ClassVar[Mapping[Capability, object]] = MappingProxyType(
        {Capability.CANCEL_STOP_WORK: True, Capability.PAUSE_STOP_WORK: True}
    )
    #: ids per get_jobs call; the client layer runs up to max_concurrent_gets of them at
    #: once, so a poll round costs ceil(n / 100) requests without serialising them
    max_batch_get: ClassVar[int] = 100  # BatchGetJob's limit
    max_concurrent_gets: ClassVar[int] = 16
    change_feed: ClassVar[bool] = True  # SearchJobs on startedAt/endedAt/updatedAt
    #: CreateJob takes a client token: a retried submit returns the jobs it made
    idempotent_submit: ClassVar[bool] = True
    #: Deadline workers map paths by storage profiles, never by aiofarm's rules: the
    #: client maps PATH parameters before CreateJob
    maps_path_parameters: ClassVar[bool] = False
    #: no dependencies between jobs in Deadline: a dependant is created suspended with
    #: its hold written in its description, and the client releases it (holds.py)
    native_dependencies: ClassVar[bool] = False
    holds_in_backend: ClassVar[bool] = True

    def __init__(
        self,
        farm_id: str,
        queue_id: str,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        logs_endpoint_url: str | None = None,
        s3_endpoint_url: str | None = None,
        max_attempts: int = 8,
        concurrency: int = 16,
        retry_mode: str = "standard",
        queue_role: str | None = None,
        storage_profile: str | None = None,
        job_attachments_file_system: str | None = None,
        require_paths_exist: bool = True,
        known_asset_paths: Sequence[str] = (),
    ) -> None:
        self.farm_id = farm_id
        self.queue_id = queue_id
        self.queue_role = queue_role
        self.api = DeadlineApi(
            farm_id=farm_id, queue_id=queue_id, region=region, profile=profile,
            endpoint_url=endpoint_url, logs_endpoint_url=logs_endpoint_url,
            s3_endpoint_url=s3_endpoint_url, concurrency=concurrency, retry_mode=retry_mode,
        )  # fmt: skip
        # botocore makes one attempt per request (api.py): these are all of a call's
        self.retry_attempts = max_attempts
        self.sessions = Sessions(self.api, queue_role)
        self.attachments = JobAttachments(
            self.api, storage_profile_id=storage_profile, concurrency=concurrency,
            file_system=job_attachments_file_system or "COPIED",
            require_paths_exist=require_paths_exist, known_asset_paths=known_asset_paths,
        )  # fmt: skip
        self.discovery = DeadlineBackend(self.api)
        self.backend = self.discovery
        self._queue: dict[str, Any] = {}

    @property
    def log_group(self) -> str:
        return self.api.log_group

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> Driver:
        farm = url.host or ""
        queue = url.path.strip("/")
        if not wire.FARM_RE.match(farm):
            raise InvalidSpec(
                "url",
                f"{farm!r} is not a farm id (farm-<32 hex>); use deadline://<farm-id>/<queue-id>",
            )
        if not wire.QUEUE_RE.match(queue):
            raise InvalidSpec(
                "url",
                f"{queue!r} is not a queue id (queue-<32 hex>); use deadline://<farm-id>/<queue-id>",
            )
        return cls(farm, queue, **parse_options(url, options))

    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        await self.api.open()
        await self.sessions.open()
        try:
            self._queue = await self.api.call(
                "get_queue", farmId=self.farm_id, queueId=self.queue_id
            )
        except BackendError as exc:
            if exc.code != "ResourceNotFoundException":
                raise
            await self._not_found(exc)
        await self.attachments.open(self._queue)

    async def _not_found(self, exc: BackendError) -> None:
        """The URL names a farm or queue these credentials cannot see: say which they can."""
        message = exc.message.lower()
        if "farm" in message and "queue" not in message:
            farms = await self.discovery.farms()
            text = not_found_message("farm", self.farm_id, [(f.id, f.name) for f in farms])
        else:
            queues = await self.discovery.queues()
            text = not_found_message(
                f"queue of farm {self.farm_id}: queue", self.queue_id,
                [(q.id, q.name) for q in queues],
            )  # fmt: skip
        raise InvalidSpec("url", text) from None

    async def aclose(self) -> None:
        try:
            await self.attachments.aclose()
            await self.sessions.aclose()
        finally:
            await self.api.aclose()

    # -- jobs --------------------------------------------------------------------
    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        """CreateJob for each spec (the attempt's token of the spec as its client token:
        a retried call returns the job the first try made), then one BatchGetJob per 100 jobs for their records, which
        may still say CREATE_IN_PROGRESS (shown as PENDING; a creation that fails later
        shows as FAILED with the service's message). A spec with dependencies is created
        suspended and held (holds.py); the client releases it (aiofarm/release.py)."""
        api = self.api
        attempt = attempt or SubmitAttempt.new(len(specs))
        tokens = attempt.tokens
        # A transient failure of one CreateJob does not stop the others: it is raised once
        # every spec was tried, and each job made is recorded in attempt.made, so the
        # client layer counts attempts per spec and a batch under faults gets closer with
        # every attempt (the client token makes a repeated CreateJob return the same job).
        transient: list[TransientError] = []
        if not any(spec.depends_on for spec in specs):
            requests: dict[int, dict[str, Any]] = {}
            for i, spec in enumerate(specs):
                self._check_pool(spec.pool, f"specs[{i}].pool")
                if i not in attempt.made:
                    requests[i] = await self._request(spec, tokens[i])
            job_ids: list[str] = [""] * len(specs)

            async def create(i: int) -> None:
                if i in attempt.made:  # made by an earlier attempt of this call
                    job_ids[i] = attempt.made[i]
                    return
                try:
                    job_ids[i] = attempt.made[i] = (await api.call("create_job", **requests[i]))["jobId"]
                except TransientError as exc:
                    transient.append(exc)

            await concurrently([functools.partial(create, i) for i in range(len(specs))])
            if transient:
                raise transient[0]
            return await self._created(job_ids)
        # in dependency order, one by one: a later spec may name an earlier one's id
        real: dict[str, str] = {}
        created: list[str] = []
        failed: set[str] = set()  # ids of specs not made in this attempt (dependants wait)
        for i, spec in enumerate(specs):
            self._check_pool(spec.pool, f"specs[{i}].pool")
            if failed.intersection(spec.depends_on):
                if spec.id is not None:
                    failed.add(spec.id)
                continue
            deps = [real.get(d, d) for d in spec.depends_on]
            unknown = [d for d in deps if d not in created]
            if unknown:
                found = {j.id for j in await listing.full_records(api, unknown)}
                missing = [d for d in unknown if d not in found]
                if missing:
                    raise InvalidSpec(
                        f"specs[{i}].depends_on", f"no job {missing[0]!r} in this queue"
                    )
            if i in attempt.made:  # made by an earlier attempt of this call
                job_id = attempt.made[i]
                created.append(job_id)
                if spec.id is not None:
                    real[spec.id] = job_id
                continue
            req = await self._request(spec, tokens[i], deps)
            try:
                job_id = attempt.made[i] = (await api.call("create_job", **req))["jobId"]
            except TransientError as exc:
                transient.append(exc)
                if spec.id is not None:
                    failed.add(spec.id)
                continue
            created.append(job_id)
            if spec.id is not None:
                real[spec.id] = job_id
        if transient:
            raise transient[0]
        return await self._created(created)

    async def held_jobs(self) -> dict[str, tuple[str, ...]]:
        return await holds.held_jobs(self.api)

    async def release_held(self, job_id: str, failure: str | None) -> None:
        await holds.release(self.api, job_id, failure)

    async def _request(self, spec: JobSpec, token: str, deps: Sequence[str] = ()) -> dict[str, Any]:
        """CreateJob's arguments, the job's attachments uploaded first (if it has any)."""
        # refuse a bad template before uploading anything for it
        wire.create_job_request(self.farm_id, self.queue_id, spec, "check", deps)
        attachments = await self.attachments.for_spec(spec)
        return wire.create_job_request(
            self.farm_id, self.queue_id, spec, token, deps, attachments,
            self.attachments.storage_profile_id,
        )  # fmt: skip

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
        """What the job's tasks produced (``step``: a step id or name; ``task``: a task
        id of that step), in the official layout (attachments/download.py)."""
        self.api.check_job_id(job_id)
        parts: tuple[str, ...] = ()
        if step is not None:
            step_id = step
            if not step.startswith("step-"):
                steps = await self.api.pages(
                    "list_steps", "steps", job_id=job_id, **self.api.ids(job_id)
                )
                found = [s["stepId"] for s in steps if s["name"] == step]
                if not found:
                    names = ", ".join(sorted(s["name"] for s in steps))
                    raise InvalidSpec("step", f"job {job_id} has no step {step!r} ({names})")
                step_id = found[0]
            parts = (step_id,) if task is None else (step_id, task)
        elif not (await self.get_jobs([job_id])):
            raise JobNotFound(job_id, driver=NAME)
        return await self.attachments.download(
            job_id, parts, dest=dest, map_path=map_path, on_progress=on_progress
        )

    async def _created(self, job_ids: list[str]) -> list[Job]:
        found: dict[str, Job] = {}
        for start in range(0, len(job_ids), self.max_batch_get):
            chunk = job_ids[start : start + self.max_batch_get]
            found.update(await self.api.batch_get(chunk, keep_archived=True))
        missing = [j for j in job_ids if j not in found]
        if missing:  # pragma: no cover - the service just returned these ids
            raise BackendError(NAME, None, f"created job {missing[0]} cannot be read back")
        return [found[j] for j in job_ids]

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        # the client layer chunks by max_batch_get and runs chunks concurrently
        return await self.api.batch_get(ids, keep_archived=False)

    async def describe(self, job_id: str) -> Job:
        """The job with its history and exit code from its session actions."""
        self.api.check_job_id(job_id)
        job = (await self.get_jobs([job_id])).get(job_id)
        if job is None:
            raise JobNotFound(job_id, driver=NAME)
        return await self.sessions.describe(job)

    async def changes_since(self, since: float) -> tuple[dict[str, JobStatus], bool]:
        resp = await self.api.call(
            "search_jobs",
            farmId=self.farm_id,
            queueIds=[self.queue_id],
            itemOffset=0,
            pageSize=100,
            filterExpressions=search.changes_filter(datetime.fromtimestamp(since, timezone.utc)),
            client=self.api.dl_status,
        )
        items = resp.get("jobs", [])
        seen = {
            j["jobId"]: wire.job_status(j.get("taskRunStatus"), j.get("lifecycleStatus"))
            for j in items
        }
        return seen, int(resp.get("totalResults", 0)) <= len(items)

    def _check_pool(self, pool: str | None, field: str) -> None:
        if pool is None or pool in (self.queue_id, self._queue.get("displayName")):
            return
        raise PoolNotFound(pool, driver=NAME)

    def plan_list(self, query: ListQuery) -> ListPlan:
        # SearchJobs gets every part of the filter it can translate (a superset of
        # the answer); the client checks the whole filter again on each job
        return ListPlan(native=query.where, remainder=query.where)

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        if query.pool is not None and query.pool not in (
            self.queue_id,
            self._queue.get("displayName"),
        ):
            return [], None
        return await listing.list_page(self.api, query, page_token, page_size)

    # -- control -----------------------------------------------------------------
    async def _batch_update(self, ids: Sequence[str], **changes: Any) -> None:
        missing: list[str] = []
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            resp = await self.api.call(
                "batch_update_job", jobs=[{**self.api.ids(i), **changes} for i in chunk]
            )
            for err in resp.get("errors", []):
                code = err.get("code")
                if code == "ResourceNotFoundException":
                    missing.append(err["jobId"])
                elif code in AUTH_CODES:
                    raise AuthError(f"deadline BatchUpdateJob: {err.get('message')}")
                elif code == "ValidationException":
                    raise InvalidSpec("ids", f"{err['jobId']}: {err.get('message')}")
                elif code == "ConflictException":
                    continue  # e.g. canceling a job that already finished: nothing to do
                else:
                    raise BackendError(NAME, code, f"{err['jobId']}: {err.get('message')}")
        if missing:
            raise JobNotFound(missing[0], driver=NAME)

    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        """cancel/pause with ``stop_work``: one BatchUpdateJob, which interrupts running
        tasks (as Deadline does). Without it, only the tasks not doing work yet are
        retargeted (UpdateTask each) and running ones run to their end."""
        for job_id in ids:
            self.api.check_job_id(job_id)
        if action in (Action.CANCEL, Action.PAUSE):
            target = "CANCELED" if action is Action.CANCEL else "SUSPENDED"
            if stop_work:
                await self._batch_update(ids, targetTaskRunStatus=target)
                return
            jobs = await self.get_jobs(ids)
            missing = [i for i in ids if i not in jobs]
            if missing:
                raise JobNotFound(missing[0], driver=NAME)
            idle = [j.id for j in jobs.values() if not _busy(j)]
            if idle:
                await self._batch_update(idle, targetTaskRunStatus=target)
            busy = [j.id for j in jobs.values() if _busy(j)]
            await concurrently([functools.partial(self._retarget_idle, i, target) for i in busy])
        elif action is Action.RESUME:
            await self._batch_update(ids, targetTaskRunStatus="READY")
        elif action is Action.RETRY:
            await concurrently([functools.partial(self._retry_job, job_id) for job_id in ids])
        elif action is Action.DELETE:
            # Deadline has no DeleteJob: a finished job is archived (and then hidden)
            await self._batch_update(ids, targetTaskRunStatus="CANCELED")
            await self._batch_update(ids, lifecycleStatus="ARCHIVED")
        else:  # pragma: no cover - Action is closed
            raise self._unsupported(action.value)

    async def _tasks_of(self, job_id: str, wanted: Sequence[str]) -> list[tuple[str, str]]:
        """(step id, task id) of the job's tasks whose run status is in ``wanted``."""
        api = self.api
        out = []
        for step in await api.pages("list_steps", "steps", job_id=job_id, **api.ids(job_id)):
            counts = step.get("taskRunStatusCounts") or {}
            if not any(counts.get(s) for s in wanted):
                continue
            for task in await api.pages(
                "list_tasks", "tasks", job_id=job_id, **api.ids(job_id), stepId=step["stepId"]
            ):
                if task.get("runStatus") in wanted:
                    out.append((step["stepId"], task["taskId"]))
        return out

    async def _set_tasks(self, job_id: str, tasks: list[tuple[str, str]], target: str) -> None:
        for step_id, task_id in tasks:
            await self.api.call(
                "update_task", job_id=job_id, **self.api.ids(job_id), stepId=step_id,
                taskId=task_id, targetRunStatus=target, clientToken=uuid.uuid4().hex,
            )  # fmt: skip

    async def _retarget_idle(self, job_id: str, target: str) -> None:
        idle = ("PENDING", "READY")
        await self._set_tasks(job_id, await self._tasks_of(job_id, idle), target)

    async def _retry_job(self, job_id: str) -> None:
        await self._set_tasks(job_id, await self._tasks_of(job_id, _TERMINAL_TASK), "READY")

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        for job_id in ids:
            self.api.check_job_id(job_id)
        fields: dict[str, Any] = {}
        if changes.priority is not None:
            if not 0 <= changes.priority <= 100:
                raise InvalidSpec("priority", "must be between 0 and 100 on Deadline Cloud")
            fields["priority"] = changes.priority
        if changes.name is not None:
            if not 1 <= len(changes.name) <= 512:
                raise InvalidSpec("name", "must be 1 to 512 characters")
            fields["name"] = changes.name
        if fields:
            await self._batch_update(ids, **fields)
        if changes.tags is not None:
            # tags live in the description's aiofarm line: rewrite it per job
            jobs = await self.get_jobs(ids)
            missing = [i for i in ids if i not in jobs]
            if missing:
                raise JobNotFound(missing[0], driver=NAME)
            for job_id in ids:
                description, meta = wire.split_description(jobs[job_id].raw.get("description"))
                meta["tags"] = list(changes.tags)
                text = wire.join_description(description, meta, "tags") or ""
                await self.api.call(
                    "update_job", job_id=job_id, **self.api.ids(job_id), description=text
                )

    async def tasks(self, job_id: str) -> list[Task]:
        return await self.sessions.tasks(job_id)

    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        return await self.sessions.read_log(job_id, token, query)

    # -- pools and workers -------------------------------------------------------
    async def list_pools(self) -> list[Pool]:
        return await fleets.list_pools(self.api)

    async def capacity(self) -> dict[str, int]:
        return await fleets.capacity(self.api)

    async def list_workers(self) -> list[Worker]:
        return await fleets.list_workers(self.api, self._queue.get("displayName", self.queue_id))


def _busy(job: Job) -> bool:
    counts = job.raw.get("taskRunStatusCounts") or {}
    return any(counts.get(s) for s in _BUSY_TASK)


def parse_options(url: yarl.URL, options: Mapping[str, Any]) -> dict[str, Any]:
    """The driver's keyword arguments from the URL's query and the Client's options."""
    unknown = (set(options) | set(url.query)) - set(_OPTIONS)
    if unknown:
        raise InvalidSpec("url", f"unknown deadline option(s): {', '.join(sorted(unknown))}")

    def opt(key: str) -> str | None:
        value = options.get(key, url.query.get(key))
        return None if value is None else str(value)

    out: dict[str, Any] = {
        k: opt(k)
        for k in (
            "region", "profile", "endpoint_url", "logs_endpoint_url", "s3_endpoint_url",
            "storage_profile", "job_attachments_file_system",
        )
    }
    for key in ("max_attempts", "concurrency"):
        raw = opt(key)
        try:
            out[key] = _OPTIONS[key] if raw is None else int(raw)
        except ValueError:
            raise InvalidSpec(f"url.{key}", f"must be an integer, got {raw!r}") from None
        if out[key] < 1:
            raise InvalidSpec(f"url.{key}", "must be >= 1")
    retry_mode = opt("retry_mode") or "standard"
    if retry_mode not in ("standard", "adaptive", "legacy"):
        raise InvalidSpec(
            "url.retry_mode", f"must be standard, adaptive or legacy, got {retry_mode!r}"
        )
    queue_role = opt("queue_role")
    if queue_role not in (None, "read", "user"):
        raise InvalidSpec("url.queue_role", f"must be read or user, got {queue_role!r}")
    file_system = out["job_attachments_file_system"]
    if file_system is not None:
        if file_system.upper() not in ("COPIED", "VIRTUAL"):
            raise InvalidSpec(
                "url.job_attachments_file_system", f"must be COPIED or VIRTUAL, got {file_system!r}"
            )
        out["job_attachments_file_system"] = file_system.upper()
    out["retry_mode"] = retry_mode
    out["queue_role"] = queue_role
    raw_require = options.get("require_paths_exist", url.query.get("require_paths_exist"))
    out["require_paths_exist"] = attachments_flag(raw_require, "url.require_paths_exist", True)
    out["known_asset_paths"] = attachments_paths(
        options.get("known_asset_paths", url.query.get("known_asset_paths")), "url.known_asset_paths"
    )
    return out
