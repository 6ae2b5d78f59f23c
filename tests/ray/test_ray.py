"""The Ray driver against the run's real Ray 2.60 head (token auth on; see conftest.py)."""

from __future__ import annotations

import logging
import os
import signal
import uuid
from pathlib import Path

import anyio
import pytest

from aiofarm import (
    AuthError,
    Client,
    FarmError,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    JobSpec,
    JobStatus,
    Resources,
    UnsupportedError,
)
from aiofarm.drivers.ray import wire
from aiofarm.drivers.ray.http import RayHTTP
from tests.backends.ray import Head
from tests.waits import tag, until_status

pytestmark = [pytest.mark.anyio, pytest.mark.ray]


@pytest.mark.parametrize(
    ("command", "status", "code"),
    [
        (["true"], JobStatus.SUCCEEDED, 0),
        (["sh", "-c", "exit 3"], JobStatus.FAILED, 3),
        # a sequence is exec'd: the job's process is the command, its signal the job's
        (["sh", "-c", "kill -KILL $$"], JobStatus.FAILED, -signal.SIGKILL),
    ],
)
async def test_exit_codes(farm: Client, command: list[str], status: JobStatus, code: int) -> None:
    job = await farm.jobs.start(command)
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    assert (result.status, result.job.exit_code) == (status, code)
    if status is JobStatus.FAILED:
        assert result.job.reason and f"exit code {code}" in result.job.reason
        assert [t.exit_code for t in result.failed_tasks] == [code]


async def test_metadata_env_resources_and_quoting(farm: Client, ray_head: Head) -> None:
    label = tag()
    job = await farm.jobs.start(
        ["sh", "-c", 'echo "$GREETING" "$1"', "sh", "it's a 'quoted' $HOME"],
        name=f"{label}-named", tags=[label, "b"], description="what it does", priority=70,
        env={"GREETING": "hi there"}, resources=Resources(cpu=0.5, memory_mb=64),
    )  # fmt: skip
    await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    assert (await farm.logs.read(job.id)).splitlines() == ["hi there it's a 'quoted' $HOME"]
    got = await farm.jobs.get(job.id)
    assert (got.name, got.tags, got.description, got.priority) == (f"{label}-named", (label, "b"), "what it does", 70)
    assert got.owner and got.created_at and got.finished_at and got.finished_at >= got.created_at
    assert wire.requested(got.raw) == {"cpu": 0.5, "memory_mb": 64}
    # Ray's own view of it: metadata as tags, env in runtime_env
    assert got.raw["metadata"]["tags"] == f'["{label}", "b"]'
    assert got.raw["runtime_env"]["env_vars"] == {"GREETING": "hi there"}
    # a str command runs through /bin/sh -c as given
    shell = await farm.jobs.start("echo $((6 * 7)) | tr 4 X")
    await farm.jobs.wait(shell.id, timeout=90, max_interval=0.5)
    assert await farm.logs.read(shell.id) == "X2\n"


async def test_working_dir_module_is_importable(farm: Client, tmp_path: Path) -> None:
    (tmp_path / "pkg_for_ray").mkdir()
    (tmp_path / "pkg_for_ray" / "__init__.py").write_text("ANSWER = 42\n")
    (tmp_path / "data.txt").write_text("from the client\n")
    job = await farm.jobs.start(
        ["python", "-c", "import pkg_for_ray; print(pkg_for_ray.ANSWER, open('data.txt').read().strip())"],
        cwd=tmp_path,
    )
    result = await farm.jobs.wait(job.id, timeout=120, max_interval=0.5)
    assert result.status is JobStatus.SUCCEEDED, await farm.logs.read(job.id)
    assert await farm.logs.read(job.id) == "42 from the client\n"
    # never a raw local path: a content-addressed package in the cluster
    assert result.job.raw["runtime_env"]["working_dir"].startswith("gcs://_ray_pkg_")


async def test_working_dir_over_rays_limit_is_refused(farm: Client, tmp_path: Path) -> None:
    (tmp_path / "big.bin").touch()
    os.truncate(tmp_path / "big.bin", 101 * 2**20)  # sparse: refused before it is read
    with pytest.raises(InvalidSpec) as err:
        await farm.jobs.start(["true"], cwd=tmp_path)
    assert err.value.field == "cwd" and "100 MiB" in err.value.reason


