"""Streams of the farm service with real processes and sockets: exec runs in the
service where the job runs and dies with its client, whatever the client was doing;
the one error for a closed stdin; a client that stops reading its events is cut
off, costs the service nothing more, and recovers when it reads again."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from aiofarm import Client, JobSpec, JobStatus
from aiofarm.drivers.local import connect
from aiofarm.drivers.local.service import EVENT_BACKLOG
from aiofarm.errors import ConnectionLost
from tests.streams import read_until

from .helpers import alive, eventually, open_gate, wait_gone

pytestmark = pytest.mark.anyio


async def status(state: Path) -> dict[str, Any]:
    answer = await anyio.to_thread.run_sync(connect.request, str(state), "status", {})
    assert answer is not None
    return answer


async def running(farm: Client, command: list[str] | str, **kw: Any) -> str:
    job = await farm.jobs.start(command=command, **kw)
    await farm.jobs.wait(job.id, until=JobStatus.RUNNING, timeout=30)
    return job.id


async def test_exec_runs_in_the_service_where_the_job_runs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}") as farm:
        job = await running(farm, ["sleep", "60"], cwd=str(tmp_path), env={"AIOFARM_T": "x"})
        service = int((state / "farm.pid").read_text())
        async with farm.jobs.exec(job, 'echo "$PPID $PWD $AIOFARM_T"; read line', stdin=True) as stream:
            out = await read_until(stream, b"\n")
            assert out.split() == [str(service).encode(), str(tmp_path).encode(), b"x"]
            pid = stream._channel.pid  # type: ignore[attr-defined]
            assert psutil.Process(pid).ppid() == service
            assert (await status(state))["stdio_sessions"] == 1
        assert not alive(pid)  # leaving killed and reaped it before returning
        assert (await status(state))["stdio_sessions"] == 0


async def test_writing_to_a_stdin_the_process_closed_is_the_one_error(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}") as farm:
        job = await running(farm, ["sleep", "60"])
        async with farm.jobs.exec(job, "exec 0<&-; echo closed; sleep 60", stdin=True) as stream:
            await read_until(stream, b"closed")
            # the service reports the failed write on the stream: a later write raises it
            with anyio.fail_after(20), pytest.raises(ConnectionLost) as info:
                while True:
                    await stream.write_in(b"x" * 65536)
                    await anyio.sleep(0.01)
        assert str(info.value) == "stdin is closed: Broken pipe"  # as for a local child


CLIENT = """
    import sys, anyio
    from aiofarm import Client

    async def main(state, job, stuck):
        async with Client("local://" + state) as farm:
            async with farm.jobs.exec(job, "echo $$; sleep 60", stdin=True) as stream:
                line = (await stream.read_out()).data
                print(line.decode().strip(), flush=True)
                if stuck == "1":
                    # the command never reads: the service is left blocked writing this
                    await stream.write_in(b"x" * (8 << 20))
                await anyio.sleep(60)

    anyio.run(main, *sys.argv[1:])
"""


@pytest.mark.parametrize("stuck", [False, True], ids=["idle", "stdin-blocked"])
async def test_a_client_killed_mid_exec_takes_the_command_with_it(tmp_path: Path, stuck: bool) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}") as farm:
        job = await running(farm, ["sleep", "60"])
        argv = [sys.executable, "-c", textwrap.dedent(CLIENT), str(state), job, "1" if stuck else "0"]
        async with await anyio.open_process(argv, stderr=None) as client:
            assert client.stdout is not None
            with anyio.fail_after(30):
                pid = int(await BufferedByteReceiveStream(client.stdout).receive_until(b"\n", 100))
            assert alive(pid)
            if stuck:
                # the client's writes stop once the pipe and both socket buffers are full
                await eventually(lambda: psutil.Process(client.pid).status() == psutil.STATUS_SLEEPING)
            client.kill()
            await client.wait()
        assert await wait_gone(pid, 10)  # the service saw its socket hang up
        await eventually(lambda: _sessions(state) == 0)
        assert (await farm.jobs.get(job)).status is JobStatus.RUNNING  # the job is untouched


def _sessions(state: Path) -> int:
    answer = connect.request(str(state), "status", {})
    assert answer is not None
    return int(answer["stdio_sessions"])


SLOW_WATCHER = """
    import sys, anyio
    from aiofarm import Client, JobSpec

    async def main(state, gate):
        async with Client("local://" + state) as farm:
            job = await farm.jobs.start(command=f"while [ ! -e {gate} ]; do sleep 0.02; done")
            print(job.id, flush=True)
            print((await farm.jobs.wait(job.id, timeout=120)).status.value, flush=True)

    anyio.run(main, *sys.argv[1:])
"""


async def test_a_client_that_stops_reading_events_is_cut_off_and_recovers(tmp_path: Path) -> None:
    state = tmp_path / "state"
    gate = tmp_path / "gate"
    async with Client(f"local://{state}") as farm:
        blocker = await farm.jobs.start(command=["sleep", "600"])
        argv = [sys.executable, "-c", textwrap.dedent(SLOW_WATCHER), str(state), str(gate)]
        async with await anyio.open_process(argv, stderr=None) as watcher:
            assert watcher.stdout is not None
            lines = BufferedByteReceiveStream(watcher.stdout)
            with anyio.fail_after(30):
                mine = (await lines.receive_until(b"\n", 100)).decode()
            await farm.jobs.wait(mine, until=JobStatus.RUNNING, timeout=30)
            os.kill(watcher.pid, signal.SIGSTOP)  # a client that stops reading
            try:
                # pending jobs (waiting on the blocker): events without running anything;
                # the first burst fills the stopped client's socket, the next overflows
                burst = EVENT_BACKLOG // 2 + 1000
                for _ in range(3):
                    await farm.jobs.submit([JobSpec(command="true", depends_on=[blocker.id])] * burst)
                now = await status(state)
                assert now["events_cut"] == 1
                assert now["event_backlog"] == 0  # what it was owed is dropped with it

                async def gone() -> bool:
                    return (await status(state))["clients"] == 1  # the stopped one is disconnected

                await eventually(gone, 30, "the stopped client disconnected")
                open_gate(gate)  # its job ends while it cannot hear of it
                assert (await farm.jobs.wait(mine, timeout=30)).status is JobStatus.SUCCEEDED
            finally:
                os.kill(watcher.pid, signal.SIGCONT)
            # reading again, it reconnects and re-reads the jobs it waits for
            with anyio.fail_after(60):
                assert await lines.receive_until(b"\n", 100) == b"succeeded"
                assert await watcher.wait() == 0


async def test_a_stop_ends_open_streams_and_the_commands_they_run(tmp_path: Path) -> None:
    # a connected client, an attacher and an exec'd command do not hold the stop up
    # (aiohttp would wait a minute for their handlers)
    state = tmp_path / "state"
    async with Client(f"local://{state}", cancel_grace=0.5) as farm:
        job = await running(farm, ["sh", "-c", "read x"], stdin=True)
        async with farm.jobs.attach(job), farm.jobs.exec(job, ["sleep", "60"], stdin=True) as stream:
            pid = stream._channel.pid  # type: ignore[attr-defined]
            with anyio.fail_after(20):
                await anyio.to_thread.run_sync(lambda: connect.stop_service(str(state), cancel_jobs=True, timeout=15))
            assert not alive(pid)
            with anyio.fail_after(10):
                while await stream.read_out() is not None:
                    pass
