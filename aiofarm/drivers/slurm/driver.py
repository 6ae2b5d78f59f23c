"""The Slurm driver: a Slurm cluster through slurmrestd (OpenAPI v0.0.38).

URLs: ``slurm+http://host:6820?partition=debug&user=alice`` and
``slurm+unix:///run/slurmrestd.sock``. See docs/slurm.md for setup, auth, the
shared-filesystem assumption of logs, and what is unsupported.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import re
import signal as _signal
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import anyio
import attrs

from ...errors import (
    AuthError,
    BackendError,
    FarmError,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    UnsupportedError,
)
from ...models import Capability, Job, JobSpec, JobStatus, LogLine, LogPage, Pool, Task, Worker
from ..base import Action, Driver, JobUpdate, ListQuery, LogQuery, StdioChannel
from . import wire
from .http import TRANSITION_STATE_NO_UPDATE, SlurmAPIError, SlurmHTTP

if TYPE_CHECKING:
    import anyio.abc
    import yarl

__all__ = ["SlurmDriver"]

_OPTIONS = ("partition", "user", "token", "token_file", "log_dir", "timeout", "exec_grace")
_INVALID_JOB_ID = 2017
_ALREADY_DONE = 2021
_NOT_PENDING = 2073
_DEPENDENCY = (2038, 2071)
_SIGNALS = frozenset(
    {"HUP", "INT", "QUIT", "ABRT", "KILL", "ALRM", "TERM", "USR1", "USR2", "URG", "CONT", "STOP",
     "TSTP", "TTIN", "TTOU"}
)
_JOB_ID = re.compile(r"\d+")
_STEP_ID = re.compile(r"(\d+)\.(\d+)")


@attrs.frozen
class _StepRun:
    """One step of a job as one Slurm job (an array when it has several tasks)."""

    name: str
    depends_on: tuple[str, ...]  # step names
    runs: list[tuple[tuple[str, ...], str | None, dict[str, str]]]  # (argv, cwd, extra env) per task
    parameters: list[Mapping[str, Any]]
    timeout: float | None


@attrs.define
class _Submitted:
    """What only the submitter knows about a job: its steps' Slurm ids and task parameters."""

    steps: list[tuple[str, str]]  # (step name, Slurm job id), head first
    parameters: dict[str, list[Mapping[str, Any]]]  # step name -> per task


