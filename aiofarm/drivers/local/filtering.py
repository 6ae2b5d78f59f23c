"""Native listing on the local farm: a listing's ``where`` expression (every condition
of ``jobs.list``/``jobs.count`` as one expression) becomes a SQL condition over the
``jobs`` table, its sort an ``ORDER BY``, its count a ``count(*)``.

Exact: every field, every operator, ``&``, ``|`` and ``~`` at any depth, with the
client's semantics (an unset field matches only ``== None`` / ``!= value``; tags are a
JSON array; ``matches`` is Python's ``re.search`` through a registered function). The
table keeps times as float seconds and a Job's datetimes are those floats rounded to
microseconds (``datetime.fromtimestamp``: half to even), so SQL compares and sorts
times by that same integer count of microseconds (:func:`_micros`), never by the raw
float. A conjunct SQL cannot take (an integer beyond SQLite's 64 bits, a huge ``in``,
an expression too deep for SQLite's parser) is left to the client whole.

The expression travels to the farm service as JSON (:func:`expr_to_wire`).
"""

from __future__ import annotations

import functools
import math
import re
import sqlite3
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from ...models import JobStatus
from ...where.fields import FIELDS, label_key
from ...where.native import conjoin, conjuncts
from ...where.nodes import And, Compare, Expr, Not, Or
from ..base import ListPlan, ListQuery, SortKey

__all__ = [
    "REGEXP_FUNCTION",
    "expr_from_wire",
    "expr_to_wire",
    "order_by",
    "plan",
    "register_functions",
    "sort_from_wire",
    "sort_to_wire",
    "sql_where",
]

#: the SQL function ``matches`` becomes (Python's re.search, as the client evaluates it)
REGEXP_FUNCTION = "aiofarm_matches"
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
#: SQLite's integers: a value beyond them is left to the client
_INT_RANGE = (-(2**63), 2**63 - 1)
#: operands and nodes one translated conjunct may have (SQLite's parser allows an
#: expression 1000 deep; a chain of n ``or`` is n deep)
_MAX_NODES = 400
#: values of one ``in`` sent as parameters (more are left to the client)
_MAX_IN = 500


class _Untranslatable(Exception):
    pass


class _Builder:
    """SQL text and its parameters for one expression, counting nodes against the
    parser's limit."""

    def __init__(self) -> None:
        self.params: list[Any] = []
        self.nodes = 0

    def build(self, expr: Expr) -> str:
        """SQL that is true (1) exactly for the jobs ``expr`` matches, never NULL."""
        self.nodes += 1
        if self.nodes > _MAX_NODES:
            raise _Untranslatable
        if isinstance(expr, Compare):
            return self._compare(expr)
        if isinstance(expr, Not):
            return f"NOT ({self.build(expr.operand)})"
        if isinstance(expr, (And, Or)):
            word = " AND " if isinstance(expr, And) else " OR "
            return "(" + word.join(self.build(part) for part in _chain(expr)) + ")"
        raise _Untranslatable  # a node type from outside aiofarm.where

    def _param(self, value: Any) -> str:
        if isinstance(value, JobStatus):
            value = value.value
        elif isinstance(value, datetime):
            value = (value - _EPOCH) // _MICROSECOND
        if isinstance(value, bool):
            raise _Untranslatable
        if isinstance(value, int) and not _INT_RANGE[0] <= value <= _INT_RANGE[1]:
            raise _Untranslatable
        if isinstance(value, float) and not math.isfinite(value):
            raise _Untranslatable
        self.params.append(value)
        return "?"

    def _members(self, values: Sequence[Any]) -> str:
        """The placeholders of an ``in`` ("" for none: nothing matches)."""
        if len(values) > _MAX_IN:
            raise _Untranslatable
        return ",".join(self._param(v) for v in values)

    def _compare(self, cmp: Compare) -> str:
        field, op, value = cmp.field, cmp.op, cmp.value
        key = label_key(field)
        if key is not None:
            # a label is a key of the labels column's JSON object (NULL where absent);
            # the key's syntax (letters, digits, -_./) was checked when Compare was made
            kind: str = "label"
            col = f"json_extract(labels, '$.\"{key}\"')"
        else:
            kind = FIELDS[field]
            col = field  # the jobs table names its columns as the Job fields
        if kind == "tags":
            return self._tags(op, value)
        # what the Job's value is, in SQL: a time as its microseconds
        term = _micros(col) if kind == "time" else col
        if op == "==":
            return f"{col} IS NULL" if value is None else f"({col} IS NOT NULL AND {term} = {self._param(value)})"
        if op == "!=":
            return f"{col} IS NOT NULL" if value is None else f"({col} IS NULL OR {term} != {self._param(value)})"
        if op == "in":
            marks = self._members(value)
            return f"({col} IS NOT NULL AND {term} IN ({marks}))" if marks else "0"
        if op == "contains":
            return f"({col} IS NOT NULL AND instr({col}, {self._param(value)}) > 0)"
        if op == "matches":
            return f"({col} IS NOT NULL AND {REGEXP_FUNCTION}({self._param(value)}, {col}))"
        return f"({col} IS NOT NULL AND {term} {op} {self._param(value)})"

    def _tags(self, op: str, value: Any) -> str:
        each = "SELECT 1 FROM json_each(jobs.tags) WHERE "
        if op == "contains":
            return f"EXISTS ({each}value = {self._param(value)})"
        if op == "in":
            marks = self._members(value)
            return f"EXISTS ({each}value IN ({marks}))" if marks else "0"
        return f"EXISTS ({each}{REGEXP_FUNCTION}({self._param(value)}, value))"


