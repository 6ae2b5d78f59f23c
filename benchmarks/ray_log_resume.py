"""A Ray job's log followed through forced disconnects: aiofarm's ranged reads, resumed
at their byte offset, vs Ray's WebSocket tail resumed the only way it can be (open it
again and skip what was already read: what the driver did before, and what a
`ray job logs -f` user's reconnect loop would do), against a real single-node Ray
2.60 head that this script starts (tests/backends/ray.py) and stops, in the same run.

One job writes ``--lines`` lines (``--width`` bytes each) over about ``--seconds``
seconds, and copies each to a file of its own. Both followers run at the same time,
each through its own fault proxy (tests/reliability/faultproxy.py) that resets every
connection every ``--drop-every`` seconds (aiofarm's in front of the node agent, the
tail's in front of the dashboard). Rows per drop interval:

* resets: connections the proxy reset during the follow,
* read: body bytes the follower received / the log file's size,
* lines: right / the job's own count (0 lost, 0 repeated is "exact"),
* ended after: from the job's end (Ray's ``end_time``) to the follower's; "--" if it
  had not ended ``--cap`` seconds after the client saw the job end (the lines are
  then those it had by then).

    .venv/bin/python benchmarks/ray_log_resume.py --drop-every 0.3 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from aiofarm import Client, JobStatus
from tests.backends.ray import Head, start_head, stop_head
from tests.reliability.faultproxy import FaultProxy


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("//", 1)[1].rstrip("/").partition(":")
    return host, int(port)


async def _dropping(proxy: FaultProxy, every: float) -> None:
    while True:
        await anyio.sleep(every)
        proxy.drop_all()


async def follow_aiofarm(head: Head, agent: str, job_id: str, every: float, out: dict[str, Any]) -> None:
    async with FaultProxy(_host_port(agent)) as proxy, Client(
        head.url, token=head.token, agent_url=f"http://{proxy.address}"
    ) as farm, anyio.create_task_group() as tg:
        out["proxy"] = proxy
        tg.start_soon(_dropping, proxy, every)
        async with farm.logs.stream(job_id, streams=("stdout", "stderr")) as lines:
            async for line in lines:
                out["lines"].append(line.text)
        out["ended"] = time.time()
        out["done"].set()
        tg.cancel_scope.cancel()


async def follow_tail(head: Head, job_id: str, every: float, out: dict[str, Any]) -> None:
    """Ray's WebSocket tail: each connection sends the log from its first byte; the
    characters already read are skipped. Ends when Ray closes the tail after the job."""
    import aiohttp

    text = ""
    headers = {"Authorization": f"Bearer {head.token}"}
    async with FaultProxy(_host_port(head.http)) as proxy, aiohttp.ClientSession(
        headers=headers
    ) as session, anyio.create_task_group() as tg:
        out["proxy"] = proxy
        tg.start_soon(_dropping, proxy, every)
        while True:
            got = 0
            try:
                async with session.ws_connect(f"http://{proxy.address}/api/jobs/{job_id}/logs/tail") as ws:
                    async for msg in ws:
                        if msg.type is aiohttp.WSMsgType.TEXT:
                            data = str(msg.data)
                            out["tail_bytes"] += len(data.encode())
                            got += len(data)
                            if got > len(text):
                                text += data[len(data) - (got - len(text)) :]
                                out["lines"] = text.splitlines()
                    if ws.close_code == aiohttp.WSCloseCode.OK and ws.exception() is None:
                        break
            except (aiohttp.ClientError, OSError):
                pass
            await anyio.sleep(0.05)
        out["ended"] = time.time()
        out["done"].set()
        tg.cancel_scope.cancel()


async def one_run(head: Head, args: argparse.Namespace, every: float) -> list[tuple[str, dict[str, Any]]]:
    copy = Path(tempfile.mkdtemp(prefix="ray-log-resume-")) / "out.txt"
    pause = args.seconds / args.lines
    pad = "x" * max(0, args.width - 12)
    script = (
        f'i=0; while [ $i -lt {args.lines} ]; do l="line $i {pad}"; echo "$l"; echo "$l" >> "$1"; '
        f"i=$((i+1)); sleep {pause}; done"
    )
    rows: list[tuple[str, dict[str, Any]]] = []
    async with head.client() as farm:
        job = await farm.jobs.start(["sh", "-c", script, "sh", str(copy)])
        running = await farm.jobs.wait(job.id, until=JobStatus.RUNNING, timeout=120)
        agent = str(running.job.raw["driver_agent_http_address"])
        mine: dict[str, Any] = {"lines": [], "ended": None, "done": anyio.Event()}
        tail: dict[str, Any] = {"lines": [], "tail_bytes": 0, "ended": None, "done": anyio.Event()}
        with anyio.move_on_after(args.seconds * 3 + 60 + args.cap):
            async with anyio.create_task_group() as tg:
                tg.start_soon(follow_aiofarm, head, agent, job.id, every, mine)
                tg.start_soon(follow_tail, head, job.id, every, tail)
                done = await farm.jobs.wait(job.id, timeout=args.seconds * 3 + 60)
                assert done.job.finished_at is not None
                job_end = done.job.finished_at.timestamp()  # Ray's end_time
                with anyio.move_on_after(args.cap):
                    await mine["done"].wait()
                    await tail["done"].wait()
                tg.cancel_scope.cancel()
        assert done.status is JobStatus.SUCCEEDED
        data = await anyio.Path(copy).read_bytes()
        size, expected = len(data), data.decode().splitlines()
    for label, out in (("aiofarm: ranged reads from the offset", mine), ("Ray's WebSocket tail, reopened", tail)):
        got = [t for t in out["lines"] if t.startswith("line ")]
        out["exact"] = got == expected
        out["right"] = sum(1 for a, b in zip(got, expected, strict=False) if a == b)
        proxy = out["proxy"]
        out["resets"] = proxy.counts["dropped"]
        # the tail's bodies are WebSocket frames (spliced, not counted by the proxy)
        out["bytes"] = out.get("tail_bytes", proxy.counts["body_bytes"])
        out["expected"] = len(expected)
        out["ratio"] = out["bytes"] / size
        out["after"] = None if out["ended"] is None else out["ended"] - job_end
        rows.append((label, out))
    return rows


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=2000)
    ap.add_argument("--width", type=int, default=100, help="bytes per line")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long the job writes")
    ap.add_argument("--drop-every", type=float, nargs="+", default=[0.3, 3.0])
    ap.add_argument("--cap", type=float, default=30.0, help="seconds a follower may take after the job ended")
    args = ap.parse_args()
    head = await anyio.to_thread.run_sync(start_head)
    results = []
    try:
        for every in args.drop_every:
            results.append((every, await one_run(head, args, every)))
            print(f"  done: drops every {every:g} s", file=sys.stderr)
    finally:
        await anyio.to_thread.run_sync(stop_head)
    print(f"\nRay log follow through forced disconnects: {args.lines} lines of {args.width} B over "
          f"{args.seconds:g} s, both followers at once on one real head, same run")  # fmt: skip
    print(f"{'drops every':>11}  {'follower':<38} {'resets':>6} {'read':>7} {'lines':>13} {'ended after':>12}")
    for every, rows in results:
        for label, out in rows:
            lines = "exact" if out["exact"] else f"{out['right']}/{out['expected']}"
            after = "--" if out["after"] is None else f"{out['after']:.2f} s"
            print(f"{every:>10g}s  {label:<38} {out['resets']:>6} {out['ratio']:>6.2f}x {lines:>13} {after:>12}")


if __name__ == "__main__":
    anyio.run(main)
