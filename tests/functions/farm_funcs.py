"""Functions the farm runs in the functions tests. Standard library only: each call's
child process imports this module, so it must stay cheap to import."""

from __future__ import annotations

import os
import time

FAILING = frozenset({13, 57, 99, 150, 199})


def add(a: int, b: int, *, x: int = 0) -> int:
    return a + b + x


def maybe_fail(i: int) -> int:
    if i in FAILING:
        raise ValueError(f"item {i} fails on purpose")
    return i * i


def record_span(i: int, directory: str, seconds: float) -> int:
    """Write this call's start and end times to a file, for measuring concurrency."""
    start = time.time()
    time.sleep(seconds)
    end = time.time()
    with open(os.path.join(directory, f"{i}.span"), "w") as f:
        f.write(f"{start} {end} {os.getpid()}")
    return os.getpid()


class Unpicklable:
    def __reduce__(self) -> object:
        raise TypeError("this value cannot travel")


def sleep_for(seconds: float) -> str:
    time.sleep(seconds)
    return "woke"


def flaky(marker: str) -> str:
    """Fails on its first attempt, succeeds on the next (the marker file remembers)."""
    if not os.path.exists(marker):
        with open(marker, "w") as f:
            f.write("attempted")
        raise RuntimeError("first attempt fails")
    return "second attempt"


def getenv(name: str) -> str | None:
    return os.environ.get(name)
