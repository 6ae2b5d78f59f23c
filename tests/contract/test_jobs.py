"""The job contract every driver keeps (parametrised over tests/backends/ in
conftest.py): submit, batches with dependencies, get, list/filter/sort/count, wait,
as_completed, watch, control, and idempotent submits where declared. A behaviour a driver does not declare in its
capabilities must raise UnsupportedError naming it; a declared one behaves the same
on every driver."""

from __future__ import annotations

import itertools
import signal
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from types import ModuleType

import anyio
import pytest

from aiofarm import (
    Capability,
    Client,
    InvalidSpec,
    JobEvent,
    JobNotFound,
    JobSpec,
    JobStatus,
    WaitTimeout,
    where,
)
from aiofarm.capabilities import NEUTRAL, native_value
from aiofarm.drivers.base import SubmitAttempt

from .helpers import LONG, OK, executes, finish, missing_id, refused, running, tag, until_status

pytestmark = pytest.mark.anyio


async def test_submit_get_and_wait_for_success(farm: Client, backend: ModuleType) -> None:
    job = await farm.jobs.start(["sh", "-c", "echo hello; echo oops >&2"], name="ok", tags=[tag()])
    assert job.id and job.driver == farm.driver.name  # (a fast back end may have run it already)
    got = await farm.jobs.get(job.id)
    assert got.id == job.id and got.name == "ok"
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    assert result.status is JobStatus.SUCCEEDED
    assert result.job.exit_code == 0
    assert result.failed_tasks == ()
    assert result.job.finished_at is not None and result.job.finished_at.tzinfo is not None
    if executes(backend) and Capability.LOGS in farm.capabilities:
        text = await farm.logs.read(job.id)
        assert "hello" in text and "oops" in text


async def test_failure_carries_exit_code_and_failed_tasks(farm: Client, backend: ModuleType) -> None:
    job = await farm.jobs.start(["sh", "-c", "exit 3"])
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    assert result.status is JobStatus.FAILED
    if executes(backend):
        assert result.job.exit_code == 3
    if Capability.TASKS in farm.capabilities:
        assert len(result.failed_tasks) == 1
        assert result.failed_tasks[0].status is JobStatus.FAILED
    else:
        assert result.failed_tasks == ()


async def test_batch_with_dependencies_runs_in_order(farm: Client) -> None:
    t = tag()
    jobs = await farm.jobs.submit(
        [
            JobSpec(command=OK, id=f"{t}-c", depends_on=[f"{t}-b"], tags=[t]),
            JobSpec(command=OK, id=f"{t}-a", tags=[t]),
            JobSpec(command=OK, id=f"{t}-b", depends_on=[f"{t}-a"], tags=[t]),
        ]
    )
    assert len({j.id for j in jobs}) == 3  # in input order, whatever ids the back end gives
    c, a, b = [await farm.jobs.wait(j.id, timeout=120, max_interval=1) for j in jobs]
    assert [r.status for r in (a, b, c)] == [JobStatus.SUCCEEDED] * 3
    for before, after in ((a, b), (b, c)):
        assert before.job.finished_at is not None and after.job.started_at is not None
        assert after.job.started_at >= before.job.finished_at.replace(microsecond=0)


async def test_failed_dependency_fails_the_dependant(farm: Client) -> None:
    t = tag()
    first, second = await farm.jobs.submit(
        [
            JobSpec(command=["sh", "-c", "exit 1"], id=f"{t}-x"),
            JobSpec(command=OK, id=f"{t}-y", depends_on=[f"{t}-x"]),
        ]
    )
    result = await farm.jobs.wait(second.id, timeout=120, max_interval=1)
    assert result.status in (JobStatus.FAILED, JobStatus.CANCELED)
    assert result.job.reason
    assert (await farm.jobs.get(first.id)).status is JobStatus.FAILED


async def test_unknown_ids_raise_job_not_found(farm: Client, backend: ModuleType) -> None:
    missing = missing_id(backend)
    with pytest.raises(JobNotFound):
        await farm.jobs.get(missing)
    with pytest.raises(JobNotFound):
        await farm.jobs.wait(missing, timeout=30)
    with pytest.raises(InvalidSpec):
        await farm.jobs.start(OK, depends_on=[missing])


