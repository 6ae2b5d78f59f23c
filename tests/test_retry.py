"""The one place driver calls are retried (aiofarm/retry.py), over the dummy driver's
injected transient failures: reads are retried, submits only when the driver says
they are idempotent (and then create nothing twice), other writes only when a repeat
changes nothing; the last failure leaves as it is; a Retry-After is honoured."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import anyio
import pytest

import aiofarm
from aiofarm import Client, Job, JobSpec, JobStatus
from aiofarm.backoff import retry_transient
from aiofarm.drivers.base import Action, Driver, SubmitAttempt
from aiofarm.drivers.dummy import DummyDriver
from aiofarm.retry import NOT_RETRIED, READS, REPEATABLE_WRITES, RetryMixin, retrying
from tests.dummy import dummy

pytestmark = pytest.mark.anyio


def test_every_driver_primitive_has_a_retry_rule() -> None:
    primitives = {
        name
        for name, fn in vars(Driver).items()
        if not name.startswith("_") and inspect.isfunction(fn) and name not in ("open", "aclose")
    }
    ruled = READS | REPEATABLE_WRITES | set(NOT_RETRIED)
    assert primitives <= ruled, sorted(primitives - ruled)
    assert not READS & REPEATABLE_WRITES and not (READS | REPEATABLE_WRITES) & set(NOT_RETRIED)
    # control actions no driver may call repeatable by default
    assert {a.value for a in Action} - {a.value for a in Driver.repeatable_actions} <= set(NOT_RETRIED)


async def test_the_client_puts_the_retries_in_front_of_every_driver(tmp_path: object) -> None:
    async with Client("dummy://") as farm:
        assert isinstance(farm.driver, RetryMixin)
    # a driver whose from_url builds another class (the embedded local farm) too
    async with Client(f"local://{tmp_path}?embedded=true") as farm:
        assert isinstance(farm.driver, RetryMixin)


async def test_reads_are_retried_until_they_succeed() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        driver.fail_next("get_jobs", 2)
        before = driver.calls["get_jobs"]
        assert (await farm.jobs.get(job.id)).id == job.id
        assert driver.calls["get_jobs"] - before == 3


@pytest.mark.parametrize("history", [False, True], ids=["get", "describe"])
async def test_the_last_transient_failure_leaves_as_it_is(history: bool) -> None:
    # with history, describe() falls back on get_jobs(): one retry loop, not one inside
    # the other, so attempts never multiply
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        driver.retry_attempts = 3
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        driver.fail_next("get_jobs", 10)
        before = driver.calls["get_jobs"]
        with pytest.raises(aiofarm.ConnectionFailed, match="injected") as info:
            await farm.jobs.get(job.id, history=history)
        assert isinstance(info.value, aiofarm.TransientError) and isinstance(info.value, aiofarm.ConnectionLost)
        assert driver.calls["get_jobs"] - before == 3


async def test_an_idempotent_submit_whose_answer_was_lost_makes_one_job() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        driver.fail_next("submit", 1, after=True)  # made, then the answer lost
        jobs = await farm.jobs.submit([JobSpec(command=["a"], name="a"), JobSpec(command=["b"], name="b")])
        assert driver.calls["submit"] == 2
        assert [j.name for j in jobs] == ["a", "b"]
        assert len(driver.jobs) == 2  # the retry found what the first attempt made


class _OneSpecPerAttempt(DummyDriver):
    """Submits spec by spec and gets one new job through per attempt (the rest fail
    transiently), reporting what it made in ``SubmitAttempt.made`` as Slurm does."""

    stalled = False
    attempts = 0

    async def submit(self, specs: Sequence[JobSpec], attempt: SubmitAttempt | None = None) -> list[Job]:
        attempt = attempt or SubmitAttempt.new(len(specs))
        self.attempts += 1
        left = [i for i in range(len(specs)) if i not in attempt.made]
        if left and not self.stalled:
            (job,) = await super().submit([specs[left[0]]], SubmitAttempt(attempt.tokens[left[0] : left[0] + 1]))
            attempt.made[left[0]] = job.id
        if len(attempt.made) < len(specs):
            raise aiofarm.ConnectionFailed("one spec per attempt")
        return [self.jobs[attempt.made[i]] for i in range(len(specs))]


async def test_a_batch_submit_counts_its_attempts_per_spec() -> None:
    # 10 specs, one through per attempt: 10 attempts, though a call has only 3 per round
    driver = retrying(_OneSpecPerAttempt)()
    driver.retry_attempts = 3
    specs = [JobSpec(command=["x"], name=f"s{i}") for i in range(10)]
    with anyio.fail_after(30):
        jobs = await driver.submit(specs)
    assert [j.name for j in jobs] == [s.name for s in specs] and len(driver.jobs) == 10
    assert driver.attempts == 10  # type: ignore[attr-defined]
    # a round of attempts that makes nothing ends the call with its last failure
    stalled = retrying(_OneSpecPerAttempt)()
    stalled.retry_attempts = 3
    stalled.stalled = True  # type: ignore[attr-defined]
    with pytest.raises(aiofarm.ConnectionFailed):
        await stalled.submit(specs)
    assert stalled.attempts == 3 and not stalled.jobs  # type: ignore[attr-defined]


async def test_a_submit_not_declared_idempotent_is_not_retried() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        driver.idempotent_submit = False  # type: ignore[misc]  # per instance, for this test
        driver.fail_next("submit", 1, after=True)
        with pytest.raises(aiofarm.ConnectionFailed):
            await farm.jobs.submit([JobSpec(command=["a"])])
        assert driver.calls["submit"] == 1
        assert len(driver.jobs) == 1  # made once, and the caller was told it may have been


async def test_repeatable_writes_are_retried_and_others_are_not() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        a, b = await farm.jobs.submit([JobSpec(command=["a"]), JobSpec(command=["b"])])
        driver.fail_next("cancel", 1, after=True)
        await farm.jobs.cancel(a.id)
        assert driver.jobs[a.id].status is JobStatus.CANCELED
        assert driver.calls["control"] == 2
        driver.fail_next("delete", 1)
        with pytest.raises(aiofarm.ConnectionFailed):
            await farm.jobs.delete(b.id)
        assert driver.calls["control"] == 3 and b.id in driver.jobs


async def test_a_wait_rides_out_transient_failures_of_the_poller() -> None:
    async with Client("dummy://") as farm:
        driver = dummy(farm)
        (job,) = await farm.jobs.submit([JobSpec(command=["x"])])
        driver.set_status(job.id, JobStatus.SUCCEEDED)
        driver.fail_next("get_jobs", 4)
        with anyio.fail_after(20):
            result = await farm.jobs.wait(job.id)
        assert result.status is JobStatus.SUCCEEDED


class Throttled(aiofarm.BackendUnavailable):
    pass


async def test_retry_after_sets_the_least_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    delays: list[float] = []

    async def record(delay: float) -> None:
        delays.append(delay)

    monkeypatch.setattr(anyio, "sleep", record)
    failures = [Throttled("dummy", 429, "slow down", retry_after=7.0), Throttled("dummy", 429, "again", retry_after=500)]

    async def call() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    got = await retry_transient(
        call,
        is_transient=lambda e: isinstance(e, aiofarm.TransientError),
        initial=0.1,
        maximum=5.0,
        retry_after=lambda e: e.retry_after if isinstance(e, aiofarm.TransientError) else None,
    )
    assert got == "done"
    assert delays == [7.0, 60.0]  # at least what was asked, at most MAX_RETRY_AFTER
