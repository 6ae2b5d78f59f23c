"""Reaching the farm service of a state dir: its socket, the peer checks, and
starting it on demand.

The socket is ``<state>/farm.sock`` (mode 0600 in the 0700 state dir). Both sides
check the peer's uid with ``SO_PEERCRED``: the service serves only its own user,
and a client refuses a service that is not its own uid. Paths longer than a
``sockaddr_un`` holds are reached through ``/proc/self/fd/<dirfd>/farm.sock``.

Starting: the client runs ``python -m aiofarm.drivers.local.service --detach`` in
a new session with stdio on ``<state>/farm.log``; the service forks once more (so
it is nobody's child), takes the state dir's lock and answers on a pipe with
``ready`` (listening), ``busy`` (another service holds the lock: use that one) or
an error line.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from ...errors import ConnectionLost, FarmError, StateLocked

SOCKET_NAME = "farm.sock"
LOG_NAME = "farm.log"
PID_NAME = "farm.pid"
#: how long a client waits for a service it started to listen
START_TIMEOUT = 30.0
_MAX_SUN_PATH = 100


def peer_uid(sock: socket.socket) -> int:
    _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
    return int(uid)


def check_peer(sock: socket.socket, what: str) -> None:
    """Refuse a peer that is not our own uid (raises ConnectionLost)."""
    uid = peer_uid(sock)
    if uid != os.getuid():
        raise ConnectionLost(f"{what} belongs to uid {uid}, not to us (uid {os.getuid()}): refused")


@contextlib.contextmanager
def _short_path(path: str) -> Iterator[str]:
    """``path`` itself, or for a long one an equivalent short path through /proc."""
    if len(os.fsencode(path)) < _MAX_SUN_PATH:
        yield path
        return
    fd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{os.path.basename(path)}"
    finally:
        os.close(fd)


def connect_socket(path: str) -> socket.socket:
    """A connected, checked, non-blocking socket to the service at ``path``.
    OSError when nothing listens there."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        with _short_path(path) as short:
            sock.connect(short)
        check_peer(sock, f"the farm service at {path}")
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_socket(path: str) -> socket.socket:
    """A listening socket at ``path``, 0600 (the caller holds the state dir's lock, so
    a socket file already there is a dead service's)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        old = os.umask(0o177)  # never a moment with a wider mode
        try:
            with _short_path(path) as short:
                sock.bind(short)
        finally:
            os.umask(old)
        os.chmod(path, 0o600)
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def check_state_dir(state_dir: str) -> None:
    """The state dir must be ours and private, or a client would talk to whatever
    another user put there."""
    try:
        st = os.stat(state_dir)
    except FileNotFoundError:
        return
    if st.st_uid != os.getuid():
        raise ConnectionLost(f"{state_dir} belongs to uid {st.st_uid}, not to us: refused")


def start_service(
    state_dir: str, *, slots: int | None, cancel_grace: float | None, idle_timeout: float | None
) -> str:
    """Start a detached service for ``state_dir``; 'ready' or 'busy' (one already runs).
    Blocks until it answers (the caller runs it in a thread)."""
    from .embedded import private_dir

    private_dir(state_dir)
    argv = [sys.executable, "-m", "aiofarm.drivers.local.service", "--state-dir", state_dir, "--detach"]
    if slots is not None:
        argv += ["--slots", str(slots)]
    if cancel_grace is not None:
        argv += ["--cancel-grace", repr(cancel_grace)]
    if idle_timeout is not None:
        argv += ["--idle-timeout", repr(idle_timeout)]
    r, w = os.pipe2(os.O_CLOEXEC)
    log = os.open(os.path.join(state_dir, LOG_NAME), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        argv += ["--ready-fd", str(w)]
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(w,),
            start_new_session=True,
            cwd=state_dir,
        )
        os.close(w)
        w = -1
        proc.wait()  # the first process only forks the service and exits
        answer = _read_answer(r, START_TIMEOUT)
    finally:
        os.close(r)
        os.close(log)
        if w >= 0:
            os.close(w)
    if answer in ("ready", "busy"):
        return answer
    raise FarmError(
        f"the farm service for {state_dir} did not start: {answer or 'no answer'}"
        f" (see {os.path.join(state_dir, LOG_NAME)})"
    )


def _read_answer(fd: int, timeout: float) -> str:
    import select

    deadline = time.monotonic() + timeout
    data = b""
    while b"\n" not in data:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


async def ensure_socket(
    state_dir: str,
    *,
    start: bool,
    slots: int | None = None,
    cancel_grace: float | None = None,
    idle_timeout: float | None = None,
) -> socket.socket | None:
    """A checked socket to the service; starts one when none answers and ``start``
    (else None). Concurrent starters race on the lock: the loser connects to the winner."""
    import asyncio  # here: the CLI's blocking ``request`` path runs without a loop

    check_state_dir(state_dir)
    path = os.path.join(state_dir, SOCKET_NAME)
    try:
        return connect_socket(path)
    except (FileNotFoundError, ConnectionRefusedError):
        if not start:
            return None
    loop = asyncio.get_running_loop()
    for _ in range(3):
        answer = await loop.run_in_executor(
            None,
            lambda: start_service(
                state_dir, slots=slots, cancel_grace=cancel_grace, idle_timeout=idle_timeout
            ),
        )
        # 'ready': ours listens; 'busy': another process holds the state dir's lock --
        # a service that is starting (it binds soon) or an embedded farm (it never does)
        deadline = time.monotonic() + (START_TIMEOUT if answer == "ready" else 5.0)
        while time.monotonic() < deadline:
            try:
                return connect_socket(path)
            except (FileNotFoundError, ConnectionRefusedError):
                await asyncio.sleep(0.01)
            if answer == "busy" and not _lock_held(state_dir):
                break  # that one went away: start our own
        else:
            break
    raise StateLocked(
        f"{state_dir} is held by another process that does not serve it"
        " (an embedded farm, local://...?embedded=true?)"
    )


def _lock_held(state_dir: str) -> bool:
    """Whether the process named in the lock file still lives (it holds the lock)."""
    try:
        with open(os.path.join(state_dir, "lock")) as f:
            pid = int(f.read().split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return False
    return True


def request(state_dir: str, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """One blocking request to the running service (None when none runs): for
    commands and scripts without an event loop (``aiofarm farm``, benchmarks)."""
    import http.client
    import json

    check_state_dir(state_dir)
    try:
        sock = connect_socket(os.path.join(state_dir, SOCKET_NAME))
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    sock.setblocking(True)
    conn = http.client.HTTPConnection("farm")
    conn.sock = sock
    try:
        conn.request("POST", f"/v1/{name}", body=json.dumps(body), headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        data: dict[str, Any] = json.loads(resp.read() or b"{}")
    except (OSError, http.client.HTTPException, ValueError) as exc:
        raise ConnectionLost(f"the farm service did not answer {name}: {exc}") from None
    finally:
        conn.close()
    if resp.status != 200:
        from .wire import error_from

        raise error_from(data)
    return data


def alive(pid: int) -> bool:
    """A process that runs (a zombie does not count)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def stop_service(state_dir: str, *, cancel_jobs: bool = False, timeout: float = 60.0) -> int | None:
    """Stop the service of ``state_dir`` and wait until it has exited; its pid, or None
    if none ran. Raises FarmError when it refuses (jobs running, no ``cancel_jobs``)."""
    status = request(state_dir, "status", {})
    if status is None:
        return None
    request(state_dir, "stop", {"cancel_jobs": cancel_jobs})
    pid = int(status["pid"])
    deadline = time.monotonic() + timeout
    while alive(pid):
        if time.monotonic() > deadline:
            raise FarmError(f"the farm service (pid {pid}) did not exit within {timeout:g}s")
        time.sleep(0.01)
    return pid
