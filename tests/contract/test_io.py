"""The I/O and farm contract every driver keeps (parametrised over tests/backends/):
logs read/stream/page, exec, attach, port_forward, pools, workers, functions. An
undeclared behaviour raises UnsupportedError naming it."""

from __future__ import annotations

import operator
import sys
from datetime import datetime, timedelta, timezone
from types import ModuleType

import anyio
import pytest

from aiofarm import Capability, Client, JobStatus, PoolNotFound
from tests.streams import read_all, read_until

from .helpers import LONG, executes, finish, refused, running, tag

pytestmark = pytest.mark.anyio

LINES = 30
#: explicit echos (no loop) so every back end, the dummy's scheduler included, runs it
ECHOES = ["sh", "-c", "; ".join(f"echo line {i}" for i in range(1, LINES + 1)) + "; echo oops >&2"]
ECHO_SERVER = (
    "import socket\n"
    "s = socket.socket()\n"
    "s.bind(('127.0.0.1', 0))\n"
    "s.listen()\n"
    "print('port', s.getsockname()[1], flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept()\n"
    "    c.sendall(c.recv(1024).upper())\n"
    "    c.close()\n"
)


async def test_logs_read_stream_and_page(farm: Client, backend: ModuleType) -> None:
    job = await farm.jobs.start(ECHOES)
    if Capability.LOGS not in farm.capabilities:
        await refused(farm, Capability.LOGS, lambda: farm.logs.read(job.id))
        await refused(farm, Capability.LOGS, lambda: farm.logs.page(job.id))
        await refused(farm, Capability.LOGS, lambda: farm.logs.stream(job.id))
        return
    if Capability.LOGS_FOLLOW in farm.capabilities:
        with anyio.fail_after(120):  # a followed stream ends when the job has and its output is in
            async with farm.logs.stream(job.id, follow=True) as lines:
                got = [ln.text async for ln in lines]
    else:
        await farm.jobs.wait(job.id, timeout=120, max_interval=1)
        async with farm.logs.stream(job.id, follow=False) as lines:
            got = [ln.text async for ln in lines]
    assert (await farm.jobs.get(job.id)).status.is_finished
    if not executes(backend):
        assert isinstance(await farm.logs.read(job.id), str)
        return
    wanted = [f"line {i}" for i in range(1, LINES + 1)]
    assert [t for t in got if t.startswith("line ")] == wanted  # each once, in order
    assert "oops" in got
    text = await farm.logs.read(job.id)
    assert "line 1\n" in text and "oops" in text
    page = await farm.logs.page(job.id, limit=10)
    token, paged = page.next_token, [ln.text for ln in page.lines]
    assert 1 <= len(paged) <= 10
    with anyio.fail_after(60):
        while True:
            page = await farm.logs.page(job.id, limit=10, next_token=token)
            if not page.lines:
                break
            paged += [ln.text for ln in page.lines]
            token = page.next_token
    assert [t for t in paged if t.startswith("line ")] == wanted  # paging neither loses nor repeats
    if Capability.LOGS_STREAMS in farm.capabilities:
        page = await farm.logs.page(job.id, streams=["stderr"])
        assert [(ln.stream, ln.text) for ln in page.lines] == [("stderr", "oops")]
    if Capability.LOGS_TIMESTAMPS in farm.capabilities:
        async with farm.logs.stream(job.id, follow=False, timestamps=True) as lines:
            first = await lines.__anext__()
        assert first.time is not None and first.text.startswith(first.time.isoformat())
    if Capability.LOGS_SINCE in farm.capabilities:
        later = datetime.now(timezone.utc) + timedelta(hours=1)
        assert (await farm.logs.page(job.id, start_time=later)).lines == ()
        assert (await farm.logs.page(job.id, end_time=later)).lines != ()
    if Capability.LOGS_TASK in farm.capabilities and Capability.TASKS in farm.capabilities:
        (task,) = await farm.jobs.tasks(job.id)
        page = await farm.logs.page(job.id, task=task.id, limit=1000)
        assert "line 1" in [ln.text for ln in page.lines]


async def test_exec_in_a_running_job(farm: Client) -> None:
    job = await running(farm)
    try:
        if Capability.EXEC not in farm.capabilities:
            await refused(farm, Capability.EXEC, lambda: farm.jobs.exec(job.id, ["true"]))
            return
        async with farm.jobs.exec(job.id, "echo out; echo err >&2; exit 3") as stream:
            assert not stream.tty
            assert await read_all(stream) == {1: b"out\n", 2: b"err\n"}
            assert await stream.wait() == 3
        async with farm.jobs.exec(job.id, ["cat"], stdin=True) as stream:
            await stream.write_in(b"ping\n")
            assert await read_until(stream, b"ping\n") == b"ping\n"
            await stream.close_in()
            assert await stream.read_out() is None
            assert await stream.wait() == 0
        if Capability.EXEC_TTY in farm.capabilities:
            async with farm.jobs.exec(job.id, ["sh", "-c", "tty; stty size"], tty=True, size=(33, 99)) as stream:
                assert stream.tty
                out = b"".join((await read_all(stream)).values())
                assert b"/dev/" in out and b"33 99" in out
        # the job is untouched by what ran beside it
        assert (await farm.jobs.get(job.id)).status is JobStatus.RUNNING
    finally:
        await finish(farm, job.id)


