"""Reading Open Job Description documents: bundle files, templates, and turning
openjd-model's decode errors into ``InvalidSpec`` naming the field.

``openjd.model`` is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidSpec

__all__ = [
    "ASSET_FILES",
    "PARAMETER_FILES",
    "SUPPORTED_EXTENSIONS",
    "TEMPLATE_FILES",
    "as_int",
    "check_extensions",
    "check_symlinks",
    "decode",
    "decode_environment",
    "decode_error",
    "json_default",
    "one_of",
    "parameter_values",
    "plain",
    "read_document",
]

#: OpenJD 2023-09 extensions aiofarm honours (openjd-model decodes and evaluates them;
#: the session runner and the drivers do the runtime part). ``WRAP_ACTIONS`` is not
#: among them: a template naming it is refused with the extension named.
SUPPORTED_EXTENSIONS: tuple[str, ...] = ("TASK_CHUNKING", "EXPR", "FEATURE_BUNDLE_1", "REDACTED_ENV_VARS")
TEMPLATE_FILES = ("template.yaml", "template.yml", "template.json")
PARAMETER_FILES = ("parameter_values.yaml", "parameter_values.yml", "parameter_values.json")
ASSET_FILES = ("asset_references.yaml", "asset_references.yml", "asset_references.json")


def check_symlinks(root: Path, real_root: str) -> None:
    """Every symlink in the bundle must resolve inside it: a bundle is shipped as a
    unit, and a link out of it would read (or upload) files the bundle does not own."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for entry in (*dirnames, *filenames):
            full = os.path.join(dirpath, entry)
            if os.path.islink(full):
                target = os.path.realpath(full)
                if os.path.commonpath([real_root, target]) != real_root:
                    rel = os.path.relpath(full, root)
                    raise InvalidSpec(
                        f"{full}",
                        f"symlink {rel!r} points outside the bundle (to {target!r})",
                    )


def one_of(root: Path, names: tuple[str, ...], *, required: bool) -> Path | None:
    found = [root / n for n in names if os.path.lexists(root / n)]
    if len(found) > 1:
        raise InvalidSpec(str(found[0]), f"ambiguous: the bundle has {', '.join(p.name for p in found)}")
    if not found:
        if required:
            raise InvalidSpec(
                str(root / names[0]), "missing: a job bundle needs template.yaml or template.json"
            )
        return None
    if not found[0].is_file():
        raise InvalidSpec(str(found[0]), "not a regular file")
    return found[0]


def read_document(path: Path) -> dict[str, Any]:
    from openjd.model import DecodeValidationError, DocumentType, document_string_to_object

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpec(str(path), f"cannot read: {exc}") from None
    kind = DocumentType.JSON if path.suffix == ".json" else DocumentType.YAML
    try:
        return document_string_to_object(document=text, document_type=kind)
    except DecodeValidationError as exc:
        raise InvalidSpec(str(path), str(exc)) from None


