"""Forced disconnects during a followed log: at least 100 per run, and the lines the
follower read are exactly the job's own output (compared with what the job wrote to
a file of its own): 0 lost, 0 repeated.

- local: the client reaches the farm service through a unix-socket proxy that
  resets every connection (in-flight long polls included) every 30 ms;
- dummy: every third ``read_log`` of the driver fails with ``ConnectionLost``;
- Deadline: CloudWatch Logs (moto) is reached through the proxy, which resets a third
  of the follow's requests (before or after they reach moto) besides the periodic
  drops; the job writes until the follow has seen 100 resets;
- Ray: in test_faults_clusters.py.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiofarm
from aiofarm import Client, JobSpec, JobStatus

from .conftest import FULL
from .faultproxy import FaultProxy

pytestmark = pytest.mark.anyio

LINES = 3000 if FULL else 600
DROPS = 100
#: on Deadline the job writes until the follow has seen this many resets
DEADLINE_RESETS = 300 if FULL else DROPS


def _writer_command(out: Path, lines: int, pause: float, stop: Path | None = None) -> list[str]:
    # each line goes to stdout and to the job's own file, paced so the follow is live;
    # with `stop`, it writes until that file exists (at most `lines` lines)
    until = f' && [ ! -e "{stop}" ]' if stop is not None else ""
    script = (
        f'i=0; while [ $i -lt {lines} ]{until}; do echo "line $i"; echo "line $i" >> "$1"; i=$((i+1));'
        f" sleep {pause}; done"
    )
    return ["sh", "-c", script, "sh", str(out)]


async def _follow_while_dropping(
    farm: Client, job_id: str, drop: Callable[[], object], interval: float = 0.03, streams: tuple[str, ...] = ("stdout",)
) -> tuple[list[str], int]:
    got: list[str] = []
    drops = 0

    async def dropper() -> None:
        nonlocal drops
        while True:
            await anyio.sleep(interval)
            drop()
            drops += 1

    with anyio.fail_after(600):
        async with anyio.create_task_group() as tg:
            tg.start_soon(dropper)
            async with farm.logs.stream(job_id, streams=streams) as lines:
                async for line in lines:
                    got.append(line.text)
            tg.cancel_scope.cancel()
    return got, drops


async def test_local_follow_survives_forced_disconnects(tmp_path: Path, figure: Callable[[str, object], None]) -> None:
    state = tmp_path / "state"
    out = tmp_path / "out.txt"
    async with Client(f"local://{state}") as direct:  # starts the service of `state`
        job = await direct.jobs.start(["sleep", "0"])
        await direct.jobs.wait(job.id, timeout=60)
        front = tmp_path / "front"
        front.mkdir(mode=0o700)
        async with FaultProxy(str(state / "farm.sock"), listen_path=str(front / "farm.sock")) as proxy, Client(
            f"local://{front}"
        ) as farm:
            writer = await farm.jobs.start(_writer_command(out, LINES, 0.01))
            got, drops = await _follow_while_dropping(farm, writer.id, proxy.drop_all)
            assert (await farm.jobs.wait(writer.id, timeout=60)).status is JobStatus.SUCCEEDED
    figure("local: forced disconnects during one follow", f"{drops} ({proxy.counts['dropped']} connections reset)")
    assert drops >= DROPS
    assert got == out.read_text().splitlines()


async def test_dummy_follow_survives_lost_reads(figure: Callable[[str, object], None]) -> None:
    async with Client("dummy://") as farm:
        driver: Any = farm.driver
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        driver.set_status(job.id, JobStatus.RUNNING)
        real = driver.read_log
        calls = {"n": 0, "lost": 0}
        written: list[str] = []

        async def flaky(*args: Any, **kwargs: Any) -> Any:
            # the job writes a few lines between two reads; every other read is lost
            calls["n"] += 1
            for _ in range(3):
                if len(written) < LINES:
                    written.append(f"line {len(written)}")
                    driver.write_log(job.id, written[-1])
            if len(written) == LINES and driver.jobs[job.id].status is JobStatus.RUNNING:
                driver.set_status(job.id, JobStatus.SUCCEEDED)
            if calls["n"] % 2 == 0 and calls["lost"] < 2 * DROPS:
                calls["lost"] += 1
                raise aiofarm.ConnectionLost("forced disconnect")
            return await real(*args, **kwargs)

        driver.read_log = flaky
        got: list[str] = []
        with anyio.fail_after(300):
            async with farm.logs.stream(job.id) as lines:
                async for line in lines:
                    got.append(line.text)
    figure("dummy: lost reads during one follow", str(calls["lost"]))
    assert calls["lost"] >= DROPS
    assert got == written


@pytest.mark.deadline
async def test_deadline_follow_survives_forced_disconnects(tmp_path: Path, figure: Callable[[str, object], None]) -> None:
    from tests.backends import deadline
    from tests.fakes.deadline.process import aws_env, patched_environ

    process = deadline._start()
    process.reset()
    logs = process.logs_endpoint
    assert logs is not None
    host, _, port = logs.split("//", 1)[1].rstrip("/").partition(":")
    out, stop = tmp_path / "out.txt", tmp_path / "stop"
    try:
        process.admin("config", {"execute": True})
        process.auto(0.05)
        with patched_environ(aws_env(str(tmp_path))):
            # Besides the drops, a third of the follow's requests are reset before or
            # after CloudWatch answered. botocore makes one attempt per request, and with
            # max_attempts=1 so does the client layer: every reset reaches the follower,
            # which resumes from its cursor. (With botocore's own retries, each reset cost
            # a jittered 0-1 s, 0-2 s, ... wait inside the call: 100 took minutes.)
            async with FaultProxy((host, int(port)), rate=0.3, kinds=("reset_before", "reset_after")) as proxy, Client(
                process.url(logs_endpoint_url=f"http://{proxy.address}", max_attempts="1")
            ) as farm:

                def resets() -> int:
                    return proxy.counts["dropped"] + proxy.counts["reset_before"] + proxy.counts["reset_after"]

                def drop_then_stop_when_enough() -> None:
                    proxy.drop_all()
                    if resets() >= DEADLINE_RESETS:
                        stop.touch()  # the job ends, and with it the follow

                job = await farm.jobs.start(_writer_command(out, 100_000, 0.01, stop))
                # Deadline's session log is one stream (stdout and stderr merged)
                got, _drops = await _follow_while_dropping(
                    farm, job.id, drop_then_stop_when_enough, streams=("stdout", "stderr")
                )
                assert (await farm.jobs.get(job.id)).status is JobStatus.SUCCEEDED
    finally:
        process.reset()
    written = out.read_text().splitlines()
    figure(
        "deadline: connections reset during one follow",
        f"{resets()} of {proxy.counts['requests']} requests, {len(written)} lines",
    )
    assert resets() >= DEADLINE_RESETS
    # Deadline's session log frames the command's output with worker lines
    mine = [text for text in got if text.startswith("line ")]
    assert mine == written
