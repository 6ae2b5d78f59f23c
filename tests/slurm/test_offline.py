"""Driver behaviour that needs no cluster: a slurmrestd of a version aiofarm does not
speak (played by a small aiohttp server on a real socket), one that answers like
26.05 does to an unknown URL (its 404 page twice), and nothing listening."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import anyio
import pytest
from aiohttp import web

from aiofarm import AuthError, BackendError, Client, ConnectionLost, UnsupportedError
from tests.fakes.serve import serving

pytestmark = pytest.mark.anyio


@pytest.fixture
async def other_slurmrestd() -> AsyncIterator[str]:
    """Serves only v0.0.39 paths (no Slurm release has that version)."""

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response({"paths": {"/slurm/v0.0.39/ping/": {}, "/slurm/v0.0.39/jobs/": {}}})

    app = web.Application()
    app.router.add_get("/openapi/v3", openapi)
    async with serving(app) as port:
        yield f"slurm+http://127.0.0.1:{port}"


async def test_unknown_api_version_is_refused_listing_both_sides(other_slurmrestd: str) -> None:
    with pytest.raises(UnsupportedError, match=r"offers v0\.0\.39; aiofarm speaks v0\.0\.45, .*v0\.0\.38"):
        async with Client(other_slurmrestd, token="t"):
            pass
    with pytest.raises(UnsupportedError, match=r"API v0\.0\.41: the server offers v0\.0\.39"):
        async with Client(other_slurmrestd + "?api=v0.0.41", token="t"):
            pass


_PAGE = b"Unable to find requested URL endpoint."


async def _double_reply(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, status: bytes) -> None:
    # what slurmrestd 26.05 does: the reply says Connection: Close, then comes again
    await reader.readuntil(b"\r\n\r\n")
    reply = (
        b"HTTP/1.1 " + status + b"\r\nConnection: Close\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n\r\n"
        % len(_PAGE)
    ) + _PAGE
    writer.write(reply + reply)
    await writer.drain()
    writer.close()


@pytest.fixture
async def doubling_slurmrestd() -> AsyncIterator[tuple[str, list[int]]]:
    count = [0]
    statuses = {True: b"404 NOT FOUND", False: b"511 Network Authentication Required"}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        count[0] += 1
        head = await reader.readuntil(b"\r\n\r\n")
        reader.feed_data(head)  # _double_reply reads it again
        await _double_reply(reader, writer, statuses[b"bad" not in head])

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"slurm+http://127.0.0.1:{port}", count
    finally:
        server.close()
        await server.wait_closed()


async def test_a_malformed_reply_is_a_backend_answer_not_a_lost_connection(
    doubling_slurmrestd: tuple[str, list[int]],
) -> None:
    url, count = doubling_slurmrestd
    with anyio.fail_after(10), pytest.raises(UnsupportedError, match="offers none") as info:
        async with Client(url, token="t"):
            pass
    assert not isinstance(info.value, ConnectionLost)
    # one question per version, none asked twice: a malformed reply is not retried
    assert count[0] <= 8
    with anyio.fail_after(10), pytest.raises(AuthError, match="511"):
        async with Client(url + "?api=v0.0.42", token="bad"):
            pass


async def test_a_malformed_404_is_not_found_once(doubling_slurmrestd: tuple[str, list[int]]) -> None:
    from aiofarm.drivers.slurm.http import SlurmAPIError, SlurmHTTP

    url, count = doubling_slurmrestd
    http = SlurmHTTP(base_url=url.replace("slurm+", ""), unix_path=None, user="u", token="t")
    await http.open()
    try:
        with pytest.raises(SlurmAPIError) as info:
            await http.call("GET", "/slurm/v0.0.45/job/1")
        assert info.value.status == 404 and "malformed" in info.value.message
        assert count[0] == 1  # not retried
        # the driver maps it like any Slurm error: not found, or a BackendError
        assert isinstance(info.value.to_backend(), BackendError)
    finally:
        await http.aclose()


async def test_nothing_listening_is_connection_lost() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionLost, match="cannot reach slurmrestd"):
        async with Client(f"slurm+http://127.0.0.1:{port}", token="t"):
            pass


def test_a_doubled_error_reply_still_says_slurms_error() -> None:
    """26.05 writes a failed submit's 422 reply twice; aiohttp rejects it, quoting the
    body, from which Slurm's own error is still read (here: a feature no node has)."""
    from aiofarm.drivers.slurm.http import SlurmAPIError, SlurmHTTP

    # what aiohttp said of a real 26.05 reply (trimmed)
    message = (
        "Data after `Connection: close`:\n\n  b'{\\n  \"errors\": [\\n    {\\n      \"description\": "
        "\"Batch job submission failed\",\\n      \"error_number\": 2029,\\n      \"error\": \"Invalid feature "
        "specification\",\\n      \"source\": \"slurm_submit_batch_job()\"\\n    }\\n  ]\\n}HTTP/1.1 422 "
        "UNPROCESSABLE CONTENT'\n      ^"
    )
    http = SlurmHTTP(base_url="http://127.0.0.1:1", unix_path=None, user="u", token="t", timeout=5, reload_token=None)
    err = http._malformed("POST", "/slurm/v0.0.45/job/submit", message)
    assert isinstance(err, SlurmAPIError)
    assert (err.status, err.number) == (422, 2029) and "Invalid feature specification" in err.message
