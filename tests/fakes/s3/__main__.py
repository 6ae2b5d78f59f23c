"""``python -m tests.fakes.s3 --port N``: run the fake S3 (server.py). Prints one line
``READY {"endpoint": ...}`` once it accepts connections; with ``--die-with-parent`` it
stops when its stdin closes."""

from __future__ import annotations

import argparse
import asyncio

from ..serve import serve
from .server import FakeS3


async def _main(args: argparse.Namespace) -> None:
    await serve(
        FakeS3().app(), args.port, args.die_with_parent,
        lambda port: {"endpoint": f"http://127.0.0.1:{port}"},
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.s3")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--die-with-parent", action="store_true")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
