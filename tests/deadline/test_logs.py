"""Session logs from CloudWatch (moto): paging by token, and a followed stream that
survives forced disconnects without losing or repeating a line."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import anyio
import anyio.abc
import pytest

import aiofarm
from aiofarm.drivers.base import LogQuery
from aiofarm.openjd.loading import template_spec
from tests.fakes.deadline.process import FakeDeadlineProcess

pytestmark = pytest.mark.anyio

FRAMES = {
    "specificationVersion": "jobtemplate-2023-09",
    "name": "frames",
    "steps": [
        {
            "name": "Render",
            "parameterSpace": {
                "taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": "1-4"}]
            },
            "script": {
                "actions": {"onRun": {"command": "render", "args": ["{{Task.Param.Frame}}"]}}
            },
        }
    ],
}


class DroppingProxy:
    """A TCP relay that can cut every live connection at once (and refuse new ones
    for a moment), like a flaky network between the client and CloudWatch."""

    def __init__(self, upstream_port: int, cut_after: int = 1200) -> None:
        self.upstream_port = upstream_port
        # of the connections that carry more than cut_after bytes of response, every
        # other one is cut right there: the client sees a reply broken off midway
        self.cut_after = cut_after
        self._cut_next = True
        self.connections = 0
        self.port = 0
        self.drops = 0
        self.cut = 0  # live connections cut
        self._scopes: set[anyio.CancelScope] = set()
        self._down_until = 0.0

    async def _handle(self, client: anyio.abc.SocketStream) -> None:
        async with client:
            if anyio.current_time() < self._down_until:
                return
            self.connections += 1
            with anyio.CancelScope() as scope:
                self._scopes.add(scope)
                try:
                    upstream = await anyio.connect_tcp("127.0.0.1", self.upstream_port)
                    async with upstream, anyio.create_task_group() as tg:

                        async def pump(
                            a: anyio.abc.SocketStream, b: anyio.abc.SocketStream, limit: int | None
                        ) -> None:
                            sent = 0
                            with contextlib.suppress(
                                anyio.EndOfStream,
                                anyio.BrokenResourceError,
                                anyio.ClosedResourceError,
                            ):
                                async for chunk in a:
                                    if limit is not None and sent + len(chunk) > limit:
                                        cut, self._cut_next = self._cut_next, not self._cut_next
                                        if cut:
                                            await b.send(chunk[: limit - sent])
                                            self.cut += 1
                                            break
                                        limit = None
                                    sent += len(chunk)
                                    await b.send(chunk)
                            tg.cancel_scope.cancel()

                        tg.start_soon(pump, client, upstream, None)
                        tg.start_soon(pump, upstream, client, self.cut_after)
                finally:
                    self._scopes.discard(scope)

    def drop(self, down_for: float = 0.05) -> None:
        self.drops += 1
        self._down_until = anyio.current_time() + down_for
        for scope in list(self._scopes):
            self.cut += 1
            scope.cancel()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[DroppingProxy]:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            tg.start_soon(listener.serve, self._handle)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()


async def test_log_pages_resume_by_token(fake: FakeDeadlineProcess, url: str) -> None:
    fake.admin("config", {"log_lines": 10})
    async with aiofarm.Client(url) as farm:
        job = await farm.jobs.submit_template(FRAMES)
        fake.advance(2)
        await farm.jobs.wait(job.id, timeout=30)
        whole = (await farm.logs.read(job.id)).splitlines()
        assert len(whole) == 4 * 14  # per task: session, running, command, 10 lines, end
        query = LogQuery(limit=7)
        token = None
        paged: list[str] = []
        while True:
            page = await farm.driver.read_log(job.id, token, query)
            if not page.lines:
                break
            assert len(page.lines) <= 7
            paged += [ln.text for ln in page.lines]
            token = page.next_token
        assert paged == whole
        # CloudWatch session logs merge stdout and stderr: asking for one is refused,
        # not answered with nothing or with both
        for streams in (["stderr"], ["stdout"]):
            with pytest.raises(aiofarm.UnsupportedError) as refused:
                async with farm.logs.stream(job.id, follow=False, streams=streams):
                    pass
            assert (refused.value.driver, refused.value.feature) == ("deadline", "logs.streams")
        # a token is good for a new client too (it names the session and the cursor)
    async with aiofarm.Client(url) as again:
        page = await again.driver.read_log(job.id, token, query)
        assert page.lines == ()
        first = await again.logs.page(job.id, limit=3)
        assert [ln.text for ln in first.lines] == whole[:3]
        rest = await again.logs.page(job.id, limit=100, next_token=first.next_token)
        assert [ln.text for ln in rest.lines] == whole[3:]


async def test_follow_survives_forced_disconnects(fake: FakeDeadlineProcess) -> None:
    fake.admin("config", {"log_lines": 40})
    assert fake.logs_endpoint is not None
    upstream = int(fake.logs_endpoint.rsplit(":", 1)[1])
    proxy = DroppingProxy(upstream)
    async with proxy.running():
        # the proxy cuts every other reply that crosses 1,200 bytes of a kept-alive
        # connection; botocore makes one attempt per request and the client layer two
        # per read, and a read cut after it got lines returns them (sessions.read_log)
        url = fake.url(logs_endpoint_url=f"http://127.0.0.1:{proxy.port}", max_attempts="2")
        async with aiofarm.Client(url) as farm:
            # one task at a time: output keeps arriving while the connections break
            spec = template_spec({**FRAMES, "name": "followed"}, max_workers=1)
            (job,) = await farm.jobs.submit([spec])
            got: list[str] = []

            async def follow() -> None:
                async with farm.logs.stream(job.id, follow=True) as lines:
                    async for line in lines:
                        got.append(line.text)

            async def chaos() -> None:
                for i in range(20):
                    await anyio.sleep(0.1)
                    proxy.drop()
                    if i % 2:
                        fake.advance(1)

            with anyio.fail_after(90):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(follow)
                    tg.start_soon(chaos)
            assert (await farm.jobs.get(job.id)).status.is_finished
    assert proxy.drops == 20 and proxy.cut >= 2 and proxy.connections >= 10
    async with aiofarm.Client(fake.url()) as direct:
        expected = (await direct.logs.read(job.id)).splitlines()
    assert len(expected) == 4 * 44
    assert got == expected  # every line, once, in order


async def test_logs_through_the_queue_role(fake: FakeDeadlineProcess) -> None:
    async with aiofarm.Client(fake.url(queue_role="read")) as farm:
        job = await farm.jobs.submit_template(FRAMES)
        fake.advance(2)
        await farm.jobs.wait(job.id, timeout=30)
        first = await farm.logs.read(job.id)
        again = await farm.logs.read(job.id)
    assert first == again and first.count("Session session-") == 4
    # one AssumeQueueRoleForRead: the credentials are kept until shortly before they expire
    assert fake.stats().get("AssumeQueueRoleForRead") == 1
