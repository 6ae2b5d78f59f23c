"""Deadline Cloud's REST-JSON protocol, driven entirely by botocore's own service model.

Routing, request parsing and validation, and response validation and serialisation are
all read off ``botocore/data/deadline/*/service-2.json``: nothing here is hand-written per
operation, so the fake cannot be more lenient than the model the real SDKs are built from.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.model import OperationModel, Shape

__all__ = ["Invalid", "ServiceProtocol", "iso"]


class Invalid(Exception):
    """A value does not fit its shape; ``path`` is the dotted member path."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


def iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_time(value: Any, path: str) -> dt.datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc)
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise Invalid(path, f"not an ISO 8601 timestamp: {value!r}") from None
        return t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)
    if isinstance(value, dt.datetime):
        return value
    raise Invalid(path, f"expected a timestamp, got {type(value).__name__}")


class _Route:
    __slots__ = ("labels", "op", "regex")

    def __init__(self, op: OperationModel) -> None:
        self.op = op
        uri = op.http["requestUri"].split("?")[0]
        self.labels: list[str] = []
        parts = []
        for piece in re.split(r"(\{[^}]+\})", uri):
            if piece.startswith("{"):
                name = piece[1:-1].rstrip("+")
                self.labels.append(name)
                parts.append(f"(?P<{name}>[^/]+)")
            else:
                parts.append(re.escape(piece))
        self.regex = re.compile("^" + "".join(parts) + "$")


