"""Listing past SearchJobs' 10,000-result window (the createdAt-threshold restart)."""

from __future__ import annotations

import pytest

import aiofarm
from aiofarm import JobStatus
from tests.fakes.deadline.process import FakeDeadlineProcess

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

TEMPLATE = '{"specificationVersion":"jobtemplate-2023-09","name":"many","steps":[{"name":"s","script":{"actions":{"onRun":{"command":"true"}}}}]}'


async def test_list_more_than_the_search_window(fake: FakeDeadlineProcess, url: str) -> None:
    ids: list[str] = []
    for _ in range(5):
        ids += fake.admin("seed", {"count": 2010, "template": TEMPLATE, "templateType": "JSON"})[
            "jobIds"
        ]
    assert len(ids) == 10_050
    async with aiofarm.Client(url) as farm:
        async with farm.jobs.list() as it:
            listed = [j.id async for j in it]
        assert listed == ids  # oldest first, each once, past the 10,000th
        async with farm.jobs.list(reverse=True, statuses=[JobStatus.PENDING], limit=10_020) as it:
            newest = [j.id async for j in it]
        assert newest == ids[::-1][:10_020]
    stats = fake.stats()
    assert stats["SearchJobs"] >= 2 * 101
    assert stats.get("ListJobs", 0) == 0
