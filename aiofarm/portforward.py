"""Port forwarding: a listener on 127.0.0.1 and the ONE relay, for every driver.

Entry point (``Jobs.port_forward`` delegates here)::

    port_forward(driver, job_id, local_port=0, job_port, *, on_error=None,
                 host="127.0.0.1") -> AsyncContextManager[PortForward]

``local_port=0`` picks a free port (``fwd.local_port``). Every accepted connection is
dialled to the job's port (``driver.port_address(job_id, job_port)`` gives the address;
it is asked per connection, so a job that has ended refuses new connections with
``JobNotRunning``) and relayed both ways, half-close included. A driver that can only
tunnel implements ``connect_port`` (an anyio ByteStream) instead; the same relay then
runs over it through a small transport adapter.

Per-connection failures never end the forward; they are reported three ways:
``on_error(ForwardError)`` is called, ``fwd.errors`` keeps them, and
``async with fwd.events() as events: async for ev in events`` streams every
:class:`ForwardEvent` (opened / closed / error) from the moment of subscribing.

Leaving the context (also cancelled) closes the listener and aborts every relayed
connection; no socket outlives it.

Why asyncio Protocols and not anyio streams: the relay moves each chunk from one
transport's ``data_received`` straight into the other's ``write`` with no task switch
and no intermediate buffer; flow control pauses reading on one side while the other
side's write buffer is above its high-water mark. A StreamReader relay measured
0.2-0.4 GB/s here, this one ~0.5x of direct loopback (benchmarks/p4_port_forward.py).
Lifetimes are still structured: one anyio task group owns a task per connection.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .drivers.base import Driver
from .errors import ConnectionLost, FarmError, InvalidSpec, UnsupportedError
from .stdio import check_running

if TYPE_CHECKING:
    from .watch import Hub

# user-facing names (port_forward is the entry point Jobs delegates to)
__all__ = ["ForwardError", "ForwardEvent", "PortForward"]

#: per-transport write buffer high-water mark; reading from the peer pauses above it
WRITE_HIGH = 1024 * 1024
WRITE_LOW = 256 * 1024
#: the most a tunnelled stream's receive is asked for at once
READ_SIZE = 1024 * 1024


@attrs.frozen
class ForwardError:
    connection: int  # 1, 2, ... in accept order
    peer: tuple[str, int] | None  # the local client's address
    error: FarmError
    time: float  # time.time()


@attrs.frozen
class ForwardEvent:
    kind: Literal["opened", "closed", "error"]
    connection: int
    peer: tuple[str, int] | None
    bytes_to_job: int = 0
    bytes_from_job: int = 0
    error: FarmError | None = None


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: what it receives goes to the peer's transport."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.received = 0
        self.eof = False
        self.lost: BaseException | None = None
        self.made = asyncio.Event()
        self.done = asyncio.Event()
        self.cancelled = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.made.set()
        if self.cancelled:
            transport.abort()
            return
        transport.set_write_buffer_limits(WRITE_HIGH, WRITE_LOW)
        if self.peer is None:
            # nowhere to put data yet: the connection task resumes once the peer is dialled
            transport.pause_reading()

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(data)

    def eof_received(self) -> bool:
        self.eof = True
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if peer.eof:
                # both directions ended: close both (close() flushes what is buffered)
                peer.transport.close()
                return False
            peer.transport.write_eof()
        return True  # stay half-open: the other direction may still flow

    def pause_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = exc
        self.done.set()
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.transport.is_closing():
            if exc is None:
                peer.transport.close()
            else:
                peer.transport.abort()

    def abort(self) -> None:
        self.cancelled = True
        if self.transport is not None and not self.done.is_set():
            self.transport.abort()


_CLOSE = object()


class _StreamTransport(asyncio.Transport):
    """A transport over an anyio ByteStream, for drivers that can only tunnel
    (``connect_port``): the relay's protocols then work unchanged. Two pumps run in
    ``run()``; flow control maps onto pause/resume the same way as on sockets."""

    def __init__(self, stream: anyio.abc.ByteStream, protocol: _Side) -> None:
        super().__init__()
        self._stream = stream
        self._protocol = protocol
        self._out: collections.deque[Any] = collections.deque()
        self._out_size = 0
        self._out_ready = asyncio.Event()
        self._reading = asyncio.Event()
        self._reading.set()
        self._closing = False
        self._writing_paused = False
        self._scope = anyio.CancelScope()
        self._error: Exception | None = None

    # -- the asyncio.Transport surface the relay uses --------------------------------
    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._closing or not data:
            return
        self._out.append(bytes(data))
        self._out_size += len(data)
        self._out_ready.set()
        if self._out_size > WRITE_HIGH and not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def write_eof(self) -> None:
        if not self._closing:
            self._out.append(None)
            self._out_ready.set()

    def can_write_eof(self) -> bool:
        return True

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._out.append(_CLOSE)  # flush what is queued, then close
            self._out_ready.set()

    def abort(self) -> None:
        self._closing = True
        self._scope.cancel()

    def pause_reading(self) -> None:
        self._reading.clear()

    def resume_reading(self) -> None:
        self._reading.set()

    def is_reading(self) -> bool:
        return self._reading.is_set()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return self._out_size

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    # -- the pumps ---------------------------------------------------------------
    async def _receiver(self) -> None:
        try:
            while True:
                await self._reading.wait()
                try:
                    # as much as the stream has (a tunnel's whole frame), not 64 KiB slices
                    data = await self._stream.receive(READ_SIZE)
                except anyio.EndOfStream:
                    if not self._protocol.eof_received():
                        self.close()
                    return
                self._protocol.data_received(data)
        except Exception as exc:
            self._error = exc
            self.abort()

    async def _sender(self) -> None:
        try:
            while True:
                while not self._out:
                    self._out_ready.clear()
                    await self._out_ready.wait()
                item = self._out.popleft()
                if item is _CLOSE:
                    return
                if item is None:
                    if isinstance(self._stream, anyio.abc.ByteStream):
                        await self._stream.send_eof()
                    continue
                self._out_size -= len(item)
                await self._stream.send(item)
                if self._writing_paused and self._out_size <= WRITE_LOW:
                    self._writing_paused = False
                    self._protocol.resume_writing()
        except Exception as exc:
            self._error = exc
            self.abort()

    async def run(self) -> None:
        try:
            with self._scope:
                self._protocol.connection_made(self)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._receiver)
                    await self._sender()
                    tg.cancel_scope.cancel()
        finally:
            self._closing = True
            with anyio.CancelScope(shield=True):
                await anyio.aclose_forcefully(self._stream)
            self._protocol.connection_lost(self._error)


class PortForward:
    """What ``port_forward`` yields: where it listens, and what happened per connection."""

    def __init__(
        self,
        driver: Driver,
        job_id: str,
        job_port: int,
        on_error: Callable[[ForwardError], None] | None,
    ) -> None:
        self.job_id = job_id
        self.job_port = job_port
        self.host = "127.0.0.1"
        self.local_port = 0
        self._driver = driver
        self._on_error = on_error
        self._errors: list[ForwardError] = []
        self._subscribers: set[MemoryObjectSendStream[ForwardEvent]] = set()
        self._ids = itertools.count(1)
        self._tg: anyio.abc.TaskGroup | None = None
        self._sides: set[_Side] = set()
        self._closing = False
        self.active = 0
        self.accepted = 0
        self.dropped_events = 0

    @property
    def errors(self) -> tuple[ForwardError, ...]:
        return tuple(self._errors)

    @asynccontextmanager
    async def events(
        self, max_buffer: int = 1024
    ) -> AsyncIterator[MemoryObjectReceiveStream[ForwardEvent]]:
        """Events from now on. A subscriber more than ``max_buffer`` events behind loses
        the newest ones (counted in ``dropped_events``): the relay never waits for it."""
        send, receive = anyio.create_memory_object_stream[ForwardEvent](max_buffer)
        self._subscribers.add(send)
        try:
            async with receive:
                yield receive
        finally:
            self._subscribers.discard(send)
            send.close()

    def _publish(self, event: ForwardEvent) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(event)
            except anyio.WouldBlock:
                self.dropped_events += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.discard(send)

    def _report(self, conn: int, peer: tuple[str, int] | None, error: FarmError) -> None:
        record = ForwardError(conn, peer, error, time.time())
        self._errors.append(record)
        self._publish(ForwardEvent("error", conn, peer, error=error))
        if self._on_error is not None:
            with contextlib.suppress(Exception):  # a broken callback must not stop the listener
                self._on_error(record)

    def _accept(self) -> _Side:
        side = _Side()
        self._sides.add(side)
        if self._closing or self._tg is None:
            side.abort()  # accepted while shutting down: its transport closes when made
        else:
            self._tg.start_soon(self._serve, side)
        return side

    def _abort_all(self) -> None:
        """Every accepted socket, also one whose task never got to run."""
        self._closing = True
        for side in self._sides:
            side.abort()
        self._sides.clear()

    async def _serve(self, client: _Side) -> None:
        conn = next(self._ids)
        self.accepted += 1
        self.active += 1
        peer: tuple[str, int] | None = None
        job = _Side()
        bridge: _StreamTransport | None = None
        try:
            await client.made.wait()
            assert client.transport is not None
            info = client.transport.get_extra_info("peername")
            peer = (str(info[0]), int(info[1])) if info else None
            self._publish(ForwardEvent("opened", conn, peer))
            try:
                job.peer = client  # set before connect so job side starts reading at once
                try:
                    host, port = await self._driver.port_address(self.job_id, self.job_port)
                except UnsupportedError:
                    # a driver that can only tunnel: same relay over its byte stream
                    stream = await self._driver.connect_port(self.job_id, self.job_port)
                    bridge = _StreamTransport(stream, job)
                else:
                    loop = asyncio.get_running_loop()
                    await loop.create_connection(lambda: job, host, port)
            except FarmError as exc:
                self._report(conn, peer, exc)
                return
            except OSError as exc:
                self._report(
                    conn,
                    peer,
                    ConnectionLost(
                        f"cannot connect to port {self.job_port} of job {self.job_id!r}: "
                        f"{exc.strerror or exc}"
                    ),
                )
                return
            client.peer = job
            async with anyio.create_task_group() as tg:
                if bridge is not None:
                    tg.start_soon(bridge.run)
                    await job.made.wait()
                if client.done.is_set():
                    job.abort()  # the local client left before the link was made
                else:
                    client.transport.resume_reading()
                await client.done.wait()
                await job.done.wait()
            for side, what in ((client, "local client"), (job, "job")):
                if side.lost is not None:
                    self._report(conn, peer, ConnectionLost(f"{what} connection lost: {side.lost}"))
        finally:
            client.abort()
            job.abort()
            self._sides.discard(client)
            with anyio.CancelScope(shield=True):
                if bridge is not None:  # its run() may never have started
                    await anyio.aclose_forcefully(bridge._stream)
                # abort() closes the socket on the next loop turn; wait for it so that
                # leaving the forward leaves no fd behind
                for side in (client, job):
                    if side.transport is not None:
                        await side.done.wait()
            self.active -= 1
            self._publish(
                ForwardEvent(
                    "closed", conn, peer, bytes_to_job=client.received, bytes_from_job=job.received
                )
            )


def check_port(field: str, value: object, allow_zero: bool) -> int:
    low = 0 if allow_zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 65535:
        raise InvalidSpec(field, f"must be an int in {low}..65535, got {value!r}")
    return value


@asynccontextmanager
async def port_forward(
    driver: Driver,
    job_id: str,
    local_port: int = 0,
    job_port: int = 0,
    *,
    on_error: Callable[[ForwardError], None] | None = None,
    host: str = "127.0.0.1",
    hub: Hub | None = None,
    start_timeout: float = 0.0,
) -> AsyncIterator[PortForward]:
    """Listen on ``host:local_port`` and relay every connection to ``job_port`` of the
    job (waited for up to ``start_timeout`` seconds if it has not started yet)."""
    check_port("local_port", local_port, allow_zero=True)
    check_port("job_port", job_port, allow_zero=False)
    if not isinstance(host, str) or not host or "\x00" in host:
        raise InvalidSpec("host", f"must be an address to listen on, e.g. 127.0.0.1 or 0.0.0.0, got {host!r}")
    await check_running(driver, job_id, "port_forward", hub=hub, start_timeout=start_timeout)
    # fail early, before listening, if the driver can neither give an address nor
    # tunnel (UnsupportedError from connect_port's default)
    try:
        await driver.port_address(job_id, job_port)
    except UnsupportedError:
        if type(driver).connect_port is Driver.connect_port:
            raise
    fwd = PortForward(driver, job_id, job_port, on_error)
    loop = asyncio.get_running_loop()
    body_error: Exception | None = None
    try:
        server = await loop.create_server(
            fwd._accept, host, local_port, reuse_address=True, start_serving=False
        )
    except OSError as exc:
        import socket

        field = "host" if isinstance(exc, socket.gaierror) else "local_port"
        raise InvalidSpec(field, f"cannot listen on {host}:{local_port}: {exc.strerror}") from None
    try:
        async with anyio.create_task_group() as tg:
            fwd._tg = tg
            try:
                fwd.host, fwd.local_port = server.sockets[0].getsockname()[:2]
                await server.start_serving()
                try:
                    yield fwd
                except Exception as exc:
                    # re-raised after the task group, so the caller sees its own error
                    # and not an ExceptionGroup wrapping it
                    body_error = exc
            finally:
                server.close()  # closes the listening socket now: no new connections
                fwd._closing = True
                tg.cancel_scope.cancel()  # aborts every relayed connection
    finally:
        server.close()
        fwd._abort_all()
    if body_error is not None:
        raise body_error
