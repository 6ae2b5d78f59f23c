"""The local farm's log format: one file per job, one record per output line.

Record (bytes, ``\\n``-terminated)::

    <unix time, 6 decimals> <kind><task index>[.<attempt>] <text>\\n
    1763922000.123456 o0.1 hello world

``kind`` is ``o`` (stdout), ``e`` (stderr) or ``x`` (a message from the farm itself,
stream name ``aiofarm``: timeouts, cancels, start failures). ``task index`` is the
task's number within the job (``tasks()`` maps it to the task id), ``attempt`` the
run of the task that wrote it (1 = the first; records written before attempts were
recorded have none, and no ``attempt=`` filter matches them). ``text`` is the
line exactly as the process wrote it, without its newline (decoded as UTF-8 with
replacement on read). A line longer than :data:`MAX_LINE` is split into several
records. Records are appended with one ``write`` each on an ``O_APPEND`` fd, and a
reader ignores a trailing fragment without its ``\\n``, so a page never holds half a
record.

A read token is the byte offset just after the last record consumed, so a
follower resumes exactly where it stopped (no line lost, none repeated).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from ...errors import InvalidSpec
from ...models import LogLine
from .codec import to_dt

__all__ = [
    "KIND_OF_STREAM",
    "MAX_LINE",
    "STREAM_OF_KIND",
    "decode_token",
    "encode_token",
    "parse_records",
    "read_page",
    "read_raw",
]

MAX_LINE = 64 * 1024
STREAM_OF_KIND = {ord("o"): "stdout", ord("e"): "stderr", ord("x"): "aiofarm"}
KIND_OF_STREAM = {"stdout": b"o", "stderr": b"e", "aiofarm": b"x"}
_CHUNK = 1 << 20


def encode_token(offset: int) -> str:
    return f"o{offset}"


def decode_token(token: str | None) -> int:
    if token is None:
        return 0
    if not token.startswith("o") or not token[1:].isdigit():
        raise InvalidSpec("next_token", f"not a token of the local driver: {token!r}")
    return int(token[1:])


def format_records(
    kind: bytes, task_index: int, lines: list[bytes], now: float, attempt: int | None = None
) -> bytes:
    if attempt is None:
        head = b"%.6f %s%d " % (now, kind, task_index)
    else:
        head = b"%.6f %s%d.%d " % (now, kind, task_index, attempt)
    return b"".join(head + line + b"\n" for line in lines)


def parse_records(
    data: bytes,
    *,
    limit: int,
    task_index: int | None,
    streams: frozenset[str],
    start: float | None,
    end: float | None,
    task_ids: Mapping[int, str] | Callable[[int], str | None],
    attempt: int | None = None,
) -> tuple[list[LogLine], int]:
    """The matching lines of the whole records in ``data`` (at most ``limit``), and how
    many bytes of ``data`` were looked at (a trailing partial record is not)."""
    kinds = {k for k, name in STREAM_OF_KIND.items() if name in streams}
    lookup = task_ids.get if isinstance(task_ids, Mapping) else task_ids
    out: list[LogLine] = []
    pos = 0
    while len(out) < limit:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        rec = data[pos:nl]
        pos = nl + 1
        sp1 = rec.find(b" ")
        sp2 = rec.find(b" ", sp1 + 1)
        if sp1 < 0 or sp2 < 0:
            continue  # not a record (a torn write from a crashed farm): skip it
        kind = rec[sp1 + 1]
        if kind not in kinds:
            continue
        where = rec[sp1 + 2 : sp2]
        dot = where.find(b".")
        try:
            if dot < 0:
                idx, run = int(where), None
            else:
                idx, run = int(where[:dot]), int(where[dot + 1 :])
            t = float(rec[:sp1])
        except ValueError:
            continue
        if task_index is not None and idx != task_index:
            continue
        if attempt is not None and run != attempt:
            continue
        if start is not None and t < start:
            continue
        if end is not None and t > end:
            continue
        out.append(
            LogLine(
                time=to_dt(t),
                stream=STREAM_OF_KIND[kind],
                text=rec[sp2 + 1 :].decode("utf-8", "replace"),
                task_id=lookup(idx),
                attempt=run,
            )
        )
    return out, pos


def read_raw(path: str, offset: int, size: int) -> bytes:
    """Whole records of ``path`` from byte ``offset``, at most ``size`` bytes (b"" when
    nothing complete is there yet)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b""
    try:
        data = os.pread(fd, size, offset)
    finally:
        os.close(fd)
    return data[: data.rfind(b"\n") + 1]


def read_page(
    path: str,
    offset: int,
    *,
    limit: int,
    task_index: int | None,
    streams: frozenset[str],
    start: float | None,
    end: float | None,
    task_ids: Mapping[int, str] | Callable[[int], str | None],
    attempt: int | None = None,
) -> tuple[list[LogLine], int]:
    """Lines of ``path`` from byte ``offset``: at most ``limit`` matching ones, and the
    offset just after the last record looked at."""
    out: list[LogLine] = []
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return out, offset
    try:
        pos = offset
        while len(out) < limit:
            data = os.pread(fd, _CHUNK, pos)
            lines, used = parse_records(
                data,
                limit=limit - len(out),
                task_index=task_index,
                streams=streams,
                start=start,
                end=end,
                task_ids=task_ids,
                attempt=attempt,
            )
            out.extend(lines)
            pos += used
            # a short read is the end of the file; no whole record in a full chunk
            # cannot happen (records are at most MAX_LINE) but must not loop
            if len(data) < _CHUNK or used == 0:
                break
        return out, pos
    finally:
        os.close(fd)
