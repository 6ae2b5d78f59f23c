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

The package, by concern: :mod:`.fields` (the filterable fields, value coercion and
the per-comparison test), :mod:`.nodes` (the expression tree), :mod:`.parser` (text),
:mod:`.native` (splitting an expression for a driver's native filter), :mod:`.builder`
(the ``where`` object). Drivers may import :mod:`.fields`, :mod:`.nodes` and
:mod:`.native`: they are pure data and functions over the models.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .builder import Field as Field
from .builder import where
from .fields import FIELDS as FIELDS
from .fields import OPERATORS as OPERATORS
from .fields import UnknownField as UnknownField
from .nodes import And, Compare, Expr, Not, Or

if TYPE_CHECKING:
    # loaded on first use (see __getattr__): `import aiofarm` needs neither
    from .native import conjoin as conjoin
    from .native import conjuncts as conjuncts
    from .native import split_native as split_native
    from .parser import WhereSyntaxError
    from .parser import parse as parse

# The public names (re-exported by aiofarm/__init__.py). The helpers re-exported
# above with `as` (parse, split_native, conjuncts, conjoin, FIELDS, OPERATORS, Field,
# UnknownField) are importable from here and are not part of the user-facing API.
__all__ = [
    "And",
    "Compare",
    "Expr",
    "Not",
    "Or",
    "WhereSyntaxError",
    "where",
]

_FROM_PARSER = frozenset({"parse", "WhereSyntaxError"})
_FROM_NATIVE = frozenset({"conjoin", "conjuncts", "split_native"})


def __getattr__(name: str) -> Any:
    if name in _FROM_PARSER:
        from . import parser

        return getattr(parser, name)
    if name in _FROM_NATIVE:
        from . import native

        return getattr(native, name)
    # the module reads like the object (`aiofarm.where.status`), whichever one a
    # given import path hands out
    if name.startswith("_"):
        raise AttributeError(name)
    return Field(name)
