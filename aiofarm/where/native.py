"""Splitting an expression for a driver: what its back end filters natively, and the rest.

The client always re-evaluates the whole expression on what comes back, so native
filtering only ever has to return a superset of the true answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from .nodes import And, Compare, Expr

__all__ = ["conjoin", "conjuncts", "split_native"]


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

