"""Deadline Cloud's REST-JSON protocol, driven entirely by botocore's own service model.

Routing, request parsing and validation, and response validation and serialisation are
all read off ``botocore/data/deadline/*/service-2.json``: nothing here is hand-written per
operation, so the fake cannot be more lenient than the model the real SDKs are built from.

Speed: the fake shares the machine with the client being benchmarked, and a BatchGetJob
answer alone is 100 job records of ~20 validated values each.  Interpreting botocore's
``Shape`` objects for every value (attribute and metadata lookups, path strings built
for values that are fine) made the fake's CPU time the bottleneck.  So each shape is
*compiled* once into a closure holding its constraints as local constants (see
``_Compiler``); a path is rendered only when a value is actually invalid (``_Bad``); and
responses are validated and turned into JSON in one walk instead of two.  The checks and
their messages are exactly those of a straightforward walk of the model.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

import botocore.session
from botocore.model import OperationModel, Shape

__all__ = ["Invalid", "ServiceProtocol", "iso"]

_UTC = dt.timezone.utc


class Invalid(Exception):
    """A value does not fit its shape; ``path`` is the dotted member path."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}" if path else reason)


def iso(t: dt.datetime) -> str:
    return t.astimezone(_UTC).isoformat().replace("+00:00", "Z")


# -- path-less failures ----------------------------------------------------------
# Steps a failure unwinds through, innermost first; rendered into the dotted path only
# when the failure surfaces as an ``Invalid``.
_MEMBER = 0  # structure member or map value: "path.key" ("key" at the top)
_INDEX = 1  # list item: "path[i]"
_MAP_KEY = 2  # map key: "path.<key>"


