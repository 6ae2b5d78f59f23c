"""The short-lived side of daemon mode: ``daemon start``, ``daemon run``, ``daemon stop``.

Against an aiofarm backend a phase is followed on one streamed connection: output is
printed the moment it exists, and a frontend that dies drops the connection, which
cancels the phase. Against an official backend (no token in its connection file, or no
aiofarm header in its answers) the official exchange is used: a PUT, then heartbeats
(polled from 50 ms up to 0.5 s, not once a second), acknowledging each chunk.

The first SIGTERM/SIGINT asks the backend to cancel (``PUT /cancel``) and keeps
following until the phase ends; a second one leaves at once (the dropped connection
cancels the phase on an aiofarm backend). Exit status: 0 for success or cancel, 1 when
the phase failed or the backend could not be reached.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import anyio.abc
import anyio.to_thread

from . import http
from .protocol import (
    CANCELED,
    CLEANUP,
    ENV_PREFIX,
    FOLLOW_HEADER,
    IDLE,
    READY_LINE,
    RUN,
    RUNTIME_HEADER,
    SOCKET_ENV,
    START,
    ConnectionSettings,
    DataError,
    Heartbeat,
    read_connection_file,
)

_log = logging.getLogger("aiofarm.adaptors")


class FrontendError(Exception):
    """The daemon could not be started or reached; the message says why."""


class Frontend:
    def __init__(self, settings: ConnectionSettings | None, emit: Callable[[str], None]) -> None:
        self.settings = settings
        self.emit = emit
        self.failed = False

    def _headers(self) -> dict[str, str]:
        assert self.settings is not None
        if self.settings.token:
            return {"Authorization": f"Bearer {self.settings.token}"}
        return {}

    async def _call(self, method: str, path: str, body: bytes | None = None) -> http.Response:
        assert self.settings is not None
        try:
            resp = await http.call(self.settings.socket, method, path, body=body, headers=self._headers())
        except OSError as exc:
            raise FrontendError(
                f"cannot reach the adaptor daemon at {self.settings.socket}: {exc.strerror or exc}"
            ) from None
        if resp.status >= 400:
            raise FrontendError(f"Received unexpected HTTP status code {resp.status} for {method} {path}")
        return resp

    def _show(self, output: str) -> None:
        for line in output.splitlines():
            self.emit(line)

    # -- following a phase ----------------------------------------------------------
    async def phase(self, path: str, target: str, body: dict[str, Any] | None = None) -> None:
        """PUT ``path`` and follow until the backend is idle in ``target`` (or
        canceled); sets ``self.failed`` when the backend reported a failure."""
        data = json.dumps(body).encode() if body else None
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._signals, tg.cancel_scope)
            if self.settings is not None and self.settings.is_aiofarm:
                await self._follow(path, target, data)
            else:
                await self._call("PUT", path, data)
                await self._poll(target)
            tg.cancel_scope.cancel()

    async def _follow(self, path: str, target: str, data: bytes | None) -> None:
        assert self.settings is not None
        headers = {**self._headers(), FOLLOW_HEADER: "1"}
        try:
            async with http.stream_lines(self.settings.socket, "PUT", path, body=data, headers=headers) as (
                resp,
                lines,
            ):
                if resp.status >= 400:
                    raise FrontendError(
                        f"Received unexpected HTTP status code {resp.status} for PUT {path}"
                    )
                if RUNTIME_HEADER not in resp.headers:  # an official backend after all
                    await self._poll(target)
                    return
                async for raw in lines:
                    beat = Heartbeat(raw)
                    self._show(beat.output)
                    self.failed = self.failed or beat.failed
                    if beat.done:
                        return
        except OSError as exc:
            raise FrontendError(
                f"cannot reach the adaptor daemon at {self.settings.socket}: {exc.strerror or exc}"
            ) from None
        raise FrontendError("the adaptor daemon went away before the phase ended")

    async def _poll(self, target: str) -> None:
        ack: str | None = None
        interval = 0.05
        while True:
            resp = await self._call("GET", f"/heartbeat?ack_id={ack}" if ack else "/heartbeat")
            beat = Heartbeat(resp.body)
            ack = beat.chunk_id
            self._show(beat.output)
            self.failed = self.failed or beat.failed
            if beat.status == IDLE and beat.state in (target, CANCELED):
                break
            interval = 0.05 if beat.output else min(0.5, interval * 1.5)
            await anyio.sleep(interval)
        await self._call("GET", f"/heartbeat?ack_id={ack}")

    async def _signals(self, scope: anyio.CancelScope) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                _log.info("Interrupt signal received.")
                with contextlib.suppress(FrontendError):
                    await self._call("PUT", "/cancel")
                async for _again in signals:
                    break
                scope.cancel()
                return

    async def cancel_if_busy(self) -> None:
        """An official backend refuses a stop while a run goes on (its frontend may have
        been killed): cancel that run and wait for it to end first."""
        beat = Heartbeat((await self._call("GET", "/heartbeat")).body)
        if beat.status == IDLE:
            return
        _log.info("The adaptor daemon is busy (%s): canceling before stopping.", beat.state)
        await self._call("PUT", "/cancel")
        await self._poll(beat.state)

    # -- daemon start / stop ----------------------------------------------------------
    async def shutdown(self) -> None:
        """``PUT /shutdown``; an aiofarm daemon then holds the connection until its
        process ends, so returning means nothing of it is left running."""
        assert self.settings is not None
        with anyio.move_on_after(30):
            try:
                resp = await http.call(
                    self.settings.socket, "PUT", "/shutdown", headers=self._headers(), until_eof=True
                )
            except OSError as exc:
                raise FrontendError(
                    f"cannot reach the adaptor daemon at {self.settings.socket}: {exc.strerror or exc}"
                ) from None
            if resp.status >= 400:
                raise FrontendError(f"Received unexpected HTTP status code {resp.status} for PUT /shutdown")


async def _read_line(pipe: Any) -> bytes:
    line: bytes = await anyio.to_thread.run_sync(pipe.readline, abandon_on_cancel=True)
    return line


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


async def spawn_backend(
    reentry: Sequence[str],
    connection_file: str,
    payload: dict[str, Any],
    *,
    official: bool,
    startup_timeout: float,
    emit: Callable[[str], None],
) -> ConnectionSettings:
    """Start ``daemon _serve`` in its own session and wait until it listens.

    An aiofarm backend gets its init data on stdin (never on its command line) and says
    when it is ready on its stdout, which is relayed meanwhile; an official one gets
    argv and is watched for its connection file. A backend that exits, does not become
    ready within ``startup_timeout`` seconds, or is abandoned (the frontend is
    cancelled) is killed with its process group: nothing is left behind."""
    argv = [*reentry, "daemon", "_serve", "--connection-file", connection_file]
    if official:
        argv += [
            "--init-data", json.dumps(payload["init_data"]),
            "--path-mapping-rules", json.dumps(payload["path_mapping_rules"]),
        ]  # fmt: skip
        import tempfile

        out: Any = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        # Popen, not anyio.open_process: the daemon outlives this process, and an
        # event-loop subprocess transport expects to reap what it started.
        proc = subprocess.Popen(  # noqa: ASYNC220
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True
        )
    else:
        argv.append("--aiofarm-stdin")
        out = None
        proc = subprocess.Popen(  # noqa: ASYNC220
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    _log.info("Started backend process. PID: %d", proc.pid)
    ready = False
    try:
        with anyio.fail_after(startup_timeout):
            if official:
                ready = await _wait_connection_file(proc, connection_file)
            else:
                ready = await _wait_ready_line(proc, payload, emit)
    except TimeoutError:
        raise FrontendError(
            f"the adaptor daemon did not start within {startup_timeout:g} s"
        ) from None
    finally:
        if not ready:
            _kill_group(proc)
            if out is not None:
                out.seek(0)
                for line in out.read().decode(errors="replace").splitlines():
                    emit(line)
        if out is not None:
            out.close()
        if proc.stdout is not None:
            proc.stdout.close()
    try:
        return read_connection_file(connection_file)
    except DataError as exc:
        raise FrontendError(str(exc)) from None


async def _wait_ready_line(
    proc: subprocess.Popen[bytes], payload: dict[str, Any], emit: Callable[[str], None]
) -> bool:
    assert proc.stdin is not None and proc.stdout is not None
    stdin = proc.stdin

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError):
            stdin.write(json.dumps(payload).encode())
        with contextlib.suppress(BrokenPipeError):
            stdin.close()

    await anyio.to_thread.run_sync(feed)
    while True:
        raw = await _read_line(proc.stdout)
        if not raw:
            code = await anyio.to_thread.run_sync(proc.wait)
            raise FrontendError(f"the adaptor daemon exited with code {code} before it was ready")
        line = raw.decode(errors="backslashreplace").rstrip("\r\n")
        if line == READY_LINE:
            return True
        emit(line)


async def _wait_connection_file(proc: subprocess.Popen[bytes], path: str) -> bool:
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise FrontendError(f"the adaptor daemon exited with code {proc.returncode} before it was ready")
        with contextlib.suppress(DataError):
            settings = read_connection_file(path)
            with contextlib.suppress(OSError, http.ProtocolError):
                resp = await http.call(settings.socket, "GET", "/heartbeat")
                if resp.status == 200:
                    return True
        await anyio.sleep(delay)
        delay = min(0.25, delay * 1.5)


def prepare_connection_file(connection_file: str | None) -> tuple[str, str | None]:
    """(absolute path, temporary directory to remove afterwards or None); the file must
    not exist yet."""
    temp_dir = None
    if not connection_file:
        import tempfile

        temp_dir = tempfile.mkdtemp(prefix="ojd-ar-")
        connection_file = os.path.join(temp_dir, "connection.json")
    connection_file = os.path.abspath(connection_file)
    if os.path.lexists(connection_file):
        raise FrontendError(
            f"Cannot init a new backend process with an existing connection file at: {connection_file}"
        )
    return connection_file, temp_dir


def _remove_temp(connection_file: str, temp_dir: str | None) -> None:
    if temp_dir is not None:
        with contextlib.suppress(OSError):
            os.unlink(connection_file)
        with contextlib.suppress(OSError):
            os.rmdir(temp_dir)


async def daemon_start(
    reentry: Sequence[str],
    connection_file: str | None,
    init_data: dict[str, Any],
    path_mapping_data: dict[str, Any],
    *,
    official_backend: bool,
    startup_timeout: float,
    idle_timeout: float,
    emit: Callable[[str], None],
) -> int:
    path, temp_dir = await anyio.to_thread.run_sync(prepare_connection_file, connection_file)
    payload = {
        "init_data": init_data,
        "path_mapping_rules": path_mapping_data,
        "idle_timeout": idle_timeout,
    }
    frontend = Frontend(None, emit)
    async with anyio.create_task_group() as tg:
        # a cancel before the daemon listens cancels the start-up (and kills the daemon)
        tg.start_soon(_cancel_on_signal, tg.cancel_scope)
        frontend.settings = await spawn_backend(
            reentry,
            path,
            payload,
            official=official_backend,
            startup_timeout=startup_timeout,
            emit=emit,
        )
        tg.cancel_scope.cancel()
    await anyio.to_thread.run_sync(_remove_temp, path, temp_dir)
    if frontend.settings is None:  # cancelled while starting
        return 0
    emit("INFO: Connected successfully")
    emit(f"{ENV_PREFIX}{SOCKET_ENV}={frontend.settings.socket}")
    await frontend.phase("/start", START)
    return 1 if frontend.failed else 0


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            _log.info("Interrupt signal received.")
            scope.cancel()
            return


def load_settings(connection_file: str | None) -> ConnectionSettings:
    from .protocol import settings_from_env

    try:
        return read_connection_file(connection_file) if connection_file else settings_from_env()
    except DataError as exc:
        raise FrontendError(str(exc)) from None


async def daemon_run(connection_file: str | None, run_data: dict[str, Any], emit: Callable[[str], None]) -> int:
    frontend = Frontend(load_settings(connection_file), emit)
    await frontend.phase("/run", RUN, run_data)
    return 1 if frontend.failed else 0


async def daemon_stop(connection_file: str | None, emit: Callable[[str], None]) -> int:
    frontend = Frontend(load_settings(connection_file), emit)
    if frontend.settings is not None and not frontend.settings.is_aiofarm:
        await frontend.cancel_if_busy()
    await frontend.phase("/stop", CLEANUP)
    await frontend.shutdown()
    return 1 if frontend.failed else 0


def stderr(message: str) -> None:
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.write(message + "\n")
        sys.stderr.flush()
