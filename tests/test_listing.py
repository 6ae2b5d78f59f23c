"""jobs.list(sort=...) and jobs.count(where=...): the driver filters, sorts and counts
what its back end can (the dummy driver plays a back end with a query language), the
client does the rest, and the answers are the same either way."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiofarm import Client, InvalidSpec, JobSpec, JobStatus, where
from tests.dummy import dummy

pytestmark = pytest.mark.anyio


@pytest.fixture
async def farm() -> AsyncIterator[Client]:
    async with Client("dummy://") as client:
        jobs = await client.jobs.submit(
            [
                JobSpec(command=["true"], name=f"job-{i:03d}", priority=i % 7, tags=["even" if i % 2 == 0 else "odd"])
                for i in range(200)
            ]
        )
        driver = dummy(client)
        for job in jobs[:10]:
            driver.set_status(job.id, JobStatus.FAILED, exit_code=int(job.id.split("-")[1]) % 3)
        driver.calls.clear()
        yield client


async def names(farm: Client, **kw: object) -> list[str | None]:
    async with farm.jobs.list(**kw) as it:  # type: ignore[arg-type]
        return [job.name async for job in it]


@pytest.fixture(params=["native", "client"])
def mode(request: pytest.FixtureRequest, farm: Client) -> str:
    dummy(farm).native_listing = request.param == "native"
    return str(request.param)


async def test_sort_keys_directions_and_limit(farm: Client, mode: str) -> None:
    got = await names(farm, sort=["-priority", "name"], limit=5)
    assert got == ["job-006", "job-013", "job-020", "job-027", "job-034"]
    got = await names(farm, sort="priority", limit=3)
    assert got == ["job-000", "job-007", "job-014"]
    # reverse flips every key
    assert await names(farm, sort="priority", reverse=True, limit=1) == ["job-006"]


async def test_unset_values_sort_last_in_both_directions(farm: Client, mode: str) -> None:
    for sort in ("exit_code", "-exit_code"):
        async with farm.jobs.list(sort=[sort, "name"]) as it:
            codes = [job.exit_code async for job in it]
        assert codes[10:] == [None] * 190
        assert codes[:10] == sorted(codes[:10], reverse=sort.startswith("-"))  # type: ignore[type-var]


async def test_native_filter_sends_only_matches_and_the_client_checks_the_rest(farm: Client, mode: str) -> None:
    expr = (where.priority == 3) & where.name.matches(r"[02468]$") & (where.status == JobStatus.PENDING)
    got = await names(farm, where=expr, sort="name")
    expected = [f"job-{i:03d}" for i in range(10, 200) if i % 7 == 3 and i % 2 == 0]
    assert got == expected
    listed = dummy(farm).calls["listed"]
    if mode == "native":
        # priority and status went to the back end, the regular expression did not
        assert listed == len([i for i in range(10, 200) if i % 7 == 3])
    else:
        assert listed == 200


async def test_structured_arguments_combine_with_where(farm: Client, mode: str) -> None:
    got = await names(farm, statuses=["failed"], tags=["odd"], where=where.exit_code != 0)
    assert got == [f"job-{i:03d}" for i in range(10) if i % 2 == 1 and (i + 1) % 3 != 0]


async def test_count_is_one_native_request_when_nothing_remains(farm: Client) -> None:
    assert await farm.jobs.count() == 200
    assert await farm.jobs.count(where=where.priority >= 5) == len([i for i in range(200) if i % 7 >= 5])
    assert await farm.jobs.count(statuses=[JobStatus.FAILED]) == 10
    calls = dummy(farm).calls
    assert calls["count_jobs"] == 3 and calls["list_page"] == 0
    # a regular expression is left to the client: counted by listing
    assert await farm.jobs.count(where=where.name.matches(r"^job-00")) == 10
    assert calls["count_jobs"] == 3 and calls["list_page"] >= 1


async def test_count_without_native_counting_lists(farm: Client) -> None:
    dummy(farm).native_listing = False
    assert await farm.jobs.count(where="priority >= 5 and tags contains even") == len(
        [i for i in range(200) if i % 7 >= 5 and i % 2 == 0]
    )
    assert dummy(farm).calls["count_jobs"] == 0


@pytest.mark.parametrize(
    ("sort", "field"),
    [
        ("nope", "sort"),
        ("tags", "sort"),
        ("-", "sort"),
        (["priority", "-priority"], "sort[1]"),
        ([3], "sort[0]"),
        (b"name", "sort"),
    ],
)
async def test_bad_sort_is_invalid_spec_naming_the_field(farm: Client, sort: object, field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        async with farm.jobs.list(sort=sort):  # type: ignore[arg-type]
            pass
    assert info.value.field == field
