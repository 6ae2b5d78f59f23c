"""The adaptor's life: phases, states, cancel, and the shielded stop/cleanup.

One :class:`PhaseRunner` drives one adaptor for both ``run`` (phases in a row) and
the daemon backend (phases on request). States and failure messages are the official
runtime's, so heartbeats and session logs read the same.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
from typing import Any, Protocol

import anyio

from .adaptor import AdaptorContext
from .process import ApplicationExited
from .protocol import CANCELED, CLEANUP, FAILURE_TEXT, NOT_STARTED, RUN, START, STOP

_log = logging.getLogger("aiofarm.adaptors")


class Hooks(Protocol):
    """What the runner calls: an :class:`~aiofarm.adaptors.AsyncAdaptor`, or the shim
    around an official adaptor."""

    stop_timeout: float
    cleanup_timeout: float
    cancel_timeout: float

    async def on_start(self) -> None: ...
    async def on_run(self, run_data: dict[str, Any]) -> None: ...
    async def on_stop(self) -> None: ...
    async def on_cleanup(self) -> None: ...
    async def on_cancel(self) -> None: ...


class Waker:
    """Wakes the event loop's waiters from any thread (a wrapped official adaptor logs
    from its worker threads). Never blocks the calling thread: a blocking hand-off
    from inside a logging handler could deadlock against the loop logging too."""

    def __init__(self) -> None:
        self.version = 0
        self._event = anyio.Event()
        self._thread = threading.get_ident()
        self._loop: asyncio.AbstractEventLoop | None
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:  # pragma: no cover - the runtime always runs on asyncio
            self._loop = None

    def notify(self) -> None:
        if threading.get_ident() == self._thread:
            self._fire()
        elif self._loop is not None:
            # a closed loop (RuntimeError) has nobody left waiting
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self.version += 1
        event, self._event = self._event, anyio.Event()
        event.set()

    async def wait(self, since: int) -> None:
        while self.version == since:
            await self._event.wait()


def describe(exc: BaseException) -> str:
    # an exception group of one (a task group's) reads as that one exception
    while len(getattr(exc, "exceptions", ())) == 1 and isinstance(exc.exceptions[0], BaseException):  # type: ignore[attr-defined]
        exc = exc.exceptions[0]  # type: ignore[attr-defined]
    return str(exc) or type(exc).__name__


class PhaseRunner:
    def __init__(self, adaptor: Hooks, ctx: AdaptorContext, waker: Waker) -> None:
        self.adaptor = adaptor
        self.ctx = ctx
        self.waker = waker
        self.state = NOT_STARTED
        self.busy = False
        self.serial = 0  # of the last phase claimed
        self.ended = 0  # serial of the last phase that ended
        self.started = False
        self.stopped = False
        self._scope: anyio.CancelScope | None = None
        self._phase_error: BaseException | None = None
        self._dead_application: ApplicationExited | None = None

    # -- bookkeeping ------------------------------------------------------------------
    def _set(self, state: str | None = None, busy: bool | None = None) -> None:
        if state is not None:
            self.state = state
        if busy is not None:
            self.busy = busy
        self.waker.notify()

    def application_exited(self, exc: ApplicationExited) -> None:
        """The application ended on its own: fail the running phase, and every later
        task until the adaptor starts an application again."""
        _log.error("%s", exc)
        if not self.stopped:
            self._dead_application = exc
        if self.busy and self.state in (START, RUN) and self._scope is not None:
            self._phase_error = exc
            self._scope.cancel()

    def application_started(self) -> None:
        self._dead_application = None

    async def wait_idle(self) -> None:
        while self.busy:
            await self.waker.wait(self.waker.version)

    def claim(self, state: str) -> bool:
        """Mark the runner busy in ``state``; False if a phase is already running."""
        if self.busy:
            return False
        # the scope exists from now on, so a cancel that comes before the phase's task
        # has even begun is not lost
        self._scope = anyio.CancelScope()
        self.serial += 1
        self._set(state, True)
        return True

    # -- phases -----------------------------------------------------------------------
    async def start(self) -> bool:
        """Run ``on_start``; the runner must have been claimed for START."""
        self.started = True
        return await self._cancellable(START, None)

    async def run(self, run_data: dict[str, Any]) -> bool:
        """Run ``on_run``; the runner must have been claimed for RUN."""
        return await self._cancellable(RUN, run_data)

    async def _cancellable(self, state: str, run_data: dict[str, Any] | None) -> bool:
        self._phase_error = None
        failure: BaseException | None = None
        try:
            if state == RUN and self._dead_application is not None:
                failure = self._dead_application
            else:
                scope = self._scope or anyio.CancelScope()
                with scope:
                    if state == START:
                        await self.adaptor.on_start()
                    else:
                        await self.adaptor.on_run(run_data or {})
                failure = self._phase_error
        except Exception as exc:
            failure = exc
        finally:
            self._scope = None
            if failure is not None:
                self.ctx.fail(f"{FAILURE_TEXT[state]}: {describe(failure)}")
            self.ended = self.serial
            self._set(busy=False)
        return failure is None

    async def cancel(self) -> bool:
        """Cancel the running start or run: the phase's cancel scope first, then
        ``on_cancel`` (shielded, limited to ``cancel_timeout``). False if nothing to cancel.

        The scope goes first so that nothing the phase does after the cancel arrived
        (an application answering a moment later, a status line) reaches the session:
        with ``on_cancel`` first, its abort could be answered and seen by the phase
        before the phase was cancelled."""
        if not (self.busy and self.state in (START, RUN)):
            return False
        self._set(CANCELED)
        _log.info("Canceling the running phase.")
        if self._scope is not None:
            self._scope.cancel()
        with anyio.CancelScope(shield=True) as shield:
            shield.deadline = anyio.current_time() + self.adaptor.cancel_timeout
            try:
                await self.adaptor.on_cancel()
            except Exception as exc:
                self.ctx.fail(f"{FAILURE_TEXT[CANCELED]}: {describe(exc)}")
        return True

    async def stop(self) -> bool:
        """``on_stop`` then ``on_cleanup``, each shielded and time-limited, then whatever
        application is still running is terminated. A running phase is cancelled first
        (the official backend answers 400 and stays up with it)."""
        if self.busy and self.state in (START, RUN):
            await self.cancel()
        await self.wait_idle()
        self._set(STOP, True)
        ok = True
        try:
            ok = await self._shielded(STOP, self.adaptor.on_stop, self.adaptor.stop_timeout)
            self._set(CLEANUP)
            ok = await self._shielded(
                CLEANUP, self.adaptor.on_cleanup, self.adaptor.cleanup_timeout
            ) and ok
            with anyio.CancelScope(shield=True):
                await self.ctx.terminate_processes()
        finally:
            self.stopped = True
            self._set(busy=False)
        return ok

    async def _shielded(self, state: str, hook: Any, timeout: float) -> bool:
        with anyio.CancelScope(shield=True) as scope:
            if math.isfinite(timeout):
                scope.deadline = anyio.current_time() + timeout
            try:
                await hook()
            except Exception as exc:
                self.ctx.fail(f"{FAILURE_TEXT[state]}: {describe(exc)}")
                return False
        if scope.cancelled_caught:
            self.ctx.fail(f"{FAILURE_TEXT[state]}: timed out after {timeout:g} s")
            return False
        return True
