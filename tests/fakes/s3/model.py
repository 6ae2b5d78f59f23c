"""botocore's own S3 model (rest-xml) as the fake S3's contract.

A request is routed to an operation by its method, whether it names a key, and the
query markers and required query members of the operation's ``requestUri``; its members
are read from the URI, query, headers and XML payload by the input shape, and checked
(required members present, integers and enums well formed, no query parameter or
``x-amz-`` header the operation does not define). A response is written FROM a
mapping of output member names by the output shape: a name the shape lacks is a bug of
the server, refused before anything is sent.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from email.utils import format_datetime
from typing import Any
from xml.etree import ElementTree as ET

__all__ = ["Invalid", "ServerBug", "model", "operation", "read_request", "write_response"]

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
#: the operations the fake serves
OPERATIONS = (
    "CreateBucket", "HeadBucket", "GetBucketLocation", "ListObjectsV2", "ListMultipartUploads",
    "HeadObject", "GetObject", "PutObject", "DeleteObject", "CreateMultipartUpload",
    "UploadPart", "CompleteMultipartUpload", "AbortMultipartUpload", "ListParts",
)  # fmt: skip
#: headers every signed request may carry, whatever the operation
_TRANSPORT_HEADERS = {
    "x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "x-amz-user-agent",
    "x-amz-decoded-content-length", "x-amz-trailer", "x-amz-sdk-checksum-algorithm",
    "x-amz-checksum-crc32", "x-amz-checksum-crc32c", "x-amz-checksum-crc64nvme",
    "x-amz-checksum-sha1", "x-amz-checksum-sha256", "x-amz-checksum-type",
}  # fmt: skip


class Invalid(Exception):
    """A request the model does not allow (400 InvalidRequest)."""


class ServerBug(Exception):
    """A response the model does not allow: never sent."""


@functools.cache
def model() -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model("s3")


@functools.cache
def _routes() -> list[tuple[str, bool, dict[str, str | None], frozenset[str], str]]:
    """(method, names a key, query markers, required query members, operation)."""
    out = []
    for name in OPERATIONS:
        op = model().operation_model(name)
        uri = op.http["requestUri"]
        path, _, marks = uri.partition("?")
        markers: dict[str, str | None] = {}
        for mark in filter(None, marks.split("&")):
            key, sep, value = mark.partition("=")
            markers[key] = value if sep else None
        required = frozenset(
            m.serialization.get("name", n)
            for n, m in op.input_shape.members.items()
            if n in op.input_shape.required_members and m.serialization.get("location") == "querystring"
        )
        out.append((op.http["method"], "{Key+}" in path, markers, required, name))
    return out


def operation(method: str, has_key: bool, query: Mapping[str, str]) -> Any:
    """The operation a request is, the most specific match first."""
    best: tuple[int, str] | None = None
    for verb, keyed, markers, required, name in _routes():
        if verb != method or keyed != has_key:
            continue
        if any(k not in query or (v is not None and query[k] != v) for k, v in markers.items()):
            continue
        if not required <= set(query):
            continue
        score = len(markers) + len(required)
        if best is None or score > best[0]:
            best = (score, name)
    if best is None:
        raise Invalid(f"no S3 operation is {method} {'/bucket/key' if has_key else '/bucket'} with {sorted(query)}")
    return model().operation_model(best[1])


def _scalar(shape: Any, text: str, where: str) -> Any:
    kind = shape.type_name
    if kind in ("integer", "long"):
        try:
            return int(text)
        except ValueError:
            raise Invalid(f"{where}: {text!r} is not an integer") from None
    if kind == "boolean":
        if text not in ("true", "false"):
            raise Invalid(f"{where}: {text!r} is not a boolean")
        return text == "true"
    enum = shape.enum if kind == "string" else None
    if enum and text not in enum:
        raise Invalid(f"{where}: {text!r} is not one of {sorted(enum)}")
    return text


def _from_xml(shape: Any, element: ET.Element, where: str) -> Any:
    if shape.type_name != "structure":
        if shape.type_name == "list":
            raise Invalid(f"{where}: nested lists are not read")
        return _scalar(shape, element.text or "", where)
    by_tag = {m.serialization.get("name", n): (n, m) for n, m in shape.members.items()}
    out: dict[str, Any] = {}
    for child in element:
        tag = child.tag.rpartition("}")[2]
        if tag not in by_tag:
            raise Invalid(f"{where}: {tag} is not a member of {shape.name}")
        name, member = by_tag[tag]
        if member.type_name == "list":
            if not member.serialization.get("flattened"):
                out[name] = [_from_xml(member.member, c, f"{where}.{tag}") for c in child]
            else:
                out.setdefault(name, []).append(_from_xml(member.member, child, f"{where}.{tag}"))
        else:
            out[name] = _from_xml(member, child, f"{where}.{tag}")
    return out


def read_request(
    op: Any, uri: Mapping[str, str], query: Mapping[str, str], headers: Mapping[str, str], body: bytes
) -> dict[str, Any]:
    """The operation's input members from the request, checked against the shape."""
    shape = op.input_shape
    out: dict[str, Any] = {}
    allowed_query = {k for k in _routes_markers(op.name)} | {"x-id"}
    allowed_headers = set(_TRANSPORT_HEADERS)
    lowered = {k.lower(): v for k, v in headers.items()}
    payload = shape.serialization.get("payload")
    for name, member in shape.members.items():
        where = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if where == "uri":
            value = uri.get(wire.rstrip("+"))
            if value is not None:
                out[name] = value
        elif where == "querystring":
            allowed_query.add(wire)
            if wire in query:
                out[name] = _scalar(member, query[wire], f"query {wire}")
        elif where == "header":
            allowed_headers.add(wire.lower())
            if wire.lower() in lowered:
                out[name] = _scalar(member, lowered[wire.lower()], f"header {wire}") if member.type_name != "timestamp" else lowered[wire.lower()]
        elif where == "headers":
            prefix = wire.lower()
            found = {k[len(prefix) :]: v for k, v in lowered.items() if k.startswith(prefix)}
            allowed_headers.update(k for k in lowered if k.startswith(prefix))
            if found:
                out[name] = found
        elif name == payload:
            if member.type_name == "blob":
                out[name] = body
            elif body:
                try:
                    root = ET.fromstring(body)
                except ET.ParseError as exc:
                    raise Invalid(f"the {name} payload is not XML: {exc}") from None
                out[name] = _from_xml(member, root, name)
    for query_key in query:
        if query_key not in allowed_query:
            raise Invalid(f"{op.name} has no query parameter {query_key!r}")
    for header in lowered:
        if header.startswith("x-amz-") and header not in allowed_headers:
            raise Invalid(f"{op.name} has no header {header!r}")
    missing = [n for n in shape.required_members if n not in out]
    if missing:
        raise Invalid(f"{op.name}: {', '.join(missing)} required")
    return out


