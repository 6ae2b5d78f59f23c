"""The deadline driver through aiofarm.Client, against the fake service."""

from __future__ import annotations

import anyio
import pytest

import aiofarm
from aiofarm import JobStatus
from aiofarm.errors import AuthError, InvalidSpec, JobNotFound
from tests.fakes.deadline.process import FakeDeadlineProcess

pytestmark = pytest.mark.anyio

RENDER = {
    "specificationVersion": "jobtemplate-2023-09",
    "name": "Render {{Param.Shot}}",
    "parameterDefinitions": [
        {"name": "Shot", "type": "STRING", "default": "sh010"},
        {"name": "Frames", "type": "STRING", "default": "1-3"},
        {"name": "Quality", "type": "INT", "default": 5},
    ],
    "steps": [
        {
            "name": "Render",
            "parameterSpace": {
                "taskParameterDefinitions": [
                    {"name": "Frame", "type": "INT", "range": "{{Param.Frames}}"}
                ]
            },
            "script": {
                "actions": {"onRun": {"command": "render", "args": ["{{Task.Param.Frame}}"]}}
            },
        },
        {
            "name": "Encode",
            "dependencies": [{"dependsOn": "Render"}],
            "script": {"actions": {"onRun": {"command": "encode"}}},
        },
    ],
}


async def test_command_job_runs_to_success(fake: FakeDeadlineProcess, url: str) -> None:
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.start(command=["echo", "hi"], name="hello", priority=70)
        assert job.status is JobStatus.PENDING
        assert job.name == "hello" and job.priority == 70 and job.driver == "deadline"
        # submit does not wait for creation to finish: the record may still say so
        assert job.raw["lifecycleStatus"] in ("CREATE_IN_PROGRESS", "CREATE_COMPLETE")
        fake.advance(1)
        assert (await farm.jobs.get(job.id)).status is JobStatus.RUNNING
        fake.advance(1)
        result = await farm.jobs.wait(job.id, timeout=30)
        assert result.status is JobStatus.SUCCEEDED and result.failed_tasks == ()
        assert result.job.finished_at is not None
    stats = fake.stats()
    assert stats.get("GetJob", 0) == 0  # status always comes from BatchGetJob
    assert stats["CreateJob"] == 1


async def test_template_failed_tasks_with_sessions_and_logs(
    fake: FakeDeadlineProcess, url: str
) -> None:
    fake.fail({"step": "Render", "task": {"Frame": 2}})
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.submit_template(RENDER, parameters={"Shot": "sh020", "Frames": "1-3"})
        assert job.name == "Render sh020"
        fake.advance(4)
        result = await farm.jobs.wait(job.id, timeout=30)
        assert result.status is JobStatus.FAILED
        (failed,) = result.failed_tasks
        assert failed.step == "Render" and failed.parameters == {"Frame": 2}
        assert failed.exit_code == 1 and failed.attempts == 1
        assert failed.log is not None and "/session-" in failed.log
        tasks = await farm.jobs.tasks(job.id)
        by_status = sorted((t.step, t.status.value) for t in tasks)
        assert by_status == [
            ("Encode", "canceled"),
            ("Render", "failed"),
            ("Render", "succeeded"),
            ("Render", "succeeded"),
        ]
        text = await farm.logs.read(job.id)
        assert "ended: FAILED exit code 1" in text
        assert text.count("Session session-") == 3  # three Render sessions, Encode never ran
        only = await farm.logs.read(job.id, task=failed.id)
        assert failed.id in only and only.count("Session session-") == 1


async def test_list_filters_and_order(fake: FakeDeadlineProcess, url: str) -> None:
    async with aiofarm.Client(url) as farm:
        jobs = [await farm.jobs.start(command=["true"], name=f"job-{i}") for i in range(5)]
        await farm.jobs.pause(jobs[0].id)
        async with farm.jobs.list() as it:
            listed = [j.id async for j in it]
        assert listed == [j.id for j in jobs]
        async with farm.jobs.list(reverse=True) as it:
            assert [j.id async for j in it] == [j.id for j in reversed(jobs)]
        async with farm.jobs.list(statuses=[JobStatus.SUSPENDED]) as it:
            assert [j.id async for j in it] == [jobs[0].id]
        async with farm.jobs.list(name="job-3") as it:
            assert [j.name async for j in it] == ["job-3"]
    assert fake.stats().get("SearchJobs", 0) >= 4


