"""Driver behaviour that needs no cluster: a slurmrestd of another API version
(played by a small aiohttp server on a real socket) and nothing listening."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from aiofarm import Client, ConnectionLost, UnsupportedError

pytestmark = pytest.mark.anyio


@pytest.fixture
async def newer_slurmrestd() -> AsyncIterator[str]:
    """Serves only v0.0.40 paths, as a Slurm 23.11 slurmrestd would."""

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response({"paths": {"/slurm/v0.0.40/ping": {}, "/slurm/v0.0.40/jobs": {}}})

    async def ping(request: web.Request) -> web.Response:
        return web.json_response({"meta": {"plugin": {"type": "openapi/v0.0.40"}}, "errors": []})

    app = web.Application()
    app.router.add_get("/openapi/v3", openapi)
    app.router.add_get("/slurm/v0.0.40/ping", ping)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"slurm+http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def test_unknown_api_version_is_refused(newer_slurmrestd: str) -> None:
    with pytest.raises(UnsupportedError, match=r"v0\.0\.40.*speaks v0\.0\.38"):
        async with Client(newer_slurmrestd, token="t"):
            pass


async def test_nothing_listening_is_connection_lost() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionLost, match="cannot reach slurmrestd"):
        async with Client(f"slurm+http://127.0.0.1:{port}", token="t"):
            pass
