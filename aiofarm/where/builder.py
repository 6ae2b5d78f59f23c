"""The ``where`` object users start expressions from: ``where.status == "failed"``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from .fields import FIELDS, LABELS, UnknownField, kind_of, unknown_field
from .nodes import Compare, Expr

__all__ = ["Field", "Labels", "where"]


class Field:
    """``where.<name>``: comparison operators on it build :class:`Compare` nodes."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        if kind_of(name) is None:
            raise UnknownField(f"where.{name}", unknown_field(name))
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


class Labels:
    """``where.labels``: ``where.labels["team"] == "fx"`` tests one label (a job
    without it has None there: ``where.labels["team"] != None`` says it has one)."""

    __slots__ = ()

    def __getitem__(self, key: str) -> Field:
        if not isinstance(key, str):
            raise UnknownField("where.labels", f"a label key is a string, got {type(key).__name__}")
        return Field(LABELS + key)

    def __repr__(self) -> str:
        return "where.labels"


class _Where:
    """The public ``where`` object: ``where.<field>`` starts an expression,
    ``where.parse(text)`` reads one from text."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Field:
        if name.startswith("_"):
            raise AttributeError(name)
        if name == "labels":
            return Labels()  # type: ignore[return-value]
        return Field(name)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *FIELDS, "labels"})

    def __repr__(self) -> str:
        return "aiofarm.where"

    @staticmethod
    def parse(text: str) -> Expr:
        from .parser import parse

        return parse(text)

    @staticmethod
    def split_native(
        expr: Expr | None, supported: Callable[[Compare], bool]
    ) -> tuple[list[Compare], Expr | None]:
        from .native import split_native

        return split_native(expr, supported)

    # typed aliases so `where.status` etc. are Field to mypy, not Any from __getattr__
    if TYPE_CHECKING:
        id: _FieldType
        name: _FieldType
        status: _FieldType
        owner: _FieldType
        pool: _FieldType
        tags: _FieldType
        labels: Labels
        description: _FieldType
        priority: _FieldType
        exit_code: _FieldType
        created_at: _FieldType
        started_at: _FieldType
        finished_at: _FieldType


where = _Where()

