"""The driver protocol: the thin cut between aiofarm's client layer and a back end.

A driver speaks its back end's terms and offers a small set of primitives. It
does NOT wait, poll, back off between polls, page for the user, filter beyond
what its back end does natively, normalise ids, or validate generic input: the
client layer does all of that once, for every driver (httpx's Client vs
Transport; Libcloud's API vs driver).

Every primitive a driver does not implement raises :class:`UnsupportedError`
naming the driver and the feature; ``capabilities`` says so up front, operations
and parameters alike (``pause.stop_work``, ``logs.since``...), and the client layer
checks them once (``aiofarm.capabilities.require``) before calling the driver: a
driver never sees a parameter value it did not declare it honours.

Rules every driver keeps:
- Only ``aiofarm.errors`` exceptions cross this boundary.
- One attempt per call: a failure that may pass (throttling, 5xx, a refused or reset
  connection) is raised as ``BackendUnavailable`` / ``ConnectionFailed`` (both
  ``TransientError``, with the back end's ``retry_after`` when it gave one); the client
  layer (``aiofarm/retry.py``) retries what is safe to retry. A driver never sleeps
  between attempts.
- Background work runs in the task group handed to :meth:`Driver.open`.
"""

from __future__ import annotations

import enum
import os
import signal as _signal
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from contextvars import ContextVar
from datetime import datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import attrs

from ..errors import InvalidSpec, JobNotFound, UnsupportedError
from ..models import (
    Capability,
    Job,
    JobSpec,
    JobStatus,
    LogPage,
    Message,
    Pool,
    Secret,
    Task,
    TransferProgress,
    Worker,
)

if TYPE_CHECKING:
    import anyio.abc
    import yarl

    from ..where import Expr

__all__ = [
    "Action",
    "Driver",
    "HasStateDir",
    "JobUpdate",
    "ListQuery",
    "LogQuery",
    "StdioChannel",
    "SubmitAttempt",
    "page_number",
    "transfer_progress",
]


#: where a driver reports how moving a submission's files goes (Deadline job
#: attachments); the client sets it for the duration of one ``submit``
transfer_progress: ContextVar[Callable[[TransferProgress], object] | None] = ContextVar(
    "aiofarm_transfer_progress", default=None
)


def reveal(value: object) -> object:
    """The plain value of an :class:`aiofarm.Secret` (anything else unchanged)."""
    return value.reveal() if isinstance(value, Secret) else value


def url_options(url: yarl.URL, options: Mapping[str, Any], known: Sequence[str], scheme: str) -> dict[str, Any]:
    """A driver's options: the URL's query merged with ``Client(url, **options)``.
    The same option given both ways must agree; an unknown one is ``InvalidSpec``
    naming it and listing the known ones."""
    merged: dict[str, Any] = dict(url.query)
    for key, value in options.items():
        if key in merged and str(reveal(merged[key])) != str(reveal(value)):
            raise InvalidSpec(f"options.{key}", "given both in the URL and as an option, differently")
        merged[key] = value
    for key in merged:
        if key not in known:
            raise InvalidSpec(f"options.{key}", f"unknown option of {scheme}; known: {', '.join(known)}")
    return merged


def option_text(options: Mapping[str, Any], key: str) -> str | None:
    """A string option, None when absent; empty or not a string is ``InvalidSpec``."""
    value = options.get(key)
    if value is None:
        return None
    if isinstance(value, Secret):  # Client(url, token=aiofarm.Secret(...))
        value = value.reveal()
    if not isinstance(value, str) or not value:
        raise InvalidSpec(f"options.{key}", "must be a non-empty string")
    return value


def option_seconds(options: Mapping[str, Any], key: str, default: float) -> float:
    """A finite number of seconds > 0 (a timeout, a grace), ``default`` when absent."""
    value = options.get(key, default)
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"options.{key}", f"must be a number, got {value!r}") from None
    if not out > 0 or out == float("inf"):
        raise InvalidSpec(f"options.{key}", "must be a finite number > 0")
    return out


