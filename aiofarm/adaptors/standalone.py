"""The two ways an adaptor session runs in one process: ``run`` (every phase in a
row, here) and ``daemon _serve`` (phases on request, in :mod:`.backend`)."""

from __future__ import annotations

import signal
from typing import Any

import anyio

from .output import BufferSink, OutputSink, route_logging
from .session import open_session


async def run_all(
    adaptor_cls: type,
    init_data: dict[str, Any],
    path_mapping_data: dict[str, Any],
    run_data: dict[str, Any],
    sink: OutputSink,
) -> int:
    """start → run → stop → cleanup. SIGTERM/SIGINT cancels the running phase and skips
    the ones after it except stop and cleanup (the official ``run`` goes on to the next
    phase after a cancelled start); exit status 1 if any phase failed."""
    canceled = False
    async with (
        open_session(adaptor_cls, init_data, path_mapping_data, sink) as runner,
        anyio.create_task_group() as tg,
    ):

        async def on_signal() -> None:
            nonlocal canceled
            with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                async for _ in signals:
                    canceled = True
                    await runner.cancel()

        tg.start_soon(on_signal)
        ok = runner.claim("start") and await runner.start()
        if ok and not canceled and runner.claim("run"):
            ok = await runner.run(run_data)
        ok = await runner.stop() and ok
        tg.cancel_scope.cancel()
    return 0 if ok else 1


async def serve_daemon(
    adaptor_cls: type,
    init_data: dict[str, Any],
    path_mapping_data: dict[str, Any],
    *,
    connection_file: str,
    strict_token: bool,
    idle_timeout: float,
    announce: bool,
    level: str,
) -> int:
    from .backend import serve

    sink = BufferSink()
    with route_logging(sink, level):
        async with open_session(adaptor_cls, init_data, path_mapping_data, sink) as runner:
            sink.wake = runner.waker.notify
            await serve(
                runner,
                sink,
                connection_file=connection_file,
                strict_token=strict_token,
                idle_timeout=idle_timeout,
                announce=announce,
            )
    return 0
