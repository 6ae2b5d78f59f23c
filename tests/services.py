"""Stopping the farm services a test started (each test has its own AIOFARM_TEST_MARK
in the environment, which every service it starts inherits: that is how we find them)."""

from __future__ import annotations

import contextlib
import os
import signal
import time


def services_with_env(key: str, value: str) -> list[int]:
    """Pids of running local farm services whose environment has ``key=value``."""
    wanted = f"{key}={value}".encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmdline = f.read()
            if b"aiofarm.drivers.local.service" not in cmdline:
                continue
            with open(f"/proc/{name}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if wanted in env:
            found.append(int(name))
    return found


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return False


def stop_services(pids: list[int], timeout: float = 20.0) -> None:
    """SIGTERM (the service stops its jobs and exits), SIGKILL if it takes too long."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for pid in pids:
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.01)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
