"""The fault proxy in front of the real clusters: each Slurm cluster (22.05, 24.11 and
26.05, as ``AIOFARM_SLURM_CLUSTERS`` selects) and a Ray head (what test_faults.py does
for Deadline), and forced disconnects during a Ray log follow (what
test_disconnects.py does for the other drivers). Hold
``flock /work/.slurm.lock`` / ``flock /work/.ray.lock`` when running these."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiofarm import Client, JobStatus

from .conftest import FULL
from .faultproxy import FaultProxy
from .test_disconnects import DROPS, _follow_while_dropping, _writer_command
from .test_faults import Backend, _count_named, _run_batch_submit, _run_faults, _run_lost_submit

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
#: 0.01 s a line (plus the shell's own time): a few seconds of output by default
RAY_LINES = 3000 if FULL else 600


def _slurm_clusters() -> list[Any]:
    from tests.backends import slurm

    return [pytest.param(n, id=n, marks=[getattr(pytest.mark, m) for m in slurm.variant_marks(n)]) for n in slurm.VARIANTS]


@pytest.fixture(params=_slurm_clusters())
async def slurm_backend(request: pytest.FixtureRequest) -> UrlBackend:
    """Each selected cluster (``AIOFARM_SLURM_CLUSTERS``; all three by default)."""
    from tests.backends import slurm

    if slurm.skip_reason():
        pytest.skip(slurm.skip_reason() or "")
    name = str(request.param)
    cluster = await slurm.start_cluster(name)
    return UrlBackend(f"slurm {name}", cluster.url, r"/job/submit$")


@pytest.fixture
async def ray_backend() -> UrlBackend:
    from tests.backends import ray

    head = await anyio.to_thread.run_sync(ray.start_head)
    return UrlBackend("ray", head.url, r"^/api/jobs/?$", token=head.token)


@pytest.mark.slurm
async def test_slurm_waits_through_faults(slurm_backend: UrlBackend, figure: Callable[[str, object], None]) -> None:
    # the batch submit goes through the faults too (see the next test)
    await _run_faults(slurm_backend, *SLURM_JOBS, figure)


@pytest.mark.slurm
async def test_slurm_batch_submit_through_faults(
    slurm_backend: UrlBackend, figure: Callable[[str, object], None]
) -> None:
    # one POST per spec; the next attempt's tag lookup keeps what the last one made
    await _run_batch_submit(slurm_backend, sum(SLURM_JOBS), figure)


@pytest.mark.slurm
async def test_slurm_lost_submit_reply_makes_one_job(slurm_backend: UrlBackend) -> None:
    await _run_lost_submit(slurm_backend, _count_named)


@pytest.mark.ray
async def test_ray_waits_through_faults(ray_backend: UrlBackend, figure: Callable[[str, object], None]) -> None:
    await _run_faults(ray_backend, *RAY_JOBS, figure)


@pytest.mark.ray
async def test_ray_batch_submit_through_faults(ray_backend: UrlBackend, figure: Callable[[str, object], None]) -> None:
    # one POST per spec; Ray's "already exists" answers a repeated submission id
    await _run_batch_submit(ray_backend, 50, figure)


@pytest.mark.ray
async def test_ray_lost_submit_reply_makes_one_job(ray_backend: UrlBackend) -> None:
    await _run_lost_submit(ray_backend, _count_named)


@pytest.mark.ray
async def test_ray_follow_survives_forced_disconnects(tmp_path: Path, figure: Callable[[str, object], None]) -> None:
    """The follow reads the job's log file with range requests from the node's agent
    (drivers/ray/logs.py); the proxy in front of the agent resets every connection
    every 30 ms and half of the reads (before or after the agent answered). Each
    resumes at its byte offset: the bytes read stay about the log's size."""
    from tests.backends import ray

    head = await anyio.to_thread.run_sync(ray.start_head)
    out = tmp_path / "out.txt"
    async with head.client() as direct:
        job = await direct.jobs.start(_writer_command(out, RAY_LINES, 0.01))
        running = await direct.jobs.wait(job.id, until=JobStatus.RUNNING, timeout=120)
        agent = running.job.raw["driver_agent_http_address"]
        host, _, port = agent.split("//", 1)[1].rstrip("/").partition(":")
        async with FaultProxy((host, int(port)), rate=0.5, kinds=("reset_before", "reset_after")) as proxy, Client(
            head.url, token=head.token, agent_url=f"http://{proxy.address}"
        ) as farm:
            started = time.monotonic()
            # Ray's log is one file (the command's stdout and stderr merged, and Ray's own lines)
            got, _ = await _follow_while_dropping(farm, job.id, proxy.drop_all, streams=("stdout", "stderr"))
            took = time.monotonic() - started
        log_size = await _log_size(agent, job.id, head.token)
    resets = proxy.counts["dropped"] + proxy.counts["reset_before"] + proxy.counts["reset_after"]
    figure(
        "ray: connections reset during one follow",
        f"{resets} of {proxy.counts['requests']} reads in {took:.1f} s; "
        f"{proxy.counts['body_bytes'] / log_size:.2f}x the log's {log_size} bytes read",
    )
    assert resets >= DROPS
    assert [t for t in got if t.startswith("line ")] == out.read_text().splitlines()
    # resumed at the offset, never the whole log again (which would be about half the
    # reads times the log): only answers the proxy threw away (reset_after) are read again
    assert proxy.counts["body_bytes"] < 4 * log_size


async def _log_size(agent: str, job_id: str, token: str) -> int:
    """The bytes of the job's log file, as its node's agent serves it."""
    import aiohttp

    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session, session.get(
        f"{agent.rstrip('/')}/logs/job-driver-{job_id}.log"
    ) as resp:
        assert resp.status == 200
        return len(await resp.read())
