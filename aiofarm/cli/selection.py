"""Choosing jobs on the command line: ids, ``--where EXPR`` and ``-l KEY=VALUE`` label
selectors (kubectl's ``-l``), for ``ls``, ``logs``, ``wait`` and the commands that
change jobs. Filters are parsed before any farm is opened, so a typo fails at once."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..client import Client
    from ..models import Job
    from ..where import Expr

__all__ = ["select_jobs", "selection_expr", "selection_options"]


def selection_expr(where_text: str | None, selectors: tuple[str, ...]) -> Expr | None:
    """``--where`` text and ``-l`` selectors as one filter (None: none given)."""
    from ..where import conjoin, parse, where

    parts: list[Expr] = []
    if where_text is not None:
        parts.append(parse(where_text))
    for item in selectors:
        for pair in item.split(","):
            key, sep, value = pair.partition("=")
            if not sep or not key.strip():
                raise click.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="-l/--selector")
            parts.append(where.labels[key.strip()] == value.strip())
    return conjoin(parts) if parts else None


def selection_options(fn: Any) -> Any:
    """``--where/-w EXPR`` and ``--selector/-l KEY=VALUE`` (keyword args ``where_text``
    and ``selectors``)."""
    fn = click.option(
        "--selector",
        "-l",
        "selectors",
        multiple=True,
        metavar="KEY=VALUE",
        help="Only jobs with these labels (repeatable or comma-separated).",
    )(fn)
    return click.option(
        "--where", "-w", "where_text", metavar="EXPR", help="Jobs matching EXPR, e.g. 'priority < 50'."
    )(fn)


async def select_jobs(farm: Client, ids: tuple[str, ...], expr: Expr | None) -> tuple[list[Job], list[Job]]:
    """The jobs named by id (an unknown id raises JobNotFound before anything else) and,
    apart, the other jobs ``expr`` matches."""
    named = await farm.jobs.get_many(list(dict.fromkeys(ids))) if ids else []
    matched: list[Job] = []
    if expr is not None:
        seen = {j.id for j in named}
        async with farm.jobs.list(where=expr) as found:
            matched = [j async for j in found if j.id not in seen]
    return named, matched