def parameter_values(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = read_document(path)
    items = doc.get("parameterValues", [])
    if not isinstance(items, list):
        raise InvalidSpec(f"{path}:parameterValues", "must be a list of {name, value}")
    values: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or "name" not in item or "value" not in item:
            raise InvalidSpec(f"{path}:parameterValues[{i}]", "must be a mapping with name and value")
        pname = str(item["name"])
        if pname.startswith("deadline:"):
            settings[pname] = item["value"]
        elif ":" not in pname:
            values[pname] = item["value"]
    return values, settings


def plain(value: Any, field: str) -> dict[str, Any]:
    """A deep plain-dict copy (what JobSpec.template stores; JSON-compatible)."""
    try:
        out = json.loads(json.dumps(value, default=json_default))
    except (TypeError, ValueError) as exc:
        raise InvalidSpec(field, f"not JSON-compatible: {exc}") from None
    if not isinstance(out, dict):
        raise InvalidSpec(field, "must be a mapping")
    return out


def json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-compatible")


def as_int(value: Any, field: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool):
        raise InvalidSpec(field, "must be an integer, not a bool")
    out: int | None = None
    if isinstance(value, (int, str)):
        with contextlib.suppress(ValueError):
            out = int(value)
    if out is None:
        raise InvalidSpec(field, f"must be an integer, got {value!r}")
    if minimum is not None and out < minimum:
        raise InvalidSpec(field, f"must be >= {minimum}, got {out}")
    if maximum is not None and out > maximum:
        raise InvalidSpec(field, f"must be <= {maximum}, got {out}")
    return out


_LOC_LINE = re.compile(r"^(\S.*):$")


def decode_error(where: str, message: str) -> InvalidSpec:
    """openjd-model's message lists ``loc -> path:`` lines each followed by tab-indented
    reasons; the first becomes the field (``<template>:steps[0].script.actions``)."""
    lines = message.splitlines()
    for i, line in enumerate(lines[1:], start=1):
        m = _LOC_LINE.match(line)
        if m:
            loc = ".".join(part.strip() for part in m.group(1).split("->"))
            reasons = [ln.strip() for ln in lines[i + 1 :] if ln.startswith("\t")]
            first = reasons[0] if reasons else message
            rest = len([ln for ln in lines[1:] if _LOC_LINE.match(ln)]) - 1
            more = f" (and {rest} more: {message})" if rest > 0 else ""
            return InvalidSpec(f"{where}:{loc}", first + more)
    return InvalidSpec(where, message)


def check_extensions(doc: Mapping[str, Any], where: str) -> None:
    """An extension aiofarm cannot honour is refused by name, before openjd-model would
    report it among other messages (or accept one it knows but we do not run)."""
    names = doc.get("extensions")
    if not isinstance(names, list):
        return  # absent, or malformed: openjd-model's validation says why
    for i, name in enumerate(names):
        if isinstance(name, str) and name not in SUPPORTED_EXTENSIONS:
            raise InvalidSpec(
                f"{where}:extensions[{i}]",
                f"extension {name!r} is not supported by aiofarm "
                f"(supported: {', '.join(SUPPORTED_EXTENSIONS)})",
            )


def decode(doc: Mapping[str, Any], where: str) -> Any:
    from openjd.model import DecodeValidationError, decode_job_template

    if "specificationVersion" not in doc:
        raise InvalidSpec(f"{where}:specificationVersion", "missing (use jobtemplate-2023-09)")
    check_extensions(doc, where)
    try:
        return decode_job_template(template=dict(doc), supported_extensions=SUPPORTED_EXTENSIONS)
    except DecodeValidationError as exc:
        text = str(exc)
        if text.startswith("Unknown template version") or "not a Job Template version" in text:
            raise InvalidSpec(f"{where}:specificationVersion", text) from None
        raise decode_error(where, text) from None
    except NotImplementedError as exc:
        raise InvalidSpec(f"{where}:specificationVersion", str(exc)) from None


def decode_environment(doc: Mapping[str, Any], where: str) -> Any:
    """An environment template (``environment-2023-09``), e.g. a queue environment."""
    from openjd.model import DecodeValidationError, decode_environment_template

    if "specificationVersion" not in doc:
        raise InvalidSpec(f"{where}:specificationVersion", "missing (use environment-2023-09)")
    check_extensions(doc, where)
    try:
        return decode_environment_template(template=dict(doc), supported_extensions=SUPPORTED_EXTENSIONS)
    except DecodeValidationError as exc:
        text = str(exc)
        if text.startswith("Unknown template version") or "not an Environment Template" in text:
            raise InvalidSpec(f"{where}:specificationVersion", text) from None
        raise decode_error(where, text) from None
    except (NotImplementedError, KeyError, ValueError) as exc:
        raise InvalidSpec(f"{where}:specificationVersion", str(exc)) from None
