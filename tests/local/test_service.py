"""The farm service with real processes and sockets: jobs outlive their clients,
every client in every process mutates and hears events, read-only calls change
nothing, idle exit, protocol mismatch, and the `aiofarm farm` commands."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

import aiofarm
from aiofarm import Client, JobSpec, JobStatus
from aiofarm.drivers.local import connect
from aiofarm.errors import FarmError, JobNotRunning

from ..services import services_with_env
from .helpers import alive, eventually, open_gate, wait_gate, wait_gone

GRACE = 0.5
pytestmark = pytest.mark.anyio


async def wait_status(farm: Client, job_id: str, status: JobStatus, timeout: float = 30) -> None:
    with anyio.fail_after(timeout):
        async with farm.jobs.watch([job_id]) as events:
            if (await farm.jobs.get(job_id)).status is status:
                return
            async for event in events:
                if event.status is status:
                    return


def service_pid(state: Path) -> int:
    return int((state / "farm.pid").read_text())


async def run_py(code: str, *args: str) -> str:
    done = await anyio.run_process([sys.executable, "-c", textwrap.dedent(code), *args], check=False)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


async def aiofarm_cli(state: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    argv = [sys.executable, "-m", "aiofarm.cli", "--url", f"local://{state}", *args]
    with anyio.fail_after(60):
        return await anyio.run_process(argv, check=False, env={**os.environ, "NO_COLOR": "1"})


SUBMITTER = """
    import sys, anyio
    from aiofarm import Client, JobSpec

    async def main(state, gate):
        async with Client("local://" + state, cancel_grace=0.5) as farm:
            done, long_ = await farm.jobs.submit([
                JobSpec(command=f"echo a; while [ ! -e {gate} ]; do sleep 0.02; done; echo b", id="done"),
                JobSpec(command=["sleep", "60"], id="long"),
            ])
            print(done.id, long_.id)

    anyio.run(main, sys.argv[1], sys.argv[2])
"""


async def test_jobs_outlive_the_process_that_submitted_them(tmp_path: Path) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    out = await run_py(SUBMITTER, str(state), str(gate))  # process A submits and exits
    assert out.split() == ["done", "long"]
    async with Client(f"local://{state}") as farm:  # process B
        with anyio.fail_after(30):
            async with farm.jobs.watch(["done", "long"]) as events:
                async for _event in events:
                    job = await farm.jobs.get("long")
                    if job.status is JobStatus.RUNNING and (await farm.jobs.get("done")).status is JobStatus.RUNNING:
                        break
        before = {j.id: (j.status, len(j.history)) for j in await farm.jobs.get_many(["done", "long"])}
        # a third process only reads: nothing changes
        for args in (("status", "done"), ("ls",), ("logs", "done")):
            assert (await aiofarm_cli(state, *args)).returncode == 0
        after = {j.id: (j.status, len(j.history)) for j in await farm.jobs.get_many(["done", "long"])}
        assert after == before
        [task] = await farm.jobs.tasks("long")
        pid = task.raw["pid"]
        assert isinstance(pid, int) and alive(pid)
        open_gate(gate)
        result = await farm.jobs.wait("done", timeout=30)
        assert result.status is JobStatus.SUCCEEDED
        assert await farm.logs.read("done") == "a\nb\n"
        await farm.jobs.cancel("long")
        assert (await farm.jobs.wait("long", timeout=30)).status is JobStatus.CANCELED
        assert await wait_gone(pid)


async def test_two_clients_and_the_cli_all_mutate_and_hear_events(tmp_path: Path) -> None:
    state, gate = tmp_path / "state", tmp_path / "gate"
    url = f"local://{state}"
    one = await Client(url, cancel_grace=GRACE).open()  # opened in this task ...
    heard: dict[str, list[tuple[str, JobStatus]]] = {"one": [], "two": []}
    try:
        async with Client(url) as two:
            await one.jobs.submit(
                [
                    JobSpec(command=wait_gate(gate), id="a"),
                    JobSpec(command=["sleep", "60"], id="b"),
                    JobSpec(command=["true"], id="c", paused=True),
                ]
            )

            async def listen(name: str, client: Client) -> None:
                async with client.jobs.watch(["a", "b", "c"]) as events:
                    async for event in events:
                        heard[name].append((event.job.id, event.status))

            async with anyio.create_task_group() as tg:
                tg.start_soon(listen, "one", one)
                tg.start_soon(listen, "two", two)
                await wait_status(two, "b", JobStatus.RUNNING)
                await two.jobs.cancel("b")  # the second client stops the first's job
                done = await aiofarm_cli(state, "cancel", "a")  # and the CLI another
                assert done.returncode == 0, done.stderr
                await one.jobs.resume("c")  # the first resumes its own
                for job_id in ("a", "b", "c"):
                    await one.jobs.wait(job_id, timeout=30)
                finals = {("a", JobStatus.CANCELED), ("b", JobStatus.CANCELED), ("c", JobStatus.SUCCEEDED)}
                await eventually(lambda: all(finals <= set(h) for h in heard.values()), 10, "events in both")
                tg.cancel_scope.cancel()
    finally:

        async def close_elsewhere() -> None:  # ... and closed in another, as a notebook does
            await one.aclose()

        async with anyio.create_task_group() as tg:
            tg.start_soon(close_elsewhere)


async def test_new_jobs_reach_every_watcher_the_submitter_included(tmp_path: Path) -> None:
    """The service leaves a submitter's own new jobs out of its event stream (it has
    them from its answer): its watchers must hear of them all the same, the other
    client's through the push, and a job that failed on arrival as failed."""
    url = f"local://{tmp_path / 'state'}"
    async with Client(url) as one, Client(url) as two:
        (first,) = await one.jobs.submit([JobSpec(command=["false"], id="x")])
        assert first.status is JobStatus.PENDING and first.task_counts == {"pending": 1}
        await one.jobs.wait("x", timeout=30)
        heard: dict[str, dict[str, JobStatus]] = {"one": {}, "two": {}}

        async def listen(name: str, client: Client, started: anyio.Event) -> None:
            async with client.jobs.watch(aiofarm.where.tags.contains("new")) as events:
                started.set()
                async for event in events:
                    heard[name][event.job.id] = event.status

        async with anyio.create_task_group() as tg:
            for name, client in (("one", one), ("two", two)):
                started = anyio.Event()
                tg.start_soon(listen, name, client, started)
                await started.wait()
            specs = [JobSpec(command=["true"], id=f"p{i}", tags=("new",), paused=True) for i in range(3)]
            specs.append(JobSpec(command=["true"], id="y", tags=("new",), depends_on=("x",), resources=aiofarm.Resources(cpu=2)))
            jobs = await one.jobs.submit(specs)
            assert [j.status for j in jobs] == [JobStatus.SUSPENDED] * 3 + [JobStatus.FAILED]
            assert jobs[0].reason == "paused" and jobs[0].raw["seq"] + 1 == jobs[1].raw["seq"]
            assert jobs[3].reason == "dependency x failed" and jobs[3].raw["slots"] == 2
            want = {"p0": JobStatus.SUSPENDED, "p1": JobStatus.SUSPENDED, "p2": JobStatus.SUSPENDED, "y": JobStatus.FAILED}
            await eventually(lambda: heard["one"] == want == heard["two"], 10, f"new jobs in both: {heard}")
            tg.cancel_scope.cancel()
        assert await one.jobs.get("p1") == jobs[1]