async def test_duplicate_submit_is_one_job(farm: Client) -> None:
    job_id = f"dup-{tag()}"
    spec = JobSpec(command=["sh", "-c", "echo once"], id=job_id, name="dup")
    (first,) = await farm.jobs.submit([spec])
    assert first.id == job_id
    # the same id again from the client: refused, naming the field
    with pytest.raises(InvalidSpec) as err:
        await farm.jobs.submit([spec])
    assert err.value.field == "specs[0].id"
    # a retried submit at the driver (its first answer lost): the same job, not a second
    again = await farm.driver.submit([spec])
    assert [j.id for j in again] == [job_id]
    # another job under a taken id: refused
    with pytest.raises(InvalidSpec):
        await farm.driver.submit([JobSpec(command=["false"], id=job_id)])
    async with farm.jobs.list(name="dup") as it:
        assert [j.id async for j in it if j.id == job_id] == [job_id]
    await farm.jobs.wait(job_id, timeout=90, max_interval=0.5)
    assert await farm.logs.read(job_id) == "once\n"


async def test_stop_running_and_pending_jobs_reports_the_truth(farm: Client, ray_head: Head) -> None:
    running = await farm.jobs.start(["sleep", "300"])
    await until_status(farm, running.id, JobStatus.RUNNING)
    await farm.jobs.cancel(running.id)
    # cancel returns once the stop held: the state is final already
    got = await farm.jobs.get(running.id)
    assert got.status is JobStatus.CANCELED and got.finished_at is not None

    # pending because its supervisor is only starting: the stop is re-sent until it holds
    fresh = await farm.jobs.start(["sleep", "300"])
    await farm.jobs.cancel(fresh.id)
    assert (await farm.jobs.get(fresh.id)).status is JobStatus.CANCELED

    # pending for resources the cluster does not have: Ray says "stopped" and leaves
    # it PENDING; the client layer re-sends the stop for its retry attempts, then says so
    async with ray_head.client() as impatient:
        impatient.driver.retry_attempts = 3
        starving = await impatient.jobs.start(["true"], resources=Resources(cpu=64))
        with pytest.raises(FarmError) as err:
            await impatient.jobs.cancel(starving.id)
        assert "still PENDING" in str(err.value) and starving.id in str(err.value)
        assert (await impatient.jobs.get(starving.id)).status is JobStatus.PENDING
        explained = await impatient.jobs.explain(starving.id)
        assert "waiting for resources" in explained and '"cpu": 64' in explained


async def test_delete_stops_then_forgets(farm: Client) -> None:
    job = await farm.jobs.start(["sleep", "300"])
    await until_status(farm, job.id, JobStatus.RUNNING)
    await farm.jobs.delete(job.id)  # Ray refuses to delete a running job: stopped first
    with pytest.raises(JobNotFound):
        await farm.jobs.get(job.id)
    with pytest.raises(JobNotFound):
        await farm.jobs.cancel(f"nope-{tag()}")


async def test_unsupported_operations_name_the_driver(farm: Client) -> None:
    job = await farm.jobs.start(["sleep", "300"])
    try:
        await until_status(farm, job.id, JobStatus.RUNNING)
        for call in (
            lambda: farm.jobs.pause(job.id),
            lambda: farm.jobs.resume(job.id),
            lambda: farm.jobs.retry(job.id),
            lambda: farm.jobs.update(job.id, priority=1),
            lambda: farm.jobs.send_signal(job.id, signal.SIGUSR1),
            lambda: farm.pools.create("gpu", slots=1),
        ):
            with pytest.raises(UnsupportedError) as err:
                await call()
            assert err.value.driver == "ray"
        with pytest.raises(UnsupportedError):
            async with farm.jobs.exec(job.id, ["true"]):
                pass
        with pytest.raises(UnsupportedError):
            async with farm.jobs.attach(job.id):
                pass
        with pytest.raises(UnsupportedError):
            await farm.jobs.start(["true"], paused=True)
        with pytest.raises(UnsupportedError):
            await farm.jobs.start(["true"], retries=2)
        # SIGTERM is Ray's stop
        await farm.jobs.send_signal(job.id, signal.SIGTERM)
        result = await farm.jobs.wait(job.id, timeout=60, max_interval=0.5)
        assert result.status is JobStatus.CANCELED
    finally:
        await farm.jobs.cancel(job.id)