async def test_a_repeated_submit_attempt_makes_nothing_twice(farm: Client) -> None:
    # what lets the client layer retry a submit (aiofarm/retry.py): the same attempt
    # tokens find the jobs the first attempt made, whose answer may have been lost
    driver = farm.driver
    if not driver.idempotent_submit:
        pytest.skip(f"the {driver.name} driver declares its submit not idempotent: never retried")
    t = tag()
    specs = [JobSpec(command=OK, name=f"{t}-a", tags=[t]), JobSpec(command=OK, name=f"{t}-b", tags=[t])]
    first = SubmitAttempt.new(len(specs))
    made = await driver.submit(specs, first)
    again = await driver.submit(specs, SubmitAttempt(first.tokens, retry=True))
    assert [j.id for j in again] == [j.id for j in made]
    assert await farm.jobs.count(tags=[t]) == 2


async def test_list_filter_sort_and_count(farm: Client) -> None:
    t = tag()
    jobs = await farm.jobs.submit(
        [JobSpec(command=["sh", "-c", f"exit {i % 2}"], name=f"{t}-{i}", tags=[t], priority=10 + i) for i in range(4)]
    )
    for job in jobs:
        await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    async with farm.jobs.list(tags=[t]) as it:
        assert {j.id async for j in it} == {j.id for j in jobs}
    async with farm.jobs.list(tags=[t], statuses=[JobStatus.FAILED]) as it:
        assert {j.name async for j in it} == {f"{t}-1", f"{t}-3"}
    async with farm.jobs.list(where=where.tags.contains(t) & where.name.matches(r"-[02]$")) as it:
        assert {j.name async for j in it} == {f"{t}-0", f"{t}-2"}
    async with farm.jobs.list(where=f'tags contains "{t}"', sort="-priority", limit=3) as it:
        assert [j.name async for j in it] == [f"{t}-3", f"{t}-2", f"{t}-1"]
    async with farm.jobs.list(tags=[t], sort=["status", "name"]) as it:
        assert [j.name async for j in it] == [f"{t}-1", f"{t}-3", f"{t}-0", f"{t}-2"]
    async with farm.jobs.list(tags=[t], limit=1) as it:
        assert len([j async for j in it]) == 1
    assert await farm.jobs.count(tags=[t]) == 4
    assert await farm.jobs.count(where=where.tags.contains(t) & (where.status == JobStatus.SUCCEEDED)) == 2
    assert await farm.jobs.count(tags=[t], where="priority >= 12") == 2


async def test_many_concurrent_waits_and_as_completed(farm: Client) -> None:
    jobs = await farm.jobs.submit([JobSpec(command=OK) for _ in range(20)])
    results = {}

    async def wait(job_id: str) -> None:
        results[job_id] = (await farm.jobs.wait(job_id, timeout=120, max_interval=1)).status

    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(wait, job.id)
    assert set(results.values()) == {JobStatus.SUCCEEDED}
    done = [job.id async for job in farm.jobs.as_completed([j.id for j in jobs], timeout=60)]
    assert sorted(done) == sorted(j.id for j in jobs)


async def test_watch_ids_and_a_filter(farm: Client) -> None:
    t = tag()
    async with farm.jobs.watch(where.tags.contains(t), max_interval=1) as by_filter:
        job = await farm.jobs.start(["sh", "-c", "exit 2"], tags=[t])
        async with farm.jobs.watch(job.id, max_interval=1) as by_id:
            with anyio.fail_after(90):
                seen = [ev async for ev in _until_finished(by_id)]
            assert seen[0].previous is None
            assert seen[-1].status is JobStatus.FAILED
            assert all(a.status is b.previous for a, b in itertools.pairwise(seen))
        with anyio.fail_after(90):
            from_filter = [ev async for ev in _until_finished(by_filter)]
        assert {ev.job.id for ev in from_filter} == {job.id}
        assert from_filter[-1].status is JobStatus.FAILED


async def _until_finished(events: AsyncIterator[JobEvent]) -> AsyncIterator[JobEvent]:
    async for ev in events:
        yield ev
        if ev.status.is_finished:
            return


async def test_cancel_a_running_job(farm: Client) -> None:
    job = await running(farm)
    await farm.jobs.cancel(job.id)
    result = await farm.jobs.wait(job.id, timeout=60, max_interval=1)
    assert result.status is JobStatus.CANCELED