def page_number(token: str | None, driver: str, prefix: str = "") -> int | None:
    """The number a page token made of ``prefix`` and an integer carries (an offset, a
    sequence number); None for the first page. Any other token is ``InvalidSpec``."""
    if token is None:
        return None
    digits = token[len(prefix) :] if token.startswith(prefix) else ""
    try:
        return int(digits)
    except ValueError:
        raise InvalidSpec("page_token", f"not a page token of the {driver} driver: {token!r}") from None


class Action(str, enum.Enum):
    CANCEL = "cancel"
    PAUSE = "pause"
    RESUME = "resume"
    RETRY = "retry"
    DELETE = "delete"


@attrs.frozen
class SortKey:
    """One key of ``jobs.list(sort=...)``: a filterable field (not ``tags``), and its
    direction. Unset values (None) sort last in either direction."""

    field: str
    descending: bool = False


def _sort_value(job: Job, field: str) -> Any:
    value = getattr(job, field)
    if isinstance(value, datetime) and value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)  # models promise UTC
    return value


def sort_jobs(jobs: Sequence[Job], keys: Sequence[SortKey], reverse: bool = False) -> list[Job]:
    """``jobs`` in the order ``keys`` mean (``reverse`` flips every key): a stable
    multi-key sort, unset values last in either direction. The client sorts with it,
    and so may a driver whose back end keeps its jobs in memory."""
    out = list(jobs)
    for key in reversed(keys):
        field = key.field
        present = [j for j in out if getattr(j, field) is not None]
        absent = [j for j in out if getattr(j, field) is None]

        def value(job: Job, field: str = field) -> Any:
            return _sort_value(job, field)

        present.sort(key=value, reverse=key.descending != reverse)
        out = present + absent
    return out


@attrs.frozen
class ListQuery:
    """What the user asked ``jobs.list`` / ``jobs.count`` for.

    The structured fields (statuses ... pool) may be applied natively by any driver;
    the client re-checks them. ``where`` is what :meth:`Driver.plan_list` called
    native (None before planning: the driver filters nothing by it). ``sort`` is the
    order asked for (empty: the driver's own order, oldest first, or newest first with
    ``reverse``); a driver honours it only if its plan says ``sorted``."""

    statuses: frozenset[JobStatus] | None = None
    name: str | None = None
    tags: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    since: datetime | None = None  # created_at >= since
    until: datetime | None = None  # created_at <= until
    pool: str | None = None
    where: Expr | None = None
    reverse: bool = False  # False: oldest first; True: newest first
    sort: tuple[SortKey, ...] = ()


@attrs.frozen
class ListPlan:
    """A driver's answer to "what of this listing can your back end do?" (see
    :meth:`Driver.plan_list`).

    ``native``: the part of the query's ``where`` the back end filters (``list_page``
    and ``count_jobs`` then receive it as ``query.where``). ``remainder``: what the
    client must still evaluate on each job -- everything not in ``native``, and also
    any part ``native`` applies only approximately (a superset), so it is checked
    again. ``sorted``: pages arrive in ``query.sort`` order (else the client fetches
    everything and sorts). ``countable``: ``count_jobs`` answers the native query in
    one request (only sound when ``remainder`` is None)."""

    native: Expr | None = None
    remainder: Expr | None = None
    sorted: bool = False
    countable: bool = False


