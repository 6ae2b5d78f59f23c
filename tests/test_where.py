"""Filter expressions: the builder, coercion, evaluation, the text parser, driver helpers."""

from __future__ import annotations

import functools
import operator
import pickle
import random
import sys
from datetime import date, datetime, timedelta, timezone

import pytest

import aiofarm
import aiofarm.where as where_module
from aiofarm.errors import FarmError, InvalidSpec
from aiofarm.models import Job, JobStatus
from aiofarm.where import (
    FIELDS,
    And,
    Compare,
    Expr,
    Not,
    Or,
    UnknownField,
    WhereSyntaxError,
    conjoin,
    conjuncts,
    parse,
    split_native,
    where,
)

UTC = timezone.utc
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def job(**kw: object) -> Job:
    base: dict[str, object] = {
        "id": "j1",
        "status": JobStatus.FAILED,
        "driver": "local",
        "name": "Cleanup 12345",
        "owner": "ana",
        "pool": "gpu",
        "tags": ("final", "comp"),
        "description": "nightly comp",
        "priority": 40,
        "created_at": T0,
        "started_at": T0 + timedelta(seconds=5),
        "finished_at": T0 + timedelta(seconds=65),
        "exit_code": 3,
    }
    base.update(kw)
    return Job(**base)  # type: ignore[arg-type]


J = job()
BARE = Job(id="j2", status=JobStatus.PENDING, driver="local")  # every optional field unset


# -- builder & evaluation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        (where.status == JobStatus.FAILED, True),
        (where.status == "failed", True),
        (where.status == "FAILED", True),
        (where.status == " Failed ", True),
        (where.status != "failed", False),
        (where.status == "running", False),
        (where.status.in_([JobStatus.FAILED, "canceled"]), True),
        (where.status.in_(["running"]), False),
        (where.status.in_("failed"), True),  # one str is one value, not its letters
        (where.status.in_([]), False),
        (where.priority < 50, True),
        (where.priority <= 40, True),
        (where.priority > 40, False),
        (where.priority >= 40, True),
        (where.priority == 40, True),
        (where.priority != 40, False),
        (where.priority < 40.5, True),
        (where.priority == "40", True),
        (where.priority.in_([1, 40]), True),
        (where.exit_code > 0, True),
        (where.exit_code == None, False),  # noqa: E711 - the builder overloads ==
        (where.name == "Cleanup 12345", True),
        (where.name == "cleanup 12345", False),  # == is case-sensitive
        (where.name.contains("up 1"), True),
        (where.name.contains("x"), False),
        (where.name.matches(r"^Cleanup \d{5}$"), True),
        (where.name.matches(r"^\d"), False),
        (where.name.matches(r"(?i)^cleanup"), True),
        (where.name.in_(["a", "Cleanup 12345"]), True),
        (where.name < "D", True),
        (where.id == "j1", True),
        (where.owner == "ana", True),
        (where.pool != "cpu", True),
        (where.description.contains("comp"), True),
        (where.tags.contains("final"), True),
        (where.tags.contains("fin"), False),  # tags contain whole tags, not substrings
        (where.tags.in_(["x", "comp"]), True),
        (where.tags.in_(["x", "y"]), False),
        (where.tags.matches("^fi"), True),
        (where.tags.matches("^z"), False),
        (where.created_at == T0, True),
        (where.created_at < T0, False),
        (where.created_at >= "2026-01-01T12:00:00Z", True),
        (where.created_at > "2026-01-01T11:00:00+00:00", True),
        (where.created_at > "2026-01-01T13:00:00+02:00", True),  # 11:00 UTC
        (where.finished_at > T0.timestamp() + 60, True),
        (where.started_at < T0 + timedelta(seconds=6), True),
    ],
)
def test_evaluate(expr: Expr, expected: bool) -> None:
    assert isinstance(expr, Compare)
    assert expr.evaluate(J) is expected
    assert expr(J) is expected  # an Expr is a predicate too
    assert (~expr).evaluate(J) is (not expected)


