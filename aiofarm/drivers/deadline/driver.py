"""AWS Deadline Cloud through aiobotocore.

One driver instance speaks to one queue of one farm (``deadline://<farm>/<queue>``).
Status of many jobs comes from ``BatchGetJob`` (100 ids per call), listing from
``SearchJobs`` (native filters; past its 10,000-result window by restarting at a
``createdAt`` threshold) or ``ListJobs``, failed tasks from steps -> tasks -> session
actions, and logs from CloudWatch Logs (``/aws/deadline/<farm>/<queue>``, one stream
per session).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ...backoff import Backoff, retry_transient
from ...errors import (
    AuthError,
    BackendError,
    ConnectionLost,
    FarmError,
    InvalidSpec,
    JobNotFound,
    PoolNotFound,
)
from ...models import Capability, Job, JobSpec, JobStatus, LogLine, LogPage, Pool, Task, Worker
from ..base import Action, Driver, JobUpdate, ListQuery, LogQuery
from . import wire

if TYPE_CHECKING:
    import anyio.abc
    import yarl

__all__ = ["DeadlineDriver"]

log = logging.getLogger("aiofarm.deadline")

NAME = "deadline"
_AUTH_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "SignatureDoesNotMatch",
        "InvalidClientTokenId",
        "ExpiredToken",
        "ExpiredTokenException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "IncompleteSignature",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServerErrorException",
        "InternalServerError",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
    }
)
_SEARCH_WINDOW = 10_000  # SearchJobs answers at most this many results per query
_TERMINAL_TASK = ("FAILED", "CANCELED", "NOT_COMPATIBLE")


def _is_transient(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError, HTTPClientError  # type: ignore[import-untyped]
    from botocore.exceptions import ConnectionError as BotoConnectionError

    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        return err.get("Code") in _TRANSIENT_CODES or int(status) >= 500
    if isinstance(exc, (BotoConnectionError, HTTPClientError, ConnectionError, TimeoutError)):
        return True
    import aiohttp

    return isinstance(exc, aiohttp.ClientError)


def _field_of(op: str, message: str) -> str:
    m = re.search(r"parameter (\w+)", message)
    if m:
        return f"parameters.{m.group(1)}"
    if "template" in message.lower():
        return "template"
    m = re.match(r"(\w+)(\.\w+)*:", message)
    return m.group(0).rstrip(":") if m else op


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
            Capability.LOGS_SINCE,
            Capability.LOGS_TIMESTAMPS,
            Capability.LOGS_TASK,
        }
    )
    # a CANCELED or SUSPENDED target interrupts running tasks
    fixed_parameters: ClassVar[Mapping[Capability, object]] = MappingProxyType(
        {Capability.CANCEL_STOP_WORK: True, Capability.PAUSE_STOP_WORK: True}
    )
    #: ids per get_jobs call; each call fans out into concurrent BatchGetJob requests
    #: of 100 ids (the API's limit), so a poll round costs ceil(n / 100) requests but
    #: does not wait for them one after another
    max_batch_get: ClassVar[int] = 100  # BatchGetJob's limit
    max_concurrent_gets: ClassVar[int] = 16
    change_feed: ClassVar[bool] = True  # SearchJobs on startedAt/endedAt/updatedAt

    def __init__(
        self,
        farm_id: str,
        queue_id: str,
        *,
        region: str | None = None,
        profile: str | None = None,
        endpoint_url: str | None = None,
        logs_endpoint_url: str | None = None,
        max_attempts: int = 8,
        concurrency: int = 16,
        retry_mode: str = "standard",
        queue_role: str | None = None,
    ) -> None:
        self.farm_id = farm_id
        self.queue_id = queue_id
        self.region = region
        self.profile = profile
        self.endpoint_url = endpoint_url
        self.logs_endpoint_url = logs_endpoint_url
        self.max_attempts = max_attempts
        self.retry_mode = retry_mode
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._stack: contextlib.AsyncExitStack | None = None
        self._dl: Any = None
        self._dl_status: Any = None
        self._logs: Any = None
        self._queue: dict[str, Any] = {}
        # ended sessions never change: session id -> task ids it ran
        self._session_tasks: dict[str, list[str]] = {}
        self._held: set[str] = set()  # suspended until their dependencies succeed
        self.queue_role = queue_role
        self._session: Any = None
        self._logs_lock = anyio.Lock()
        self._logs_stack: contextlib.AsyncExitStack | None = None
        self._logs_expiry: datetime | None = None
        self._releaser_wake = anyio.Event()

    @property
    def log_group(self) -> str:
        return f"/aws/deadline/{self.farm_id}/{self.queue_id}"

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

        def opt(key: str) -> str | None:
            value = options.get(key, url.query.get(key))
            return None if value is None else str(value)

        known = {
            "region",
            "profile",
            "endpoint_url",
            "logs_endpoint_url",
            "max_attempts",
            "concurrency",
            "retry_mode",
            "queue_role",
        }
        unknown = (set(options) | set(url.query)) - known
        if unknown:
            raise InvalidSpec("url", f"unknown deadline option(s): {', '.join(sorted(unknown))}")
        ints = {}
        for key, default in (("max_attempts", 8), ("concurrency", 16)):
            raw = opt(key)
            try:
                ints[key] = default if raw is None else int(raw)
            except ValueError:
                raise InvalidSpec(f"url.{key}", f"must be an integer, got {raw!r}") from None
            if ints[key] < 1:
                raise InvalidSpec(f"url.{key}", "must be >= 1")
        retry_mode = opt("retry_mode") or "standard"
        if retry_mode not in ("standard", "adaptive", "legacy"):
            raise InvalidSpec(
                "url.retry_mode", f"must be standard, adaptive or legacy, got {retry_mode!r}"
            )
        queue_role = opt("queue_role")
        if queue_role not in (None, "read", "user"):
            raise InvalidSpec("url.queue_role", f"must be read or user, got {queue_role!r}")
        return cls(
            farm,
            queue,
            retry_mode=retry_mode,
            queue_role=queue_role,
            region=opt("region"),
            profile=opt("profile"),
            endpoint_url=opt("endpoint_url"),
            logs_endpoint_url=opt("logs_endpoint_url"),
            **ints,
        )

    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        from aiobotocore.session import AioSession  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
        from botocore.exceptions import BotoCoreError, NoRegionError, ProfileNotFound

        stack = contextlib.AsyncExitStack()
        self._stack = stack
        try:
            session = AioSession(profile=self.profile)
            session.register_component("response_parser_factory", _parser_factory())
            extra: dict[str, Any] = {}
            if self.endpoint_url:
                # most operations carry a "management." host prefix, which only the
                # real endpoints resolve
                extra["inject_host_prefix"] = False
            config = Config(
                retries={"mode": self.retry_mode, "max_attempts": self.max_attempts},
                max_pool_connections=64,
                **extra,
            )
            self._dl = await stack.enter_async_context(
                session.create_client(
                    "deadline",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=config,
                )
            )
            # the poller's requests (BatchGetJob, and SearchJobs for the change feed)
            # are built here from ids that already passed wire.JOB_RE and from fixed
            # filters; botocore's per-request validation of 100 identifiers was a
            # fifth of a poll round's CPU, so those calls skip it
            self._dl_status = await stack.enter_async_context(
                session.create_client(
                    "deadline",
                    region_name=self.region,
                    endpoint_url=self.endpoint_url,
                    config=config.merge(Config(parameter_validation=False)),
                )
            )
            self._session = session
            if self.queue_role is None:
                self._logs = await stack.enter_async_context(self._create_logs_client())
        except ProfileNotFound as exc:
            raise AuthError(f"deadline: {exc}") from None
        except NoRegionError:
            raise InvalidSpec("url", "no AWS region: add ?region=... or configure one") from None
        except BotoCoreError as exc:
            raise self._translate(exc, "open") from None
        try:
            self._queue = await self._call("get_queue", farmId=self.farm_id, queueId=self.queue_id)
        except BackendError as exc:
            if exc.code == "ResourceNotFoundException":
                if "farm" in exc.message.lower() and "queue" not in exc.message.lower():
                    raise InvalidSpec(
                        "url", f"farm {self.farm_id} does not exist: {exc.message}"
                    ) from None
                raise PoolNotFound(self.queue_id, driver=NAME) from None
            raise
        task_group.start_soon(self._releaser)

    def _create_logs_client(self, credentials: Mapping[str, Any] | None = None) -> Any:
        from botocore.config import Config

        keys = {}
        if credentials is not None:
            keys = {
                "aws_access_key_id": credentials["accessKeyId"],
                "aws_secret_access_key": credentials["secretAccessKey"],
                "aws_session_token": credentials["sessionToken"],
            }
        return self._session.create_client(
            "logs",
            region_name=self.region,
            endpoint_url=self.logs_endpoint_url,
            config=Config(retries={"mode": self.retry_mode, "max_attempts": self.max_attempts}),
            **keys,
        )

    async def _logs_client(self) -> Any:
        """The CloudWatch Logs client; with ``queue_role`` its credentials come from
        AssumeQueueRoleForRead/ForUser (the queue's role can read the queue's logs when
        the caller's own identity cannot), renewed five minutes before they expire."""
        if self.queue_role is None:
            return self._logs
        async with self._logs_lock:
            expires = self._logs_expiry
            if (
                self._logs is None
                or expires is None
                or expires - datetime.now(timezone.utc) < timedelta(minutes=5)
            ):
                op = (
                    "assume_queue_role_for_read"
                    if self.queue_role == "read"
                    else "assume_queue_role_for_user"
                )
                resp = await self._call(op, farmId=self.farm_id, queueId=self.queue_id)
                creds = resp["credentials"]
                old, self._logs_stack = self._logs_stack, contextlib.AsyncExitStack()
                self._logs = await self._logs_stack.enter_async_context(
                    self._create_logs_client(creds)
                )
                expiration = creds["expiration"]
                self._logs_expiry = (
                    expiration if isinstance(expiration, datetime) else wire.parse_time(expiration)
                )
                if old is not None:
                    await old.aclose()
            return self._logs

    async def aclose(self) -> None:
        logs_stack, self._logs_stack = self._logs_stack, None
        if logs_stack is not None:
            with contextlib.suppress(Exception):
                await logs_stack.aclose()
        stack, self._stack = self._stack, None
        self._dl = self._logs = None
        if stack is not None:
            await stack.aclose()

    # -- calls -------------------------------------------------------------------
    async def _call(
        self, op: str, *, job_id: str | None = None, client: Any = None, **kw: Any
    ) -> dict[str, Any]:
        """One API call: transient failures retried (on top of botocore's own adaptive
        retries, for failures that outlast them), every failure translated."""
        from botocore.exceptions import BotoCoreError, ClientError

        target = client if client is not None else self._dl
        if target is None:
            raise ConnectionLost("the deadline driver is not open")
        method: Callable[..., Awaitable[dict[str, Any]]] = getattr(target, op)
        try:
            async with self._limiter:
                return await retry_transient(
                    lambda: method(**kw), is_transient=_is_transient, attempts=4
                )
        except (ClientError, BotoCoreError, OSError, TimeoutError) as exc:
            raise self._translate(exc, op, job_id) from None
        except Exception as exc:
            import aiohttp

            if isinstance(exc, aiohttp.ClientError):
                raise ConnectionLost(f"deadline {op}: {exc}") from None
            raise

    def _translate(self, exc: BaseException, op: str, job_id: str | None = None) -> FarmError:
        from botocore.exceptions import (
            ClientError,
            NoCredentialsError,
            NoRegionError,
            ParamValidationError,
            PartialCredentialsError,
        )

        if isinstance(exc, ClientError):
            err = exc.response.get("Error", {})
            code = str(err.get("Code", "Unknown"))
            message = str(err.get("Message") or exc)
            status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
            if code in _AUTH_CODES or status == 401:
                return AuthError(f"deadline {op}: {code}: {message}")
            if code == "ResourceNotFoundException" and job_id is not None:
                return JobNotFound(job_id, driver=NAME)
            if code == "ValidationException":
                return InvalidSpec(_field_of(op, message), message)
            if code in _TRANSIENT_CODES or status >= 500:
                return ConnectionLost(f"deadline {op}: {code}: {message} (after retries)")
            return BackendError(NAME, code, message)
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
            return AuthError(f"deadline: {exc}")
        if isinstance(exc, ParamValidationError):
            return InvalidSpec(op, str(exc))
        if isinstance(exc, NoRegionError):
            return InvalidSpec("url", "no AWS region: add ?region=... or configure one")
        if _is_transient(exc) or isinstance(exc, OSError):
            return ConnectionLost(f"deadline {op}: {exc}")
        return BackendError(NAME, type(exc).__name__, str(exc))

    def _ids(self, job_id: str) -> dict[str, str]:
        return {"farmId": self.farm_id, "queueId": self.queue_id, "jobId": job_id}

    def _check_job_id(self, job_id: str) -> None:
        if not wire.JOB_RE.match(job_id):
            raise JobNotFound(job_id, driver=NAME)

    async def _pages(
        self, op: str, key: str, *, job_id: str | None = None, **kw: Any
    ) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            resp = await self._call(
                op, job_id=job_id, **kw, **({"nextToken": token} if token else {})
            )
            items.extend(resp.get(key, []))
            token = resp.get("nextToken")
            if not token:
                return items

    # -- jobs --------------------------------------------------------------------
    async def submit(self, specs: Sequence[JobSpec]) -> list[Job]:
        """CreateJob for each spec (a client token each: a retried call returns the job
        the first try made). A spec with dependencies is created suspended and held by
        the releaser until its dependencies succeeded (see ``_releaser``)."""
        if not any(spec.depends_on for spec in specs):
            requests = []
            for i, spec in enumerate(specs):
                self._check_pool(spec.pool, f"specs[{i}].pool")
                requests.append(
                    wire.create_job_request(self.farm_id, self.queue_id, spec, uuid.uuid4().hex)
                )
            job_ids: list[str] = [""] * len(requests)

            async def create(i: int) -> None:
                resp = await self._call("create_job", **requests[i])
                job_ids[i] = resp["jobId"]

            await _concurrently([functools.partial(create, i) for i in range(len(requests))])
            return await self._wait_created(job_ids)
        # in dependency order, one by one: a later spec may name an earlier one's id
        real: dict[str, str] = {}
        created: list[str] = []
        for i, spec in enumerate(specs):
            self._check_pool(spec.pool, f"specs[{i}].pool")
            deps = [real.get(d, d) for d in spec.depends_on]
            unknown = [d for d in deps if d not in created]
            if unknown:
                found = (
                    await self._batch_get(unknown, keep_archived=False)
                    if all(wire.JOB_RE.match(d) for d in unknown)
                    else {}
                )
                missing = [d for d in unknown if d not in found]
                if missing:
                    raise InvalidSpec(
                        f"specs[{i}].depends_on", f"no job {missing[0]!r} in this queue"
                    )
            req = wire.create_job_request(self.farm_id, self.queue_id, spec, uuid.uuid4().hex, deps)
            job_id = (await self._call("create_job", **req))["jobId"]
            created.append(job_id)
            if spec.id is not None:
                real[spec.id] = job_id
            if deps:
                self._held.add(job_id)
                self._wake_releaser()
        return await self._wait_created(created)

    # -- dependencies --------------------------------------------------------------
    def _wake_releaser(self) -> None:
        self._releaser_wake.set()

    async def _releaser(self) -> None:
        """Deadline has no dependencies between jobs: a dependent job waits suspended,
        and this loop resumes it once every job it depends on succeeded, or cancels it
        (saying why) once one of them failed or was canceled. It runs while a client is
        open; jobs held by an earlier client are adopted on the first pass."""
        backoff = Backoff(0.5, 5.0)
        adopted = False
        while True:
            if not adopted:
                try:
                    await self._adopt_held()
                    adopted = True
                except AuthError:
                    adopted = True  # may not search this queue: only our own holds
                except FarmError as exc:
                    log.debug("deadline releaser: adopting held jobs: %s", exc)
            if not self._held:
                self._releaser_wake = anyio.Event()
                await self._releaser_wake.wait()
                backoff.reset()
            with anyio.move_on_after(backoff.next()):
                self._releaser_wake = anyio.Event()
                await self._releaser_wake.wait()
            try:
                if await self._release_once():
                    backoff.reset()
            except FarmError as exc:  # the back end is away: try again later
                log.debug("deadline releaser: %s", exc)

    async def _adopt_held(self) -> None:
        offset: int | None = 0
        filters = wire.search_filters(frozenset({JobStatus.SUSPENDED}), None, None, None, None)
        while offset is not None:
            resp = await self._call(
                "search_jobs", farmId=self.farm_id, queueIds=[self.queue_id], itemOffset=offset,
                pageSize=100, filterExpressions=filters,
            )  # fmt: skip
            # search summaries carry no description: read the whole records
            for job in await self._full([item["jobId"] for item in resp.get("jobs", [])]):
                _, meta = wire.split_description(job.raw.get("description"))
                if meta.get("hold"):
                    self._held.add(job.id)
            offset = resp.get("nextItemOffset")

    async def _release_once(self) -> bool:
        held = list(self._held)
        jobs = await self.get_jobs(held)
        deps = {d for j in jobs.values() for d in j.depends_on}
        dep_jobs = await self.get_jobs(sorted(deps - set(jobs))) if deps - set(jobs) else {}
        dep_jobs.update(jobs)
        changed = False
        for job_id in held:
            job = jobs.get(job_id)
            description, meta = wire.split_description(job.raw.get("description") if job else None)
            if job is None or job.status is not JobStatus.SUSPENDED or not meta.get("hold"):
                self._held.discard(job_id)  # gone, or someone else resumed or canceled it
                continue
            states = [dep_jobs.get(d) for d in job.depends_on]
            bad = (JobStatus.FAILED, JobStatus.CANCELED)
            broken = next(
                (d for d in job.depends_on if dep_jobs.get(d) is None or dep_jobs[d].status in bad),
                None,
            )
            meta["hold"] = False
            if broken is not None:
                why = (
                    "was deleted"
                    if dep_jobs.get(broken) is None
                    else f"ended {dep_jobs[broken].status.value}"
                )
                meta["note"] = f"dependency {broken} {why}"
                await self._call(
                    "update_job", job_id=job_id, **self._ids(job_id), targetTaskRunStatus="CANCELED",
                    description=wire.join_description(description, meta) or "",
                )  # fmt: skip
            elif all(s is not None and s.status is JobStatus.SUCCEEDED for s in states):
                fields: dict[str, Any] = {
                    "description": wire.join_description(description, meta) or ""
                }
                if not meta.get("paused"):
                    fields["targetTaskRunStatus"] = "READY"
                await self._call("update_job", job_id=job_id, **self._ids(job_id), **fields)
            else:
                continue
            self._held.discard(job_id)
            changed = True
        return changed

    async def _wait_created(self, job_ids: list[str]) -> list[Job]:
        """Jobs leave CREATE_IN_PROGRESS within seconds; wait so the caller gets a job
        that exists in every API (or the reason creation failed)."""
        done: dict[str, Job] = {}
        backoff = Backoff(0.05, 2.0)
        pending = list(job_ids)
        while pending:
            for start in range(0, len(pending), self.max_batch_get):
                found = await self._batch_get(
                    pending[start : start + self.max_batch_get], keep_archived=True
                )
                done.update(
                    {
                        k: v
                        for k, v in found.items()
                        if v.raw.get("lifecycleStatus") != "CREATE_IN_PROGRESS"
                    }
                )
            pending = [j for j in pending if j not in done]
            if pending:
                await backoff.sleep()
        for job_id in job_ids:
            job = done[job_id]
            if job.raw.get("lifecycleStatus") == "CREATE_FAILED":
                raise InvalidSpec(
                    "template", f"Deadline Cloud could not create job {job_id}: {job.reason}"
                )
        return [done[j] for j in job_ids]

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        # the client layer chunks by max_batch_get and runs chunks concurrently
        return await self._batch_get(ids, keep_archived=False)

    async def _batch_get(self, ids: Sequence[str], *, keep_archived: bool) -> dict[str, Job]:
        wanted = list(dict.fromkeys(i for i in ids if wire.JOB_RE.match(i)))
        out: dict[str, Job] = {}
        backoff = Backoff(0.1, 2.0, jitter=True)
        for attempt in range(5):
            if not wanted:
                break
            resp = await self._call(
                "batch_get_job", identifiers=[self._ids(i) for i in wanted], client=self._dl_status
            )
            for item in resp.get("jobs", []):
                if keep_archived or item.get("lifecycleStatus") != "ARCHIVED":
                    out[item["jobId"]] = wire.job_from_wire(item, self.queue_id)
            retry = []
            for err in resp.get("errors", []):
                code = err.get("code")
                if code in ("ThrottlingException", "InternalServerErrorException"):
                    retry.append(err["jobId"])
                elif code == "AccessDeniedException":
                    raise AuthError(f"deadline BatchGetJob: {err.get('message')}")
                elif code == "ValidationException":
                    raise InvalidSpec("ids", str(err.get("message")))
                # ResourceNotFoundException: simply absent
            wanted = retry
            if wanted and attempt < 4:
                await backoff.sleep()
        if wanted:
            raise ConnectionLost(
                f"deadline BatchGetJob: {len(wanted)} job(s) kept failing transiently"
            )
        return out

    async def changes_since(self, since: float) -> tuple[dict[str, JobStatus], bool]:
        resp = await self._call(
            "search_jobs",
            farmId=self.farm_id,
            queueIds=[self.queue_id],
            itemOffset=0,
            pageSize=100,
            filterExpressions=wire.changes_filter(datetime.fromtimestamp(since, timezone.utc)),
            client=self._dl_status,
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

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        if query.pool is not None and query.pool not in (
            self.queue_id,
            self._queue.get("displayName"),
        ):
            return [], None
        state = wire.decode_token(page_token, "page_token") if page_token else {}
        if state.get("m") == "list":
            return await self._list_jobs_page(state, page_size)
        size = max(1, min(100, page_size))
        offset = int(state.get("o", 0))
        threshold: tuple[str, datetime] | None = None
        if "t" in state:
            op = "LESS_THAN_EQUAL_TO" if query.reverse else "GREATER_THAN_EQUAL_TO"
            threshold = (op, datetime.fromisoformat(state["t"]))
        seen = set(state.get("s", ()))
        filters = wire.search_filters(
            query.statuses, query.name, query.since, query.until, threshold
        )
        kw: dict[str, Any] = {
            "farmId": self.farm_id,
            "queueIds": [self.queue_id],
            "itemOffset": offset,
            "pageSize": size,
            "sortExpressions": [
                {
                    "fieldSort": {
                        "name": "CREATED_AT",
                        "sortOrder": "DESCENDING" if query.reverse else "ASCENDING",
                    }
                }
            ],
        }
        if filters is not None:
            kw["filterExpressions"] = filters
        try:
            resp = await self._call("search_jobs", **kw)
        except AuthError:
            if page_token:
                raise
            # allowed to list but not to search: plain ListJobs, filtered by the client
            return await self._list_jobs_page({"m": "list"}, page_size)
        items = resp.get("jobs", [])
        jobs = await self._full([j["jobId"] for j in items if j["jobId"] not in seen])
        nxt = resp.get("nextItemOffset")
        total = int(resp.get("totalResults", 0))
        if nxt is not None and nxt + size <= _SEARCH_WINDOW:
            return jobs, wire.encode_token({**state, "o": nxt})
        if items and (nxt is not None or total >= _SEARCH_WINDOW):
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

    async def _full(self, ids: list[str]) -> list[Job]:
        """Whole records for a page of listed ids: search and list summaries lack the
        description, where tags and dependencies live (one BatchGetJob per page)."""
        found = await self._batch_get(ids, keep_archived=False) if ids else {}
        return [found[i] for i in ids if i in found]

    async def _list_jobs_page(
        self, state: dict[str, Any], page_size: int
    ) -> tuple[list[Job], str | None]:
        kw: dict[str, Any] = {
            "farmId": self.farm_id,
            "queueId": self.queue_id,
            "maxResults": max(1, min(100, page_size)),
        }
        if state.get("n"):
            kw["nextToken"] = state["n"]
        resp = await self._call("list_jobs", **kw)
        jobs = await self._full([j["jobId"] for j in resp.get("jobs", [])])
        token = resp.get("nextToken")
        return jobs, wire.encode_token({"m": "list", "n": token}) if token else None

    async def _batch_update(self, ids: Sequence[str], **changes: Any) -> None:
        missing: list[str] = []
        for start in range(0, len(ids), 100):
            chunk = ids[start : start + 100]
            resp = await self._call(
                "batch_update_job", jobs=[{**self._ids(i), **changes} for i in chunk]
            )
            for err in resp.get("errors", []):
                code = err.get("code")
                if code == "ResourceNotFoundException":
                    missing.append(err["jobId"])
                elif code in _AUTH_CODES:
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
        for job_id in ids:
            self._check_job_id(job_id)
        if action is Action.CANCEL:
            await self._batch_update(ids, targetTaskRunStatus="CANCELED")
        elif action is Action.PAUSE:
            # Deadline interrupts running tasks of a suspended job whatever stop_work says
            await self._batch_update(ids, targetTaskRunStatus="SUSPENDED")
        elif action is Action.RESUME:
            await self._batch_update(ids, targetTaskRunStatus="READY")
        elif action is Action.RETRY:
            await _concurrently([functools.partial(self._retry_job, job_id) for job_id in ids])
        elif action is Action.DELETE:
            # Deadline has no DeleteJob: a finished job is archived (and then hidden)
            await self._batch_update(ids, targetTaskRunStatus="CANCELED")
            await self._batch_update(ids, lifecycleStatus="ARCHIVED")
        else:  # pragma: no cover - Action is closed
            raise self._unsupported(action.value)

    async def _retry_job(self, job_id: str) -> None:
        steps = await self._pages("list_steps", "steps", job_id=job_id, **self._ids(job_id))
        for step in steps:
            counts = step.get("taskRunStatusCounts") or {}
            if not any(counts.get(s) for s in _TERMINAL_TASK):
                continue
            tasks = await self._pages(
                "list_tasks", "tasks", job_id=job_id, **self._ids(job_id), stepId=step["stepId"]
            )
            for task in tasks:
                if task.get("runStatus") in _TERMINAL_TASK:
                    await self._call(
                        "update_task",
                        job_id=job_id,
                        **self._ids(job_id),
                        stepId=step["stepId"],
                        taskId=task["taskId"],
                        targetRunStatus="READY",
                        clientToken=uuid.uuid4().hex,
                    )

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        for job_id in ids:
            self._check_job_id(job_id)
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
                await self._call("update_job", job_id=job_id, **self._ids(job_id), description=text)

    async def tasks(self, job_id: str) -> list[Task]:
        """Steps -> tasks -> each task's latest session action (its session, exit code
        and so its log stream)."""
        self._check_job_id(job_id)
        ids = self._ids(job_id)
        steps = await self._pages("list_steps", "steps", job_id=job_id, **ids)
        rows: list[tuple[str, dict[str, Any]]] = []
        for step in steps:
            for task in await self._pages(
                "list_tasks", "tasks", job_id=job_id, **ids, stepId=step["stepId"]
            ):
                rows.append((step["name"], task))
        actions: dict[str, dict[str, Any]] = {}

        async def action(task: dict[str, Any]) -> None:
            resp = await self._call(
                "get_session_action",
                job_id=job_id,
                **ids,
                sessionActionId=task["latestSessionActionId"],
            )
            actions[task["taskId"]] = resp

        await _concurrently(
            [
                functools.partial(action, task)
                for _, task in rows
                if task.get("latestSessionActionId")
            ]
        )
        return [
            wire.task_from_wire(
                job_id,
                step_name,
                task,
                action=actions.get(task["taskId"]),
                log_group=self.log_group,
            )
            for step_name, task in rows
        ]

    # -- logs --------------------------------------------------------------------
    async def _tasks_of_session(self, job_id: str, session: Mapping[str, Any]) -> list[str]:
        sid = session["sessionId"]
        tasks = self._session_tasks.get(sid)
        if tasks is None:
            acts = await self._pages(
                "list_session_actions",
                "sessionActions",
                job_id=job_id,
                **self._ids(job_id),
                sessionId=sid,
            )
            tasks = [
                a["definition"]["taskRun"].get("taskId", "")
                for a in acts
                if "taskRun" in a.get("definition", {})
            ]
            if session.get("lifecycleStatus") == "ENDED":
                self._session_tasks[sid] = tasks
        return tasks

    async def _sessions(self, job_id: str, task: str | None) -> list[dict[str, Any]]:
        sessions = await self._pages(
            "list_sessions", "sessions", job_id=job_id, **self._ids(job_id)
        )
        sessions.sort(key=lambda s: (s["startedAt"], s["sessionId"]))
        if task is None:
            return sessions
        return [s for s in sessions if task in await self._tasks_of_session(job_id, s)]

    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        """A job's log is its sessions' CloudWatch streams one after the other. The token
        is (session id, CloudWatch forward token): resuming from it neither loses nor
        repeats a line, across reconnects and new clients alike."""
        self._check_job_id(job_id)
        if "stdout" not in query.streams:
            # session logs do not separate stdout from stderr: every line is "stdout"
            return LogPage((), token)
        state = wire.decode_token(token, "next_token") if token else {}
        sessions = await self._sessions(job_id, query.task)
        if not sessions:
            return LogPage((), token)
        index = 0
        forward: str | None = state.get("f")
        if state.get("s"):
            index = next((i for i, s in enumerate(sessions) if s["sessionId"] == state["s"]), 0)
        lines: list[LogLine] = []
        limit = max(1, min(10_000, query.limit))
        while len(lines) < limit:
            session = sessions[index]
            kw: dict[str, Any] = {
                "logGroupName": self.log_group,
                "logStreamName": session["sessionId"],
                "startFromHead": True,
                "limit": limit - len(lines),
            }
            if forward:
                kw["nextToken"] = forward
            if query.start_time is not None:
                kw["startTime"] = int(query.start_time.timestamp() * 1000)
            if query.end_time is not None:
                kw["endTime"] = int(query.end_time.timestamp() * 1000)
            try:
                resp = await self._call("get_log_events", client=await self._logs_client(), **kw)
                events = resp.get("events", [])
                new_forward = resp.get("nextForwardToken")
            except BackendError as exc:
                if exc.code != "ResourceNotFoundException":
                    raise
                events, new_forward = [], forward  # the stream has no line yet
            if events:
                tasks = await self._tasks_of_session(job_id, session)
                task_id = tasks[0] if len(tasks) == 1 else None
                lines.extend(wire.log_line(e, task_id) for e in events)
                forward = new_forward
                continue
            if session.get("lifecycleStatus") == "ENDED" and index + 1 < len(sessions):
                index += 1
                forward = None
                continue
            break
        return LogPage(
            tuple(lines), wire.encode_token({"s": sessions[index]["sessionId"], "f": forward})
        )

    # -- pools and workers -------------------------------------------------------
    async def _fleets_by_queue(self) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
        assoc = await self._pages(
            "list_queue_fleet_associations", "queueFleetAssociations", farmId=self.farm_id
        )
        fleets = {
            f["fleetId"]: f for f in await self._pages("list_fleets", "fleets", farmId=self.farm_id)
        }
        by_queue: dict[str, list[str]] = {}
        for a in assoc:
            if a.get("status", "ACTIVE") == "ACTIVE":
                by_queue.setdefault(a["queueId"], []).append(a["fleetId"])
        return by_queue, fleets

    async def list_pools(self) -> list[Pool]:
        queues = await self._pages("list_queues", "queues", farmId=self.farm_id)
        by_queue, fleets = await self._fleets_by_queue()
        return [
            wire.pool_from_wire(
                q,
                sum(
                    int(fleets[f].get("workerCount") or 0)
                    for f in by_queue.get(q["queueId"], [])
                    if f in fleets
                ),
            )
            for q in queues
        ]

    async def capacity(self) -> dict[str, int]:
        """Idle workers of the fleets that serve each queue."""
        queues = await self._pages("list_queues", "queues", farmId=self.farm_id)
        by_queue, _ = await self._fleets_by_queue()
        idle: dict[str, int] = {}
        for fleet_id in {f for fs in by_queue.values() for f in fs}:
            workers = await self._pages(
                "list_workers", "workers", farmId=self.farm_id, fleetId=fleet_id
            )
            idle[fleet_id] = sum(1 for w in workers if w.get("status") in ("IDLE", "STARTED"))
        return {
            q["displayName"]: sum(idle.get(f, 0) for f in by_queue.get(q["queueId"], []))
            for q in queues
        }

    async def list_workers(self) -> list[Worker]:
        by_queue, _ = await self._fleets_by_queue()
        out: list[Worker] = []
        name = self._queue.get("displayName", self.queue_id)
        for fleet_id in by_queue.get(self.queue_id, []):
            for w in await self._pages(
                "list_workers", "workers", farmId=self.farm_id, fleetId=fleet_id
            ):
                out.append(wire.worker_from_wire(w, name))
        return out


async def _concurrently(fns: Sequence[Callable[[], Awaitable[None]]]) -> None:
    """Run ``fns`` concurrently; the first aiofarm error stops the rest and is raised as
    itself (not wrapped in an exception group)."""
    errors: list[FarmError] = []
    async with anyio.create_task_group() as tg:

        async def run(fn: Callable[[], Awaitable[None]]) -> None:
            try:
                await fn()
            except FarmError as exc:
                if not errors:
                    errors.append(exc)
                tg.cancel_scope.cancel()

        for fn in fns:
            tg.start_soon(run, fn)
    if errors:
        raise errors[0]


#: responses decoded with json.loads alone: the poller's hot path. Walking the shape
#: tree for 100 job records costs several times the JSON decoding, and wire.py reads
#: the ISO 8601 timestamps itself.
_PLAIN_JSON_SHAPES = frozenset({"BatchGetJobResponse"})


def _parser_factory() -> Any:
    import json

    from aiobotocore.parsers import PROTOCOL_PARSERS, AioResponseParserFactory  # type: ignore[import-untyped]

    base: Any = PROTOCOL_PARSERS["rest-json"]

    class PlainJSONParser(base):  # type: ignore[misc]
        def _do_parse(self, response: dict[str, Any], shape: Any) -> Any:
            if shape is not None and shape.name in _PLAIN_JSON_SHAPES:
                return json.loads(response.get("body") or b"{}")
            return super()._do_parse(response, shape)

    class Factory(AioResponseParserFactory):  # type: ignore[misc]
        def create_parser(self, protocol_name: str) -> Any:
            if protocol_name == "rest-json":
                return PlainJSONParser(**self._defaults)
            return super().create_parser(protocol_name)

    factory = Factory()
    # botocore parses every other timestamp with dateutil; Deadline sends ISO 8601,
    # which the stdlib parses far faster (anything else still goes to botocore's)
    factory.set_parser_defaults(timestamp_parser=wire.parse_time)
    return factory
