"""The client layer over the in-memory dummy driver: URL resolution, the shared
poller, wait/as_completed/watch, list paging and filtering, log follow."""

from __future__ import annotations

import math
import time
from typing import Any

import anyio
import pytest

import aiofarm
from aiofarm import Client, InvalidSpec, JobNotFound, JobSpec, JobStatus, WaitTimeout
from aiofarm.drivers.dummy import DummyDriver
from tests.dummy import dummy

pytestmark = pytest.mark.anyio


class Countdown:
    """An event set once ``n`` different jobs have been seen (``once`` is an on_status)."""

    def __init__(self, n: int) -> None:
        self.left = n
        self.ids: set[str] = set()
        self.event = anyio.Event()

    def once(self, job: aiofarm.Job) -> None:
        if job.id not in self.ids:
            self.ids.add(job.id)
            self.left -= 1
            if self.left <= 0:
                self.event.set()

    async def wait(self) -> None:
        await self.event.wait()


class Pulse:
    """Wakes whoever waits at the next ``fire``."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    def fire(self) -> None:
        self._event.set()
        self._event = anyio.Event()

    async def wait(self) -> None:
        await self._event.wait()


class CallClock:
    """When each ``get_jobs`` call of a dummy driver returned; wait for the n-th."""

    def __init__(self, driver: DummyDriver) -> None:
        self.times: list[float] = []
        self._pulse = Pulse()
        real = driver.get_jobs

        async def timed(ids: Any) -> dict[str, aiofarm.Job]:
            try:
                return await real(ids)
            finally:
                self.times.append(time.monotonic())
                self._pulse.fire()

        driver.get_jobs = timed  # type: ignore[method-assign]

    async def reached(self, n: int) -> None:
        while len(self.times) < n:
            await self._pulse.wait()

    def gaps(self) -> list[float]:
        return [b - a for a, b in zip(self.times, self.times[1:], strict=False)]


# -- URL resolution -----------------------------------------------------------------


def test_url_from_argument_env_config_default(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Client("dummy://").url == "dummy://"
    monkeypatch.setenv("AIOFARM_URL", "dummy://?push=1")
    assert Client().url == "dummy://?push=1"
    monkeypatch.delenv("AIOFARM_URL")
    cfg = tmp_path / "cfg"
    (cfg / "aiofarm").mkdir(parents=True)
    (cfg / "aiofarm" / "config.toml").write_text('url = "dummy://from-config"\n')
    monkeypatch.setenv("XDG_CONFIG_HOME", str(cfg))
    assert Client().url == "dummy://from-config"
    (cfg / "aiofarm" / "config.toml").unlink()
    assert Client().url == "local://"


@pytest.mark.parametrize(
    ("url", "needle"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("no-scheme-here", "no scheme"),
        ("gopher://x", "no driver for scheme 'gopher'"),
        ("dummy://?push=maybe", "push"),
    ],
)
async def test_bad_urls_raise_invalid_spec(url: str, needle: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        async with Client(url):
            pass
    assert info.value.field == "url"
    assert needle in str(info.value)


def test_bad_config_file_is_named(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "aiofarm").mkdir()
    (tmp_path / "aiofarm" / "config.toml").write_text("url = [\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    with pytest.raises(InvalidSpec) as info:
        Client()
    assert info.value.field == "config"


async def test_client_not_open_and_closed_errors() -> None:
    client = Client("dummy://")
    with pytest.raises(aiofarm.FarmError, match="not open"):
        await client.jobs.get("x")
    async with client:
        pass
    with pytest.raises(aiofarm.FarmError, match="closed"):
        await client.jobs.get("x")
    with pytest.raises(aiofarm.FarmError, match="closed"):
        await client.open()


async def test_open_in_one_task_close_in_another() -> None:
    """A notebook opens a Client in one cell and closes it in another task."""
    holder: list[Client] = []

    async def opener() -> None:
        holder.append(await Client("dummy://").open())

    async with anyio.create_task_group() as tg:
        tg.start_soon(opener)
    client = holder[0]
    (job,) = await client.jobs.submit([JobSpec(command=["x"])])
    async with anyio.create_task_group() as tg:
        tg.start_soon(client.aclose)
    with pytest.raises(aiofarm.FarmError):
        await client.jobs.get(job.id)


async def test_unsupported_feature_names_driver_and_feature() -> None:
    async with Client("dummy://") as farm:
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        with pytest.raises(aiofarm.UnsupportedError) as info:
            await farm.jobs.send_signal(job.id, 15)
        assert info.value.driver == "dummy" and info.value.feature == "signal"
        assert aiofarm.Capability.SIGNAL not in farm.capabilities
        with pytest.raises(aiofarm.UnsupportedError):
            await farm.workers.list()


# -- the shared poller ----------------------------------------------------------------


async def test_ten_thousand_waits_cost_one_batched_round() -> None:
    n = 10_000
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(n)])
        results: list[aiofarm.CompletionResult] = []
        first_seen = Countdown(n)

        async def waiter(job_id: str) -> None:
            results.append(await farm.jobs.wait(job_id, max_interval=0.5, on_status=first_seen.once))

        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(waiter, job.id)
            with anyio.fail_after(30):
                await first_seen.wait()
            # every wait saw its job once; the first fetch was batched: n / 100 calls
            first = driver.calls["get_jobs"]
            assert first == math.ceil(n / driver.max_batch_get)
            for job in jobs:
                driver.set_status(job.id, JobStatus.SUCCEEDED, exit_code=0)
        after = driver.calls["get_jobs"] - first
    assert len(results) == n
    assert all(r.status is JobStatus.SUCCEEDED for r in results)
    # one poll round noticed every completion
    assert after == math.ceil(n / driver.max_batch_get)


async def test_poller_backs_off_and_resets_on_change() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        calls = CallClock(driver)
        seen: list[JobStatus] = []
        running = anyio.Event()

        def on_status(j: aiofarm.Job) -> None:
            seen.append(j.status)
            if j.status is JobStatus.RUNNING:
                running.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(lambda: farm.jobs.wait(job.id, max_interval=2, on_status=on_status))
            with anyio.fail_after(20):
                await calls.reached(4)  # the first fetch, then rounds 0.5, 1 and 2 s apart
                gaps = calls.gaps()
                assert [round(g * 2) / 2 for g in gaps] == [0.5, 1.0, 2.0], gaps
                driver.set_status(job.id, JobStatus.RUNNING)
                await running.wait()
                changed_round = len(calls.times)
                await calls.reached(changed_round + 1)
            # a round that saw a change resets the back-off to its first step
            assert calls.gaps()[changed_round - 1] < 0.9, calls.gaps()
            driver.set_status(job.id, JobStatus.SUCCEEDED)
        assert seen == [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED]


async def test_poller_survives_connection_lost() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        async with anyio.create_task_group() as tg:
            got: list[aiofarm.CompletionResult] = []

            first = Countdown(1)

            async def wait() -> None:
                got.append(await farm.jobs.wait(job.id, max_interval=0.5, on_status=first.once))

            tg.start_soon(wait)
            await first.wait()
            driver.fail_get = 3  # the back end goes away for three rounds
            driver.set_status(job.id, JobStatus.SUCCEEDED)
        assert got[0].status is JobStatus.SUCCEEDED
        assert driver.fail_get == 0


async def test_push_driver_wait_wakes_without_polling() -> None:
    async with Client("dummy://?push=1") as farm:
        driver = dummy(farm)
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        async with anyio.create_task_group() as tg:
            out: list[aiofarm.CompletionResult] = []

            first = Countdown(1)

            async def wait() -> None:
                out.append(await farm.jobs.wait(job.id, on_status=first.once))

            tg.start_soon(wait)
            await first.wait()
            calls = driver.calls["get_jobs"]
            driver.set_status(job.id, JobStatus.RUNNING)
            driver.set_status(job.id, JobStatus.FAILED, exit_code=3)
        assert out[0].status is JobStatus.FAILED
        assert out[0].job.exit_code == 3
        assert driver.calls["get_jobs"] == calls == 1  # only the first fetch


async def test_wait_timeout_and_unknown_job() -> None:
    async with Client("dummy://") as farm:
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        with pytest.raises(WaitTimeout) as info:
            await farm.jobs.wait(job.id, timeout=0.2)
        assert isinstance(info.value, TimeoutError)
        with pytest.raises(JobNotFound):
            await farm.jobs.wait("nope", timeout=5)
        assert farm.hub.watched == 0


async def test_as_completed_yields_in_finish_order() -> None:
    async with Client("dummy://?push=1") as farm:
        driver = dummy(farm)
        jobs = await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(3)])
        order: list[str] = []
        calls = CallClock(driver)
        async with anyio.create_task_group() as tg:

            async def consume() -> None:
                async for job in farm.jobs.as_completed([j.id for j in jobs], timeout=5):
                    order.append(job.id)

            tg.start_soon(consume)
            with anyio.fail_after(5):
                await calls.reached(1)  # registered and read once: from now on, pushes
            for idx in (2, 0, 1):
                driver.set_status(jobs[idx].id, JobStatus.SUCCEEDED)
        assert order == [jobs[2].id, jobs[0].id, jobs[1].id]


async def test_watch_ids_and_filter() -> None:
    async with Client("dummy://?push=1") as farm:
        driver = dummy(farm)
        a, b = await farm.jobs.submit([JobSpec(command=["x"], name="a"), JobSpec(command=["x"], name="b")])
        async with farm.jobs.watch([a.id]) as events:
            first = await events.__anext__()
            got = [(first.previous, first.status)]
            driver.set_status(a.id, JobStatus.RUNNING)
            driver.set_status(b.id, JobStatus.RUNNING)
            driver.set_status(a.id, JobStatus.SUCCEEDED)
            async for ev in events:
                got.append((ev.previous, ev.status))
                if ev.status.is_finished:
                    break
        assert got == [
            (None, JobStatus.PENDING),
            (JobStatus.PENDING, JobStatus.RUNNING),
            (JobStatus.RUNNING, JobStatus.SUCCEEDED),
        ]
        async with farm.jobs.watch(aiofarm.where.name == "b") as events:
            driver.set_status(a.id, JobStatus.FAILED)
            driver.set_status(b.id, JobStatus.CANCELED)
            names = []
            async for ev in events:
                names.append((ev.job.name, ev.status))
                if ev.status.is_finished:
                    break
        assert names == [("b", JobStatus.RUNNING), ("b", JobStatus.CANCELED)]


async def test_watch_filter_on_polling_driver_sees_new_jobs() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        async with farm.jobs.watch(aiofarm.where.tags.contains("x"), max_interval=0.5) as events:
            (job,) = await farm.jobs.submit([JobSpec(command=["x"], tags=["x"])])
            await farm.jobs.submit([JobSpec(command=["x"], tags=["y"])])
            with anyio.fail_after(5):
                first = await events.__anext__()
                assert first.job.id == job.id and first.status is JobStatus.PENDING
                driver.set_status(job.id, JobStatus.SUCCEEDED)
                second = await events.__anext__()
        assert second.status is JobStatus.SUCCEEDED and second.previous is JobStatus.PENDING


# -- list ----------------------------------------------------------------------------


async def test_list_pages_filters_and_limits() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        specs = [JobSpec(command=["x"], name=f"j{i}", priority=i % 100, tags=["even"] if i % 2 == 0 else []) for i in range(250)]
        jobs = await farm.jobs.submit(specs)
        driver.set_status(jobs[5].id, JobStatus.FAILED)
        async with farm.jobs.list(page_size=100) as it:
            all_jobs = [j async for j in it]
        assert [j.id for j in all_jobs] == [j.id for j in jobs]
        assert driver.calls["list_page"] == 3
        async with farm.jobs.list(statuses=["failed"]) as it:
            assert [j.id async for j in it] == [jobs[5].id]
        async with farm.jobs.list(where="priority < 3 and tags contains even", limit=10) as it:
            names = [j.name async for j in it]
        assert names == ["j0", "j2", "j100", "j102", "j200", "j202"]
        async with farm.jobs.list(limit=2, reverse=True) as it:
            assert len([j async for j in it]) == 2


async def test_list_cancelled_midway_closes_generator() -> None:
    async with Client("dummy://") as farm:
        await farm.jobs.submit([JobSpec(command=["x"]) for _ in range(10)])
        with anyio.CancelScope() as scope:
            async with farm.jobs.list(page_size=1) as it:
                async for _ in it:
                    scope.cancel()
                    await anyio.sleep_forever()
        # the generator was closed: a second list works normally
        async with farm.jobs.list() as it:
            assert len([j async for j in it]) == 10


# -- submit --------------------------------------------------------------------------


async def test_batch_with_client_ids_and_dependencies_in_any_order() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        specs = [
            JobSpec(command=["c"], id="c", depends_on=["b"]),
            JobSpec(command=["a"], id="a"),
            JobSpec(command=["b"], id="b", depends_on=["a"]),
        ]
        jobs = await farm.jobs.submit(specs)
        assert [j.id for j in jobs] == ["c", "a", "b"]
        # the driver saw them in dependency order
        assert list(driver.jobs) == ["a", "b", "c"]


# -- logs ----------------------------------------------------------------------------


async def test_log_follow_resumes_after_connection_lost_without_loss_or_repeat(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        real = driver.read_log
        failures = {"left": 3}

        driver_read = Pulse()

        async def flaky(job_id: str, token: str | None, query: Any) -> aiofarm.LogPage:
            driver_read.fire()
            if token is not None and failures["left"] > 0:
                failures["left"] -= 1
                raise aiofarm.ConnectionLost("injected")
            return await real(job_id, token, query)

        monkeypatch.setattr(driver, "read_log", flaky)
        got: list[str] = []
        async with anyio.create_task_group() as tg:

            async def follow() -> None:
                async with farm.logs.stream(job.id) as lines:
                    async for line in lines:
                        got.append(line.text)

            tg.start_soon(follow)
            with anyio.fail_after(20):
                for i in range(50):
                    driver.write_log(job.id, f"line {i}")
                    if i % 10 == 9:  # let the follower catch up, so reads interleave with writes
                        while len(got) <= i:
                            await driver_read.wait()
            driver.write_log(job.id, "last")
            driver.set_status(job.id, JobStatus.SUCCEEDED)
        assert got == [f"line {i}" for i in range(50)] + ["last"]
        assert failures["left"] == 0
        assert await farm.logs.read(job.id, tail=2) == "line 49\nlast\n"
        page = await farm.logs.page(job.id, limit=10)
        assert [ln.text for ln in page.lines] == [f"line {i}" for i in range(10)]
        page2 = await farm.logs.page(job.id, limit=10, next_token=page.next_token)
        assert page2.lines[0].text == "line 10"
