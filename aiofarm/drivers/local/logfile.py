"""The local farm's log format: one record log per job, plus raw output files.

**Record log** ``logs/<seq>.log``: one ``\\n``-terminated record per line of output,
or per chunk of raw output. A *line record*::

    <unix time, 6 decimals> <kind><task index>[.<attempt>] <text>\\n
    1763922000.123456 o0.1 hello world

``kind`` is ``o`` (stdout), ``e`` (stderr) or ``x`` (a message from the farm itself,
stream name ``aiofarm``: timeouts, cancels, start failures, dropped lines). ``task
index`` is the task's number within the job (``tasks()`` maps it to the task id),
``attempt`` the run of the task that wrote it (1 = the first; records written before
attempts were recorded have none, and no ``attempt=`` filter matches them).
``text`` is the line exactly as the process wrote it, without its newline (decoded as
UTF-8 with replacement on read). A line longer than :data:`MAX_LINE` is split into
several records.

An *index record* stands for output that the farm moved in the kernel
(``os.splice``, no copy through Python) from a task's pipe to its **raw file**
``logs/<seq>.raw/<o|e><task index>.<attempt>`` (the program's bytes, unchanged)::

    <unix time> <O|E><task index>.<attempt> <start> <length>\\n
    1763922000.123456 O0.1 1048576 1048576

``O`` is stdout, ``E`` stderr; ``start``/``length`` a byte range of the raw file
(each range follows the previous one of the same file). Its lines are the *pieces*
of the raw file whose *terminator* lies inside the range: a terminator is a newline,
or a *cut* at a position ``c`` that is a multiple of :data:`CUT` with ``CUT`` bytes
before it holding no newline (so a piece is shorter than ``MAX_LINE``, and where a
long line is cut depends only on the bytes, the same for every reader). A piece
starts just after the previous terminator, which a reader finds by looking back from
``start`` (one byte when the range starts a line, at most ``2 * CUT`` bytes). A line
not yet ended belongs to a later range; the last piece of a stream, with no newline,
is written as a line record when the stream closes. Both kinds of record share a
log: the farm's own lines, terminals (tty), OpenJD tasks (whose output is scanned
for messages) and attached tasks write line records; a stream whose splice fails
(a full disk) goes on with line records, starting with the pieces not yet indexed.

Records are appended with one ``write`` each on an ``O_APPEND`` fd; a reader ignores
a trailing fragment without its ``\\n``, so a page never holds half a record; an
index record is appended only once its bytes are in the raw file.

**Tokens.** ``o<offset>``: the byte offset in the record log just after the last
record consumed; ``o<offset>.<raw>`` when a page ended inside an index record: the
record at ``offset``, from raw position ``raw`` (a piece start). A follower resumes
exactly where it stopped (no line lost, none repeated).

**Wire.** The service sends the client the record log as it is on disk, each index
record followed by its lines' bytes: ``<base> <size>\\n`` and ``size`` bytes of the
raw file from ``base`` (a piece start; whole pieces). A record whose lines do not
fit in one read comes in parts (``<base> <size> +\\n``: the index record again in the
next read, with the next lines). The client parses the lines (:func:`parse_wire`);
``read_page`` (the embedded farm) reads the same way.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from datetime import datetime

from ...errors import InvalidSpec
from ...models import LogLine
from .codec import to_dt

__all__ = [
    "CUT",
    "KIND_OF_STREAM",
    "MAX_LINE",
    "STREAM_OF_KIND",
    "decode_token",
    "encode_token",
    "format_records",
    "index_record",
    "parse_wire",
    "piece_start",
    "raw_dir",
    "raw_path",
    "read_page",
    "read_wire",
]

MAX_LINE = 64 * 1024
#: raw output is cut (a piece ends) at multiples of CUT preceded by CUT bytes without
#: a newline: pieces stay under MAX_LINE, and a reader looks back at most 2 * CUT bytes
CUT = MAX_LINE // 2
STREAM_OF_KIND = {ord("o"): "stdout", ord("e"): "stderr", ord("x"): "aiofarm"}
KIND_OF_STREAM = {"stdout": b"o", "stderr": b"e", "aiofarm": b"x"}
#: the kind of an index record's lines (by the index record's kind byte)
_LINE_KIND = {ord("O"): ord("o"), ord("E"): ord("e")}
_CHUNK = 1 << 20
_INDEX = re.compile(rb"^\d+\.\d+ ([OE])(\d+)\.(\d+) (\d+) (\d+)$", re.MULTILINE)


def encode_token(offset: int, raw: int | None = None) -> str:
    return f"o{offset}" if raw is None else f"o{offset}.{raw}"


def decode_token(token: str | None) -> tuple[int, int | None]:
    """The record-log offset of a token, and the raw position inside the index record
    there (None: from the record's start)."""
    if token is None:
        return 0, None
    offset, dot, raw = token[1:].partition(".")
    if not token.startswith("o") or not offset.isdigit() or (dot and not raw.isdigit()):
        raise InvalidSpec("next_token", f"not a token of the local driver: {token!r}")
    return int(offset), (int(raw) if dot else None)


# -- writing ---------------------------------------------------------------------


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


def index_record(kind: bytes, task_index: int, attempt: int, now: float, start: int, length: int) -> bytes:
    """The record of raw bytes ``[start, start + length)`` of a stream (``kind`` o/e)."""
    return b"%.6f %s%d.%d %d %d\n" % (now, kind.upper(), task_index, attempt, start, length)


def raw_dir(log_path: str) -> str:
    return os.path.splitext(log_path)[0] + ".raw"


def raw_path(log_path: str, kind: bytes, task_index: int, attempt: int) -> str:
    return os.path.join(raw_dir(log_path), f"{kind.lower().decode()}{task_index}.{attempt}")


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


# -- pieces of raw output ----------------------------------------------------------


def piece_start(fd: int, pos: int) -> int:
    """Where the piece holding raw position ``pos`` starts: just after the last
    terminator before ``pos`` (see the module docstring)."""
    if pos <= 0 or os.pread(fd, 1, pos - 1) == b"\n":
        return max(pos, 0)
    low = max(0, pos - 2 * CUT)
    nl = os.pread(fd, pos - low, low).rfind(b"\n")
    last_nl = low + nl if nl >= 0 else low - 1  # no newline: as if one were just before
    cut = (pos - 1) // CUT * CUT
    return cut if cut > 0 and cut - CUT > last_nl else last_nl + 1


def _cuts(buf: bytes, base: int) -> list[int]:
    """The cuts (positions in ``buf``, whose first byte is raw position ``base``, a
    piece start) that are not also newlines; ``len(buf)`` may be one."""
    out: list[int] = []
    if len(buf) < CUT:
        return out
    c = -(-(base + CUT) // CUT) * CUT - base  # the first multiple with CUT bytes of buf before it
    while c <= len(buf):
        if buf.find(b"\n", c - CUT, c) < 0 and (c == len(buf) or buf[c] != 10):
            out.append(c)
        c += CUT
    return out


def _pieces_end(buf: bytes, base: int, first: int) -> int:
    """The end of the last piece in ``buf`` (from a piece start at raw ``base``)
    whose terminator is at ``first`` or later (0: none): a newline's end, or a cut."""
    nl = buf.rfind(b"\n", first)
    end = nl + 1 if nl >= 0 else 0
    if len(buf) - end > CUT:
        # a long unfinished line: the last cut after its start may end a piece
        cut = (base + len(buf) - 1) // CUT * CUT - base
        if cut >= first and cut - CUT >= end:
            return cut
    return end


def split_pieces(buf: bytes, base: int) -> list[bytes]:
    """The pieces of ``buf``: whole pieces from a piece start at raw ``base``."""
    if not buf:
        return []
    cuts = _cuts(buf, base)
    if not cuts:
        return buf[:-1].split(b"\n")
    out: list[bytes] = []
    pos = 0
    for c in cuts:
        out += buf[pos:c].split(b"\n")  # whole lines, then the piece the cut ends
        pos = c
    if pos < len(buf):
        out += buf[pos:-1].split(b"\n")
    return out


def _after_pieces(buf: bytes, base: int, count: int) -> int:
    """The raw position just after the first ``count`` pieces of ``buf``."""
    cuts = set(_cuts(buf, base))
    pos = 0
    for _ in range(count):
        nl = buf.find(b"\n", pos)
        cut = min((c for c in cuts if c > pos), default=len(buf) + 1)
        pos = cut if nl < 0 or cut <= nl else nl + 1
    return base + pos


# -- reading -----------------------------------------------------------------------


def read_wire(path: str, offset: int, raw: int | None, size: int) -> tuple[bytes, int, int | None]:
    """The service's side of a read: the whole records of ``path`` from ``offset``
    (from raw position ``raw`` in the index record there), each index record followed
    by its lines' bytes; about ``size`` bytes in all, at least one record or line when
    there is one. An index record whose lines do not fit comes with the first of them
    and a ``+``; the rest follows in the next read. Returns the bytes and where the
    next read starts: the offset just after the last record in them, or the offset
    of the last (a ``+`` one) and the raw position of its next line."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return b"", offset, raw
    try:
        data = os.pread(fd, max(size, 2 * MAX_LINE), offset)  # a whole record at least
    finally:
        os.close(fd)
    data = data[: data.rfind(b"\n") + 1]
    if raw is None and b" O" not in data and b" E" not in data:  # no index record
        return data, offset + len(data), None
    out: list[bytes | memoryview] = []
    total = pos = 0
    raws: dict[bytes, int] = {}
    folder = raw_dir(path)
    try:
        for m in _INDEX.finditer(data):
            if raw is not None and m.start() != 0:
                raise InvalidSpec("next_token", "does not point into a record of raw output")
            if m.start() > pos:
                out.append(data[pos : m.start()])
                total += m.start() - pos
            if total >= size:
                return b"".join(out), offset + m.start(), None
            kind, task, attempt, start, length = m.groups()
            name = kind.lower() + task + b"." + attempt
            if name not in raws:
                try:
                    raws[name] = os.open(os.path.join(folder, os.fsdecode(name)), os.O_RDONLY | os.O_CLOEXEC)
                except OSError:
                    raws[name] = -1  # gone (deleted under us): its lines with it
            fd = raws[name]
            s, e = int(start), int(start) + int(length)
            record = data[m.start() : m.end() + 1]
            payload = memoryview(b"")
            base = s
            if fd >= 0:
                base = piece_start(fd, s) if raw is None else raw
                if not s - 2 * CUT <= base <= e:  # a piece that ends in the record starts here
                    raise InvalidSpec("next_token", "points outside its record of raw output")
                room = max(size - total - len(record), MAX_LINE)  # a piece always fits
                if e - base > room:
                    # the first lines only (read no more than they need)
                    buf = os.pread(fd, room, base)
                    part = _pieces_end(buf, base, max(s - base, 0))
                    if part:
                        out += (record, b"%d %d +\n" % (base, part), memoryview(buf)[:part])
                        return b"".join(out), offset + m.start(), base + part
                buf = os.pread(fd, e - base, base)
                payload = memoryview(buf)[: _pieces_end(buf, base, max(s - base, 0))]
            raw = None
            out += (record, b"%d %d\n" % (base, len(payload)), payload)
            total += len(record) + len(payload)
            pos = m.end() + 1
        if raw is not None and data:
            raise InvalidSpec("next_token", "does not point into a record of raw output")
    finally:
        for fd in raws.values():
            if fd >= 0:
                os.close(fd)
    out.append(data[pos:])
    return b"".join(out), offset + len(data), None


def parse_wire(
    data: bytes,
    *,
    limit: int,
    task_index: int | None,
    streams: frozenset[str],
    start: float | None,
    end: float | None,
    task_ids: Mapping[int, str] | Callable[[int], str | None],
    attempt: int | None = None,
) -> tuple[list[LogLine], int, int | None]:
    """The matching lines of the whole records in ``data`` (at most ``limit``; wire
    form, see :func:`read_wire`), how many bytes of the record log they cover, and the
    raw position to resume from when the limit (or the end of a ``+`` record) stopped
    inside an index record (the record at that offset)."""
    kinds = {k for k, name in STREAM_OF_KIND.items() if name in streams}
    lookup = task_ids.get if isinstance(task_ids, Mapping) else task_ids
    out: list[LogLine] = []
    pos = used = 0
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
        rec_start = pos
        if head and data.startswith(head, pos):
            text_at = pos + len(head)
        else:
            rec = data[pos:nl]
            sp1 = rec.find(b" ")
            sp2 = rec.find(b" ", sp1 + 1)
            if sp1 < 0 or sp2 < 0:
                used += nl + 1 - pos
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
            indexed = kind in _LINE_KIND
            if indexed:
                head = b""  # never a prefix of a line record
                if not _INDEX.fullmatch(rec):
                    used += nl + 1 - pos
                    pos = nl + 1
                    continue  # torn: the service sent no lines with it
                kind = _LINE_KIND[kind]
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
            if indexed:
                hl = data.find(b"\n", nl + 1)
                if hl < 0:
                    break
                base_s, size_s, more = (data[nl + 1 : hl] + b" ").split(b" ", 2)
                base, body = int(base_s), hl + 1 + int(size_s)
                if body > len(data):
                    break
                if wanted:
                    payload = data[hl + 1 : body]
                    texts = _texts(payload, base)
                    room = limit - len(out)
                    if len(texts) > room:
                        out += [LogLine(when, stream, text, task_id, None, run) for text in texts[:room]]
                        return out, used, _after_pieces(payload, base, room)
                    out += [LogLine(when, stream, text, task_id, None, run) for text in texts]
                if more.strip():
                    # the record's other lines come in the next read
                    return out, used, base + body - hl - 1
                used += nl + 1 - rec_start
                pos = body
                continue
        if wanted:
            out.append(LogLine(when, stream, data[text_at:nl].decode("utf-8", "replace"), task_id, attempt=run))
        used += nl + 1 - rec_start
        pos = nl + 1
    return out, used, None


def _texts(payload: bytes, base: int) -> list[str]:
    if not payload:
        return []
    if not _cuts(payload, base):
        # one decode and one split for the whole chunk (a newline never ends inside
        # an invalid UTF-8 sequence, so this equals a decode per line)
        return payload[:-1].decode("utf-8", "replace").split("\n")
    return [p.decode("utf-8", "replace") for p in split_pieces(payload, base)]


def read_page(
    path: str,
    token: str | None,
    *,
    limit: int,
    task_index: int | None,
    streams: frozenset[str],
    start: float | None,
    end: float | None,
    task_ids: Mapping[int, str] | Callable[[int], str | None],
    attempt: int | None = None,
) -> tuple[list[LogLine], str]:
    """Lines of ``path`` from ``token``: at most ``limit`` matching ones, and the
    token just after the last line looked at."""
    offset, raw = decode_token(token)
    out: list[LogLine] = []
    while len(out) < limit:
        data, _, _ = read_wire(path, offset, raw, _CHUNK)
        lines, used, raw = parse_wire(
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
        offset += used
        if not data:
            break  # the end of the file
    return out, encode_token(offset, raw)
