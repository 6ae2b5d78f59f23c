"""The Slurm suite runs against every real cluster of tests/backends/slurm.py
(22.05 on the host, 24.11 and 26.05 in chroots), each started once per run; it
skips, saying why, off root."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from aiofarm import Client
from tests.backends.slurm import VARIANTS, Cluster, start_cluster_sync, variant_marks


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "slurm_cluster_name" in metafunc.fixturenames:
        metafunc.parametrize(
            "slurm_cluster_name",
            [pytest.param(n, id=n, marks=[getattr(pytest.mark, m) for m in variant_marks(n)]) for n in VARIANTS],
            scope="session",
        )


@pytest.fixture(scope="session")
def slurm_cluster(slurm_cluster_name: str) -> Cluster:
    return start_cluster_sync(slurm_cluster_name)


@pytest.fixture
async def farm(slurm_cluster: Cluster) -> AsyncIterator[Client]:
    async with Client(slurm_cluster.url) as client:
        yield client