def _routes_markers(name: str) -> list[str]:
    return [k for _, _, markers, _, n in _routes() if n == name for k in markers]


def _text(shape: Any, value: Any, *, header: bool) -> str:
    kind = shape.type_name
    if kind == "timestamp":
        assert isinstance(value, dt.datetime)
        return format_datetime(value, usegmt=True) if header else value.strftime("%Y-%m-%dT%H:%M:%S.000Z")
    if kind == "boolean":
        return "true" if value else "false"
    if kind in ("integer", "long"):
        return str(int(value))
    return str(value)


def _to_xml(parent: ET.Element, shape: Any, data: Mapping[str, Any], where: str) -> None:
    for name, value in data.items():
        member = shape.members.get(name)
        if member is None:
            raise ServerBug(f"{where}: {name} is not a member of {shape.name}")
        tag = member.serialization.get("name", name)
        if member.type_name == "list":
            item_shape = member.member
            if member.serialization.get("flattened"):
                targets = [(parent, tag)] * len(value)
            else:
                box = ET.SubElement(parent, tag)
                targets = [(box, item_shape.serialization.get("name", "member"))] * len(value)
            for (into, item_tag), item in zip(targets, value, strict=True):
                child = ET.SubElement(into, item_tag)
                if item_shape.type_name == "structure":
                    _to_xml(child, item_shape, item, f"{where}.{name}")
                else:
                    child.text = _text(item_shape, item, header=False)
        elif member.type_name == "structure":
            _to_xml(ET.SubElement(parent, tag), member, value, f"{where}.{name}")
        else:
            ET.SubElement(parent, tag).text = _text(member, value, header=False)


def write_response(op: Any, data: Mapping[str, Any]) -> tuple[dict[str, str], bytes]:
    """Headers and body of ``op``'s response carrying ``data`` (output member names)."""
    shape = op.output_shape
    headers: dict[str, str] = {}
    payload_name = shape.serialization.get("payload") if shape is not None else None
    body_fields: dict[str, Any] = {}
    body = b""
    for name, value in data.items():
        member = shape.members.get(name) if shape is not None else None
        if member is None:
            raise ServerBug(f"{op.name}: {name} is not a member of its output")
        where = member.serialization.get("location")
        wire = member.serialization.get("name", name)
        if where == "header":
            headers[wire] = _text(member, value, header=True)
        elif where == "headers":
            headers.update({wire + k: str(v) for k, v in value.items()})
        elif where is not None:
            raise ServerBug(f"{op.name}: {name} goes to the {where}, which is not written")
        elif name == payload_name:
            body = bytes(value)
        else:
            body_fields[name] = value
    if body_fields:
        root_name = shape.serialization.get("name") or op.name + "Result"
        root = ET.Element(root_name, xmlns=NAMESPACE)
        _to_xml(root, shape, body_fields, op.name)
        body = b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root)
        headers["Content-Type"] = "application/xml"
    return headers, body
