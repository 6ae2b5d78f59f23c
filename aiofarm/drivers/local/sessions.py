"""OpenJD sessions on the local farm: a worker slot that runs consecutive tasks of one
job's step enters the environments once and exits them once, as a Deadline worker does.

When a template task whose environments have actions is dispatched, the slot starts a
session process (:func:`aiofarm.openjd.taskrun.session_run`: the session runner with
``--feed``) instead of a process per task. The runner reports each task's end on a pipe
of its own; the scheduler then hands the same process the job's next ready task of the
same environments (a line on its stdin), or closes its stdin when there is none (or a
job of higher priority waits for the slot, or the job is pausing or ending), and the
runner exits the environments and ends. The slot is the session's until its process
has exited; the session directory is removed then.

What differs from a process per task: a cancel or timeout of one task stops its whole
session (the process group is signalled); a farm that dies while a session runs finds
its first task by the launch token and fails the others as lost, as for any task whose
process is gone. ``options["openjd_session_per_task"] = True`` turns sessions off for a
job (every task its own session, as before).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
from typing import TYPE_CHECKING, Any

from ...openjd.plan import RunSpec
from .model import PENDING, RUNNING, SUCCEEDED, FarmJob, FarmPool, FarmTask, describe_exit, now

if TYPE_CHECKING:
    from .processes import RunningTask
    from .scheduler import Scheduler

__all__ = ["Session", "end_session", "job_workdir", "session_exit", "session_for", "session_started", "task_messages"]


class Session:
    """One session process and the task it is running."""

    __slots__ = (
        "buf", "current", "directory", "job", "key", "pool", "proc", "results", "run", "started", "write_fd",
    )

    def __init__(
        self, job: FarmJob, pool: FarmPool, key: str, directory: str, run: RunSpec, results: int, write_fd: int
    ) -> None:
        self.job = job
        self.pool = pool
        self.key = key
        self.directory = directory
        self.run = run
        self.results = results  # our end of the runner's results pipe
        self.write_fd = write_fd  # the runner's end, closed here once it has its copy
        self.buf = b""
        self.current: FarmTask | None = None
        self.proc: RunningTask | None = None
        self.started = 0

    def run_fds(self) -> tuple[int, ...]:
        return (self.write_fd,)

    def discard(self) -> None:
        """The session process could not be started."""
        for fd in (self.results, self.write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.results = self.write_fd = -1
        shutil.rmtree(self.directory, ignore_errors=True)


def _keeps_dirs(job: FarmJob) -> bool:
    return job.spec.options.get("openjd_keep_session_dir") is True


def _key(t: FarmTask) -> str | None:
    spec = t.job.spec
    if spec.template is None or spec.tty or spec.stdin or spec.options.get("openjd_session_per_task") is True:
        return None
    from ...openjd.taskrun import session_key

    return session_key(spec, t.step.name)


def job_workdir(sched: Scheduler, job: FarmJob) -> str:
    """The job's directory of session directories, private whatever the umask; made
    once per job, not once per task (a stat and a chmod are a few % of a trivial task)."""
    path = os.path.join(sched.state_dir, "work", str(job.seq))
    if job.seq not in sched._workdirs:
        for part in (os.path.dirname(path), path):
            os.makedirs(part, mode=0o700, exist_ok=True)
            os.chmod(part, 0o700)
        sched._workdirs.add(job.seq)
    return path


def session_for(sched: Scheduler, t: FarmTask, pool: FarmPool) -> Session | None:
    """A new session for ``t`` when its step has environment actions to share."""
    key = _key(t)
    if key is None:
        return None
    from ...openjd.hosts import UnmetRequirement, unmet_requirement
    from ...openjd.taskrun import session_run

    job = t.job
    parent = job_workdir(sched, job)
    why = unmet_requirement(job.spec, t.step.name, parent)
    if why is not None:
        raise UnmetRequirement(f"steps.{t.step.name}.hostRequirements", why)
    directory = os.path.join(parent, f"session-{t.idx}.{t.attempts}")
    read, write = os.pipe2(os.O_CLOEXEC)
    try:
        run = session_run(job.spec, t.step.name, t.params, directory, task_id=t.id, results_fd=write)
    except BaseException:
        os.close(read)
        os.close(write)
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Session(job, pool, key, directory, run, read, write)


def session_started(sched: Scheduler, session: Session, t: FarmTask, proc: RunningTask) -> None:
    os.close(session.write_fd)  # the child has its copy: EOF on ours means it is gone
    session.write_fd = -1
    session.proc = proc
    session.current = t
    session.started = 1
    proc.line_hook = functools.partial(session_lines, sched, session)
    os.set_blocking(session.results, False)
    assert sched._loop is not None
    sched._loop.add_reader(session.results, session_results, sched, session)


def session_lines(sched: Scheduler, session: Session, lines: list[bytes]) -> None:
    if session.current is not None:
        task_messages(sched, session.current, lines)


def session_results(sched: Scheduler, session: Session) -> None:
    try:
        data = os.read(session.results, 65536)
    except BlockingIOError:
        return
    except OSError:
        data = b""
    if not data:
        assert sched._loop is not None
        sched._loop.remove_reader(session.results)
        return
    session.buf += data
    *lines, session.buf = session.buf.split(b"\n")
    for line in lines:
        with contextlib.suppress(ValueError):
            session_event(sched, session, json.loads(line))


def session_event(sched: Scheduler, session: Session, event: dict[str, Any]) -> None:
    t = session.current
    if event.get("event") != "end" or t is None or event.get("id") != t.id or t.intent is not None:
        return  # a task being stopped ends with its process (_session_exit)
    job = t.job
    if session.proc is not None:
        # the runner wrote the task's output before its end: log it as the task's now
        session.proc.take_output()
    code = int(event.get("exit", 1))
    for timer in (t.timer, t.kill_timer):
        if timer is not None:
            timer.cancel()
    t.timer = t.kill_timer = None
    t.proc = None
    sched._running.discard(t)
    session.current = None
    t.exit_code = code
    t.finished_at = now()
    job.last_code = code
    if code == 0:
        sched._task_status(t, SUCCEEDED)
        sched._step_progress(t)
    else:
        fail = event.get("fail")
        sched._attempt_failed(t, str(fail) if fail else (t.fail_message or describe_exit(code)), code)
    sched._check(job)
    session_next(sched, session)
    sched._kick()


def session_next(sched: Scheduler, session: Session) -> None:
    """Hand the session the job's next ready task of the same environments, or end it."""
    job, proc = session.job, session.proc
    assert proc is not None
    nxt = None
    stop = job.finished or job.paused or job.ending is not None or sched._closing or not sched._worker_enabled
    if not stop and not outranked(sched, session):
        for cand in job.ready:
            if cand.status is PENDING and cand.proc is None and _key(cand) == session.key:
                nxt = cand
                break
    while nxt is not None:
        job.ready.remove(nxt)
        if session_feed(sched, session, nxt):
            return
        nxt = next((c for c in job.ready if c.status is PENDING and c.proc is None and _key(c) == session.key), None)
    proc.close_stdin()  # nothing more for it: the runner exits the environments


