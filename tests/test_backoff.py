"""aiofarm.backoff on its own: the delay ladder (doubling, cap, reset), full jitter's
bounds, and retry_transient. Sleeps are recorded, not slept."""

from __future__ import annotations

import random
import statistics

import anyio
import pytest

from aiofarm.backoff import Backoff, retry_transient

pytestmark = pytest.mark.anyio


def ladder(b: Backoff, n: int) -> list[float]:
    return [b.next() for _ in range(n)]


def test_delays_double_from_initial() -> None:
    assert ladder(Backoff(0.5, 1000.0), 6) == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0]


def test_factor_sets_the_step() -> None:
    assert ladder(Backoff(1.0, 1000.0, factor=3.0), 4) == [1.0, 3.0, 9.0, 27.0]
    assert ladder(Backoff(2.0, 10.0, factor=1.0), 3) == [2.0, 2.0, 2.0]


def test_delays_stop_at_the_cap() -> None:
    # 0.5 1 2 4 8 16 32 64 then the cap (not 128), and it stays there
    delays = ladder(Backoff(0.5, 120.0), 12)
    assert delays[:8] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert delays[8:] == [120.0] * 4
    assert max(delays) == 120.0


def test_reset_starts_the_ladder_again() -> None:
    b = Backoff(0.25, 10.0)
    ladder(b, 5)
    b.reset()
    assert ladder(b, 3) == [0.25, 0.5, 1.0]


@pytest.mark.parametrize(
    ("initial", "maximum", "factor"),
    [(0.0, 1.0, 2.0), (-1.0, 1.0, 2.0), (2.0, 1.0, 2.0), (1.0, 2.0, 0.5)],
)
def test_bad_settings_are_refused(initial: float, maximum: float, factor: float) -> None:
    with pytest.raises(ValueError, match="initial"):
        Backoff(initial, maximum, factor)


def test_jitter_stays_within_zero_and_the_step() -> None:
    random.seed(1234)
    b = Backoff(1.0, 8.0, jitter=True)
    steps = [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    for _ in range(300):
        b.reset()
        for step in steps:
            delay = b.next()
            assert 0.0 <= delay <= step


def test_jitter_spreads_over_the_whole_step() -> None:
    # full jitter: uniform over [0, step], not a small wobble around the step
    random.seed(99)
    samples = []
    for _ in range(4000):
        b = Backoff(1.0, 1.0, jitter=True)
        samples.append(b.next())
    assert 0.45 < statistics.fmean(samples) < 0.55
    assert min(samples) < 0.05 and max(samples) > 0.95


def test_jitter_draws_from_the_un_jittered_ladder(monkeypatch: pytest.MonkeyPatch) -> None:
    # the bound passed to the random draw is the plain ladder: jitter does not slow or
    # speed the doubling itself
    bounds: list[float] = []

    def upper(low: float, high: float) -> float:
        assert low == 0
        bounds.append(high)
        return high

    monkeypatch.setattr(random, "uniform", upper)
    b = Backoff(0.5, 4.0, jitter=True)
    assert ladder(b, 6) == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert bounds == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> Sleeps:
    recorder = Sleeps()
    monkeypatch.setattr(anyio, "sleep", recorder)
    return recorder


async def test_sleep_waits_the_next_delay(sleeps: Sleeps) -> None:
    b = Backoff(0.5, 2.0)
    for _ in range(4):
        await b.sleep()
    assert sleeps.delays == [0.5, 1.0, 2.0, 2.0]


class Flaky:
    """Fails with ``errors`` in turn, then returns ``"done"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def transient(exc: BaseException) -> bool:
    return isinstance(exc, ConnectionError)


async def test_retry_transient_retries_until_success(sleeps: Sleeps) -> None:
    fn = Flaky(ConnectionError("reset"), ConnectionError("reset"))
    assert await retry_transient(fn, is_transient=transient, initial=0.1, maximum=5.0) == "done"
    assert fn.calls == 3
    # one sleep between attempts, jittered under the ladder 0.1, 0.2
    assert len(sleeps.delays) == 2
    assert 0 <= sleeps.delays[0] <= 0.1 and 0 <= sleeps.delays[1] <= 0.2


async def test_retry_transient_reraises_other_errors_at_once(sleeps: Sleeps) -> None:
    fn = Flaky(ValueError("bad request"))
    with pytest.raises(ValueError, match="bad request"):
        await retry_transient(fn, is_transient=transient)
    assert fn.calls == 1
    assert sleeps.delays == []


async def test_retry_transient_gives_up_after_attempts(sleeps: Sleeps) -> None:
    errors = [ConnectionError(f"reset {i}") for i in range(10)]
    fn = Flaky(*errors)
    with pytest.raises(ConnectionError, match="reset 3"):  # the last failure, as it is
        await retry_transient(fn, is_transient=transient, attempts=4, initial=1.0, maximum=2.0)
    assert fn.calls == 4
    assert len(sleeps.delays) == 3  # none after the last attempt
    assert all(0 <= d <= cap for d, cap in zip(sleeps.delays, [1.0, 2.0, 2.0], strict=True))


async def test_retry_transient_is_cancellable(monkeypatch: pytest.MonkeyPatch) -> None:
    # a real sleep between attempts (the whole 10 s step): cancelling the caller ends the retries
    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    fn = Flaky(*[ConnectionError("reset") for _ in range(100)])
    with anyio.move_on_after(0.2) as scope:
        await retry_transient(fn, is_transient=transient, attempts=100, initial=10.0, maximum=10.0)
    assert scope.cancelled_caught
    assert fn.calls == 1
