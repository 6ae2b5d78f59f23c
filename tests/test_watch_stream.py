"""The Hub owns push streams (aiofarm/watch.py): a driver hands it one attempt at its
event stream (``Driver.job_events``); when the stream drops, the Hub opens it again on
the one back-off and re-reads what it watches, so a status change made while nothing
could be pushed is not missed. On the real farm service (its events WebSocket cut and
kept from coming back by a fault proxy) and on a scripted driver."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiofarm import Client, ConnectionLost, FarmError, Job, JobSpec, JobStatus, where
from aiofarm.drivers.dummy import DummyDriver
from aiofarm.models import Capability
from aiofarm.waiting import wait
from aiofarm.watch import Hub

from .local.helpers import eventually
from .reliability.faultproxy import FaultProxy
from .waits import tag

pytestmark = pytest.mark.anyio


async def test_a_dropped_service_event_stream_is_resumed_and_nothing_is_missed(tmp_path: Path) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    front = tmp_path / "front"
    front.mkdir(mode=0o700)
    label = tag()
    async with Client(f"local://{state}", cancel_grace=0.5) as direct, FaultProxy(
        str(state / "farm.sock"), listen_path=str(front / "farm.sock")
    ) as proxy, Client(f"local://{front}") as farm:
        finishing = await farm.jobs.start(f"while [ ! -e {gate} ]; do sleep 0.02; done", tags=[label])
        canceled = await farm.jobs.start(["sleep", "60"], tags=[label])
        seen: list[tuple[str, JobStatus]] = []
        async with farm.jobs.watch([finishing.id, canceled.id]) as by_id, farm.jobs.watch(
            where.tags.contains(label)
        ) as by_filter, anyio.create_task_group() as tg:
            results: dict[str, JobStatus] = {}

            async def wait_for(job_id: str) -> None:
                results[job_id] = (await farm.jobs.wait(job_id, timeout=60)).status

            tg.start_soon(wait_for, finishing.id)
            with anyio.fail_after(30):
                async for event in by_id:
                    seen.append((event.job.id, event.status))
                    if all((i, JobStatus.RUNNING) in seen for i in (finishing.id, canceled.id)):
                        break
            # the stream goes, and cannot come back until the test lets it
            proxy.target("GET", r"^/v1/events", "reset_before", times=10**6)
            assert proxy.drop_streams() >= 1
            await eventually(lambda: proxy.counts["reset_before"] >= 2, 30, "two refused re-opens")
            # meanwhile, in another client: one job finishes, one is canceled, one is new
            gate.touch()
            await direct.jobs.cancel(canceled.id)
            (added,) = await direct.jobs.submit([JobSpec(command=["true"], tags=[label])])
            for job_id in (finishing.id, canceled.id, added.id):
                await direct.jobs.wait(job_id, timeout=30)
            assert farm.hub.reconnects == 0 and finishing.id not in results
            proxy.targets.clear()
            with anyio.fail_after(30):
                async for event in by_id:
                    seen.append((event.job.id, event.status))
                    if {i for i, s in seen if s.is_finished} == {finishing.id, canceled.id}:
                        break
                new = set()
                async for event in by_filter:
                    if event.status.is_finished:
                        new.add((event.job.id, event.status))
                    if (added.id, JobStatus.SUCCEEDED) in new:
                        break
            await eventually(lambda: finishing.id in results, 30, "the wait to end")
        assert farm.hub.reconnects >= 1
        assert (finishing.id, JobStatus.SUCCEEDED) in seen and (canceled.id, JobStatus.CANCELED) in seen
        assert results == {finishing.id: JobStatus.SUCCEEDED}


class StreamDriver(DummyDriver):
    """A dummy whose changes reach the Hub only through an event stream the test
    controls: ``drop()`` ends it, ``refuse`` makes the next opens fail."""

    event_stream = True

    def __init__(self) -> None:
        super().__init__()
        self.capabilities = frozenset({*DummyDriver.capabilities, Capability.PUSH})  # type: ignore[misc]
        self.opens = 0
        self.refuse: list[FarmError] = []
        self.connected = anyio.Event()
        self._send: Any = None

    def subscribe(self, callback: Callable[[Job], None]) -> None:
        pass  # no in-process push: changes come over the stream only

    def set_status(self, job_id: str, status: JobStatus, exit_code: int | None = None) -> Job:
        job = super().set_status(job_id, status, exit_code)
        if self._send is not None:
            self._send.send_nowait([job])
        return job

    def drop(self) -> None:
        self._send.close()
        self._send = None  # what changes now is not pushed
        self.connected = anyio.Event()

    @asynccontextmanager
    async def job_events(self) -> AsyncIterator[AsyncIterator[Sequence[Job]]]:
        self.opens += 1
        if self.refuse:
            raise self.refuse.pop(0)
        send, receive = anyio.create_memory_object_stream[Sequence[Job]](math.inf)
        self._send = send
        self.connected.set()

        async def batches() -> AsyncIterator[Sequence[Job]]:
            async with receive:
                async for batch in receive:
                    yield batch
            raise ConnectionLost("the stream dropped")

        try:
            yield batches()
        finally:
            send.close()


@asynccontextmanager
async def hub_of(driver: StreamDriver) -> AsyncIterator[Hub]:
    async with anyio.create_task_group() as tg:

        def spawn(fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
            tg.start_soon(fn)

        hub = Hub(driver, spawn)
        await hub.open(tg)
        try:
            yield hub
        finally:
            hub.close()
            tg.cancel_scope.cancel()


async def test_the_first_open_of_the_stream_fails_as_itself() -> None:
    driver = StreamDriver()
    driver.refuse.append(ConnectionLost("nothing answers"))
    async with anyio.create_task_group() as tg:
        hub = Hub(driver, lambda fn: tg.start_soon(fn))
        with pytest.raises(ConnectionLost, match="nothing answers"):
            await hub.open(tg)
    assert driver.opens == 1


async def test_a_change_made_while_the_stream_was_down_is_read_after_it_returns() -> None:
    driver = StreamDriver()
    (job,) = await driver.submit([JobSpec(command=["x"])])
    async with hub_of(driver) as hub, anyio.create_task_group() as tg:
        results: list[JobStatus] = []

        async def waiting() -> None:
            results.append((await wait(hub, driver, job.id, timeout=20)).status)

        tg.start_soon(waiting)
        await eventually(lambda: driver.calls["get_jobs"] >= 1, 10, "the first read")
        driver.refuse.extend([ConnectionLost("down"), ConnectionLost("still down")])
        driver.drop()
        driver.set_status(job.id, JobStatus.SUCCEEDED)  # nothing carries it now
        reads = driver.calls["get_jobs"]
        with anyio.fail_after(20):
            await driver.connected.wait()
        await eventually(lambda: results == [JobStatus.SUCCEEDED], 20, "the wait to see the change")
        assert driver.opens == 4 and hub.reconnects == 1
        assert driver.calls["get_jobs"] == reads + 1  # one batched re-read of what it watched


async def test_a_stream_that_cannot_be_reopened_fails_the_waits_and_is_tried_again() -> None:
    driver = StreamDriver()
    (job,) = await driver.submit([JobSpec(command=["x"])])
    async with hub_of(driver) as hub, anyio.create_task_group() as tg:
        outcomes: list[FarmError | JobStatus] = []

        async def waiting() -> None:
            try:
                outcomes.append((await wait(hub, driver, job.id, timeout=20)).status)
            except FarmError as exc:
                outcomes.append(exc)

        tg.start_soon(waiting)
        await eventually(lambda: driver.calls["get_jobs"] == 1, 10, "the first read")
        driver.refuse.append(FarmError("the service speaks another protocol"))
        driver.drop()
        await eventually(lambda: outcomes, 20, "the wait to fail")
        assert "another protocol" in str(outcomes[0])
        # the Hub kept trying: the stream is back, and a new wait hears it push
        await eventually(lambda: hub.reconnects == 1, 20, "the stream to come back")
        reads = driver.calls["get_jobs"]
        tg.start_soon(waiting)
        await eventually(lambda: driver.calls["get_jobs"] > reads, 10, "the new wait's first read")
        driver.set_status(job.id, JobStatus.FAILED)
        await eventually(lambda: len(outcomes) == 2, 20, "the new wait to end")
        assert outcomes[1] is JobStatus.FAILED and hub.reconnects == 1
