"""Running adaptor command lines (aiofarm's and the official runtime's) as a worker
would: a child process with its own $HOME, the repository on PYTHONPATH."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
AIOFARM = "examples.adaptors.repl_adaptor"
OFFICIAL = "tests.adaptors.official_repl"


def env_for(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_CONFIG_PATH")}
    env.pop("OPENJD_ADAPTOR_SOCKET", None)
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), **extra)
    return env


def cli(
    pkg: str, *args: str, home: Path, input: str | None = None, timeout: float = 120, **extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", pkg, *args],
        env=env_for(home, **extra),
        cwd=home,
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def popen(pkg: str, *args: str, home: Path, **extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", pkg, *args],
        env=env_for(home, **extra),
        cwd=home,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_until(predicate: object, timeout: float = 30, what: str = "condition") -> None:
    """Poll ``predicate`` (a callable) until true; fail after ``timeout`` seconds."""
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def processes_with(word: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if any(word in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
    return found


@contextlib.contextmanager
def reaped(word: str) -> Iterator[None]:
    """Whatever still runs with ``word`` in its command line afterwards is killed (the
    test has already asserted what it wanted; this only keeps the machine clean)."""
    try:
        yield
    finally:
        for proc in processes_with(word):
            with contextlib.suppress(psutil.Error):
                proc.kill()


def lines_of(text: str) -> Sequence[str]:
    return text.splitlines()
