"""Fault injection: with a quarter of all API calls throttled, failing with 500 or
reset mid-request, a thousand concurrent waits through the client's shared poller all
end with the right outcome."""

from __future__ import annotations

import anyio
import pytest

import aiofarm
from aiofarm import JobStatus
from tests.fakes.deadline.process import FakeDeadlineProcess

pytestmark = pytest.mark.anyio

OK = '{"specificationVersion":"jobtemplate-2023-09","name":"fine","steps":[{"name":"s","script":{"actions":{"onRun":{"command":"true"}}}}]}'
BAD = OK.replace('"fine"', '"doomed"')


async def test_thousand_waits_survive_throttling_500s_and_resets(
    fake: FakeDeadlineProcess, url: str
) -> None:
    good = fake.admin(
        "seed", {"count": 800, "template": OK, "templateType": "JSON", "maxRetriesPerTask": 0}
    )["jobIds"]
    bad = fake.admin(
        "seed", {"count": 200, "template": BAD, "templateType": "JSON", "maxRetriesPerTask": 0}
    )["jobIds"]
    fake.fail({"job_name": "^doomed$"})
    # botocore makes one attempt per request, so the client layer's attempts are all of
    # them: a failed job's tasks() takes three requests (steps, tasks, session actions),
    # retried as one call, and with a quarter of requests failing an attempt of it
    # succeeds 42 % of the time: 20 attempts leave 200 such reads about 0.4 % to lose
    async with aiofarm.Client(url, max_attempts=20) as farm:
        fake.faults(rate=0.25, kinds=["throttle", "500", "reset"], seed=7)
        fake.auto(0.1)
        results: dict[str, aiofarm.CompletionResult] = {}

        async def wait(job_id: str) -> None:
            results[job_id] = await farm.jobs.wait(job_id, timeout=100, max_interval=2)

        with anyio.fail_after(110):
            async with anyio.create_task_group() as tg:
                for job_id in good + bad:
                    tg.start_soon(wait, job_id)
        injected = fake.stats()
        fake.faults(rate=0)
    assert len(results) == 1000
    assert {results[j].status for j in good} == {JobStatus.SUCCEEDED}
    assert {results[j].status for j in bad} == {JobStatus.FAILED}
    for job_id in bad:
        (task,) = results[job_id].failed_tasks
        assert task.status is JobStatus.FAILED and task.exit_code == 1
    # status came from batched reads only: 10 BatchGetJob per round, never GetJob
    assert injected.get("GetJob", 0) == 0
    assert injected["BatchGetJob"] >= 10


async def test_a_submit_whose_reply_was_lost_makes_one_job(fake: FakeDeadlineProcess, url: str) -> None:
    # botocore makes one attempt: the retry is the client layer's, with the same client
    # token, so CreateJob answers with the job its first try made
    async with aiofarm.Client(url) as farm:
        fake.admin("stats/reset", {})
        fake.faults(rate=1.0, kinds=["reset-after"], operations=["CreateJob"], limit=1)
        job = await farm.jobs.submit_template(OK)
        fake.faults(rate=0)
        assert fake.stats()["CreateJob"] == 2
        async with farm.jobs.list() as listing:
            assert [j.id async for j in listing] == [job.id]


@pytest.mark.parametrize("attempts", [1, 3])
async def test_a_throttled_read_is_attempted_exactly_as_often_as_the_client_layer_decides(
    fake: FakeDeadlineProcess, url: str, attempts: int
) -> None:
    # botocore makes one attempt per request; retry.py makes max_attempts of the call
    (job_id,) = fake.admin("seed", {"count": 1, "template": OK, "templateType": "JSON"})["jobIds"]
    async with aiofarm.Client(url, max_attempts=attempts) as farm:
        fake.admin("stats/reset", {})
        fake.faults(rate=1.0, kinds=["throttle"], operations=["BatchGetJob"])
        with pytest.raises(aiofarm.BackendUnavailable, match="ThrottlingException"):
            await farm.jobs.get(job_id)
        fake.faults(rate=0)
        assert fake.stats().get("BatchGetJob", 0) == attempts
        # once the throttling stops, one attempt does it
        fake.admin("stats/reset", {})
        assert (await farm.jobs.get(job_id)).id == job_id
        assert fake.stats().get("BatchGetJob", 0) == 1


async def test_botocore_never_retries_and_a_call_unsafe_to_repeat_is_made_once(
    fake: FakeDeadlineProcess, url: str
) -> None:
    (job_id,) = fake.admin("seed", {"count": 1, "template": OK, "templateType": "JSON"})["jobIds"]
    async with aiofarm.Client(url) as farm:
        driver = farm.driver
        assert driver.retry_attempts == 8  # the max_attempts default: the client layer's
        for client in (driver.api.dl, driver.api.dl_status):  # type: ignore[attr-defined]
            assert client.meta.config.retries["total_max_attempts"] == 1
        assert driver.api.config().retries["total_max_attempts"] == 1  # type: ignore[attr-defined]
        # rerunning failed tasks is not safe to repeat: a throttle of its first request
        # is raised at once, with no retry underneath
        fake.admin("stats/reset", {})
        fake.faults(rate=1.0, kinds=["throttle"], operations=["ListSteps"])
        with pytest.raises(aiofarm.BackendUnavailable):
            await farm.jobs.retry(job_id)
        fake.faults(rate=0)
        assert fake.stats().get("ListSteps", 0) == 1
