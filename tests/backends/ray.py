"""The Ray back end for the shared contract suite: ONE real single-node Ray 2.60 head
per test run, started by scripts/ray/start-ray.sh (which installs Ray into its own
venv the first time) with token authentication on, and stopped by pid when the run
ends (never `ray stop`, which would stop every Ray on the host).

``install()`` runs when the run's tests are collected (tests/conftest.py), so the
minute a fresh machine spends installing Ray is not charged to one test's timeout.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import attrs

from aiofarm import Client

MARKS: tuple[str, ...] = ("ray",)
#: commands really run, so exit codes and output are observable
EXECUTES = True
#: Ray writes a job's stdout and stderr to one file: every line comes as "stdout"
SEPARATE_STDERR = False

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "ray" / "start-ray.sh"
#: logical CPUs of the test head: jobs reserve one each by default, and the suite
#: runs a few at once (Ray's logical CPUs are scheduling slots, not cores)
CPUS = "4"


@attrs.frozen
class Head:
    url: str  # the aiofarm URL, ray+http://127.0.0.1:PORT
    http: str  # the dashboard, http://127.0.0.1:PORT
    token: str
    state: str  # the head's private state dir (0700)
    venv: str  # the venv Ray is installed in (its python has ray's JobSubmissionClient)

    def client(self, **options: Any) -> Client:
        return Client(self.url, token=self.token, **options)


_head: Head | None = None
_lock = threading.Lock()


def _run(*args: str, timeout: float) -> str:
    proc = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
        # the head outlives no test run: it is stopped when this process is gone
        env={**os.environ, "AIOFARM_RAY_CPUS": CPUS, "AIOFARM_RAY_OWNER_PID": str(os.getpid())},
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"start-ray.sh {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc.stdout.strip()


def install() -> str:
    """Install Ray into its venv if needed (idempotent); the venv's path."""
    return _run("venv", timeout=900).splitlines()[-1]


def start_head() -> Head:
    """The run's head, started on first use."""
    global _head
    with _lock:
        if _head is None:
            venv = install()
            state = tempfile.mkdtemp(prefix="aiofarm-ray-", dir="/tmp")  # short: Ray's socket paths
            try:
                http = _run("start", state, timeout=300).splitlines()[-1]
            except BaseException:
                shutil.rmtree(state, ignore_errors=True)
                raise
            atexit.register(stop_head)
            token = Path(state, "token").read_text().strip()
            _head = Head(http.replace("http://", "ray+http://"), http, token, state, venv)
        return _head


def stop_head() -> None:
    global _head
    with _lock:
        head, _head = _head, None
    if head is not None:
        subprocess.run([str(SCRIPT), "stop", head.state], capture_output=True, timeout=120, check=False)
        shutil.rmtree(head.state, ignore_errors=True)


@asynccontextmanager
async def open_client(**options: Any) -> AsyncIterator[Client]:
    head = await anyio.to_thread.run_sync(start_head)
    async with head.client(**options) as farm:
        yield farm
