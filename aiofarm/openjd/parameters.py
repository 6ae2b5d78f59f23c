"""Job parameters: checking a caller's values against the template's definitions
(openjd-model applies defaults and constraints), and naming the parameter at fault."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path, PureWindowsPath
from typing import Any

from ..errors import InvalidSpec
from .documents import decode_error

__all__ = [
    "check_parameters",
    "input_value",
    "instantiate_error",
    "keep_foreign_paths",
    "parameter_error",
    "typed_value",
]


def input_value(pname: str, ptype: str, value: Any) -> str:
    """Check a caller's value against the parameter's type; openjd-model takes strings."""
    field = f"parameters.{pname}"
    if ptype == "INT":
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InvalidSpec(field, f"INT parameter needs an int, got {type(value).__name__} {value!r}")
        try:
            return str(int(value))
        except ValueError:
            raise InvalidSpec(field, f"INT parameter needs an int, got {value!r}") from None
    if ptype == "FLOAT":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise InvalidSpec(field, f"FLOAT parameter needs a number, got {type(value).__name__} {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise InvalidSpec(field, f"FLOAT parameter needs a number, got {value!r}") from None
        return value.strip() if isinstance(value, str) else repr(number)
    if ptype == "PATH":
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise InvalidSpec(field, f"PATH parameter needs a str or path, got {type(value).__name__}")
        return value
    if ptype == "STRING":
        if not isinstance(value, str):
            raise InvalidSpec(field, f"STRING parameter needs a str, got {type(value).__name__} {value!r}")
        return value
    raise InvalidSpec(field, f"parameter type {ptype} is not supported")


def keep_foreign_paths(values: Any, inputs: Mapping[str, str]) -> None:
    """openjd-model joins a "relative" PATH value to the current directory, and on POSIX
    ``Z:\\scene.ma`` looks relative. An absolute Windows path given on purpose (for path
    mapping to rewrite) stays as given."""
    from openjd.model import ParameterValue, ParameterValueType

    for pname, raw in inputs.items():
        pv = values.get(pname)
        if pv is not None and pv.type is ParameterValueType.PATH and PureWindowsPath(raw).anchor and not raw.startswith("/"):
            values[pname] = ParameterValue(type=ParameterValueType.PATH, value=raw)


def typed_value(ptype: str, value: Any) -> Any:
    if ptype == "INT":
        return int(value)
    if ptype == "FLOAT":
        return float(value)
    return str(value)


def parameter_error(names: list[str], message: str) -> InvalidSpec:
    """Name the parameter openjd-model's message mentions first."""
    first: tuple[int, str] | None = None
    for pname in names:
        m = re.search(rf"\b{re.escape(pname)}\b", message)
        if m and (first is None or m.start() < first[0]):
            first = (m.start(), pname)
    return InvalidSpec(f"parameters.{first[1]}" if first else "parameters", message)


_PARAM_REF = re.compile(r"\{\{\s*Param\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def instantiate_error(doc: Mapping[str, Any], where: str, names: list[str], message: str) -> InvalidSpec:
    """create_job fails when a parameter's value makes a template field invalid (a
    frame range "{{Param.Frames}}" given "1-x"): name the parameter the field uses."""
    err = decode_error(where, message)
    loc = err.field[len(where) + 1 :] if err.field.startswith(where + ":") else ""
    node: Any = doc
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", loc):
        if part.startswith("["):
            idx = int(part[1:-1])
            node = node[idx] if isinstance(node, list) and idx < len(node) else node
        elif isinstance(node, Mapping) and part in node:
            node = node[part]
    if isinstance(node, str):
        used = [n for n in _PARAM_REF.findall(node) if n in names]
        if used:
            return InvalidSpec(f"parameters.{used[0]}", f"{err.reason} (in {err.field})")
    return err


def check_parameters(
    jt: Any,
    given: Mapping[str, Any],
    file_values: Mapping[str, Any],
    template_dir: Path,
    allow_walk_up: bool,
) -> tuple[dict[str, Any], Any]:
    """Typed parameter values (defaults applied) and openjd-model's ParameterValues."""
    from openjd.model import preprocess_job_parameters

    defs = {p.name: p for p in (jt.parameterDefinitions or [])}
    if not isinstance(given, Mapping):
        raise InvalidSpec("parameters", f"must be a mapping, got {type(given).__name__}")
    inputs: dict[str, str] = {}
    for pname, value in file_values.items():
        if pname in defs:
            ptype = defs[pname].type.value
            text = input_value(pname, ptype, value)
            if ptype == "PATH" and text and not os.path.isabs(text) and not PureWindowsPath(text).anchor:
                # A bundle's own files name paths relative to the bundle, not to the caller.
                text = os.path.normpath(os.path.join(template_dir, text))
            inputs[pname] = text
    for pname, value in given.items():
        if pname not in defs:
            known = ", ".join(sorted(defs)) or "none"
            raise InvalidSpec(f"parameters.{pname}", f"not defined by the template (it defines: {known})")
        inputs[pname] = input_value(pname, defs[pname].type.value, value)
    try:
        values = preprocess_job_parameters(
            job_template=jt,
            job_parameter_values=inputs,
            job_template_dir=template_dir,
            current_working_dir=Path.cwd(),
            allow_job_template_dir_walk_up=allow_walk_up,
        )
    except ValueError as exc:
        raise parameter_error(list(defs), str(exc)) from None
    keep_foreign_paths(values, inputs)
    typed = {pname: typed_value(pv.type.value, pv.value) for pname, pv in values.items()}
    return typed, values
