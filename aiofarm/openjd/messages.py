"""The lines an Open Job Description action prints to talk to its runtime.

``openjd_progress: 42.5``, ``openjd_status: rendering``, ``openjd_fail: no licence``,
and from an environment's onEnter ``openjd_env: NAME=VALUE``, ``openjd_unset_env: NAME``
and (REDACTED_ENV_VARS) ``openjd_redacted_env: NAME=VALUE``. A value may also be given
JSON-quoted, ``openjd_env: "NAME=a value"``, as the reference runtime (openjd-sessions)
decodes it with ``json.loads``.

Standard library only: the session runner (started by file path, no aiofarm importable)
imports this module from its own directory, and the local driver parses task output with
it, so one parser serves both.
"""

from __future__ import annotations

import json
import re
from typing import NamedTuple

__all__ = ["REDACTED", "Message", "parse", "parse_assignment"]

#: what a redacted value becomes in every log line after it is set
REDACTED = "********"

_LINE = re.compile(
    r"^openjd_(progress|status|fail|env|unset_env|redacted_env): (.*?)\r?$"
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NEAR = re.compile(r"^\s*openjd_(?:redacted_env|unset_env|env)\b", re.IGNORECASE)


class Message(NamedTuple):
    kind: str  # progress | status | fail | env | unset_env | redacted_env | malformed
    text: str  # the payload as printed (for env kinds: the variable's name)
    value: str | float | None = None  # progress (0-100), the env value, or why malformed


def parse_assignment(payload: str) -> tuple[str, str] | None:
    """``NAME=VALUE`` or its JSON-quoted form ``"NAME=VALUE"``; None when neither."""
    text = payload.lstrip()
    if text.startswith('"'):
        try:
            decoded = json.loads(text)
        except ValueError:
            return None
        if not isinstance(decoded, str):
            return None
        text = decoded
    name, sep, value = text.partition("=")
    if not sep or not _NAME.match(name):
        return None
    return name, value


def parse(line: str) -> Message | None:
    """The message a line of action output carries, or None for ordinary output.
    A line that looks like an env message but is not well formed is ``malformed``:
    the reference runtime fails the action for it, and so do we."""
    m = _LINE.match(line)
    if m is None:
        if _NEAR.match(line):
            return Message("malformed", line.strip(), "not of the form 'openjd_env: NAME=VALUE'")
        return None
    kind, payload = m.group(1), m.group(2)
    if kind == "progress":
        # a bad progress value is left in the log and ignored, as the reference does
        try:
            progress = float(payload)
        except ValueError:
            return None
        return Message("progress", payload, progress) if 0.0 <= progress <= 100.0 else None
    if kind in ("status", "fail"):
        return Message(kind, payload)
    if kind == "unset_env":
        name = payload.strip()
        if not _NAME.match(name):
            return Message("malformed", line.strip(), f"{name!r} is not a variable name")
        return Message("unset_env", name)
    assignment = parse_assignment(payload)
    if assignment is None:
        return Message("malformed", line.strip(), "expected NAME=VALUE or \"NAME=VALUE\"")
    return Message(kind, assignment[0], assignment[1])
