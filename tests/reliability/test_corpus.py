"""The bad-input corpus (tests/reliability/corpus/) through every public entry point,
on local:// (the farm service) and dummy://: each case ends in a typed aiofarm error
naming the field, within a deadline; nothing is created; the farm still works after."""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import pytest

import aiofarm
from aiofarm import Client

from .corpus_values import decode, load_cases

pytestmark = [pytest.mark.anyio, pytest.mark.reliability]

CASES = list(load_cases())
# generous: a case that needs this long has hung (the service answers in milliseconds)
CASE_DEADLINE = 10.0


def test_corpus_size() -> None:
    assert len(CASES) >= 300
    assert len({c["id"] for c in CASES}) == len(CASES)


async def _drive(result: Any) -> None:
    """Run what a call returned as a user would: await it, enter it, take one item."""
    if inspect.isawaitable(result):
        result = await result
    if isinstance(result, AbstractAsyncContextManager):
        async with result as inner:
            await _drive(inner)
        return
    if isinstance(result, AsyncIterator):
        try:
            async for _ in result:
                break
        finally:
            aclose = getattr(result, "aclose", None)
            if aclose is not None:
                await aclose()


async def _run_case(farm: Client, case: dict[str, Any], tmp: Path, url: str) -> None:
    call = case["call"]
    if call == "Client":
        args = [a.replace("{state}", str(tmp / "state")) if isinstance(a, str) else a for a in decode(case["args"])]
        async with Client(*args, **decode(case["kwargs"])) as other:
            await other.jobs.count()
        return
    if call == "where.parse":
        aiofarm.where.parse(*decode(case["args"]))
        return
    if call == "where.build":
        decode(case["args"])
        return
    target: Any = farm
    for part in call.split("."):
        target = getattr(target, part)
    await _drive(target(*decode(case["args"]), **decode(case["kwargs"])))


def _setup_env(case: dict[str, Any], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = case.get("config_toml")
    if toml is not None:
        config = Path(os.environ["XDG_CONFIG_HOME"]) / "aiofarm"
        config.mkdir(parents=True, exist_ok=True)
        data = decode(toml)
        (config / "config.toml").write_bytes(data if isinstance(data, bytes) else data.encode())
    for key, value in case.get("env", {}).items():
        monkeypatch.setenv(key, value)  # a lone surrogate here is an undecodable byte of the environment


def _check(case: dict[str, Any], exc: BaseException | None) -> str | None:
    if exc is None:
        return "accepted"
    if not isinstance(exc, aiofarm.FarmError):
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    if type(exc).__name__ != case["error"] and not any(
        k.__name__ == case["error"] for k in type(exc).__mro__
    ):
        return f"{type(exc).__name__} instead of {case['error']}: {str(exc)[:200]}"
    if isinstance(exc, aiofarm.InvalidSpec):
        if case["field"] not in exc.field:
            return f"field {exc.field!r} does not name {case['field']!r} ({exc.reason[:120]})"
        if not exc.reason:
            return "no reason given"
    return None


@pytest.mark.parametrize("driver", ["local", "dummy"])
async def test_corpus(
    driver: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, figure: Callable[[str, object], None]
) -> None:
    url = f"local://{tmp_path}/farm" if driver == "local" else "dummy://"
    failures: list[str] = []
    ran = 0
    async with Client(url) as farm:
        for case in CASES:
            if driver not in case.get("drivers", (driver,)):
                continue
            ran += 1
            with monkeypatch.context() as patch:
                _setup_env(case, tmp_path, patch)
                caught: BaseException | None = None
                try:
                    with anyio.fail_after(CASE_DEADLINE):
                        await _run_case(farm, case, tmp_path, url)
                except TimeoutError:
                    failures.append(f"{case['id']}: HUNG over {CASE_DEADLINE:g}s")
                    continue
                except Exception as exc:
                    caught = exc
                finally:
                    cfg = Path(os.environ["XDG_CONFIG_HOME"]) / "aiofarm" / "config.toml"
                    cfg.unlink(missing_ok=True)
            problem = _check(case, caught)
            if problem:
                failures.append(f"{case['id']}: {problem}")
        # nothing was created, and the farm still answers and runs work
        created = await farm.jobs.count()
        if driver == "local" and not failures:
            job = await farm.jobs.start(["true"])
            result = await farm.jobs.wait(job.id, timeout=30)
            assert result.status is aiofarm.JobStatus.SUCCEEDED
    figure(f"{driver}: bad-input corpus, cases without a typed error naming the field", f"{len(failures)} of {ran}")
    assert not failures, f"{len(failures)} of {ran} cases:\n" + "\n".join(failures)
    assert created == 0
