"""The local farm's in-memory model: the active jobs, their steps and tasks, and
the pools, as the scheduler keeps them (the service's truth between flushes; every
change is marked dirty and written by the store)."""

from __future__ import annotations

import asyncio
import collections
import getpass
import math
import signal as _signal
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ...models import Job, JobSpec, JobStatus, StatusTransition
from .codec import to_dt

if TYPE_CHECKING:
    from .processes import RunningTask

PENDING = JobStatus.PENDING
RUNNING = JobStatus.RUNNING
SUSPENDED = JobStatus.SUSPENDED
SUCCEEDED = JobStatus.SUCCEEDED
FAILED = JobStatus.FAILED
CANCELED = JobStatus.CANCELED

DEFAULT_POOL = "default"
# precedence of the reasons a running task is being stopped
INTENTS = {"requeue": 1, "timeout": 2, "cancel": 3, "lost": 4}
#: the reason of a task (and job) that was running when the farm's process died
LOST_REASON = "lost: farm service died"
#: the reason of a task an embedded farm stopped because its process closed it
CLOSED_REASON = "lost: farm closed"


def now() -> float:
    return time.time()


def proc_start(pid: int) -> float | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22):
    with the pid, it identifies a process even after pid reuse."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after the last ')'
    fields = data[data.rfind(b")") + 2 :].split()
    try:
        return float(fields[19])
    except (IndexError, ValueError):
        return None


def describe_exit(code: int | None) -> str:
    if code is None or code == -255:
        return "exit status lost"
    if code < 0:
        try:
            return f"killed by {_signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"



class FarmPool:
    __slots__ = ("heap", "id", "name", "slots", "used")

    def __init__(self, pool_id: int, name: str, slots: int) -> None:
        self.id = pool_id
        self.name = name
        self.slots = slots
        self.used = 0
        self.heap: list[tuple[int, int, int, FarmJob]] = []


class FarmStep:
    __slots__ = ("dependants", "depends_on", "deps", "idx", "name", "released", "remaining", "tasks")

    def __init__(self, idx: int, name: str, depends_on: Sequence[str]) -> None:
        self.idx = idx
        self.name = name
        self.depends_on = tuple(depends_on)
        self.deps: list[FarmStep] = []
        self.dependants: list[FarmStep] = []
        self.tasks: list[FarmTask] = []
        self.remaining = 0  # tasks not SUCCEEDED
        self.released = False  # every step it depends on has succeeded


class FarmTask:
    __slots__ = (
        "attempts",
        "exit_code",
        "fail_message",
        "failures",
        "finished_at",
        "grace",
        "id",
        "idx",
        "intent",
        "job",
        "kill_timer",
        "launch",
        "params",
        "pgid",
        "pid",
        "proc",
        "progress",
        "pstart",
        "reason",
        "session_dir",
        "started_at",
        "status",
        "status_message",
        "step",
        "timer",
    )

    def __init__(self, job: FarmJob, idx: int, task_id: str, step: FarmStep, params: Mapping[str, Any]) -> None:
        self.job = job
        self.idx = idx
        self.id = task_id
        self.step = step
        self.params = params
        self.status = PENDING
        self.attempts = 0
        self.failures = 0
        self.exit_code: int | None = None
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.reason: str | None = None
        self.pid: int | None = None
        self.pgid: int | None = None
        self.pstart: float | None = None
        self.proc: RunningTask | None = None
        self.intent: str | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.kill_timer: asyncio.TimerHandle | None = None
        self.grace: float | None = None
        self.launch: str | None = None  # the token of a launch recorded but not yet seen running
        # OpenJD action messages (openjd_progress / openjd_status / openjd_fail)
        self.progress: float | None = None
        self.status_message: str | None = None
        self.fail_message: str | None = None
        self.session_dir: str | None = None  # removed when the attempt's process has ended


class FarmJob:
    __slots__ = (
        "counts",
        "created_at",
        "depends_on",
        "description",
        "done",
        "ending",
        "exit_code",
        "fail_code",
        "failed",
        "finished",
        "finished_at",
        "history",
        "id",
        "last_code",
        "name",
        "owner",
        "paused",
        "pool",
        "priority",
        "queued",
        "ready",
        "reason",
        "running",
        "seq",
        "slots",
        "spec",
        "started_at",
        "status",
        "steps",
        "tags",
        "tasks",
        "version",
        "waiting",
    )

    def __init__(self, seq: int, job_id: str, spec: JobSpec) -> None:
        self.seq = seq
        self.id = job_id
        self.spec = spec
        self.name = spec.name
        self.owner: str | None = None
        self.pool = spec.pool or DEFAULT_POOL
        self.tags = spec.tags
        self.description = spec.description
        self.priority = spec.priority
        self.depends_on = spec.depends_on
        self.slots = max(1, math.ceil(spec.resources.cpu))
        self.status = PENDING
        self.reason: str | None = None
        self.created_at = 0.0
        self.started_at: float | None = None
        self.finished_at: float | None = None
        self.exit_code: int | None = None
        self.history: list[StatusTransition] = []
        self.steps: list[FarmStep] = []
        self.tasks: list[FarmTask] = []
        self.counts: dict[str, int] = {}
        self.ready: collections.deque[FarmTask] = collections.deque()
        self.waiting: set[str] = set()  # unfinished dependencies
        self.paused = False
        self.running = 0
        self.failed = 0
        self.finished = False
        self.ending: tuple[JobStatus, str] | None = None  # set once the job must end
        self.last_code: int | None = None
        self.fail_code: int | None = None
        self.queued = False
        self.version = 0
        self.done: list[asyncio.Future[None]] = []



def job_model(job: FarmJob) -> Job:
    return Job(
        id=job.id,
        status=job.status,
        driver="local",
        name=job.name,
        owner=job.owner,
        pool=job.pool,
        tags=job.tags,
        description=job.description,
        priority=job.priority,
        created_at=to_dt(job.created_at),
        started_at=to_dt(job.started_at),
        finished_at=to_dt(job.finished_at),
        exit_code=job.exit_code,
        reason=job.reason,
        history=tuple(job.history),
        task_counts={k: v for k, v in job.counts.items() if v},
        depends_on=job.depends_on,
        raw={"seq": job.seq, "paused": job.paused, "slots": job.slots},
        labels=job.spec.labels,
    )


def current_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