class _Bad(Exception):
    """An ``Invalid`` without its path yet.

    Validators do not take a path argument: formatting "jobs[37].createdAt" for every one
    of thousands of valid values was a large share of the fake's CPU time.  Instead each
    container a failure passes through appends its step, and the entry points
    (``check``, ``serialize``, ``parse_request``) render the path once.
    """

    def __init__(self, reason: str, *steps: tuple[int, Any]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.steps = list(steps)

    def invalid(self, path: str) -> Invalid:
        for kind, key in reversed(self.steps):
            if kind == _INDEX:
                path = f"{path}[{key}]"
            elif kind == _MAP_KEY:
                path = f"{path}.<key>"
            else:
                path = f"{path}.{key}" if path else key
        return Invalid(path, self.reason)


def _parse_time(value: Any) -> dt.datetime:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return dt.datetime.fromtimestamp(value, _UTC)
    if isinstance(value, str):
        try:
            t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise _Bad(f"not an ISO 8601 timestamp: {value!r}") from None
        return t if t.tzinfo else t.replace(tzinfo=_UTC)
    if isinstance(value, dt.datetime):
        return value
    raise _Bad(f"expected a timestamp, got {type(value).__name__}")


def _range_error(n: Any, lo: Any, hi: Any, what: str) -> _Bad | None:
    """The failure for a length/size/value ``n`` outside [lo, hi] (either may be None)."""
    if lo is not None and n < lo:
        return _Bad(f"{what} {n} is below the minimum {lo}")
    if hi is not None and n > hi:
        return _Bad(f"{what} {n} is above the maximum {hi}")
    return None


# -- compiled validators -----------------------------------------------------------
# A validator takes a value and returns it checked (timestamps parsed, ``None`` members
# of structures dropped, containers copied) or raises ``_Bad``.  An *encoder* does the
# same and also puts timestamps in their wire form, so a response is validated and
# made JSON-ready in a single walk.
Validator = Callable[[Any], Any]

# bound on each memo of values known to be valid (see _string, _encode_time); when one
# is full it starts over
_MEMO_LIMIT = 100_000


class _Compiler:
    """Turns shapes into validators, once per shape.

    The cache key is the shape's name plus its metadata (min, max, pattern, enum,
    required, union...): member references may in principle override a shape's
    constraints, and two such variants must not share a validator.
    """

    def __init__(self) -> None:
        self._cache: dict[tuple[bool, str, str], Validator] = {}

    def get(self, shape: Shape, encode: bool) -> Validator:
        key = (encode, shape.name, repr(shape.metadata))
        fn = self._cache.get(key)
        if fn is None:
            # recursive shapes meet themselves while being compiled: until the real
            # validator exists, they get a stub that forwards to it
            done: list[Validator] = []
            self._cache[key] = lambda value: done[0](value)
            try:
                fn = self._build(shape, encode)
            except BaseException:
                del self._cache[key]  # leave no stub that forwards to nothing
                raise
            done.append(fn)
            self._cache[key] = fn
        return fn

    def _build(self, shape: Shape, encode: bool) -> Validator:
        t = shape.type_name
        if t == "structure":
            return self._structure(shape, encode)
        if t == "list":
            return self._list(shape, encode)
        if t == "map":
            return self._map(shape, encode)
        if t == "string":
            return _string(shape)
        if t in ("integer", "long"):
            return _number(shape, int, "an integer")
        if t in ("float", "double"):
            return _number(shape, (int, float), "a number")
        if t == "boolean":
            return _boolean
        if t == "timestamp":
            return _encode_time if encode else _check_time
        if t == "blob":
            return _blob
        return _document

    def _structure(self, shape: Shape, encode: bool) -> Validator:
        name = shape.name
        members = {k: self.get(m, encode) for k, m in shape.members.items()}
        required = tuple(shape.required_members)
        union = bool(shape.is_tagged_union)

        def structure(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise _Bad(f"expected an object for {name}")
            out: dict[str, Any] = {}
            for key, v in value.items():
                fn = members.get(key)
                if fn is None:
                    raise _Bad(f"unknown member of {name}", (_MEMBER, key))
                if v is None:
                    continue
                try:
                    out[key] = fn(v)
                except _Bad as bad:
                    bad.steps.append((_MEMBER, key))
                    raise
            for req in required:
                if req not in out:
                    raise _Bad("required member missing", (_MEMBER, req))
            if union and len(out) != 1:
                raise _Bad(f"union {name} needs exactly one member, got {len(out)}")
            return out

        return structure

    def _list(self, shape: Shape, encode: bool) -> Validator:
        item = self.get(shape.member, encode)
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")

        def list_(value: Any) -> list[Any]:
            if not isinstance(value, list):
                raise _Bad("expected a list")
            if lo is not None or hi is not None:
                bad = _range_error(len(value), lo, hi, "length")
                if bad:
                    raise bad
            out: list[Any] = []
            for v in value:
                try:
                    out.append(item(v))
                except _Bad as bad:
                    bad.steps.append((_INDEX, len(out)))  # the items before it all passed
                    raise
            return out

        return list_

    def _map(self, shape: Shape, encode: bool) -> Validator:
        check_key = self.get(shape.key, encode=False)  # keys stay as they are
        check_value = self.get(shape.value, encode)
        lo, hi = shape.metadata.get("min"), shape.metadata.get("max")

        def map_(value: Any) -> dict[Any, Any]:
            if not isinstance(value, dict):
                raise _Bad("expected a map")
            if lo is not None or hi is not None:
                bad = _range_error(len(value), lo, hi, "size")
                if bad:
                    raise bad
            out: dict[Any, Any] = {}
            for k, v in value.items():  # each key is checked before its value
                try:
                    ck = check_key(k)
                except _Bad as bad:
                    bad.steps.append((_MAP_KEY, None))
                    raise
                try:
                    out[ck] = check_value(v)
                except _Bad as bad:
                    bad.steps.append((_MEMBER, k))
                    raise
            return out

        return map_


def _string(shape: Shape) -> Validator:
    meta = shape.metadata
    lo, hi = meta.get("min"), meta.get("max")
    enum = list(shape.enum)
    allowed = frozenset(enum)
    pattern = meta.get("pattern")
    search: Callable[[str], Any] | None = None
    if pattern is not None:
        # Smithy patterns are ECMA-262 and not implicitly anchored: search, not match
        try:
            search = re.compile(pattern).search
        except re.error:
            # a pattern Python cannot compile fails when a value meets it, as it
            # always did, rather than when the shape is compiled
            def search(value: str) -> Any:
                return re.compile(pattern).search(value)

    def full(value: str) -> str:
        # the checks, in order: length, enum, pattern
        bad = _range_error(len(value), lo, hi, "length")
        if bad:
            raise bad
        if enum and value not in allowed:
            raise _Bad(f"{value!r} is not one of {enum}")
        if search is not None and not search(value):
            raise _Bad(f"{value!r} does not match pattern {pattern}")
        return value

    # The outcome depends on the string alone, so strings that passed are remembered:
    # the fake hands out the same ids, names and statuses over and over.  Enum members
    # that fit the length and pattern are known good from the start.
    good: set[str] = set()
    for e in enum:
        with contextlib.suppress(_Bad):
            good.add(full(e))

    def constrained(value: Any) -> str:
        if type(value) is str and value in good:
            return value
        if not isinstance(value, str):
            raise _Bad(f"expected a string, got {type(value).__name__}")
        full(value)
        if type(value) is str:  # a subclass might compare equal yet check differently
            if len(good) >= _MEMO_LIMIT:
                good.clear()
            good.add(value)
        return value

    def unconstrained(value: Any) -> str:
        if not isinstance(value, str):
            raise _Bad(f"expected a string, got {type(value).__name__}")
        return value

    if enum or search is not None or lo is not None or hi is not None:
        return constrained
    return unconstrained


def _number(shape: Shape, types: type | tuple[type, ...], expected: str) -> Validator:
    lo, hi = shape.metadata.get("min"), shape.metadata.get("max")

    def number(value: Any) -> Any:
        # bool is an int to Python but not a number to the model
        if isinstance(value, bool) or not isinstance(value, types):
            raise _Bad(f"expected {expected}, got {type(value).__name__}")
        if lo is not None or hi is not None:
            bad = _range_error(value, lo, hi, "value")
            if bad:
                raise bad
        return value

    return number


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Bad("expected a boolean")
    return value


def _check_time(value: Any) -> dt.datetime:
    if type(value) is dt.datetime:  # the fake's own values: nothing to parse
        return value
    return _parse_time(value)


# isoformat() is the most expensive step of a response, and the fake sends the same
# job and task timestamps over and over: remember their wire form
_iso_memo: dict[dt.datetime, str] = {}


def _encode_time(value: Any) -> str:
    if type(value) is dt.datetime and value.tzinfo is _UTC:
        text = _iso_memo.get(value)
        if text is None:
            if len(_iso_memo) >= _MEMO_LIMIT:
                _iso_memo.clear()
            # iso() without its astimezone(), a no-op for a value already in UTC
            text = _iso_memo[value] = value.isoformat().replace("+00:00", "Z")
        return text
    return iso(_parse_time(value))


def _blob(value: Any) -> Any:
    if not isinstance(value, (str, bytes)):
        raise _Bad("expected a blob")
    return value


def _document(value: Any) -> Any:
    return value


# -- operations --------------------------------------------------------------------
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


class _Input:
    """Where each member of an operation's input comes from, read off the model once."""

    __slots__ = ("body_members", "members", "shape")

    def __init__(self, shape: Shape) -> None:
        self.shape = shape
        # (name, location, wire name, member shape) in the model's order, which is the
        # order members are checked in and so decides which of two errors is reported;
        # location is None for a body member
        self.members: list[tuple[str, str | None, str, Shape]] = []
        self.body_members: set[str] = set()
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            if loc not in ("uri", "querystring", "header"):
                loc = None
                self.body_members.add(name)
            self.members.append((name, loc, member.serialization.get("name", name), member))


class _Output:
    """An output structure's validator-encoder, split into (headers, JSON body).

    Body members are encoded (timestamps in wire form); header members are validated as
    values and sent as ``str()`` of them; a status-code member is validated and dropped.
    Required members and unions are checked over all of them together.
    """

    def __init__(self, shape: Shape, compiler: _Compiler) -> None:
        self.name = shape.name
        self.required = tuple(shape.required_members)
        self.union = bool(shape.is_tagged_union)
        # name -> (location, validator, wire name)
        self.members: dict[str, tuple[str | None, Validator, str]] = {}
        for name, member in shape.members.items():
            loc = member.serialization.get("location")
            if loc not in ("header", "statusCode"):
                loc = None
            self.members[name] = (
                loc,
                compiler.get(member, encode=loc is None),
                member.serialization.get("name", name),
            )

    def __call__(self, value: Any) -> tuple[dict[str, str], dict[str, Any]]:
        if not isinstance(value, dict):
            raise _Bad(f"expected an object for {self.name}")
        members = self.members
        headers: dict[str, str] = {}
        body: dict[str, Any] = {}
        others: set[str] = set()  # header and status-code members present
        for key, v in value.items():
            entry = members.get(key)
            if entry is None:
                raise _Bad(f"unknown member of {self.name}", (_MEMBER, key))
            if v is None:
                continue
            loc, fn, wire = entry
            try:
                v = fn(v)
            except _Bad as bad:
                bad.steps.append((_MEMBER, key))
                raise
            if loc is None:
                body[key] = v
            else:
                others.add(key)
                if loc == "header":
                    headers[wire] = str(v)
        for req in self.required:
            if req not in body and req not in others:
                raise _Bad("required member missing", (_MEMBER, req))
        if self.union and len(body) + len(others) != 1:
            n = len(body) + len(others)
            raise _Bad(f"union {self.name} needs exactly one member, got {n}")
        return headers, body


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
        self._compiler = _Compiler()
        # keyed by id(); the shape is kept alongside so that id cannot be reused
        self._inputs: dict[int, _Input] = {}
        self._outputs: dict[int, tuple[Shape, _Output]] = {}

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
        plan = self._inputs.get(id(shape))
        if plan is None or plan.shape is not shape:
            plan = self._inputs[id(shape)] = _Input(shape)
        raw: dict[str, Any] = {}
        payload: dict[str, Any] = {}
        if body:
            try:
                payload = json.loads(body)
            except ValueError as exc:
                raise Invalid("", f"body is not JSON: {exc}") from None
            if not isinstance(payload, dict):
                raise Invalid("", "body must be a JSON object")
        for name, loc, wire, member in plan.members:
            if loc is None:
                if name in payload:
                    raw[name] = payload[name]
            elif loc == "uri":
                if wire in labels:
                    raw[name] = self._from_text(member, labels[wire], name)
            elif loc == "querystring":
                if member.type_name == "list":
                    values = query.getall(wire, [])
                    if values:
                        raw[name] = [self._from_text(member.member, v, name) for v in values]
                elif wire in query:
                    raw[name] = self._from_text(member, query[wire], name)
            elif wire in headers:
                raw[name] = self._from_text(member, headers[wire], name)
        unknown = set(payload) - plan.body_members
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
            try:
                return _parse_time(text)
            except _Bad as bad:
                raise bad.invalid(path) from None
        return text

    # -- validation -------------------------------------------------------------
    def check(self, shape: Shape, value: Any, path: str) -> Any:
        """Validate ``value`` against ``shape``; return it with timestamps parsed."""
        try:
            return self._compiler.get(shape, encode=False)(value)
        except _Bad as bad:
            raise bad.invalid(path) from None

    # -- responses --------------------------------------------------------------
    def serialize(self, shape: Shape | None, value: dict[str, Any]) -> tuple[dict[str, str], bytes]:
        """Validate an output structure and turn it into (headers, body)."""
        if shape is None:
            return {}, b"{}"
        entry = self._outputs.get(id(shape))
        if entry is None or entry[0] is not shape:
            entry = self._outputs[id(shape)] = (shape, _Output(shape, self._compiler))
        try:
            headers, body = entry[1](value)
        except _Bad as bad:
            raise bad.invalid("") from None
        return headers, json.dumps(body, separators=(",", ":")).encode()