class ServiceProtocol:
    def __init__(self, service: str = "deadline") -> None:
        session = botocore.session.get_session()
        self.model = session.get_service_model(service)
        self._routes: dict[str, list[_Route]] = {}
        for name in self.model.operation_names:
            op = self.model.operation_model(name)
            self._routes.setdefault(op.http["method"], []).append(_Route(op))
        # literal segments beat labels: sort so routes with fewer labels are tried first
        for routes in self._routes.values():
            routes.sort(key=lambda r: len(r.labels))
        self._patterns: dict[str, re.Pattern[str]] = {}

    def error_shape(self, code: str) -> Shape | None:
        for shape in self.model.error_shapes:
            if shape.name == code:
                return shape
        return None

    # -- requests ---------------------------------------------------------------
    def route(self, method: str, path: str) -> tuple[OperationModel, dict[str, str]] | None:
        for route in self._routes.get(method, ()):
            m = route.regex.match(path)
            if m:
                return route.op, {k: unquote(v) for k, v in m.groupdict().items()}
        return None

    def parse_request(
        self,
        op: OperationModel,
        labels: Mapping[str, str],
        query: Any,  # multidict: getall()
        headers: Mapping[str, str],
        body: bytes,
    ) -> dict[str, Any]:
        shape = op.input_shape
        if shape is None:
            return {}
        raw: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        if body:
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise Invalid("", f"body is not JSON: {exc}") from None
            if not isinstance(payload, dict):
                raise Invalid("", "body must be a JSON object")
        body_members = set()
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            wire = member.serialization.get("name", name)
            if loc == "uri":
                if wire in labels:
                    raw[name] = self._from_text(member, labels[wire], name)
            elif loc == "querystring":
                if member.type_name == "list":
                    values = query.getall(wire, [])
                    if values:
                        raw[name] = [self._from_text(member.member, v, name) for v in values]
                elif wire in query:
                    raw[name] = self._from_text(member, query[wire], name)
            elif loc == "header":
                if wire in headers:
                    raw[name] = self._from_text(member, headers[wire], name)
            else:
                body_members.add(name)
                if name in payload:
                    raw[name] = payload[name]
        unknown = set(payload) - body_members
        if unknown:
            raise Invalid(sorted(unknown)[0], "unknown member of " + shape.name)
        return self.check(shape, raw, "")

    @staticmethod
    def _from_text(shape: Shape, text: str, path: str) -> Any:
        t = shape.type_name
        if t in ("integer", "long"):
            try:
                return int(text)
            except ValueError:
                raise Invalid(path, f"not an integer: {text!r}") from None
        if t in ("float", "double"):
            try:
                return float(text)
            except ValueError:
                raise Invalid(path, f"not a number: {text!r}") from None
        if t == "boolean":
            if text not in ("true", "false"):
                raise Invalid(path, f"not a boolean: {text!r}")
            return text == "true"
        if t == "timestamp":
            return _parse_time(text, path)
        return text

    # -- validation -------------------------------------------------------------
    def check(self, shape: Shape, value: Any, path: str) -> Any:
        """Validate ``value`` against ``shape``; return it with timestamps parsed."""
        t = shape.type_name
        meta = shape.metadata
        if t == "structure":
            if not isinstance(value, dict):
                raise Invalid(path, f"expected an object for {shape.name}")
            out: dict[str, Any] = {}
            members = shape.members
            for key, v in value.items():
                if key not in members:
                    raise Invalid(_join(path, key), f"unknown member of {shape.name}")
                if v is None:
                    continue
                out[key] = self.check(members[key], v, _join(path, key))
            for req in shape.required_members:
                if req not in out:
                    raise Invalid(_join(path, req), "required member missing")
            if shape.is_tagged_union and len(out) != 1:
                raise Invalid(path, f"union {shape.name} needs exactly one member, got {len(out)}")
            return out
        if t == "list":
            if not isinstance(value, list):
                raise Invalid(path, "expected a list")
            self._range(len(value), meta, path, "length")
            return [self.check(shape.member, v, f"{path}[{i}]") for i, v in enumerate(value)]
        if t == "map":
            if not isinstance(value, dict):
                raise Invalid(path, "expected a map")
            self._range(len(value), meta, path, "size")
            return {
                self.check(shape.key, k, f"{path}.<key>"): self.check(
                    shape.value, v, _join(path, k)
                )
                for k, v in value.items()
            }
        if t == "string":
            if not isinstance(value, str):
                raise Invalid(path, f"expected a string, got {type(value).__name__}")
            self._range(len(value), meta, path, "length")
            if shape.enum and value not in shape.enum:
                raise Invalid(path, f"{value!r} is not one of {list(shape.enum)}")
            pattern = meta.get("pattern")
            if pattern is not None:
                rx = self._patterns.get(pattern)
                if rx is None:
                    # Smithy patterns are ECMA-262 and not implicitly anchored
                    rx = self._patterns[pattern] = re.compile(pattern)
                if not rx.search(value):
                    raise Invalid(path, f"{value!r} does not match pattern {pattern}")
            return value
        if t in ("integer", "long"):
            if isinstance(value, bool) or not isinstance(value, int):
                raise Invalid(path, f"expected an integer, got {type(value).__name__}")
            self._range(value, meta, path, "value")
            return value
        if t in ("float", "double"):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise Invalid(path, f"expected a number, got {type(value).__name__}")
            self._range(value, meta, path, "value")
            return value
        if t == "boolean":
            if not isinstance(value, bool):
                raise Invalid(path, "expected a boolean")
            return value
        if t == "timestamp":
            return _parse_time(value, path)
        if t == "blob":
            if not isinstance(value, (str, bytes)):
                raise Invalid(path, "expected a blob")
            return value
        return value  # document

    @staticmethod
    def _range(n: float, meta: Mapping[str, Any], path: str, what: str) -> None:
        lo, hi = meta.get("min"), meta.get("max")
        if lo is not None and n < lo:
            raise Invalid(path, f"{what} {n} is below the minimum {lo}")
        if hi is not None and n > hi:
            raise Invalid(path, f"{what} {n} is above the maximum {hi}")

    # -- responses --------------------------------------------------------------
    def serialize(self, shape: Shape | None, value: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        """Validate an output structure and turn it into (headers, body)."""
        if shape is None:
            return {}, b"{}"
        checked = self.check(shape, value, "")
        headers: dict[str, str] = {}
        body: dict[str, Any] = {}
        for name, v in checked.items():
            member = shape.members[name]
            loc = member.serialization.get("location")
            if loc == "header":
                headers[member.serialization.get("name", name)] = str(v)
            elif loc in ("statusCode",):
                continue
            else:
                body[name] = self._to_json(member, v)
        return headers, json.dumps(body, separators=(",", ":")).encode()

    def _to_json(self, shape: Shape, value: Any) -> Any:
        t = shape.type_name
        if t == "structure":
            return {k: self._to_json(shape.members[k], v) for k, v in value.items()}
        if t == "list":
            return [self._to_json(shape.member, v) for v in value]
        if t == "map":
            return {k: self._to_json(shape.value, v) for k, v in value.items()}
        if t == "timestamp":
            return iso(value)
        return value


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key