async def test_idle_service_exits_and_the_next_client_starts_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}", idle_timeout=0.3) as farm:
        first = service_pid(state)
        await farm.jobs.wait((await farm.jobs.start(command=["true"])).id, timeout=30)
    assert await wait_gone(first, timeout=10)  # no client, no job: it goes
    assert not (state / "farm.sock").exists()
    async with Client(f"local://{state}") as farm:
        assert service_pid(state) != first
        assert len(await farm.jobs.get_many([j.id async for j in _all(farm)])) == 1


async def _all(farm: Client):  # type: ignore[no-untyped-def]
    async with farm.jobs.list() as it:
        async for job in it:
            yield job


async def test_a_service_of_another_protocol_is_refused_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}"):
        from aiofarm.drivers.local import wire

        monkeypatch.setattr(wire, "PROTOCOL", wire.PROTOCOL + 1)
        with pytest.raises(FarmError, match="aiofarm farm stop"):
            async with Client(f"local://{state}"):
                pass


async def test_service_death_fails_its_running_jobs_and_keeps_the_others(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}", cancel_grace=GRACE) as farm:
        await farm.jobs.submit(
            [JobSpec(command=["sleep", "60"], id="run"), JobSpec(command=["true"], id="held", paused=True)]
        )
        await wait_status(farm, "run", JobStatus.RUNNING)
        [task] = await farm.jobs.tasks("run")
        os.kill(service_pid(state), signal.SIGKILL)
        # the client brings a new service up by itself; the job died with the old one
        result = await farm.jobs.wait("run", timeout=30)
        assert result.status is JobStatus.FAILED
        assert result.job.reason == "lost: farm service died"
        assert await wait_gone(task.raw["pid"])
        assert (await farm.jobs.get("held")).status is JobStatus.SUSPENDED
        await farm.jobs.resume("held")
        assert (await farm.jobs.wait("held", timeout=30)).status is JobStatus.SUCCEEDED


