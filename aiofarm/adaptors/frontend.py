"""The short-lived side of daemon mode: ``daemon start``, ``daemon run``, ``daemon stop``.

Synchronous and standard library only (socket, json, signal; subprocess and select for
``daemon start``): ``daemon run`` is started once per task, so the interpreter, the
imports and an event loop would be paid per task. A frontend has one connection to
follow and nothing else to do, which blocking calls do as well.

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

import json
import os
import signal
import sys
import time

from . import httpwire
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

TYPE_CHECKING = False  # not typing's: importing typing is paid per task (mypy reads it as true)
if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Iterator, Sequence
    from types import FrameType
    from typing import Any

    Emit = Callable[[str], None]


class FrontendError(Exception):
    """The daemon could not be started or reached; the message says why."""


class _Leave(BaseException):
    """A second interrupt (or the first, while the daemon starts): leave at once."""


class _Interrupts:
    """SIGTERM/SIGINT for the duration: the first calls ``first`` (None: leave at once),
    the next one raises :class:`_Leave`. Python runs the handler between bytecodes of
    the main thread, so a blocking read it interrupts goes on afterwards (PEP 475)."""

    def __init__(self, first: Callable[[], None] | None) -> None:
        self.first = first
        self.count = 0
        self.saved: dict[int, Any] = {}

    def _handler(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        if self.count > 1 or self.first is None:
            raise _Leave
        self.first()

    def __enter__(self) -> _Interrupts:
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.saved[signum] = signal.signal(signum, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self.saved.items():
            signal.signal(signum, handler)


def _unreachable(settings: ConnectionSettings, exc: OSError) -> FrontendError:
    return FrontendError(f"cannot reach the adaptor daemon at {settings.socket}: {exc.strerror or exc}")


class Frontend:
    def __init__(self, settings: ConnectionSettings, emit: Emit, info: Emit) -> None:
        self.settings = settings
        self.emit = emit
        self.info = info  # the runtime's own INFO lines (dropped above that log level)
        self.failed = False

    def _headers(self) -> dict[str, str]:
        if self.settings.token:
            return {"Authorization": f"Bearer {self.settings.token}"}
        return {}

    def _call(
        self, method: str, path: str, body: bytes | None = None, *, until_eof: bool = False
    ) -> httpwire.Response:
        try:
            resp = httpwire.call(
                self.settings.socket, method, path, body=body, headers=self._headers(), until_eof=until_eof
            )
        except TimeoutError:
            if until_eof:
                raise  # the daemon answered, then took long to end: the caller says what that means
            raise FrontendError(f"the adaptor daemon did not answer {method} {path}") from None
        except OSError as exc:
            raise _unreachable(self.settings, exc) from None
        except httpwire.ProtocolError as exc:
            raise FrontendError(f"the adaptor daemon answered {method} {path} badly: {exc}") from None
        if resp.status >= 400:
            raise FrontendError(f"Received unexpected HTTP status code {resp.status} for {method} {path}")
        return resp

    def _show(self, output: str) -> None:
        for line in output.splitlines():
            self.emit(line)

    def _take(self, beat: Heartbeat) -> None:
        self._show(beat.output)
        self.failed = self.failed or beat.failed

    def _cancel(self) -> None:
        self.info("Interrupt signal received.")
        try:
            self._call("PUT", "/cancel")
        except FrontendError:
            pass

    # -- following a phase ----------------------------------------------------------
    def phase(self, path: str, target: str, body: dict[str, Any] | None = None) -> None:
        """PUT ``path`` and follow until the backend is idle in ``target`` (or
        canceled); sets ``self.failed`` when the backend reported a failure."""
        data = json.dumps(body).encode() if body else None
        try:
            with _Interrupts(self._cancel):
                if self.settings.is_aiofarm:
                    self._follow(path, target, data)
                else:
                    self._call("PUT", path, data)
                    self._poll(target)
        except _Leave:
            pass  # the dropped connection cancels the phase on an aiofarm backend

    def _follow(self, path: str, target: str, data: bytes | None) -> None:
        headers = {**self._headers(), FOLLOW_HEADER: "1"}
        try:
            with httpwire.Connection(self.settings.socket) as conn:
                resp = conn.request("PUT", path, data, headers)
                if resp.status >= 400:
                    raise FrontendError(f"Received unexpected HTTP status code {resp.status} for PUT {path}")
                if RUNTIME_HEADER not in resp.headers:  # an official backend after all
                    conn.body(resp)
                    self._poll(target)
                    return
                for raw in conn.lines(resp):
                    beat = Heartbeat(raw)
                    self._take(beat)
                    if beat.done:
                        return
        except OSError as exc:
            raise _unreachable(self.settings, exc) from None
        except httpwire.ProtocolError as exc:
            raise FrontendError(f"the adaptor daemon answered PUT {path} badly: {exc}") from None
        raise FrontendError("the adaptor daemon went away before the phase ended")

    def _poll(self, target: str) -> None:
        ack: str | None = None
        interval = 0.05
        while True:
            beat = Heartbeat(self._call("GET", f"/heartbeat?ack_id={ack}" if ack else "/heartbeat").body)
            ack = beat.chunk_id
            self._take(beat)
            if beat.status == IDLE and beat.state in (target, CANCELED):
                break
            interval = 0.05 if beat.output else min(0.5, interval * 1.5)
            time.sleep(interval)
        self._call("GET", f"/heartbeat?ack_id={ack}")

    def cancel_if_busy(self) -> None:
        """An official backend refuses a stop while a run goes on (its frontend may have
        been killed): cancel that run and wait for it to end first."""
        beat = Heartbeat(self._call("GET", "/heartbeat").body)
        if beat.status == IDLE:
            return
        self.info(f"The adaptor daemon is busy ({beat.state}): canceling before stopping.")
        self._call("PUT", "/cancel")
        self._poll(beat.state)

    def shutdown(self) -> None:
        """``PUT /shutdown``; an aiofarm daemon then holds the connection until its
        process ends, so returning means nothing of it is left running (30 s at most)."""
        try:
            self._call("PUT", "/shutdown", until_eof=True)
        except TimeoutError:
            pass


# -- daemon start -------------------------------------------------------------------


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def spawn_backend(
    reentry: Sequence[str],
    connection_file: str,
    payload: dict[str, Any],
    *,
    official: bool,
    startup_timeout: float,
    emit: Emit,
    info: Emit | None = None,
) -> ConnectionSettings:
    """Start ``daemon _serve`` in its own session and wait until it listens.

    An aiofarm backend gets its init data on stdin (never on its command line) and says
    when it is ready on its stdout, which is relayed meanwhile; an official one gets
    argv and is watched for its connection file. A backend that exits, does not become
    ready within ``startup_timeout`` seconds, or is abandoned (an interrupt) is killed
    with its process group: nothing is left behind."""
    import subprocess
    import tempfile

    argv = [*reentry, "daemon", "_serve", "--connection-file", connection_file]
    out: Any = None
    if official:
        argv += [
            "--init-data", json.dumps(payload["init_data"]),
            "--path-mapping-rules", json.dumps(payload["path_mapping_rules"]),
        ]  # fmt: skip
        out = tempfile.TemporaryFile()  # noqa: SIM115 - closed below
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    else:
        argv.append("--aiofarm-stdin")
        proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
        )
    if info is not None:
        info(f"Started backend process. PID: {proc.pid}")
    deadline = time.monotonic() + startup_timeout
    ready = False
    try:
        if official:
            _wait_connection_file(proc, connection_file, deadline)
        else:
            _wait_ready_line(proc, payload, emit, deadline)
        ready = True
    except TimeoutError:
        raise FrontendError(f"the adaptor daemon did not start within {startup_timeout:g} s") from None
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


def _lines(fd: int, deadline: float) -> Iterator[bytes]:
    """Lines read from ``fd`` until its end; TimeoutError past ``deadline``."""
    import select

    buf = b""
    while True:
        *lines, buf = buf.split(b"\n")
        yield from lines
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise TimeoutError
        data = os.read(fd, 65536)
        if not data:
            if buf:
                yield buf
            return
        buf += data


def _wait_ready_line(proc: subprocess.Popen[bytes], payload: dict[str, Any], emit: Emit, deadline: float) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    try:  # the daemon reads it all at once, first thing
        proc.stdin.write(json.dumps(payload).encode())
        proc.stdin.close()
    except BrokenPipeError:
        pass
    for raw in _lines(proc.stdout.fileno(), deadline):
        line = raw.decode(errors="backslashreplace").rstrip("\r")
        if line == READY_LINE:
            return
        emit(line)
    code = proc.wait()
    raise FrontendError(f"the adaptor daemon exited with code {code} before it was ready")


def _wait_connection_file(proc: subprocess.Popen[bytes], path: str, deadline: float) -> None:
    delay = 0.01
    while True:
        if proc.poll() is not None:
            raise FrontendError(f"the adaptor daemon exited with code {proc.returncode} before it was ready")
        try:
            settings = read_connection_file(path)
            if httpwire.call(settings.socket, "GET", "/heartbeat", timeout=5).status == 200:
                return
        except (DataError, OSError, httpwire.ProtocolError):
            pass
        if time.monotonic() + delay > deadline:
            raise TimeoutError
        time.sleep(delay)
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
    if temp_dir is None:
        return
    for remove, path in ((os.unlink, connection_file), (os.rmdir, temp_dir)):
        try:
            remove(path)
        except OSError:
            pass


def daemon_start(
    reentry: Sequence[str],
    connection_file: str | None,
    init_data: dict[str, Any],
    path_mapping_data: dict[str, Any],
    *,
    official_backend: bool,
    startup_timeout: float,
    idle_timeout: float,
    emit: Emit,
    info: Emit,
) -> int:
    path, temp_dir = prepare_connection_file(connection_file)
    payload = {"init_data": init_data, "path_mapping_rules": path_mapping_data, "idle_timeout": idle_timeout}
    try:
        # an interrupt before the daemon listens cancels the start-up (and kills the daemon)
        with _Interrupts(None):
            settings = spawn_backend(
                reentry,
                path,
                payload,
                official=official_backend,
                startup_timeout=startup_timeout,
                emit=emit,
                info=info,
            )
    except _Leave:
        info("Interrupt signal received.")
        return 0
    finally:
        _remove_temp(path, temp_dir)
    emit("INFO: Connected successfully")
    emit(f"{ENV_PREFIX}{SOCKET_ENV}={settings.socket}")
    frontend = Frontend(settings, emit, info)
    frontend.phase("/start", START)
    return 1 if frontend.failed else 0


def load_settings(connection_file: str | None) -> ConnectionSettings:
    from .protocol import settings_from_env

    try:
        return read_connection_file(connection_file) if connection_file else settings_from_env()
    except DataError as exc:
        raise FrontendError(str(exc)) from None


def daemon_run(connection_file: str | None, run_data: dict[str, Any], emit: Emit, info: Emit) -> int:
    frontend = Frontend(load_settings(connection_file), emit, info)
    frontend.phase("/run", RUN, run_data)
    return 1 if frontend.failed else 0


def daemon_stop(connection_file: str | None, emit: Emit, info: Emit) -> int:
    frontend = Frontend(load_settings(connection_file), emit, info)
    if not frontend.settings.is_aiofarm:
        frontend.cancel_if_busy()
    frontend.phase("/stop", CLEANUP)
    frontend.shutdown()
    return 1 if frontend.failed else 0


def _write_line(stream: Any, line: str) -> None:
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def stdout_line(line: str) -> None:
    _write_line(sys.stdout, line)


def stderr(message: str) -> None:
    _write_line(sys.stderr, message)
