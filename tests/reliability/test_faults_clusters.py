"""The fault proxy in front of the real clusters: a Slurm 22.05 cluster and a Ray head
(what test_faults.py does for Deadline), and forced disconnects of Ray's WebSocket
log tail (what test_disconnects.py does for the other drivers). Hold
``flock /work/.slurm.lock`` / ``flock /work/.ray.lock`` when running these."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import aiofarm
from aiofarm import Client

from .conftest import FULL
from .faultproxy import FaultProxy
from .test_disconnects import DROPS, _follow_while_dropping, _writer_command
from .test_faults import KINDS, RATE, Backend, _count_named, _run_faults, _run_lost_submit

pytestmark = pytest.mark.anyio


class UrlBackend(Backend):
    """A back end reached at ``http://host:port`` inside an aiofarm URL."""

    def __init__(self, name: str, url: str, submit_path: str, token: str | None = None) -> None:
        self.name = name
        self._url = url
        self.submit_path = submit_path
        self.token = token
        m = re.search(r"//([^:/?]+):(\d+)", url)
        assert m is not None
        self.upstream = (m.group(1), int(m.group(2)))

    def url(self, proxy: FaultProxy) -> str:
        url = self._url.replace(f"{self.upstream[0]}:{self.upstream[1]}", proxy.address, 1)
        if self.token is not None:
            url += ("&" if "?" in url else "?") + f"token={self.token}"
        return url


#: jobs really run there: fewer of them by default (the waits stay 1,000)
SLURM_JOBS = (160, 40) if FULL else (40, 10)
RAY_JOBS = (16, 4) if FULL else (6, 2)
#: 0.02 s a line: 40 s of output (100+ cuts at 0.3 s) in the full run, 8 s by default
RAY_LINES = 2000 if FULL else 400


@pytest.fixture
async def slurm_backend() -> UrlBackend:
    from tests.backends import slurm

    if slurm.skip_reason():
        pytest.skip(slurm.skip_reason() or "")
    cluster = await slurm.start_cluster("22.05")
    return UrlBackend("slurm 22.05", cluster.url, r"/job/submit$")


@pytest.fixture
async def ray_backend() -> UrlBackend:
    from tests.backends import ray

    head = await anyio.to_thread.run_sync(ray.start_head)
    return UrlBackend("ray", head.url, r"^/api/jobs/?$", token=head.token)


@pytest.mark.slurm
async def test_slurm_waits_through_faults(slurm_backend: UrlBackend, figure: Callable[[str, object], None]) -> None:
    # the jobs are submitted with faults off: see the next test
    await _run_faults(slurm_backend, *SLURM_JOBS, figure, faulty_submit=False)


@pytest.mark.slurm
@pytest.mark.xfail(
    reason="found by the fault proxy, left to the Slurm driver: a batch is one POST per spec and the "
    "client retries the whole batch (6 attempts); with a quarter of requests faulted, 50 specs never "
    "get through in 6 attempts, though each attempt keeps what the earlier made (submit tags)",
    raises=aiofarm.TransientError,
    strict=True,
)
async def test_slurm_batch_submit_through_faults(slurm_backend: UrlBackend) -> None:
    async with FaultProxy(slurm_backend.upstream, rate=RATE, kinds=KINDS, seed=16) as proxy, Client(
        slurm_backend.url(proxy)
    ) as farm:
        await slurm_backend.jobs(farm, *SLURM_JOBS)


@pytest.mark.slurm
async def test_slurm_lost_submit_reply_makes_one_job(slurm_backend: UrlBackend) -> None:
    await _run_lost_submit(slurm_backend, _count_named)


@pytest.mark.ray
async def test_ray_waits_through_faults(ray_backend: UrlBackend, figure: Callable[[str, object], None]) -> None:
    await _run_faults(ray_backend, *RAY_JOBS, figure)


@pytest.mark.ray
async def test_ray_lost_submit_reply_makes_one_job(ray_backend: UrlBackend) -> None:
    await _run_lost_submit(ray_backend, _count_named)


@pytest.mark.ray
@pytest.mark.xfail(
    run=False,
    reason="found here, left to the Ray driver: a WebSocket log tail cut every 0.3 s never ends "
    "(Ray resends the whole log on each reconnect; 600 s were not enough for 400 lines)",
)
async def test_ray_follow_survives_forced_disconnects(tmp_path: Path, figure: Callable[[str, object], None]) -> None:
    from tests.backends import ray

    head = await anyio.to_thread.run_sync(ray.start_head)
    host, _, port = head.http.split("//", 1)[1].rstrip("/").partition(":")
    out = tmp_path / "out.txt"
    async with FaultProxy((host, int(port))) as proxy, Client(
        head.url.replace(f"{host}:{port}", proxy.address), token=head.token
    ) as farm:
        job = await farm.jobs.start(_writer_command(out, RAY_LINES, 0.02))
        # Ray's log is one stream (the driver's output, stdout and stderr merged). Ray
        # sends the whole log again on each reconnect: cut every 30 ms, a follow never
        # catches up (a livelock found here), so the cuts come every 0.3 s
        got, drops = await _follow_while_dropping(
            farm, job.id, proxy.drop_streams, interval=0.3, streams=("stdout", "stderr")
        )
    figure("ray: forced disconnects during one follow", f"{drops} ({proxy.counts['dropped_streams']} tails cut)")
    assert proxy.counts["dropped_streams"] >= (DROPS if FULL else 10)
    assert [t for t in got if t.startswith("line ")] == out.read_text().splitlines()
