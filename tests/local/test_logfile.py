"""The local log format: records written a chunk at a time and parsed back, with
every filter, a torn record and the limit; raw output behind index records read back
as the program's lines on every path (pages, tokens inside records, a follow resumed
at every record, filters), long lines cut the same way everywhere; old logs."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import pytest

from aiofarm.drivers.local.logfile import (
    CUT,
    MAX_LINE,
    format_records,
    index_record,
    parse_wire,
    raw_dir,
    raw_path,
    read_page,
    read_wire,
)
from aiofarm.errors import InvalidSpec

ALL = frozenset({"stdout", "stderr", "aiofarm"})
IDS = {0: "command/0", 1: "command/1"}


def parse(data: bytes, **kw: object) -> tuple[list[tuple[str, str, str | None, float]], int]:
    args: dict[str, object] = {"limit": 1000, "task_index": None, "streams": ALL, "start": None, "end": None}
    args.update(kw)
    lines, used, _ = parse_wire(data, task_ids=IDS, **args)  # type: ignore[arg-type]
    assert all(ln.time is not None for ln in lines)
    return [(ln.stream, ln.text, ln.task_id, ln.time.timestamp()) for ln in lines if ln.time], used


def test_records_round_trip_through_every_filter() -> None:
    data = (
        format_records(b"o", 0, [b"a1", b"", b"a 3 x"], 100.5)
        + format_records(b"e", 0, [b"e1"], 100.5)
        + format_records(b"o", 1, [b"b1", b"b2"], 101.25)
        + b"torn\n"
        + format_records(b"x", 1, ["farm é".encode()], 102.0)
        + format_records(b"o", 0, [b"\xff bad utf-8"], 103.0)
        + b"1.0 o0 no newline yet"
    )
    lines, used = parse(data)
    assert [(s, t, task) for s, t, task, _ in lines] == [
        ("stdout", "a1", "command/0"),
        ("stdout", "", "command/0"),
        ("stdout", "a 3 x", "command/0"),
        ("stderr", "e1", "command/0"),
        ("stdout", "b1", "command/1"),
        ("stdout", "b2", "command/1"),
        ("aiofarm", "farm é", "command/1"),
        ("stdout", "\ufffd bad utf-8", "command/0"),
    ]
    assert [when for *_, when in lines][:4] == [100.5] * 4
    assert used == data.rindex(b"\n") + 1  # the partial last record waits
    assert [t for _, t, _, _ in parse(data, task_index=1)[0]] == ["b1", "b2", "farm é"]
    assert [t for _, t, _, _ in parse(data, streams=frozenset({"stderr"}))[0]] == ["e1"]
    assert [t for _, t, _, _ in parse(data, start=101.0, end=102.5)[0]] == ["b1", "b2", "farm é"]
    # the limit stops right after the last line it returns: the rest comes next
    first, used = parse(data, limit=2)
    rest, _ = parse(data[used:])
    assert [t for _, t, _, _ in first + rest] == [t for _, t, _, _ in lines]
    assert format_records(b"o", 0, [], 1.0) == b""


# -- raw output: index records over raw files -------------------------------------

KIND_NAME = {b"o": "stdout", b"e": "stderr"}


def reference_pieces(data: bytes) -> tuple[list[tuple[int, bytes]], bytes]:
    """The format's rule written the slow way: every terminator (a newline, or a cut at
    a multiple of CUT with CUT bytes before it holding no newline) with the piece it
    ends, and what is left after the last one."""
    newlines = {i for i, b in enumerate(data) if b == 10}
    cuts = {c for c in range(CUT, len(data), CUT) if 10 not in data[c - CUT : c]}
    out, start = [], 0
    for t in sorted(newlines | cuts):
        out.append((t, data[start:t]))
        start = t + 1 if t in newlines else t
    return out, data[start:]


class Simulated:
    """A job log written as the farm writes it: raw chunks appended to raw files with
    an index record each, a stream's unfinished last piece as a line record at its
    end; ``expected[i]`` are the lines record ``i`` yields."""

    def __init__(self, folder: Path) -> None:
        self.path = str(folder / "1.log")
        os.makedirs(raw_dir(self.path), exist_ok=True)
        self.data: dict[tuple[bytes, int, int], bytes] = {}
        self.expected: list[list[tuple[str, str, int, int, float]]] = []
        self.offsets: list[int] = []
        self.now = 1000.0

    def append(self, record: bytes, lines: list[tuple[str, str, int, int, float]]) -> None:
        self.offsets.append(os.path.getsize(self.path) if os.path.exists(self.path) else 0)
        with open(self.path, "ab") as f:
            f.write(record)
        self.expected.append(lines)

    def write(self, kind: bytes, task: int, attempt: int, chunk: bytes) -> None:
        self.now += 0.5
        key = (kind, task, attempt)
        old = self.data.get(key, b"")
        data = self.data[key] = old + chunk
        with open(raw_path(self.path, kind, task, attempt), "ab") as f:
            f.write(chunk)
        pieces, _ = reference_pieces(data)
        lines = [
            (KIND_NAME[kind], p.decode("utf-8", "replace"), task, attempt, self.now)
            for t, p in pieces
            if len(old) <= t < len(data)
        ]
        self.append(index_record(kind, task, attempt, self.now, len(old), len(chunk)), lines)

    def close(self) -> None:
        for (kind, task, attempt), data in self.data.items():
            _, rest = reference_pieces(data)
            if rest:
                self.now += 0.5
                line = (KIND_NAME[kind], rest.decode("utf-8", "replace"), task, attempt, self.now)
                self.append(format_records(kind, task, [rest], self.now, attempt), [line])

    def lines(self, since: int = 0) -> list[tuple[str, str, int, int, float]]:
        return [line for lines in self.expected[since:] for line in lines]


def program(rng: random.Random, size: int) -> bytes:
    """Output with short, empty, long and cut-length lines, newlines on cut positions,
    multibyte characters across cuts and bad UTF-8."""
    out = bytearray()
    while len(out) < size:
        pick = rng.random()
        if pick < 0.9:
            out += b"line %d %s\n" % (len(out), b"y" * rng.randrange(0, 120))
        elif pick < 0.95:
            out += b"\n"
        elif pick < 0.97:
            out += "é".encode() * rng.randrange(CUT // 2, 2 * CUT) + b"\n"
        elif pick < 0.99:
            # a newline exactly on the next multiple of CUT, or one byte either side
            pad = -len(out) % CUT + rng.choice((CUT, 2 * CUT)) + rng.choice((-1, 0, 1))
            out += b"z" * pad + b"\n"
        else:
            out += b"\xff\xfeq" * rng.randrange(1, CUT)
    return bytes(out)


def simulate(tmp_path: Path, seed: int) -> Simulated:
    rng = random.Random(seed)
    log = Simulated(tmp_path)
    streams = {
        (b"o", 0, 1): program(rng, 600_000),
        (b"e", 0, 1): program(rng, 200_000),
        (b"o", 1, 1): program(rng, 150_000),
        (b"o", 0, 2): program(rng, 100_000) + b"no newline at the end",
    }
    pos = dict.fromkeys(streams, 0)
    while any(pos[k] < len(v) for k, v in streams.items()):
        key = rng.choice([k for k in streams if pos[k] < len(streams[k])])
        size = rng.choice((1, 2, 99, 4096, CUT - 1, CUT, CUT + 1, rng.randrange(1, 300_000)))
        chunk = streams[key][pos[key] : pos[key] + size]
        pos[key] += len(chunk)
        log.write(*key, chunk)
    if seed % 2:
        log.append(format_records(b"x", 0, [b"a farm line"], log.now + 1, 1), [("aiofarm", "a farm line", 0, 1, log.now + 1)])
    log.close()
    return log


def read_all(path: str, token: str | None = None, limit: int = 10_000, **kw: Any) -> tuple[list[Any], list[str]]:
    args: dict[str, Any] = {"task_index": None, "streams": ALL, "start": None, "end": None, "attempt": None}
    args.update(kw)
    out: list[Any] = []
    tokens: list[str] = []
    while True:
        lines, token = read_page(path, token, limit=limit, task_ids=IDS, **args)
        tokens.append(token)
        if not lines:
            return out, tokens
        assert len(lines) <= limit
        out += [(ln.stream, ln.text, int(ln.task_id[-1]), ln.attempt, ln.time.timestamp()) for ln in lines if ln.time and ln.task_id]


def follow_all(path: str, size: int) -> list[Any]:
    offset, raw, out = 0, None, []
    while True:
        data, next_offset, next_raw = read_wire(path, offset, raw, size)
        if not data:
            return out
        lines, used, resume = parse_wire(
            data, limit=len(data), task_index=None, streams=ALL, start=None, end=None, task_ids=IDS
        )
        assert (offset + used, resume) == (next_offset, next_raw)
        offset, raw = next_offset, next_raw
        out += [(ln.stream, ln.text, int(ln.task_id[-1]), ln.attempt, ln.time.timestamp()) for ln in lines if ln.time and ln.task_id]


@pytest.mark.parametrize("seed", range(4))
def test_raw_output_reads_back_as_the_programs_lines_on_every_path(tmp_path: Path, seed: int) -> None:
    log = simulate(tmp_path, seed)
    every = log.lines()
    assert sum(len(x) for x in log.expected) > 100 and any(len(t) >= CUT for _, t, *_ in every)
    # the lines are the program's bytes: pieces joined again give each stream back
    for key, data in log.data.items():
        mine = [t for s, t, task, run, _ in every if (s, task, run) == (KIND_NAME[key[0]], key[1], key[2])]
        assert mine == [p.decode("utf-8", "replace") for _, p in reference_pieces(data)[0]] + (
            [reference_pieces(data)[1].decode("utf-8", "replace")] if reference_pieces(data)[1] else []
        )
        assert all(len(t.encode()) < MAX_LINE for t in mine if "\ufffd" not in t)
    # one read, and pages of every size resumed by token (inside index records too)
    assert read_all(log.path)[0] == every
    for limit in (1, 7, 1000):
        lines, tokens = read_all(log.path, limit=limit)
        assert lines == every
        assert any("." in t for t in tokens) or limit == 1000
    # a follow (the wire) dropped and resumed at every record boundary
    for i, offset in enumerate(log.offsets):
        assert read_all(log.path, f"o{offset}")[0] == log.lines(i)
    # and in frames of every size (a record's lines split over several): the client's
    # token after each frame is where the service goes on
    for size in (1, 4096, 100_000):
        assert follow_all(log.path, size) == every
    # filters: stream, task, attempt, time
    assert read_all(log.path, streams=frozenset({"stderr"}))[0] == [x for x in every if x[0] == "stderr"]
    assert read_all(log.path, task_index=1)[0] == [x for x in every if x[2] == 1]
    assert read_all(log.path, attempt=2)[0] == [x for x in every if x[3] == 2]
    mid = every[len(every) // 2][4]
    assert read_all(log.path, start=mid)[0] == [x for x in every if x[4] >= mid]
    assert read_all(log.path, end=mid, limit=3)[0] == [x for x in every if x[4] <= mid]


def test_a_token_outside_raw_output_is_refused(tmp_path: Path) -> None:
    log = simulate(tmp_path, 0)
    with pytest.raises(InvalidSpec):
        read_all(log.path, f"o{log.offsets[1]}.{10 ** 9}")
    with pytest.raises(InvalidSpec):  # before the record's first piece
        read_all(log.path, f"o{log.offsets[-3]}.0")
    with pytest.raises(InvalidSpec):  # a line record has no raw position
        read_all(log.path, f"o{log.offsets[-1]}.0")
    with pytest.raises(InvalidSpec):
        read_all(log.path, "o1.x")


def test_old_logs_of_line_records_still_read(tmp_path: Path) -> None:
    path = tmp_path / "1.log"
    path.write_bytes(
        format_records(b"o", 0, [b"old %d" % i for i in range(50)], 10.0)
        + format_records(b"e", 0, [b"err"], 11.0)
        + format_records(b"o", 1, [b"new"], 12.0, 1)
    )
    every = [("stdout", f"old {i}", 0, None, 10.0) for i in range(50)] + [("stderr", "err", 0, None, 11.0), ("stdout", "new", 1, 1, 12.0)]
    for limit in (1, 9, 1000):
        lines, tokens = read_all(str(path), limit=limit)
        assert lines == every and all("." not in t for t in tokens)
    assert read_all(str(path), attempt=1)[0] == every[-1:]
