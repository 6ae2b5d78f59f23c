"""Logs of several jobs in one stream (ids, or ``where=``), each line with its job id,
and ``attempt=``: one run of a retried task (where the driver records attempts)."""

from __future__ import annotations

from types import ModuleType

import anyio
import pytest

from aiofarm import Capability, Client, InvalidSpec, JobNotFound, LogLine, where

from .helpers import executes, missing_id, refused, tag

pytestmark = pytest.mark.anyio


def _script(name: str) -> list[str]:
    return ["sh", "-c", f"echo {name} 1; echo {name} 2; echo {name} 3 >&2"]


async def _collect(farm: Client, follow: bool, **kw: object) -> list[LogLine]:
    with anyio.fail_after(150):
        async with farm.logs.stream(follow=follow, **kw) as lines:  # type: ignore[arg-type]
            return [line async for line in lines]


async def test_logs_of_several_jobs(farm: Client, backend: ModuleType) -> None:
    t = tag()
    a = await farm.jobs.start(_script("alpha"), tags=[t], labels={"run": t})
    b = await farm.jobs.start(_script("beta"), tags=[t], labels={"run": t})
    if Capability.LOGS not in farm.capabilities:
        await refused(farm, Capability.LOGS, lambda: farm.logs.stream([a.id, b.id]))
        return
    follow = Capability.LOGS_FOLLOW in farm.capabilities
    if not follow:
        for job in (a, b):
            await farm.jobs.wait(job.id, timeout=120, max_interval=1)
    got = await _collect(farm, follow, job_id=[a.id, b.id])
    assert {line.job_id for line in got} <= {a.id, b.id}
    for job in (a, b):
        assert (await farm.jobs.get(job.id)).status.is_finished  # followed to the end of both
    if executes(backend):
        for job, name in ((a, "alpha"), (b, "beta")):
            mine = [x.text for x in got if x.job_id == job.id and x.text.startswith(name)]
            assert sorted(mine) == [f"{name} 1", f"{name} 2", f"{name} 3"], got
            out = [x for x in mine if not x.endswith("3")]
            assert out == [f"{name} 1", f"{name} 2"]  # one job's lines keep their order
    by_filter = await _collect(farm, False, where=where.labels["run"] == t)
    assert sorted((x.job_id, x.text) for x in by_filter) == sorted((x.job_id, x.text) for x in got)
    by_text = await _collect(farm, False, where=f"labels.run == {t}")
    assert len(by_text) == len(by_filter)
    with pytest.raises(JobNotFound):
        await _collect(farm, False, job_id=[a.id, missing_id(backend)])
    with pytest.raises(InvalidSpec):
        await _collect(farm, False)  # nothing named
    with pytest.raises(InvalidSpec):
        await _collect(farm, False, job_id=a.id, where="priority > 1")


async def test_logs_of_one_attempt(farm: Client, backend: ModuleType) -> None:
    if Capability.LOGS_ATTEMPT not in farm.capabilities:
        if Capability.LOGS in farm.capabilities:  # refused before anything is asked
            await refused(farm, Capability.LOGS_ATTEMPT, lambda: farm.logs.page(missing_id(backend), attempt=1))
        return
    retries = 1 if Capability.SUBMIT_RETRIES in farm.capabilities else 0
    job = await farm.jobs.start(["sh", "-c", "echo run; exit 1"], retries=retries)
    await farm.jobs.wait(job.id, timeout=100, max_interval=1)
    with pytest.raises(InvalidSpec) as info:
        await farm.logs.page(job.id, attempt=0)
    assert info.value.field == "attempt"
    runs = retries + 1
    for attempt in range(1, runs + 1):
        page = await farm.logs.page(job.id, attempt=attempt, limit=1000)
        assert [x.text for x in page.lines if x.stream == "stdout"] == ["run"]
        assert {x.attempt for x in page.lines} == {attempt}
    assert (await farm.logs.page(job.id, attempt=runs + 1)).lines == ()
    assert (await farm.logs.read(job.id)).count("run\n") == runs
    assert (await farm.logs.read(job.id, attempt=1)).count("run\n") == 1
