"""``python -m tests.fakes.deadline --port N``: run the fake Deadline Cloud service.

With ``--moto`` it also starts moto's server (ThreadedMotoServer) on a free port, for
CloudWatch Logs and for S3 (job attachments: a bucket the default queue uses). Prints
one line ``READY {json}`` (ports and the seeded farm/queue/fleet ids) on stdout once it
accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket

from ..serve import serve
from .server import FakeServer


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _main(args: argparse.Namespace) -> None:
    moto = None
    logs_endpoint = args.logs_endpoint
    if args.moto:
        import logging

        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        port = _free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        logs_endpoint = f"http://127.0.0.1:{port}"
    # moto's server answers every service on one port: S3 for job attachments too,
    # unless another S3 is named
    s3_endpoint = args.s3_endpoint or (logs_endpoint if args.moto else None)
    if s3_endpoint:
        # the worker's official job attachments code reaches S3 through boto3
        os.environ["AWS_ENDPOINT_URL_S3"] = s3_endpoint
    server = FakeServer(
        logs_endpoint=logs_endpoint,
        s3_endpoint=s3_endpoint,
        workers=args.workers,
        auto_interval=args.auto,
        execute=args.execute,
    )
    try:
        await serve(
            server.app(), args.port, args.die_with_parent,
            lambda port: {
                "port": port,
                "endpoint": f"http://127.0.0.1:{port}",
                "logsEndpoint": logs_endpoint,
                "s3Endpoint": server.s3_endpoint,
                "attachments": server.attachments,
                **server.state.default,
            },
        )  # fmt: skip
    finally:
        if moto is not None:
            moto.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakes.deadline")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--moto", action="store_true", help="start moto CloudWatch Logs too")
    parser.add_argument("--logs-endpoint", default=None)
    parser.add_argument("--s3-endpoint", default=None, help="an S3 other than moto's")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--auto", type=float, default=None, help="tick every AUTO seconds")
    parser.add_argument("--die-with-parent", action="store_true")
    parser.add_argument("--execute", action="store_true", help="workers really run task commands")
    args = parser.parse_args()
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "fake")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "fake")
    asyncio.run(_main(args))


if __name__ == "__main__":
    main()
