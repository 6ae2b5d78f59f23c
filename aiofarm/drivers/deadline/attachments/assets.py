"""Which local files a submission attaches, as the official client decides it.

A job bundle's ``asset_references`` (``inputs.filenames``, ``inputs.directories``,
``outputs.directories``, ``referencedPaths``) and every PATH parameter of the template
whose ``dataFlow`` says so (IN: an input file or directory by ``objectType``; OUT: an
output directory, a FILE's parent; NONE: referenced) are gathered; relative paths are
taken from the current directory, as ``deadline bundle submit`` does. Input directories
are expanded to the files under them. Paths inside a SHARED file system location of the
client's storage profile are left out (workers see them where they are); paths inside
a LOCAL location form a group rooted there; all others form one group whose root is
their common directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from ....errors import InvalidSpec

__all__ = ["AssetGroup", "References", "gather", "group"]


@attrs.frozen
class References:
    input_files: frozenset[str] = frozenset()
    input_dirs: frozenset[str] = frozenset()
    output_dirs: frozenset[str] = frozenset()
    referenced: frozenset[str] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.input_files or self.input_dirs or self.output_dirs)


@attrs.frozen
class AssetGroup:
    root: str
    inputs: tuple[str, ...]  # absolute file paths
    outputs: tuple[str, ...]  # absolute directories
    file_system_location: str | None = None


def _strings(value: Any, field: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise InvalidSpec(field, "must be a list of paths")
    for item in value:
        if not isinstance(item, str):
            raise InvalidSpec(field, f"must be a list of paths, got {item!r}")
    return [v for v in value if v]


def gather(
    references: Mapping[str, Any] | None,
    template: Mapping[str, Any] | None,
    parameters: Mapping[str, Any],
) -> References:
    refs = dict(references or {})
    field = "asset_references"
    inputs = refs.get("inputs") or {}
    outputs = refs.get("outputs") or {}
    if not isinstance(inputs, Mapping) or not isinstance(outputs, Mapping):
        raise InvalidSpec(field, "inputs and outputs must be mappings")
    files = set(_strings(inputs.get("filenames"), f"{field}.inputs.filenames"))
    dirs = set(_strings(inputs.get("directories"), f"{field}.inputs.directories"))
    outs = set(_strings(outputs.get("directories"), f"{field}.outputs.directories"))
    referenced = set(_strings(refs.get("referencedPaths"), f"{field}.referencedPaths"))
    for definition in (template or {}).get("parameterDefinitions") or ():
        if str(definition.get("type", "")).upper() != "PATH":
            continue
        value = parameters.get(definition.get("name"), definition.get("default"))
        if not isinstance(value, str) or not value:
            continue
        flow = definition.get("dataFlow", "NONE")
        is_file = definition.get("objectType") == "FILE"
        if flow == "NONE":
            referenced.add(value)
        if "IN" in flow:
            (files if is_file else dirs).add(value)
        if "OUT" in flow:
            outs.add(os.path.dirname(value) if is_file else value)
    absolute = _absolute
    return References(
        frozenset(map(absolute, files)),
        frozenset(map(absolute, dirs)),
        frozenset(map(absolute, outs)),
        frozenset(map(absolute, referenced)),
    )


def _absolute(path: str) -> str:
    # absolute without resolving symlinks; ".." folded, as the official client does
    return os.path.normpath(os.path.abspath(path))


def _inside(path: str, location: str) -> bool:
    return path == location or path.startswith(location.rstrip("/") + "/")


def expand(refs: References, require: bool = True) -> tuple[list[str], list[str]]:
    """Every input file (the files named, and those under the directories), and the
    inputs that do not exist, which are an InvalidSpec when ``require`` (blocking)."""
    out: set[str] = set()
    missing: list[str] = []
    for path in refs.input_files:
        if not os.path.exists(path):
            if require:
                raise InvalidSpec("asset_references.inputs.filenames", f"{path} does not exist")
            missing.append(path)
            continue
        if os.path.isdir(path):
            raise InvalidSpec(
                "asset_references.inputs.filenames", f"{path} is a directory, not a file"
            )
        out.add(path)
    for path in refs.input_dirs:
        if not os.path.isdir(path):
            if require or os.path.exists(path):
                raise InvalidSpec(
                    "asset_references.inputs.directories", f"{path} is not an existing directory"
                )
            missing.append(path)
            continue
        for top, _, names in os.walk(path):
            out.update(os.path.join(top, name) for name in names)
    return sorted(out), sorted(missing)


def group(
    inputs: Iterable[str],
    refs: References,
    locations: Mapping[str, tuple[str, str]] | None = None,
) -> list[AssetGroup]:
    """Groups by root. ``locations``: the client storage profile's file system locations,
    name -> (path, "LOCAL" | "SHARED")."""
    shared = [p for p, kind in (locations or {}).values() if kind == "SHARED"]
    local = {name: p for name, (p, kind) in (locations or {}).items() if kind == "LOCAL"}
    members: dict[str | None, dict[str, set[str]]] = {}

    def place(path: str, kind: str) -> None:
        if any(_inside(path, s) for s in shared):
            return
        name = next((n for n, p in local.items() if _inside(path, p)), None)
        members.setdefault(name, {"inputs": set(), "outputs": set(), "refs": set()})[kind].add(
            path
        )

    for path in inputs:
        place(path, "inputs")
    for path in refs.output_dirs:
        place(path, "outputs")
    for path in refs.referenced:
        place(path, "refs")
    groups = []
    for name, found in members.items():
        if not found["inputs"] and not found["outputs"]:
            continue
        if name is not None:
            root = local[name]
        else:
            everything = found["inputs"] | found["outputs"] | found["refs"]
            root = os.path.commonpath(sorted(everything))
            if root in found["inputs"] or os.path.isfile(root):
                root = os.path.dirname(root)
        groups.append(
            AssetGroup(root, tuple(sorted(found["inputs"])), tuple(sorted(found["outputs"])), name)
        )
    return sorted(groups, key=lambda g: (g.root, g.file_system_location or ""))


def relative(path: str, root: str) -> str:
    """``path`` under ``root`` as a manifest path ("/" separated)."""
    return PurePosixPath(Path(path).relative_to(root)).as_posix()
