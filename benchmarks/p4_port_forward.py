"""P4: port-forward throughput vs direct loopback to the same server, plus exec round-trip latency.

    .venv/bin/python benchmarks/p4_port_forward.py [--size-mib 1024] [--rounds 2000]

A job on the local farm runs ``python -m http.server`` over a directory holding one
sparse file of ``--size-mib`` MiB. A client process (the same code for both paths)
downloads it once straight from the server's port and once through
``farm.jobs.port_forward``; the relay runs in this process. Then ``farm.jobs.exec``
runs ``cat`` in the job and one line at a time is written and its echo read back.

The throughput ratio needs a quiet machine: on 2 shared cores the forwarded path
(four busy processes: the server, the farm service, the relay, the downloader)
loses more to other load than the direct one (two). So each row also gives the
CPU seconds every GiB cost, summed over the processes on its path, which other
load hardly moves: ``cpu ratio`` is direct's over the forward's.
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CLIENT = r"""
import socket, sys, time
port, size = int(sys.argv[1]), int(sys.argv[2])
s = socket.create_connection(("127.0.0.1", port))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
t0 = time.perf_counter()
s.sendall(b"GET /blob HTTP/1.0\r\nHost: x\r\n\r\n")
buf = bytearray(1 << 20); view = memoryview(buf); total = 0
while True:
    n = s.recv_into(view)
    if not n:
        break
    total += n
dt = time.perf_counter() - t0
print(total, dt)
"""


# a second server that is not the bottleneck: sendfile(2) of the same blob, so the
# relay's own ceiling shows (http.server copies through 64 KiB reads in Python)
SENDFILE_SERVER = r"""
import os, socket, sys
srv = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    c, _ = srv.accept()
    with c, open(sys.argv[2], "rb") as f:
        try:
            if c.recv(65536):
                c.sendall(b"HTTP/1.0 200 OK\r\n\r\n")
                c.sendfile(f)
        except OSError:
            pass
