"""Job parameters: checking a caller's values against the template's definitions
(openjd-model applies defaults and constraints), and naming the parameter at fault."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path, PureWindowsPath
from typing import Any

from ..errors import InvalidSpec
from .documents import decode_error

#: the words openjd-model reads as a BOOL parameter's value
_BOOL_WORDS = ("true", "false", "yes", "no", "on", "off", "1", "0")

__all__ = [
    "check_parameters",
    "input_value",
    "instantiate_error",
    "keep_foreign_paths",
    "parameter_error",
    "typed_value",
]


def input_value(pname: str, ptype: str, value: Any) -> Any:
    """Check a caller's value against the parameter's type; openjd-model takes strings
    for the 2023-09 types, and native values (bool, list) for the EXPR ones."""
    field = f"parameters.{pname}"
    if ptype == "BOOL":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _BOOL_WORDS:
            return value  # openjd-model reads the word
        raise InvalidSpec(field, f"BOOL parameter needs a bool (or {'/'.join(_BOOL_WORDS)}), got {value!r}")
    if ptype.startswith("LIST["):
        if isinstance(value, (list, tuple)):
            return [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
        if isinstance(value, str):
            try:
                decoded = json.loads(value)
            except ValueError:
                decoded = None
            if isinstance(decoded, list):
                return value  # JSON text, decoded by openjd-model
        raise InvalidSpec(field, f"{ptype} parameter needs a list (or its JSON text), got {value!r}")
    if ptype == "RANGE_EXPR":
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidSpec(field, f"RANGE_EXPR parameter needs a str like '1-10', got {type(value).__name__}")
        return str(value)
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


def keep_foreign_paths(values: Any, inputs: Mapping[str, Any]) -> None:
    """openjd-model joins a "relative" PATH value to the current directory, and on POSIX
    ``Z:\\scene.ma`` looks relative. An absolute Windows path given on purpose (for path
    mapping to rewrite) stays as given."""
    from openjd.model import ParameterValue, ParameterValueType

    for pname, raw in inputs.items():
        pv = values.get(pname)
        if (
            pv is not None
            and pv.type is ParameterValueType.PATH
            and isinstance(raw, str)
            and PureWindowsPath(raw).anchor
            and not raw.startswith("/")
        ):
            values[pname] = ParameterValue(type=ParameterValueType.PATH, value=raw)


def typed_value(ptype: str, value: Any) -> Any:
    """A parameter value as ``JobSpec.parameters`` keeps it (JSON-compatible)."""
    if ptype == "INT":
        return int(value)
    if ptype == "FLOAT":
        return float(value)
    if ptype == "BOOL":
        return bool(value)
    if ptype.startswith("LIST["):
        return [typed_value(ptype[5:-1], v) if not isinstance(v, list) else list(v) for v in value]
    return str(value)


def parameter_error(names: list[str], message: str) -> InvalidSpec:
    """Name the parameter openjd-model's message mentions first (in its first line when
    that names one: later lines are often consequences of the first)."""
    for text in (message.split("\n", 1)[0], message):
        first: tuple[int, str] | None = None
        for pname in names:
            m = re.search(rf"\b{re.escape(pname)}\b", text)
            if m and (first is None or m.start() < first[0]):
                first = (m.start(), pname)
        if first is not None:
            return InvalidSpec(f"parameters.{first[1]}", message)
    return InvalidSpec("parameters", message)


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
    environments: list[Any] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Typed parameter values (defaults applied) and openjd-model's ParameterValues.
    Environment templates may define parameters of their own (merged by openjd-model)."""
    from openjd.model import preprocess_job_parameters

    defs = {p.name: p for p in (jt.parameterDefinitions or [])}
    for env_t in environments or ():
        for p in env_t.parameterDefinitions or []:
            defs.setdefault(p.name, p)
    if not isinstance(given, Mapping):
        raise InvalidSpec("parameters", f"must be a mapping, got {type(given).__name__}")
    inputs: dict[str, Any] = {}
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
            environment_templates=environments or None,
        )
    except ValueError as exc:
        raise parameter_error(list(defs), str(exc)) from None
    keep_foreign_paths(values, inputs)
    typed = {pname: typed_value(pv.type.value, pv.value) for pname, pv in values.items()}
    return typed, values
