"""Ray job logs: read, page and follow (ranged reads from the node's agent, or the
dashboard's whole file when the agent cannot be reached). The >=100 forced disconnects
per follow are in tests/reliability/test_faults_clusters.py."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import anyio
import pytest
import yarl

from aiofarm import Client, JobSpec, JobStatus
from tests.backends.ray import Head
from tests.reliability.faultproxy import FaultProxy

pytestmark = [pytest.mark.anyio, pytest.mark.ray]

LAST = "last line without a newline"


def _closed_port() -> int:
    """A loopback port nothing listens on (a connection to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_follow_reads_through_the_dashboard_when_the_agent_is_unreachable(
    ray_head: Head, tmp_path: Path
) -> None:
    """A cluster whose node agents this host cannot reach: the log is read whole from
    the dashboard (/api/v0/logs/file) and cut at the offset. Through a proxy that resets
    every connection every 50 ms and a third of the requests, nothing is lost or repeated."""
    out = tmp_path / "out.txt"
    script = f'i=0; while [ $i -lt 150 ]; do echo "line $i"; echo "line $i" >> {out}; i=$((i+1)); sleep 0.02; done'
    head = yarl.URL(ray_head.http)
    assert head.host is not None and head.port is not None
    async with FaultProxy((head.host, head.port), kinds=("reset_before", "reset_after")) as proxy, Client(
        f"ray+http://{proxy.address}", token=ray_head.token, agent_url=f"http://127.0.0.1:{_closed_port()}"
    ) as farm:
        proxy.rate = 0.3  # once open: a Client's open is not retried
        job = await farm.jobs.start(["sh", "-c", script])
        got: list[str] = []

        async def drop_every_50ms() -> None:
            while True:
                await anyio.sleep(0.05)
                proxy.drop_all()

        with anyio.fail_after(180):
            async with anyio.create_task_group() as tg:
                tg.start_soon(drop_every_50ms)
                async with farm.logs.stream(job.id, follow=True) as lines:
                    got += [line.text async for line in lines]
                tg.cancel_scope.cancel()
        assert (await farm.jobs.get(job.id)).status is JobStatus.SUCCEEDED
    assert got == out.read_text().splitlines()
    assert proxy.paths["/api/v0/logs/file"] >= 2 and proxy.counts["dropped"] + proxy.counts["reset_after"] >= 10


async def test_agent_and_dashboard_give_the_same_bytes(ray_head: Head) -> None:
    """One byte offset fits both sources: CRs, bytes that are not UTF-8 and a last line
    without its newline come out the same from the agent's ranged reads and from the
    dashboard's whole file."""
    async with ray_head.client() as farm, ray_head.client(agent_url=f"http://127.0.0.1:{_closed_port()}") as viadash:
        # (after Ray's "Running entrypoint" line, which its supervisor writes a moment
        # after the command started: it would be glued to a last line without newline)
        script = r"sleep 2; printf 'a\r\nb\rc\n\377\376\nhé\n%s' '" + LAST + "'"
        job = await farm.jobs.start(["sh", "-c", script])
        await farm.jobs.wait(job.id, timeout=120, max_interval=0.5)
        expected = ["a", "b\rc", "\ufffd\ufffd", "hé", LAST]
        for client in (farm, viadash):
            async with client.logs.stream(job.id, follow=False) as lines:
                assert [line.text async for line in lines] == expected
        # a page token of one source resumes on the other
        first = await farm.logs.page(job.id, limit=2)
        rest = await viadash.logs.page(job.id, next_token=first.next_token)
        assert [ln.text for ln in first.lines + rest.lines] == expected


async def test_read_page_and_stream(farm: Client) -> None:
    job = await farm.jobs.start(["sh", "-c", "for i in $(seq 1 25); do echo row $i; done; echo err >&2"])
    await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    expected = [f"row {i}" for i in range(1, 26)] + ["err"]
    assert (await farm.logs.read(job.id)).splitlines() == expected
    assert (await farm.logs.read(job.id, tail=2)).splitlines() == ["row 25", "err"]
    paged: list[str] = []
    token = None
    for _ in range(10):
        page = await farm.logs.page(job.id, limit=10, next_token=token)
        paged += [ln.text for ln in page.lines]
        if not page.lines:
            break
        assert len(page.lines) <= 10
        token = page.next_token
    assert paged == expected
    async with farm.logs.stream(job.id, follow=False) as lines:
        assert [(ln.stream, ln.text) async for ln in lines] == [("stdout", t) for t in expected]
    # a finished job's follow ends by itself
    with anyio.fail_after(30):
        async with farm.logs.stream(job.id, follow=True) as lines:
            assert [ln.text async for ln in lines] == expected


async def test_follow_of_a_held_dependant(farm: Client) -> None:
    tag = uuid.uuid4().hex[:10]
    _, second = await farm.jobs.submit(
        [
            JobSpec(command=["sh", "-c", "sleep 1; echo first"], id=f"first-{tag}"),
            JobSpec(command=["sh", "-c", "echo second; echo done"], id=f"second-{tag}", depends_on=[f"first-{tag}"]),
        ]
    )
    # held by the client: its follow waits for it to be submitted and run
    with anyio.fail_after(120):
        async with farm.logs.stream(second.id, follow=True) as lines:
            assert [ln.text async for ln in lines] == ["second", "done"]


async def test_a_line_longer_than_a_read_and_a_log_file_that_is_gone(ray_head: Head) -> None:
    """A line longer than one ranged read (1 MiB) comes whole; a log file deleted
    under Ray reads as empty from the agent (404) and from the dashboard (its 500
    "A file is not found"), never as an error that would be retried for ever."""
    async with ray_head.client() as farm, ray_head.client(agent_url=f"http://127.0.0.1:{_closed_port()}") as viadash:
        # (after Ray's "Running entrypoint" line: see test_agent_and_dashboard_give_the_same_bytes)
        script = "sleep 2; head -c 1500000 /dev/zero | tr '\\0' x; echo; echo after"
        job = await farm.jobs.start(["sh", "-c", script])
        await farm.jobs.wait(job.id, timeout=120, max_interval=0.5)
        async with farm.logs.stream(job.id, follow=False) as lines:
            got = [line.text async for line in lines]
        assert [(len(t), t.strip("x")) for t in got] == [(1_500_000, ""), (5, "after")]
        (path,) = [p async for p in anyio.Path(ray_head.state).glob(f"**/logs/job-driver-{job.id}.log")]
        await path.unlink()
        for client in (farm, viadash):
            assert (await client.logs.read(job.id)) == ""
            with anyio.fail_after(30):
                async with client.logs.stream(job.id, follow=True) as lines:
                    assert [line.text async for line in lines] == []
