"""The expression tree: :class:`Compare` leaves under :class:`And`, :class:`Or`, :class:`Not`.

Each node compiles itself once into a closure over the job, so evaluating a filter
over a long listing costs one call per node, not a walk of the tree per job.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from ..errors import InvalidSpec
from ..models import JobStatus
from .fields import Op, build_test, coerce

if TYPE_CHECKING:
    from ..models import Job

__all__ = ["MAX_DEPTH", "And", "Compare", "Expr", "Not", "Or"]

#: how deeply filters may nest (``not``/``~`` and a chain inside a chain of the other
#: kind): far past any hand-written filter, and well inside Python's recursion limit,
#: which text output, equality and evaluation all walk
MAX_DEPTH = 100


def _too_deep() -> InvalidSpec:
    return InvalidSpec("where", f"the filter nests deeper than {MAX_DEPTH} levels")


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

    @property
    def depth(self) -> int:
        """Nesting levels under this node (a Compare is 0; a run of ``|`` is one level)."""
        return getattr(self, "_depth", 0)

    def _nest(self, depth: int) -> None:
        """Record this node's depth, refusing one past :data:`MAX_DEPTH`."""
        if depth > MAX_DEPTH:
            raise _too_deep()
        object.__setattr__(self, "_depth", depth)

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
        value = coerce(self.field, self.op, self.value)
        object.__setattr__(self, "value", value)
        object.__setattr__(self, "_test", build_test(self.field, self.op, value))

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

    _depth: int = attrs.field(init=False, default=0, repr=False)

    def __attrs_post_init__(self) -> None:
        # a same-kind operand continues this run (flattened everywhere), another kind nests
        self._nest(max(e.depth if type(e) is type(self) else e.depth + 1 for e in (self.left, self.right)))

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

    _depth: int = attrs.field(init=False, default=0, eq=False, hash=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self._nest(self.operand.depth + 1)

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