async def test_control_pause_resume_cancel_retry_delete_update(
    fake: FakeDeadlineProcess, url: str
) -> None:
    async with aiofarm.Client(url) as farm:
        a = await farm.jobs.start(command=["true"], paused=True)
        assert a.status is JobStatus.SUSPENDED
        await farm.jobs.resume(a.id)
        assert (await farm.jobs.get(a.id)).status is JobStatus.PENDING
        await farm.jobs.pause(a.id)
        assert (await farm.jobs.get(a.id)).status is JobStatus.SUSPENDED
        await farm.jobs.cancel(a.id)
        assert (await farm.jobs.get(a.id)).status is JobStatus.CANCELED
        await farm.jobs.update(a.id, priority=10, name="renamed")
        got = await farm.jobs.get(a.id)
        assert got.priority == 10 and got.name == "renamed"

        fake.fail({"job_name": "^flaky$", "times": 1})
        b = await farm.jobs.start(command=["false"], name="flaky")
        fake.advance(2)
        assert (await farm.jobs.wait(b.id, timeout=30)).status is JobStatus.FAILED
        await farm.jobs.retry(b.id)
        assert (await farm.jobs.get(b.id)).status is JobStatus.PENDING
        fake.advance(2)
        assert (await farm.jobs.wait(b.id, timeout=30)).status is JobStatus.SUCCEEDED

        await farm.jobs.delete(b.id)
        with pytest.raises(JobNotFound):
            await farm.jobs.get(b.id)
        with pytest.raises(JobNotFound):
            await farm.jobs.cancel("job-" + "0" * 32)


async def test_retries_per_task_and_max_failed(fake: FakeDeadlineProcess, url: str) -> None:
    fake.fail({"task": {"Frame": 1}, "times": 2})
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.submit_template(
            RENDER, parameters={"Frames": "1-2"}, max_retries_per_task=2
        )
        fake.advance(8)
        result = await farm.jobs.wait(job.id, timeout=30)
        assert result.status is JobStatus.SUCCEEDED
        tasks = {t.parameters.get("Frame"): t for t in await farm.jobs.tasks(job.id)}
        assert tasks[1].attempts == 3 and tasks[2].attempts == 1


async def test_bad_inputs_are_typed_errors(fake: FakeDeadlineProcess, url: str) -> None:
    with pytest.raises(InvalidSpec) as bad_farm:
        async with aiofarm.Client("deadline://farm-nope/queue-" + "0" * 32):
            pass
    assert bad_farm.value.field == "url"
    # an unknown farm or queue in the URL: the error lists the ones these credentials see
    missing_queue = url.replace(fake.queue_id, "queue-" + "1" * 32)
    with pytest.raises(InvalidSpec) as no_queue:
        async with aiofarm.Client(missing_queue):
            pass
    assert no_queue.value.field == "url" and f"{fake.queue_id} (fake queue)" in str(no_queue.value)
    missing_farm = url.replace(fake.farm_id, "farm-" + "2" * 32)
    with pytest.raises(InvalidSpec) as no_farm:
        async with aiofarm.Client(missing_farm):
            pass
    assert f"{fake.farm_id} (fake farm)" in str(no_farm.value)
    async with aiofarm.Client(url) as farm:
        with pytest.raises(InvalidSpec) as wrong_type:
            await farm.jobs.submit_template(RENDER, parameters={"Quality": "high"})
        assert wrong_type.value.field == "parameters.Quality"
        with pytest.raises(InvalidSpec) as unknown:
            await farm.jobs.submit_template(RENDER, parameters={"Nope": 1})
        assert unknown.value.field.startswith("parameters")
        broken = {**RENDER, "steps": [{"name": "x"}]}
        with pytest.raises(InvalidSpec):
            await farm.jobs.submit_template(broken)
        with pytest.raises(JobNotFound):
            await farm.jobs.get("job-" + "3" * 32)
        with pytest.raises(JobNotFound):
            await farm.jobs.get("not-a-job-id")
        with pytest.raises(InvalidSpec):
            await farm.jobs.start(command=["echo", "{{Param.X}}"])
    assert fake.stats().get("CreateJob", 0) == 0  # all refused before reaching the service


async def test_service_side_validation_is_typed(fake: FakeDeadlineProcess, url: str) -> None:
    """Bypass the client's checks: what the service refuses still arrives typed."""
    from aiofarm.models import JobSpec

    async with aiofarm.Client(url) as farm:
        spec = JobSpec(template=RENDER, parameters={"Quality": "x"})
        with pytest.raises(InvalidSpec) as err:
            await farm.driver.submit([spec])
        assert err.value.field == "parameters.Quality"


