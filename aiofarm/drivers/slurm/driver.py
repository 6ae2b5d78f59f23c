"""The Slurm driver: a Slurm cluster through slurmrestd, OpenAPI v0.0.38 (Slurm
22.05) to v0.0.45 (Slurm 26.05), the version negotiated on open.

URLs: ``slurm+http://host:6820?partition=debug&user=alice`` and
``slurm+unix:///run/slurmrestd.sock``. See docs/slurm.md for setup, auth, the
shared-filesystem assumption of logs, and what is unsupported.
"""

from __future__ import annotations

import os
import signal as _signal
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

import anyio

from ...errors import (
    AuthError,
    BackendError,
    ConnectionLost,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    UnsupportedError,
)
from ...models import Capability, Job, JobSpec, JobStatus, LogPage, Pool, Task, Worker
from ..base import (
    Action,
    Driver,
    JobUpdate,
    ListQuery,
    LogQuery,
    StdioChannel,
    SubmitAttempt,
    page_number,
)
from . import mapping, tasklist
from .commands import INVALID_JOB_ID, CommandFailed, SlurmCommands
from .config import SlurmConfig, parse_url, read_token
from .http import TRANSITION_STATE_NO_UPDATE, SlurmAPIError, SlurmHTTP
from .logs import read_log
from .negotiate import Api, negotiate
from .nodes import Nodes
from .records import Rec
from .store import JobStore, is_job_id
from .submit import submit_specs

if TYPE_CHECKING:
    import anyio.abc
    import yarl

__all__ = ["SlurmDriver"]

_INVALID_JOB_ID = 2017
_ALREADY_DONE = 2021
_NOT_PENDING = 2073
_SIGNALS = frozenset(
    {"HUP", "INT", "QUIT", "ABRT", "KILL", "ALRM", "TERM", "USR1", "USR2", "URG", "CONT", "STOP",
     "TSTP", "TTIN", "TTOU"}
)


