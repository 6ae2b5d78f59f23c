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
from datetime import datetime

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


def record_head(kind: bytes, task_index: int, now: float, attempt: int | None) -> bytes:
    if attempt is None:
        return b"%.6f %s%d " % (now, kind, task_index)
    return b"%.6f %s%d.%d " % (now, kind, task_index, attempt)


def format_records(
    kind: bytes, task_index: int, lines: list[bytes], now: float, attempt: int | None = None
) -> bytes:
    if not lines:
        return b""
    head = record_head(kind, task_index, now, attempt)
    # one join for a whole chunk of output: the farm's cost per line is a memcpy
    return head + (b"\n" + head).join(lines) + b"\n"


def split_records(
    kind: bytes, task_index: int, buf: bytes, now: float, attempt: int | None = None
) -> tuple[list[bytes | memoryview], bytes] | None:
    """The records of ``buf``'s whole lines (as buffers to write in one ``writev``) and
    the partial last line, in C loops over the bytes: no object per line, one copy.
    None when a line is too long for one record (the caller splits the lines itself)."""
    cut = buf.rfind(b"\n") + 1
    if not cut:
        return None if len(buf) >= MAX_LINE else ([], buf)
    # every line shorter than MAX_LINE: each MAX_LINE window after a line start holds
    # a newline (one backward scan per window, most of a window skipped at once)
    pos = 0
    while cut - pos > MAX_LINE:
        nl = buf.rfind(b"\n", pos, pos + MAX_LINE)
        if nl < 0:
            return None
        pos = nl + 1
    if len(buf) - cut >= MAX_LINE:
        return None
    head = record_head(kind, task_index, now, attempt)
    # every newline becomes newline + head; the head after the last one is left out
    body = buf.replace(b"\n", b"\n" + head)
    grown = len(body) - len(buf)
    return [head, memoryview(body)[: cut + grown - len(head)]], buf[cut:]


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
    # the records of one chunk of output share their head (time, kind, task): it is
    # parsed once, and each further record costs a prefix check
    head = b""
    wanted = False
    when: datetime | None = None
    stream = ""
    task_id: str | None = None
    run: int | None = None
    while len(out) < limit:
        nl = data.find(b"\n", pos)
        if nl < 0:
            break
        if head and data.startswith(head, pos):
            text_at = pos + len(head)
        else:
            rec = data[pos:nl]
            sp1 = rec.find(b" ")
            sp2 = rec.find(b" ", sp1 + 1)
            if sp1 < 0 or sp2 < 0:
                pos = nl + 1
                head = b""
                continue  # not a record (a torn write from a crashed farm): skip it
            head = rec[: sp2 + 1]
            text_at = pos + sp2 + 1
            kind = rec[sp1 + 1]
            where = rec[sp1 + 2 : sp2]
            dot = where.find(b".")
            try:
                if dot < 0:
                    idx, run = int(where), None
                else:
                    idx, run = int(where[:dot]), int(where[dot + 1 :])
                t = float(rec[:sp1])
            except ValueError:
                idx, run, t = -1, None, 0.0
                kind = -1
            wanted = (
                kind in kinds
                and (task_index is None or idx == task_index)
                and (attempt is None or run == attempt)
                and (start is None or t >= start)
                and (end is None or t <= end)
            )
            if wanted:
                when = to_dt(t)
                stream = STREAM_OF_KIND[kind]
                task_id = lookup(idx)
        if wanted:
            out.append(LogLine(when, stream, data[text_at:nl].decode("utf-8", "replace"), task_id, attempt=run))
        pos = nl + 1
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
