"""The one back-off of aiofarm.

:class:`Backoff` gives the delays: ``initial`` doubling (``factor``) up to
``maximum``, optionally with full jitter. The shared poller, log follow and
transient-failure retries all use it; nothing else in aiofarm computes a delay.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import anyio

__all__ = ["Backoff", "retry_transient"]

T = TypeVar("T")

#: the longest wait a back end's ``Retry-After`` may impose on one retry
MAX_RETRY_AFTER = 60.0


class Backoff:
    __slots__ = ("_next", "factor", "initial", "jitter", "maximum")

    def __init__(
        self,
        initial: float = 0.5,
        maximum: float = 120.0,
        factor: float = 2.0,
        jitter: bool = False,
    ) -> None:
        if initial <= 0 or maximum < initial or factor < 1:
            raise ValueError("Backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.jitter = jitter
        self._next = initial

    def next(self) -> float:
        """The next delay; each call moves one step up the ladder."""
        delay = self._next
        self._next = min(self.maximum, self._next * self.factor)
        if self.jitter:
            # full jitter (AWS architecture blog): spreads retries of many clients
            return random.uniform(0, delay)
        return delay

    def reset(self) -> None:
        self._next = self.initial

    async def sleep(self) -> None:
        await anyio.sleep(self.next())


async def retry_transient(
    fn: Callable[[], Awaitable[T]],
    *,
    is_transient: Callable[[BaseException], bool],
    attempts: int = 6,
    initial: float = 0.1,
    maximum: float = 5.0,
    retry_after: Callable[[BaseException], float | None] | None = None,
) -> T:
    """Call ``fn`` until it succeeds, retrying transient failures with jittered
    exponential back-off. ``retry_after`` reads the wait a failure asked for (an
    HTTP ``Retry-After``): the delay is then at least that, capped at ``MAX_RETRY_AFTER``.
    The last failure is re-raised as it is."""
    backoff = Backoff(initial, maximum, jitter=True)
    for attempt in range(attempts):
        try:
            return await fn()
        except Exception as exc:
            if attempt == attempts - 1 or not is_transient(exc):
                raise
            asked = retry_after(exc) if retry_after is not None else None
        delay = backoff.next()
        if asked is not None:
            delay = max(delay, min(asked, MAX_RETRY_AFTER))
        await anyio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover
