"""``-o table|wide|json|yaml|name`` for every read command, and JSON lines for streams.

Tables are plain text drawn here (no rich: ``ls`` must start fast): columns padded to
their widest cell, a header in bold and the status in its colour when colour is on.
On a terminal long cells are cut to fit a column's limit; off a terminal (a pipe, a
file) nothing is ever cut, so ``grep`` sees whole ids and names.

``json`` prints one JSON document (an array for lists, one item a line; an indented
object for one item);
``yaml`` the same as YAML; ``name`` the ids, one a line (``aiofarm wait $(aiofarm ls
-o name -s active)``). Streams (``logs -o json``, ``wait -o json``) print JSON lines,
each an object with a ``type`` field.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import click

from .common import stdout_color

__all__ = [
    "FORMATS",
    "Column",
    "emit",
    "emit_line",
    "output_option",
    "print_table",
]

T = TypeVar("T")
FORMATS = ("table", "wide", "json", "yaml", "name")


def output_option(fn: Any) -> Any:
    """``-o/--output FORMAT`` with ``--json`` kept as a short alias of ``-o json``."""
    fn = click.option(
        "--json", "as_json", is_flag=True, hidden=True, help="Same as -o json."
    )(fn)
    return click.option(
        "--output",
        "-o",
        "fmt",
        type=click.Choice(FORMATS),
        default="table",
        show_default=True,
        help="table, wide (more columns), json, yaml, or name (ids only).",
    )(fn)


class Column(Generic[T]):
    """A table column: its header, the cell text of an item, its colour, whether only
    ``-o wide`` shows it, and the most characters a terminal gives it."""

    def __init__(
        self,
        header: str,
        text: Callable[[T], str],
        *,
        style: Callable[[T], str | None] | None = None,
        wide: bool = False,
        max_width: int | None = None,
        right: bool = False,
    ) -> None:
        self.header = header
        self.text = text
        self.style = style
        self.wide = wide
        self.max_width = max_width
        self.right = right


def _cut(text: str, width: int | None) -> str:
    text = text.replace("\n", " ")
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def print_table(items: Sequence[T], columns: Sequence[Column[T]], *, wide: bool, empty: str) -> None:
    """``items`` as an aligned plain-text table on stdout (``empty`` on stderr if none)."""
    if not items:
        click.secho(empty, err=True, dim=True, color=stdout_color())
        return
    cols = [c for c in columns if wide or not c.wide]
    tty = sys.stdout.isatty()
    cells = [[_cut(c.text(item), c.max_width if tty else None) for c in cols] for item in items]
    widths = [max(len(c.header), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    colour = stdout_color()
    out: list[str] = []

    def line(row: Sequence[str], styles: Sequence[str | None], bold: bool) -> str:
        parts = []
        last = len(row) - 1
        for i, (cell, width) in enumerate(zip(row, widths, strict=True)):
            pad = width - len(cell)
            if i == last and not cols[i].right:
                pad = 0  # no trailing blanks
            text = " " * pad + cell if cols[i].right else cell + " " * pad
            if colour and (bold or styles[i]):
                text = click.style(text, bold=bold, fg=styles[i])
            parts.append(text)
        return "  ".join(parts) + "\n"

    out.append(line([c.header for c in cols], [None] * len(cols), True))
    for item, row in zip(items, cells, strict=True):
        styles = [c.style(item) if c.style is not None and colour else None for c in cols]
        out.append(line(row, styles, False))
    sys.stdout.write("".join(out))
    sys.stdout.flush()


def _yaml(data: Any) -> str:
    import yaml  # type: ignore[import-untyped]  # only -o yaml pays for the import

    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
    return str(yaml.dump(data, Dumper=dumper, sort_keys=False, allow_unicode=True))


def _json(data: Any) -> str:
    """An object indented; a list one item a line: json's C encoder works only without
    ``indent`` (10,000 jobs: 20 ms instead of a second), and a line per item is what
    ``grep`` wants."""
    if not isinstance(data, list):
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if not data:
        return "[]\n"
    encode = json.JSONEncoder(ensure_ascii=False).encode
    return "[\n" + ",\n".join(f"  {encode(item)}" for item in data) + "\n]\n"


def emit(
    items: Sequence[T],
    fmt: str,
    *,
    columns: Sequence[Column[T]],
    to_dict: Callable[[T], Mapping[str, Any]],
    name: Callable[[T], str],
    empty: str,
    single: bool = False,
) -> None:
    """Print ``items`` in format ``fmt``; ``single``: one item, printed as an object."""
    if fmt == "name":
        sys.stdout.write("".join(f"{name(i)}\n" for i in items))
    elif fmt in ("json", "yaml"):
        data: Any = [to_dict(i) for i in items]
        if single:
            data = data[0]
        if fmt == "json":
            sys.stdout.write(_json(data))
        else:
            sys.stdout.write(_yaml(data))
    else:
        print_table(items, columns, wide=fmt == "wide", empty=empty)
        return
    sys.stdout.flush()


def emit_line(kind: str, **fields: Any) -> None:
    """One JSON line of a stream: ``{"type": kind, ...fields}``."""
    sys.stdout.write(json.dumps({"type": kind, **fields}, ensure_ascii=False) + "\n")