def test_unset_fields_match_no_ordering_and_compare_unequal() -> None:
    assert (where.exit_code == None).evaluate(BARE)  # noqa: E711
    assert not (where.exit_code != None).evaluate(BARE)  # noqa: E711
    assert (where.exit_code != 0).evaluate(BARE)
    for expr in [
        where.exit_code < 1,
        where.exit_code >= 0,
        where.name.contains("a"),
        where.name.matches("."),
        where.name.in_(["x"]),
        where.finished_at > T0,
        where.tags.contains("a"),
        where.tags.matches("."),
    ]:
        assert expr.evaluate(BARE) is False, expr
        assert (~expr).evaluate(BARE) is True, expr


def test_naive_job_time_is_taken_as_utc() -> None:
    naive = job(created_at=datetime(2026, 1, 1, 12, 0))
    assert (where.created_at == T0).evaluate(naive)


def test_naive_filter_time_is_local_time() -> None:
    naive = datetime(2026, 1, 1, 12, 0)
    compared = where.created_at > naive
    assert compared.value == naive.astimezone(UTC)
    assert compared.value.tzinfo is UTC
    assert (where.created_at >= date(2026, 1, 1)).value == datetime(2026, 1, 1).astimezone(UTC)


def test_combinators_build_the_ast() -> None:
    a, b, c = where.priority < 50, where.tags.contains("final"), where.status == "failed"
    assert (a & b) == And(a, b)
    assert (a | b) == Or(a, b)
    assert ~a == Not(a)
    expr = c | (a & b)
    assert expr == Or(c, And(a, b))
    assert expr.evaluate(J)
    assert not ((a & ~b) | (c & ~c)).evaluate(J)
    # the design example
    design = (
        (where.status == JobStatus.FAILED)
        | where.name.matches(r"^Cleanup \d{5}")
        | ((where.priority < 50) & where.tags.contains("final"))
    )
    assert design.evaluate(job(status=JobStatus.SUCCEEDED, name="x"))
    assert not design.evaluate(job(status=JobStatus.SUCCEEDED, name="x", priority=60))


def test_ast_nodes_are_immutable_hashable_and_coerced() -> None:
    c = Compare("status", "==", "Failed")
    assert c.value is JobStatus.FAILED
    assert c == Compare("status", "==", JobStatus.FAILED)
    assert hash(c) == hash(Compare("status", "==", JobStatus.FAILED))
    assert len({c, Compare("status", "==", "failed"), where.status == "running"}) == 2
    with pytest.raises(AttributeError):
        c.value = "running"  # type: ignore[misc]
    assert Compare("status", "in", ["failed", "CANCELED"]).value == (
        JobStatus.FAILED,
        JobStatus.CANCELED,
    )
    assert Compare("priority", "<", "7").value == 7
    assert pickle.loads(pickle.dumps(c | ~c)) == c | ~c


def test_bool_of_an_expression_raises() -> None:
    a, b = where.priority < 50, where.status == "failed"
    with pytest.raises(TypeError, match="&"):
        bool(a)
    with pytest.raises(TypeError):
        _ = a and b
    with pytest.raises(TypeError):
        _ = not a
    with pytest.raises(TypeError):
        if a | b:
            pass
    with pytest.raises(TypeError):
        _ = 1 < where.priority < 50  # a chained comparison is an `and` in disguise


def test_combining_with_a_non_expression_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ = (where.priority < 50) & True  # type: ignore[operator]
    with pytest.raises(TypeError):
        _ = "x" | (where.priority < 50)  # type: ignore[operator]


# -- bad input: typed errors naming the field ---------------------------------------------


def test_unknown_field() -> None:
    with pytest.raises(UnknownField) as info:
        _ = where.colour
    assert info.value.field == "where.colour"
    assert "colour" in str(info.value) and "priority" in str(info.value)
    assert isinstance(info.value, InvalidSpec) and isinstance(info.value, FarmError)
    assert not hasattr(where, "colour")  # also an AttributeError: probing tools keep working
    with pytest.raises(AttributeError):
        _ = where._private
    with pytest.raises(InvalidSpec, match=r"where\.bogus"):
        Compare("bogus", "==", 1)


