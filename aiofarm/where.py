"""Filter expressions over jobs: ``where.status == "failed"``, combined with ``&``, ``|``, ``~``.

An expression is a small immutable tree (the AST) of four node types:

- :class:`Compare` ``(field, op, value)`` — one test of one job field. ``op`` is one of
  ``==  !=  <  <=  >  >=  in  contains  matches``. ``value`` is already coerced to the
  field's type: a :class:`~aiofarm.models.JobStatus` for ``status``, an ``int`` (or
  ``float``) for ``priority``/``exit_code``, an aware UTC ``datetime`` for the ``*_at``
  fields, a ``str`` otherwise; a ``tuple`` of those for ``in``; the pattern ``str``
  for ``matches``; ``None`` only with ``==``/``!=`` on a nullable field.
- :class:`And` ``(left, right)``, :class:`Or` ``(left, right)``, :class:`Not` ``(operand)``.

Drivers walk these nodes to filter natively (see :func:`split_native`); the client always
re-evaluates the whole expression with :meth:`Expr.evaluate`, so native filtering only
ever has to be a superset of the true answer.

The same expressions parse from text (:func:`parse`) for the command line::

    status == failed and priority < 50
    name matches "^Cleanup \\d{5}" or (tags contains final and not pool == gpu)
    status in (failed, canceled)

Semantics and every decision are in docs/filters.md.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import date, datetime, timezone
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NoReturn, cast

import attrs

from .errors import InvalidSpec
from .models import JobStatus

if TYPE_CHECKING:
    from .models import Job

# The public names (re-exported by aiofarm/__init__.py). Driver helpers
# (split_native, conjuncts, conjoin, FIELDS, OPERATORS) are imported from this
# module by drivers and are not part of the user-facing API.
__all__ = [
    "And",
    "Compare",
    "Expr",
    "Not",
    "Or",
    "WhereSyntaxError",
    "where",
]

Op = Literal["==", "!=", "<", "<=", ">", ">=", "in", "contains", "matches"]
Kind = Literal["str", "status", "int", "time", "tags"]

OPERATORS: frozenset[str] = frozenset(
    {"==", "!=", "<", "<=", ">", ">=", "in", "contains", "matches"}
)

#: every field a filter can test, with its kind
FIELDS: Mapping[str, Kind] = MappingProxyType(
    {
        "id": "str",
        "name": "str",
        "status": "status",
        "owner": "str",
        "pool": "str",
        "tags": "tags",
        "description": "str",
        "priority": "int",
        "exit_code": "int",
        "created_at": "time",
        "started_at": "time",
        "finished_at": "time",
    }
)
# fields a Job may leave unset: `== None` / `!= None` make sense only on these
_NULLABLE = frozenset(
    {"name", "owner", "pool", "description", "exit_code", "created_at", "started_at", "finished_at"}
)
_KIND_OPS: Mapping[Kind, frozenset[str]] = MappingProxyType(
    {
        "str": OPERATORS,
        "status": frozenset({"==", "!=", "in"}),
        "int": frozenset({"==", "!=", "<", "<=", ">", ">=", "in"}),
        "time": frozenset({"==", "!=", "<", "<=", ">", ">=", "in"}),
        "tags": frozenset({"contains", "in", "matches"}),
    }
)
_HINT: Mapping[Kind, str] = MappingProxyType(
    {
        "tags": "; tags take contains, in (any of) or matches (any tag)",
        "status": "; status takes ==, != or in",
    }
)
_NONE_WORDS = frozenset({"none", "null"})


class UnknownField(InvalidSpec, AttributeError):
    """``where.<name>`` for a name that is not a filterable job field. Also an
    ``AttributeError``, so ``hasattr(where, "x")`` and tools that probe attributes
    keep working."""


class WhereSyntaxError(InvalidSpec):
    """Filter text that does not parse (or names a bad field or value). ``column`` is
    1-based; ``text`` is the whole input; the message ends with the text and a caret
    line under the column."""

    def __init__(self, field: str, message: str, text: str, column: int) -> None:
        self.message = message
        self.text = text
        self.column = column
        caret = " " * (column - 1) + "^"
        # one display column per character, so the caret lands under the culprit
        shown = "".join(" " if c.isspace() else c for c in text)
        super().__init__(field, f"{message} at column {column}\n    {shown}\n    {caret}")


# -- coercion ----------------------------------------------------------------------


def _bad(field: str, reason: str) -> InvalidSpec:
    return InvalidSpec(f"where.{field}", reason)


def _coerce_one(field: str, kind: Kind, value: object) -> Any:
    if kind == "status":
        if isinstance(value, JobStatus):
            return value
        if isinstance(value, str):
            try:
                return JobStatus(value.strip().lower())
            except ValueError:
                pass
        names = ", ".join(s.value for s in JobStatus)
        raise _bad(field, f"{value!r} is not a job status (one of {names})")
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise _bad(field, f"{value!r} is not a number")
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    value = float(value)
                except ValueError:
                    raise _bad(field, f"{value!r} is not a number") from None
        if isinstance(value, float) and value != value:  # NaN compares false with everything
            raise _bad(field, "NaN is not a usable number")
        return value
    if kind == "time":
        return _coerce_time(field, value)
    # str and tags both compare against strings
    if not isinstance(value, str):
        raise _bad(field, f"{value!r} is not a string")
    return str(value)


def _coerce_time(field: str, value: object) -> datetime:
    if isinstance(value, str):
        text = value.strip()
        if text[-1:] in ("Z", "z"):  # fromisoformat accepts "Z" only from 3.11
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            try:
                value = datetime.fromtimestamp(float(text), timezone.utc)
            except (ValueError, OverflowError, OSError):
                raise _bad(
                    field, f"{value!r} is not an ISO 8601 time or a Unix timestamp"
                ) from None
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            value = datetime.fromtimestamp(value, timezone.utc)
        except (ValueError, OverflowError, OSError):
            raise _bad(field, f"{value!r} is not a usable Unix timestamp") from None
    elif isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if not isinstance(value, datetime):
        raise _bad(field, f"{value!r} is not a datetime")
    # a naive time is local wall-clock time, as everywhere in Python (datetime.now())
    return value.astimezone(timezone.utc)


def _coerce(field: str, op: str, value: object) -> Any:
    kind = FIELDS.get(field)
    if kind is None:
        raise UnknownField(f"where.{field}", _unknown(field))
    if op not in OPERATORS:
        raise _bad(field, f"unknown operator {op!r} (one of {', '.join(sorted(OPERATORS))})")
    if op not in _KIND_OPS[kind]:
        raise _bad(field, f"operator {op} does not apply to {field}{_HINT.get(kind, '')}")
    if op == "in":
        if isinstance(value, str) or not isinstance(value, Iterable):
            value = (value,)
        return tuple(_coerce_one(field, kind, v) for v in cast("Iterable[object]", value))
    if value is None:
        if op in ("==", "!=") and field in _NULLABLE:
            return None
        if op in ("==", "!="):
            raise _bad(field, f"{field} is always set, so None (null) cannot match it")
        raise _bad(field, f"None (null) works only with == and !=, not {op}")
    if op == "matches":
        if not isinstance(value, str):
            raise _bad(field, f"{value!r} is not a regular expression string")
        try:
            re.compile(value)
        except re.error as e:
            raise _bad(field, f"bad regular expression {value!r}: {e}") from None
        return value
    if op == "contains" and kind == "str" and not isinstance(value, str):
        raise _bad(field, f"{value!r} is not a string")
    return _coerce_one(field, kind, value)


_ORDERING: Mapping[str, Callable[[Any, Any], Any]] = MappingProxyType(
    {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
)


def _build_test(field: str, op: str, value: Any) -> Callable[[Job], bool]:
    """The predicate for ``Compare(field, op, value)`` (value already coerced).

    Unset fields are SQL-like: only ``==``/``!=`` can match them."""
    kind = FIELDS[field]
    get: Callable[[Any], Any] = operator.attrgetter(field)
    if kind == "time":
        raw_get = get

        def get(job: Any) -> Any:
            t = raw_get(job)
            # models promise UTC; a naive time from a driver is read as UTC, not a crash
            return t.replace(tzinfo=timezone.utc) if t is not None and t.tzinfo is None else t

    if kind == "tags":
        if op == "contains":
            return lambda job: value in (get(job) or ())
        if op == "in":
            wanted = frozenset(value)
            return lambda job: not wanted.isdisjoint(get(job) or ())
        pattern = re.compile(value)
        return lambda job: any(pattern.search(t) is not None for t in get(job) or ())
    if op == "==":
        return lambda job: bool(get(job) == value)
    if op == "!=":
        return lambda job: bool(get(job) != value)
    if op == "in":
        members = frozenset(value)  # every coerced value is hashable
        return lambda job: (v := get(job)) is not None and v in members
    if op == "contains":
        return lambda job: (v := get(job)) is not None and value in v
    if op == "matches":
        pattern = re.compile(value)
        return lambda job: (v := get(job)) is not None and pattern.search(v) is not None
    compare = _ORDERING[op]

    def ordered(job: Any) -> bool:
        v = get(job)
        if v is None:
            return False
        try:
            return bool(compare(v, value))
        except TypeError:  # a driver put an odd type in the model: no match, not a crash
            return False

    return ordered


def _unknown(name: str) -> str:
    return f"unknown field {name!r} (one of {', '.join(FIELDS)})"


# -- the AST -------------------------------------------------------------------------


class Expr:
    """Base of every filter expression node. Combine with ``&``, ``|``, ``~``;
    ``and``/``or``/``not`` would silently call ``bool()``, which raises instead."""

    __slots__ = ()

    def evaluate(self, job: Job) -> bool:
        raise NotImplementedError

    def __call__(self, job: Job) -> bool:
        return self.evaluate(job)

    def __and__(self, other: Expr) -> Expr:
        if not isinstance(other, Expr):
            return NotImplemented
        return And(self, other)

    def __or__(self, other: Expr) -> Expr:
        if not isinstance(other, Expr):
            return NotImplemented
        return Or(self, other)

    def __invert__(self) -> Expr:
        return Not(self)

    def __bool__(self) -> bool:
        raise TypeError(
            "a filter expression has no truth value: combine with &, | and ~ "
            "(not and/or/not), and parenthesise comparisons: (a == 1) & (b < 2)"
        )

    def _text(self, parent: int) -> str:
        raise NotImplementedError

    def __str__(self) -> str:
        """Text that :func:`parse` reads back into an equal expression."""
        return self._text(0)


def _quote(value: object) -> str:
    if isinstance(value, datetime):
        value = value.isoformat()
    elif isinstance(value, JobStatus):
        return value.value
    elif value is None:
        return "null"
    elif isinstance(value, (int, float)):
        return repr(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


@attrs.frozen
class Compare(Expr):
    """``job.<field> <op> value``. Construction validates the field and operator and
    coerces ``value`` to the field's type (raising ``InvalidSpec`` naming
    ``where.<field>``), so a driver can trust what it reads here."""

    field: str
    op: Op
    value: Any = None
    # the test as a closure, built once: evaluate() runs per job, per listing
    _test: Callable[[Job], bool] = attrs.field(
        init=False, default=None, eq=False, hash=False, repr=False
    )

    def __attrs_post_init__(self) -> None:
        value = _coerce(self.field, self.op, self.value)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_test", _build_test(self.field, self.op, value))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle the data, not the closure; unpickling rebuilds the test
        return (Compare, (self.field, self.op, self.value))

    def _compiled(self) -> Callable[[Job], bool]:
        return self._test

    def evaluate(self, job: Job) -> bool:
        return self._test(job)

    def _text(self, parent: int) -> str:
        if self.op == "in":
            inner = ", ".join(_quote(v) for v in self.value)
            return f"{self.field} in ({inner})"
        return f"{self.field} {self.op} {_quote(self.value)}"


def _predicate(expr: Expr) -> Callable[[Job], bool]:
    if isinstance(expr, (Compare, _Chain, Not)):
        return expr._compiled()
    return expr.evaluate  # a node type from outside this module


def _operands(expr: _Chain) -> list[Expr]:
    """The operands of the maximal run of same-class nodes under ``expr``, left to
    right. Iterative, so a chain of 10,000 ``|`` never meets the recursion limit."""
    cls = type(expr)
    out: list[Expr] = []
    stack: list[Expr] = [expr]
    while stack:
        node = stack.pop()
        if type(node) is cls:
            assert isinstance(node, _Chain)
            stack.append(node.right)
            stack.append(node.left)
        else:
            out.append(node)
    return out


_expr_field = attrs.field(validator=attrs.validators.instance_of(Expr))


@attrs.frozen(eq=False)
class _Chain(Expr):
    """And / Or. Equality, hashing, text and evaluation walk a whole ``a | b | c ...``
    run at once (iteratively), and equality is by that run's operands, so
    ``(a | b) | c == a | (b | c)``: the same test, however it was grouped."""

    left: Expr = _expr_field
    right: Expr = _expr_field
    _test: Callable[[Job], bool] | None = attrs.field(init=False, default=None, repr=False)
    _word: ClassVar[str] = ""
    _level: ClassVar[int] = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.left, self.right))

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Chain)
        return self is other or _operands(self) == _operands(other)

    def __ne__(self, other: object) -> bool:
        equal = self.__eq__(other)
        return equal if equal is NotImplemented else not equal

    def __hash__(self) -> int:
        return hash((self._word, *_operands(self)))

    def _compiled(self) -> Callable[[Job], bool]:
        # built on first use, from the top of a chain only: building it as each node of
        # a long chain is made would cost quadratic time
        test = self._test
        if test is None:
            test = self._combine([_predicate(e) for e in _operands(self)])
            object.__setattr__(self, "_test", test)
        return test

    @staticmethod
    def _combine(tests: list[Callable[[Job], bool]]) -> Callable[[Job], bool]:
        raise NotImplementedError

    def evaluate(self, job: Job) -> bool:
        test = self._test
        return (test if test is not None else self._compiled())(job)

    def _text(self, parent: int) -> str:
        # operands bind tighter than this node (And inside Or, Not, Compare) except a
        # chain of the other kind nested at or above our level, which gets parentheses
        text = f" {self._word} ".join(e._text(self._level + 1) for e in _operands(self))
        return f"({text})" if parent > self._level else text


@attrs.frozen(eq=False)
class And(_Chain):
    """Both: ``left & right`` / ``left and right``."""

    _word: ClassVar[str] = "and"
    _level: ClassVar[int] = 2

    @staticmethod
    def _combine(tests: list[Callable[[Job], bool]]) -> Callable[[Job], bool]:
        if len(tests) == 2:
            first, second = tests
            return lambda job: first(job) and second(job)
        return lambda job: all(test(job) for test in tests)


@attrs.frozen(eq=False)
class Or(_Chain):
    """Either: ``left | right`` / ``left or right``."""

    _word: ClassVar[str] = "or"
    _level: ClassVar[int] = 1

    @staticmethod
    def _combine(tests: list[Callable[[Job], bool]]) -> Callable[[Job], bool]:
        if len(tests) == 2:
            first, second = tests
            return lambda job: first(job) or second(job)
        return lambda job: any(test(job) for test in tests)


@attrs.frozen
class Not(Expr):
    """Not: ``~operand`` / ``not operand``."""

    operand: Expr = _expr_field
    _test: Callable[[Job], bool] | None = attrs.field(
        init=False, default=None, eq=False, hash=False, repr=False
    )

    def __reduce__(self) -> tuple[Any, ...]:
        return (Not, (self.operand,))

    def _compiled(self) -> Callable[[Job], bool]:
        test = self._test
        if test is None:
            operand = _predicate(self.operand)

            def test(job: Job) -> bool:
                return not operand(job)

            object.__setattr__(self, "_test", test)
        return test

    def evaluate(self, job: Job) -> bool:
        test = self._test
        return (test if test is not None else self._compiled())(job)

    def _text(self, parent: int) -> str:
        return f"not {self.operand._text(3)}"


# -- the builder ------------------------------------------------------------------------


class Field:
    """``where.<name>``: comparison operators on it build :class:`Compare` nodes."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if name not in FIELDS:
            raise UnknownField(f"where.{name}", _unknown(name))
        self.name = name

    def __eq__(self, value: object) -> Compare:  # type: ignore[override]
        return Compare(self.name, "==", value)

    def __ne__(self, value: object) -> Compare:  # type: ignore[override]
        return Compare(self.name, "!=", value)

    def __lt__(self, value: object) -> Compare:
        return Compare(self.name, "<", value)

    def __le__(self, value: object) -> Compare:
        return Compare(self.name, "<=", value)

    def __gt__(self, value: object) -> Compare:
        return Compare(self.name, ">", value)

    def __ge__(self, value: object) -> Compare:
        return Compare(self.name, ">=", value)

    __hash__ = None  # type: ignore[assignment]

    def in_(self, values: Iterable[object]) -> Compare:
        return Compare(self.name, "in", values)

    def contains(self, value: str) -> Compare:
        """tags: the job has this tag; text fields: this substring occurs."""
        return Compare(self.name, "contains", value)

    def matches(self, pattern: str) -> Compare:
        """``re.search(pattern, value)``; for tags, any tag matches."""
        return Compare(self.name, "matches", pattern)

    def __repr__(self) -> str:
        return f"where.{self.name}"


