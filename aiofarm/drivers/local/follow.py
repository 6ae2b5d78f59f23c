"""Followed logs over the service's WebSocket: ``GET /v1/log_follow?job=ID&token=T``.

The first frame from the service is JSON text: ``{"ok": true, "tasks": {index: id}}``
or an error (as ``wire.error_to``). Then binary frames carry the job's log records
in wire form (``logfile.read_wire``: whole records as on disk, in order, from the
token's offset, each index record followed by its lines' raw bytes: the client parses
them, and the token after a frame is the offset of the record after its last), and a text frame ``{"end": true}`` says the job has finished and every record
was sent; the service then closes. The client sends nothing.

Flow control: the service reads the log file one chunk at a time and reads the next
only once the socket has taken the last (aiohttp's send waits for the transport to
drain, and the client's reader stops reading while its queue is full). A slow
follower costs the service its offset and nothing more, and never slows the job,
whose output goes to the file whoever follows it.

Latency: new output wakes the sender at once (``add_notify`` on each running task of
the job, which leaves its output spliced); the tasks of a followed job have their pipes read from their first byte (not
after ``processes.ARM_DELAY``); a task that starts later is found on the job's status
event, or within ``POLL`` for a job that was already running.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ...errors import ConnectionLost, FarmError
from ...models import Job, LogPage
from ..base import LogQuery
from . import logfile, wire
from .codec import from_dt

if TYPE_CHECKING:
    from aiohttp import ClientWebSocketResponse, web

    from .embedded import EmbeddedDriver
    from .processes import RunningTask

#: the most bytes of records one frame carries
CHUNK = 256 << 10
#: how often a waiting sender looks for tasks of the job that started meanwhile
POLL = 0.25
#: the most lines a page of the client's side holds
PAGE = 1000


async def serve_log_follow(farm: EmbeddedDriver, request: web.Request) -> web.StreamResponse:
    from aiohttp import web

    ws = web.WebSocketResponse(heartbeat=None, max_msg_size=0)
    await ws.prepare(request)
    job_id = request.query.get("job", "")
    try:
        offset, raw = logfile.decode_token(request.query.get("token") or None)
        path, ids = farm.log_source(job_id)
    except FarmError as exc:
        await ws.send_str(wire.dumps(wire.error_to(exc)))
        await ws.close()
        return ws
    news = asyncio.Event()
    watched: dict[RunningTask, Callable[[], None]] = {}

    def on_output() -> None:
        news.set()  # the records are written by the time the sender runs

    def on_job(job: Job) -> None:
        if job.id == job_id:
            news.set()

    async def send() -> None:
        nonlocal offset, raw
        while True:
            news.clear()
            for task in farm.running_tasks(job_id):
                if task not in watched and not task.exited:
                    watched[task] = task.add_notify(on_output)
            for task in [t for t in watched if t.exited]:
                watched.pop(task)()
            # an unfinished job may write more; a finished one has written everything
            active = farm.job_active(job_id)
            data, after, after_raw = logfile.read_wire(path, offset, raw, CHUNK)
            if data:
                await ws.send_bytes(data)  # waits while the follower is behind
                offset, raw = after, after_raw
                continue
            if not active:
                await ws.send_str('{"end":true}')
                return
            with anyio.move_on_after(POLL):
                await news.wait()

    farm.subscribe(on_job)
    farm.followed[job_id] += 1
    try:
        await ws.send_str(wire.dumps({"ok": True, "tasks": ids}))
        async with anyio.create_task_group() as tg:

            async def until_gone() -> None:
                async for _ in ws:  # the follower sends nothing: this ends when it goes
                    pass
                tg.cancel_scope.cancel()

            tg.start_soon(until_gone)
            await send()
            tg.cancel_scope.cancel()
    except (ConnectionError, RuntimeError):
        pass  # the follower vanished mid-send
    finally:
        farm.followed[job_id] -= 1
        if not farm.followed[job_id]:
            del farm.followed[job_id]
        farm.unsubscribe(on_job)
        for remove in watched.values():
            remove()
        await ws.close()
    return ws


async def follow_pages(
    ws: ClientWebSocketResponse[Any], job_id: str, token: str | None, query: LogQuery
) -> AsyncGenerator[LogPage, None]:
    """The client side: the lines of each frame in pages of up to PAGE (the last with
    the token just after the frame's records, the others with none), until the
    service says the job has ended. ConnectionLost if the stream breaks
    first (the caller resumes from the last page's token)."""
    from aiohttp import WSMsgType

    from .queries import task_index_of
    from .streams import first_answer

    offset, _ = logfile.decode_token(token)
    answer = await first_answer(ws, f"log follow of {job_id}")
    ids = {int(k): v for k, v in answer["tasks"].items()}
    task_index = task_index_of(job_id, query, ids)
    start = from_dt(query.start_time) if query.start_time else None
    end = from_dt(query.end_time) if query.end_time else None
    async for msg in ws:
        if msg.type == WSMsgType.BINARY:
            data: bytes = msg.data
            lines, used, raw = logfile.parse_wire(
                data, limit=len(data), task_index=task_index, streams=query.streams, start=start, end=end, task_ids=ids
            )
            offset += used
            # a frame holds thousands of lines: they go on a page at a time (the caller
            # checkpoints between pages, so other tasks run), the token on the last
            last = (len(lines) - 1) // PAGE * PAGE if lines else 0
            for i in range(0, last, PAGE):
                yield LogPage(tuple(lines[i : i + PAGE]), None)
            yield LogPage(tuple(lines[last:]), logfile.encode_token(offset, raw))
        elif msg.type == WSMsgType.TEXT and json.loads(msg.data).get("end"):
            return
        elif msg.type != WSMsgType.TEXT:
            break
    raise ConnectionLost(f"log follow of {job_id}: the farm service went away")
