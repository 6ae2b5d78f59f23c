"""The Ray driver: a Ray cluster through its Jobs REST API (the dashboard, port 8265).

URLs: ``ray+http://127.0.0.1:8265`` and ``ray+https://head.example.com``; options
(URL query or Client keywords): ``token``, ``token_file``, ``headers`` (JSON object
or mapping), ``owner``, ``timeout``, ``agent_url`` (where node agents are reached;
drivers/ray/logs.py). See docs/ray.md for what
maps to what, held dependants, and what is unsupported.
"""

from __future__ import annotations

import getpass
import json
import os
import signal as _signal
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

import anyio

from ...errors import (
    BackendError,
    BackendUnavailable,
    FarmError,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    TransientError,
    UnsupportedError,
)
from ...models import Capability, Job, JobSpec, JobStatus, LogPage, Pool, Task, Worker
from ..base import (
    Action,
    Driver,
    ListQuery,
    LogQuery,
    SubmitAttempt,
    option_seconds,
    option_text,
    page_number,
    url_options,
)
from . import wire
from .http import RayAPIError, RayHTTP
from .logs import LogFiles

if TYPE_CHECKING:
    import anyio.abc
    import yarl

__all__ = ["RayDriver"]

_OPTIONS = ("token", "token_file", "headers", "owner", "timeout", "agent_url")
#: how long after a stop its effect is looked at again (Ray stops a job with SIGTERM,
#: then SIGKILL 3 s later)
STOP_CHECK_INTERVAL = 1.5
_PAGE_LINES = 1_000_000


