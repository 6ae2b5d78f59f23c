"""The log path of plain tasks, with real processes: output spliced to raw files reads
back as the program's own bytes on every path (pages and tokens, tail, since,
timestamps, attempt, streams, task), in the embedded farm and through the service,
whose follow dropped and resumed after every frame loses and repeats nothing; an
attacher arriving mid-output takes the stream over with the log whole."""

from __future__ import annotations

import asyncio
import os
import random
import stat
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import anyio
import pytest

from aiofarm import Client, JobStatus
from aiofarm.drivers.base import LogQuery
from aiofarm.drivers.local.logfile import read_page
from aiofarm.drivers.local.processes import spawn
from aiofarm.models import LogLine

from .helpers import eventually
from .test_logfile import program, reference_pieces

pytestmark = pytest.mark.anyio

# writes two files to stdout and stderr in chunks of awkward sizes, interleaved; the
# first attempt fails, the second succeeds
WRITER = """
import os, random, sys
attempt = int(os.environ["AIOFARM_TASK_ATTEMPT"])
data = [open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()]
rng = random.Random(attempt)
pos = [0, 0]
while pos[0] < len(data[0]) or pos[1] < len(data[1]):
    i = rng.choice([k for k in (0, 1) if pos[k] < len(data[k])])
    chunk = memoryview(data[i][pos[i] : pos[i] + rng.choice((1, 7, 4096, 32767, 32768, 100000, 300000))])
    pos[i] += len(chunk)
    while chunk:
        chunk = chunk[os.write(i + 1, chunk) :]
sys.exit(0 if attempt > 1 else 3)
"""


def expected(data: bytes) -> list[str]:
    pieces, rest = reference_pieces(data)
    return [p.decode("utf-8", "replace") for _, p in pieces] + ([rest.decode("utf-8", "replace")] if rest else [])


def outputs(tmp_path: Path) -> tuple[list[str], bytes, bytes]:
    rng = random.Random(7)
    out, err = program(rng, 2_500_000) + b"the end without newline", program(rng, 400_000)
    (tmp_path / "out").write_bytes(out)
    (tmp_path / "err").write_bytes(err)
    return [sys.executable, "-c", WRITER, str(tmp_path / "out"), str(tmp_path / "err")], out, err


def by_stream(lines: list[LogLine], attempt: int) -> tuple[list[str], list[str]]:
    mine = [ln for ln in lines if ln.attempt == attempt]
    return [ln.text for ln in mine if ln.stream == "stdout"], [ln.text for ln in mine if ln.stream == "stderr"]


async def test_spliced_output_reads_back_on_every_path_in_the_embedded_farm(tmp_path: Path) -> None:
    command, out, err = outputs(tmp_path)
    state = tmp_path / "state"
    async with Client(f"local://{state}?embedded=true") as farm:
        job = await farm.jobs.start(command=command, retries=1)
        assert (await farm.jobs.wait(job.id, timeout=60)).status is JobStatus.SUCCEEDED
        # the output went to raw files (private), not through Python
        raws = sorted(p.name for p in (state / "logs").glob("*.raw/*"))
        assert raws == ["e0.1", "e0.2", "o0.1", "o0.2"], raws
        for path in [*(state / "logs").glob("*.raw"), *(state / "logs").glob("*.raw/*")]:
            assert stat.S_IMODE(path.stat().st_mode) == (0o700 if path.is_dir() else 0o600), path
        index = [ln for ln in (state / "logs" / "1.log").read_bytes().split(b"\n") if b" O0." in ln]
        assert len(index) >= 4, index
        want = (expected(out), expected(err))
        (task,) = await farm.jobs.tasks(job.id)
        # pages resumed by token, of a size that ends inside index records
        pages, token = [], None
        while True:
            page = await farm.logs.page(job.id, limit=333, next_token=token, streams=["stdout", "stderr"])
            pages += page.lines
            if not page.lines:
                break
            token = page.next_token
        assert by_stream(pages, 1) == want and by_stream(pages, 2) == want
        async with farm.logs.stream(job.id, follow=False, attempt=2) as it:
            assert by_stream([ln async for ln in it], 2) == want
        async with farm.logs.stream(job.id, follow=False, task=task.id, streams=["stderr"], attempt=1) as it:
            assert [ln.text async for ln in it] == want[1]
        whole = await farm.logs.read(job.id, attempt=1)
        assert sorted(whole.split("\n")[:-1]) == sorted(want[0] + want[1])
        assert await farm.logs.read(job.id, tail=5, attempt=1) == "".join(x + "\n" for x in whole.split("\n")[-6:-1])
        stamped = await farm.logs.read(job.id, timestamps=True, attempt=2)
        got = [line.split(" ", 1) for line in stamped.split("\n")[:-1]]
        assert all(datetime.fromisoformat(when) for when, _ in got)
        assert sorted(t for _, t in got) == sorted(want[0] + want[1])
        later = datetime.now(timezone.utc) + timedelta(seconds=1)
        async with farm.logs.stream(job.id, follow=False, since=later) as it:
            assert [ln async for ln in it] == []
        async with farm.logs.stream(job.id, follow=False, since=datetime(2000, 1, 1, tzinfo=timezone.utc)) as it:
            assert by_stream([ln async for ln in it], 1) == want


