"""The wire facts shared with openjd-adaptor-runtime 0.9.x: stdout message prefixes,
adaptor states, the heartbeat body, the connection file, and how ``--init-data`` style
arguments are read.

Everything here is data an official frontend, backend or session runner reads, so it
must stay byte-for-byte what they expect; aiofarm's own additions (the token, the
streamed follow of a phase) are extra keys and headers the official side ignores.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # not typing's: a per-task frontend imports this module (mypy reads it as true)
if TYPE_CHECKING:
    from typing import Any

PROGRESS_PREFIX = "openjd_progress: "
STATUS_PREFIX = "openjd_status: "
FAIL_PREFIX = "openjd_fail: "
ENV_PREFIX = "openjd_env: "
SOCKET_ENV = "OPENJD_ADAPTOR_SOCKET"

#: Version of the adaptor command line these entry points implement (official: 0.1).
ADAPTOR_CLI_VERSION = (0, 1)

# AdaptorState values of the official runtime
NOT_STARTED = "not_started"
START = "start"
RUN = "run"
STOP = "stop"
CLEANUP = "cleanup"
CANCELED = "canceled"

IDLE = "idle"
WORKING = "working"

EMPTY_CHUNK_ID = "EMPTY"

#: Request header carrying the connection file's token.
TOKEN_HEADER = "authorization"
#: Request header asking an aiofarm backend to stream the phase a PUT starts until it ends.
FOLLOW_HEADER = "x-aiofarm-follow"
#: Response header an aiofarm backend sets on every answer (an official one does not).
RUNTIME_HEADER = "x-aiofarm-adaptor-runtime"
#: Printed by an aiofarm backend on its stdout once it listens (the frontend waits for it).
READY_LINE = "aiofarm-adaptor-backend-ready"

FAILURE_TEXT = {
    START: "Error encountered while starting adaptor",
    RUN: "Error encountered while running adaptor",
    STOP: "Error encountered while stopping adaptor",
    CLEANUP: "Error encountered while cleaning up adaptor",
    CANCELED: "Error encountered while canceling the adaptor",
}


class DataError(ValueError):
    """``--init-data`` and friends could not be read; the message says why."""


def load_data(text: str, *, stdin: Any = None) -> dict[str, Any]:
    """Read a JSON or YAML mapping given inline, as ``file://PATH``, or ``-`` for stdin.

    JSON is tried first (it needs no import); YAML only when JSON does not parse.
    """
    if not text:
        return {}
    if text == "-":
        stream = sys.stdin if stdin is None else stdin
        raw = stream.read()
    elif text.startswith("file://"):
        path = text[len("file://") :]
        try:
            with open(path, encoding="utf-8") as f:
                raw = f.read()
        except OSError as exc:
            raise DataError(f"cannot read data file {path!r}: {exc.strerror or exc}") from None
    else:
        raw = text
    try:
        value = json.loads(raw)
    except ValueError:
        import yaml  # type: ignore[import-untyped]  # only YAML input pays for the import

        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise DataError(f"data is neither JSON nor YAML: {exc}") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise DataError(f"expected a mapping, got {type(value).__name__}")
    return value


def heartbeat_body(
    state: str, status: str, chunk_id: str, output: str, failed: bool, done: bool | None = None
) -> bytes:
    """The official ``HeartbeatResponse`` serialisation; a streamed follow adds ``done``
    (the phase it follows is over) to each line."""
    body: dict[str, Any] = {
        "state": state,
        "status": status,
        "output": {"id": chunk_id, "output": output},
        "failed": failed,
    }
    if done is not None:
        body["done"] = done
    return json.dumps(body).encode()


class Heartbeat:
    __slots__ = ("chunk_id", "done", "failed", "output", "state", "status")

    def __init__(self, raw: bytes) -> None:
        body = json.loads(raw)
        out = body["output"]
        self.state = str(body["state"])
        self.status = str(body["status"])
        self.chunk_id = str(out["id"])
        self.output = str(out["output"])
        self.failed = bool(body.get("failed", False))
        self.done = body.get("done")


# -- the connection file ------------------------------------------------------------


def new_token() -> str:
    import secrets  # the daemon's; a per-task frontend never needs it

    return secrets.token_urlsafe(32)


def write_connection_file(path: str, socket_path: str, token: str) -> None:
    """Create the connection file; it must not exist (O_EXCL) and is readable by its
    owner only from the moment it exists (mode given to open, not chmod after)."""
    data = json.dumps({"socket": socket_path, "token": token, "runtime": "aiofarm"}).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class ConnectionSettings:
    """Where a backend listens, and its token when it is an aiofarm backend."""

    __slots__ = ("socket", "token")

    def __init__(self, socket: str, token: str | None) -> None:
        self.socket = socket
        self.token = token

    def __repr__(self) -> str:  # the token stays out of reprs and logs
        return f"ConnectionSettings(socket={self.socket!r})"

    @property
    def is_aiofarm(self) -> bool:
        return self.token is not None


def read_connection_file(path: str) -> ConnectionSettings:
    try:
        with open(path, encoding="utf-8") as f:
            body = json.load(f)
    except OSError as exc:
        raise DataError(
            f"cannot open connection file {path!r}: {exc.strerror or exc}"
        ) from None
    except ValueError as exc:
        raise DataError(f"cannot decode connection file {path!r}: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("socket"), str):
        raise DataError(f"connection file {path!r} has no 'socket'")
    token = body.get("token")
    return ConnectionSettings(body["socket"], token if isinstance(token, str) else None)


def token_path_for(socket_path: str) -> str:
    """An aiofarm backend keeps its token beside its socket, in its private directory,
    so a frontend that only has ``OPENJD_ADAPTOR_SOCKET`` can find it."""
    return os.path.join(os.path.dirname(socket_path), "token")


def settings_from_env() -> ConnectionSettings:
    sock = os.environ.get(SOCKET_ENV)
    if not sock:
        raise DataError(
            f"no --connection-file given and the environment variable {SOCKET_ENV} is not set"
        )
    token = None
    try:
        with open(token_path_for(sock), encoding="utf-8") as f:
            token = f.read().strip() or None
    except OSError:
        pass
    return ConnectionSettings(sock, token)


def format_version(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def parse_version(text: str) -> tuple[int, int]:
    major, dot, minor = (text or "").partition(".")
    if not (dot and major.isdecimal() and minor.isdecimal()):  # as the official r"\d*\.\d*" + int()
        raise ValueError(f'Provided version "{text}" was not of form Major.Minor')
    return int(major), int(minor)


def compatible(installed: tuple[int, int], expected: tuple[int, int]) -> bool:
    """Pre-1.0 a minor bump breaks; from 1.0 a newer minor is compatible (official rule)."""
    if installed[0] == expected[0] == 0:
        return installed[1] == expected[1]
    return installed[0] == expected[0] and installed[1] >= expected[1]