@attrs.frozen
class SubmitAttempt:
    """One attempt of one ``submit`` call. ``tokens``: one per spec, the same on every
    attempt of the call (the client layer picks them once). ``retry``: an earlier
    attempt failed transiently and may have created some of the jobs.

    A driver that declares ``idempotent_submit`` uses the tokens so that a repeated
    attempt creates nothing twice: as client tokens, as job ids it picks, or as a tag
    it looks up when ``retry`` is set.

    ``made`` (spec index -> job id), shared by every attempt of the call: a driver
    that submits a batch spec by spec records each job it made or found there, so
    the client layer counts attempts per spec (an attempt that made some of the jobs
    does not use up the call's attempts; :mod:`aiofarm.retry`)."""

    tokens: tuple[str, ...]
    retry: bool = False
    made: dict[int, str] = attrs.field(factory=dict, eq=False, repr=False)

    @classmethod
    def new(cls, count: int) -> SubmitAttempt:
        return cls(tuple(uuid.uuid4().hex[:16] for _ in range(count)))


@attrs.frozen
class JobUpdate:
    priority: int | None = None
    name: str | None = None
    tags: tuple[str, ...] | None = None


@attrs.frozen
class LogQuery:
    task: str | None = None
    streams: frozenset[str] = frozenset({"stdout", "stderr"})
    start_time: datetime | None = None
    end_time: datetime | None = None
    limit: int = 1000
    #: only the lines of this attempt of the task(s) (1 = the first run; Capability.LOGS_ATTEMPT)
    attempt: int | None = None
    #: the caller follows the log: a back end that can hold an empty read open until
    #: the next line (the local farm service) may do so, briefly
    follow: bool = False


class StdioChannel:
    """A driver's raw stdio to a process (attach or exec). The client wraps it in
    ``StdStream``; drivers implement only these byte-level operations.

    ``StdStream`` serialises calls: at most one ``receive`` and one ``send``/``send_eof``
    run at a time (a read may run concurrently with a write), so a channel needs no
    locking of its own. ``aclose`` may be called at any time, also while cancelled."""

    #: the process runs on a terminal (stdout and stderr arrive merged on fileno 1)
    tty: bool = False

    @property
    def returncode(self) -> int | None:
        """The exit code if already known, without waiting (None: still running or
        unknown). For an attach: the job's exit code once it has ended."""
        return None

    async def receive(self) -> Message | None:
        """Next chunk of output, or None once every requested output stream is at EOF."""
        raise NotImplementedError

    async def send(self, data: bytes) -> None:
        raise NotImplementedError

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def resize(self, rows: int, cols: int) -> None:
        raise NotImplementedError

    async def wait(self) -> int | None:
        """Wait for the process to end; its exit code (negative: killed by that signal).
        None for an attach, whose process the channel does not own."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Release everything; for exec, kill what still runs."""
        raise NotImplementedError


@runtime_checkable
class HasStateDir(Protocol):
    """A driver with a directory of its own on this host that the jobs it runs can read
    (the local farm's state dir). The client layer keeps the files jobs need there (farm
    functions, under ``<state_dir>/functions``); other drivers leave it to the client's
    default directory."""

    state_dir: str