async def test_a_follow_resumed_after_every_frame_through_the_service(tmp_path: Path) -> None:
    command, out, err = outputs(tmp_path)
    want = (expected(out), expected(err))
    async with Client(f"local://{tmp_path / 'state'}") as farm:
        job = await farm.jobs.start(command=command, retries=1)
        live: list[LogLine] = []
        with anyio.fail_after(120):
            async with farm.logs.stream(job.id, follow=True) as it:
                live = [ln async for ln in it]
        assert by_stream(live, 1) == want and by_stream(live, 2) == want
        # the follow WebSocket cut after each frame (an index record or more) and resumed
        # from that frame's token: the same lines, none lost, none twice
        query = LogQuery(streams=frozenset({"stdout", "stderr"}), follow=True)
        choppy: list[LogLine] = []
        token: str | None = None
        frames = 0
        with anyio.fail_after(120):
            while True:
                async with farm.driver.follow_log(job.id, token, query) as pages:
                    # up to the end of the first frame: the page that carries a token
                    async for page in pages:
                        choppy += page.lines
                        if page.next_token is not None:
                            break
                    else:
                        break
                frames += 1
                token = page.next_token
        assert frames >= 5
        assert by_stream(choppy, 1) == want and by_stream(choppy, 2) == want
        # and a read through the service's raw reads, by pages
        pages, token = [], None
        while True:
            page = await farm.logs.page(job.id, limit=1000, next_token=token)
            pages += page.lines
            if not page.lines:
                break
            token = page.next_token
        assert [(ln.stream, ln.text, ln.attempt) for ln in pages] == [(ln.stream, ln.text, ln.attempt) for ln in live]


HALVES = """
import os, sys, time
first = b"".join(b"%09d line\\n" % i for i in range(50000)) + b"half a line"
os.write(1, first)
while not os.path.exists(sys.argv[1]):
    time.sleep(0.01)
os.write(1, b" ends here\\n" + b"".join(b"%09d after\\n" % i for i in range(1000)))
"""


async def test_an_attacher_mid_output_takes_the_stream_and_the_log_stays_whole(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log, gate = str(tmp_path / "logs" / "1.log"), tmp_path / "gate"
    exited = anyio.Event()
    task = spawn(
        asyncio.get_running_loop(), [sys.executable, "-c", HALVES, str(gate)], env=dict(os.environb), cwd=None,
        tty=False, stdin=False, log_path=log, job_id="j", task_id="t", task_index=0, attempt=1,
        on_exit=lambda _: exited.set(),
    )  # fmt: skip
    task.watch()
    raw = tmp_path / "logs" / "1.raw" / "o0.1"
    await eventually(lambda: raw.exists() and raw.stat().st_size == 50000 * 15 + 11, 30, "the first half spliced")
    got: list[bytes] = []
    task.add_listener(lambda _fileno, data: got.append(data))
    gate.touch()
    with anyio.fail_after(30):
        await exited.wait()
    # the attacher gets what came after it; the log has every line once, the one cut
    # by the switch whole
    assert b"".join(got) == b" ends here\n" + b"".join(b"%09d after\n" % i for i in range(1000))
    lines, _ = read_page(
        log, None, limit=100_000, task_index=None, streams=frozenset({"stdout"}), start=None, end=None,
        task_ids={0: "t"},
    )  # fmt: skip
    assert [ln.text for ln in lines] == [f"{i:09d} line" for i in range(50000)] + ["half a line ends here"] + [
        f"{i:09d} after" for i in range(1000)
    ]
