"""``python -m tests.fakes.s3 --port N``: run the fake S3 (server.py). Prints one line
``READY {"endpoint": ...}`` once it accepts connections; with ``--die-with-parent`` it
stops when its stdin closes."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

from aiohttp import web

from .server import FakeS3


async def _main(args: argparse.Namespace) -> None:
    runner = web.AppRunner(FakeS3().app(), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", args.port, backlog=1024)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    print("READY " + json.dumps({"endpoint": f"http://127.0.0.1:{port}"}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.die_with_parent:
        loop.run_in_executor(None, lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)))
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.s3")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--die-with-parent", action="store_true")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
