"""How a fake service (``python -m tests.fakes.<name>``) runs: on a loopback port, it
says ``READY {json}`` on stdout once it accepts connections, and serves until SIGTERM,
SIGINT or (``die_with_parent``) its stdin closing, which means its parent died."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiohttp import web

__all__ = ["serve", "serving"]


async def serve(
    app: web.Application, port: int, die_with_parent: bool, info: Callable[[int], dict[str, Any]]
) -> None:
    """Serve ``app``; ``info(port)`` is what the READY line says."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print("READY " + json.dumps(info(bound)), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if die_with_parent:
        loop.run_in_executor(None, lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[int]:
    """Serve ``app`` in this process on a free loopback port (yielded) until the block ends."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()
