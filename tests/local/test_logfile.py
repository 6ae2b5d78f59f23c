"""The local log format: records written a chunk at a time and parsed back, with
every filter, a torn record and the limit."""

from __future__ import annotations

from aiofarm.drivers.local.logfile import format_records, parse_records

ALL = frozenset({"stdout", "stderr", "aiofarm"})
IDS = {0: "command/0", 1: "command/1"}


def parse(data: bytes, **kw: object) -> tuple[list[tuple[str, str, str | None, float]], int]:
    args: dict[str, object] = {"limit": 1000, "task_index": None, "streams": ALL, "start": None, "end": None}
    args.update(kw)
    lines, used = parse_records(data, task_ids=IDS, **args)  # type: ignore[arg-type]
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