_FieldType = Field


class _Where:
    """The public ``where`` object: ``where.<field>`` starts an expression,
    ``where.parse(text)`` reads one from text."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Field:
        if name.startswith("_"):
            raise AttributeError(name)
        return Field(name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *FIELDS})

    def __repr__(self) -> str:
        return "aiofarm.where"

    @staticmethod
    def parse(text: str) -> Expr:
        return parse(text)

    @staticmethod
    def split_native(
        expr: Expr | None, supported: Callable[[Compare], bool]
    ) -> tuple[list[Compare], Expr | None]:
        return split_native(expr, supported)

    # typed aliases so `where.status` etc. are Field to mypy, not Any from __getattr__
    if TYPE_CHECKING:
        id: _FieldType
        name: _FieldType
        status: _FieldType
        owner: _FieldType
        pool: _FieldType
        tags: _FieldType
        description: _FieldType
        priority: _FieldType
        exit_code: _FieldType
        created_at: _FieldType
        started_at: _FieldType
        finished_at: _FieldType


where = _Where()


def __getattr__(name: str) -> Field:
    # the module reads like the object (`aiofarm.where.status`), whichever one a
    # given import path hands out
    if name.startswith("_"):
        raise AttributeError(name)
    return Field(name)


# -- helpers for drivers ----------------------------------------------------------------


def conjuncts(expr: Expr) -> Iterator[Expr]:
    """The parts of a top-level ``a & b & c`` chain (just ``expr`` when it is no And)."""
    if isinstance(expr, And):
        yield from conjuncts(expr.left)
        yield from conjuncts(expr.right)
    else:
        yield expr


def conjoin(parts: Iterable[Expr]) -> Expr | None:
    """``a & b & ...`` of ``parts``; None when there are none (matches everything)."""
    result: Expr | None = None
    for part in parts:
        result = part if result is None else And(result, part)
    return result


def split_native(
    expr: Expr | None, supported: Callable[[Compare], bool]
) -> tuple[list[Compare], Expr | None]:
    """Split ``expr`` for a driver: the top-level conjuncts that are :class:`Compare`
    nodes ``supported`` accepts (filter those natively), and the rest re-joined with
    And (None when nothing is left). Since the parts are And-ed, filtering natively
    by any subset never drops a job that matches the whole."""
    if expr is None:
        return [], None
    native: list[Compare] = []
    rest: list[Expr] = []
    for part in conjuncts(expr):
        if isinstance(part, Compare) and supported(part):
            native.append(part)
        else:
            rest.append(part)
    return native, conjoin(rest)


# -- the text parser ---------------------------------------------------------------------

_KEYWORDS = frozenset({"and", "or", "not", "in", "contains", "matches"})
_SYMBOLS = ("==", "!=", "<=", ">=", "=", "<", ">", "&", "|", "~", "(", ")", ",")
_WORD_STOP = frozenset(" \t\r\n\f\v()\",'=!<>&|~")
_SYM_OP = {"==": "==", "=": "==", "!=": "!=", "<": "<", "<=": "<=", ">": ">", ">=": ">="}


@attrs.frozen
class _Token:
    kind: str  # "sym", "kw", "word", "str", "end"
    text: str  # the symbol, the lower-cased keyword, the word, or the unescaped string
    col: int  # 1-based


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        start = i
        if c in "\"'":
            quote, i, chars = c, i + 1, []
            while True:
                if i >= n:
                    raise WhereSyntaxError("where", "unterminated string", text, start + 1)
                ch = text[i]
                if ch == "\\" and i + 1 < n and text[i + 1] in (quote, "\\"):
                    # only \\ and \<quote> are escapes: a regex like "\d" stays as written
                    chars.append(text[i + 1])
                    i += 2
                elif ch == quote:
                    i += 1
                    break
                else:
                    chars.append(ch)
                    i += 1
            tokens.append(_Token("str", "".join(chars), start + 1))
            continue
        sym = next((s for s in _SYMBOLS if text.startswith(s, i)), None)
        if sym is not None:
            tokens.append(_Token("sym", sym, start + 1))
            i += len(sym)
            continue
        if c == "!":
            raise WhereSyntaxError("where", "unexpected '!' (use != or not)", text, start + 1)
        while i < n and text[i] not in _WORD_STOP:
            i += 1
        word = text[start:i]
        if word.lower() in _KEYWORDS:
            tokens.append(_Token("kw", word.lower(), start + 1))
        else:
            tokens.append(_Token("word", word, start + 1))
    tokens.append(_Token("end", "", n + 1))
    return tokens


def _describe(tok: _Token) -> str:
    if tok.kind == "end":
        return "end of text"
    if tok.kind == "str":
        return f'string "{tok.text}"'
    return repr(tok.text)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.pos]

    def error(self, message: str, tok: _Token | None = None, field: str = "where") -> NoReturn:
        raise WhereSyntaxError(field, message, self.text, (tok or self.tok).col)

    def take(self) -> _Token:
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def at(self, kind: str, *texts: str) -> bool:
        return self.tok.kind == kind and (not texts or self.tok.text in texts)

    def parse(self) -> Expr:
        if self.at("end"):
            self.error("empty filter: expected a comparison such as status == failed")
        expr = self.or_expr()
        if not self.at("end"):
            self.error(f"expected 'and', 'or' or the end, found {_describe(self.tok)}")
        return expr

    def or_expr(self) -> Expr:
        expr = self.and_expr()
        while self.at("kw", "or") or self.at("sym", "|"):
            self.take()
            expr = Or(expr, self.and_expr())
        return expr

    def and_expr(self) -> Expr:
        expr = self.not_expr()
        while self.at("kw", "and") or self.at("sym", "&"):
            self.take()
            expr = And(expr, self.not_expr())
        return expr

    def not_expr(self) -> Expr:
        if self.at("kw", "not") or self.at("sym", "~"):
            self.take()
            return Not(self.not_expr())
        return self.primary()

    def primary(self) -> Expr:
        if self.at("sym", "("):
            open_tok = self.take()
            expr = self.or_expr()
            if not self.at("sym", ")"):
                if self.at("end"):
                    self.error("unclosed parenthesis", open_tok)
                self.error(f"expected ), found {_describe(self.tok)}")
            self.take()
            return expr
        return self.comparison()

    def comparison(self) -> Expr:
        tok = self.tok
        if tok.kind != "word":
            self.error(f"expected a field name, found {_describe(tok)}")
        if tok.text not in FIELDS:
            self.error(_unknown(tok.text), tok, f"where.{tok.text}")
        field = self.take().text
        negate = False
        if self.at("kw", "not"):  # `x not in (...)`, `tags not contains y`
            self.take()
            negate = True
            if not self.at("kw", "in", "contains", "matches"):
                self.error(
                    f"expected in, contains or matches after not, found {_describe(self.tok)}"
                )
        op_tok = self.tok
        if op_tok.kind == "sym" and op_tok.text in _SYM_OP:
            op = cast("Op", _SYM_OP[op_tok.text])
        elif op_tok.kind == "kw" and op_tok.text in ("contains", "matches", "in"):
            op = cast("Op", op_tok.text)
        else:
            self.error(
                f"expected an operator (== != < <= > >= in contains matches) after {field}, "
                f"found {_describe(op_tok)}"
            )
        kind = FIELDS[field]
        if op not in _KIND_OPS[kind]:
            self.error(
                f"operator {op} does not apply to {field}{_HINT.get(kind, '')}",
                op_tok,
                f"where.{field}",
            )
        self.take()
        value_tok = self.tok
        value: object = self.value_list() if op == "in" else self.value()
        try:
            node: Expr = Compare(field, op, value)
        except InvalidSpec as e:
            self.error(e.reason, value_tok, e.field)
        return Not(node) if negate else node

    def value(self) -> str | None:
        if self.at("word"):
            word = self.take().text
            # bare null/none is "unset"; quote it ("null") to mean the text
            return None if word.lower() in _NONE_WORDS else word
        if self.at("str"):
            return self.take().text
        self.error(f"expected a value, found {_describe(self.tok)}")

    def value_list(self) -> tuple[str | None, ...]:
        if not self.at("sym", "("):
            return (self.value(),)
        open_tok = self.take()
        values: list[str | None] = []
        while not self.at("sym", ")"):
            if self.at("end"):
                self.error("unclosed parenthesis", open_tok)
            values.append(self.value())
            if self.at("sym", ","):
                self.take()
            elif self.at("end"):
                self.error("unclosed parenthesis", open_tok)
            elif not self.at("sym", ")"):
                self.error(f"expected , or ), found {_describe(self.tok)}")
        self.take()
        return tuple(values)


def parse(text: str) -> Expr:
    """Read a filter from text, e.g. ``status == failed and priority < 50``.

    Raises :class:`WhereSyntaxError` (an ``InvalidSpec``) pointing at the column.
    """
    if not isinstance(text, str):
        raise InvalidSpec("where", f"expected filter text, got {type(text).__name__}")
    return _Parser(text).parse()