async def test_pause_and_resume(farm: Client) -> None:
    if Capability.PAUSE not in farm.capabilities:
        await refused(farm, Capability.PAUSE, lambda: farm.jobs.start(OK, paused=True))
        job = await farm.jobs.start(OK)
        await refused(farm, Capability.PAUSE, lambda: farm.jobs.pause(job.id))
        await refused(farm, Capability.PAUSE, lambda: farm.jobs.resume(job.id))
        return
    job = await farm.jobs.start(OK, paused=True)
    assert (await farm.jobs.get(job.id)).status is JobStatus.SUSPENDED
    with pytest.raises(WaitTimeout):  # held: it does not run by itself
        await farm.jobs.wait(job.id, timeout=1.5, max_interval=0.5)
    await farm.jobs.resume(job.id)
    assert (await farm.jobs.wait(job.id, timeout=90, max_interval=1)).status is JobStatus.SUCCEEDED
    # pausing a running job: the back end's own way (stop_work=None) is always accepted
    busy = await running(farm)
    try:
        await farm.jobs.pause(busy.id)
        stops = native_value(farm.driver, Capability.PAUSE_STOP_WORK)
        if Capability.PAUSE_STOP_WORK in farm.capabilities or stops:
            await farm.jobs.pause(busy.id, stop_work=True)
            await until_status(farm, busy.id, JobStatus.SUSPENDED)
        await farm.jobs.resume(busy.id)
    finally:
        await finish(farm, busy.id)


async def test_update_priority_and_name(farm: Client) -> None:
    job = await farm.jobs.start(OK, paused=Capability.PAUSE in farm.capabilities, priority=10)
    try:
        if Capability.UPDATE not in farm.capabilities:
            await refused(farm, Capability.UPDATE, lambda: farm.jobs.update(job.id, priority=90))
            return
        await farm.jobs.update([job.id], priority=90, name="renamed")
        got = await farm.jobs.get(job.id)
        assert got.priority == 90 and got.name == "renamed"
    finally:
        await finish(farm, job.id)


async def test_retry_reruns_a_failed_job(farm: Client) -> None:
    job = await farm.jobs.start(["sh", "-c", "exit 4"])
    first = await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    assert first.status is JobStatus.FAILED
    if Capability.RETRY not in farm.capabilities:
        await refused(farm, Capability.RETRY, lambda: farm.jobs.retry(job.id))
        return
    await farm.jobs.retry(job.id)
    again = await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    assert again.status is JobStatus.FAILED  # the same command fails the same way
    runs = [t for t in again.job.history if t.status is JobStatus.RUNNING]
    assert len(runs) >= 2 or again.job.finished_at != first.job.finished_at


async def test_delete_forgets_a_finished_job(farm: Client) -> None:
    job = await farm.jobs.start(OK)
    await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    if Capability.DELETE not in farm.capabilities:
        await refused(farm, Capability.DELETE, lambda: farm.jobs.delete(job.id))
        return
    await farm.jobs.delete(job.id)
    with pytest.raises(JobNotFound):
        await farm.jobs.get(job.id)


async def test_signal_reaches_the_job(farm: Client, backend: ModuleType) -> None:
    # RUNNING can precede the command's start (Slurm reports it at allocation, before
    # slurmd has started the batch script, and a signal sent then is lost): the
    # signal goes out once the command itself has said it runs.
    job = await running(farm, ["sh", "-c", "echo ready; exec sleep 300"])
    try:
        if Capability.SIGNAL not in farm.capabilities:
            await refused(farm, Capability.SIGNAL, lambda: farm.jobs.send_signal(job.id, signal.SIGTERM))
            return
        if Capability.LOGS in farm.capabilities:
            with anyio.fail_after(60):
                async with farm.logs.stream(job.id, follow=True) as lines:
                    async for line in lines:
                        if line.text.strip() == "ready":
                            break
        await farm.jobs.send_signal(job.id, signal.SIGTERM)
        result = await farm.jobs.wait(job.id, timeout=60, max_interval=1)
        assert result.status in (JobStatus.FAILED, JobStatus.CANCELED)
        if executes(backend) and result.job.exit_code is not None:
            assert result.job.exit_code in (-signal.SIGTERM, 128 + signal.SIGTERM)
    finally:
        await finish(farm, job.id)


async def test_tasks_and_explain(farm: Client) -> None:
    job = await farm.jobs.start(OK)
    await farm.jobs.wait(job.id, timeout=90, max_interval=1)
    if Capability.TASKS in farm.capabilities:
        tasks = await farm.jobs.tasks(job.id)
        assert len(tasks) == 1 and tasks[0].status is JobStatus.SUCCEEDED
    else:
        await refused(farm, Capability.TASKS, lambda: farm.jobs.tasks(job.id))
    if Capability.EXPLAIN in farm.capabilities:
        assert isinstance(await farm.jobs.explain(job.id), str)
    else:
        await refused(farm, Capability.EXPLAIN, lambda: farm.jobs.explain(job.id))


