"""``farm.backend`` on Deadline Cloud (farms, queues, fleets, storage profiles, auth
status), the ``aiofarm deadline`` commands, true history and exit codes, and the
controls Deadline honours (stop_work) or cannot (UnsupportedError)."""

from __future__ import annotations

import json
import sys

import anyio
import attrs
import pytest
from click.testing import CliRunner

import aiofarm
from aiofarm import JobStatus
from aiofarm.cli.app import cli
from aiofarm.errors import UnsupportedError
from aiofarm.openjd.loading import template_spec
from tests.deadline.helpers import add_storage_profile
from tests.fakes.deadline.process import FakeDeadlineProcess

pytestmark = pytest.mark.anyio

FRAMES = {
    "specificationVersion": "jobtemplate-2023-09",
    "name": "frames",
    "steps": [
        {
            "name": "Render",
            "parameterSpace": {
                "taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": "1-3"}]
            },
            "script": {"actions": {"onRun": {"command": "render"}}},
        }
    ],
}


async def _profile(url: str, fake: FakeDeadlineProcess) -> str:
    locations = [{"name": "Projects", "path": "/mnt/projects", "type": "SHARED"}]
    return await add_storage_profile(url, fake, "linux render", locations)


async def test_discovery_with_two_farms(fake: FakeDeadlineProcess, url: str) -> None:
    other = fake.admin("farm", {"displayName": "second farm", "queue": "q2", "workers": 3})
    profile = await _profile(url, fake)
    async with aiofarm.Client(url) as farm:
        farms = {f.id: f.name for f in await farm.backend.farms()}
        assert farms == {fake.farm_id: "fake farm", other["farmId"]: "second farm"}
        assert [q.id for q in await farm.backend.queues()] == [fake.queue_id]
        (q2,) = await farm.backend.queues(other["farmId"])
        assert (q2.id, q2.name, q2.farm_id) == (other["queueId"], "q2", other["farmId"])
        (f2,) = await farm.backend.fleets(other["farmId"])
        assert (f2.id, f2.worker_count) == (other["fleetId"], 3)
        (sp,) = await farm.backend.storage_profiles()
        assert (sp.id, sp.os_family, dict(sp.locations)) == (
            profile, "LINUX", {"Projects": "/mnt/projects"},
        )  # fmt: skip
        status = await farm.backend.auth_status()
        assert status.authenticated and status.api_available and status.source == "env"
        assert "secret" not in repr(status).lower()
    # a queue of the second farm in the URL works as well
    async with aiofarm.Client(url.replace(fake.farm_id, other["farmId"]).replace(
        fake.queue_id, other["queueId"])) as farm:  # fmt: skip
        assert [p.name for p in await farm.pools.list()] == ["q2"]
    async with aiofarm.Client("dummy://") as farm:
        with pytest.raises(UnsupportedError) as err:
            farm.backend  # noqa: B018
        assert err.value.driver == "dummy"


async def test_auth_status_with_refused_credentials(
    fake: FakeDeadlineProcess, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aiofarm.drivers.deadline.discovery import connect

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "DENYME")
    async with connect(region="us-west-2", endpoint_url=fake.endpoint) as backend:
        status = await backend.auth_status()
    assert not status.authenticated and status.api_available
    assert status.message is not None and "UnrecognizedClientException" in status.message


def _cli(fake: FakeDeadlineProcess, url: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["--url", url, "deadline", *args], catch_exceptions=False)
    return result.exit_code, result.output


def test_cli_farms_queues_fleets_auth_status(fake: FakeDeadlineProcess, url: str) -> None:
    other = fake.admin("farm", {"displayName": "second farm"})
    code, out = _cli(fake, url, "farms", "--json")
    assert code == 0
    assert {f["id"] for f in json.loads(out)} == {fake.farm_id, other["farmId"]}
    code, out = _cli(fake, url, "queues")
    assert code == 0 and fake.queue_id in out and "fake queue" in out and "ID" in out
    code, out = _cli(fake, url, "--farm", other["farmId"], "fleets", "--json")
    assert code == 0 and [f["id"] for f in json.loads(out)] == [other["fleetId"]]
    code, out = _cli(fake, url, "auth-status")
    assert code == 0 and "authenticated: True" in out and "source: env" in out
    code, out = _cli(fake, url, "--farm", "farm-nope", "queues")
    assert code == 2