class Driver:
    """Base class of every driver. Subclasses set ``scheme``/``name``/``capabilities``
    and override the primitives they support."""

    name: ClassVar[str] = "base"
    capabilities: ClassVar[frozenset[Capability]] = frozenset()
    #: parameters this back end cannot choose but always behaves as one value of (a
    #: call asking for that value is honoured, see aiofarm/capabilities.py)
    fixed_parameters: ClassVar[Mapping[Capability, object]] = MappingProxyType({})
    #: whether the back end's workers apply a job's path mapping rules to its Open Job
    #: Description PATH parameters (False: the client maps them at submission)
    maps_path_parameters: ClassVar[bool] = True
    #: operations only this back end has, reached as ``client.backend`` (in the manner
    #: of Libcloud's ``ex_`` methods); None when it has none
    backend: object | None = None
    #: how many ids one ``get_jobs`` call may carry (the shared poller chunks by this)
    max_batch_get: ClassVar[int] = 100
    #: how many ``get_jobs`` calls the client layer may have in flight at once
    max_concurrent_gets: ClassVar[int] = 8
    #: whether :meth:`changes_since` is implemented (one cheap "what changed" query)
    change_feed: ClassVar[bool] = False
    #: whether the back end holds a job until the jobs it ``depends_on`` succeed. When
    #: False the client holds such jobs itself (:mod:`aiofarm.release`) and submits
    #: each once its dependencies succeeded: the driver then never sees a dependant
    #: before that, and must honour ``JobSpec.id`` (the client picks held jobs' ids)
    #: unless ``holds_in_backend`` is True
    native_dependencies: ClassVar[bool] = True
    #: with ``native_dependencies`` False: the back end can keep a job from running
    #: under an id of its own (the driver creates a dependant held, and the hold is
    #: stored with the job), so the client only watches the dependencies and calls
    #: :meth:`release_held`; holds outlive the client (:meth:`held_jobs`)
    holds_in_backend: ClassVar[bool] = False
    #: whether :meth:`follow_log` is implemented (the back end pushes new log lines)
    log_push: ClassVar[bool] = False
    #: push drivers whose changes come over a connection: :meth:`job_events` is
    #: implemented, and the Hub keeps it open (without it, :meth:`subscribe` alone)
    event_stream: ClassVar[bool] = False
    #: whether a ``submit`` repeated with the same ``SubmitAttempt.tokens`` creates
    #: nothing twice; the client layer retries a transiently failed submit only then
    idempotent_submit: ClassVar[bool] = False
    #: the ``control`` actions whose repetition changes nothing (a second cancel of a
    #: canceled job is no error): the client layer retries them on a transient failure
    repeatable_actions: ClassVar[frozenset[Action]] = frozenset({Action.CANCEL, Action.PAUSE, Action.RESUME})
    #: how many attempts the client layer makes of a call it may retry (a driver may
    #: set it per instance from its URL options)
    retry_attempts: int = 6
    #: the URL its Client was opened with, redacted (set by the Client): what a
    #: ``JobNotFound`` or ``PoolNotFound`` says the farm is
    farm_url: str | None = None
    #: whether jobs go on when the client's process exits (False: an in-process farm,
    #: whose jobs end with it; ``aiofarm run`` then cancels on Ctrl-C instead of detaching)
    jobs_outlive_client: ClassVar[bool] = True
    #: (largest argument or ``NAME=value``, largest argv + environment) in bytes a job's
    #: command can be started with, checked at submit (None: the back end has no such
    #: limit, or its own check answers at submit)
    exec_limits: tuple[int, int] | None = None

    # -- lifecycle ---------------------------------------------------------------
    @classmethod
    def from_url(cls, url: yarl.URL, options: Mapping[str, Any]) -> Driver:
        """Build (but do not connect) a driver. Raise InvalidSpec("url", ...) for bad URLs."""
        raise NotImplementedError

    async def open(self, task_group: anyio.abc.TaskGroup) -> None:
        """Connect / start. Background tasks go into ``task_group``, owned by the Client."""

    async def aclose(self) -> None:
        """Release everything opened. Must be safe to call after a failed ``open``."""

    def _unsupported(self, feature: str) -> UnsupportedError:
        return UnsupportedError(self.name, feature)

    # -- jobs --------------------------------------------------------------------
    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        """Create jobs, in input order. Specs are already validated by the client and
        come in dependency order: ``depends_on`` names either existing job ids or the
        ``id`` of an earlier spec of this batch (which the driver maps to the real id
        if it cannot honour client-chosen ids). ``attempt`` (None when called directly:
        a driver then makes its own with ``SubmitAttempt.new``) is what makes a
        repeated attempt idempotent, see :class:`SubmitAttempt`."""
        raise self._unsupported("submit")

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        """Many jobs in one call (at most ``max_batch_get`` ids). Unknown ids are
        simply absent from the result."""
        raise self._unsupported("get")

    async def describe(self, job_id: str) -> Job:
        """One job with what its back end records beyond its state (``history``, the
        ``exit_code`` of a failed job), for ``jobs.get(id, history=True)``: it may cost
        several requests, so the poller never calls it. By default ``get_jobs`` already
        carries all of it."""
        job = (await self.get_jobs([job_id])).get(job_id)
        if job is None:
            raise JobNotFound(job_id, driver=self.name)
        return job

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
        """Download the files the job's tasks produced (of one step, one task); the local
        paths written. ``dest`` None: where they were on the submitting host, through
        ``map_path`` (the client's path mapping rules)."""
        raise self._unsupported("download_outputs")

    async def changes_since(self, since: float) -> tuple[dict[str, JobStatus], bool]:
        """ONE request: the jobs whose state changed at or after ``since`` (seconds
        since the epoch, this host's clock), each with the status it has now, and
        whether that is all of them (False: there were more than one answer holds).

        It may say too much (jobs that did not change, jobs nobody watches) but the
        poller only trusts it to notice sooner: its full rounds stay the truth."""
        raise self._unsupported("changes_since")

    def plan_list(self, query: ListQuery) -> ListPlan:
        """Which part of ``query.where`` (every condition of the listing, the structured
        ones included, as one expression) the back end filters natively, whether it
        sorts by ``query.sort`` and counts; pure, no I/O. The default does nothing
        natively: the client filters, sorts and counts what ``list_page`` returns.

        A driver translating a filter language typically calls
        ``aiofarm.where.split_native(query.where, can_translate)``: the top-level
        conjuncts it can translate become ``native``, the rest the ``remainder``."""
        return ListPlan(native=None, remainder=query.where)

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        """One page of jobs, and the token of the next page (None at the end).
        ``query.where`` is the ``native`` part of this driver's own plan."""
        raise self._unsupported("list")

    async def count_jobs(self, query: ListQuery) -> int:
        """How many jobs match ``query`` (``where`` as in ``list_page``), in one
        request. Called only when the plan said ``countable``."""
        raise self._unsupported("count")

    async def control(self, ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
        """cancel / pause / resume / retry / delete. Unknown ids raise JobNotFound."""
        raise self._unsupported(action.value)

    async def update(self, ids: Sequence[str], changes: JobUpdate) -> None:
        raise self._unsupported("update")

    async def send_signal(self, job_id: str, sig: _signal.Signals) -> None:
        raise self._unsupported("send_signal")

    async def tasks(self, job_id: str) -> list[Task]:
        raise self._unsupported("tasks")

    async def explain(self, job_id: str) -> str:
        raise self._unsupported("explain")

    def subscribe(self, callback: Callable[[Job], None]) -> None:
        """Push drivers (Capability.PUSH) call ``callback`` with the new Job on every
        status change of any job. Polling drivers leave this unimplemented."""
        raise self._unsupported("push")

    def job_events(self) -> AbstractAsyncContextManager[AsyncIterator[Sequence[Job]]]:
        """``event_stream`` drivers: ONE connection to the back end's stream of status
        changes. Entering it connects (``ConnectionLost`` / ``TransientError`` when the
        back end cannot be reached); the iterator yields the jobs each message names and
        raises ``ConnectionLost`` when the connection drops or ends. The driver neither
        reconnects nor remembers what it saw: the Hub opens it when the client opens,
        again on its back-off after a drop, and then re-reads what it watches."""
        raise self._unsupported("push")

    # -- logs --------------------------------------------------------------------
    async def read_log(self, job_id: str, token: str | None, query: LogQuery) -> LogPage:
        """Lines after ``token`` (from the start when None), at most ``query.limit``.
        The returned ``next_token`` resumes exactly after the last line returned, even
        across reconnects; an empty page means "nothing more right now"."""
        raise self._unsupported("logs")

    def follow_log(
        self, job_id: str, token: str | None, query: LogQuery
    ) -> AbstractAsyncContextManager[AsyncIterator[LogPage]]:
        """Pages of lines after ``token`` as the back end pushes them (``log_push``
        drivers). The iterator ends when the job is finished and its output drained;
        a dropped connection raises ``ConnectionLost`` and the client opens a new
        follow from the last page's ``next_token`` (the same tokens as ``read_log``)."""
        raise self._unsupported("logs_follow")

    async def held_jobs(self) -> dict[str, tuple[str, ...]]:
        """``holds_in_backend`` drivers: every job the back end keeps held for its
        dependencies, with the ids it depends on (read when a client opens)."""
        raise self._unsupported("held jobs")

    async def release_held(self, job_id: str, failure: str | None) -> None:
        """``holds_in_backend`` drivers: end the hold of ``job_id``, letting it run
        (``failure`` None) or ending it without running, ``failure`` saying why. A job
        no longer held (released by another client, canceled, resumed) is left as it is."""
        raise self._unsupported("held jobs")

    def new_job_id(self) -> str:
        """An id for a job the client creates before the back end sees it (a held
        dependant, when ``native_dependencies`` is False)."""
        raise self._unsupported("client-chosen job ids")

    # -- interactive -------------------------------------------------------------
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
        """``command`` None: attach to the job's own stdio; else exec ``command`` in the
        job's context. The client has just seen the job RUNNING (``stdio.check_running``,
        the one place that checks): a driver does not look again, it raises
        JobNotRunning only when its back end refuses (the process ended meanwhile).
        A driver that runs a local process for this uses ``drivers.childproc``. ``size`` (rows, cols): the terminal size an exec with ``tty``
        starts with (the client passes it only when the caller gave one, so a driver
        may leave it out of its signature; the client then resizes right after)."""
        raise self._unsupported("exec" if command is not None else "attach")

    async def open_step_stdio(
        self, job_id: str, step: str, *, stdin: bool, stdout: bool, stderr: bool
    ) -> StdioChannel:
        """Attach to one step of the job (``attach.step``: Slurm's srun steps), as
        :meth:`open_stdio` attaches to the job itself."""
        raise self._unsupported("attach.step")

    async def connect_port(self, job_id: str, port: int) -> anyio.abc.ByteStream:
        """A byte stream to ``port`` of the job (the client relays it). Only for drivers
        that must tunnel; the relay uses it when ``port_address`` is unsupported."""
        raise self._unsupported("port_forward")

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        """The (host, port) the client dials to reach ``port`` of a running job (local:
        ``("127.0.0.1", port)``). Preferred over ``connect_port``: the client's relay
        then runs on asyncio transports end to end (see docs/interactive.md). Raises
        JobNotFound / JobNotRunning like ``open_stdio``."""
        raise self._unsupported("port_forward")

    # -- pools and workers -------------------------------------------------------
    async def list_pools(self) -> list[Pool]:
        raise self._unsupported("pools")

    async def create_pool(self, name: str, slots: int | None) -> Pool:
        raise self._unsupported("pools.create")

    async def rename_pool(self, pool_id: str, new_name: str) -> Pool:
        raise self._unsupported("pools.rename")

    async def delete_pool(self, pool_id: str) -> None:
        raise self._unsupported("pools.delete")

    async def capacity(self) -> dict[str, int]:
        raise self._unsupported("pools.capacity")

    async def list_workers(self) -> list[Worker]:
        raise self._unsupported("workers")

    async def set_workers_enabled(
        self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None
    ) -> None:
        raise self._unsupported("workers.enable" if enabled else "workers.disable")


def host_exec_limits() -> tuple[int, int]:
    """What execve(2) takes on this host: one string at most MAX_ARG_STRLEN (32 pages
    on Linux), argv + envp at most ARG_MAX less this process's own environment (a job
    inherits it) and room for the variables the farm adds."""
    try:
        arg_max = int(os.sysconf("SC_ARG_MAX"))
    except (ValueError, OSError):
        arg_max = 2 * 1024 * 1024
    inherited = sum(len(k) + len(v) + 2 + 8 for k, v in os.environb.items())
    return 32 * 4096, max(arg_max - inherited - 16 * 1024, 64 * 1024)
