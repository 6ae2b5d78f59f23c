"""Faults between the client and every HTTP back end, injected by the project's own
TCP proxy (faultproxy.py): 503s, 429 throttling, connections reset before the request
reaches the server and after (the reply is lost), slow replies — on a quarter of all
calls. 1,000 concurrent waits all end with the right status, no error reaches the
user, a batch submitted through the faults makes each of its jobs once, and a submit
whose reply was lost creates one job."""

from __future__ import annotations

import collections
import os
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from aiohttp import ClientSession, web

import aiofarm
from aiofarm import Client, JobSpec, JobStatus
from tests.fakes.serve import serving

from .conftest import FULL
from .faultproxy import FaultProxy

pytestmark = pytest.mark.anyio

RATE = 0.25
#: (good, bad) jobs the 1,000 waits are spread over on Deadline
DEADLINE_JOBS = (800, 200) if FULL else (160, 40)
WAITS = 1_000
KINDS = ("503", "429", "reset_before", "reset_after", "slow")


# -- the proxy itself ---------------------------------------------------------------------


@pytest.fixture
async def echo() -> AsyncIterator[tuple[int, list[str]]]:
    seen: list[str] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(await request.text())
        return web.Response(text="ok:" + seen[-1])

    app = web.Application()
    app.router.add_post("/x", handle)
    async with serving(app) as port:
        yield port, seen


async def test_proxy_injects_each_fault(echo: tuple[int, list[str]]) -> None:
    port, seen = echo
    async with FaultProxy(("127.0.0.1", port), slow_seconds=0.2) as proxy, ClientSession() as http:
        url = f"http://{proxy.address}/x"
        async with http.post(url, data="plain") as r:
            assert (r.status, await r.text()) == (200, "ok:plain")
        for status in ("503", "429"):
            proxy.target("POST", "^/x$", status)
            async with http.post(url, data=status) as r:
                assert r.status == int(status)
        assert status not in seen  # answered by the proxy, never forwarded
        proxy.target("POST", "^/x$", "reset_before")
        with pytest.raises(OSError):
            async with http.post(url, data="before") as r:
                await r.read()
        assert "before" not in seen
        proxy.target("POST", "^/x$", "reset_after")
        with pytest.raises(OSError):
            async with http.post(url, data="after") as r:
                await r.read()
        assert "after" in seen  # the server acted; the reply was lost
        proxy.target("POST", "^/x$", "slow")
        with anyio.fail_after(5):
            async with http.post(url, data="slow") as r:
                assert await r.text() == "ok:slow"
        assert {k: proxy.counts[k] for k in KINDS} == dict.fromkeys(KINDS, 1)


# -- the back ends --------------------------------------------------------------------------


class Backend:
    """One back end behind a proxy: how to reach it, make jobs, and count them."""

    name: str
    upstream: tuple[str, int]
    submit_path: str  # the submit request's path (a regular expression)

    def url(self, proxy: FaultProxy) -> str:
        raise NotImplementedError

    async def jobs(self, farm: Client, good: int, bad: int) -> tuple[list[str], list[str]]:
        """Ids of ``good`` jobs that will succeed and ``bad`` ones that will fail."""
        specs = [JobSpec(command=["true"], name=f"good-{i}") for i in range(good)]
        specs += [JobSpec(command=["false"], name=f"bad-{i}") for i in range(bad)]
        made = await farm.jobs.submit(specs)
        return [j.id for j in made[:good]], [j.id for j in made[good:]]


async def _waits(farm: Client, good: list[str], bad: list[str]) -> tuple[dict[str, int], list[str]]:
    """WAITS concurrent waits spread over the jobs: outcome counts and the errors that
    reached the caller."""
    expected = {j: JobStatus.SUCCEEDED for j in good} | {j: JobStatus.FAILED for j in bad}
    ids = list(expected)
    outcome: collections.Counter[str] = collections.Counter()
    errors: list[str] = []

    async def wait(job_id: str) -> None:
        try:
            result = await farm.jobs.wait(job_id, timeout=240, max_interval=2)
        except aiofarm.FarmError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
            return
        outcome["right" if result.status is expected[job_id] else f"wrong {result.status.value}"] += 1

    async with anyio.create_task_group() as tg:
        for i in range(WAITS):
            tg.start_soon(wait, ids[i % len(ids)])
    return dict(outcome), errors


async def _run_faults(
    backend: Backend, good: int, bad: int, figure: Callable[[str, object], None]
) -> None:
    async with FaultProxy(backend.upstream, rate=0, kinds=KINDS, seed=16) as proxy:
        async with Client(backend.url(proxy)) as farm:
            # the submits go through the proxy too, with faults; the share of faults
            # counts the requests made while faults were on (not the client's opening)
            proxy.rate = RATE
            first = proxy.counts["requests"]
            good_ids, bad_ids = await backend.jobs(farm, good, bad)
            outcome, errors = await _waits(farm, good_ids, bad_ids)
            proxy.rate = 0
            faulting = proxy.counts["requests"] - first
        counts = {k: proxy.counts[k] for k in KINDS}
        figure(f"{backend.name}: {WAITS} waits through faults {counts} of {faulting} requests",
               f"{outcome}, {len(errors)} errors")
    assert not errors, f"{len(errors)} errors reached the caller, e.g. {errors[:3]}"
    assert outcome == {"right": WAITS}
    assert sum(counts.values()) >= 0.15 * faulting


