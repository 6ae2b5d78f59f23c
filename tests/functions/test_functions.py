"""farm.functions through a real local farm: every call is a child Python process."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from aiofarm import Client
from aiofarm.errors import FarmError, InvalidSpec, RemoteError
from aiofarm.models import JobStatus

from . import farm_funcs

pytestmark = pytest.mark.anyio


async def test_call_result_and_closure(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path)) as farm:
        fn = farm.functions.create(farm_funcs.add, name="add")
        job = await fn(1, 2, x=3)
        assert await farm.functions.result(job) == 6
        offset = 100
        closure = farm.functions.create(lambda v: v + offset)  # cloudpickle carries the closure
        assert await farm.functions.result(await closure(1)) == 101
        # results are files under the farm's state dir
        assert list((tmp_path / "functions").glob("*/calls/*/result.pkl"))


async def test_remote_exception_is_reraised(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path)) as farm:
        fn = farm.functions.create(farm_funcs.maybe_fail)
        job = await fn(57)
        with pytest.raises(RemoteError) as err:
            await farm.functions.result(job)
        assert err.value.type_name == "ValueError"
        assert err.value.message == "item 57 fails on purpose"
        assert 'raise ValueError(f"item {i} fails on purpose")' in err.value.remote_traceback
        assert err.value.job_id == job.id
        assert (await farm.jobs.get(job.id)).status is JobStatus.FAILED


async def test_map_200_items_with_per_item_failures(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path)) as farm:
        fn = farm.functions.create(farm_funcs.maybe_fail, max_concurrency=4)
        args: list[list[object]] = [[i] for i in range(200)]
        args[3] = [farm_funcs.Unpicklable()]  # cannot be submitted: an error for item 3
        batch = await fn.map(args, batch_size=64)
        assert not batch.is_success
        assert [e.index for e in batch.errors] == [3]
        assert isinstance(batch.errors[0].error, InvalidSpec)
        assert "cannot travel" in str(batch.errors[0].error)
        assert len(batch.jobs) == 199 and 3 not in batch.indices

        outcomes = await fn.results(batch.jobs, return_exceptions=True)
        failed = {batch.indices[k]: o for k, o in enumerate(outcomes) if isinstance(o, RemoteError)}
        assert sorted(failed) == sorted(farm_funcs.FAILING)
        for i, exc in failed.items():
            assert exc.message == f"item {i} fails on purpose"
        ok = [o for o in outcomes if not isinstance(o, RemoteError)]
        assert ok == [i * i for i in range(200) if i != 3 and i not in farm_funcs.FAILING]
        assert await fn.results() == ok  # default: every job of the function, successes only


async def test_max_concurrency_is_respected(tmp_path: Path) -> None:
    spans_dir = tmp_path / "spans"
    spans_dir.mkdir()
    async with Client("local://" + str(tmp_path / "farm"), slots=8) as farm:
        fn = farm.functions.create(farm_funcs.record_span, max_concurrency=3)
        batch = await fn.map([[i, str(spans_dir), 0.4] for i in range(12)])
        assert batch.is_success
        done = [j async for j in fn.as_completed(batch.jobs, timeout=90)]
        assert {j.status for j in done} == {JobStatus.SUCCEEDED}
    events: list[tuple[float, int]] = []
    for path in spans_dir.iterdir():
        start, end, _ = path.read_text().split()
        events += [(float(start), 1), (float(end), -1)]
    assert len(events) == 24
    running = peak = 0
    for _, delta in sorted(events):
        running += delta
        peak = max(peak, running)
    assert peak <= 3
    assert peak >= 2  # the limit is a cap, not serialisation


def test_create_validates(tmp_path: Path) -> None:
    farm = Client("local://" + str(tmp_path))
    with pytest.raises(InvalidSpec) as err:
        farm.functions.create(farm_funcs.add, max_concurrency=0)
    assert err.value.field == "max_concurrency"
    with pytest.raises(InvalidSpec) as err2:
        farm.functions.create("not callable")  # type: ignore[arg-type]
    assert err2.value.field == "func"
    with pytest.raises(InvalidSpec) as err3:
        farm.functions.create(farm_funcs.add, max_concurrency=2, pool="default")
    assert err3.value.field == "pool"
    assert os.environ.get("AIOFARM_FUNCTIONS_DIR") is None
    # the driver says where its state dir is (tests/functions/test_functions_dir.py):
    # before the client is open there is no driver to ask
    with pytest.raises(FarmError, match="not open"):
        farm.functions.root  # noqa: B018


async def test_timeout_and_retries(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        slow = farm.functions.create(farm_funcs.sleep_for, timeout=0.5)
        with pytest.raises(RemoteError) as err:
            await farm.functions.result(await slow(30), timeout=60)
        assert err.value.type_name == "aiofarm.NoResult"
        flaky = farm.functions.create(farm_funcs.flaky, retries=1)
        job = await flaky(str(tmp_path / "marker"))
        assert await farm.functions.result(job, timeout=60) == "second attempt"
        tasks = await farm.jobs.tasks(job.id)
        assert tasks[0].attempts == 2


async def test_environments_and_iter_results(tmp_path: Path) -> None:
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        fn = farm.functions.create(farm_funcs.getenv, env={"COLOR": "red", "SIZE": "s"})
        batch = await fn.map([["COLOR"], ["COLOR"], ["SIZE"]], environments=[{}, {"COLOR": "blue"}, {}])
        values = sorted([v async for v in fn.iter_results(batch.jobs)])
        assert values == ["blue", "red", "s"]
        with pytest.raises(InvalidSpec) as err:
            await fn.map([["A"]], environments=[{"X": 1}])  # type: ignore[dict-item]
        assert err.value.field == "environments[0]"
