"""The local farm's native listing (drivers/local/filtering.py): for generated jobs in a
real SQLite file and generated filters (every field and operator, under &, | and ~),
what SQL selects and the client then checks is exactly what the client alone selects,
in the same order for every sort, and ``count`` agrees; the same through a Client."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from aiofarm import Client, InvalidSpec, JobSpec, JobStatus, where
from aiofarm.drivers.base import ListQuery, SortKey, page_number, sort_jobs
from aiofarm.drivers.local import filtering, store
from aiofarm.models import Job
from aiofarm.where import And, Compare, Expr, Not, Or
from aiofarm.where.fields import FIELDS, KIND_OPERATORS, NULLABLE

hypothesis = pytest.importorskip("hypothesis")
st = pytest.importorskip("hypothesis.strategies")

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
NAMES = ["render", "Render 01", "cleanup", "", "é-ünïcode", "a%b_c", "x\ny"]
TAGS = ["fx", "final", "hero", "a,b", '"q"', "ü"]
POOLS = ["default", "gpu", "cpu"]
OWNERS = ["alice", "bob"]
REGEXES = ["^R", "\\d+", "er$", ".", "(?i)RENDER", "^$"]


def _times() -> st.SearchStrategy[float]:
    # stored seconds, with sub-microsecond parts as time.time() gives them
    base = T0.timestamp()
    return st.floats(min_value=base - 5, max_value=base + 5, allow_nan=False)


@st.composite
def rows(draw: Any) -> dict[str, Any]:
    created = draw(_times())
    started = draw(st.none() | _times())
    return {
        "name": draw(st.none() | st.sampled_from(NAMES)),
        "status": draw(st.sampled_from([s.value for s in JobStatus])),
        "owner": draw(st.none() | st.sampled_from(OWNERS)),
        "pool": draw(st.sampled_from(POOLS)),
        "tags": draw(st.lists(st.sampled_from(TAGS), max_size=3, unique=True)),
        "description": draw(st.none() | st.sampled_from(NAMES)),
        "priority": draw(st.integers(-3, 3) | st.sampled_from([0, 50, 2**62])),
        "created_at": created,
        "started_at": started,
        "finished_at": draw(st.none() | _times()),
        "exit_code": draw(st.none() | st.integers(-9, 3)),
    }


def _value(kind: str, field: str, op: str, draw: Any, times: list[float]) -> Any:
    if op == "matches":
        return draw(st.sampled_from(REGEXES))
    if kind == "tags":
        return draw(st.sampled_from(TAGS))
    if kind == "status":
        return draw(st.sampled_from(list(JobStatus)))
    if kind == "int":
        return draw(st.integers(-4, 4) | st.sampled_from([2**62, 2**70, -(2**70), 1.5]))
    if kind == "time":
        # some exactly the stored times (as a Job shows them), some near them
        seen = [datetime.fromtimestamp(t, timezone.utc) for t in times]
        near = st.floats(-3, 3).map(lambda d: T0 + timedelta(seconds=d))
        return draw(st.sampled_from(seen) | near) if seen else draw(near)
    return draw(st.sampled_from([*NAMES, "R", "er"]))


@st.composite
def compares(draw: Any, times: list[float]) -> Expr:
    field = draw(st.sampled_from(sorted(FIELDS)))
    kind = FIELDS[field]
    op = draw(st.sampled_from(sorted(KIND_OPERATORS[kind])))
    if op in ("==", "!=") and field in NULLABLE and draw(st.booleans()):
        return Compare(field, op, None)
    if op == "in":
        size = draw(st.integers(0, 3))
        return Compare(field, op, [_value(kind, field, "==", draw, times) for _ in range(size)])
    return Compare(field, op, _value(kind, field, op, draw, times))


def exprs(times: list[float]) -> st.SearchStrategy[Expr]:
    return st.recursive(
        compares(times),
        lambda inner: st.one_of(
            st.tuples(inner, inner).map(lambda p: And(*p)),
            st.tuples(inner, inner).map(lambda p: Or(*p)),
            inner.map(Not),
        ),
        max_leaves=6,
    )


SORTABLE = sorted(f for f, kind in FIELDS.items() if kind != "tags")


@pytest.fixture
def database(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    db = store.connect(str(tmp_path / "farm.sqlite"))
    store.init_schema(db)
    filtering.register_functions(db)
    yield db
    db.close()


def fill(db: sqlite3.Connection, corpus: list[dict[str, Any]]) -> list[Job]:
    with store.transaction(db):
        db.execute("DELETE FROM jobs")
        for i, row in enumerate(corpus):
            db.execute(
                "INSERT INTO jobs (id, name, status, owner, pool, tags, description, priority, created_at,"
                " started_at, finished_at, exit_code, spec) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'{}')",
                (
                    f"job-{i}", row["name"], row["status"], row["owner"], row["pool"], json.dumps(row["tags"]),
                    row["description"], row["priority"], row["created_at"], row["started_at"],
                    row["finished_at"], row["exit_code"],
                ),
            )  # fmt: skip
    return store.jobs_where(db, "1", [], "ORDER BY seq")


def native_listing(db: sqlite3.Connection, expr: Expr, sort: tuple[SortKey, ...], reverse: bool) -> list[str]:
    listing = filtering.plan(ListQuery(where=expr, sort=sort, reverse=reverse))
    assert listing.sorted
    sql, params = filtering.sql_where(listing.native)
    jobs = store.jobs_where(db, sql, params, filtering.order_by(sort, reverse))
    test = listing.remainder
    return [j.id for j in jobs if test is None or test.evaluate(j)]


@hypothesis.settings(
    max_examples=300, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
@hypothesis.given(data=st.data())
def test_native_filtering_selects_what_the_client_selects(database: sqlite3.Connection, data: Any) -> None:
    corpus = data.draw(st.lists(rows(), min_size=1, max_size=25), label="corpus")
    everything = fill(database, corpus)
    expr = data.draw(exprs([r["created_at"] for r in corpus]), label="where")
    keys = data.draw(st.lists(st.sampled_from(SORTABLE), max_size=2, unique=True), label="sort")
    sort = tuple(SortKey(k, data.draw(st.booleans())) for k in keys)
    reverse = data.draw(st.booleans(), label="reverse")

    ordered = everything[::-1] if reverse else everything
    expected = [j.id for j in sort_jobs([j for j in ordered if expr.evaluate(j)], sort, reverse)]
    assert native_listing(database, expr, sort, reverse) == expected

    listing = filtering.plan(ListQuery(where=expr))
    if listing.countable:
        sql, params = filtering.sql_where(listing.native)
        assert store.count_where(database, sql, params) == len(expected)


def test_a_filter_sql_cannot_take_is_left_to_the_client() -> None:
    deep: Expr = where.priority == 0
    for i in range(2000):
        deep = deep | (where.priority == i)
    huge = where.priority < 2**70
    listing = filtering.plan(ListQuery(where=deep & huge & (where.name == "a")))
    assert listing.native == (where.name == "a")
    assert listing.remainder == deep & huge and not listing.countable


def test_the_wire_form_reads_back_equal() -> None:
    expr = (
        (where.status == JobStatus.FAILED) | where.name.matches(r"^Cleanup \d{5}")
        | ~((where.priority < 50) & where.tags.contains("final"))
        | where.created_at.in_([T0, T0 + timedelta(seconds=1)]) | (where.exit_code == None)  # noqa: E711
    )  # fmt: skip
    assert filtering.expr_from_wire(json.loads(json.dumps(filtering.expr_to_wire(expr)))) == expr


@pytest.mark.anyio
@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "service"])
async def test_list_and_count_through_a_client(tmp_path: Path, embedded: bool) -> None:
    url = f"local://{tmp_path}/state" + ("?embedded=true" if embedded else "")
    async with Client(url) as farm:
        specs = [
            JobSpec(command=["true"], paused=True, name=f"shot {i % 7}", priority=i % 5, tags=["hero"] if i % 3 == 0 else [])
            for i in range(60)
        ]  # fmt: skip
        await farm.jobs.submit(specs)
        (to_cancel,) = [j async for j in _listed(farm, where=(where.name == "shot 6") & (where.priority == 4))]
        await farm.jobs.cancel(to_cancel)
        async with farm.jobs.list() as it:
            everything = [j async for j in it]
        cases: list[tuple[Expr, tuple[str, ...]]] = [
            ((where.priority >= 3) & where.tags.contains("hero"), ()),
            (where.name.matches(r"[135]$") | (where.status == JobStatus.CANCELED), ("-priority", "name")),
            (~where.tags.contains("hero") & (where.created_at <= datetime.now(timezone.utc)), ("name",)),
        ]
        for expr, sort in cases:
            want = [j.id for j in everything if expr.evaluate(j)]
            if sort:
                from aiofarm.listing import parse_sort

                want = [j.id for j in sort_jobs([j for j in everything if expr.evaluate(j)], parse_sort(sort))]
            got = [j async for j in _listed(farm, where=expr, sort=list(sort) or None, page_size=7)]
            assert got == want and got
            assert await farm.jobs.count(where=expr) == len(want)


async def _listed(farm: Client, **kw: Any) -> AsyncIterator[str]:
    async with farm.jobs.list(**kw) as it:
        async for job in it:
            yield job.id


def test_page_tokens_are_checked() -> None:
    assert page_number(None, "local") is None
    assert page_number("o40", "local", "o") == 40 and page_number("17", "local") == 17
    for bad in ("x", "o", "40", "o4x"):
        with pytest.raises(InvalidSpec, match="page_token") as info:
            page_number(bad, "local", "o")
        assert info.value.field == "page_token"
