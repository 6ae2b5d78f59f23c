"""The Slurm suite runs against a real single-node cluster started (or found
running) by scripts/slurm/start-slurm.sh; it skips, saying why, off root."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from aiofarm import Client
from tests.backends.slurm import Cluster, start_cluster_sync


@pytest.fixture(scope="session")
def slurm_cluster() -> Iterator[Cluster]:
    yield start_cluster_sync()


@pytest.fixture
async def farm(slurm_cluster: Cluster) -> AsyncIterator[Client]:
    async with Client(slurm_cluster.url) as client:
        yield client