async def test_auth_failure(
    fake: FakeDeadlineProcess, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "DENYME")
    with pytest.raises(AuthError):
        async with aiofarm.Client(url):
            pass


async def test_status_of_many_jobs_is_batched(fake: FakeDeadlineProcess, url: str) -> None:
    template = '{"specificationVersion":"jobtemplate-2023-09","name":"bulk","steps":[{"name":"s","script":{"actions":{"onRun":{"command":"true"}}}}]}'
    ids = fake.admin("seed", {"count": 250, "template": template, "templateType": "JSON"})["jobIds"]
    async with aiofarm.Client(url) as farm:
        found = await farm.driver.get_jobs(ids[:100])
        assert set(found) == set(ids[:100])
        fake.admin("stats/reset", {})
        fake.advance(2)
        results = []
        async for job in farm.jobs.as_completed(ids, timeout=60):
            results.append(job)
        assert len(results) == 250 and all(j.status is JobStatus.SUCCEEDED for j in results)
    stats = fake.stats()
    assert stats.get("GetJob", 0) == 0
    assert stats["BatchGetJob"] <= 6  # 3 per round (250 ids / 100), one or two rounds


async def test_change_feed_notices_a_cancel_without_a_full_round(
    fake: FakeDeadlineProcess, url: str
) -> None:
    template = '{"specificationVersion":"jobtemplate-2023-09","name":"bulk","steps":[{"name":"s","script":{"actions":{"onRun":{"command":"true"}}}}]}'
    ids = fake.admin("seed", {"count": 350, "template": template, "templateType": "JSON"})["jobIds"]
    fake.advance(1)  # every job RUNNING
    done: dict[str, JobStatus] = {}
    async with aiofarm.Client(url) as farm:

        async def wait(job_id: str) -> None:
            done[job_id] = (await farm.jobs.wait(job_id, max_interval=60)).status

        async with anyio.create_task_group() as tg:
            for job_id in ids:
                tg.start_soon(wait, job_id)
            with anyio.fail_after(20):
                while farm.hub.rounds < 2:  # noqa: ASYNC110 - the round counter has no event
                    await anyio.sleep(0.01)
            # the next full round is 4 s away; a probe (one SearchJobs) every 1 s:
            # the round's 4 requests spread over its wait
            rounds = farm.hub.rounds
            fake.admin("stats/reset", {})
            await farm.jobs.cancel(ids[7])
            with anyio.fail_after(20):
                while ids[7] not in done:  # noqa: ASYNC110
                    await anyio.sleep(0.01)
            assert farm.hub.rounds == rounds
            stats = fake.stats()
            tg.cancel_scope.cancel()
    assert done == {ids[7]: JobStatus.CANCELED}
    assert stats["SearchJobs"] >= 1
    assert stats["BatchGetJob"] == 1  # the canceled job alone, not 4 per round
    assert stats.get("GetJob", 0) == 0


async def test_pools_and_workers(fake: FakeDeadlineProcess, url: str) -> None:
    async with aiofarm.Client(url) as farm:
        pools = await farm.pools.list()
        assert [p.id for p in pools] == [fake.queue_id]
        assert pools[0].slots == 4
        assert await farm.pools.capacity() == {"fake queue": 4}
        workers = await farm.workers.list()
        assert len(workers) == 4 and all(w.enabled and w.status == "idle" for w in workers)
        job = await farm.jobs.start(command=["true"])
        fake.advance(1)
        assert await farm.pools.capacity() == {"fake queue": 3}
        assert job.id


async def test_dependencies_held_released_and_adopted(fake: FakeDeadlineProcess, url: str) -> None:
    from aiofarm.models import JobSpec

    async with aiofarm.Client(url) as farm:
        first, second = await farm.jobs.submit(
            [
                JobSpec(command=["true"], id="a"),
                JobSpec(command=["true"], id="b", depends_on=["a"], tags=["x", "y"]),
            ]
        )
        assert second.status is JobStatus.SUSPENDED and second.depends_on == (first.id,)
        assert second.tags == ("x", "y")
        assert second.reason == f"held until {first.id} succeeded"
        with pytest.raises(InvalidSpec) as err:
            await farm.jobs.start(command=["true"], depends_on=["job-" + "4" * 32])
        assert "depends_on" in err.value.field
    # the client that held the job is gone: a new one adopts and releases it
    fake.advance(2)
    async with aiofarm.Client(url) as farm:
        assert (await farm.jobs.wait(first.id, timeout=30)).status is JobStatus.SUCCEEDED
        with anyio.fail_after(30):
            async with farm.jobs.watch(second.id, max_interval=0.5) as events:
                async for event in events:
                    if event.status is not JobStatus.SUSPENDED:
                        break
        fake.advance(2)
        done = await farm.jobs.wait(second.id, timeout=30)
        assert done.status is JobStatus.SUCCEEDED
        assert done.job.started_at is not None and first.id in done.job.depends_on

        fake.fail({"job_name": "^doomed$"})
        bad, after = await farm.jobs.submit(
            [
                JobSpec(command=["false"], name="doomed", id="p"),
                JobSpec(command=["true"], id="q", depends_on=["p"]),
            ]
        )
        fake.advance(2)
        result = await farm.jobs.wait(after.id, timeout=30)
        assert result.status is JobStatus.CANCELED
        assert result.job.reason == f"dependency {bad.id} failed: 1 task(s) failed"