async def test_parameters_a_driver_does_not_declare_are_refused(farm: Client) -> None:
    """Every parameter capability the driver lacks: a call asking for a value it cannot
    honour raises UnsupportedError naming it, before anything is done."""
    caps = farm.capabilities
    t = tag()
    job = await farm.jobs.start(OK, paused=Capability.PAUSE in caps, tags=[t])
    since = datetime(2020, 1, 1, tzinfo=timezone.utc)

    def other(cap: Capability) -> bool:
        return not native_value(farm.driver, cap)

    calls = {
        Capability.SUBMIT_TTY: lambda: farm.jobs.start(OK, tty=True, tags=[t]),
        Capability.SUBMIT_STDIN: lambda: farm.jobs.start(OK, stdin=True, tags=[t]),
        Capability.SUBMIT_RETRIES: lambda: farm.jobs.start(OK, retries=1, tags=[t]),
        Capability.SUBMIT_MAX_FAILED_TASKS: lambda: farm.jobs.submit(
            [JobSpec(command=OK, tags=[t]), JobSpec(command=OK, max_failed_tasks=1, tags=[t])]
        ),
        Capability.SUBMIT_MAX_WORKERS: lambda: farm.jobs.submit([JobSpec(command=OK, max_workers=1, tags=[t])]),
        Capability.SUBMIT_ENVIRONMENTS: lambda: farm.jobs.submit_template(
            {
                "specificationVersion": "jobtemplate-2023-09",
                "name": "contract",
                "steps": [{"name": "s", "script": {"actions": {"onRun": {"command": "true"}}}}],
            },
            tags=[t],
            environments=[
                {"specificationVersion": "environment-2023-09", "environment": {"name": "E", "variables": {"A": "1"}}}
            ],
        ),
        Capability.CANCEL_STOP_WORK: lambda: farm.jobs.cancel(job.id, stop_work=other(Capability.CANCEL_STOP_WORK)),
        Capability.PAUSE_STOP_WORK: lambda: farm.jobs.pause(job.id, stop_work=other(Capability.PAUSE_STOP_WORK)),
        Capability.LOGS_SINCE: lambda: farm.logs.page(job.id, start_time=since),
        Capability.LOGS_TIMESTAMPS: lambda: farm.logs.stream(job.id, follow=False, timestamps=True),
        Capability.LOGS_STREAMS: lambda: farm.logs.page(job.id, streams=["stderr"]),
        Capability.LOGS_TASK: lambda: farm.logs.page(job.id, task="0"),
        Capability.LOGS_ATTEMPT: lambda: farm.logs.page(job.id, attempt=1),
        Capability.ATTACH_STEP: lambda: farm.jobs.attach(job.id, step="0"),
        Capability.EXEC_TTY: lambda: farm.jobs.exec(job.id, OK, tty=True),
        Capability.WORKERS_STOP_WORK: lambda: farm.workers.disable("no-such-worker", stop_work=True),
        Capability.FUNCTIONS_MAX_CONCURRENCY: lambda: farm.functions.create(max, max_concurrency=2),
    }
    # attach.batch_step has no parameter: it says what attach reaches
    assert set(calls) | {Capability.ATTACH_BATCH_STEP} == set(NEUTRAL), "a new parameter needs a line here"
    needs = {
        Capability.WORKERS_STOP_WORK: Capability.WORKERS_MANAGE,
        Capability.SUBMIT_ENVIRONMENTS: Capability.SUBMIT_TEMPLATE,
    }
    try:
        for cap, call in calls.items():
            operation = needs.get(cap, Capability(cap.operation))
            if cap in caps or operation not in caps:
                continue  # honoured, or the whole operation is refused (tested elsewhere)
            await refused(farm, cap, call)
    finally:
        await finish(farm, job.id)
    assert await farm.jobs.count(tags=[t]) == 1  # no refused submission created anything


async def test_operations_a_driver_does_not_declare_are_refused(farm: Client) -> None:
    job = await farm.jobs.start(LONG)
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "contract",
        "steps": [{"name": "s", "script": {"actions": {"onRun": {"command": "true"}}}}],
    }
    try:
        for cap, call in {
            Capability.ATTACH: lambda: farm.jobs.attach(job.id),
            Capability.EXEC: lambda: farm.jobs.exec(job.id, OK),
            Capability.PORT_FORWARD: lambda: farm.jobs.port_forward(job.id, job_port=80),
            Capability.POOLS_MANAGE: lambda: farm.pools.create("contract"),
            Capability.WORKERS: lambda: farm.workers.list(),
            Capability.WORKERS_MANAGE: lambda: farm.workers.enable("no-such-worker"),
            Capability.SUBMIT_TEMPLATE: lambda: farm.jobs.submit_template(template),
            Capability.FUNCTIONS: lambda: farm.functions.create(max),
        }.items():
            if cap not in farm.capabilities:
                await refused(farm, cap, call)
    finally:
        await finish(farm, job.id)
