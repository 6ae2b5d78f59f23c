"""Starting a task's process, for the scheduler: the launch is recorded durably
first (``store.record_launches``, with the token the process carries in
``AIOFARM_LAUNCH``), then the run spec is built (a command, or an OpenJD task or
session) and the process spawned (processes.py). A start that fails fails the
attempt, never the farm; while the state cannot be written nothing starts."""

from __future__ import annotations

import contextlib
import functools
import os
import sqlite3
import time
from typing import TYPE_CHECKING

from ...openjd.plan import RunSpec, command_argv
from . import logfile, processes, sessions, store
from .model import RUNNING, FarmPool, FarmTask, now
from .writer import storage_message

if TYPE_CHECKING:
    from .scheduler import Scheduler

__all__ = ["append_log", "launch", "run_spec", "start"]


def launch(sched: Scheduler, batch: list[tuple[FarmTask, FarmPool]]) -> None:
    """Record the launches durably, then start the processes. If the record cannot
    be written, nothing starts: the tasks go back to the front of their queues and
    the writer retries (dispatch resumes when it succeeds)."""
    t0 = now()
    rows = []
    for t, _ in batch:
        t.launch = f"{sched._instance}-{t.job.seq}-{t.idx}-{t.attempts + 1}"
        rows.append((t.launch, t.job.seq, t.idx, t0))
    try:
        store.record_launches(sched._require_db(), rows)
    except (sqlite3.Error, OSError) as exc:
        sched.write_error = storage_message(exc)
        for t, pool in reversed(batch):
            t.launch = None
            pool.used -= t.job.slots
            t.job.running -= 1
            t.job.ready.appendleft(t)
            sched._enqueue(t.job, force=True)
        if sched._flush_wake is not None:
            sched._flush_wake.set()
        return
    for t, pool in batch:
        start(sched, t, pool)


def run_spec(sched: Scheduler, t: FarmTask) -> RunSpec:
    spec = t.job.spec
    if spec.template is not None:
        from ...openjd import taskrun as bundles
        from ...openjd.hosts import UnmetRequirement, unmet_requirement

        # a session directory per attempt (removed when it ends): a retry starts clean
        parent = sessions.job_workdir(sched, t.job)
        workdir = os.path.join(parent, f"{t.idx}.{t.attempts}")
        why = unmet_requirement(spec, t.step.name, parent)
        if why is not None:
            raise UnmetRequirement(f"steps.{t.step.name}.hostRequirements", why)
        return bundles.task_run(spec, t.step.name, t.params, workdir)
    assert spec.command is not None
    return RunSpec(argv=command_argv(spec.command), env=spec.env, cwd=spec.cwd, timeout=spec.timeout)


def start(sched: Scheduler, t: FarmTask, pool: FarmPool) -> None:
    job = t.job
    loop = sched._loop
    assert loop is not None
    started = now()
    t.attempts += 1
    t.started_at = started
    t.finished_at = None
    t.exit_code = None
    t.progress = t.status_message = t.fail_message = None
    session = None
    try:
        session = sessions.session_for(sched, t, pool) if job.spec.template is not None else None
        run = run_spec(sched, t) if session is None else session.run
        env = dict(sched._base_env)
        for key, value in run.env.items():
            env[os.fsencode(key)] = os.fsencode(value)
        env[b"AIOFARM_JOB_ID"] = os.fsencode(job.id)
        env[b"AIOFARM_TASK_ID"] = os.fsencode(t.id)
        env[b"AIOFARM_TASK_ATTEMPT"] = b"%d" % t.attempts
        env[b"AIOFARM_LAUNCH"] = os.fsencode(t.launch or "")
        proc = processes.spawn(
            loop,
            run.argv,
            env=env,
            cwd=run.cwd,
            tty=job.spec.tty,
            stdin=job.spec.stdin or session is not None,
            log_path=sched._log_path(job.seq),
            job_id=job.id,
            task_id=t.id,
            task_index=t.idx,
            attempt=t.attempts,
            on_exit=(
                functools.partial(sched._on_exit, t)
                if session is None
                else functools.partial(sessions.session_exit, sched, session)
            ),
            pass_fds=session.run_fds() if session is not None else (),
        )
    except Exception as exc:  # whatever stops a start fails the attempt, not the farm
        if session is not None:
            session.discard()
        message = f"cannot start: {exc}"
        if type(exc).__name__ == "UnmetRequirement":
            message = str(getattr(exc, "reason", exc))
            t.failures = job.spec.retries  # another attempt on this host cannot help
        append_log(sched._log_path(job.seq), t.idx, message)
        t.finished_at = started
        t.exit_code = 127
        job.last_code = 127
        pool.used -= job.slots
        job.running -= 1
        sched._task_status(t, RUNNING)  # keep counts right: PENDING -> RUNNING -> FAILED
        sched._attempt_failed(t, message, 127)
        sched._check(job)
        return
    t.proc = proc
    if job.id in sched.followed:
        proc.watch()
    if session is not None:
        sessions.session_started(sched, session, t, proc)
    else:
        t.session_dir = run.session_dir
        if job.spec.template is not None:
            proc.line_hook = functools.partial(sessions.task_messages, sched, t)
    t.pid = t.pgid = proc.pid
    # the start time that guards crash recovery against pid reuse is read when the
    # RUNNING row is written (_write_dirty): reading /proc right after the exec
    # costs ~0.3 ms, and a task that ends before the next flush never needs it
    t.pstart = None
    t.grace = run.cancel_grace
    sched._running.add(t)
    if job.started_at is None:
        job.started_at = started
    sched._task_status(t, RUNNING)
    sched._refresh(job)
    # a template action's own timeout wins; the job's timeout covers the others
    timeout = run.timeout if run.timeout is not None else job.spec.timeout
    if timeout is not None and timeout > 0:
        t.timer = loop.call_later(timeout, sched._on_timeout, t)



def append_log(path: str, task_index: int, text: str) -> None:
    """A line from the farm itself in a job's log (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            os.write(fd, logfile.format_records(b"x", task_index, [text.encode()], time.time()))
        finally:
            os.close(fd)
