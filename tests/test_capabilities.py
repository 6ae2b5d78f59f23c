"""Capabilities are checked once, in the client layer, before the driver is called: an
operation or a parameter value the driver does not declare raises UnsupportedError
naming the driver and the capability, and the driver never sees the call."""

from __future__ import annotations

import operator
import signal
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from types import MappingProxyType

import pytest

from aiofarm import Capability, Client, JobSpec, UnsupportedError
from aiofarm.capabilities import NEUTRAL, native_value, require
from aiofarm.drivers.base import Action, Driver
from tests.dummy import dummy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def farm() -> AsyncIterator[Client]:
    async with Client("dummy://") as client:
        yield client


def test_every_parameter_has_a_neutral_value_and_names_its_operation() -> None:
    params = {c for c in Capability if c.parameter is not None}
    assert params == set(NEUTRAL)
    operations = {c.value for c in Capability if c.parameter is None}
    for cap in params:
        assert cap.operation in operations | {"logs"}, cap
    assert Capability.PAUSE_STOP_WORK.operation == "pause"
    assert Capability.PAUSE_STOP_WORK.parameter == "stop_work"
    assert Capability.PAUSE.parameter is None


async def test_capabilities_expose_parameters(farm: Client) -> None:
    caps = farm.capabilities
    assert Capability.LOGS_STREAMS in caps and Capability.LOGS_SINCE not in caps
    assert Capability.PAUSE_STOP_WORK in Client("local://").capabilities


async def _refused(farm: Client, feature: str, call: object) -> UnsupportedError:
    before = dict(dummy(farm).calls)
    with pytest.raises(UnsupportedError) as info:
        await call  # type: ignore[misc]
    assert (info.value.driver, info.value.feature) == ("dummy", feature)
    assert dict(dummy(farm).calls) == before, "the driver was called"
    return info.value


async def test_unhonoured_submit_parameters_are_refused_before_submitting(farm: Client) -> None:
    err = await _refused(farm, "submit.tty", farm.jobs.start(["true"], tty=True))
    assert "tty=True" in str(err)
    await _refused(farm, "submit.stdin", farm.jobs.start(["true"], stdin=True))
    await _refused(farm, "submit.retries", farm.jobs.start(["true"], retries=2))
    batch = [JobSpec(command=["true"]), JobSpec(command=["true"], max_failed_tasks=3)]
    err = await _refused(farm, "submit.max_failed_tasks", farm.jobs.submit(batch))
    assert "specs[1].max_failed_tasks" in str(err)
    await _refused(farm, "submit.max_workers", farm.jobs.submit([JobSpec(command=["true"], max_workers=2)]))
    # the neutral values go through
    job = await farm.jobs.start(["true"], tty=False, stdin=False, retries=0)
    assert job.id in dummy(farm).jobs


async def test_unhonoured_log_parameters_are_refused(farm: Client) -> None:
    job = await farm.jobs.start(["true"])
    since = datetime(2020, 1, 1, tzinfo=timezone.utc)
    await _refused(farm, "logs.since", farm.logs.page(job.id, start_time=since))
    await _refused(farm, "logs.since", farm.logs.page(job.id, end_time=since))
    await _refused(farm, "logs.task", farm.logs.page(job.id, task="0"))
    with pytest.raises(UnsupportedError, match=r"logs\.since"):
        async with farm.logs.stream(job.id, since=since):
            pass
    # honoured ones work
    dummy(farm).write_log(job.id, "out")
    dummy(farm).write_log(job.id, "err", stream="stderr")
    page = await farm.logs.page(job.id, streams=["stderr"])
    assert [ln.text for ln in page.lines] == ["err"]


async def test_unsupported_operations_are_refused_before_the_driver(farm: Client) -> None:
    job = await farm.jobs.start(["true"])
    await _refused(farm, "signal", farm.jobs.send_signal(job.id, signal.SIGTERM))
    await _refused(farm, "retry", farm.jobs.retry(job.id))
    await _refused(farm, "tasks", farm.jobs.tasks(job.id))
    await _refused(farm, "explain", farm.jobs.explain(job.id))
    await _refused(farm, "pools_manage", farm.pools.create("gpu"))
    await _refused(farm, "workers", farm.workers.list())
    await _refused(farm, "workers_manage", farm.workers.disable("n1"))
    for cap, call in (
        (Capability.ATTACH, lambda: farm.jobs.attach(job.id)),
        (Capability.EXEC, lambda: farm.jobs.exec(job.id, ["true"])),
        (Capability.PORT_FORWARD, lambda: farm.jobs.port_forward(job.id, job_port=80)),
    ):
        with pytest.raises(UnsupportedError) as info:
            call()
        assert info.value.feature == cap.value
    with pytest.raises(UnsupportedError, match="functions"):
        farm.functions.create(operator.mul)


async def test_stop_work_none_is_the_back_ends_own_way(farm: Client) -> None:
    driver = dummy(farm)
    seen: list[tuple[Action, bool]] = []
    original = driver.control

    async def control(ids: object, action: Action, *, stop_work: bool) -> None:
        seen.append((action, stop_work))
        await original(ids, action, stop_work=stop_work)  # type: ignore[arg-type]

    driver.control = control  # type: ignore[method-assign]
    # like Deadline Cloud: a suspended job's running tasks are always interrupted
    driver.fixed_parameters = MappingProxyType({Capability.PAUSE_STOP_WORK: True})  # type: ignore[misc]
    a, b = (await farm.jobs.start(["true"])), (await farm.jobs.start(["true"]))
    await farm.jobs.pause(a.id)
    await farm.jobs.pause(b.id, stop_work=True)
    err = await _refused(farm, "pause.stop_work", farm.jobs.pause(a.id, stop_work=False))
    assert "always behaves as stop_work=True" in str(err)
    await farm.jobs.cancel(a.id)  # neutral: stop running work
    await _refused(farm, "cancel.stop_work", farm.jobs.cancel(b.id, stop_work=False))
    assert seen == [(Action.PAUSE, True), (Action.PAUSE, True), (Action.CANCEL, True)]


async def test_a_declared_parameter_passes_every_value(farm: Client) -> None:
    driver = dummy(farm)
    driver.capabilities = driver.capabilities | {Capability.CANCEL_STOP_WORK}  # type: ignore[misc]
    job = await farm.jobs.start(["true"])
    await farm.jobs.cancel(job.id, stop_work=False)


def test_require_reads_classes_and_instances() -> None:
    class Tiny(Driver):
        name = "tiny"
        capabilities = frozenset({Capability.LOGS})

    require(Tiny, Capability.LOGS)
    require(Tiny, Capability.LOGS_TIMESTAMPS, False)
    require(Tiny, Capability.LOGS_STREAMS, frozenset({"stdout", "stderr"}))
    with pytest.raises(UnsupportedError, match=r"the tiny driver does not support logs\.timestamps"):
        require(Tiny, Capability.LOGS_TIMESTAMPS, True)
    with pytest.raises(UnsupportedError, match="exec"):
        require(Tiny(), Capability.EXEC)
    assert native_value(Tiny, Capability.PAUSE_STOP_WORK) is False