class SlurmDriver(Driver):
    name: ClassVar[str] = "slurm"
    #: a retried submit finds the jobs an earlier attempt made by their comment tag
    idempotent_submit: ClassVar[bool] = True
    capabilities: ClassVar[frozenset[Capability]] = frozenset(
        {
            Capability.SUBMIT,
            Capability.SUBMIT_TEMPLATE,
            Capability.LIST,
            Capability.CANCEL,
            Capability.PAUSE,
            Capability.UPDATE,
            Capability.RETRY,
            Capability.SIGNAL,
            Capability.TASKS,
            Capability.LOGS,
            Capability.LOGS_FOLLOW,
            # sattach reaches srun-launched steps only (attach.step), never the job
            # itself: its batch step writes to files (no attach.batch_step)
            Capability.ATTACH,
            Capability.ATTACH_STEP,
            Capability.EXEC,
            Capability.PORT_FORWARD,
            Capability.POOLS,
            Capability.WORKERS,
            Capability.WORKERS_MANAGE,
            Capability.EXPLAIN,
            # the call files and the client's Python must be on the shared filesystem
            Capability.FUNCTIONS,
            # parameters (aiofarm/capabilities.py); log lines carry no time (files),
            # so neither logs.since nor logs.timestamps
            Capability.SUBMIT_RETRIES,  # the batch script requeues itself
            # an array's throttle (%N); a step run in sessions gets that many sessions
            Capability.SUBMIT_MAX_WORKERS,
            Capability.PAUSE_STOP_WORK,  # scontrol requeuehold
            Capability.LOGS_STREAMS,
            Capability.LOGS_TASK,
            Capability.EXEC_TTY,
            # each task runs under the OpenJD session runner, environment templates first
            Capability.SUBMIT_ENVIRONMENTS,
            Capability.WORKERS_STOP_WORK,
        }
    )
    # scancel stops running work
    fixed_parameters: ClassVar[Mapping[Capability, object]] = MappingProxyType({Capability.CANCEL_STOP_WORK: True})
    # one GET /jobs answers for every id, however many (it names none)
    max_batch_get: ClassVar[int] = 1_000_000

    def __init__(self, config: SlurmConfig) -> None:
        self.config = config
        self.user = config.user
        self.log_dir = config.log_dir
        reload = None
        if config.token_file is not None:
            token_file = config.token_file

            def reload() -> str | None:
                try:
                    return read_token(token_file)
                except OSError:
                    return None

        self.http = SlurmHTTP(
            base_url=config.base_url, unix_path=config.unix_path, user=config.user, token=config.token or "",
            timeout=config.timeout, reload_token=reload,
        )
        self.store = JobStore(self.http)
        self.commands = SlurmCommands(config.bin_dir, config.user, grace=config.exec_grace)
        self.nodes = Nodes(self.http, self.commands)
        self.api: Api | None = None

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> SlurmDriver:
        return cls(parse_url(url, options))

    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        if not self.config.token:
            # a dead host or port is the first thing to say: no token would help there
            await self._reachable()
            raise AuthError(
                "no Slurm JWT: pass token= or token_file= in the URL/options, or set SLURM_JWT "
                "(get one with `scontrol token username=<user>`)"
            )
        await self.http.open()
        api = await negotiate(self.http, self.config.api)
        # /ping answers 200 to a bad token from v0.0.42 on: /diag needs a good one
        self.http.auth_probe = api.path("/diag")
        await self.http.call("GET", api.path("/diag"))
        _, ping = await self.http.call("GET", api.path("/ping"))
        if not api.wire.ping_ok(ping):
            raise BackendError(self.name, None, f"slurmctld is not responding (slurmrestd {api.version} ping)")
        self.api = self.store.api = self.nodes.api = api
        try:
            os.makedirs(self.log_dir, exist_ok=True)
            if os.stat(self.log_dir).st_uid == os.geteuid():
                # jobs of any user write their output here (like /tmp)
                os.chmod(self.log_dir, 0o1777)
        except OSError as exc:
            raise InvalidSpec("options.log_dir", f"cannot create {self.log_dir}: {exc.strerror}") from None

    async def _reachable(self) -> None:
        """Raise ConnectionLost when nothing listens at slurmrestd's address."""
        import anyio
        import yarl

        http = self.http
        try:
            with anyio.fail_after(http.timeout):
                if http.unix_path is not None:
                    stream: anyio.abc.ByteStream = await anyio.connect_unix(http.unix_path)
                else:
                    url = yarl.URL(http.base_url)
                    stream = await anyio.connect_tcp(url.host or "localhost", url.port or 80)
                await stream.aclose()
        except (OSError, TimeoutError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc  # anyio's "all attempts failed"
            what = (cause.strerror if isinstance(cause, OSError) else None) or str(exc) or "timed out"
            raise ConnectionLost(f"cannot reach slurmrestd at {http.unix_path or http.base_url}: {what}") from None

    async def aclose(self) -> None:
        await self.http.aclose()

    @property
    def _api(self) -> Api:
        if self.api is None:
            raise ConnectionLost("the Slurm driver is not open")
        return self.api

    # -- jobs --------------------------------------------------------------------
    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        ids = [i for i in dict.fromkeys(ids) if is_job_id(i)]
        await self.store.poll(ids)
        jobs: list[Job] = []
        for job_id in ids:
            recs = self.store.collect(job_id)
            if recs is not None:
                jobs.append(self.store.job(job_id, recs))
        return {job.id: job for job in await tasklist.count_tasks(self.store, jobs)}

    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        return await submit_specs(self.http, self.store, self.config, specs, attempt)

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        offset = page_number(page_token, self.name) or 0
        store = self.store
        if page_token is None:
            await store.refresh()
            if query.since is not None:
                await self._history_since(query.since)
        groups = dict(store.records)
        if query.since is not None:
            since = query.since.timestamp()
            for key, recs in store.last.items():
                if key not in groups and any(r.source == "dbd" and r.submit_time >= since for r in recs):
                    groups[key] = recs
        jobs = [
            store.job(jid, store.collect(jid) or recs)
            for jid, recs in groups.items()
            # a later step of a multi-step job is part of its head's Job
            if not mapping.parse_meta(recs[0].comment).get("parent")
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
        page = await tasklist.count_tasks(self.store, jobs[offset : offset + page_size])
        nxt = str(offset + page_size) if offset + page_size < len(jobs) else None
        return page, nxt

    async def _history_since(self, since: datetime) -> None:
        api = self._api
        if not api.accounting:
            if since.timestamp() < time.time() - self.config.min_job_age:
                raise UnsupportedError(
                    self.name,
                    "list(since=...) older than slurmctld keeps jobs",
                    f"this cluster has no accounting (slurmdbd) through slurmrestd {api.version}; slurmctld "
                    f"forgets finished jobs after MinJobAge ({self.config.min_job_age:g} s, option min_job_age)",
                )
            return
        for rec_group in mapping.group_records(await self.store.history_since(since.timestamp())).items():
            key, recs = rec_group
            if key not in self.store.records:
                self.store.last[key] = recs

    async def _each(self, ids: Sequence[str], fn: Callable[[str, str], Awaitable[None]]) -> None:
        """``await fn(job_id, slurm_id)`` for every Slurm job of every id."""
        store = self.store
        for job_id in ids:
            if not is_job_id(job_id):
                raise JobNotFound(job_id, driver=self.name)
            targets = [job_id]
            if store.known(job_id):
                targets = [jid for _, jid in store.step_jobs(job_id)]
            for jid in targets:
                try:
                    await fn(job_id, jid)
                except SlurmAPIError as exc:
                    if exc.number == _INVALID_JOB_ID or exc.status == 404:
                        if jid in store.last or jid in store.records or jid != job_id:
                            continue  # it ended and aged out: nothing left to change
                        raise JobNotFound(job_id, driver=self.name) from None
                    raise exc.to_backend() from None
        store.invalidate()

    async def _scontrol(self, args: Sequence[str], feature: str) -> None:
        """``scontrol`` on this host for what slurmrestd cannot do (requeue), as the
        driver's user (so Slurm applies that user's permissions)."""
        try:
            await self.commands.run(["scontrol", *args], owner=self.user, feature=feature)
        except CommandFailed as exc:
            if INVALID_JOB_ID in exc.message:
                raise SlurmAPIError(500, _INVALID_JOB_ID, exc.message) from None
            raise BackendError(self.name, exc.code, f"scontrol {' '.join(args[:2])}: {exc.message}") from None

    async def _start_soon(self, jid: str, feature: str) -> None:
        """Slurm holds a requeued job back two minutes (BeginTime) unless told
        otherwise; it must not start within the second its last run ended (slurmd
        revokes that run's credential). slurmrestd v0.0.38 ignores begin_time
        updates, so scontrol does it on every version."""
        api = self._api
        if api.requeue:
            # the version that can requeue through REST can set the start time too
            begin = {"set": True, "infinite": False, "number": int(time.time()) + 2}
            await self.http.call("POST", api.path(f"/job/{jid}"), body=api.wire.update_body({"begin_time": begin}))
            return
        await self._scontrol(["update", f"JobId={jid}", "StartTime=now+2"], feature)

    async def _requeue(self, jid: str, *, hold: bool, feature: str) -> None:
        """Run a job (array task) again: ``GET /job/{id}/requeue`` where the version
        has it (v0.0.45), else ``scontrol requeue`` / ``requeuehold``."""
        api = self._api
        if api.requeue:
            await self.http.call("GET", api.path(f"/job/{jid}/requeue"), params={"Hold": "true"} if hold else None)
            return
        await self._scontrol(["requeuehold" if hold else "requeue", jid], feature)

    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        api = self._api
        if action is Action.DELETE:
            raise UnsupportedError(self.name, "delete", "Slurm forgets finished jobs itself (MinJobAge)")
        if action is Action.RETRY:
            await self._retry(ids)
            return

        async def cancel(_: str, jid: str) -> None:
            try:
                await self.http.call("DELETE", api.path(f"/job/{jid}"))
            except SlurmAPIError as exc:
                if exc.number != _ALREADY_DONE:
                    raise

        async def set_hold(job_id: str, jid: str) -> None:
            hold = action is Action.PAUSE
            recs = self.store.lookup(jid) or []
            if hold and stop_work and any(mapping.record_status(r)[0] is JobStatus.RUNNING for r in recs):
                # stop the work: back to pending, held (the job starts over on resume)
                await self._requeue(jid, hold=True, feature="pause(stop_work=True)")
                return
            try:
                await self.http.call(
                    "POST", api.path(f"/job/{jid}"), body=api.wire.update_body({"hold": hold}),
                    retry_numbers=frozenset({TRANSITION_STATE_NO_UPDATE}),
                )
                if not hold and any(r.restart_cnt and r.state == "PENDING" for r in recs):
                    await self._start_soon(jid, "resume")  # requeued by pause(stop_work=True)
            except SlurmAPIError as exc:
                # holding a job that already runs: it keeps running (pause holds only
                # pending work unless stop_work), see docs/slurm.md
                if exc.number not in (_NOT_PENDING, _ALREADY_DONE):
                    raise

        if action is Action.PAUSE or action is Action.RESUME:
            if action is Action.PAUSE and stop_work:
                for job_id in ids:  # which of them run now
                    if is_job_id(job_id):
                        await self.store.fetch(job_id)
            await self._each(ids, set_hold)
        else:
            await self._each(ids, cancel)

    async def _retry(self, ids: Sequence[str]) -> None:
        """``scontrol requeue`` of every failed or cancelled Slurm job (array task) of
        each job: Slurm runs it again, counting ``restart_cnt``."""
        for job_id in ids:
            if is_job_id(job_id):
                await self.store.fetch(job_id)
            recs = await self.store.records_of(job_id)
            if any(r.source == "dbd" for r in recs):
                raise UnsupportedError(
                    self.name, "retry", f"job {job_id} has left slurmctld (MinJobAge); only accounting remembers it"
                )
            # an array task's own job id requeues that task alone
            targets = [
                str(r.job_id) for r in recs if mapping.record_status(r)[0] in (JobStatus.FAILED, JobStatus.CANCELED)
            ]
            for jid in dict.fromkeys(targets):
                try:
                    await self._requeue(jid, hold=False, feature="retry")
                    await self._start_soon(jid, "retry")
                except SlurmAPIError:
                    raise JobNotFound(job_id, driver=self.name) from None
        self.store.invalidate()

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        api = self._api
        body: dict[str, Any] = {}
        if changes.name is not None and (not changes.name or "\n" in changes.name):
            raise InvalidSpec("name", "must be a non-empty single line")
        if changes.priority is not None:
            body["nice"] = 100 - changes.priority

        async def apply(job_id: str, jid: str) -> None:
            this = dict(body)  # priority: every step job
            head = jid == job_id
            if changes.tags is not None and head:
                recs = await self.store.records_of(job_id)
                this["comment"] = mapping.retag_comment(recs[0].comment, changes.tags)
            if changes.name is not None and head and not api.wire.ignores_name_update:
                this["name"] = changes.name
            if this:
                await self.http.call(
                    "POST", api.path(f"/job/{jid}"), body=api.wire.update_body(this),
                    retry_numbers=frozenset({TRANSITION_STATE_NO_UPDATE}),
                )
            if changes.name is not None and head and api.wire.ignores_name_update:
                # slurmrestd v0.0.38 answers 200 to a name change and ignores it
                await self._scontrol(["update", f"JobId={job_id}", f"Name={changes.name}"], "update name")

        await self._each(ids, apply)

    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        api = self._api
        name = _signal.Signals(sig).name.removeprefix("SIG")
        if name not in _SIGNALS:
            raise InvalidSpec("signal", f"slurmrestd cannot send {name}; it sends {', '.join(sorted(_SIGNALS))}")
        if is_job_id(job_id):
            await self.store.fetch(job_id)  # the state now, not the last poll's
        recs = await self.store.records_of(job_id)
        status = self.store.job(job_id, recs).status
        if status is not JobStatus.RUNNING:
            raise JobNotRunning(job_id, status, "signal")
        running = {str(r.job_id) for r in recs if mapping.record_status(r)[0] is JobStatus.RUNNING}
        running |= {str(r.array_job_id) for r in recs if mapping.record_status(r)[0] is JobStatus.RUNNING}

        async def send(_: str, jid: str) -> None:
            if jid not in running:
                return  # a step that is not running has no process to signal
            # "Job can not be altered now" right after the job starts: retried
            await self.http.call(
                "DELETE", api.path(f"/job/{jid}"), params={"signal": name},
                retry_numbers=frozenset({TRANSITION_STATE_NO_UPDATE}),
            )

        await self._each([job_id], send)

    async def tasks(self, job_id: str) -> list[Task]:
        if is_job_id(job_id):
            await self.store.fetch(job_id)
        await self.store.records_of(job_id)  # JobNotFound
        return [task for task, _, _ in await tasklist.task_list(self.store, job_id)]

    async def explain(self, job_id: str) -> str:
        if is_job_id(job_id):
            await self.store.fetch(job_id)
        recs = await self.store.records_of(job_id)
        job = self.store.job(job_id, recs)
        lines = [f"job {job_id} is {job.status.value}" + (f": {job.reason}" if job.reason else "")]
        for rec in recs:
            which = rec.array_task_id if rec.array_task_id is not None else rec.array_task_string or rec.job_id
            line = f"  {which}: {rec.state}"
            if rec.reason and rec.reason != "None":
                line += f" (reason {rec.reason})"
            if rec.dependency:
                line += f", dependency {rec.dependency}"
            if rec.state == "PENDING" and (rec.hold or rec.priority == 0):
                line += ", held (priority 0): resume it"
            lines.append(line)
        return "\n".join(lines)

    # -- logs --------------------------------------------------------------------
    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        recs = await self.store.records_of(job_id)
        entries = await tasklist.task_list(self.store, job_id)
        is_array = len(entries) > 1 or any(r.array_task_id is not None or r.array_task_string for r in recs)
        if query.task is None:
            # the tasks of one session share its output: read it once
            entries = list({(rec.job_id, index): (task, index, rec) for task, index, rec in reversed(entries)}.values())
            entries.reverse()

        async def refreshed() -> dict[str, Task]:
            await self.store.fetch(job_id)
            return {t.id: t for t, _, _ in await tasklist.task_list(self.store, job_id)}

        return await read_log(
            job_id, token, query, entries, is_array, refreshed, tasklist.session_tasks(self.store, job_id)
        )

    # -- interactive -------------------------------------------------------------
    async def _running_record(self, job_id: str, operation: str) -> Rec:
        # the client has usually just seen it RUNNING, so the records of that poll
        # answer; records older than the job's start (a caller that learnt it runs
        # another way, e.g. from its output) are read again once before refusing
        def running(recs: Sequence[Rec]) -> Rec | None:
            return next((r for r in recs if mapping.record_status(r)[0] is JobStatus.RUNNING), None)

        recs = await self.store.records_of(job_id)
        if (rec := running(recs)) is None:
            await self.store.fetch(job_id)
            recs = await self.store.records_of(job_id)
            rec = running(recs)
        if rec is None:
            raise JobNotRunning(job_id, self.store.job(job_id, recs).status, operation)
        return rec

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
        if command is None:
            raise UnsupportedError(
                self.name, "attach.batch_step",
                "the batch step's output goes to files (use logs); sattach attaches to srun steps (step=)",
            )
        if not command:
            raise InvalidSpec("command", "must not be empty")
        rec = await self._running_record(job_id, "exec")
        argv = [
            # --quiet twice: not even srun's "task 0: Exited with exit code N" on the
            # command's stderr (the exit code says it); srun's own errors go with it
            "srun", f"--jobid={rec.job_id}", "--overlap", "--ntasks=1", "--nodes=1",
            "--quiet", "--quiet", "--job-name=aiofarm-exec",
        ]
        if rec.cwd:
            argv.append(f"--chdir={rec.cwd}")
        argv += ["--pty"] if tty else ["--unbuffered"]
        if not tty and not stdin:
            argv.append("--input=none")
        argv += ["--", *command]
        return self.commands.channel(
            argv, owner=rec.user_name, feature="exec", tty=tty, stdin=stdin, stdout=stdout, stderr=stderr, size=size
        )

    async def open_step_stdio(
        self, job_id: str, step: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> StdioChannel:
        """``sattach JOBID.STEP``: a step ``srun`` launched inside the job."""
        if not (step.isascii() and step.isdigit()):
            raise InvalidSpec("step", f"a Slurm step id is a number (as `squeue -s` shows), got {step!r}")
        rec = await self._running_record(job_id, "attach")
        target = f"{rec.job_id}.{step}"
        argv = ["sattach", "--quiet", target] if stdin else ["sattach", "--quiet", "--input-filter=0", target]
        return self.commands.channel(
            argv, owner=rec.user_name, feature="attach", tty=False, stdin=stdin, stdout=stdout, stderr=stderr
        )

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        """The job's node address (``batch_host`` -> ``GET /node/{name}`` -> address):
        the client dials it directly, so this host must reach the nodes."""
        rec = await self._running_record(job_id, "port_forward")
        host = rec.batch_host or rec.nodes.split(",")[0]
        if not host:
            raise BackendError(self.name, None, f"job {job_id} has no node yet")
        # fall back to the node name as a host name
        return (await self.nodes.address(host)) or host, port

    # -- pools and workers -------------------------------------------------------
    async def list_pools(self) -> list[Pool]:
        return await self.nodes.pools()

    async def capacity(self) -> dict[str, int]:
        return await self.nodes.capacity()

    async def list_workers(self) -> list[Worker]:
        return await self.nodes.workers()

    async def set_workers_enabled(
        self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None
    ) -> None:
        await self.nodes.set_enabled(names, enabled, stop_work=stop_work, reason=reason)

    async def create_pool(self, name: str, slots: int | None) -> Pool:
        raise UnsupportedError(self.name, "pools.create", "partitions are defined in slurm.conf")

    async def rename_pool(self, pool_id: str, new_name: str) -> Pool:
        raise UnsupportedError(self.name, "pools.rename", "partitions are defined in slurm.conf")

    async def delete_pool(self, pool_id: str) -> None:
        raise UnsupportedError(self.name, "pools.delete", "partitions are defined in slurm.conf")
