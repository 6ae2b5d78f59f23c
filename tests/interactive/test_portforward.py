"""port_forward: a job's HTTP server and echo server through the relay, real sockets."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiofarm.errors import (
    ConnectionLost,
    InvalidSpec,
    JobNotFound,
    JobNotRunning,
    UnsupportedError,
)
from aiofarm.portforward import ForwardError, ForwardEvent, port_forward
from tests.streams import receive_to_eof

from .conftest import PY, Farm, open_sockets, until

pytestmark = pytest.mark.anyio

ECHO_SERVER = r"""
import socket, sys, threading
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
def serve(c):
    with c:
        while data := c.recv(65536):
            c.sendall(data)
        # the client half-closed: answer with the total, then close
        c.sendall(b"<eof>")
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int) -> None:
    with anyio.fail_after(20):
        while True:
            try:
                stream = await anyio.connect_tcp("127.0.0.1", port)
            except OSError:
                await anyio.sleep(0.05)
            else:
                await stream.aclose()
                return


async def http_get(port: int, path: str) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as s:
        await s.send(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
        chunks = []
        try:
            while True:
                chunks.append(await s.receive(1 << 20))
        except anyio.EndOfStream:
            pass
    raw = b"".join(chunks)
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200"), head[:200]
    return body


@pytest.fixture
async def http_job(farm: Farm, tmp_path: Path) -> tuple[str, int, Path]:
    www = tmp_path / "www"
    www.mkdir()
    port = free_port()
    job = await farm.start(
        [PY, "-m", "http.server", str(port), "--bind", "127.0.0.1"], cwd=str(www)
    )
    await wait_port(port)
    return job, port, www


async def test_fifty_concurrent_connections(farm: Farm, http_job: tuple[str, int, Path]) -> None:
    job, port, www = http_job
    for i in range(50):
        (www / f"f{i}").write_bytes(b"%d" % i * (1000 + i))
    events: list[ForwardEvent] = []
    async with farm.jobs.port_forward(job, job_port=port) as fwd:
        assert fwd.local_port not in (0, port)
        results: dict[int, bytes] = {}

        async def one(i: int) -> None:
            results[i] = await http_get(fwd.local_port, f"/f{i}")

        async with fwd.events() as stream:
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(one, i)
            with anyio.fail_after(10):
                while sum(e.kind == "closed" for e in events) < 50:
                    events.append(await stream.receive())
        assert fwd.errors == ()
        assert fwd.accepted == 50
    assert results == {i: b"%d" % i * (1000 + i) for i in range(50)}
    assert sum(e.kind == "opened" for e in events) == 50
    assert all(e.bytes_from_job > 1000 for e in events if e.kind == "closed")


async def test_100_mb_through_one_connection_byte_exact(
    farm: Farm, http_job: tuple[str, int, Path]
) -> None:
    job, port, www = http_job
    blob = os.urandom(100 << 20)
    (www / "blob").write_bytes(blob)
    async with farm.jobs.port_forward(job, job_port=port) as fwd:
        body = await http_get(fwd.local_port, "/blob")
    assert len(body) == len(blob)
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()


async def test_half_close_is_relayed(farm: Farm) -> None:
    port = free_port()
    job = await farm.start([PY, "-c", ECHO_SERVER, str(port)])
    await wait_port(port)
    async with (
        farm.jobs.port_forward(job, job_port=port) as fwd,
        await anyio.connect_tcp("127.0.0.1", fwd.local_port) as s,
    ):
        await s.send(b"ping " * 1000)
        await s.send_eof()  # the server sees EOF, and still answers through the relay
        got = await receive_to_eof(s)
    assert got == b"ping " * 1000 + b"<eof>"
    await farm.jobs.cancel(job)


async def test_connection_errors_are_reported_not_fatal(farm: Farm) -> None:
    job = await farm.start(["sleep", "60"])
    dead_port = free_port()  # nobody listens there
    seen: list[ForwardError] = []
    async with farm.jobs.port_forward(job, job_port=dead_port, on_error=seen.append) as fwd:
        async with fwd.events() as events:
            for _ in range(2):
                async with await anyio.connect_tcp("127.0.0.1", fwd.local_port) as s:
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                        await s.receive()
            with anyio.fail_after(5):
                kinds = [(await events.receive()).kind for _ in range(6)]
        assert kinds.count("error") == 2 and kinds.count("closed") == 2
        assert len(seen) == 2 and len(fwd.errors) == 2
        assert all(isinstance(e.error, ConnectionLost) for e in seen)
        assert str(dead_port) in str(seen[0].error)
    await farm.jobs.cancel(job)


async def test_job_ending_refuses_new_connections(farm: Farm, tmp_path: Path) -> None:
    port = free_port()
    job = await farm.start([PY, "-c", ECHO_SERVER, str(port)])
    await wait_port(port)
    async with farm.jobs.port_forward(job, job_port=port) as fwd:
        await farm.jobs.cancel(job)
        await farm.until_finished(job)
        async with await anyio.connect_tcp("127.0.0.1", fwd.local_port) as s:
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                await s.receive()
        await until(lambda: bool(fwd.errors), 5)
        assert isinstance(fwd.errors[0].error, JobNotRunning)


async def test_cancel_in_the_middle_of_a_relay_leaves_nothing(
    farm: Farm, http_job: tuple[str, int, Path]
) -> None:
    job, port, www = http_job
    (www / "big").write_bytes(b"\0" * (64 << 20))
    # the job logs each request: let the farm open its log file before the baseline
    await http_get(port, "/")
    before = open_sockets()
    local_port = 0
    received = 0
    with anyio.CancelScope() as scope:
        async with farm.jobs.port_forward(job, job_port=port) as fwd:
            local_port = fwd.local_port
            async with await anyio.connect_tcp("127.0.0.1", local_port) as s:
                await s.send(b"GET /big HTTP/1.0\r\n\r\n")
                while received < (4 << 20):
                    received += len(await s.receive(1 << 20))
                assert fwd.active == 1
                scope.cancel()  # mid-transfer: the relay is moving data right now
                await anyio.sleep_forever()  # the cancellation lands here at once
    assert scope.cancelled_caught
    # listener, both relayed sockets, client socket: all closed (a tunnelling driver may
    # also have used up an idle pooled connection to its service for the tunnel)
    assert open_sockets() <= before
    with pytest.raises(OSError):
        await anyio.connect_tcp("127.0.0.1", local_port)


async def test_forward_on_unknown_or_finished_job_and_bad_ports(farm: Farm) -> None:
    with pytest.raises(JobNotFound):
        async with farm.jobs.port_forward("no-such-job", job_port=80):
            pass
    done = await farm.start(["true"], running=False)
    await farm.until_finished(done)
    with pytest.raises(JobNotRunning):
        async with farm.jobs.port_forward(done, job_port=80):
            pass
    job = await farm.start(["sleep", "60"])
    for kwargs, field in (
        ({"job_port": 0}, "job_port"),
        ({"job_port": 70000}, "job_port"),
        ({"job_port": 80, "local_port": -1}, "local_port"),
    ):
        with pytest.raises(InvalidSpec) as info:
            async with farm.jobs.port_forward(job, **kwargs):
                pass
        assert info.value.field == field
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(InvalidSpec) as info:
            async with farm.jobs.port_forward(job, local_port=taken.getsockname()[1], job_port=80):
                pass
        assert info.value.field == "local_port"
    await farm.jobs.cancel(job)


async def test_error_in_the_body_propagates_unwrapped(farm: Farm) -> None:
    job = await farm.start(["sleep", "60"])
    with pytest.raises(KeyError):
        async with farm.jobs.port_forward(job, job_port=9):
            raise KeyError("mine")
    await farm.jobs.cancel(job)


class _TunnelOnly:
    """The local driver seen as a back end that can only tunnel (``connect_port``)."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self.name = "tunnel"

    async def get_jobs(self, ids: Any) -> Any:
        return await self._driver.get_jobs(ids)

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        raise UnsupportedError("tunnel", "port_address")

    async def connect_port(self, job_id: str, port: int) -> Any:
        return await self._driver.connect_port(job_id, port)


async def test_relay_over_a_drivers_byte_stream(
    farm: Farm, http_job: tuple[str, int, Path]
) -> None:
    job, port, www = http_job
    blob = os.urandom(20 << 20)
    (www / "blob").write_bytes(blob)
    for i in range(10):
        (www / f"f{i}").write_bytes(b"%d" % i * 5000)
    driver = _TunnelOnly(farm.client._driver)
    echo_port = free_port()
    echo = await farm.start([PY, "-c", ECHO_SERVER, str(echo_port)])
    await wait_port(echo_port)
    async with port_forward(driver, job, 0, port) as fwd:  # type: ignore[arg-type]
        body = await http_get(fwd.local_port, "/blob")
        small: dict[int, bytes] = {}

        async def one(i: int) -> None:
            small[i] = await http_get(fwd.local_port, f"/f{i}")

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(one, i)
        assert fwd.errors == ()
    assert hashlib.sha256(body).digest() == hashlib.sha256(blob).digest()
    assert small == {i: b"%d" % i * 5000 for i in range(10)}
    before = open_sockets()
    async with (
        port_forward(driver, echo, 0, echo_port) as fwd,  # type: ignore[arg-type]
        await anyio.connect_tcp("127.0.0.1", fwd.local_port) as s,
    ):
        await s.send(b"half")
        await s.send_eof()
        got = await receive_to_eof(s)
    assert got == b"half<eof>"
    assert open_sockets() == before
    await farm.jobs.cancel(echo)