def outranked(sched: Scheduler, session: Session) -> bool:
    """A job of higher priority waits for a slot of this pool: give this one up."""
    for _, _, version, other in session.pool.heap:
        if (
            other is not session.job
            and version == other.version
            and other.ready
            and not other.finished
            and other.priority > session.job.priority
            and not other.paused
            and not other.waiting
        ):
            return True
    return False


def session_feed(sched: Scheduler, session: Session, t: FarmTask) -> bool:
    from ...openjd.taskrun import session_task

    job, proc = session.job, session.proc
    assert proc is not None and proc.stdin_fd is not None
    t.attempts += 1
    t.started_at = now()
    t.finished_at = None
    t.exit_code = None
    t.progress = t.status_message = t.fail_message = None
    sched._task_status(t, RUNNING)
    try:
        line = session_task(job.spec, t.step.name, t.params, session.directory, task_id=t.id)
        os.write(proc.stdin_fd, line)
    except Exception as exc:  # a task that cannot be handed over fails, not the farm
        t.finished_at = t.started_at
        sched._attempt_failed(t, f"cannot start: {exc}", 127)
        sched._check(job)
        return False
    proc.task_index = t.idx
    proc.attempt = t.attempts
    proc.task_id = t.id
    t.proc = proc
    t.pid = t.pgid = proc.pid
    t.grace = session.run.cancel_grace
    session.current = t
    session.started += 1
    sched._running.add(t)
    sched._refresh(job)
    if job.spec.timeout is not None and job.spec.timeout > 0:
        assert sched._loop is not None
        t.timer = sched._loop.call_later(job.spec.timeout, sched._on_timeout, t)
    return True


def session_exit(sched: Scheduler, session: Session, proc: RunningTask) -> None:
    """The session process has ended: what it reported last first, then the task it
    was running (if any) ends with it, then the slot is free."""
    session_results(sched, session)
    if session.results >= 0:
        assert sched._loop is not None
        sched._loop.remove_reader(session.results)
        os.close(session.results)
        session.results = -1
    if not _keeps_dirs(session.job):
        shutil.rmtree(session.directory, ignore_errors=True)
    t = session.current
    session.current = None
    if t is not None:
        sched._on_exit(t, proc)  # frees the slot too
        return
    job = session.job
    pool = sched._pools.get(job.pool)
    if pool is not None:
        pool.used -= job.slots
    job.running -= 1
    if proc.dropped_lines:
        sched._dropped.append((sched._log_path(job.seq), proc.task_index, proc.dropped_lines))
        sched._write_dropped_notes()
    if proc.returncode not in (0, None) and job.fail_code is None:
        job.fail_code = proc.returncode  # an onExit that failed after the last task
    sched._check(job)
    sched._kick()


def task_messages(sched: Scheduler, t: FarmTask, lines: list[bytes]) -> None:
    """OpenJD action messages in a template task's output (aiofarm/openjd/messages.py)."""
    from ...openjd.messages import parse

    for raw in lines:
        if b"openjd_" not in raw:
            continue
        msg = parse(raw.decode(errors="replace"))
        if msg is None:
            continue
        if msg.kind == "progress":
            t.progress = float(str(msg.value))
        elif msg.kind == "status":
            t.status_message = msg.text
        elif msg.kind == "fail":
            t.fail_message = msg.text
        else:
            continue
        sched._dirty_tasks.add(t)
        sched._mark_changed()


def end_session(t: FarmTask) -> None:
    """A one-task session's directory goes when it ends (the OpenJD spec), unless the
    job keeps it for debugging (``options["openjd_keep_session_dir"]``)."""
    path, t.session_dir = t.session_dir, None
    if path is not None and not _keeps_dirs(t.job):
        shutil.rmtree(path, ignore_errors=True)
