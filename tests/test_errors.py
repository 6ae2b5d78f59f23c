"""Errors name what they are about as the user wrote it: a ``JobNotFound`` or
``PoolNotFound`` out of a Client says the Client's own URL (redacted), whichever
layer raised it (the client layer, the Hub, a driver, the farm service across its
socket), not just ``on local://``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from aiofarm import Client, FarmError, JobNotFound, PoolNotFound

pytestmark = pytest.mark.anyio

Call = Callable[[Client], Awaitable[object]]

JOB_CALLS: dict[str, Call] = {
    "get": lambda farm: farm.jobs.get("nope"),
    "get(history)": lambda farm: farm.jobs.get("nope", history=True),
    "get_many": lambda farm: farm.jobs.get_many(["nope"]),
    "wait": lambda farm: farm.jobs.wait("nope", timeout=30),
    "cancel": lambda farm: farm.jobs.cancel("nope"),
    "logs.read": lambda farm: farm.logs.read("nope"),
    "update": lambda farm: farm.jobs.update("nope", priority=1),
}


async def _raised(call: Call, farm: Client) -> FarmError:
    with pytest.raises(FarmError) as info:
        await call(farm)
    return info.value


@pytest.mark.parametrize("call", JOB_CALLS.values(), ids=JOB_CALLS.keys())
async def test_a_job_not_found_names_the_clients_url_redacted(call: Call) -> None:
    async with Client("dummy://?push=0&token=s3cret") as farm:
        exc = await _raised(call, farm)
    assert isinstance(exc, JobNotFound), exc
    assert str(exc) == "job 'nope' not found on dummy://?push=0&token=***"
    assert exc.farm == "dummy://?push=0&token=***" and exc.driver == "dummy" and exc.job_id == "nope"
    assert "s3cret" not in repr(exc)


async def test_a_pool_not_found_names_the_clients_url(tmp_path: Path) -> None:
    url = f"local://{tmp_path}?embedded=true"
    async with Client(url) as farm:
        exc = await _raised(lambda f: f.pools.get("nope"), farm)
        driver_raised = await _raised(lambda f: f.pools.delete("nope"), farm)
    assert isinstance(exc, PoolNotFound) and str(exc) == f"pool 'nope' not found on {url}"
    assert isinstance(driver_raised, PoolNotFound) and str(driver_raised) == f"pool 'nope' not found on {url}"


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "service"])
async def test_the_local_farm_names_its_state_dir(tmp_path: Path, embedded: bool) -> None:
    # the service's JobNotFound crosses its socket knowing only "local"
    url = f"local://{tmp_path / 'state'}" + ("?embedded=true" if embedded else "")
    async with Client(url) as farm:
        for call in (JOB_CALLS["get"], JOB_CALLS["cancel"], lambda f: f.jobs.send_signal("nope", 15)):
            exc = await _raised(call, farm)
            assert isinstance(exc, JobNotFound) and str(exc) == f"job 'nope' not found on {url}", exc


def test_without_a_client_the_driver_is_named_and_a_farm_once() -> None:
    exc = JobNotFound("nope", driver="local")
    assert str(exc) == "job 'nope' not found on local://"
    exc.name_farm("local:///tmp/x")
    exc.name_farm("local:///elsewhere")  # the first farm named stays
    assert str(exc) == "job 'nope' not found on local:///tmp/x" and exc.args == (str(exc),)
    assert str(JobNotFound("nope")) == "job 'nope' not found"
    assert str(JobNotFound("x", driver="ray", farm="ray+http://u:***@h:8265")) == (
        "job 'x' not found on ray+http://u:***@h:8265"
    )