"""


def cpu_seconds(pids: list[int]) -> float:
    """CPU time used so far by these processes, this one and its reaped children."""
    import psutil

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        total += r.ru_utime + r.ru_stime
    return total


def download(port: int, size: int) -> tuple[int, float]:
    out = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), str(size)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), float(out[1])


class TunnelOnly:
    """The local driver as a back end that can only tunnel: no port_address."""

    def __init__(self, driver: Any) -> None:
        self._driver = driver
        self.name = "tunnel"

    async def get_jobs(self, ids: Any) -> Any:
        return await self._driver.get_jobs(ids)

    async def port_address(self, job_id: str, port: int) -> tuple[str, int]:
        from aiofarm.errors import UnsupportedError

        raise UnsupportedError("tunnel", "port_address")

    async def connect_port(self, job_id: str, port: int) -> Any:
        return await self._driver.connect_port(job_id, port)


def make_blob(tmp: Path, size: int) -> Path:
    www = tmp / "www"
    www.mkdir()
    with open(www / "blob", "wb") as f:
        f.truncate(size)  # sparse: the page cache serves zeros, no disk in the way
    return www


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            stream = await anyio.connect_tcp("127.0.0.1", port)
            await stream.aclose()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise
            await anyio.sleep(0.05)


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=2000)
    args = ap.parse_args()
    size = args.size_mib << 20

    from aiofarm import Client

    with tempfile.TemporaryDirectory() as tmp:
        www = make_blob(Path(tmp), size)
        port = free_port()
        async with Client(f"local://{tmp}/state") as farm:
            job = await farm.jobs.start(
                command=[sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
                cwd=str(www),
                name="p4-http",
            )
            port2 = free_port()
            job2 = await farm.jobs.start(
                command=[sys.executable, "-c", SENDFILE_SERVER, str(port2), str(www / "blob")],
                name="p4-sendfile",
            )
            rows = []
            cpu = []  # (direct, forward) CPU seconds per GiB of each row
            gib = 2 * size / (1 << 30)
            service = int((Path(tmp) / "state" / "farm.pid").read_text())
            errors = 0
            try:
                for label, p, j in (("http.server", port, job), ("sendfile server", port2, job2)):
                    await wait_port(p)
                    download(p, 1 << 20)  # warm up page cache and the server
                    server = int((await farm.jobs.tasks(j.id))[0].raw["pid"])
                    async with farm.jobs.port_forward(j.id, local_port=0, job_port=p) as fwd:
                        c0 = cpu_seconds([server])
                        d = [download(p, size) for _ in range(2)]
                        direct_cpu = cpu_seconds([server]) - c0
                        c1 = cpu_seconds([server, service])
                        f = [
                            await anyio.to_thread.run_sync(download, fwd.local_port, size)
                            for _ in range(2)
                        ]
                        cpu.append((direct_cpu / gib, (cpu_seconds([server, service]) - c1) / gib))
                        errors += len(fwd.errors)
                    assert all(n == d[0][0] and n > size for n, _ in d + f), (d, f)
                    direct = max(n / t for n, t in d)
                    forward = max(n / t for n, t in f)
                    rows.append((label, direct, forward))
                await farm.jobs.cancel(job2.id)

                # the same relay over a driver's byte stream (Driver.connect_port), the
                # path of back ends that can only tunnel
                from aiofarm.portforward import port_forward

                server = int((await farm.jobs.tasks(job.id))[0].raw["pid"])
                async with port_forward(TunnelOnly(farm.driver), job.id, 0, port) as fwd:
                    c1 = cpu_seconds([server, service])
                    f = [
                        await anyio.to_thread.run_sync(download, fwd.local_port, size)
                        for _ in range(2)
                    ]
                    cpu.append((cpu[0][0], (cpu_seconds([server, service]) - c1) / gib))
                    errors += len(fwd.errors)
                rows.append(("http.server, tunnel", rows[0][1], max(n / t for n, t in f)))

                lat: list[float] = []
                async with farm.jobs.exec(job.id, ["cat"], stdin=True) as stream:
                    for i in range(args.rounds):
                        line = b"line %d\n" % i
                        t0 = time.perf_counter()
                        await stream.write_in(line)
                        got = b""
                        while len(got) < len(line):
                            msg = await stream.read_out()
                            assert msg is not None
                            got += msg.data
                        lat.append(time.perf_counter() - t0)
                        assert got == line, got
            finally:
                await farm.jobs.cancel(job.id)
        # the farm service outlives its clients: stop the one this run started
        from aiofarm.drivers.local.connect import stop_service

        await anyio.to_thread.run_sync(lambda: stop_service(f"{tmp}/state", cancel_jobs=True))

    gb = 1e9
    print(f"P4 port forward: {size >> 20} MiB in one HTTP GET from a job's server, best of 2 each")
    print(
        f"{'server in the job':<20}{'direct GB/s':>13}{'forward GB/s':>14}{'ratio':>8}"
        f"{'direct cpu-s/GiB':>18}{'forward cpu-s/GiB':>19}{'cpu ratio':>11}"
    )
    for (label, direct, forward), (cd, cf) in zip(rows, cpu, strict=True):
        print(
            f"{label:<20}{direct / gb:>13.3f}{forward / gb:>14.3f}{forward / direct:>8.2f}"
            f"{cd:>18.2f}{cf:>19.2f}{cd / cf:>11.2f}"
        )
    print(f"goal: ratio >= 0.5 (the http.server row is P4)   per-connection errors: {errors}")
    print("tunnel row: relay over Driver.connect_port's anyio stream, vs the same direct figure")
    lat.sort()
    p50 = statistics.median(lat) * 1e6
    p99 = lat[int(len(lat) * 0.99) - 1] * 1e6
    print(
        f"exec round trip (write a line to `cat`, read the echo), {len(lat)} rounds:"
        f" p50 {p50:.0f} us, p99 {p99:.0f} us"
    )


if __name__ == "__main__":
    anyio.run(main)
