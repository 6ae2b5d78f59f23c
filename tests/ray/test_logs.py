"""Ray job logs: follow over the WebSocket tail through forced disconnects, read, page."""

from __future__ import annotations

import uuid
from pathlib import Path

import anyio
import pytest
import yarl

from aiofarm import Client, JobSpec, JobStatus
from tests.backends.ray import Head
from tests.ray.proxy import running_proxy

pytestmark = [pytest.mark.anyio, pytest.mark.ray]

LAST = "last line without a newline"


def _script(stop_file: Path) -> str:
    """Numbered lines every 50 ms until ``stop_file`` exists (the job runs as long as
    the test needs it), then a last line without its newline."""
    return (
        f"i=1; while [ ! -e {stop_file} ]; do echo \"line $i\"; i=$((i+1)); sleep 0.05; done; "
        f"printf '{LAST}'"
    )


async def test_follow_survives_20_dropped_websockets(ray_head: Head, tmp_path: Path) -> None:
    head = yarl.URL(ray_head.http)
    assert head.host is not None and head.port is not None
    async with running_proxy(head.host, head.port) as proxy, ray_head.client() as direct:
        async with Client(f"ray+http://127.0.0.1:{proxy.port}", token=ray_head.token) as farm:
            stop_file = tmp_path / "enough"
            job = await farm.jobs.start(["sh", "-c", _script(stop_file)])
            got: list[str] = []
            progress = anyio.Event()

            async def cut_20_times() -> None:
                nonlocal progress
                while proxy.cut < 20:
                    await proxy.ws_open.wait()
                    # cut once new lines came through this connection (or it idles)
                    with anyio.move_on_after(1.5):
                        await progress.wait()
                    progress = anyio.Event()
                    proxy.drop_websockets()
                stop_file.touch()  # 20 cuts done: let the job end

            with anyio.fail_after(120):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(cut_20_times)
                    async with farm.logs.stream(job.id, follow=True) as lines:
                        async for line in lines:
                            got.append(line.text)
                            progress.set()
                    assert proxy.cut >= 20, f"the job ended after {proxy.cut} disconnects"
                    tg.cancel_scope.cancel()
            status = (await farm.jobs.get(job.id)).status
        # checked against the job's whole log, read on a connection nobody cut
        full = (await direct.logs.read(job.id)).splitlines()
    assert status is JobStatus.SUCCEEDED
    assert full == [f"line {i}" for i in range(1, len(full))] + [LAST]
    assert len(full) > 100
    lost = [t for t in full if t not in got]
    repeated = len(got) - len(set(got))
    assert (lost, repeated) == ([], 0)
    assert got == full
    assert proxy.websockets >= 21  # every cut was followed by a resumed tail


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
