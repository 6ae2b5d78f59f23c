"""Followed logs through the farm service's WebSocket: flow control (a follower that
stops reading holds back neither the job nor the service's memory) and a resume after
the service died (no line lost, none repeated)."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import anyio
import psutil
import pytest

from aiofarm import Client, JobStatus
from aiofarm.errors import JobNotFound

from .helpers import eventually, wait_gate

pytestmark = pytest.mark.anyio

LINES = 400_000  # 100-byte lines: 40 MB
WRITER = (
    "import sys\n"
    "w = sys.stdout.buffer.write\n"
    "for i in range(0, int(sys.argv[1]), 1000):\n"
    "    w(b''.join(b'%09d' % n + b'x' * 90 + b'\\n' for n in range(i, i + 1000)))\n"
)


def service_pid(state: Path) -> int:
    return int((state / "farm.pid").read_text())


async def test_a_follower_that_stops_reading_holds_back_neither_job_nor_service(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}") as farm:
        service = psutil.Process(service_pid(state))
        job = await farm.jobs.start(command=[sys.executable, "-c", WRITER, str(LINES)])
        before = service.memory_info().rss
        async with farm.logs.stream(job.id, follow=True) as lines:
            first = await lines.__anext__()
            # the follower reads nothing more: the job ends anyway, and the service holds
            # no more than a chunk of what the follower has yet to read (40 MB)
            assert (await farm.jobs.wait(job.id, timeout=120)).status is JobStatus.SUCCEEDED
            grown = service.memory_info().rss - before
            assert grown < 16 << 20, f"the service grew by {grown >> 20} MiB for a stalled follower"
            count, last = 1, first.text
            async for line in lines:
                assert int(line.text[:9]) == count, (line.text[:9], count)  # in order, none lost
                count, last = count + 1, line.text
        assert int(first.text[:9]) == 0 and count == LINES and int(last[:9]) == LINES - 1


async def test_a_follow_resumes_from_its_cursor_after_the_service_died(tmp_path: Path) -> None:
    state, gate, written = tmp_path / "state", tmp_path / "gate", tmp_path / "written"
    count = 2000
    command = f"seq 1 {count}; touch {written}; {wait_gate(gate)}"
    async with Client(f"local://{state}", cancel_grace=0.5) as farm:
        job = await farm.jobs.start(command=command)
        got: list[str] = []
        with anyio.fail_after(60):
            async with farm.logs.stream(job.id, follow=True) as lines:
                got.append((await lines.__anext__()).text)
                # every line is in the log (part of it on its way to us) when the service dies
                await eventually(written.exists, 30, "the job wrote its lines")
                await eventually(
                    lambda: (state / "logs").exists() and _logged(state) >= count, 30, "the lines in the log"
                )
                os.kill(service_pid(state), signal.SIGKILL)
                # the stream carries on through a new service and ends with the lost job
                got += [line.text async for line in lines]
        assert got == [str(i) for i in range(1, count + 1)]
        result = await farm.jobs.wait(job.id, timeout=30)
        assert result.status is JobStatus.FAILED and result.job.reason == "lost: farm service died"


def _logged(state: Path) -> int:
    """Lines in the job logs: line records, and the newlines of raw output files."""
    raw = sum(p.read_bytes().count(b"\n") for p in (state / "logs").glob("*.raw/*"))
    records = sum(len(re.findall(rb"(?m)^\S+ [oe]", p.read_bytes())) for p in (state / "logs").glob("*.log"))
    return raw + records


async def test_follow_filters_and_an_unknown_job(tmp_path: Path) -> None:
    async with Client(f"local://{tmp_path / 'state'}") as farm:
        with pytest.raises(JobNotFound):
            async with farm.logs.stream("nope", follow=True) as lines:
                await lines.__anext__()
        job = await farm.jobs.start(command="for i in 1 2 3; do echo out $i; echo err $i >&2; done")
        with anyio.fail_after(60):
            async with farm.logs.stream(job.id, follow=True, streams=["stderr"]) as lines:
                assert [(ln.stream, ln.text) async for ln in lines] == [("stderr", f"err {i}") for i in (1, 2, 3)]
            (task,) = await farm.jobs.tasks(job.id)
            async with farm.logs.stream(job.id, follow=True, task=task.id, timestamps=True) as lines:
                got = [ln async for ln in lines]
        assert sorted(ln.text.split(" ", 1)[1] for ln in got) == sorted(f"{s} {i}" for s in ("out", "err") for i in (1, 2, 3))
        assert all(ln.task_id == task.id and ln.time is not None for ln in got)