class SlurmDriver(Driver):
    name: ClassVar[str] = "slurm"
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.SUBMIT,
            Capability.SUBMIT_TEMPLATE,
            Capability.LIST,
            Capability.CANCEL,
            Capability.PAUSE,
            Capability.UPDATE,
            Capability.SIGNAL,
            Capability.TASKS,
            Capability.LOGS,
            Capability.LOGS_FOLLOW,
            Capability.EXEC,
            Capability.PORT_FORWARD,
            Capability.POOLS,
            Capability.WORKERS,
            Capability.WORKERS_MANAGE,
            Capability.EXPLAIN,
            # the call files and the client's Python must be on the shared filesystem
            Capability.FUNCTIONS,
            # parameters (aiofarm/capabilities.py); log lines carry no time (files)
            Capability.LOGS_STREAMS,
            Capability.LOGS_TASK,
            Capability.EXEC_TTY,
            # each task runs under the OpenJD session runner, environment templates first
            Capability.SUBMIT_ENVIRONMENTS,
            Capability.WORKERS_STOP_WORK,
        }
    )
    # scancel stops running work; a hold keeps it running (suspend needs an operator)
    fixed_parameters: ClassVar[Mapping[Capability, object]] = MappingProxyType(
        {Capability.CANCEL_STOP_WORK: True, Capability.PAUSE_STOP_WORK: False}
    )
    # one GET /jobs answers any number of ids
    max_batch_get: ClassVar[int] = 100_000

    def __init__(
        self,
        *,
        base_url: str,
        unix_path: str | None,
        user: str,
        token: str | None,
        partition: str | None,
        token_file: str | None = None,
        log_dir: str,
        timeout: float,
        exec_grace: float,
    ) -> None:
        self.base_url = base_url
        self.unix_path = unix_path
        self.user = user
        self._token = token
        self.partition = partition
        self.log_dir = log_dir
        self.exec_grace = exec_grace
        reload = None
        if token_file is not None:

            def reload() -> str | None:
                try:
                    return _read_token(token_file)
                except OSError:
                    return None

        self.http = SlurmHTTP(
            base_url=base_url, unix_path=unix_path, user=user, token=token or "", timeout=timeout,
            reload_token=reload, auth_probe=self._api("/ping"),
        )
        # the last full /jobs answer, grouped by aiofarm job id
        self._records: dict[str, list[Mapping[str, Any]]] = {}
        self._update_time: int | None = None
        # last records of every job a caller asked about: a job that ages out of
        # slurmctld (MinJobAge) keeps its last known state instead of vanishing
        self._last: dict[str, list[Mapping[str, Any]]] = {}
        self._submitted: dict[str, _Submitted] = {}

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> SlurmDriver:
        if url.scheme not in ("slurm+http", "slurm+unix"):
            raise InvalidSpec("url", f"the slurm driver takes slurm+http:// or slurm+unix:// URLs, not {url.scheme}://")
        merged: dict[str, Any] = dict(url.query)
        for key, value in options.items():
            if key in merged and str(merged[key]) != str(value):
                raise InvalidSpec(f"options.{key}", "given both in the URL and as an option, differently")
            merged[key] = value
        for key in merged:
            if key not in _OPTIONS:
                raise InvalidSpec(f"options.{key}", f"unknown option of slurm URLs; known: {', '.join(_OPTIONS)}")
        if url.fragment or url.password:
            raise InvalidSpec("url", "slurm URLs take no password or fragment (pass token= instead)")
        unix_path: str | None = None
        if url.scheme == "slurm+unix":
            if url.host not in (None, "", "localhost"):
                raise InvalidSpec("url", "slurm+unix URLs take an absolute socket path: slurm+unix:///path.sock")
            if not url.path or url.path == "/":
                raise InvalidSpec("url", "slurm+unix:// needs the socket path, e.g. slurm+unix:///run/slurmrestd.sock")
            unix_path = url.path
            base_url = "http://localhost"
        else:
            if not url.host:
                raise InvalidSpec("url", "slurm+http:// needs a host, e.g. slurm+http://127.0.0.1:6820")
            base_url = f"http://{url.host}:{url.port or 6820}"
            if url.path not in ("", "/"):
                base_url += url.path.rstrip("/")

        def text(key: str) -> str | None:
            value = merged.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value:
                raise InvalidSpec(f"options.{key}", "must be a non-empty string")
            return value

        def number(key: str, default: float) -> float:
            value = merged.get(key, default)
            try:
                out = float(value)
            except (TypeError, ValueError):
                raise InvalidSpec(f"options.{key}", f"must be a number, got {value!r}") from None
            if not out > 0:
                raise InvalidSpec(f"options.{key}", "must be > 0")
            return out

        user = text("user") or url.user or os.environ.get("SLURM_USER") or getpass.getuser()
        token = text("token")
        token_file = text("token_file")
        if token is not None and token_file is not None:
            raise InvalidSpec("options.token_file", "give token or token_file, not both")
        if token_file is not None:
            try:
                token = _read_token(token_file)
            except OSError as exc:
                raise InvalidSpec("options.token_file", f"cannot read {token_file}: {exc.strerror}") from None
        if token is None:
            token = os.environ.get("SLURM_JWT") or None
        log_dir = text("log_dir") or "/tmp/aiofarm-slurm"
        if not os.path.isabs(log_dir):
            raise InvalidSpec("options.log_dir", "must be an absolute path (on the shared filesystem)")
        return cls(
            base_url=base_url,
            unix_path=unix_path,
            user=user,
            token=token,
            token_file=token_file,
            partition=text("partition"),
            log_dir=log_dir,
            timeout=number("timeout", 30.0),
            exec_grace=number("exec_grace", 2.0),
        )

    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        if not self._token:
            raise AuthError(
                "no Slurm JWT: pass token= or token_file= in the URL/options, or set SLURM_JWT "
                "(get one with `scontrol token username=<user>`)"
            )
        await self.http.open()
        # version-aware: the ping of the one API we speak must exist and say so
        # (slurmrestd 22.05 frames /openapi/v3 with a wrong Content-Length, so that
        # document is read only to name the versions on offer when ours is missing)
        try:
            _, ping = await self.http.call("GET", self._api("/ping"))
        except BackendError as exc:
            if exc.code != 404:
                raise
            raise UnsupportedError(
                self.name,
                f"slurmrestd API {await self._offered_versions()}",
                f"aiofarm speaks {wire.API_VERSION}; start slurmrestd with -s openapi/{wire.API_VERSION}",
            ) from None
        meta = ping.get("meta")
        plugin = meta.get("plugin", {}).get("type") if isinstance(meta, dict) else None
        if plugin != f"openapi/{wire.API_VERSION}":
            raise UnsupportedError(
                self.name, f"slurmrestd plugin {plugin!r}", f"aiofarm speaks openapi/{wire.API_VERSION}"
            )
        try:
            os.makedirs(self.log_dir, exist_ok=True)
            if os.stat(self.log_dir).st_uid == os.geteuid():
                # jobs of any user write their output here (like /tmp)
                os.chmod(self.log_dir, 0o1777)
        except OSError as exc:
            raise InvalidSpec("options.log_dir", f"cannot create {self.log_dir}: {exc.strerror}") from None

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _offered_versions(self) -> str:
        try:
            _, spec = await self.http.call("GET", "/openapi/v3")
        except FarmError:
            return "(unknown: /openapi/v3 unreadable)"
        paths = spec.get("paths")
        found = sorted({m.group(1) for p in (paths if isinstance(paths, dict) else {})
                        if (m := re.match(r"/slurm/(v[0-9.]+)/", p))})
        return ", ".join(found) or "(none)"

    # -- plumbing ----------------------------------------------------------------
    @staticmethod
    def _api(path: str) -> str:
        return f"/slurm/{wire.API_VERSION}{path}"


    async def _refresh(self, *, force: bool = False) -> bool:
        """One GET /jobs. With ``update_time`` slurmctld answers 304 when nothing
        changed; otherwise it sends every job, which replaces the snapshot."""
        params: dict[str, str] | None = None
        if not force and self._update_time is not None:
            params = {"update_time": str(self._update_time)}
        # a second of margin: a change in the same second as this request is seen
        # again next time rather than missed
        started = int(time.time()) - 1
        status, data = await self.http.call("GET", self._api("/jobs"), params=params)
        if status == 304:
            return False
        jobs = data.get("jobs")
        if not isinstance(jobs, list):
            raise BackendError(self.name, None, "GET /jobs answered without a jobs list")
        self._records = wire.group_records(r for r in jobs if isinstance(r, dict))
        self._update_time = started
        for key in self._last.keys() & self._records.keys():
            self._last[key] = self._records[key]
        return True

    def _job(self, job_id: str, records: Sequence[Mapping[str, Any]]) -> Job:
        job = wire.job_from_records(job_id, records)
        if job_id not in self._records and not job.status.is_finished:
            # aged out of slurmctld before we saw it end: we cannot know how it ended
            job = attrs.evolve(
                job,
                status=JobStatus.UNKNOWN,
                reason="the job left slurmctld (MinJobAge) before its end was seen",
            )
        return job

    def _lookup(self, job_id: str) -> list[Mapping[str, Any]] | None:
        recs = self._records.get(job_id)
        if recs is not None:
            self._last[job_id] = recs
            return recs
        return self._last.get(job_id)

    def _step_jobs(self, job_id: str) -> list[tuple[str | None, str]]:
        """(step name, Slurm job id) of every Slurm job that makes up ``job_id``,
        head first: one for a command or one-step job, one per step otherwise (the
        head's comment lists them, so this works from any client)."""
        recs = self._lookup(job_id)
        if recs:
            steps = wire.parse_meta(recs[0].get("comment")).get("steps")
            if isinstance(steps, list) and steps:
                pairs = [(str(p[0]), str(p[1])) for p in steps if isinstance(p, list) and len(p) == 2]
                if pairs and pairs[0][1] == job_id:
                    return list(pairs)
        sub = self._submitted.get(job_id)
        if sub is not None:
            return [(name, jid) for name, jid in sub.steps]
        return [(None, job_id)]

    def _collect(self, job_id: str) -> list[Mapping[str, Any]] | None:
        """The records of every Slurm job of ``job_id`` (None: never seen)."""
        recs = self._lookup(job_id)
        if recs is None:
            return None
        out = list(recs)
        for _, jid in self._step_jobs(job_id)[1:]:
            out.extend(self._lookup(jid) or ())
        return out

    async def _records_of(self, job_id: str) -> list[Mapping[str, Any]]:
        if not _JOB_ID.fullmatch(job_id):
            raise JobNotFound(job_id, driver=self.name)
        if job_id not in self._records:
            await self._refresh(force=job_id not in self._last)
        recs = self._collect(job_id)
        if recs is None:
            raise JobNotFound(job_id, driver=self.name)
        return recs

    def _task_list(self, job_id: str) -> list[tuple[Task, int | None]]:
        """(Task, array index) for every task of every step of ``job_id``."""
        sub = self._submitted.get(job_id)
        steps = self._step_jobs(job_id)
        multi = len(steps) > 1
        out: list[tuple[Task, int | None]] = []
        for step, jid in steps:
            name = step or (sub.steps[0][0] if sub is not None else None)
            params = sub.parameters.get(name, []) if sub is not None and name is not None else []
            for task in wire.tasks_from_records(job_id, self._lookup(jid) or [], name):
                index = int(task.id) if task.id.isdigit() else None
                changes: dict[str, Any] = {}
                if index is not None and index < len(params):
                    changes["parameters"] = params[index]
                if multi:
                    changes["id"] = f"{name}/{task.id}"
                out.append((attrs.evolve(task, **changes) if changes else task, index))
        return out

    def _not_found(self, exc: SlurmAPIError) -> bool:
        return exc.number == _INVALID_JOB_ID

    # -- jobs --------------------------------------------------------------------
    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        fresh = await self._refresh()
        wanted = [i for i in ids if _JOB_ID.fullmatch(i) or _STEP_ID.fullmatch(i)]
        base = {i: (m.group(1) if (m := _STEP_ID.fullmatch(i)) else i) for i in wanted}
        if not fresh and any(b not in self._records and b not in self._last for b in base.values()):
            # a job newer than the snapshot (or a clock skew that gave a wrong 304)
            await self._refresh(force=True)
        out: dict[str, Job] = {}
        for key, job_id in base.items():
            recs = self._collect(job_id)
            if recs is None:
                continue
            job = self._job(job_id, recs)
            # "J.S" names a step of job J (for attach): answer with J's state
            out[key] = job if key == job_id else attrs.evolve(job, id=key)
        return out

    def _plan(self, spec: JobSpec) -> list[_StepRun]:
        """The job's steps in dependency order, each with its tasks' commands."""
        from ...openjd.plan import COMMAND_STEP, command_argv, plan_job

        if spec.template is None:
            if spec.command is None:
                raise InvalidSpec("command", "a job needs a command or a template")
            return [_StepRun(COMMAND_STEP, (), [(command_argv(spec.command), None, {})], [{}], spec.timeout)]
        from ...openjd.taskrun import task_run

        root = os.path.join(self.log_dir, "openjd", uuid.uuid4().hex)
        out: list[_StepRun] = []
        for step in plan_job(spec):
            if not step.tasks:
                raise InvalidSpec("template", f"step {step.name!r} has no tasks")
            runs = []
            limits: list[float | None] = []
            for i, task in enumerate(step.tasks):
                # the session directory, on the filesystem the nodes share (log_dir)
                workdir = os.path.join(root, f"{len(out)}-{i}")
                run = task_run(spec, step.name, task.parameters, workdir)
                extra = {k: v for k, v in run.env.items() if spec.env.get(k) != v}
                runs.append((tuple(run.argv), run.cwd, extra))
                limits.append(run.timeout)
            timeout = spec.timeout
            if timeout is None and limits and all(t is not None for t in limits):
                timeout = max(t for t in limits if t is not None)
            out.append(_StepRun(step.name, step.depends_on, runs, [dict(t.parameters) for t in step.tasks], timeout))
        return out

    async def _submit_one(self, body: Mapping[str, Any], field: str, spec: JobSpec) -> tuple[str, dict[str, Any]]:
        try:
            _, data = await self.http.call("POST", self._api("/job/submit"), body=body)
        except SlurmAPIError as exc:
            raise self._submit_error(exc, field, spec) from None
        job_id = data.get("job_id")
        if not isinstance(job_id, int):
            raise BackendError(self.name, None, f"submit answered without a job id: {data.get('errors')}")
        return str(job_id), data

    async def submit(self, specs: Sequence[JobSpec]) -> list[Job]:
        refs: dict[str, str] = {}
        out: list[Job] = []
        for index, spec in enumerate(specs):
            field = f"specs[{index}]" if len(specs) > 1 else "spec"
            if spec.retries:
                raise UnsupportedError(self.name, "retries", "Slurm has no per-task retry; requeue is not in the REST API")
            if spec.tty or spec.stdin:
                raise UnsupportedError(self.name, "tty/stdin on submit", "a batch job has no terminal; use exec")
            if spec.max_failed_tasks is not None:
                raise UnsupportedError(self.name, "max_failed_tasks")
            steps = self._plan(spec)
            deps: list[str] = []
            for dep in spec.depends_on:
                real = refs.get(dep, dep)
                if not _JOB_ID.fullmatch(real):
                    raise InvalidSpec(f"{field}.depends_on", f"{dep!r} is neither a Slurm job id nor the id of an earlier spec of this batch")
                deps.append(real)
            first_argv = steps[0].runs[0][0]
            name = spec.name or (os.path.basename(first_argv[0]) if first_argv else "aiofarm")
            multi = len(steps) > 1
            step_ids: dict[str, str] = {}
            head: tuple[str, dict[str, Any], dict[str, Any]] | None = None  # id, answer, body
            try:
                for st in steps:
                    # a step waits for the steps it names; root steps for the job's own deps
                    after = [step_ids[d] for d in st.depends_on] if st.depends_on else deps
                    is_head = head is None
                    meta: dict[str, Any] = {}
                    if multi:
                        meta = {"step": st.name} if is_head else {"step": st.name, "parent": head[0] if head else None}
                    step_spec = attrs.evolve(
                        spec,
                        name=name if is_head else f"{name}.{st.name}",
                        timeout=st.timeout,
                        tags=spec.tags if is_head else (),
                        description=spec.description if is_head else None,
                    )
                    body = wire.submit_body(
                        step_spec,
                        script=wire.batch_script(st.runs),
                        array_size=len(st.runs) if spec.template is not None and len(st.runs) > 1 else None,
                        env=dict(spec.env),
                        log_dir=self.log_dir,
                        dependency_ids=after,
                        default_partition=self.partition,
                        default_name=name,
                        meta=meta,
                    )
                    jid, data = await self._submit_one(body, field, spec)
                    step_ids[st.name] = jid
                    if head is None:
                        head = (jid, data, body)
                assert head is not None
                if multi:
                    # the head job names every step job, so one id finds them all
                    comment = wire.make_comment(
                        spec.tags, spec.description, step=steps[0].name,
                        steps=[[st.name, step_ids[st.name]] for st in steps],
                    )
                    await self.http.call("POST", self._api(f"/job/{head[0]}"), body={"comment": comment})
            except BaseException:
                # no half-submitted job left behind
                with anyio.CancelScope(shield=True):
                    for jid in step_ids.values():
                        with contextlib.suppress(FarmError, SlurmAPIError):
                            await self.http.call("DELETE", self._api(f"/job/{jid}"))
                raise
            jid, data, body = head
            self._submitted[jid] = _Submitted(
                [(st.name, step_ids[st.name]) for st in steps], {st.name: st.parameters for st in steps}
            )
            if spec.id is not None:
                refs[spec.id] = jid
            now = datetime.now(timezone.utc)
            status = JobStatus.SUSPENDED if spec.paused else JobStatus.PENDING
            n = sum(len(st.runs) for st in steps)
            out.append(
                Job(
                    id=jid,
                    status=status,
                    driver=self.name,
                    name=body["job"]["name"],
                    owner=self.user,
                    pool=body["job"].get("partition"),
                    tags=spec.tags,
                    description=spec.description,
                    priority=spec.priority,
                    created_at=now,
                    task_counts={status.value: n},
                    depends_on=tuple(deps),
                    raw={"submit": data},
                )
            )
        # our own change: make the next poll a full read
        self._update_time = None
        return out

    def _submit_error(self, exc: SlurmAPIError, field: str, spec: JobSpec) -> FarmError:
        if exc.number in _DEPENDENCY or exc.number == _INVALID_JOB_ID:
            return InvalidSpec(f"{field}.depends_on", f"Slurm refused the dependency {list(spec.depends_on)}: {exc.message}")
        if exc.number in (2000, 2015, 2070, 2101) or "partition" in exc.message.lower():
            return InvalidSpec(f"{field}.pool", f"Slurm refused partition {spec.pool or self.partition!r}: {exc.message}")
        if exc.number == 2050 or "time limit" in exc.message.lower():
            return InvalidSpec(f"{field}.timeout", exc.message)
        return exc.to_backend()

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        try:
            offset = int(page_token) if page_token is not None else 0
        except ValueError:
            raise InvalidSpec("page_token", "not a token of this driver") from None
        if page_token is None:
            await self._refresh()
        jobs = [
            self._job(jid, self._collect(jid) or recs)
            for jid, recs in self._records.items()
            # a later step of a multi-step job is part of its head's Job
            if not wire.parse_meta(recs[0].get("comment")).get("parent")
        ]
        # native pre-filtering (the client re-applies the whole query)
        if query.statuses:
            jobs = [j for j in jobs if j.status in query.statuses]
        if query.owners:
            jobs = [j for j in jobs if j.owner in query.owners]
        if query.pool:
            jobs = [j for j in jobs if j.pool == query.pool]
        if query.name is not None:
            jobs = [j for j in jobs if j.name == query.name]
        if query.tags:
            jobs = [j for j in jobs if set(query.tags) <= set(j.tags)]
        epoch = datetime.fromtimestamp(0, timezone.utc)
        jobs.sort(key=lambda j: (j.created_at or epoch, int(j.id)), reverse=query.reverse)
        page = jobs[offset : offset + page_size]
        nxt = str(offset + page_size) if offset + page_size < len(jobs) else None
        return page, nxt

    async def _each(self, ids: Sequence[str], fn: Any) -> None:
        """``await fn(job_id, slurm_id)`` for every Slurm job of every id."""
        for job_id in ids:
            if not _JOB_ID.fullmatch(job_id):
                raise JobNotFound(job_id, driver=self.name)
            targets = [job_id]
            if job_id in self._records or job_id in self._last or job_id in self._submitted:
                targets = [jid for _, jid in self._step_jobs(job_id)]
            for jid in targets:
                try:
                    await fn(job_id, jid)
                except SlurmAPIError as exc:
                    if self._not_found(exc):
                        if jid in self._last or jid in self._records or jid != job_id:
                            continue  # it ended and aged out: nothing left to change
                        raise JobNotFound(job_id, driver=self.name) from None
                    raise exc.to_backend() from None
        self._update_time = None

    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        if action is Action.CANCEL:

            async def cancel(_: str, jid: str) -> None:
                try:
                    await self.http.call("DELETE", self._api(f"/job/{jid}"))
                except SlurmAPIError as exc:
                    if exc.number != _ALREADY_DONE:
                        raise

            await self._each(ids, cancel)
        elif action in (Action.PAUSE, Action.RESUME):
            hold = action is Action.PAUSE

            async def set_hold(_: str, jid: str) -> None:
                try:
                    await self.http.call(
                        "POST", self._api(f"/job/{jid}"), body={"hold": hold},
                        retry_numbers=frozenset({TRANSITION_STATE_NO_UPDATE}),
                    )
                except SlurmAPIError as exc:
                    # holding a job that already runs: it keeps running (Slurm holds only
                    # pending work; suspend needs an operator), see docs/slurm.md
                    if exc.number not in (_NOT_PENDING, _ALREADY_DONE):
                        raise

            await self._each(ids, set_hold)
        elif action is Action.RETRY:
            raise UnsupportedError(self.name, "retry", "requeue is not in the slurmrestd v0.0.38 API")
        else:
            raise UnsupportedError(self.name, "delete", "Slurm forgets finished jobs itself (MinJobAge)")

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        body: dict[str, Any] = {}
        if changes.name is not None and (not changes.name or "\n" in changes.name):
            raise InvalidSpec("name", "must be a non-empty single line")
        if changes.priority is not None:
            body["nice"] = 100 - changes.priority

        async def apply(job_id: str, jid: str) -> None:
            this = dict(body)  # priority: every step job
            head = jid == job_id
            if changes.tags is not None and head:
                recs = await self._records_of(job_id)
                this["comment"] = wire.retag_comment(recs[0].get("comment"), changes.tags)
            if this:
                await self.http.call(
                    "POST", self._api(f"/job/{jid}"), body=this,
                    retry_numbers=frozenset({TRANSITION_STATE_NO_UPDATE}),
                )
            if changes.name is not None and head:
                # slurmrestd v0.0.38 answers 200 to a name change and ignores it
                await self._scontrol(["update", f"JobId={job_id}", f"Name={changes.name}"], "update name")

        await self._each(ids, apply)

    async def _scontrol(self, args: Sequence[str], feature: str) -> None:
        """``scontrol`` on this host for what slurmrestd v0.0.38 cannot do, run as the
        driver's user when we are root (so Slurm applies that user's permissions)."""
        import shutil

        import anyio

        scontrol = shutil.which("scontrol")
        if scontrol is None:
            raise UnsupportedError(self.name, feature, "slurmrestd v0.0.38 cannot do it and scontrol is not on this host")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        creds: dict[str, Any] = {}
        if os.geteuid() == 0 and self.user != "root":
            import pwd

            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                raise UnsupportedError(self.name, feature, f"user {self.user!r} does not exist on this host") from None
            creds = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        try:
            result = await anyio.run_process([scontrol, *args], check=False, env=env, **creds)
        except OSError as exc:
            raise BackendError(self.name, exc.errno, f"cannot run scontrol: {exc.strerror}") from None
        if result.returncode != 0:
            msg = (result.stderr or result.stdout).decode(errors="replace").strip()
            if "Invalid job id" in msg:
                raise SlurmAPIError(500, _INVALID_JOB_ID, msg)
            raise BackendError(self.name, result.returncode, f"scontrol {' '.join(args[:2])}: {msg}")

    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        name = _signal.Signals(sig).name.removeprefix("SIG")
        if name not in _SIGNALS:
            raise InvalidSpec("signal", f"slurmrestd cannot send {name}; it sends {', '.join(sorted(_SIGNALS))}")
        await self._refresh()  # the state now, not the last poll's (304 when unchanged)
        recs = await self._records_of(job_id)
        status = self._job(job_id, recs).status
        if status is not JobStatus.RUNNING:
            raise JobNotRunning(job_id, status, "signal")

        running = {str(r.get("job_id")) for r in recs if wire.record_status(r)[0] is JobStatus.RUNNING}
        running |= {str(r.get("array_job_id")) for r in recs if wire.record_status(r)[0] is JobStatus.RUNNING}

        async def send(_: str, jid: str) -> None:
            if jid not in running:
                return  # a step that is not running has no process to signal
            # "Job can not be altered now" right after the job starts: retried
            await self.http.call(
                "DELETE", self._api(f"/job/{jid}"), params={"signal": name},
                retry_numbers=frozenset({TRANSITION_STATE_NO_UPDATE}),
            )

        await self._each([job_id], send)

    async def tasks(self, job_id: str) -> list[Task]:
        await self._refresh()
        await self._records_of(job_id)  # JobNotFound
        return [task for task, _ in self._task_list(job_id)]

    async def explain(self, job_id: str) -> str:
        await self._refresh()
        recs = await self._records_of(job_id)
        job = self._job(job_id, recs)
        lines = [f"job {job_id} is {job.status.value}" + (f": {job.reason}" if job.reason else "")]
        for rec in recs:
            reason = rec.get("state_reason")
            which = rec.get("array_task_id")
            which = which if isinstance(which, int) else rec.get("array_task_string") or rec.get("job_id")
            line = f"  {which}: {rec.get('job_state')}"
            if reason and reason != "None":
                line += f" (reason {reason})"
            if rec.get("dependency"):
                line += f", dependency {rec.get('dependency')}"
            if rec.get("job_state") == "PENDING" and rec.get("priority") == 0:
                line += ", held (priority 0): resume it"
            lines.append(line)
        return "\n".join(lines)

    # -- logs --------------------------------------------------------------------
    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        """Lines from the job's stdout/stderr files, read directly: the files must be
        on a filesystem this host shares with the nodes (docs/slurm.md). The token
        holds byte offsets per (task, stream)."""
        import anyio.to_thread

        recs = await self._records_of(job_id)
        offsets: dict[str, int] = {}
        if token is not None:
            try:
                loaded = json.loads(token)
                if not isinstance(loaded, dict):
                    raise ValueError
                offsets = {str(k): int(v) for k, v in loaded.items()}
            except (ValueError, TypeError):
                raise InvalidSpec("next_token", "not a log token of the Slurm driver") from None
        entries = self._task_list(job_id)
        is_array = len(entries) > 1 or any(
            isinstance(r.get("array_task_id"), int) or r.get("array_task_string") for r in recs
        )
        if query.task is not None:
            entries = [(t, i) for t, i in entries if t.id == query.task]
            if not entries:
                raise InvalidSpec("task", f"job {job_id} has no task {query.task!r}")
        lines: list[LogLine] = []
        refreshed = False
        for task, index in entries:
            rec = task.raw
            for stream, key in (("stdout", "standard_output"), ("stderr", "standard_error")):
                if stream not in query.streams or len(lines) >= query.limit:
                    continue
                pattern = rec.get(key)
                if not isinstance(pattern, str) or not pattern:
                    continue
                path = wire.expand_path(pattern, rec, index)
                cursor = f"{task.id}:{stream}"
                start = offsets.get(cursor, 0)
                try:
                    # a thread: the shared filesystem may be slow (NFS)
                    data = await anyio.to_thread.run_sync(_read_chunk, path, start)
                except FileNotFoundError:
                    continue
                except OSError as exc:
                    raise BackendError(self.name, exc.errno, f"cannot read {path}: {exc.strerror}") from None
                done = task.status.is_finished
                if data and not data.endswith(b"\n") and not done and not refreshed:
                    # a trailing partial line is final only if the task has ended
                    await self._refresh()
                    refreshed = True
                    fresh = {t.id: t for t, _ in self._task_list(job_id)}
                    done = task.id in fresh and fresh[task.id].status.is_finished
                pos = start
                for raw_line in data.splitlines(keepends=True):
                    if len(lines) >= query.limit:
                        break
                    if not raw_line.endswith(b"\n") and not (done and len(data) < (1 << 20)):
                        break
                    pos += len(raw_line)
                    text = raw_line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
                    lines.append(LogLine(None, stream, text, task.id if is_array else None))
                if pos != start:
                    offsets[cursor] = pos
        new_token = json.dumps(offsets, separators=(",", ":"), sort_keys=True) if offsets else token
        return LogPage(tuple(lines), new_token)

    # -- interactive -------------------------------------------------------------
    async def _running_record(self, job_id: str, operation: str) -> Mapping[str, Any]:
        await self._refresh()
        recs = await self._records_of(job_id)
        for rec in recs:
            if wire.record_status(rec)[0] is JobStatus.RUNNING:
                return rec
        raise JobNotRunning(job_id, self._job(job_id, recs).status, operation)

    def _client_env(self, owner: str | None) -> tuple[dict[str, str], str | None]:
        # our own SLURM_* (e.g. when aiofarm runs inside a job) would confuse srun
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
        as_user: str | None = None
        if os.geteuid() == 0 and owner and owner != "root":
            # root cannot create steps in another user's job: run as its owner
            import pwd

            try:
                pw = pwd.getpwnam(owner)
            except KeyError:
                raise BackendError(self.name, None, f"job owner {owner!r} is not a user on this host") from None
            as_user = owner
            env.update(HOME=pw.pw_dir, USER=owner, LOGNAME=owner)
        return env, as_user

    async def open_stdio(
        self,
        job_id: str,
        command: Sequence[str] | None,
        *,
        tty: bool,
        stdin: bool,
        stdout: bool,
        stderr: bool,
        size: tuple[int, int] | None = None,
    ) -> StdioChannel:
        from .proc import start_channel

        if command is None:
            m = _STEP_ID.fullmatch(job_id)
            if m is None:
                raise UnsupportedError(
                    self.name,
                    "attach to a batch job",
                    "the batch step's output goes to files (use logs); sattach attaches only "
                    "to srun-launched steps: pass the step as 'JOBID.STEP'",
                )
            rec = await self._running_record(m.group(1), "attach")
            env, as_user = self._client_env(rec.get("user_name"))
            argv = ["sattach", "--quiet", job_id] if stdin else ["sattach", "--quiet", "--input-filter=0", job_id]
            return await start_channel(
                argv, tty=False, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
                user=as_user, size=None, grace=self.exec_grace,
            )
        if not command:
            raise InvalidSpec("command", "must not be empty")
        rec = await self._running_record(job_id, "exec")
        env, as_user = self._client_env(rec.get("user_name"))
        argv = [
            "srun", f"--jobid={rec.get('job_id')}", "--overlap", "--ntasks=1", "--nodes=1",
            "--quiet", "--job-name=aiofarm-exec",
        ]
        cwd = rec.get("current_working_directory")
        if isinstance(cwd, str) and cwd:
            argv.append(f"--chdir={cwd}")
        argv += ["--pty"] if tty else ["--unbuffered"]
        if not tty and not stdin:
            argv.append("--input=none")
        argv += ["--", *command]
        return await start_channel(
            argv, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, env=env,
            user=as_user, size=size, grace=self.exec_grace,
        )

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        """The job's node address (``batch_host`` -> ``GET /node/{name}`` -> address):
        the client dials it directly, so this host must reach the nodes."""
        rec = await self._running_record(job_id, "port_forward")
        host = rec.get("batch_host") or str(rec.get("nodes") or "").split(",")[0]
        if not host:
            raise BackendError(self.name, None, f"job {job_id} has no node yet")
        try:
            _, data = await self.http.call("GET", self._api(f"/node/{host}"))
        except SlurmAPIError:
            return str(host), port  # fall back to the node name as a host name
        nodes = data.get("nodes") or []
        if nodes and isinstance(nodes[0], dict) and nodes[0].get("address"):
            return str(nodes[0]["address"]), port
        return str(host), port

    async def connect_port(self, job_id: str, port: int) -> anyio.abc.ByteStream:
        from ...errors import ConnectionLost

        host, real_port = await self.port_address(job_id, port)
        try:
            return await anyio.connect_tcp(host, real_port)
        except OSError as exc:
            raise ConnectionLost(
                f"cannot connect to port {port} of job {job_id} at {host}: {exc.strerror or exc}"
            ) from None

    # -- pools and workers -------------------------------------------------------
    async def _nodes(self) -> list[Mapping[str, Any]]:
        try:
            _, data = await self.http.call("GET", self._api("/nodes"))
        except SlurmAPIError as exc:
            raise exc.to_backend() from None
        return [n for n in data.get("nodes", []) if isinstance(n, dict)]

    async def list_pools(self) -> list[Pool]:
        try:
            _, data = await self.http.call("GET", self._api("/partitions"))
        except SlurmAPIError as exc:
            raise exc.to_backend() from None
        pools = []
        for p in data.get("partitions", []):
            if not isinstance(p, dict) or not p.get("name"):
                continue
            cpus = p.get("total_cpus")
            pools.append(Pool(id=str(p["name"]), name=str(p["name"]), slots=cpus if isinstance(cpus, int) else None, driver=self.name, raw=p))
        return pools

    async def capacity(self) -> dict[str, int]:
        pools = await self.list_pools()
        out = {p.name: 0 for p in pools}
        for node in await self._nodes():
            if not _node_usable(node):
                continue
            idle = node.get("idle_cpus")
            for part in node.get("partitions") or ():
                if part in out and isinstance(idle, int):
                    out[part] += idle
        return out

    async def list_workers(self) -> list[Worker]:
        workers = []
        for node in await self._nodes():
            name = str(node.get("name"))
            parts = node.get("partitions") or []
            reason = node.get("reason") or None
            workers.append(
                Worker(
                    id=name,
                    name=name,
                    enabled=not _node_drained(node),
                    status=_node_state(node),
                    pool=str(parts[0]) if parts else None,
                    cpus=node.get("cpus") if isinstance(node.get("cpus"), int) else None,
                    reason=str(reason) if reason else None,
                    raw=node,
                )
            )
        return workers

    async def set_workers_enabled(
        self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None
    ) -> None:
        """DRAIN (or DOWN with ``stop_work``) / RESUME. slurmrestd v0.0.38 cannot
        update nodes, so this runs ``scontrol update`` on this host (Slurm admin only)."""
        if not names:
            return
        known = {w.name for w in await self.list_workers()}
        for n in names:
            if n not in known:
                raise InvalidSpec("names", f"no Slurm node {n!r} (nodes: {', '.join(sorted(known))})")
        args = ["update", f"NodeName={','.join(names)}"]
        if enabled:
            args.append("State=RESUME")
        else:
            args += ["State=DOWN" if stop_work else "State=DRAIN", f"Reason={reason or 'disabled by aiofarm'}"]
        try:
            await self._scontrol(args, "workers.enable" if enabled else "workers.disable")
        except BackendError as exc:
            if enabled and "Invalid node state" in exc.message:
                return  # it was not disabled
            raise

    async def create_pool(self, name: str, slots: int | None) -> Pool:
        raise UnsupportedError(self.name, "pools.create", "partitions are defined in slurm.conf")

    async def rename_pool(self, pool_id: str, new_name: str) -> Pool:
        raise UnsupportedError(self.name, "pools.rename", "partitions are defined in slurm.conf")

    async def delete_pool(self, pool_id: str) -> None:
        raise UnsupportedError(self.name, "pools.delete", "partitions are defined in slurm.conf")


def _read_token(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        token = f.read().strip()
    # accept the output of `scontrol token` as is
    return token.removeprefix("SLURM_JWT=")


def _read_chunk(path: str, start: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(1 << 20)


def _node_flags(node: Mapping[str, Any]) -> set[str]:
    flags = node.get("state_flags") or []
    return {str(f).upper() for f in flags} if isinstance(flags, list) else set()


def _node_state(node: Mapping[str, Any]) -> str:
    state = str(node.get("state") or "unknown").lower()
    flags = _node_flags(node)
    return "+".join([state, *sorted(f.lower() for f in flags)]) if flags else state


def _node_drained(node: Mapping[str, Any]) -> bool:
    return bool(_node_flags(node) & {"DRAIN", "DRAINING", "DRAINED"}) or "drain" in str(node.get("state", "")).lower()


def _node_usable(node: Mapping[str, Any]) -> bool:
    state = str(node.get("state") or "").lower()
    return not _node_drained(node) and state in ("idle", "mixed", "allocated") and not (
        _node_flags(node) & {"DOWN", "NOT_RESPONDING", "FAIL"}
    )

