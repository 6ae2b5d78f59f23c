"""The Ray suite runs against ONE real single-node Ray head per test run
(tests/backends/ray.py starts it with scripts/ray/start-ray.sh and stops it by pid)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from aiofarm import Client
from tests.backends.ray import Head, start_head, stop_head


@pytest.fixture(scope="session")
def ray_head() -> Iterator[Head]:
    yield start_head()
    stop_head()


@pytest.fixture
async def farm(ray_head: Head) -> AsyncIterator[Client]:
    async with ray_head.client() as client:
        yield client


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.ray)
