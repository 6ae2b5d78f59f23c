"""State that never lies: kill -9 of the service at random points, a full disk, and
another uid trying to read the state or reach the socket."""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from aiofarm import Client, JobSpec, JobStatus
from aiofarm.drivers.local import connect
from aiofarm.errors import ConnectionLost, StateError

from ..services import stop_services
from .helpers import alive, eventually, open_gate, wait_gate, wait_gone

pytestmark = pytest.mark.anyio

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (tmpfs mount, setuid)")


def shared_tmp() -> str:
    """A temp dir another uid can reach (this host's /tmp may be root's alone)."""
    for path in ("/tmp", "/var/tmp", "/dev/shm"):
        with contextlib.suppress(OSError):
            if os.stat(path).st_mode & 0o001:
                return path
    pytest.skip("no temp dir another user can reach (/tmp, /var/tmp and /dev/shm are private)")


async def all_finished(farm: Client) -> bool:
    jobs = await farm.jobs.get_many([f"k{i}" for i in range(200)])
    return all(job.status.is_finished for job in jobs)


def runs_done(runs: Path) -> int:
    """How many jobs of the kill -9 run have started their command so far."""
    return len(os.listdir(runs))


def service_pid(state: Path) -> int | None:
    try:
        return int((state / "farm.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None


def processes_marked(mark: str) -> list[int]:
    """Live processes whose environment carries ``MARK=<mark>``."""
    wanted = f"MARK={mark}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/environ", "rb") as f:
                    if wanted in f.read().split(b"\0") and alive(int(name)):
                        found.append(int(name))
            except OSError:
                continue
    return found


async def test_kill_9_of_the_service_at_20_random_points(tmp_path: Path) -> None:
    state, runs = tmp_path / "state", tmp_path / "runs"
    runs.mkdir()
    mark = os.urandom(8).hex()
    rng = random.Random(1234)
    specs = []
    for i in range(200):
        # each run leaves a line: a job that ran twice would have two
        command = f"echo $AIOFARM_TASK_ATTEMPT >> {runs}/$AIOFARM_JOB_ID; sleep {rng.choice((0, 0.02, 0.05, 0.1, 0.2))}"
        deps = [f"k{i - 7}"] if i >= 7 and i % 3 == 0 else []
        specs.append(JobSpec(command=command, id=f"k{i}", depends_on=deps, env={"MARK": mark}))
    url = f"local://{state}"
    async with Client(url, slots=4, cancel_grace=0.5) as farm:
        await farm.jobs.submit(specs)
    for _ in range(20):
        # bring a service up (as any client does), let it get a random way further, kill
        # it: the kill points are progress of the run, never a time (a loaded machine
        # only makes the waits longer), and most land while a task runs
        async with Client(url, slots=4, cancel_grace=0.5) as farm:
            pid = service_pid(state)
            assert pid is not None
            target = runs_done(runs) + rng.randint(0, 12)

            async def progressed(target: int = target) -> bool:
                return runs_done(runs) >= target or await all_finished(farm)

            await eventually(progressed, 120, f"{target} runs")
            if rng.random() < 0.7:

                async def running() -> bool:
                    return bool(processes_marked(mark)) or await all_finished(farm)

                await eventually(running, 120, "a task running")
            os.kill(pid, signal.SIGKILL)
            assert await wait_gone(pid, timeout=30)
    async with Client(url, slots=4, cancel_grace=0.5) as farm:
        ids = [f"k{i}" for i in range(200)]
        with anyio.fail_after(120):
            async for _ in farm.jobs.as_completed(ids):
                pass
        jobs = await farm.jobs.get_many(ids)
    assert len(jobs) == 200  # no record lost
    ran = {}
    for job in jobs:
        assert job.status.is_finished, job
        path = runs / job.id
        ran[job.id] = path.read_text().split() if path.exists() else []
        assert len(ran[job.id]) <= 1, (job.id, ran[job.id])  # never twice
        if job.status is JobStatus.SUCCEEDED:
            assert ran[job.id] == ["1"]
        # a job lost with the service ran once, or was killed between its launch record
        # and its first command: either way it is not run again
    lost = [j for j in jobs if j.reason == "lost: farm service died"]
    assert lost, "no kill landed on a running job: the test proves nothing"
    assert sum(1 for j in jobs if j.status is JobStatus.SUCCEEDED) > 100
    # no orphan of any killed service is left
    await eventually(lambda: not processes_marked(mark), 10, "no orphan processes")


@contextlib.contextmanager
def small_disk(path: Path) -> Iterator[Path]:
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(path: Path) -> Path:
    filler = path / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@ROOT_ONLY
async def test_full_disk_typed_error_no_rerun_and_recovery_in_the_same_client(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    g1, g2 = tmp_path / "g1", tmp_path / "g2"
    with small_disk(tmp_path / "disk") as disk:
        state = disk / "state"
        try:
            async with Client(f"local://{state}", slots=2, cancel_grace=0.5) as farm:
                first = await farm.jobs.start(command=["true"])
                assert (await farm.jobs.wait(first.id, timeout=30)).status is JobStatus.SUCCEEDED
                body = (
                    f"echo run >> {runs}/b; echo before; {wait_gate(g1)}; "
                    f"i=0; while [ $i -lt 300 ]; do echo lost-line-$i-padding-padding-padding; i=$((i+1)); done; "
                    f"{wait_gate(g2)}; echo end"
                )
                b = await farm.jobs.start(command=body)
                await _until_running(farm, b.id)
                await eventually(lambda: _log_is(farm, b.id, "before\n"))
                # b's output is spliced to its raw file until the disk is full
                assert list((state / "logs").glob("*.raw/o0.1")), "b's output was not spliced"
                filler = fill(disk)
                with pytest.raises(StateError) as info:
                    await farm.jobs.submit([JobSpec(command=["true"], name="x" * 200) for _ in range(3000)])
                assert info.value.operation == "submit"
                assert "full" in str(info.value)
                # reads still work while nothing can be written
                assert (await farm.jobs.get(b.id)).status is JobStatus.RUNNING
                open_gate(g1)  # b writes 300 lines the disk cannot take
                await anyio.sleep(0.3)
                filler.unlink()  # space returns; the same client carries on
                open_gate(g2)
                assert (await farm.jobs.wait(b.id, timeout=60)).status is JobStatus.SUCCEEDED
                streams = ("stdout", "stderr", "aiofarm")
                async with farm.logs.stream(b.id, follow=False, streams=streams) as it:
                    lines = [line.text async for line in it]
                assert lines[0] == "before" and lines[-1] == "end", lines
                # every line is either in the log, whole, or counted by a farm line
                notes = [int(x.split()[0]) for x in lines if "log line(s) dropped" in x]
                kept = [x for x in lines if x.startswith("lost-line-")]
                assert notes and sum(notes) + len(kept) == 300, (notes, len(kept))
                assert all(x.endswith("-padding-padding-padding") for x in kept)  # no torn record
                again = await farm.jobs.start(command=["echo", "after"])
                assert (await farm.jobs.wait(again.id, timeout=30)).status is JobStatus.SUCCEEDED
                assert (runs / "b").read_text() == "run\n"  # it ran once
        finally:
            pid = service_pid(state)
            if pid is not None:
                stop_services([pid])


async def _until_running(farm: Client, job_id: str) -> None:
    async def running() -> bool:
        return (await farm.jobs.get(job_id)).status is JobStatus.RUNNING

    await eventually(running)


async def _log_is(farm: Client, job_id: str, text: str) -> bool:
    return await farm.logs.read(job_id) == text


def _as_nobody(fn_code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run Python code as uid nobody (root drops its privileges in the child)."""
    nobody = pwd.getpwnam("nobody")
    code = (
        "import os, sys, socket\n"
        f"os.setgid({nobody.pw_gid}); os.setgroups([]); os.setuid({nobody.pw_uid})\n" + fn_code
    )
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=False)


@ROOT_ONLY
async def test_another_uid_can_neither_read_state_nor_reach_the_socket(tmp_path: Path) -> None:
    os.chmod(tmp_path, 0o755)  # the dirs above the state dir are open; the state dir is not
    state = tmp_path / "state"
    old = os.umask(0o022)  # the usual umask: the farm must not rely on it
    try:
        async with Client(f"local://{state}") as farm:
            job = await farm.jobs.start(command=["echo", "secret"], env={"TOKEN": "s3cret"})
            await farm.jobs.wait(job.id, timeout=30)
            for path in [state, *state.rglob("*")]:
                mode = path.stat().st_mode & 0o777
                assert mode == (0o700 if path.is_dir() else 0o600), (path, oct(mode))
            probe = _as_nobody(
                "for p in sys.argv[1:3]:\n"
                "    try:\n"
                "        open(p, 'rb').read(); print('READ', p)\n"
                "    except PermissionError: print('denied')\n"
                "s = socket.socket(socket.AF_UNIX)\n"
                "try:\n"
                "    s.connect(sys.argv[3]); print('CONNECTED')\n"
                "except PermissionError: print('denied')\n"
                "t = socket.socket(socket.AF_UNIX)\n"
                "try:\n"
                "    t.bind(sys.argv[4]); print('BOUND')\n"
                "except PermissionError: print('denied')\n",
                str(state / "farm.sqlite"),
                str(state / "logs" / "1.log"),
                str(state / "farm.sock"),
                str(state / "impostor.sock"),
            )
            assert probe.stdout.split() == ["denied"] * 4, probe
            assert (await farm.jobs.get(job.id)).status is JobStatus.SUCCEEDED
    finally:
        os.umask(old)


@ROOT_ONLY
async def test_a_server_of_another_uid_is_refused(tmp_path: Path) -> None:
    """Were an impostor able to put a socket where a client looks, the client still
    checks the peer's uid before saying a word."""
    # somewhere both users reach (the test's own tmp dirs are root's, 0700)
    open_dir = Path(tempfile.mkdtemp(prefix="aiofarm-impostor-", dir=shared_tmp()))
    os.chmod(open_dir, 0o777)
    path = open_dir / "farm.sock"
    server = subprocess.Popen(  # noqa: ASYNC220 - a short-lived helper process
        [
            sys.executable,
            "-c",
            "import os, socket, sys, time\n"
            f"os.setgid({pwd.getpwnam('nobody').pw_gid}); os.setgroups([]); os.setuid({pwd.getpwnam('nobody').pw_uid})\n"
            "s = socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o777); s.listen()\n"
            "print('ready', flush=True)\n"
            "c, _ = s.accept(); c.recv(1); time.sleep(5)\n",
            str(path),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert server.stdout is not None and server.stdout.readline() == b"ready\n"
        with pytest.raises(ConnectionLost, match="not to us"):
            connect.connect_socket(str(path))
        # and a client refuses a state dir another uid owns
        os.chown(open_dir, pwd.getpwnam("nobody").pw_uid, -1)
        with pytest.raises(ConnectionLost, match="belongs to uid"):
            connect.check_state_dir(str(open_dir))
    finally:
        server.kill()
        server.wait()
        assert server.stdout is not None
        server.stdout.close()
        shutil.rmtree(open_dir, ignore_errors=True)


@ROOT_ONLY
async def test_the_service_refuses_a_peer_of_another_uid(tmp_path: Path) -> None:
    """Were the socket reachable by another user (modes loosened by hand), the service
    still answers nobody but its own uid."""
    base = Path(tempfile.mkdtemp(prefix="aiofarm-peer-", dir=shared_tmp()))
    state = base / "state"
    try:
        async with Client(f"local://{state}") as farm:
            await farm.jobs.start(command=["true"])
            os.chmod(base, 0o755)
            os.chmod(state, 0o755)
            os.chmod(state / "farm.sock", 0o666)
            probe = _as_nobody(
                "s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])\n"
                "s.sendall(b'POST /v1/status HTTP/1.1\\r\\nHost: farm\\r\\nContent-Length: 2\\r\\n\\r\\n{}')\n"
                "print(s.recv(100).split()[1].decode())\n",
                str(state / "farm.sock"),
            )
            assert probe.stdout.split() == ["403"], probe
            assert len(await farm.jobs.get_many([])) == 0  # and it serves us still
    finally:
        pid = service_pid(state)
        if pid is not None:
            stop_services([pid])
        shutil.rmtree(base, ignore_errors=True)
