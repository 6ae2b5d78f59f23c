"""Path mapping: rewrite paths written on one OS to where they live here.

Semantics follow Open Job Description path mapping rules (and Smedge path
translations):

- A rule's ``source`` is read in the rule's ``source_os`` format: ``"windows"``
  (drive letters or UNC, ``\\`` or ``/`` separators, case-insensitive match) or
  POSIX (``"posix"``, ``"linux"``, ``"macos"``, ``"darwin"``; case-sensitive).
- A path matches a rule when its components start with all of the source's
  components (``Z:\\proj`` matches ``z:/proj/a`` but not ``Z:\\project``).
- When several rules match, the one with the longest source (most components)
  wins; on a tie the earlier rule wins, and per-submission rules
  (``JobSpec.path_mapping``) come before the client's rules.
- The rest of the path is joined to ``destination`` with this host's separator.

Where mapping happens: the job's working directory is mapped at submission
(:func:`prepare_spec`); Open Job Description PATH parameters are mapped when a
task's command is built (``Param.X`` mapped, ``RawParam.X`` as submitted), as an
OpenJD worker would, and the rules are also written to the session's
``Session.PathMappingRulesFile`` for tasks that map paths themselves.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import PurePosixPath, PureWindowsPath

import attrs

from .errors import InvalidSpec
from .models import JobSpec, PathMappingRule

__all__ = [
    "PathMapping",
    "apply_rules",
    "normalize_rule",
    "prepare_spec",
    "rules_document",
]

_WINDOWS = "windows"
_POSIX = "posix"
_OS_ALIASES = {
    "windows": _WINDOWS,
    "win": _WINDOWS,
    "win32": _WINDOWS,
    "nt": _WINDOWS,
    "posix": _POSIX,
    "linux": _POSIX,
    "macos": _POSIX,
    "darwin": _POSIX,
    "osx": _POSIX,
    "mac": _POSIX,
}


def normalize_rule(rule: PathMappingRule, field: str = "path_mapping") -> PathMappingRule:
    """``rule`` with ``source_os`` spelled ``"windows"`` or ``"posix"``; InvalidSpec if bad."""
    if not isinstance(rule, PathMappingRule):
        raise InvalidSpec(field, f"expected a PathMappingRule, got {type(rule).__name__}")
    os_name = _OS_ALIASES.get(str(rule.source_os).strip().lower())
    if os_name is None:
        raise InvalidSpec(
            f"{field}.source_os",
            f"unknown OS {rule.source_os!r}; use 'windows' or 'posix' (linux, macos)",
        )
    if not rule.source or not isinstance(rule.source, str):
        raise InvalidSpec(f"{field}.source", "must be a non-empty path")
    if not rule.destination or not isinstance(rule.destination, str):
        raise InvalidSpec(f"{field}.destination", "must be a non-empty path")
    parts = _parts(os_name, rule.source)
    if not parts or (os_name == _POSIX and not rule.source.startswith("/")) or (
        os_name == _WINDOWS and not PureWindowsPath(rule.source).anchor
    ):
        raise InvalidSpec(f"{field}.source", f"{rule.source!r} is not an absolute {os_name} path")
    if rule.source_os == os_name:
        return rule
    return attrs.evolve(rule, source_os=os_name)


def _parts(os_name: str, path: str) -> tuple[str, ...]:
    if os_name == _WINDOWS:
        win = PureWindowsPath(path)
        # Windows matching ignores case (NTFS is case-insensitive by default).
        return tuple(p.lower() for p in win.parts)
    return PurePosixPath(path).parts


def _match(rule: PathMappingRule, path: str) -> tuple[int, str] | None:
    """(number of source components, mapped path) when ``rule`` applies to ``path``."""
    if rule.source_os == _WINDOWS:
        if not PureWindowsPath(path).anchor:
            return None
        src = _parts(_WINDOWS, rule.source)
        raw = PureWindowsPath(path).parts
        have = tuple(p.lower() for p in raw)
    else:
        if not path.startswith("/"):
            return None
        src = PurePosixPath(rule.source).parts
        raw = PurePosixPath(path).parts
        have = raw
    if len(have) < len(src) or have[: len(src)] != src:
        return None
    rest = raw[len(src) :]
    dest = rule.destination
    return len(src), os.path.join(dest, *rest) if rest else dest


def apply_rules(rules: Iterable[PathMappingRule], path: str) -> str:
    """``path`` rewritten by the rule with the longest matching source; unchanged if none."""
    best: tuple[int, str] | None = None
    for rule in rules:
        hit = _match(rule, path)
        if hit is not None and (best is None or hit[0] > best[0]):
            best = hit
    return path if best is None else best[1]


def rules_document(rules: Sequence[PathMappingRule]) -> str:
    """The rules as an OpenJD path mapping rules file (``pathmapping-1.0`` JSON), most
    specific source first so that a consumer applying "first match wins" gets the
    same answer as :func:`apply_rules`."""
    ordered = sorted(
        enumerate(rules), key=lambda ir: (-len(_parts(ir[1].source_os, ir[1].source)), ir[0])
    )
    return json.dumps(
        {
            "version": "pathmapping-1.0",
            "path_mapping_rules": [
                {
                    "source_path_format": "WINDOWS" if r.source_os == _WINDOWS else "POSIX",
                    "source_path": r.source,
                    "destination_path": r.destination,
                }
                for _, r in ordered
            ],
        }
    )


def prepare_spec(
    spec: JobSpec, client_rules: Sequence[PathMappingRule] = (), *, map_parameters: bool = False
) -> JobSpec:
    """What the client does at submission: validate rules, put the client's rules after
    the spec's own (so per-submission rules win ties), and map ``cwd``.

    Template PATH parameters stay as submitted in ``spec.parameters``; they are mapped
    when each task's command is built (``aiofarm.openjd.taskrun.task_run``), keeping
    ``RawParam.X`` available as OpenJD requires. With ``map_parameters`` (a back end
    whose workers never see aiofarm's rules, ``Driver.maps_path_parameters`` False) they
    are mapped here instead, defaults included.
    """
    own = tuple(
        normalize_rule(r, f"path_mapping[{i}]") for i, r in enumerate(spec.path_mapping)
    )
    client = tuple(normalize_rule(r, "client.path_mapping") for r in client_rules)
    rules = own + tuple(r for r in client if r not in own)
    cwd = apply_rules(rules, spec.cwd) if spec.cwd and rules else spec.cwd
    parameters = spec.parameters
    if map_parameters and rules and spec.template is not None:
        parameters = _mapped_parameters(spec, rules)
    if rules == spec.path_mapping and cwd == spec.cwd and parameters is spec.parameters:
        return spec
    return attrs.evolve(spec, path_mapping=rules, cwd=cwd, parameters=parameters)


def _mapped_parameters(spec: JobSpec, rules: Sequence[PathMappingRule]) -> Mapping[str, object]:
    """``spec.parameters`` with the value of every PATH parameter without a ``dataFlow``
    (given, or the template's default) mapped by ``rules``; the same mapping when nothing
    changes."""
    assert spec.template is not None
    changed = dict(spec.parameters)
    for definition in spec.template.get("parameterDefinitions") or ():
        if str(definition.get("type", "")).upper() != "PATH":
            continue
        if definition.get("dataFlow", "NONE") != "NONE":
            # a job attachment: uploaded from this host's path, and mapped to where the
            # worker put it by the back end itself
            continue
        name = definition.get("name")
        value = spec.parameters.get(name, definition.get("default"))
        if isinstance(value, str) and value:
            mapped = apply_rules(rules, value)
            if mapped != value:
                changed[name] = mapped
    return changed if changed != dict(spec.parameters) else spec.parameters



class PathMapping:
    """The client's path mapping rules: ``farm.path_mapping``.

    >>> farm.path_mapping.add("windows", "Z:\\\\projects", "/mnt/projects")
    >>> farm.path_mapping.list()
    >>> farm.path_mapping.remove("Z:\\\\projects")
    """

    def __init__(self, rules: Iterable[PathMappingRule] = ()) -> None:
        self._rules: list[PathMappingRule] = []
        for i, rule in enumerate(rules):
            self._append(normalize_rule(rule, f"path_mapping[{i}]"))

    def _append(self, rule: PathMappingRule) -> None:
        # One rule per (os, source): adding the same source again replaces its destination.
        key = (rule.source_os, _parts(rule.source_os, rule.source))
        self._rules = [r for r in self._rules if (r.source_os, _parts(r.source_os, r.source)) != key]
        self._rules.append(rule)

    def add(
        self,
        rule_or_os: PathMappingRule | str,
        source: str | None = None,
        destination: str | None = None,
    ) -> PathMappingRule:
        """Add a rule (a :class:`PathMappingRule` or ``source_os, source, destination``)."""
        if isinstance(rule_or_os, PathMappingRule):
            if source is not None or destination is not None:
                raise InvalidSpec("path_mapping", "give a PathMappingRule or three strings, not both")
            rule = rule_or_os
        else:
            if source is None or destination is None:
                raise InvalidSpec("path_mapping", "add(source_os, source, destination) needs all three")
            rule = PathMappingRule(source_os=rule_or_os, source=source, destination=destination)
        rule = normalize_rule(rule)
        self._append(rule)
        return rule

    def list(self) -> tuple[PathMappingRule, ...]:
        return tuple(self._rules)

    def remove(self, rule_or_source: PathMappingRule | str) -> PathMappingRule:
        """Remove a rule given as the rule or its source path; InvalidSpec if there is none."""
        for rule in self._rules:
            if isinstance(rule_or_source, PathMappingRule):
                hit = normalize_rule(rule_or_source) == rule
            else:
                hit = _parts(rule.source_os, rule.source) == _parts(rule.source_os, rule_or_source)
            if hit:
                self._rules.remove(rule)
                return rule
        raise InvalidSpec("path_mapping", f"no rule with source {rule_or_source!r}")

    def clear(self) -> None:
        self._rules.clear()

    def apply(self, path: str, extra: Iterable[PathMappingRule] = ()) -> str:
        """``path`` mapped by ``extra`` (per-submission rules) and the client's rules."""
        return apply_rules([*extra, *self._rules], path)

    def __iter__(self) -> Iterator[PathMappingRule]:
        return iter(tuple(self._rules))

    def __len__(self) -> int:
        return len(self._rules)
