"""Port forwarding through the farm service with a real listener in a job: the service
dials the job's port (the connection to it is the service's, not the client's) and
tunnels it over its WebSocket, both ways, half-close and big transfers included."""

from __future__ import annotations

import hashlib
import os
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import psutil
import pytest

from aiofarm import Client, JobStatus
from aiofarm.errors import ConnectionLost

from .helpers import eventually

pytestmark = pytest.mark.anyio

# a job that listens, says its port, and answers each connection (once its client has
# half-closed) with the length and sha256 of what it received
SERVER = """
import hashlib, socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1], flush=True)
def serve(c):
    h, n = hashlib.sha256(), 0
    while data := c.recv(1 << 16):
        h.update(data); n += len(data)
    c.sendall(f"{n} {h.hexdigest()}\\n".encode()); c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


def service_pid(state: Path) -> int:
    return int((state / "farm.pid").read_text())


def holders_of(port: int) -> set[int]:
    """Pids of processes with a TCP connection to 127.0.0.1:port."""
    pids = set()
    for conn in psutil.net_connections("tcp4"):
        if conn.raddr and conn.raddr.port == port and conn.status == psutil.CONN_ESTABLISHED and conn.pid:
            pids.add(conn.pid)
    return pids


async def exchange(port: int, payload: bytes, opened: anyio.Event | None = None) -> bytes:
    async with await anyio.connect_tcp("127.0.0.1", port) as conn:
        if opened is not None:
            await conn.send(payload[:1])
            await opened.wait()
            payload = payload[1:]
        for i in range(0, len(payload), 1 << 20):
            await conn.send(payload[i : i + (1 << 20)])
        await conn.send_eof()
        answer = b""
        while not answer.endswith(b"\n"):
            answer += await conn.receive()
        return answer


async def test_the_service_dials_the_job_and_tunnels_both_ways(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with Client(f"local://{state}", cancel_grace=0.5) as farm:
        async with serving(farm, SERVER) as (job_id, port):
            with anyio.fail_after(60):
                async with farm.jobs.port_forward(job_id, job_port=port) as fwd:
                    payloads = [os.urandom(6 << 20), os.urandom(1 << 20), b""]
                    answers: list[bytes] = [b""] * len(payloads)
                    held = anyio.Event()

                    async def one(i: int) -> None:
                        answers[i] = await exchange(fwd.local_port, payloads[i], held if i == 0 else None)

                    async with anyio.create_task_group() as tg:
                        tg.start_soon(one, 0)
                        # while the first connection is open: it is the service's
                        service = service_pid(state)
                        await eventually(lambda: service in holders_of(port), 30, "the service's connection")
                        assert holders_of(port) == {service}, (holders_of(port), service, os.getpid())
                        held.set()
                        tg.start_soon(one, 1)
                        tg.start_soon(one, 2)
                    for payload, answer in zip(payloads, answers, strict=True):
                        assert answer == f"{len(payload)} {hashlib.sha256(payload).hexdigest()}\n".encode()
                    assert not fwd.errors
        assert (await farm.jobs.wait(job_id, timeout=30)).status is JobStatus.CANCELED


async def test_a_port_nobody_listens_on_is_a_reported_error(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    async with Client(f"local://{tmp_path / 'state'}", cancel_grace=0.5) as farm:
        job = await farm.jobs.start(command=["sleep", "60"])
        try:
            with anyio.fail_after(60):
                async with farm.jobs.port_forward(job.id, job_port=free) as fwd:
                    async with await anyio.connect_tcp("127.0.0.1", fwd.local_port) as conn:
                        with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError)):
                            await conn.receive()
                    await eventually(lambda: fwd.errors, 30, "the error reported")
            (error,) = fwd.errors
            assert isinstance(error.error, ConnectionLost) and f"port {free}" in str(error.error)
        finally:
            await farm.jobs.cancel(job.id)


async def _port(lines: object) -> int:
    async for line in lines:  # type: ignore[attr-defined]
        if line.text.startswith("port "):
            return int(line.text.split()[1])
    raise AssertionError("the server never said its port")


@asynccontextmanager
async def serving(farm: Client, *argv: str) -> AsyncIterator[tuple[str, int]]:
    """A job running ``python -c *argv`` that says the port it listens on, and the
    port; the job is cancelled after."""
    job = await farm.jobs.start(command=[sys.executable, "-c", *argv])
    try:
        with anyio.fail_after(60):
            async with farm.logs.stream(job.id) as lines:
                port = await _port(lines)
        yield job.id, port
    finally:
        await farm.jobs.cancel(job.id)


# a job that sends each connection 3 MiB of a known pattern, then closes it
BLOB_SERVER = """
import socket, threading
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1], flush=True)
def serve(c):
    c.sendall(bytes(range(256)) * (3 << 12)); c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""


async def test_the_tunnel_stream_hands_frames_on_whole_or_in_pieces(tmp_path: Path) -> None:
    # the driver's byte stream (what back ends that only tunnel give the relay): a
    # reader asking for less than a frame gets it in order, a big reader whole frames
    async with Client(f"local://{tmp_path / 'state'}", cancel_grace=0.5) as farm, serving(farm, BLOB_SERVER) as (job_id, port):
        with anyio.fail_after(60):
            for size in (1000, 1 << 20):
                stream = await farm.driver.connect_port(job_id, port)
                async with stream:
                    got = bytearray()
                    with pytest.raises(anyio.EndOfStream):
                        while True:
                            piece = await stream.receive(size)
                            assert 0 < len(piece) <= size
                            got += piece
                    assert got == bytes(range(256)) * (3 << 12)


# a job that sends its one connection 48 MiB, saying how many it has sent so far
FLOOD_SERVER = """
import socket, sys
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print("port", s.getsockname()[1], flush=True)
c, _ = s.accept()
block = bytes(range(256)) * 4096
for i in range(48):
    c.sendall(block)
    with open(sys.argv[1], "w") as f:
        f.write(str(i + 1))
c.close()
"""


def _in_send(pid: int) -> bool:
    """The process is blocked in sendto(2) (x86-64 and arm64 numbers)."""
    try:
        with open(f"/proc/{pid}/syscall") as f:
            return f.read().split()[0] in ("44", "206")
    except (OSError, IndexError):
        return False


async def test_a_client_that_does_not_read_holds_the_job_back(tmp_path: Path) -> None:
    # flow control end to end: nothing piles up in the service; the job itself waits
    sent = tmp_path / "sent"
    async with Client(f"local://{tmp_path / 'state'}", cancel_grace=0.5) as farm, serving(farm, FLOOD_SERVER, str(sent)) as (job_id, port):
        with anyio.fail_after(60):
            pid = (await farm.jobs.tasks(job_id))[0].raw["pid"]
            stream = await farm.driver.connect_port(job_id, port)
            async with stream:
                first = await stream.receive(1)

                def held() -> bool:
                    return _in_send(pid) and sent.exists() and sent.read_text() != ""

                await eventually(held, 30, "the job blocked in send")
                assert int(sent.read_text()) < 40  # held back well before the end
                got = len(first)
                with pytest.raises(anyio.EndOfStream):
                    while True:
                        got += len(await stream.receive(1 << 20))
                assert got == 48 << 20
