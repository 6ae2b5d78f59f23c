"""The dummy back end for the shared contract suite: the in-memory driver, with a
small simulated scheduler that runs the contract's commands.

The dummy driver never moves a job by itself; here, every submit and every
control call is followed by a scheduling pass: a PENDING job whose dependencies all
succeeded starts, and its command is "run" by reading it as a shell script made of
``echo TEXT`` (``>&2`` for stderr), ``exit N``, ``true`` and ``sleep N``. A sleep of
five seconds or more, or any other program, keeps the job RUNNING until it is
canceled (like a real long-running job); otherwise the job ends with the exit code
and the log lines the script names. A job whose dependency failed fails too.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs

from aiofarm import Client, Job, JobSpec, JobStatus
from aiofarm.drivers.base import Action, SubmitAttempt
from aiofarm.drivers.dummy import DummyDriver
from aiofarm.models import command_argv

MARKS: tuple[str, ...] = ()
#: the simulated commands have exit codes and output (for the vocabulary above)
EXECUTES = True

_LONG = 5.0


def _simulate(argv: Sequence[str]) -> tuple[list[tuple[str, str]], int | None]:
    """(log lines as (stream, text), exit code) or None for "keeps running"."""
    if not argv:
        return [], 0
    if argv[0] == "true":
        return [], 0
    if argv[0] == "sleep":
        return [], (None if float(argv[1]) >= _LONG else 0)
    if list(argv[:2]) != ["sh", "-c"] and list(argv[:2]) != ["/bin/sh", "-c"]:
        return [], None  # a program we cannot simulate: it runs until canceled
    lines: list[tuple[str, str]] = []
    for statement in re.split(r"[;\n]", argv[2]):
        words = shlex.split(statement)
        if not words or words == ["true"]:
            continue
        if words[0] == "echo":
            to_stderr = words[-1] == ">&2"
            text = " ".join(words[1:-1] if to_stderr else words[1:])
            lines.append(("stderr" if to_stderr else "stdout", text))
        elif words[0] == "exit":
            return lines, int(words[1])
        elif words[0] == "sleep":
            if float(words[1]) >= _LONG:
                return lines, None
        else:
            return lines, None
    return lines, 0


class Scheduler:
    def __init__(self, driver: DummyDriver) -> None:
        self.driver = driver
        self.commands: dict[str, tuple[str, ...]] = {}
        submit, control = driver.submit, driver.control

        async def submit_and_schedule(specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
            jobs = await submit(specs, attempt)
            for spec, job in zip(specs, jobs, strict=True):
                if spec.command is not None:
                    self.commands[job.id] = command_argv(spec.command)
            self.schedule()
            return jobs

        async def control_and_schedule(ids: Sequence[str], action: Action, *, stop_work: bool) -> None:
            await control(ids, action, stop_work=stop_work)
            self.schedule()

        driver.submit = submit_and_schedule  # type: ignore[method-assign]
        driver.control = control_and_schedule  # type: ignore[method-assign]

    def schedule(self) -> None:
        jobs = self.driver.jobs
        moved = True
        while moved:
            moved = False
            for job in list(jobs.values()):
                if job.status is not JobStatus.PENDING or job.id not in self.commands:
                    continue
                deps = [jobs.get(d) for d in job.depends_on]
                if any(d is not None and d.status in (JobStatus.FAILED, JobStatus.CANCELED) for d in deps):
                    failed = self.driver.set_status(job.id, JobStatus.FAILED)
                    jobs[job.id] = attrs.evolve(failed, reason="a dependency did not succeed")
                    moved = True
                elif all(d is None or d.status is JobStatus.SUCCEEDED for d in deps):
                    self._run(job)
                    moved = True

    def _run(self, job: Job) -> None:
        self.driver.set_status(job.id, JobStatus.RUNNING)
        lines, code = _simulate(self.commands[job.id])
        for stream, text in lines:
            self.driver.write_log(job.id, text, stream)
        if code is not None:
            status = JobStatus.SUCCEEDED if code == 0 else JobStatus.FAILED
            self.driver.set_status(job.id, status, exit_code=code)


@asynccontextmanager
async def open_client() -> AsyncIterator[Client]:
    async with Client("dummy://") as farm:
        driver = farm.driver
        assert isinstance(driver, DummyDriver)
        Scheduler(driver)
        yield farm