def _micros(col: str) -> str:
    """The microseconds since the epoch of the datetime a stored time (float seconds,
    after 1970) reads back as: its whole seconds, plus its fraction times a million
    rounded half to even, as ``datetime.fromtimestamp`` rounds."""
    whole = f"CAST({col} AS INTEGER)"
    scaled = f"(({col} - {whole}) * 1000000.0)"
    floor = f"CAST({scaled} AS INTEGER)"
    rest = f"({scaled} - {floor})"
    return f"({whole} * 1000000 + {floor} + ({rest} > 0.5) + ({rest} = 0.5 AND {floor} % 2 = 1))"


def _chain(expr: And | Or) -> list[Expr]:
    """The operands of a run of the same operator, iteratively (chains may be long)."""
    out: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if type(node) is type(expr):
            assert isinstance(node, (And, Or))
            stack += [node.right, node.left]
        else:
            out.append(node)
    return out


def _translate(expr: Expr) -> tuple[str, list[Any]] | None:
    """(SQL, parameters) for ``expr``; None when SQL cannot take it."""
    builder = _Builder()
    try:
        sql = builder.build(expr)
    except _Untranslatable:
        return None
    return sql, builder.params


def plan(query: ListQuery) -> ListPlan:
    """The local farm's plan: every conjunct SQL can take is native, the client checks
    the rest. Sorted by SQL always, counted by SQL when nothing is left to the client."""
    if query.where is None:
        return ListPlan(native=None, remainder=None, sorted=True, countable=True)
    native: list[Expr] = []
    rest: list[Expr] = []
    for part in conjuncts(query.where):
        (native if _translate(part) is not None else rest).append(part)
    remainder = conjoin(rest)
    # with a remainder the client filters pages: SQL may still sort them, as the
    # client's filter keeps the order
    return ListPlan(native=conjoin(native), remainder=remainder, sorted=True, countable=remainder is None)


def sql_where(expr: Expr | None) -> tuple[str, list[Any]]:
    """The SQL condition for the native part of a plan (``"1"`` for None)."""
    if expr is None:
        return "1", []
    parts: list[str] = []
    params: list[Any] = []
    for part in conjuncts(expr):
        found = _translate(part)
        if found is None:
            continue  # not native after all (the client evaluates what plan left it)
        parts.append(found[0])
        params += found[1]
    return " AND ".join(parts) or "1", params


def order_by(keys: Sequence[SortKey], reverse: bool) -> str:
    """``ORDER BY`` for ``jobs.list(sort=...)`` as the client sorts (a stable sort by
    each key, unset values last either way), ties in the listing's own order."""
    terms: list[str] = []
    for key in keys:
        kind = FIELDS.get(key.field)
        if kind in (None, "tags"):
            raise ValueError(f"cannot sort by {key.field!r}")
        # times by what the Job shows (microseconds): equal ones keep the listing order
        term = _micros(key.field) if kind == "time" else key.field
        terms.append(f"{key.field} IS NULL")
        terms.append(f"{term} {'DESC' if key.descending != reverse else 'ASC'}")
    terms.append(f"seq {'DESC' if reverse else 'ASC'}")
    return "ORDER BY " + ", ".join(terms)


@functools.lru_cache(maxsize=256)
def _pattern(text: str) -> re.Pattern[str]:
    return re.compile(text)


def _matches(pattern: str, value: object) -> bool:
    return isinstance(value, str) and _pattern(pattern).search(value) is not None


def register_functions(db: sqlite3.Connection) -> None:
    """Give ``db`` the functions the translated conditions call."""
    db.create_function(REGEXP_FUNCTION, 2, _matches, deterministic=True)


# -- the wire to the farm service ------------------------------------------------------


def _value_to_wire(value: Any) -> Any:
    if isinstance(value, JobStatus):
        return value.value
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, tuple):
        return [_value_to_wire(v) for v in value]
    return value


def _value_from_wire(value: Any) -> Any:
    if isinstance(value, dict):
        return datetime.fromisoformat(value["t"])
    if isinstance(value, list):
        return tuple(_value_from_wire(v) for v in value)
    return value


def expr_to_wire(expr: Expr | None) -> Any:
    """``expr`` as JSON-able data: ``["cmp", field, op, value]``, ``["and", [...]]``,
    ``["or", [...]]``, ``["not", x]`` (chains flattened, so depth stays small)."""
    if expr is None:
        return None
    if isinstance(expr, Compare):
        return ["cmp", expr.field, expr.op, _value_to_wire(expr.value)]
    if isinstance(expr, Not):
        return ["not", expr_to_wire(expr.operand)]
    if isinstance(expr, (And, Or)):
        return ["and" if isinstance(expr, And) else "or", [expr_to_wire(e) for e in _chain(expr)]]
    raise TypeError(f"not a filter expression node: {type(expr).__name__}")


def expr_from_wire(data: Any) -> Expr | None:
    if data is None:
        return None
    kind = data[0]
    if kind == "cmp":
        return Compare(data[1], data[2], _value_from_wire(data[3]))
    if kind == "not":
        inner = expr_from_wire(data[1])
        assert inner is not None
        return Not(inner)
    parts = [expr_from_wire(d) for d in data[1]]
    out: Expr | None = None
    for part in parts:
        assert part is not None
        out = part if out is None else (And(out, part) if kind == "and" else Or(out, part))
    assert out is not None
    return out


def sort_to_wire(keys: Sequence[SortKey]) -> list[list[Any]]:
    return [[k.field, k.descending] for k in keys]


def sort_from_wire(data: Any) -> tuple[SortKey, ...]:
    return tuple(SortKey(str(f), bool(d)) for f, d in data or ())