async def test_holds_ride_the_shared_poller(fake: FakeDeadlineProcess, url: str) -> None:
    """Thirty jobs held on one: while held, each poll round is one BatchGetJob for all
    of them (no poller of the driver's own); once it succeeded, each is released once."""
    from aiofarm.models import JobSpec

    specs = [JobSpec(command=["true"], id="root")]
    specs += [JobSpec(command=["true"], id=f"d{i}", depends_on=["root"]) for i in range(30)]
    async with aiofarm.Client(url) as farm:
        await farm.driver.adopted()  # type: ignore[attr-defined]
        root, *held = await farm.jobs.submit(specs)
        assert all(j.status is JobStatus.SUSPENDED for j in held)
        fake.admin("stats/reset", {})
        rounds = farm.hub.rounds
        with anyio.fail_after(30):
            while farm.hub.rounds < rounds + 3:  # noqa: ASYNC110 - the round counter has no event
                await anyio.sleep(0.01)
        stats = fake.stats()
        assert set(stats) <= {"BatchGetJob", "SearchJobs"}
        assert stats["BatchGetJob"] <= farm.hub.rounds - rounds + 1
        fake.admin("stats/reset", {})
        fake.advance(2)
        assert (await farm.jobs.wait(root.id, timeout=30)).status is JobStatus.SUCCEEDED
        pending = {j.id for j in held}
        with anyio.fail_after(30):
            async with farm.jobs.watch(list(pending), max_interval=0.5) as events:
                async for event in events:
                    if event.status is not JobStatus.SUSPENDED:
                        pending.discard(event.job.id)
                    if not pending:
                        break
        fake.advance(2)
        done = [await farm.jobs.wait(j.id, timeout=60) for j in held]
        assert {d.status for d in done} == {JobStatus.SUCCEEDED}
        assert fake.stats()["UpdateJob"] == 30


async def test_hold_canceled_by_hand_stays_canceled(fake: FakeDeadlineProcess, url: str) -> None:
    from aiofarm.models import JobSpec

    async with aiofarm.Client(url) as farm:
        first, second = await farm.jobs.submit(
            [JobSpec(command=["true"], id="a"), JobSpec(command=["true"], id="b", depends_on=["a"])]
        )
        await farm.jobs.cancel(second.id)
        fake.advance(2)
        assert (await farm.jobs.wait(first.id, timeout=30)).status is JobStatus.SUCCEEDED
        result = await farm.jobs.wait(second.id, timeout=30)
        assert result.status is JobStatus.CANCELED
        assert fake.stats().get("UpdateJob", 0) == 0


async def test_update_tags_keeps_description(fake: FakeDeadlineProcess, url: str) -> None:
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.start(command=["true"], description="nightly", tags=["a"])
        await farm.jobs.update(job.id, tags=["b", "c"])
        got = await farm.jobs.get(job.id)
        assert got.tags == ("b", "c") and got.description == "nightly"
        async with farm.jobs.list(tags=["c"]) as it:
            assert [j.id async for j in it] == [job.id]


async def test_submit_retry_after_a_lost_reply_creates_one_job(
    fake: FakeDeadlineProcess, url: str
) -> None:
    async with aiofarm.Client(url) as farm:
        # the first CreateJob is carried out but its reply never arrives
        fake.faults(rate=1.0, kinds=["reset-after"], operations=["CreateJob"], limit=1)
        job = await farm.jobs.start(command=["true"], name="once")
        assert fake.stats()["CreateJob"] == 2
        async with farm.jobs.list() as it:
            assert [j.id async for j in it] == [job.id]
