"""Bad input gets a typed aiofarm error naming the field; nothing is created."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

import aiofarm
from aiofarm import Client, InvalidSpec, JobNotFound, JobSpec, PoolNotFound, Resources

pytestmark = pytest.mark.anyio

Call = Callable[[Client], Awaitable[Any]]


async def _list_all(farm: Client, **kw: Any) -> list[Any]:
    async with farm.jobs.list(**kw) as it:
        return [j async for j in it]


CASES: list[tuple[str, Call, type[Exception], str]] = [
    ("empty argv", lambda f: f.jobs.start([]), InvalidSpec, "command"),
    ("empty shell string", lambda f: f.jobs.start("   "), InvalidSpec, "command"),
    ("empty argv[0]", lambda f: f.jobs.start([""]), InvalidSpec, "command[0]"),
    ("non-str argv item", lambda f: f.jobs.start(["echo", 3]), InvalidSpec, "command[1]"),  # type: ignore[list-item]
    ("NUL in argv", lambda f: f.jobs.start(["echo", "a\x00b"]), InvalidSpec, "command[1]"),
    ("command of wrong type", lambda f: f.jobs.start(42), InvalidSpec, "command"),  # type: ignore[arg-type]
    ("negative priority", lambda f: f.jobs.start(["true"], priority=-1), InvalidSpec, "priority"),
    ("priority too high", lambda f: f.jobs.start(["true"], priority=101), InvalidSpec, "priority"),
    ("bool priority", lambda f: f.jobs.start(["true"], priority=True), InvalidSpec, "priority"),
    ("float priority", lambda f: f.jobs.start(["true"], priority=1.5), InvalidSpec, "priority"),  # type: ignore[arg-type]
    ("non-str env value", lambda f: f.jobs.start(["true"], env={"A": 1}), InvalidSpec, "env['A']"),  # type: ignore[dict-item]
    ("'=' in env name", lambda f: f.jobs.start(["true"], env={"A=B": "x"}), InvalidSpec, "env['A=B']"),
    ("env not a mapping", lambda f: f.jobs.start(["true"], env=["A"]), InvalidSpec, "env"),  # type: ignore[arg-type]
    ("zero timeout", lambda f: f.jobs.start(["true"], timeout=0), InvalidSpec, "timeout"),
    ("nan timeout", lambda f: f.jobs.start(["true"], timeout=float("nan")), InvalidSpec, "timeout"),
    ("negative retries", lambda f: f.jobs.start(["true"], retries=-1), InvalidSpec, "retries"),
    ("zero cpu", lambda f: f.jobs.start(["true"], resources=Resources(cpu=0)), InvalidSpec, "resources.cpu"),
    ("negative gpu", lambda f: f.jobs.start(["true"], resources=Resources(gpu=-1)), InvalidSpec, "resources.gpu"),
    ("zero memory", lambda f: f.jobs.start(["true"], resources=Resources(memory_mb=0)), InvalidSpec, "resources.memory_mb"),
    ("tags as one string", lambda f: f.jobs.start(["true"], tags="abc"), InvalidSpec, "tags"),
    ("empty tag", lambda f: f.jobs.start(["true"], tags=[""]), InvalidSpec, "tags[0]"),
    ("bad id characters", lambda f: f.jobs.start(["true"], id="has space"), InvalidSpec, "id"),
    ("unknown dependency", lambda f: f.jobs.start(["true"], depends_on=["no-such-job"]), InvalidSpec, "depends_on[0]"),
    ("self dependency", lambda f: f.jobs.submit([JobSpec(command=["true"], id="s", depends_on=["s"])]), InvalidSpec, "specs[0].depends_on"),
    (
        "duplicate ids",
        lambda f: f.jobs.submit([JobSpec(command=["true"], id="d"), JobSpec(command=["true"], id="d")]),
        InvalidSpec,
        "specs[1].id",
    ),
    (
        "dependency cycle",
        lambda f: f.jobs.submit(
            [JobSpec(command=["true"], id="p", depends_on=["q"]), JobSpec(command=["true"], id="q", depends_on=["p"])]
        ),
        InvalidSpec,
        "depends_on",
    ),
    ("spec of wrong type", lambda f: f.jobs.submit([{"command": ["true"]}]), InvalidSpec, "specs[0]"),  # type: ignore[list-item]
    ("tty without command", lambda f: f.jobs.submit([JobSpec(template={}, tty=True)]), InvalidSpec, "specs[0].tty"),
    ("unknown pool", lambda f: f.jobs.start(["true"], pool="no-such-pool"), InvalidSpec, "pool"),
    ("unknown job id", lambda f: f.jobs.get("no-such-job"), JobNotFound, ""),
    ("empty job id", lambda f: f.jobs.get(""), InvalidSpec, "job_id"),
    ("non-str job id", lambda f: f.jobs.get(5), InvalidSpec, "job_id"),  # type: ignore[arg-type]
    ("cancel unknown id", lambda f: f.jobs.cancel(["no-such-job"]), JobNotFound, ""),
    ("ids as bytes", lambda f: f.jobs.cancel(b"abc"), InvalidSpec, "ids"),  # type: ignore[arg-type]
    ("malformed filter text", lambda f: _list_all(f, where="status == "), InvalidSpec, "where"),
    ("unknown filter field", lambda f: _list_all(f, where="colour == red"), InvalidSpec, ""),
    ("unknown status", lambda f: _list_all(f, statuses=["sleeping"]), InvalidSpec, "statuses"),
    ("naive since", lambda f: _list_all(f, since=datetime(2020, 1, 1)), InvalidSpec, "since"),
    ("negative limit", lambda f: _list_all(f, limit=-1), InvalidSpec, "limit"),
    ("bad signal", lambda f: f.jobs.send_signal("x", 12345), InvalidSpec, "signal"),
    ("update with nothing", lambda f: f.jobs.update("x"), InvalidSpec, "update"),
    ("update bad priority", lambda f: f.jobs.update("x", priority=500), InvalidSpec, "priority"),
    ("wait negative timeout", lambda f: f.jobs.wait("x", timeout=-1), InvalidSpec, "timeout"),
    ("wait zero max_interval", lambda f: f.jobs.wait("x", max_interval=0), InvalidSpec, "max_interval"),
    ("log tail negative", lambda f: f.logs.read("x", tail=-2), InvalidSpec, "tail"),
    ("log page limit zero", lambda f: f.logs.page("x", limit=0), InvalidSpec, "limit"),
    ("unknown pool get", lambda f: f.pools.get("no-such-pool"), PoolNotFound, ""),
    ("bad pool name", lambda f: f.pools.create("has space", slots=1), InvalidSpec, "name"),
    ("zero pool slots", lambda f: f.pools.create("p", slots=0), InvalidSpec, "slots"),
    ("bad worker regex", lambda f: f.workers.list(regex="("), InvalidSpec, "regex"),
]


@pytest.fixture
async def farm(tmp_path: Path) -> AsyncIterator[Client]:
    async with Client(f"local://{tmp_path}/state") as client:
        yield client


@pytest.mark.parametrize(("call", "error", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_bad_input(farm: Client, call: Call, error: type[Exception], field: str) -> None:
    with pytest.raises(error) as info:
        await call(farm)
    exc = info.value
    assert isinstance(exc, aiofarm.FarmError)
    if isinstance(exc, InvalidSpec):
        assert field in exc.field, f"{exc.field!r} does not name {field!r}"
        assert exc.reason
    # nothing was created by a rejected call
    async with farm.jobs.list() as it:
        assert [j async for j in it] == []