async def _run_batch_submit(backend: Backend, count: int, figure: Callable[[str, object], None]) -> None:
    """A batch of ``count`` specs submitted through the faults. An attempt goes on past a
    faulted request and records the jobs it made (``SubmitAttempt.made``), so the client
    layer counts attempts per spec: the batch gets through, and nothing is made twice."""
    run = uuid.uuid4().hex[:8]
    specs = [JobSpec(command=["true"], name=f"batch-{run}-{i}") for i in range(count)]
    async with FaultProxy(backend.upstream, rate=0, kinds=KINDS, seed=16) as proxy, Client(
        backend.url(proxy)
    ) as farm:
        proxy.rate = RATE  # opening the client is not what is tested
        made = await farm.jobs.submit(specs)
        proxy.rate = 0
        async with farm.jobs.list() as it:
            names = [j.name async for j in it if (j.name or "").startswith(f"batch-{run}-")]
    faults = sum(proxy.counts[k] for k in KINDS)
    figure(f"{backend.name}: batch of {count} submitted through faults",
           f"{faults} of {proxy.counts['requests']} requests faulted; {len(names)} jobs")
    assert faults > 0
    assert [j.name for j in made] == [s.name for s in specs]
    assert len({j.id for j in made}) == count
    assert sorted(names) == sorted(str(s.name) for s in specs)  # each once


async def _run_lost_submit(backend: Backend, farm_count: Callable[[Client, str], Any]) -> None:
    async with FaultProxy(backend.upstream) as proxy, Client(backend.url(proxy)) as farm:
        proxy.target("POST", backend.submit_path, "reset_after")
        name = f"lost-reply-{os.getpid()}-{id(proxy)}"
        (job,) = await farm.jobs.submit([JobSpec(command=["true"], name=name)])
        assert proxy.counts["reset_after"] == 1
        assert await farm_count(farm, name) == 1
        assert (await farm.jobs.wait(job.id, timeout=120)).status is JobStatus.SUCCEEDED


async def _count_named(farm: Client, name: str) -> int:
    async with farm.jobs.list(name=name) as it:
        return len([j async for j in it])


# -- Deadline (the fake) ----------------------------------------------------------------------


class DeadlineBackend(Backend):
    name = "deadline"
    submit_path = r"/farms/[^/]+/queues/[^/]+/jobs$"

    def __init__(self, fake: Any) -> None:
        self.fake = fake
        m = re.match(r"https?://([^:/]+):(\d+)", fake.endpoint)
        assert m is not None
        self.upstream = (m.group(1), int(m.group(2)))

    def url(self, proxy: FaultProxy) -> str:
        # botocore makes one attempt per request: the client layer's attempts of a call
        # are all of them, and a call of three requests (a failed job's tasks) succeeds
        # half the time with a fifth of requests failing; 20 attempts make losing one
        # of 200 such calls unlikely (about 1 in 10,000)
        return str(self.fake.url(endpoint_url=f"http://{proxy.address}", max_attempts="20"))

    async def jobs(self, farm: Client, good: int, bad: int) -> tuple[list[str], list[str]]:
        ok = ('{"specificationVersion":"jobtemplate-2023-09","name":"fine","steps":[{"name":"s",'
              '"script":{"actions":{"onRun":{"command":"true"}}}}]}')
        doomed = ok.replace('"fine"', '"doomed"')
        seed = {"templateType": "JSON", "maxRetriesPerTask": 0}
        good_ids = self.fake.admin("seed", {"count": good, "template": ok, **seed})["jobIds"]
        bad_ids = self.fake.admin("seed", {"count": bad, "template": doomed, **seed})["jobIds"]
        self.fake.fail({"job_name": "^doomed$"})
        self.fake.auto(0.1)
        return list(good_ids), list(bad_ids)


@pytest.fixture
def deadline_backend(tmp_path: Path) -> Iterator[DeadlineBackend]:
    from tests.backends import deadline
    from tests.fakes.deadline.process import aws_env, patched_environ

    process = deadline._start()  # the session's shared fake
    process.reset()
    try:
        with patched_environ(aws_env(str(tmp_path))):
            yield DeadlineBackend(process)
    finally:
        process.reset()


@pytest.mark.deadline
async def test_deadline_waits_through_faults(deadline_backend: DeadlineBackend, figure: Callable[[str, object], None]) -> None:
    await _run_faults(deadline_backend, *DEADLINE_JOBS, figure)


@pytest.mark.deadline
async def test_deadline_lost_submit_reply_makes_one_job(deadline_backend: DeadlineBackend) -> None:
    deadline_backend.fake.admin("config", {"execute": True})
    deadline_backend.fake.auto(0.05)
    await _run_lost_submit(deadline_backend, _count_named)


@pytest.mark.deadline
async def test_deadline_batch_submit_through_faults(
    deadline_backend: DeadlineBackend, figure: Callable[[str, object], None]
) -> None:
    await _run_batch_submit(deadline_backend, 200 if FULL else 50, figure)
