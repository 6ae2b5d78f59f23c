"""A loop-stall tracer: what held the event loop, when a test measures how long it was held.

While active, :class:`StallTracer` times every callback the asyncio loop runs (a task
step is one callback) and every garbage collection. For each loop iteration it keeps
its time less what ``select`` waited for I/O within its timeout: the time the loop
could not look at its sockets and timers. That is its callbacks, its own work before
``select`` (timers), and ``select`` returning past its timeout (the process did not
get a core back in time). It also keeps the process's CPU time over the iteration, so
one that took long because the kernel ran another process (a busy machine) shows
less CPU than wall time.

``str(tracer.longest)`` says it in one line for the end-of-run figures, e.g.
``105.9 ms (CPU 38.1 ms): 2 callbacks, gc gen2 103.3 ms; step of follow 2.4 ms``: a
full garbage collection, slowed down by a busy machine.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio

__all__ = ["Iteration", "StallTracer"]

#: frames of anyio's own task wrappers are skipped in a task's name
_ANYIO = os.path.dirname(anyio.__file__)

#: callbacks at least this long are named in an iteration's account
_NAMED = 0.0005


def _name(handle: asyncio.Handle) -> str:
    callback: Any = handle._callback  # type: ignore[attr-defined]
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        return f"step of {_task_name(task)}"
    return getattr(callback, "__qualname__", None) or type(callback).__name__


def _task_name(task: asyncio.Task[Any]) -> str:
    """The task's own coroutine (under anyio's wrapper) and where it now awaits."""
    names: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and len(names) < 20:
        code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None) or getattr(coro, "ag_code", None)
        if code is None:
            break
        if not code.co_filename.startswith(_ANYIO):
            names.append(code.co_qualname)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None) or getattr(coro, "ag_await", None)
    if not names:
        return type(task.get_coro()).__name__
    return names[0] if len(names) == 1 else f"{names[0]} (at {names[-1]})"


class Iteration:
    """One loop iteration's busy time and what it spent it on."""

    __slots__ = ("before", "callbacks", "cpu", "gc", "late", "spent", "waited", "wall")

    def __init__(self) -> None:
        self.wall = 0.0  # the iteration's time, less what it waited in select for I/O
        self.cpu = 0.0
        self.before = 0.0  # the loop's own work before select (timers, cancelled ones)
        self.waited = 0.0
        self.late = 0.0  # select returned this long after its timeout
        self.callbacks = 0
        self.gc: Counter[str] = Counter()  # "gen2" -> seconds
        self.spent: Counter[str] = Counter()  # callback name -> seconds

    def __str__(self) -> str:
        parts = [f"{self.wall * 1000:.1f} ms (CPU {self.cpu * 1000:.1f} ms): {self.callbacks} callbacks"]
        parts += [f"gc {gen} {s * 1000:.1f} ms" for gen, s in self.gc.most_common()]
        parts += [f"{what} {s * 1000:.1f} ms" for what, s in (("before select", self.before), ("select late", self.late))
                  if s >= _NAMED]
        top = "; ".join(f"{name} {s * 1000:.1f} ms" for name, s in self.spent.most_common(3))
        return ", ".join(parts) + (f"; {top}" if top else "")


class StallTracer:
    """``with StallTracer() as tracer:`` around code running on the current loop (enter
    it from a coroutine); ``tracer.longest`` is the busiest iteration that began and
    ended while ``tracer.measuring`` (True from the start, unless ``measuring=False``), and
    ``tracer.costliest`` the one that took the most CPU time (what the code costs,
    whatever else the machine runs)."""

    def __init__(self, *, measuring: bool = True) -> None:
        self.measuring = measuring
        self.longest = Iteration()
        self.costliest = Iteration()
        self.gc_longest = 0.0
        self._current: Iteration | None = None
        self._restore: list[Callable[[], None]] = []
        self._gc_start = 0.0
        self._gc_cpu = 0.0

    def __enter__(self) -> StallTracer:
        loop: Any = asyncio.get_running_loop()
        selector = loop._selector
        real_select = selector.select
        real_run_once = loop._run_once
        real_handle_run = asyncio.Handle._run
        tracer = self

        def select(timeout: float | None = None) -> Any:
            start = time.perf_counter()
            try:
                return real_select(timeout)
            finally:
                it = tracer._current
                if it is not None:
                    took = time.perf_counter() - start
                    it.before = start + it.wall  # it.wall holds -(the iteration's start)
                    # blocked waiting for I/O is not a stall; past its timeout it is
                    # (the process did not get a core back in time)
                    it.waited = took if timeout is None else min(took, timeout)
                    it.late = took - it.waited

        def run_once() -> None:
            it = tracer._current = Iteration()
            it.wall, it.cpu = -time.perf_counter(), -time.process_time()
            measured = tracer.measuring  # an iteration counts if measured from start to end
            try:
                real_run_once()
            finally:
                tracer._current = None
                it.wall += time.perf_counter() - it.waited
                it.cpu += time.process_time()
                measured = measured and tracer.measuring
                if measured and it.wall > tracer.longest.wall:
                    tracer.longest = it
                if measured and it.cpu > tracer.costliest.cpu:
                    tracer.costliest = it

        def handle_run(handle: asyncio.Handle) -> None:
            it = tracer._current
            if it is None:
                real_handle_run(handle)
                return
            start = time.perf_counter()
            try:
                real_handle_run(handle)
            finally:
                took = time.perf_counter() - start
                it.callbacks += 1
                # naming costs: only callbacks long enough to matter are named
                it.spent[_name(handle) if took >= _NAMED else "shorter ones"] += took

        selector.select = select
        loop._run_once = run_once
        asyncio.Handle._run = handle_run  # type: ignore[method-assign]
        gc.callbacks.append(self._on_gc)
        self._restore = [
            lambda: setattr(selector, "select", real_select),
            lambda: delattr(loop, "_run_once"),
            lambda: setattr(asyncio.Handle, "_run", real_handle_run),
            lambda: gc.callbacks.remove(self._on_gc),
        ]
        return self

    def __exit__(self, *exc: object) -> None:
        for undo in reversed(self._restore):
            undo()
        self._restore = []

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        took = time.perf_counter() - self._gc_start
        if self.measuring:
            self.gc_longest = max(self.gc_longest, took)
        if self._current is not None:
            self._current.gc[f"gen{info['generation']}"] += took