async def test_history_and_exit_code_of_a_failed_job(fake: FakeDeadlineProcess, url: str) -> None:
    fake.fail({"task": {"Frame": 2}, "exit_code": 3, "times": 1}, {"task": {"Frame": 3}, "exit_code": 7})
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.submit_template(FRAMES, max_retries_per_task=1)
        fake.advance(4)
        result = await farm.jobs.wait(job.id, timeout=30)
        assert fake.stats().get("ListSessionActions", 0) == 0  # never in the polling path
        assert result.status is JobStatus.FAILED
        assert result.job.exit_code == 7 and result.job.history == ()
        described = await farm.jobs.get(job.id, history=True)
        assert described.exit_code == 7
        statuses = [t.status for t in described.history]
        assert statuses[0] is JobStatus.PENDING and statuses[1] is JobStatus.RUNNING
        assert statuses[-1] is JobStatus.FAILED
        assert "exit code 7" in (described.history[-1].reason or "")
        # the first attempt of frame 2 failed and was retried
        assert any("attempt failed" in (t.reason or "") for t in described.history)
        times = [t.time for t in described.history]
        assert times == sorted(times)
        # `aiofarm status` shows the same history and exit code
        # (a process of its own: the CLI handles signals, which only the main thread can)
        shown = await anyio.run_process(
            [sys.executable, "-m", "aiofarm.cli", "--url", url, "status", job.id, "--json"], check=False
        )
        assert shown.returncode == 0, shown.stderr.decode()
        doc = json.loads(shown.stdout)
        assert doc["exit_code"] == 7 and len(doc["history"]) == len(described.history)
        ok = await farm.jobs.start(command=["true"])
        fake.advance(2)
        await farm.jobs.wait(ok.id, timeout=30)
        done = await farm.jobs.get(ok.id, history=True)
        assert [t.status for t in done.history] == [
            JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED,
        ]  # fmt: skip
        assert done.exit_code == 0


async def _task_states(farm: aiofarm.Client, job_id: str) -> list[str]:
    return sorted(t.status.value for t in await farm.jobs.tasks(job_id))


async def test_pause_and_cancel_without_stopping_work(fake: FakeDeadlineProcess, url: str) -> None:
    async with aiofarm.Client(url) as farm:
        (job,) = await farm.jobs.submit([attrs.evolve(template_spec(FRAMES), max_workers=1)])
        fake.advance(1)  # one task runs, two wait
        assert await _task_states(farm, job.id) == ["pending", "pending", "running"]
        await farm.jobs.pause(job.id, stop_work=False)
        assert await _task_states(farm, job.id) == ["running", "suspended", "suspended"]
        fake.advance(1)  # the running task ends on its own
        assert await _task_states(farm, job.id) == ["succeeded", "suspended", "suspended"]
        assert (await farm.jobs.get(job.id)).status is JobStatus.SUSPENDED
        await farm.jobs.resume(job.id)
        fake.advance(1)
        assert await _task_states(farm, job.id) == ["pending", "running", "succeeded"]
        await farm.jobs.cancel(job.id, stop_work=False)
        assert await _task_states(farm, job.id) == ["canceled", "running", "succeeded"]
        fake.advance(1)
        assert await _task_states(farm, job.id) == ["canceled", "succeeded", "succeeded"]
        assert (await farm.jobs.get(job.id)).status is JobStatus.CANCELED

        # Deadline's own way (stop_work None or True): running tasks are interrupted
        other = await farm.jobs.submit_template(FRAMES)
        fake.advance(1)
        await farm.jobs.pause(other.id)
        assert await _task_states(farm, other.id) == ["suspended"] * 3


async def test_what_deadline_cannot_do_is_refused(fake: FakeDeadlineProcess, url: str) -> None:
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.start(command=["true"])
        for call, feature in (
            (lambda: farm.jobs.start(command=["sh"], tty=True), "submit.tty"),
            (lambda: farm.jobs.start(command=["sh"], stdin=True), "submit.stdin"),
            (lambda: farm.jobs.send_signal(job.id), "signal"),
            (lambda: farm.jobs.explain(job.id), "explain"),
            (lambda: farm.pools.create("gpu"), "pools_manage"),
        ):
            with pytest.raises(UnsupportedError) as err:
                await call()
            assert err.value.driver == "deadline" and err.value.feature.startswith(feature)
        for opener in (
            lambda: farm.jobs.attach(job.id),
            lambda: farm.jobs.exec(job.id, ["sh"]),
            lambda: farm.jobs.port_forward(job.id, job_port=80),
        ):
            with pytest.raises(UnsupportedError):
                async with opener():
                    pass


async def test_path_parameters_are_mapped_by_the_client_rules(
    fake: FakeDeadlineProcess, url: str
) -> None:
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "paths",
        "parameterDefinitions": [
            {"name": "Scene", "type": "PATH"},
            {"name": "Out", "type": "PATH", "default": "/proj/renders/out"},
            {"name": "Label", "type": "STRING", "default": "Z:\\not\\a\\path"},
        ],
        "steps": [{"name": "s", "script": {"actions": {"onRun": {"command": "true"}}}}],
    }
    rules = [
        aiofarm.PathMappingRule("windows", "Z:\\", "/mnt/z"),
        aiofarm.PathMappingRule("posix", "/proj", "/mnt/proj"),
    ]
    async with aiofarm.Client(url, path_mapping=rules) as farm:
        job = await farm.jobs.submit_template(template, parameters={"Scene": "Z:\\shots\\a.ma"})
    params = {k: next(iter(v.values())) for k, v in job.raw["parameters"].items()}
    assert params["Scene"] == "/mnt/z/shots/a.ma" and params["Out"] == "/mnt/proj/renders/out"
    assert params.get("Label", "Z:\\not\\a\\path") == "Z:\\not\\a\\path"  # not a PATH