async def test_attach_to_a_running_job(farm: Client) -> None:
    interactive = Capability.SUBMIT_STDIN in farm.capabilities
    job = await running(farm, ["cat"] if interactive else LONG, stdin=interactive)
    try:
        if Capability.ATTACH not in farm.capabilities:
            await refused(farm, Capability.ATTACH, lambda: farm.jobs.attach(job.id))
            return
        if Capability.ATTACH_BATCH_STEP not in farm.capabilities:
            # it attaches to steps of a job only (Slurm): not to the job's own process
            await refused(farm, Capability.ATTACH_BATCH_STEP, lambda: farm.jobs.attach(job.id))
            return
        async with farm.jobs.attach(job.id, stdin=interactive) as stream:
            if interactive:
                await stream.write_in(b"hello\n")
                assert b"hello" in await read_until(stream, b"hello\n")
        # detaching leaves the job running
        assert (await farm.jobs.get(job.id)).status is JobStatus.RUNNING
    finally:
        await finish(farm, job.id)


async def test_port_forward_to_a_job(farm: Client) -> None:
    job = await running(farm, [sys.executable, "-c", ECHO_SERVER])
    try:
        if Capability.PORT_FORWARD not in farm.capabilities:
            await refused(farm, Capability.PORT_FORWARD, lambda: farm.jobs.port_forward(job.id, job_port=80))
            return
        port = 0
        with anyio.fail_after(60):  # the server says its port in its log
            async with farm.logs.stream(job.id) as lines:
                async for line in lines:
                    if line.text.startswith("port "):
                        port = int(line.text.split()[1])
                        break
        async with farm.jobs.port_forward(job.id, job_port=port) as fwd:
            assert fwd.local_port > 0
            with anyio.fail_after(30):
                async with await anyio.connect_tcp("127.0.0.1", fwd.local_port) as conn:
                    await conn.send(b"hello")
                    assert await conn.receive() == b"HELLO"
    finally:
        await finish(farm, job.id)


async def test_pools(farm: Client) -> None:
    if Capability.POOLS not in farm.capabilities:
        await refused(farm, Capability.POOLS, lambda: farm.pools.list())
        return
    pools = await farm.pools.list()
    assert pools
    assert (await farm.pools.get(pools[0].name)).id == pools[0].id
    capacity = await farm.pools.capacity()
    assert isinstance(capacity, dict) and all(isinstance(v, int) for v in capacity.values())
    if Capability.POOLS_MANAGE not in farm.capabilities:
        await refused(farm, Capability.POOLS_MANAGE, lambda: farm.pools.create(f"c{tag()}"))
        return
    name = f"c{tag()}"
    pool = await farm.pools.create(name, slots=1)
    renamed = await farm.pools.rename(pool, f"{name}-b")
    assert renamed.name == f"{name}-b"
    await farm.pools.delete(renamed)
    with pytest.raises(PoolNotFound):
        await farm.pools.get(f"{name}-b")


async def test_workers(farm: Client) -> None:
    if Capability.WORKERS not in farm.capabilities:
        await refused(farm, Capability.WORKERS, lambda: farm.workers.list())
        return
    workers = await farm.workers.list()
    assert workers and all(w.name for w in workers)
    assert await farm.workers.list(names=[workers[0].name]) == [workers[0]]
    if Capability.WORKERS_MANAGE not in farm.capabilities:
        await refused(farm, Capability.WORKERS_MANAGE, lambda: farm.workers.enable(workers[0].name))
        return
    # enabling an enabled worker changes nothing: safe on a shared farm
    enabled = [w for w in workers if w.enabled]
    if enabled:
        assert [w.name for w in await farm.workers.enable(enabled[0].name)] == [enabled[0].name]


async def test_functions_run_or_are_unsupported(farm: Client) -> None:
    if Capability.FUNCTIONS not in farm.capabilities:
        await refused(farm, Capability.FUNCTIONS, lambda: farm.functions.create(operator.mul))
        return
    fn = farm.functions.create(operator.mul, timeout=120)
    batch = await fn.map([[2, 3], [4, 5]])
    assert batch.is_success
    with anyio.fail_after(180):
        values = sorted([await farm.functions.result(job) async for job in fn.as_completed(batch.jobs)])
    assert values == [6, 20]
