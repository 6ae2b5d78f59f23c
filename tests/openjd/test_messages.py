"""The action message parser shared by the session runner and the drivers."""

from __future__ import annotations

import json

import pytest

from aiofarm.openjd.messages import Message, parse


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("openjd_env: PATH=/x:/y", Message("env", "PATH", "/x:/y")),
        ("openjd_env: A=b=c d", Message("env", "A", "b=c d")),
        ("openjd_env: EMPTY=", Message("env", "EMPTY", "")),
        # the JSON-quoted form decodes escapes, and keeps "=" and spaces in the value
        ('openjd_env: "PATH=/x:/y"', Message("env", "PATH", "/x:/y")),
        ("openjd_env: " + json.dumps("MSG=tab\there \"q\""), Message("env", "MSG", 'tab\there "q"')),
        ("openjd_unset_env: OLD_VAR", Message("unset_env", "OLD_VAR")),
        ("openjd_redacted_env: KEY=abc", Message("redacted_env", "KEY", "abc")),
        ("openjd_progress: 42.5", Message("progress", "42.5", 42.5)),
        ("openjd_progress: 100", Message("progress", "100", 100.0)),
        ("openjd_status: rendering tiles", Message("status", "rendering tiles")),
        ("openjd_fail: no licence\r", Message("fail", "no licence")),
    ],
)
def test_messages(line: str, expected: Message) -> None:
    assert parse(line) == expected


@pytest.mark.parametrize(
    "line",
    ["hello", "frame openjd_progress: 5", "openjd_progress: 101", "openjd_progress: lots", "openjd_other: x"],
)
def test_ordinary_output(line: str) -> None:
    assert parse(line) is None


@pytest.mark.parametrize(
    "line",
    ['openjd_env: "PATH=/x', "openjd_env: 1BAD=x", "openjd_env: novalue", "OPENJD_ENV: A=1", "openjd_unset_env: a b"],
)
def test_malformed_env_messages_are_flagged(line: str) -> None:
    msg = parse(line)
    assert msg is not None and msg.kind == "malformed" and msg.value
