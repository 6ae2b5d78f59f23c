"""Reading in tests, with a deadline: a process's output from a ``StdStream``
(``read_out``) or a driver's raw channel (``receive``), and a socket to its end."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc

from aiofarm import Message


async def _next(stream: Any) -> Message | None:
    read = getattr(stream, "read_out", None) or stream.receive
    message: Message | None = await read()
    return message


async def read_until(stream: Any, needle: bytes, timeout: float = 60) -> bytes:
    """Output until it holds ``needle`` (an AssertionError at EOF before it)."""
    got = b""
    with anyio.fail_after(timeout):
        while needle not in got:
            msg = await _next(stream)
            if msg is None:
                raise AssertionError(f"EOF before {needle!r}; got {got!r}")
            got += msg.data
    return got


async def read_all(stream: Any, timeout: float = 60) -> dict[int, bytes]:
    """Everything until EOF, by file descriptor."""
    out: dict[int, bytes] = {}
    with anyio.fail_after(timeout):
        while (msg := await _next(stream)) is not None:
            out[msg.fileno] = out.get(msg.fileno, b"") + msg.data
    return out


async def receive_to_eof(stream: anyio.abc.ByteReceiveStream, timeout: float = 10) -> bytes:
    """Every byte until the peer closes its side."""
    got = b""
    with anyio.fail_after(timeout):
        try:
            while True:
                got += await stream.receive()
        except anyio.EndOfStream:
            return got