async def test_attach_from_another_client_through_the_service(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}") as farm:
        job = await farm.jobs.start(command="read line; echo got $line", stdin=True)
        async with Client(f"local://{state}") as other, other.jobs.attach(job.id, stdin=True) as stream:
            await stream.write_in(b"hello\n")
            got = b""
            with anyio.fail_after(30):
                while b"got hello" not in got:
                    msg = await stream.read_out()
                    assert msg is not None
                    got += msg.data
        assert (await farm.jobs.wait(job.id, timeout=30)).status is JobStatus.SUCCEEDED
        with pytest.raises(JobNotRunning):
            async with farm.jobs.attach(job.id):
                pass


async def test_farm_commands(tmp_path: Path) -> None:
    state = tmp_path / "state"
    st = await aiofarm_cli(state, "farm", "status")
    assert st.returncode == 3 and b"no farm service" in st.stdout
    up = await aiofarm_cli(state, "farm", "start")
    assert up.returncode == 0 and b"running" in up.stdout, up.stderr
    pid = service_pid(state)
    again = await aiofarm_cli(state, "farm", "start")
    assert b"already running" in again.stdout and service_pid(state) == pid
    async with Client(f"local://{state}", cancel_grace=GRACE) as farm:
        job = await farm.jobs.start(command=["sleep", "60"])
        await wait_status(farm, job.id, JobStatus.RUNNING)
        st = await aiofarm_cli(state, "farm", "status")
        assert st.returncode == 0 and b"jobs running 1" in st.stdout, st.stdout
        refused = await aiofarm_cli(state, "farm", "stop")
        assert refused.returncode == 2 and b"--cancel-jobs" in refused.stderr
        assert alive(pid)
    stopped = await aiofarm_cli(state, "farm", "stop", "--cancel-jobs")
    assert stopped.returncode == 0, stopped.stderr
    assert not alive(pid)
    log = await aiofarm_cli(state, "farm", "logs")
    assert b"ready" in log.stdout and b"stopped" in log.stdout
    async with Client(f"local://{state}") as farm:
        assert (await farm.jobs.get(job.id)).status is JobStatus.CANCELED


async def test_foreground_service_in_a_terminal(tmp_path: Path) -> None:
    state = tmp_path / "state"
    argv = [sys.executable, "-m", "aiofarm.cli", "--url", f"local://{state}", "farm", "start", "--foreground"]
    async with await anyio.open_process(argv, stderr=subprocess.STDOUT) as proc:
        try:
            assert proc.stdout is not None
            got = b""
            with anyio.fail_after(30):
                while b"ready" not in got:
                    got += await proc.stdout.receive()
            async with Client(f"local://{state}") as farm:
                job = await farm.jobs.start(command=["echo", "fg"])
                assert (await farm.jobs.wait(job.id, timeout=30)).status is JobStatus.SUCCEEDED
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                assert await proc.wait() == 0
        finally:
            if proc.returncode is None:
                proc.kill()


def test_services_are_found_for_cleanup() -> None:
    # the fixtures' way of finding what a test started sees nothing of ours now
    assert services_with_env("AIOFARM_TEST_MARK", os.environ["AIOFARM_TEST_MARK"]) == []
    assert aiofarm.StateError.__mro__[1] is FarmError


async def test_bad_text_is_refused_by_field_and_the_service_goes_on(tmp_path: Path) -> None:
    """Nothing a caller passes can break the service's writer: a lone surrogate is
    InvalidSpec naming the field, before anything is sent."""
    from aiofarm.errors import InvalidSpec

    async with Client(f"local://{tmp_path / 'state'}") as farm:
        job = await farm.jobs.start(command=["true"], name="fine")
        for call, field in (
            (lambda: farm.jobs.update(job.id, name="\ud800"), "name"),
            (lambda: farm.jobs.update(job.id, tags=["ok", "a\udfff"]), "tags[1]"),
            (lambda: farm.jobs.start(command=["echo", "\ud800"]), "command[1]"),
            (lambda: farm.jobs.start(command=["true"], env={"A": "\ud800"}), "env['A']"),
        ):
            with pytest.raises(InvalidSpec) as info:
                await call()
            assert info.value.field == field
        await farm.jobs.update(job.id, name="renamed")
        assert (await farm.jobs.get(job.id)).name == "renamed"


async def test_ctrl_c_of_wait_leaves_the_job_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}") as farm:
        job = await farm.jobs.start(command=["sleep", "60"])
        await wait_status(farm, job.id, JobStatus.RUNNING)
        argv = [sys.executable, "-m", "aiofarm.cli", "--url", f"local://{state}", "wait", job.id]
        async with await anyio.open_process(argv) as proc:
            # parked in wait once its client is connected (its event stream counts)
            await eventually(lambda: (connect.request(str(state), "status", {}) or {})["clients"] >= 2)
            proc.send_signal(signal.SIGINT)
            with anyio.fail_after(30):
                assert await proc.wait() == 130
        assert (await farm.jobs.get(job.id)).status is JobStatus.RUNNING
        await farm.jobs.cancel(job.id)
