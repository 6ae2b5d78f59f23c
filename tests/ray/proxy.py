"""A loopback TCP proxy the test controls: it forwards every connection to the Ray
head and can cut them all at once (a dropped network, as the client sees it)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Proxy:
    def __init__(self, host: str, port: int) -> None:
        self.upstream = (host, port)
        self.port = 0
        self.websockets = 0  # connections that asked for a WebSocket upgrade
        self.cut = 0  # connections cut by drop()
        self._open: set[asyncio.StreamWriter] = set()
        self._ws: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self.ws_open = asyncio.Event()  # a WebSocket connection is open

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                # an upgrade may come on a kept-alive connection, after plain requests
                if writer is not client and client not in self._ws and b"upgrade: websocket" in data.lower():
                    self.websockets += 1
                    self._ws.add(client)
                    self.ws_open.set()
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self._open |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer, writer), self._pipe(up_reader, writer, writer))
        finally:
            self._open -= {writer, up_writer}
            self._ws.discard(writer)
            if not self._ws:
                self.ws_open.clear()

    def drop_websockets(self) -> int:
        """Abort every open WebSocket connection (RST, no close frame); how many."""
        victims = list(self._ws)
        for w in victims:
            w.transport.abort()
        self._ws.clear()
        self.ws_open.clear()
        self.cut += len(victims)
        return len(victims)



@asynccontextmanager
async def running_proxy(host: str, port: int) -> AsyncIterator[Proxy]:
    proxy = Proxy(host, port)
    server = await asyncio.start_server(proxy._serve, "127.0.0.1", 0)
    proxy.port = server.sockets[0].getsockname()[1]
    try:
        yield proxy
    finally:
        server.close()
        for w in list(proxy._open):
            w.transport.abort()
        await server.wait_closed()
