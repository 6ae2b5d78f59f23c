"""The Slurm driver against the real single-node cluster (see conftest.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import anyio
import pytest

from aiofarm import (
    AuthError,
    Capability,
    Client,
    InvalidSpec,
    JobSpec,
    JobStatus,
    UnsupportedError,
)
from aiofarm.drivers.slurm import SlurmDriver
from aiofarm.drivers.slurm.http import SlurmAPIError
from aiofarm.stdio import StdStream
from tests.backends.slurm import Cluster
from tests.streams import read_all
from tests.waits import tag, until_log, until_status

pytestmark = [pytest.mark.anyio, pytest.mark.slurm]


# -- arrays ----------------------------------------------------------------------


def _frames_template(n: int) -> dict[str, object]:
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "frames",
        "steps": [
            {
                "name": "Render",
                "parameterSpace": {
                    "taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": f"1-{n}"}]
                },
                "script": {
                    "actions": {
                        "onRun": {"command": "sh", "args": ["-c", "echo frame {{Task.Param.Frame}}"]}
                    }
                },
            }
        ],
    }


async def test_array_job_of_50_tasks(farm: Client) -> None:
    job = await farm.jobs.submit_template(_frames_template(50))
    result = await farm.jobs.wait(job.id, timeout=110, max_interval=1)
    assert result.status is JobStatus.SUCCEEDED, result.job.reason
    assert dict(result.job.task_counts) == {"succeeded": 50}
    # one Slurm array, not 50 jobs
    driver = farm.driver
    assert isinstance(driver, SlurmDriver)
    assert {r.array_job_id for r in driver.store.lookup(job.id) or ()} == {int(job.id)}
    tasks = await farm.jobs.tasks(job.id)
    assert [t.id for t in tasks] == [str(i) for i in range(50)]
    assert [t.parameters["Frame"] for t in tasks] == list(range(1, 51))
    assert all(t.status is JobStatus.SUCCEEDED and t.exit_code == 0 for t in tasks)
    text = await farm.logs.read(job.id, task="41")
    assert text.strip() == "frame 42"
    lines = await farm.logs.read(job.id)
    assert sorted(lines.split()[1::2], key=int) == [str(i) for i in range(1, 51)]


def _two_steps(fail_frame: int | None = None) -> dict[str, object]:
    render = "echo frame {{Task.Param.Frame}} $(date +%s.%N)"
    if fail_frame is not None:
        render += f"; [ {{{{Task.Param.Frame}}}} -ne {fail_frame} ]"
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "two-steps",
        "steps": [
            {
                "name": "Render",
                "parameterSpace": {
                    "taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": "1-3"}]
                },
                "script": {"actions": {"onRun": {"command": "sh", "args": ["-c", render]}}},
            },
            {
                "name": "Encode",
                "dependencies": [{"dependsOn": "Render"}],
                "script": {"actions": {"onRun": {"command": "sh", "args": ["-c", "echo encode $(date +%s.%N)"]}}},
            },
        ],
    }


async def test_multi_step_template_is_a_chain_of_arrays(farm: Client) -> None:
    job = await farm.jobs.submit_template(_two_steps())
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    assert result.status is JobStatus.SUCCEEDED, result.job.reason
    assert dict(result.job.task_counts) == {"succeeded": 4}
    tasks = await farm.jobs.tasks(job.id)
    assert [(t.id, t.step) for t in tasks] == [
        ("Render/0", "Render"), ("Render/1", "Render"), ("Render/2", "Render"), ("Encode/0", "Encode")
    ]
    assert [t.parameters.get("Frame") for t in tasks[:3]] == [1, 2, 3]
    # Encode ran after every Render task had ended
    times = {}
    for task in tasks:
        text = await farm.logs.read(job.id, task=task.id)
        times[task.id] = float(text.split()[-1])
    assert times["Encode/0"] > max(times[f"Render/{i}"] for i in range(3))
    # the later step's Slurm job is part of this Job, not a job of its own
    async with farm.jobs.list(name=result.job.name) as it:
        assert [j.id async for j in it if j.created_at and j.created_at >= result.job.created_at] == [job.id]


async def test_multi_step_failure_and_cancel(farm: Client) -> None:
    failing = await farm.jobs.submit_template(_two_steps(fail_frame=2))
    result = await farm.jobs.wait(failing.id, timeout=90, max_interval=0.5)
    assert result.status is JobStatus.FAILED
    assert dict(result.job.task_counts) == {"succeeded": 2, "failed": 1, "canceled": 1}
    assert [t.id for t in result.failed_tasks] == ["Render/1"]
    held = await farm.jobs.submit_template(_two_steps(), paused=True)
    assert (await farm.jobs.get(held.id)).status is JobStatus.SUSPENDED
    await farm.jobs.cancel(held.id)
    result = await farm.jobs.wait(held.id, timeout=60, max_interval=0.5)
    assert result.status is JobStatus.CANCELED
    assert dict(result.job.task_counts) == {"canceled": 4}


# -- dependencies, holds, cancel ---------------------------------------------------


async def test_dependency_chain_is_afterok(farm: Client) -> None:
    label = tag()
    a, b, c = await farm.jobs.submit(
        [
            JobSpec(command=["sh", "-c", "sleep 1"], id=f"{label}-a"),
            JobSpec(command=["true"], id=f"{label}-b", depends_on=[f"{label}-a"]),
            JobSpec(command=["true"], id=f"{label}-c", depends_on=[f"{label}-b"]),
        ]
    )
    # batch-local ids were mapped to Slurm's numeric ids
    assert b.depends_on == (a.id,) and c.depends_on == (b.id,)
    got_c = await farm.jobs.get(c.id)
    assert got_c.status is JobStatus.PENDING and got_c.depends_on == (b.id,)
    assert "Dependency" in (got_c.reason or "")
    assert "afterok" in got_c.raw["dependency"]
    results = [await farm.jobs.wait(j.id, timeout=90, max_interval=0.5) for j in (a, b, c)]
    assert [r.status for r in results] == [JobStatus.SUCCEEDED] * 3
    assert results[1].job.started_at >= results[0].job.finished_at  # type: ignore[operator]
    assert results[2].job.started_at >= results[1].job.finished_at  # type: ignore[operator]


async def test_hold_and_release(farm: Client) -> None:
    held = await farm.jobs.start(["true"], paused=True)
    assert held.status is JobStatus.SUSPENDED
    await anyio.sleep(1.5)  # several scheduler ticks: a held job must not start
    got = await farm.jobs.get(held.id)
    assert got.status is JobStatus.SUSPENDED and got.raw["state_reason"] == "JobHeldUser"
    assert "held" in await farm.jobs.explain(held.id)
    # hold a pending job (waiting on a dependency), then release it
    blocker = await farm.jobs.start(["sleep", "2"])
    pending = await farm.jobs.start(["true"], depends_on=[blocker.id])
    await farm.jobs.pause(pending.id)
    assert (await farm.jobs.get(pending.id)).status is JobStatus.SUSPENDED
    await farm.jobs.resume([held.id, pending.id])
    for job in (held, pending):
        assert (await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)).status is JobStatus.SUCCEEDED


async def test_cancel_running_and_pending(farm: Client) -> None:
    running = await farm.jobs.start(["sleep", "300"])
    pending = await farm.jobs.start(["true"], depends_on=[running.id])
    await until_status(farm, running.id, JobStatus.RUNNING)
    await farm.jobs.cancel(pending.id)
    assert (await farm.jobs.wait(pending.id, timeout=30, max_interval=0.5)).status is JobStatus.CANCELED
    assert (await farm.jobs.get(running.id)).status is JobStatus.RUNNING
    await farm.jobs.cancel(running.id)
    result = await farm.jobs.wait(running.id, timeout=30, max_interval=0.5)
    assert result.status is JobStatus.CANCELED
    # cancelling again is harmless
    await farm.jobs.cancel(running.id)


# -- exit codes and signals --------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "status", "code"),
    [
        (["true"], JobStatus.SUCCEEDED, 0),
        (["sh", "-c", "exit 3"], JobStatus.FAILED, 3),
        (["sh", "-c", "kill -TERM $$"], JobStatus.FAILED, -signal.SIGTERM),
    ],
    ids=["exit0", "exit3", "sigterm"],
)
async def test_exit_codes(farm: Client, command: list[str], status: JobStatus, code: int) -> None:
    job = await farm.jobs.start(command)
    result = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
    assert result.status is status
    assert result.job.exit_code == code


async def test_signal_reaches_a_trap(farm: Client) -> None:
    script = "trap 'echo got USR1; exit 7' USR1; echo ready; while :; do sleep 0.1; done"
    job = await farm.jobs.start(["sh", "-c", script])
    await until_status(farm, job.id, JobStatus.RUNNING)
    await until_log(farm, job.id, "ready")
    await farm.jobs.send_signal(job.id, signal.SIGUSR1)
    result = await farm.jobs.wait(job.id, timeout=30, max_interval=0.5)
    assert result.job.exit_code == 7
    assert "got USR1" in await farm.logs.read(job.id)


async def test_str_command_runs_through_sh_and_argv_is_quoted(farm: Client) -> None:
    weird = "it's $HOME; `echo no` \"q\" \\ \n end"
    a = await farm.jobs.start(["printf", "%s|", weird, "*"], cwd="/")
    b = await farm.jobs.start("echo $((6 * 7)) from $0", env={"X": "1"})
    for job in (a, b):
        assert (await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)).status is JobStatus.SUCCEEDED
    assert (await farm.logs.read(a.id)).rstrip("\n") == f"{weird}|*|"
    assert (await farm.logs.read(b.id)).strip() == "42 from /bin/sh"


# -- exec / attach ---------------------------------------------------------------


async def _collect(stream: StdStream) -> bytes:
    return b"".join((await read_all(stream)).values())


async def test_exec_without_and_with_tty(farm: Client) -> None:
    job = await farm.jobs.start(["sleep", "120"])
    await until_status(farm, job.id, JobStatus.RUNNING)
    try:
        with anyio.fail_after(60):
            command = ["sh", "-c", "tty; echo job=$SLURM_JOB_ID; echo oops >&2; exit 4"]
            async with farm.jobs.exec(job.id, command, stdin=False) as s:
                out = await read_all(s)
                assert await s.wait() == 4
            assert out[1] == f"not a tty\njob={job.id}\n".encode()
            assert out[2] == b"oops\n"  # and not srun's own "task 0: Exited with exit code 4"
            async with farm.jobs.exec(
                job.id, ["sh", "-c", "tty; stty size; read x; echo got=$x"], tty=True, stdin=True
            ) as s:
                await anyio.sleep(0.5)
                await s.write_in(b"hello\n")
                text = await _collect(s)
            assert b"/dev/pts/" in text
            assert b"24 80" in text
            assert b"got=hello" in text
            # close_in: EOF on a pipe, the terminal's EOF character on a tty
            for tty in (False, True):
                async with farm.jobs.exec(job.id, ["cat"], tty=tty, stdin=True) as s:
                    await s.write_in(b"abc\n")
                    await s.close_in()
                    text = await _collect(s)
                    assert await s.wait() == 0
                assert b"abc" in text
    finally:
        await farm.jobs.cancel(job.id)


async def test_exec_tty_resize(farm: Client) -> None:
    job = await farm.jobs.start(["sleep", "120"])
    await until_status(farm, job.id, JobStatus.RUNNING)
    try:
        with anyio.fail_after(60):
            async with farm.jobs.exec(job.id, ["sh"], tty=True, stdin=True, size=(30, 100)) as s:
                await s.write_in(b'stty size; echo "MA""RK1"\n')
                out = b""
                while b"MARK1" not in out:
                    msg = await s.read_out()
                    assert msg is not None
                    out += msg.data
                assert b"30 100" in out
                await s.resize(rows=40, cols=120)
                # the new size travels srun -> slurmstepd -> the remote pty: ask until it lands
                seen = b""
                for attempt in range(20):
                    # the quotes keep the terminal's echo of the typed line from matching
                    await s.write_in(f'stty size; echo "MA""RK{attempt}x"\n'.encode())
                    while f"MARK{attempt}x".encode() not in seen:
                        msg = await s.read_out()
                        assert msg is not None
                        seen += msg.data
                    if b"40 120" in seen:
                        break
                    await anyio.sleep(0.2)
                assert b"40 120" in seen
                await s.write_in(b"exit 5\n")
                while await s.read_out() is not None:
                    pass
                assert await s.wait() == 5
    finally:
        await farm.jobs.cancel(job.id)


async def test_port_forward_reaches_the_job(farm: Client) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = (
        "import socket; s = socket.socket(); "
        "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('0.0.0.0', {port})); s.listen(); print('ready', flush=True); "
        "c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()"
    )
    job = await farm.jobs.start(["/usr/bin/python3", "-c", server])
    try:
        await until_log(farm, job.id, "ready")
        with anyio.fail_after(30):
            async with (
                farm.jobs.port_forward(job.id, job_port=port) as fwd,
                await anyio.connect_tcp("127.0.0.1", fwd.local_port) as conn,
            ):
                await conn.send(b"hello job")
                assert await conn.receive() == b"HELLO JOB"
        assert (await farm.jobs.wait(job.id, timeout=30, max_interval=0.5)).status is JobStatus.SUCCEEDED
    finally:
        await farm.jobs.cancel(job.id)


async def test_exec_runs_as_the_jobs_owner(slurm_cluster: Cluster) -> None:
    # root cannot add a step to another user's job; the driver runs srun as the owner
    # (on the chroot clusters that user's srun comes back in through the sudo rule of
    # scripts/slurm/start-slurm-modern.sh, as a site's wrapped client commands would)
    url = slurm_cluster.url.split("?")[0] + f"?partition=debug&user={slurm_cluster.job_user}"
    if slurm_cluster.bin_dir:
        url += f"&bin_dir={slurm_cluster.bin_dir}"
    async with Client(url, token=slurm_cluster.job_user_token) as farm:
        job = await farm.jobs.start(["sleep", "120"], cwd="/tmp")
        assert job.owner == slurm_cluster.job_user
        try:
            await until_status(farm, job.id, JobStatus.RUNNING)
            with anyio.fail_after(60):
                async with farm.jobs.exec(job.id, ["id", "-un"]) as s:
                    out = await _collect(s)
            assert out.strip() == slurm_cluster.job_user.encode()
        finally:
            await farm.jobs.cancel(job.id)


async def test_attach_reaches_srun_steps_not_the_batch_step(farm: Client) -> None:
    # the job itself is its batch step, which writes to files: attach.batch_step is
    # refused; a step srun launched inside the job is reached with step= (sattach)
    assert Capability.ATTACH_STEP in farm.capabilities
    assert Capability.ATTACH_BATCH_STEP not in farm.capabilities
    loop = "for i in $(seq 1 300); do echo tick $i; sleep 0.2; done"
    job = await farm.jobs.start(["srun", "--quiet", "sh", "-c", loop])
    try:
        await until_log(farm, job.id, "tick 2")  # step 0 exists and writes
        with pytest.raises(UnsupportedError, match=r"attach\.batch_step") as info:
            async with farm.jobs.attach(job.id):
                pass
        assert info.value.driver == "slurm" and "step=" in str(info.value)
        with pytest.raises(InvalidSpec, match="step"):
            async with farm.jobs.attach(job.id, step="batch"):
                pass
        with anyio.fail_after(60):
            async with farm.jobs.attach(job.id, step="0", stdin=False) as stream:
                seen = b""
                while b"tick" not in seen:
                    msg = await stream.read_out()
                    assert msg is not None
                    seen += msg.data
        # leaving detaches: the job goes on
        assert (await farm.jobs.get(job.id)).status is JobStatus.RUNNING
    finally:
        await farm.jobs.cancel(job.id)


# -- resilience and auth -----------------------------------------------------------


async def test_rest_down_mid_wait_resumes(farm: Client, slurm_cluster: Cluster) -> None:
    def _rest(action: str) -> None:
        slurm_cluster.run_script(action)

    jobs = await farm.jobs.submit([JobSpec(command=["sh", "-c", f"sleep 3; exit {i}"]) for i in range(3)])
    results: dict[str, object] = {}

    async def wait(job_id: str) -> None:
        results[job_id] = await farm.jobs.wait(job_id, timeout=100, max_interval=1)

    try:
        async with anyio.create_task_group() as tg:
            for job in jobs:
                tg.start_soon(wait, job.id)
            await anyio.sleep(0.5)
            await anyio.to_thread.run_sync(_rest, "stop-rest")
            await anyio.sleep(6)  # the jobs finish while the REST API is away
            await anyio.to_thread.run_sync(_rest, "start-rest")
    finally:
        await anyio.to_thread.run_sync(_rest, "start-rest")
    got = {jid: (r.status, r.job.exit_code) for jid, r in results.items()}  # type: ignore[attr-defined]
    assert got == {
        jobs[0].id: (JobStatus.SUCCEEDED, 0),
        jobs[1].id: (JobStatus.FAILED, 1),
        jobs[2].id: (JobStatus.FAILED, 2),
    }


async def test_bad_or_missing_token_is_auth_error(slurm_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    base = slurm_cluster.url.split("?")[0]
    with pytest.raises(AuthError, match="rejected"):
        async with Client(f"{base}?user=root", token="not-a-jwt"):
            pass
    monkeypatch.delenv("SLURM_JWT", raising=False)
    with pytest.raises(AuthError, match="SLURM_JWT"):
        async with Client(f"{base}?user=root"):
            pass
    monkeypatch.setenv("SLURM_JWT", slurm_cluster.token)
    async with Client(f"{base}?user=root") as farm:  # the environment's token works
        assert farm.driver_name.startswith("slurm")


def _new_token(cluster: Cluster, lifespan: int) -> str:
    out = subprocess.run(
        [cluster.command("scontrol"), "token", "username=root", f"lifespan={lifespan}"],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip().removeprefix("SLURM_JWT=")


async def test_expired_token_is_reloaded_from_token_file(slurm_cluster: Cluster) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        token_file = Path(tmp) / "jwt"
        token_file.write_text(f"SLURM_JWT={_new_token(slurm_cluster, 2)}\n")  # as `scontrol token` prints it
        async with Client(f"{slurm_cluster.base}?partition=debug&user=root&token_file={token_file}") as farm:
            await anyio.sleep(3.5)  # the first token has expired
            token_file.write_text(_new_token(slurm_cluster, 600))  # what a rotating agent does
            job = await farm.jobs.start(["true"])
            assert (await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)).status is JobStatus.SUCCEEDED


async def test_unknown_job_and_batch_poll_is_one_request(farm: Client) -> None:
    driver = farm.driver
    assert isinstance(driver, SlurmDriver)
    jobs = await farm.jobs.submit([JobSpec(command=["true"]) for _ in range(5)])
    for job in jobs:
        await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
    ids = [j.id for j in jobs] + ["999999999"]
    await driver.get_jobs(ids)  # an unknown id is looked up once (in accounting, where there is one)
    before = driver.http.requests
    got = await driver.get_jobs(ids)
    # a round in which nothing changed: one request (a conditional GET /jobs)
    assert driver.http.requests - before == 1
    assert set(got) == {j.id for j in jobs}


# -- pools and workers -----------------------------------------------------------


async def test_pools_and_workers(farm: Client) -> None:
    pools = await farm.pools.list()
    assert [p.name for p in pools] == ["debug"] and pools[0].slots == 32
    assert (await farm.pools.capacity())["debug"] > 0
    with pytest.raises(UnsupportedError):
        await farm.pools.create("gpu", slots=2)
    workers = await farm.workers.list()
    assert [(w.name, w.enabled, w.pool) for w in workers] == [("localhost", True, "debug")]
    await farm.workers.disable(names=["localhost"])
    try:
        (node,) = await farm.workers.list()
        assert not node.enabled and node.reason
        assert (await farm.pools.capacity())["debug"] == 0
    finally:
        await farm.workers.enable(names=["localhost"])
    (node,) = await farm.workers.list()
    assert node.enabled


async def test_unix_socket_transport(slurm_cluster: Cluster) -> None:
    if slurm_cluster.name != "22.05":
        pytest.skip("the transport does not depend on the API version: run against the host cluster")
    # a second slurmrestd of the same cluster on a unix socket; it must not run as root,
    # so its directory must be reachable by its user (pytest's tmp_path is not)
    with tempfile.TemporaryDirectory(prefix="aiofarm-rest-") as tmp:
        os.chmod(tmp, 0o777)
        await _unix_round_trip(slurm_cluster, Path(tmp) / "slurmrestd.sock")


def _wait_for_path(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


async def _unix_round_trip(slurm_cluster: Cluster, sock: Path) -> None:
    argv = ["/usr/sbin/slurmrestd", "-u", "slurmrest", "-s", "openapi/v0.0.38", "-a", "rest_auth/jwt", f"unix:{sock}"]
    async with await anyio.open_process(
        argv, env={"SLURM_JWT": "daemon", "PATH": "/usr/bin:/bin"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            await anyio.to_thread.run_sync(_wait_for_path, sock)
            async with Client(f"slurm+unix://{sock}?partition=debug&user=root", token=slurm_cluster.token) as farm:
                job = await farm.jobs.start(["sh", "-c", "echo over unix"])
                result = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
                assert result.status is JobStatus.SUCCEEDED
                assert (await farm.logs.read(job.id)).strip() == "over unix"
        finally:
            if proc.returncode is None:
                proc.terminate()
            await proc.wait()


def _square(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return x * x


async def test_functions_map_over_the_cluster(farm: Client) -> None:
    with tempfile.TemporaryDirectory(prefix="aiofarm-fn-") as root:
        from aiofarm.functions import Functions

        functions = Functions(farm, root=root)  # on the filesystem the node shares
        fn = functions.create(_square, timeout=60)
        batch = await fn.map([[i] for i in (-1, 2, 3)])
        assert batch.is_success
        results = {}
        async for job in fn.as_completed(batch.jobs):
            try:
                results[job.id] = await functions.result(job)
            except Exception as exc:
                results[job.id] = type(exc).__name__
        assert [results[j.id] for j in batch.jobs] == ["RemoteError", 4, 9]


# -- last: it restarts the cluster -------------------------------------------------


async def test_job_that_left_slurmctld_keeps_its_last_state(farm: Client, slurm_cluster: Cluster) -> None:
    if slurm_cluster.accounting:
        pytest.skip("with accounting the job's history comes from slurmdbd (test_versions.py)")
    ok = await farm.jobs.start(["sh", "-c", "exit 3"])
    assert (await farm.jobs.wait(ok.id, timeout=60, max_interval=0.5)).job.exit_code == 3
    # a restart with clean state makes slurmctld forget every job at once, as
    # MinJobAge does for old ones: GET /job/{id} now answers error 2017
    await anyio.to_thread.run_sync(slurm_cluster.run_script, "restart")
    driver = farm.driver
    assert isinstance(driver, SlurmDriver) and driver.api is not None
    with pytest.raises(SlurmAPIError) as info:
        await driver.http.call("GET", driver.api.path(f"/job/{ok.id}"))
    assert info.value.number == 2017
    got = await farm.jobs.get(ok.id)
    assert got.status is JobStatus.FAILED and got.exit_code == 3
    assert (await farm.jobs.wait(ok.id, timeout=10)).status is JobStatus.FAILED
    assert await farm.logs.read(ok.id) == ""  # its log files are still read
