"""Decoding the corpus's tagged JSON values into the Python values a user would pass."""

from __future__ import annotations

import builtins
import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import aiofarm
from aiofarm import JobSpec, Resources, where

CORPUS = Path(__file__).parent / "corpus"


def load_cases() -> Iterator[dict[str, Any]]:
    for path in sorted(CORPUS.glob("*.jsonl")):
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                case = json.loads(line)
                case["id"] = f"{path.stem}:{n} {case['name']}"
                yield case


def _deep_not(n: int) -> Any:
    expr: Any = where.status == "failed"
    for _ in range(n):
        expr = ~expr
    return expr


def _nest_and_not(n: int) -> Any:
    expr: Any = where.status == "failed"
    for _ in range(n):
        expr = (where.priority > 1) & ~expr
    return expr


def decode(value: Any) -> Any:
    """Build the value. Runs inside the guarded call: building a JobSpec or a filter
    is itself a public entry point and must fail with a typed error too."""
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$big" in value:
        text, n = value["$big"]
        out = text * n + value.get("$then", "")
        wrap = value.get("$wrap")
        return wrap.replace("{}", out) if wrap else out
    if "$map" in value:
        return {decode(k): decode(v) for k, v in value["$map"]}
    if "$float" in value:
        return float(value["$float"])
    if "$bytes" in value:
        return value["$bytes"].encode()
    if "$bytes_latin1" in value:
        return value["$bytes_latin1"].encode("latin-1")
    if "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    if "$naive" in value:
        return datetime.fromisoformat(value["$naive"])
    if "$concat" in value:
        return "".join(decode(v) for v in value["$concat"])
    if "$spec" in value:
        return JobSpec(**decode(value["$spec"]))
    if "$resources" in value:
        return Resources(**decode(value["$resources"]))
    if "$parse_in_call" in value:
        return aiofarm.where.parse(decode(value["$parse_in_call"]))
    if "$invert" in value:
        return _deep_not(value["$invert"])
    if "$nest_and_not" in value:
        return _nest_and_not(value["$nest_and_not"])
    if "$compare" in value:
        field, op, operand = value["$compare"]
        from aiofarm.where.nodes import Compare

        return Compare(field, op, decode(operand))
    if "$callable" in value:
        return getattr(builtins, value["$callable"])
    return {k: decode(v) for k, v in value.items()}