class RayDriver(Driver):
    name: ClassVar[str] = "ray"
    idempotent_submit: ClassVar[bool] = True
    #: a stop is confirmed through the client layer's retries (see _stop): 12 attempts
    #: at least STOP_CHECK_INTERVAL apart give a job about 25 s to take it, which a
    #: loaded head needs
    retry_attempts = 12
    #: a repeated delete of a job this driver deleted is done: deletes may be repeated
    repeatable_actions: ClassVar[frozenset[Action]] = frozenset(
        {Action.CANCEL, Action.PAUSE, Action.RESUME, Action.DELETE}
    )
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.SUBMIT,
            Capability.LIST,
            Capability.CANCEL,
            Capability.DELETE,
            # SIGTERM only: Ray's stop (SIGTERM, then SIGKILL after 3 s); others are refused
            Capability.SIGNAL,
            Capability.TASKS,
            Capability.LOGS,
            Capability.LOGS_FOLLOW,
            Capability.PORT_FORWARD,
            Capability.POOLS,
            Capability.WORKERS,
            Capability.EXPLAIN,
            # the call files and the client's Python must be on a filesystem the nodes share
            Capability.FUNCTIONS,
        }
    )
    # one GET /api/jobs/ answers any number of ids
    max_batch_get: ClassVar[int] = 100_000
    max_concurrent_gets: ClassVar[int] = 1
    # `ray job stop` always stops the entrypoint (SIGTERM, SIGKILL 3 s later)
    fixed_parameters: ClassVar[Mapping[Capability, object]] = MappingProxyType({Capability.CANCEL_STOP_WORK: True})
    # Ray has no dependencies between jobs: the client holds dependants (aiofarm.release)
    native_dependencies: ClassVar[bool] = False
    # a follow polls read_log (ranged reads): Ray's tail restarts at byte 0, ~1 s late
    log_push: ClassVar[bool] = False

    def __init__(
        self,
        *,
        base_url: str,
        token: str | None,
        headers: Mapping[str, str],
        owner: str,
        timeout: float,
        agent_url: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.owner = owner
        self.http = RayHTTP(base_url, token=token, headers=headers, timeout=timeout)
        self.log_files = LogFiles(self.http, agent_url)
        self.ray_version: str | None = None
        self._deleted: set[str] = set()  # ids whose DELETE was sent

    def __repr__(self) -> str:
        return f"<RayDriver {self.base_url}>"

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> RayDriver:
        if url.scheme not in ("ray+http", "ray+https"):
            raise InvalidSpec("url", f"the ray driver takes ray+http:// or ray+https:// URLs, not {url.scheme}://")
        merged = url_options(url, options, _OPTIONS, "ray URLs")
        if url.user or url.password or url.fragment:
            raise InvalidSpec("url", "ray URLs take no user, password or fragment (pass token= instead)")
        if not url.host:
            raise InvalidSpec("url", "ray+http:// needs a host, e.g. ray+http://127.0.0.1:8265")
        scheme = url.scheme.removeprefix("ray+")
        port = url.explicit_port or (8265 if scheme == "http" else 443)
        base_url = f"{scheme}://{url.host}:{port}" + (url.path.rstrip("/") if url.path not in ("", "/") else "")

        token = option_text(merged, "token")
        token_file = option_text(merged, "token_file")
        if token is not None and token_file is not None:
            raise InvalidSpec("options.token_file", "give token or token_file, not both")
        if token is None:
            token = _find_token(token_file)
        return cls(
            base_url=base_url,
            token=token,
            headers=_headers(merged.get("headers")),
            owner=option_text(merged, "owner") or getpass.getuser(),
            timeout=option_seconds(merged, "timeout", 30.0),
            agent_url=_agent_url(option_text(merged, "agent_url")),
        )

    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        await self.http.open()
        # reachable, and our token accepted (AuthError now rather than at the first submit)
        version = await self.http.call("GET", "/api/version")
        self.ray_version = str(version.get("ray_version")) if isinstance(version, dict) else None

    async def aclose(self) -> None:
        await self.http.aclose()

    # -- plumbing ----------------------------------------------------------------
    @staticmethod
    def _path(job_id: str, suffix: str = "") -> str:
        return f"/api/jobs/{quote(job_id, safe='')}{suffix}"

    async def _record(self, job_id: str) -> Mapping[str, Any]:
        try:
            rec = await self.http.call("GET", self._path(job_id))
        except RayAPIError as exc:
            if exc.status == 404:
                raise JobNotFound(job_id, driver=self.name) from None
            raise exc.to_backend() from None
        if not isinstance(rec, dict) or rec.get("type") == "DRIVER":
            raise JobNotFound(job_id, driver=self.name)
        return rec

    async def _all(self) -> list[Mapping[str, Any]]:
        try:
            data = await self.http.call("GET", "/api/jobs/")
        except RayAPIError as exc:
            raise exc.to_backend() from None
        return list(wire.submission_records(data))

    # -- jobs --------------------------------------------------------------------
    def new_job_id(self) -> str:
        return f"aiofarm_{uuid.uuid4().hex[:16]}"

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        if len(ids) == 1:
            try:
                return {ids[0]: wire.job_from_record(await self._record(ids[0]), self.name)}
            except JobNotFound:
                return {}
        wanted = set(ids)
        return {
            str(rec["submission_id"]): wire.job_from_record(rec, self.name)
            for rec in await self._all()
            if rec["submission_id"] in wanted
        }

    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        packages: dict[str, str] = {}  # cwd -> gcs:// URI, once per directory per call
        out: list[Job] = []
        attempt = attempt or SubmitAttempt.new(len(specs))
        tokens = attempt.tokens
        # the first transient failure, raised once every other spec was tried: each job
        # made is recorded in attempt.made, so the client layer counts attempts per spec
        # and a batch under faults gets closer with every attempt (as on Slurm)
        transient: TransientError | None = None
        for index, spec in enumerate(specs):
            field = f"specs[{index}]"
            if spec.command is None:
                raise UnsupportedError(self.name, "submit_template", "Ray runs one entrypoint command per job")
            # the submission id is the attempt's token: a retry of the call submits the
            # same ids, and Ray's "already exists" answers with the job the first made
            job_id = spec.id or f"aiofarm_{tokens[index]}"
            if index in attempt.made:
                # made by an earlier attempt of this call: neither packaged nor asked
                # for again (the job as shown does not depend on its working_dir)
                out.append(self._submitted(wire.submit_body(spec, job_id, owner=self.owner, depends_on=spec.depends_on)))
                continue
            try:
                working_dir: str | None = None
                if spec.cwd is not None:
                    working_dir = packages.get(spec.cwd)
                    if working_dir is None:
                        working_dir = packages[spec.cwd] = await self._upload(spec.cwd, f"{field}.cwd")
                body = wire.submit_body(
                    spec, job_id, owner=self.owner, working_dir=working_dir, depends_on=spec.depends_on
                )
                job = await self._post(body, field)
            except TransientError as exc:
                transient = transient or exc
                continue
            attempt.made[index] = job.id
            out.append(job)
        if transient is not None:
            raise transient
        return out

    async def _post(self, body: Mapping[str, Any], field: str) -> Job:
        job_id = str(body["submission_id"])
        try:
            await self.http.call("POST", "/api/jobs/", body=body)
        except RayAPIError as exc:
            if "already exists" not in exc.text:
                if exc.status == 400:
                    raise InvalidSpec(field, f"Ray refused the job: {exc.last_line}") from None
                raise exc.to_backend() from None
            # a retried submit (an answer lost on the way) finds the job its first try made
            existing = await self._record(job_id)
            if existing.get("entrypoint") != body["entrypoint"] or existing.get("metadata") != body["metadata"]:
                raise InvalidSpec(f"{field}.id", f"a Ray job with submission id {job_id!r} already exists") from None
            return wire.job_from_record(existing, self.name)
        return self._submitted(body)

    def _submitted(self, body: Mapping[str, Any]) -> Job:
        """The job a submit of ``body`` made, as Ray shows it at first."""
        now = datetime.now(timezone.utc).timestamp() * 1000
        return wire.job_from_record({**body, "status": "PENDING", "start_time": now, "type": "SUBMISSION"}, self.name)

    async def _upload(self, cwd: str, field: str) -> str:
        from .package import MAX_PACKAGE_BYTES, PackageTooLarge, zip_directory

        try:
            name, data = await anyio.to_thread.run_sync(zip_directory, cwd)
        except PackageTooLarge as exc:
            raise InvalidSpec(
                field,
                f"{cwd} is {exc.size / 2**20:.0f} MiB or more: over Ray's working_dir package limit of "
                f"{MAX_PACKAGE_BYTES // 2**20} MiB (the dashboard's request size limit)",
            ) from None
        except OSError as exc:
            raise InvalidSpec(field, f"cannot package {cwd} as a Ray working_dir: {exc.strerror or exc}") from None
        path = f"/api/packages/gcs/{name}"
        try:
            await self.http.call("GET", path)  # 200: the cluster has it already
        except RayAPIError as exc:
            if exc.status != 404:
                raise exc.to_backend() from None
            try:
                await self.http.call("PUT", path, data=data)
            except RayAPIError as put_exc:
                raise put_exc.to_backend() from None
        return f"gcs://{name}"

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        offset = page_number(page_token, self.name) or 0
        jobs = [wire.job_from_record(rec, self.name) for rec in await self._all()]
        # native pre-filtering (the client re-applies the whole query)
        if query.statuses:
            jobs = [j for j in jobs if j.status in query.statuses]
        if query.owners:
            jobs = [j for j in jobs if j.owner in query.owners]
        if query.name is not None:
            jobs = [j for j in jobs if j.name == query.name]
        if query.tags:
            jobs = [j for j in jobs if set(query.tags) <= set(j.tags)]
        epoch = datetime.fromtimestamp(0, timezone.utc)
        jobs.sort(key=lambda j: (j.created_at or epoch, j.id), reverse=query.reverse)
        page = jobs[offset : offset + page_size]
        return page, (str(offset + page_size) if offset + page_size < len(jobs) else None)

    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        if action is Action.CANCEL:
            await _each(ids, self._stop)
        elif action is Action.DELETE:
            await _each(ids, self._delete)
        else:
            raise UnsupportedError(self.name, action.value, "Ray jobs can only be stopped and deleted")

    async def _stop(self, job_id: str) -> Job:
        """Stop ``job_id`` and look whether it took: Ray answers ``stopped: true`` to a
        stop of a job whose supervisor has not started (e.g. waiting for resources) and
        then leaves it PENDING, and a running job takes a moment to end. Not finished
        yet is ``BackendUnavailable`` with a ``retry_after``: the client layer sends the
        stop again (cancel may be repeated) until it holds or its attempts run out, and
        the last answer says the job is still PENDING or RUNNING."""
        try:
            await self.http.call("POST", self._path(job_id, "/stop"))
        except RayAPIError as exc:
            if exc.status == 404:
                raise JobNotFound(job_id, driver=self.name) from None
            raise exc.to_backend() from None
        job = wire.job_from_record(await self._record(job_id), self.name)
        if job.status.is_finished:
            return job
        raise BackendUnavailable(
            self.name,
            "stop",
            f"Ray accepted the stop of job {job_id} but it is still {job.status.value.upper()} (a job "
            "whose supervisor has not started, e.g. one waiting for resources, ignores stops); it has "
            "not been canceled",
            retry_after=STOP_CHECK_INTERVAL,
        )

    async def _delete(self, job_id: str) -> None:
        try:
            job = wire.job_from_record(await self._record(job_id), self.name)
        except JobNotFound:
            if job_id in self._deleted:
                return  # a repeat of a delete whose answer was lost
            raise
        if not job.status.is_finished:
            # Ray refuses to delete a job that has not finished: stop it first (until
            # it has stopped, this is a transient failure of the delete, repeated)
            await self._stop(job_id)
        self._deleted.add(job_id)
        self.log_files.forget(job_id)
        try:
            await self.http.call("DELETE", self._path(job_id))
        except RayAPIError as exc:
            if exc.status == 404:
                return  # someone else deleted it meanwhile
            raise exc.to_backend() from None

    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        if sig is not _signal.SIGTERM:
            raise UnsupportedError(self.name, f"signal {sig.name}", "Ray's stop (SIGTERM, then SIGKILL) is the only signal")
        job = wire.job_from_record(await self._record(job_id), self.name)
        if job.status is not JobStatus.RUNNING:
            raise JobNotRunning(job_id, job.status, "signal")
        try:
            await self.http.call("POST", self._path(job_id, "/stop"))
        except RayAPIError as exc:
            raise exc.to_backend() from None

    async def tasks(self, job_id: str) -> list[Task]:
        job = wire.job_from_record(await self._record(job_id), self.name)
        return [
            Task(
                id="0", job_id=job_id, status=job.status, step="main", attempts=1 if job.started_at else 0,
                exit_code=job.exit_code, started_at=job.started_at, finished_at=job.finished_at,
                reason=job.reason, raw=job.raw,
            )
        ]

    async def explain(self, job_id: str) -> str:
        rec = await self._record(job_id)
        job = wire.job_from_record(rec, self.name)
        message = str(rec.get("message") or "").split("\n", 1)[0]
        lines = [f"job {job_id} is {job.status.value}" + (f": {message}" if message else "")]
        asked = wire.requested(rec)
        if asked:
            lines.append(f"  it asks for {json.dumps(asked)}")
        if job.status is JobStatus.PENDING:
            free = await self.capacity()
            lines.append(f"  free now: {json.dumps(free)}")
        return "\n".join(lines)

    # -- logs --------------------------------------------------------------------
    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        """Lines after ``token`` (a byte offset in the job's log file), read from there
        with a range request (drivers/ray/logs.py): a follow polls this, so a dropped
        connection costs one read again from the same offset, never the whole log. A
        page is empty only at the file's end (a read of Ray's own lines alone goes on)."""
        cursor = _cursor(token)
        while True:
            data, end = await self.log_files.read(job_id, cursor.offset, lambda: self._record(job_id))
            final = False
            if end and data and not data.endswith(b"\n"):
                # a last line without its newline is final only once the job has ended
                final = wire.job_from_record(await self._record(job_id), self.name).status.is_finished
            start = cursor.offset
            lines = wire.split_log(
                data, cursor, final=final, limit=query.limit, streams=query.streams, job_id=job_id
            )
            if lines or end or cursor.offset == start:
                return LogPage(tuple(lines), cursor.token())

    # -- interactive -------------------------------------------------------------
    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        """The address of the node the job's entrypoint runs on (its agent's host):
        the client dials it directly, so this host must reach the Ray nodes."""
        rec = await self._record(job_id)
        job = wire.job_from_record(rec, self.name)
        if job.status is not JobStatus.RUNNING:
            raise JobNotRunning(job_id, job.status, "port_forward")
        import yarl

        agent = rec.get("driver_agent_http_address")
        host = yarl.URL(agent).host if isinstance(agent, str) and agent else None
        if not host:
            raise BackendError(self.name, None, f"Ray does not say which node runs job {job_id} yet")
        return host, port

    # -- pools and workers -------------------------------------------------------
    async def _usage(self) -> list[tuple[Pool, int]]:
        try:
            data = await self.http.call("GET", "/api/cluster_status")
        except RayAPIError as exc:
            raise exc.to_backend() from None
        try:
            usage = data["data"]["clusterStatus"]["loadMetricsReport"]["usage"]
        except (KeyError, TypeError):
            raise BackendError(self.name, None, "/api/cluster_status has no resource usage") from None
        return wire.pools_from_usage(usage if isinstance(usage, dict) else {})

    async def list_pools(self) -> list[Pool]:
        return [pool for pool, _ in await self._usage()]

    async def capacity(self) -> dict[str, int]:
        return {pool.name: free for pool, free in await self._usage()}

    async def list_workers(self) -> list[Worker]:
        try:
            data = await self.http.call("GET", "/api/v0/nodes?limit=10000")
        except RayAPIError as exc:
            raise exc.to_backend() from None
        try:
            nodes = data["data"]["result"]["result"]
        except (KeyError, TypeError):
            raise BackendError(self.name, None, "/api/v0/nodes answered without nodes") from None
        return [wire.worker_from_node(n) for n in nodes if isinstance(n, dict)]


async def _each(ids: Sequence[str], fn: Any) -> None:
    """``fn(id)`` for every id at once; the first error is raised after all are done."""
    errors: list[FarmError] = []

    async def one(job_id: str) -> None:
        try:
            await fn(job_id)
        except FarmError as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        for job_id in ids:
            tg.start_soon(one, job_id)
    if errors:
        raise errors[0]


def _cursor(token: str | None) -> wire.LogCursor:
    try:
        return wire.LogCursor.parse(token)
    except ValueError:
        raise InvalidSpec("next_token", "not a log token of the Ray driver") from None


def _agent_url(value: str | None) -> str | None:
    if value is None:
        return None
    import yarl

    url = yarl.URL(value)
    if url.scheme not in ("http", "https") or not url.host or url.query_string or url.fragment:
        raise InvalidSpec("options.agent_url", "must be an http:// or https:// address, e.g. http://127.0.0.1:52365")
    return str(url).rstrip("/")


def _find_token(token_file: str | None) -> str | None:
    """The token as Ray's own clients find it: token_file=, RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token."""
    if token_file is None:
        env = os.environ.get("RAY_AUTH_TOKEN", "").strip()
        if env:
            return env
        token_file = os.environ.get("RAY_AUTH_TOKEN_PATH") or None
        if token_file is None:
            default = os.path.join(os.path.expanduser("~"), ".ray", "auth_token")
            if not os.path.isfile(default):
                return None
            token_file = default
        field = "RAY_AUTH_TOKEN_PATH"
    else:
        field = "options.token_file"
    try:
        with open(token_file, encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError as exc:
        raise InvalidSpec(field, f"cannot read {token_file}: {exc.strerror}") from None


def _headers(value: object) -> dict[str, str]:
    """Extra HTTP headers: the ``headers`` option (a mapping, or a JSON object as in a
    URL), else ``RAY_JOB_HEADERS`` (a JSON object, as Ray's CLI reads it)."""
    field = "options.headers"
    if value is None:
        value = os.environ.get("RAY_JOB_HEADERS") or None
        field = "RAY_JOB_HEADERS"
        if value is None:
            return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidSpec(field, "must be a JSON object of header names to values") from None
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise InvalidSpec(field, "must map header names to string values")
    return dict(value)