def test_where_object_lists_fields() -> None:
    assert set(FIELDS) <= set(dir(where))
    assert repr(where.status) == "where.status"
    assert where.parse("priority < 5") == (where.priority < 5)
    # `aiofarm.where` may be the module or the object depending on the import path:
    # both read the same
    module = sys.modules["aiofarm.where"]
    for namespace in (where_module, module, aiofarm.where):
        assert namespace.parse("priority < 5") == (where.priority < 5)
        assert (namespace.status == "failed") == Compare("status", "==", JobStatus.FAILED)
    with pytest.raises(UnknownField):
        _ = module.colour


@pytest.mark.parametrize(
    ("build", "field", "fragment"),
    [
        (lambda: where.status == "flailed", "where.status", "'flailed' is not a job status"),
        (lambda: where.status == 3, "where.status", "not a job status"),
        (lambda: where.status < "failed", "where.status", "operator <"),
        (lambda: where.status.contains("fail"), "where.status", "operator contains"),
        (lambda: where.status.in_(["failed", "nope"]), "where.status", "'nope'"),
        (lambda: where.status == None, "where.status", "None"),  # noqa: E711
        (lambda: where.priority < "high", "where.priority", "'high' is not a number"),
        (lambda: where.priority < True, "where.priority", "not a number"),
        (lambda: where.priority < [1], "where.priority", "not a number"),
        (lambda: where.priority < float("nan"), "where.priority", "NaN"),
        (lambda: where.priority.contains("1"), "where.priority", "operator contains"),
        (lambda: where.priority.matches("1"), "where.priority", "operator matches"),
        (lambda: where.priority == None, "where.priority", "None"),  # noqa: E711
        (lambda: where.exit_code < None, "where.exit_code", "None"),
        (lambda: where.name == 5, "where.name", "not a string"),
        (lambda: where.name.contains(5), "where.name", "not a string"),  # type: ignore[arg-type]
        (lambda: where.name.matches("("), "where.name", "bad regular expression"),
        (lambda: where.name.matches(5), "where.name", "regular expression"),  # type: ignore[arg-type]
        (lambda: where.name.in_(["a", 1]), "where.name", "not a string"),
        (lambda: where.tags == "final", "where.tags", "tags take contains"),
        (lambda: where.tags < "a", "where.tags", "operator <"),
        (lambda: where.tags.contains(None), "where.tags", "None (null) works only"),  # type: ignore[arg-type]
        (lambda: where.tags.matches("[z"), "where.tags", "bad regular expression"),
        (lambda: where.created_at > "yesterday", "where.created_at", "'yesterday' is not an ISO"),
        (lambda: where.created_at > [2026], "where.created_at", "not a datetime"),
        (lambda: where.created_at > 1e300, "where.created_at", "Unix timestamp"),
        (lambda: where.created_at.contains("2026"), "where.created_at", "operator contains"),
        (lambda: Compare("name", "like", "x"), "where.name", "unknown operator"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_raise_invalid_spec(build: object, field: str, fragment: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        build()  # type: ignore[operator]
    assert info.value.field == field
    assert fragment in info.value.reason
    assert info.value.__suppress_context__ or info.value.__context__ is None  # no noisy chain


# -- the text parser ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("status == failed", where.status == "failed"),
        ("status = FAILED", where.status == "failed"),
        ("status != failed", where.status != "failed"),
        ("priority < 50", where.priority < 50),
        ("priority<=50", where.priority <= 50),
        ("priority>50", where.priority > 50),
        ("priority >= -5", where.priority >= -5),
        ("priority < 2.5", where.priority < 2.5),
        ("exit_code == null", where.exit_code == None),  # noqa: E711
        ("exit_code != NONE", where.exit_code != None),  # noqa: E711
        ('name == "null"', where.name == "null"),
        ("name == null", where.name == None),  # noqa: E711
        ("id == 00123", where.id == "00123"),  # a str field keeps the text as written
        ('name == "with \\"quotes\\" and \\\\"', where.name == 'with "quotes" and \\'),
        ("name == 'it\\'s'", where.name == "it's"),
        (r'name matches "^Cleanup \d{5}"', where.name.matches(r"^Cleanup \d{5}")),
        ("name MATCHES '^a|b$'", where.name.matches("^a|b$")),
        ("tags contains final", where.tags.contains("final")),
        ("name contains 'a b'", where.name.contains("a b")),
        ("status in (failed, canceled)", where.status.in_(["failed", "canceled"])),
        ("status in (failed,canceled,)", where.status.in_(["failed", "canceled"])),
        ("status in failed", where.status.in_(["failed"])),
        ("status in ()", where.status.in_([])),
        ("status not in (failed)", ~where.status.in_(["failed"])),
        ("tags not contains wip", ~where.tags.contains("wip")),
        ("name not matches x", ~where.name.matches("x")),
        ("created_at > 2026-01-01T11:00:00Z", where.created_at > "2026-01-01T11:00:00+00:00"),
        ("created_at > '2026-01-01 11:00:00+00:00'", where.created_at > T0 - timedelta(hours=1)),
        ("finished_at < 1767268800", where.finished_at < T0),
        ("pool == gpu-a.1/x", where.pool == "gpu-a.1/x"),
        ("name == status", where.name == "status"),  # a field name in value position is text
    ],
)
def test_parse_comparisons(text: str, expected: Expr) -> None:
    assert parse(text) == expected


def test_precedence_not_over_and_over_or() -> None:
    a, b, c = (where.priority < 1), (where.priority < 2), (where.priority < 3)
    assert parse("priority < 1 or priority < 2 and priority < 3") == Or(a, And(b, c))
    assert parse("priority < 1 and priority < 2 or priority < 3") == Or(And(a, b), c)
    assert parse("not priority < 1 and priority < 2") == And(Not(a), b)
    assert parse("not (priority < 1 and priority < 2)") == Not(And(a, b))
    assert parse("(priority < 1 or priority < 2) and priority < 3") == And(Or(a, b), c)
    assert parse("priority < 1 | priority < 2 & ~priority < 3") == Or(a, And(b, Not(c)))
    assert parse("not not priority < 1") == Not(Not(a))
    assert parse("priority < 1 and priority < 2 and priority < 3") == And(And(a, b), c)
    assert parse("((priority < 1))") == a
    assert parse("NOT priority < 1 AND priority < 2 Or priority < 3") == Or(And(Not(a), b), c)


def test_parse_design_example_evaluates() -> None:
    expr = parse(
        'status == failed or name matches "^Cleanup \\d{5}" or (priority < 50 and tags contains final)'
    )
    assert expr.evaluate(J)
    assert expr.evaluate(job(status=JobStatus.SUCCEEDED, name="x"))
    assert not expr.evaluate(job(status=JobStatus.SUCCEEDED, name="x", priority=60))
    assert parse("not (status == failed or status == canceled)").evaluate(BARE)
    assert not parse("status in (failed, canceled) & exit_code != 0").evaluate(BARE)


@pytest.mark.parametrize(
    "expr",
    [
        where.status == "failed",
        (where.priority < 50) & ~where.tags.contains("x") | where.name.matches(r'a"b\d\\'),
        Or(where.priority < 1, Or(where.priority < 2, where.priority < 3)),
        And(where.priority < 1, And(where.priority < 2, where.priority < 3)),
        Not(And(where.priority < 1, Or(where.id == "a", where.id == "b"))),
        where.status.in_(["failed", "canceled"]) & (where.created_at > T0),
        (where.exit_code == None) | (where.finished_at != None) | (where.name == None),  # noqa: E711
        where.description == "null",
        where.priority >= 2.5,
    ],
)
def test_str_round_trips_through_parse(expr: Expr) -> None:
    assert parse(str(expr)) == expr


@pytest.mark.parametrize(
    ("text", "column", "fragment", "field"),
    [
        ("", 1, "empty filter", "where"),
        ("   ", 4, "empty filter", "where"),
        ("status ==", 10, "expected a value, found end", "where"),
        ("status == failed and", 21, "expected a field name", "where"),
        ("status == failed )", 18, "found ')'", "where"),
        ("status == failed priority < 3", 18, "found 'priority'", "where"),
        ("(status == failed", 1, "unclosed parenthesis", "where"),
        ("status == failed or (priority < 3", 21, "unclosed parenthesis", "where"),
        ("(status == failed priority", 19, "expected ), found 'priority'", "where"),
        ('name == "abc', 9, "unterminated string", "where"),
        ("status failed", 8, "expected an operator", "where"),
        ("status", 7, "expected an operator", "where"),
        ("== failed", 1, "expected a field name", "where"),
        ("and", 1, "expected a field name", "where"),
        ("status ! failed", 8, "unexpected '!'", "where"),
        ("status in (failed canceled)", 19, "expected , or )", "where"),
        ("status in (failed", 11, "unclosed parenthesis", "where"),
        ("status not == failed", 12, "after not", "where"),
        ("priority < (", 12, "expected a value", "where"),
        ("colour == red", 1, "unknown field 'colour'", "where.colour"),
        ("status == flailed", 11, "'flailed' is not a job status", "where.status"),
        ("status in (failed, nope)", 11, "'nope'", "where.status"),
        ("status < failed", 8, "operator < does not apply", "where.status"),
        ("tags == final", 6, "tags take contains", "where.tags"),
        ("priority < high", 12, "'high' is not a number", "where.priority"),
        ("priority == null", 13, "None", "where.priority"),
        ('name matches "(unclosed"', 14, "bad regular expression", "where.name"),
        ("created_at > soon", 14, "not an ISO 8601", "where.created_at"),
    ],
)
def test_parse_errors_point_at_the_column(
    text: str, column: int, fragment: str, field: str
) -> None:
    with pytest.raises(WhereSyntaxError) as info:
        parse(text)
    err = info.value
    assert isinstance(err, InvalidSpec)
    assert err.field == field
    assert err.column == column, (err.column, str(err))
    assert err.text == text
    assert fragment in err.message
    lines = str(err).splitlines()
    assert lines[0].endswith(f"at column {column}")
    assert lines[1] == f"    {text}"
    assert lines[2] == "    " + " " * (column - 1) + "^"


def test_parse_rejects_non_text() -> None:
    with pytest.raises(InvalidSpec) as info:
        parse(42)  # type: ignore[arg-type]
    assert info.value.field == "where"


# -- helpers for drivers --------------------------------------------------------------------


def test_split_native_takes_supported_conjuncts_only() -> None:
    status = where.status.in_(["failed"])
    prio = where.priority < 50
    name = where.name.matches("x")
    either = (where.pool == "a") | (where.pool == "b")
    expr = status & (prio & name) & either

    def natively(c: Compare) -> bool:
        return c.field in ("status", "priority")

    native, rest = split_native(expr, natively)
    assert native == [status, prio]
    assert rest == And(name, either)
    assert list(conjuncts(expr)) == [status, prio, name, either]

    # an Or at the top cannot be split: everything stays with the client
    native, rest = split_native(status | prio, natively)
    assert native == [] and rest == Or(status, prio)
    # a Not is never handed to the driver as a Compare
    native, rest = split_native(~status, natively)
    assert native == [] and rest == Not(status)
    # all of it native
    native, rest = split_native(status & prio, natively)
    assert native == [status, prio] and rest is None
    assert split_native(None, natively) == ([], None)
    assert where.split_native(status, natively) == ([status], None)


def test_conjoin() -> None:
    a, b = where.priority < 1, where.priority < 2
    assert conjoin([]) is None
    assert conjoin([a]) is a
    assert conjoin([a, b]) == And(a, b)


def test_native_subset_never_drops_a_match() -> None:
    """What a driver filters natively (the supported conjuncts) keeps every job the whole
    expression matches."""
    expr = parse("status in (failed, succeeded) and priority < 50 and not tags contains x")
    native, _ = split_native(expr, lambda c: c.field == "status")
    jobs = [
        job(status=s, priority=p, tags=t)
        for s in JobStatus
        for p in (10, 60)
        for t in ((), ("x",), ("y",))
    ]
    prefilter = [j for j in jobs if all(c.evaluate(j) for c in native)]
    matched = [j for j in jobs if expr.evaluate(j)]
    assert matched and len(prefilter) < len(jobs)
    assert all(j in prefilter for j in matched)


def test_caret_stays_under_the_column_across_tabs_and_newlines() -> None:
    with pytest.raises(WhereSyntaxError) as info:
        parse("status == failed\n\tand colour == red")
    assert info.value.column == 23
    assert str(info.value).splitlines()[1:] == [
        "    status == failed  and colour == red",
        "    " + " " * 22 + "^",
    ]


def _random_expr(rng: random.Random, depth: int = 0) -> Expr:
    if depth > 3 or rng.random() < 0.35:
        texts = ["a", 'q"uote', "back\\slash", "and", "not", "x y", "ünï", "", "null", "(", "50"]
        field = rng.choice(sorted(FIELDS))
        kind = FIELDS[field]
        if kind == "status":
            return Compare(field, rng.choice(["==", "!=", "in"]), rng.choice(list(JobStatus)))
        if kind == "int":
            op = rng.choice(["==", "!=", "<", "<=", ">", ">="])
            return Compare(field, op, rng.choice([0, -3, 50, 2.5]))
        if kind == "time":
            return Compare(field, rng.choice(["<", ">=", "=="]), T0 + timedelta(microseconds=7))
        if kind == "tags":
            return Compare(field, rng.choice(["contains", "matches"]), rng.choice(texts[:4]))
        op = rng.choice(["==", "!=", "<", "contains", "matches", "in"])
        if op == "in":
            return Compare(field, op, rng.sample(texts, 3))
        return Compare(field, op, "a.c" if op == "matches" else rng.choice(texts))
    node = rng.choice(["and", "or", "not"])
    if node == "not":
        return Not(_random_expr(rng, depth + 1))
    left, right = _random_expr(rng, depth + 1), _random_expr(rng, depth + 1)
    return And(left, right) if node == "and" else Or(left, right)


def test_random_expressions_round_trip_and_evaluate_the_same() -> None:
    rng = random.Random(20261123)
    jobs = [J, BARE, job(name='q"uote', tags=("and",), priority=-3, status=JobStatus.RUNNING)]
    for _ in range(400):
        expr = _random_expr(rng)
        back = parse(str(expr))
        assert back == expr, str(expr)
        for j in jobs:
            assert back.evaluate(j) is expr.evaluate(j)


def test_long_chains_do_not_hit_the_recursion_limit() -> None:
    """3,000 ids or-ed together (a filter built in a loop; 3x the default recursion
    limit) evaluates, prints, parses, compares and hashes: chains are walked iteratively."""
    n = 3_000
    ids = [f"j{i}" for i in range(n)]
    either = functools.reduce(operator.or_, [where.id == i for i in ids])
    both = functools.reduce(operator.and_, [where.priority < 100 + i for i in range(n)])
    assert either.evaluate(job(id="j2999")) and not either.evaluate(job(id="k"))
    assert both.evaluate(J) and not both.evaluate(job(priority=100))
    assert parse(str(either)) == either and hash(parse(str(either))) == hash(either)
    assert parse(str(both)) == both
    assert parse(" or ".join(f"id == {i}" for i in ids)).evaluate(job(id="j1500"))


def test_regrouping_a_chain_is_the_same_expression() -> None:
    a, b, c = where.id == "a", where.id == "b", where.id == "c"
    assert Or(a, Or(b, c)) == Or(Or(a, b), c)
    assert hash(And(a, And(b, c))) == hash(And(And(a, b), c))
    assert Or(a, And(b, c)) != Or(And(a, b), c)
    assert And(a, b) != Or(a, b)
    assert Or(a, b) != Or(b, a)  # order is kept: it decides what short-circuits
    assert str(Or(a, Or(b, c))) == 'id == "a" or id == "b" or id == "c"'
    assert str(And(Or(a, b), c)) == '(id == "a" or id == "b") and id == "c"'
    assert str(Or(And(a, b), c)) == 'id == "a" and id == "b" or id == "c"'
    assert str(Not(And(a, b))) == 'not (id == "a" and id == "b")'


@pytest.mark.parametrize("bad", [True, "status == failed", None, 1])
def test_nodes_take_only_expressions(bad: object) -> None:
    with pytest.raises(TypeError):
        And(where.id == "a", bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Or(bad, where.id == "a")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Not(bad)  # type: ignore[arg-type]