async def test_timeout_ends_the_job(farm: Client) -> None:
    job = await farm.jobs.start(["sleep", "300"], timeout=1)
    result = await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    assert result.status is JobStatus.FAILED and result.job.exit_code == 124
    assert result.job.reason == "timed out after 1 s"


async def test_bad_or_missing_token_is_auth_error(ray_head: Head, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "not-the-token-" + uuid.uuid4().hex
    with pytest.raises(AuthError) as err:
        async with Client(ray_head.url, token=secret):
            pass
    assert "403" in str(err.value) and secret not in str(err.value) and ray_head.token not in str(err.value)
    monkeypatch.delenv("RAY_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
    monkeypatch.setenv("HOME", "/nonexistent")
    with pytest.raises(AuthError) as err:
        async with Client(ray_head.url):
            pass
    assert "401" in str(err.value)
    # the token from the environment, as Ray's own clients read it
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(Path(ray_head.state) / "token"))
    async with Client(ray_head.url) as farm:
        assert farm.driver.name == "ray"
        assert ray_head.token not in repr(farm.driver) and ray_head.token not in repr(farm.driver.http)
    monkeypatch.setenv("RAY_AUTH_TOKEN", ray_head.token)
    async with Client(ray_head.url) as farm:
        await farm.workers.list()
    # in the URL: used, and masked wherever the URL is shown
    monkeypatch.delenv("RAY_AUTH_TOKEN")
    monkeypatch.delenv("RAY_AUTH_TOKEN_PATH")
    async with Client(f"{ray_head.url}?token={ray_head.token}") as farm:
        await farm.workers.list()
        assert ray_head.token not in repr(farm) and "token=***" in repr(farm)


async def test_token_never_logged(ray_head: Head, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with ray_head.client() as farm:
        job = await farm.jobs.start(["true"])
        await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    assert ray_head.token not in caplog.text


async def test_pools_workers_and_capacity(farm: Client) -> None:
    pools = {p.name: p for p in await farm.pools.list()}
    assert pools["CPU"].slots == 4
    capacity = await farm.pools.capacity()
    assert 0 <= capacity["CPU"] <= 4
    (node,) = await farm.workers.list()
    assert node.enabled and node.status == "alive" and node.cpus == 4
    with pytest.raises(UnsupportedError):
        await farm.workers.disable(names=[node.name])


async def test_port_forward_needs_a_running_job(farm: Client) -> None:
    # forwarding itself is in the contract suite (tests/contract/test_io.py)
    job = await farm.jobs.start(["true"])
    await farm.jobs.wait(job.id, timeout=90, max_interval=0.5)
    with pytest.raises(JobNotRunning):
        await farm.driver.port_address(job.id, 8080)


def _scaled(x: int) -> tuple[int, str | None]:
    return x * 10, os.environ.get("FN_MODE")


async def test_functions_with_cpus_memory_and_env(farm: Client, tmp_path: Path) -> None:
    from aiofarm.functions import Functions

    functions = Functions(farm, root=str(tmp_path))  # this host is the node: one filesystem
    fn = functions.create(_scaled, cpus=0.5, memory_mb=32, env={"FN_MODE": "ray"})
    batch = await fn.map([[1], [2]])
    assert batch.is_success
    assert sorted(await fn.results()) == [(10, "ray"), (20, "ray")]
    raw = (await farm.jobs.get(batch.jobs[0].id)).raw
    assert wire.requested(raw) == {"cpu": 0.5, "memory_mb": 32}


async def test_one_list_request_per_poll_round(farm: Client) -> None:
    jobs = await farm.jobs.submit([JobSpec(command=["sleep", "1"]) for _ in range(3)])
    http: RayHTTP = farm.driver.http  # type: ignore[attr-defined]
    rounds, requests = farm.hub.rounds, http.requests
    async with anyio.create_task_group() as tg:
        for job in jobs:
            tg.start_soon(lambda j=job.id: farm.jobs.wait(j, timeout=90, max_interval=0.5))
    # the first fetch of the three new ids is one request, then one per round
    assert farm.hub.rounds > rounds
    assert http.requests - requests == farm.hub.rounds - rounds + 1
