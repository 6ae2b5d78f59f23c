"""Open Job Description job bundles and templates: load, validate, plan, run.

The client layer calls these (exact signatures)::

    await farm.jobs.submit_bundle(path, *, parameters=None, name=None, priority=None,
                                  paused=False, max_failed_tasks=None,
                                  max_retries_per_task=None, pool=None, tags=())
        == (await farm.jobs.submit([load_bundle(path, parameters=parameters, name=name,
                priority=priority, paused=paused, max_failed_tasks=max_failed_tasks,
                max_retries_per_task=max_retries_per_task, pool=pool, tags=tags)]))[0]
    await farm.jobs.submit_template(template, *, parameters=None, ...same keywords...)
        == (await farm.jobs.submit([template_spec(template, parameters=parameters, ...)]))[0]

``load_bundle``/``template_spec`` also take any other :class:`~aiofarm.models.JobSpec`
field as a keyword (env, description, id, depends_on, path_mapping, max_workers,
options). ``paused=None`` lets a bundle's ``deadline:targetTaskRunStatus`` decide.

Drivers that run work themselves use :func:`plan_template` (through
``aiofarm.drivers.plan.plan_job``) for the steps and tasks, and :func:`task_run` for
the process of one task attempt.

Parsing, validation, parameter checking, step dependency ordering, parameter-space
expansion (chunking included) and format-string resolution are all openjd-model's;
this module only maps them onto aiofarm's models and errors. ``openjd.model`` is
imported lazily so ``import aiofarm`` stays light.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path, PureWindowsPath
from typing import TYPE_CHECKING, Any

import attrs

from .drivers.plan import RunSpec, StepPlan, TaskPlan
from .errors import InvalidSpec
from .models import JobSpec, PathMappingRule
from .pathmap import apply_rules, normalize_rule, rules_document

if TYPE_CHECKING:
    from openjd.model import SymbolTable

__all__ = [
    "SUPPORTED_EXTENSIONS",
    "TEMPLATE_FILES",
    "load_bundle",
    "plan_template",
    "task_run",
    "template_spec",
]

#: OpenJD 2023-09 extensions aiofarm accepts in templates.
SUPPORTED_EXTENSIONS: tuple[str, ...] = ("TASK_CHUNKING",)
TEMPLATE_FILES = ("template.yaml", "template.yml", "template.json")
_PARAMETER_FILES = ("parameter_values.yaml", "parameter_values.yml", "parameter_values.json")
_ASSET_FILES = ("asset_references.yaml", "asset_references.yml", "asset_references.json")
#: Spec default when a NOTIFY_THEN_TERMINATE action gives no notifyPeriodInSeconds.
_DEFAULT_NOTIFY_PERIOD = 120.0
#: Extra seconds the runner gets after a canceled task to run environment onExit actions.
_EXIT_GRACE = 10.0
_RUNNER = str(Path(__file__).resolve().parent / "adaptors" / "openjd_task.py")
_SPEC_FIELDS = frozenset(a.name for a in attrs.fields(JobSpec))
_RESERVED = frozenset(
    {"template", "parameters", "name", "priority", "paused", "max_failed_tasks", "retries"}
)


# -- loading -------------------------------------------------------------------------


def load_bundle(
    path: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    priority: int | None = None,
    paused: bool | None = None,
    max_failed_tasks: int | None = None,
    max_retries_per_task: int | None = None,
    **fields: Any,
) -> JobSpec:
    """Read a job bundle directory as the Deadline Cloud client does.

    ``template.yaml`` or ``template.json`` (required), ``parameter_values.yaml|json``
    (``{"parameterValues": [{"name": ..., "value": ...}]}``; ``parameters`` override it)
    and ``asset_references.yaml|json`` (kept as ``spec.options["asset_references"]`` for
    drivers that upload inputs). ``deadline:priority``, ``deadline:maxFailedTasksCount``,
    ``deadline:maxRetriesPerTask`` and ``deadline:targetTaskRunStatus`` in the parameter
    file set the job's settings unless the call gives them; other names with a ``:``
    (queue parameters) are ignored, as are file values for parameters the template does
    not define. Unknown names in ``parameters`` are an error.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidSpec("bundle", f"{str(root)!r} is not a directory")
    real_root = os.path.realpath(root)
    _check_symlinks(root, real_root)

    template_file = _one_of(root, TEMPLATE_FILES, required=True)
    assert template_file is not None
    doc = _read_document(template_file)

    file_values: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    values_file = _one_of(root, _PARAMETER_FILES, required=False)
    if values_file is not None:
        file_values, settings = _parameter_values(values_file)

    options = dict(fields.pop("options", None) or {})
    assets_file = _one_of(root, _ASSET_FILES, required=False)
    if assets_file is not None:
        assets = _read_document(assets_file)
        refs = assets.get("assetReferences")
        if not isinstance(refs, Mapping):
            raise InvalidSpec(f"{assets_file}:assetReferences", "must be a mapping")
        options["asset_references"] = dict(refs)
    options["bundle"] = str(root.resolve())

    if priority is None and "deadline:priority" in settings:
        priority = _as_int(settings["deadline:priority"], f"{values_file}:deadline:priority")
    if max_failed_tasks is None and "deadline:maxFailedTasksCount" in settings:
        max_failed_tasks = _as_int(
            settings["deadline:maxFailedTasksCount"], f"{values_file}:deadline:maxFailedTasksCount"
        )
    if max_retries_per_task is None and "deadline:maxRetriesPerTask" in settings:
        max_retries_per_task = _as_int(
            settings["deadline:maxRetriesPerTask"], f"{values_file}:deadline:maxRetriesPerTask"
        )
    if paused is None and "deadline:targetTaskRunStatus" in settings:
        paused = str(settings["deadline:targetTaskRunStatus"]).upper() == "SUSPENDED"

    return _build_spec(
        doc,
        where=str(template_file),
        template_dir=Path(real_root),
        allow_walk_up=False,
        parameters=parameters,
        file_values=file_values,
        name=name,
        priority=priority,
        paused=paused,
        max_failed_tasks=max_failed_tasks,
        max_retries_per_task=max_retries_per_task,
        options=options,
        fields=fields,
    )


def template_spec(
    template: str | Mapping[str, Any],
    parameters: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    priority: int | None = None,
    paused: bool | None = None,
    max_failed_tasks: int | None = None,
    max_retries_per_task: int | None = None,
    template_dir: str | os.PathLike[str] | None = None,
    **fields: Any,
) -> JobSpec:
    """A job from a template given as YAML/JSON text or as a mapping.

    Relative PATH defaults are joined to ``template_dir`` (default: the current
    directory); with no bundle to escape, walking up from it is allowed.
    """
    if isinstance(template, str):
        from openjd.model import DecodeValidationError, DocumentType, document_string_to_object

        kind = DocumentType.JSON if template.lstrip().startswith("{") else DocumentType.YAML
        try:
            doc = document_string_to_object(document=template, document_type=kind)
        except DecodeValidationError as exc:
            raise InvalidSpec("template", str(exc)) from None
    elif isinstance(template, Mapping):
        doc = _plain(template, "template")
    else:
        raise InvalidSpec("template", f"expected YAML/JSON text or a mapping, got {type(template).__name__}")
    options = dict(fields.pop("options", None) or {})
    tdir = Path(template_dir).absolute() if template_dir is not None else Path.cwd()
    return _build_spec(
        doc,
        where="template",
        template_dir=tdir,
        allow_walk_up=True,
        parameters=parameters,
        file_values={},
        name=name,
        priority=priority,
        paused=paused,
        max_failed_tasks=max_failed_tasks,
        max_retries_per_task=max_retries_per_task,
        options=options,
        fields=fields,
    )


def _check_symlinks(root: Path, real_root: str) -> None:
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


def _one_of(root: Path, names: tuple[str, ...], *, required: bool) -> Path | None:
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


def _read_document(path: Path) -> dict[str, Any]:
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


def _parameter_values(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    doc = _read_document(path)
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


def _plain(value: Any, field: str) -> dict[str, Any]:
    """A deep plain-dict copy (what JobSpec.template stores; JSON-compatible)."""
    try:
        out = json.loads(json.dumps(value, default=_json_default))
    except (TypeError, ValueError) as exc:
        raise InvalidSpec(field, f"not JSON-compatible: {exc}") from None
    if not isinstance(out, dict):
        raise InvalidSpec(field, "must be a mapping")
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON-compatible")


def _as_int(value: Any, field: str, minimum: int | None = None, maximum: int | None = None) -> int:
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


# -- validation ------------------------------------------------------------------------

_LOC_LINE = re.compile(r"^(\S.*):$")


def _decode_error(where: str, message: str) -> InvalidSpec:
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


def _decode(doc: Mapping[str, Any], where: str) -> Any:
    from openjd.model import DecodeValidationError, decode_job_template

    if "specificationVersion" not in doc:
        raise InvalidSpec(f"{where}:specificationVersion", "missing (use jobtemplate-2023-09)")
    try:
        return decode_job_template(template=dict(doc), supported_extensions=SUPPORTED_EXTENSIONS)
    except DecodeValidationError as exc:
        text = str(exc)
        if text.startswith("Unknown template version") or "not a Job Template version" in text:
            raise InvalidSpec(f"{where}:specificationVersion", text) from None
        raise _decode_error(where, text) from None
    except NotImplementedError as exc:
        raise InvalidSpec(f"{where}:specificationVersion", str(exc)) from None


def _input_value(pname: str, ptype: str, value: Any) -> str:
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


def _keep_foreign_paths(values: Any, inputs: Mapping[str, str]) -> None:
    """openjd-model joins a "relative" PATH value to the current directory, and on POSIX
    ``Z:\\scene.ma`` looks relative. An absolute Windows path given on purpose (for path
    mapping to rewrite) stays as given."""
    from openjd.model import ParameterValue, ParameterValueType

    for pname, raw in inputs.items():
        pv = values.get(pname)
        if pv is not None and pv.type is ParameterValueType.PATH and PureWindowsPath(raw).anchor and not raw.startswith("/"):
            values[pname] = ParameterValue(type=ParameterValueType.PATH, value=raw)


def _typed(ptype: str, value: Any) -> Any:
    if ptype == "INT":
        return int(value)
    if ptype == "FLOAT":
        return float(value)
    return str(value)


def _parameter_error(names: list[str], message: str) -> InvalidSpec:
    """Name the parameter openjd-model's message mentions first."""
    first: tuple[int, str] | None = None
    for pname in names:
        m = re.search(rf"\b{re.escape(pname)}\b", message)
        if m and (first is None or m.start() < first[0]):
            first = (m.start(), pname)
    return InvalidSpec(f"parameters.{first[1]}" if first else "parameters", message)


_PARAM_REF = re.compile(r"\{\{\s*Param\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")


def _instantiate_error(doc: Mapping[str, Any], where: str, names: list[str], message: str) -> InvalidSpec:
    """create_job fails when a parameter's value makes a template field invalid (a
    frame range "{{Param.Frames}}" given "1-x"): name the parameter the field uses."""
    err = _decode_error(where, message)
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


def _check_parameters(
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
            text = _input_value(pname, ptype, value)
            if ptype == "PATH" and text and not os.path.isabs(text) and not PureWindowsPath(text).anchor:
                # A bundle's own files name paths relative to the bundle, not to the caller.
                text = os.path.normpath(os.path.join(template_dir, text))
            inputs[pname] = text
    for pname, value in given.items():
        if pname not in defs:
            known = ", ".join(sorted(defs)) or "none"
            raise InvalidSpec(f"parameters.{pname}", f"not defined by the template (it defines: {known})")
        inputs[pname] = _input_value(pname, defs[pname].type.value, value)
    try:
        values = preprocess_job_parameters(
            job_template=jt,
            job_parameter_values=inputs,
            job_template_dir=template_dir,
            current_working_dir=Path.cwd(),
            allow_job_template_dir_walk_up=allow_walk_up,
        )
    except ValueError as exc:
        raise _parameter_error(list(defs), str(exc)) from None
    _keep_foreign_paths(values, inputs)
    typed = {pname: _typed(pv.type.value, pv.value) for pname, pv in values.items()}
    return typed, values


def _build_spec(
    doc: dict[str, Any],
    *,
    where: str,
    template_dir: Path,
    allow_walk_up: bool,
    parameters: Mapping[str, Any] | None,
    file_values: Mapping[str, Any],
    name: str | None,
    priority: int | None,
    paused: bool | None,
    max_failed_tasks: int | None,
    max_retries_per_task: int | None,
    options: dict[str, Any],
    fields: dict[str, Any],
) -> JobSpec:
    from openjd.model import DecodeValidationError, create_job

    for key in fields:
        if key not in _SPEC_FIELDS or key in _RESERVED or key == "command":
            raise InvalidSpec(key, "not a JobSpec field a template job takes")
    jt = _decode(doc, where)
    typed, values = _check_parameters(jt, parameters or {}, file_values, template_dir, allow_walk_up)
    try:
        job = create_job(job_template=jt, job_parameter_values=values)
    except DecodeValidationError as exc:
        raise _instantiate_error(doc, where, list(typed), str(exc)) from None
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidSpec("name", "must be a non-empty str")
    if paused is not None and not isinstance(paused, bool):
        raise InvalidSpec("paused", "must be a bool")
    spec_priority = 50 if priority is None else _as_int(priority, "priority", 0, 100)
    failed = None if max_failed_tasks is None else _as_int(max_failed_tasks, "max_failed_tasks", 0)
    retries = 0 if max_retries_per_task is None else _as_int(max_retries_per_task, "max_retries_per_task", 0)
    options["openjd"] = {"template_dir": str(template_dir), "extensions": list(jt.extensions or [])}
    return JobSpec(
        name=name or str(job.name),
        template=doc,
        parameters=typed,
        priority=spec_priority,
        paused=bool(paused),
        max_failed_tasks=failed,
        retries=retries,
        options=options,
        **fields,
    )


# -- the job, once per template + parameters -------------------------------------------


@attrs.frozen(eq=False)
class _Context:
    job: Any  # openjd.model Job
    values: Any  # openjd.model JobParameterValues
    steps: Mapping[str, Any]
    rules: tuple[PathMappingRule, ...]
    # Param.* (path-mapped) and RawParam.* for every task's symbol table
    symbols: Mapping[str, str]
    # per step: whether its tasks need a session directory of their own
    needs_dir: Mapping[str, bool]


_cache: collections.OrderedDict[str, _Context] = collections.OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 64
_by_id: collections.OrderedDict[int, tuple[weakref.ref[JobSpec], _Context]] = collections.OrderedDict()


def _context(spec: JobSpec) -> _Context:
    """The instantiated job for ``spec``. A driver calls :func:`task_run` once per task,
    so the decode + instantiate (milliseconds of pydantic) is cached by content."""
    if spec.template is None:
        raise InvalidSpec("template", "the spec has no template")
    # Fast path: drivers hand the same spec object for every task of a job.
    by_id = _by_id.get(id(spec))
    if by_id is not None and by_id[0]() is spec:
        return by_id[1]
    rules = tuple(normalize_rule(r, f"path_mapping[{i}]") for i, r in enumerate(spec.path_mapping))
    key = json.dumps(
        [spec.template, spec.parameters, [attrs.astuple(r) for r in rules]],
        sort_keys=True,
        default=_json_default,
    )
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
    if hit is None:
        hit = _make_context(spec, rules)
        with _cache_lock:
            _cache[key] = hit
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    with _cache_lock:
        _by_id[id(spec)] = (weakref.ref(spec), hit)
        while len(_by_id) > _CACHE_SIZE:
            _by_id.popitem(last=False)
    return hit


def _make_context(spec: JobSpec, rules: tuple[PathMappingRule, ...]) -> _Context:
    from openjd.model import DecodeValidationError, create_job, preprocess_job_parameters

    assert spec.template is not None
    doc = _plain(spec.template, "template")
    jt = _decode(doc, "template")
    defs = {p.name: p for p in (jt.parameterDefinitions or [])}
    inputs = {}
    for pname, value in spec.parameters.items():
        if pname not in defs:
            raise InvalidSpec(f"parameters.{pname}", "not defined by the template")
        inputs[pname] = _input_value(pname, defs[pname].type.value, value)
    try:
        # Values were resolved at submission; no template dir to check against here.
        values = preprocess_job_parameters(
            job_template=jt,
            job_parameter_values=inputs,
            job_template_dir=Path(),
            current_working_dir=Path(),
            allow_job_template_dir_walk_up=True,
        )
        _keep_foreign_paths(values, inputs)
        job = create_job(job_template=jt, job_parameter_values=values)
    except (ValueError, DecodeValidationError) as exc:
        raise _parameter_error(list(defs), str(exc)) from None
    symbols: dict[str, str] = {}
    for pname, pv in values.items():
        raw = str(pv.value)
        symbols[f"RawParam.{pname}"] = raw
        mapped = pv.type.value == "PATH" and rules
        symbols[f"Param.{pname}"] = apply_rules(rules, raw) if mapped else raw
    needs_dir: dict[str, bool] = {}
    job_envs = list(job.jobEnvironments or ())
    job_envs_text = json.dumps(doc.get("jobEnvironments", []))
    step_docs = {str(sd.get("name")): sd for sd in doc.get("steps", []) if isinstance(sd, Mapping)}
    for step in job.steps:
        envs = job_envs + list(step.stepEnvironments or ())
        text = job_envs_text + json.dumps(step_docs.get(str(step.name), {}))
        needs_dir[str(step.name)] = (
            any(e.script is not None for e in envs)
            or bool(step.script.embeddedFiles)
            or "Session.WorkingDirectory" in text
        )
    return _Context(
        job=job,
        values=values,
        steps={s.name: s for s in job.steps},
        rules=rules,
        symbols=symbols,
        needs_dir=needs_dir,
    )


# -- planning --------------------------------------------------------------------------


def plan_template(spec: JobSpec) -> tuple[StepPlan, ...]:
    """Steps in dependency order, each with the names of the steps it depends on and
    its tasks (one per point of its parameter space; a CHUNK[INT] parameter gives one
    task per chunk, its value a range expression like ``"1-7"``)."""
    from openjd.model import StepDependencyGraph, StepParameterSpaceIterator

    ctx = _context(spec)
    graph = StepDependencyGraph(job=ctx.job)
    plans = []
    for step in graph.topo_sorted():
        space = StepParameterSpaceIterator(space=step.parameterSpace)
        tasks = tuple(
            TaskPlan({pn: _typed(pv.type.value, pv.value) if pv.type.value != "CHUNK[INT]" else str(pv.value)
                      for pn, pv in point.items()})
            for point in space
        )
        deps = tuple(str(d.dependsOn) for d in (step.dependencies or ()))
        plans.append(StepPlan(str(step.name), tasks, deps))
    return tuple(plans)


# -- running one task ------------------------------------------------------------------


def _cancel(action: Any) -> dict[str, Any]:
    method = action.cancelation
    if method is not None and method.mode.value == "NOTIFY_THEN_TERMINATE":
        period = method.notifyPeriodInSeconds
        grace = float(period) if period is not None else _DEFAULT_NOTIFY_PERIOD
        return {"mode": "NOTIFY_THEN_TERMINATE", "grace": grace}
    return {"mode": "TERMINATE", "grace": 0.0}


def _resolve(value: Any, symtab: SymbolTable, field: str) -> str:
    from openjd.model import FormatStringError

    text = str(value)
    if "{{" not in text:
        return text  # a literal: nothing to resolve
    try:
        return str(value.resolve(symtab=symtab))
    except FormatStringError as exc:
        raise InvalidSpec(field, str(exc)) from None


def _action(action: Any, symtab: SymbolTable, field: str) -> dict[str, Any]:
    argv = [_resolve(action.command, symtab, f"{field}.command")]
    argv += [_resolve(a, symtab, f"{field}.args[{i}]") for i, a in enumerate(action.args or ())]
    timeout = float(action.timeout) if action.timeout is not None else None
    return {"argv": argv, "timeout": timeout, "cancel": _cancel(action)}


def _write_files(
    files: Any, symtab: SymbolTable, scope: str, files_dir: Path, field: str
) -> None:
    """Write embedded files; their paths are defined first so a file's data may name
    itself or a sibling (``{{Task.File.other}}``)."""
    paths = []
    for f in files:
        path = files_dir / (f.filename or f.name)
        symtab[f"{scope}.File.{f.name}"] = str(path)
        paths.append(path)
    for f, path in zip(files, paths, strict=True):
        data = _resolve(f.data, symtab, f"{field}.embeddedFiles.{f.name}.data")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700 if f.runnable else 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(data)
        except OSError as exc:
            raise InvalidSpec(f"{field}.embeddedFiles.{f.name}", f"cannot write {path}: {exc}") from None


def task_run(
    spec: JobSpec,
    step_name: str,
    task_parameters: Mapping[str, Any],
    workdir: str | os.PathLike[str],
) -> RunSpec:
    """The process to start for one attempt of one task.

    ``workdir`` is this attempt's session working directory (``Session.WorkingDirectory``,
    the process's cwd); its parent must be a directory of the job's own. A step whose
    tasks cannot tell their directory apart (no embedded files, no environment actions,
    no ``{{Session.WorkingDirectory}}``) runs in that parent instead, saving a mkdir per
    task; ``spec.options["openjd_isolated_cwd"] = True`` turns that off.

    A session is one task attempt on the local farm. When no environment of the job or
    the step has onEnter/onExit actions, the task's command is returned directly (the
    fast path: one process per task, nothing in between). Otherwise the task runs under
    ``python aiofarm/adaptors/openjd_task.py`` which enters the environments in order,
    runs the task, and exits the entered environments in reverse order (also after a
    failure or a cancel). Format strings are all resolved here, with openjd-model.
    """
    from openjd.model import SymbolTable

    ctx = _context(spec)
    step = ctx.steps.get(step_name)
    if step is None:
        raise InvalidSpec("step", f"no step {step_name!r} in the template (steps: {', '.join(ctx.steps)})")
    # A task gets a directory of its own only when it can tell the difference (see
    # docs/openjd.md): creating one per task costs as much as a tenth of a trivial task.
    own = ctx.needs_dir.get(step_name, True) or spec.options.get("openjd_isolated_cwd") is True
    work = Path(workdir) if own else Path(workdir).parent
    try:
        try:
            os.mkdir(work)
        except FileNotFoundError:
            os.makedirs(work, exist_ok=True)
        except FileExistsError:
            pass
    except OSError as exc:
        raise InvalidSpec("workdir", f"cannot create {work}: {exc}") from None

    base = SymbolTable(source=dict(ctx.symbols))
    base["Session.WorkingDirectory"] = str(work)
    if ctx.rules:
        document = rules_document(ctx.rules)
        digest = hashlib.sha1(document.encode(), usedforsecurity=False).hexdigest()[:12]
        rules_file = work / f"path-mapping-{digest}.json"
        if not rules_file.exists():
            tmp = work / f".path-mapping.{uuid.uuid4().hex}"
            tmp.write_text(document, encoding="utf-8")
            os.replace(tmp, rules_file)
        base["Session.HasPathMappingRules"] = "true"
        base["Session.PathMappingRulesFile"] = str(rules_file)
    else:
        base["Session.HasPathMappingRules"] = "false"
        base["Session.PathMappingRulesFile"] = ""

    files_dir: Path | None = None

    def fresh_dir() -> Path:
        nonlocal files_dir
        if files_dir is None:
            files_dir = Path(tempfile.mkdtemp(prefix="openjd-files-", dir=work))
        return files_dir

    env: dict[str, str] = dict(spec.env)
    environments: list[dict[str, Any]] = []
    scripted = False
    all_envs = [("jobEnvironments", e) for e in (ctx.job.jobEnvironments or ())]
    all_envs += [(f"steps.{step_name}.stepEnvironments", e) for e in (step.stepEnvironments or ())]
    for where, environment in all_envs:
        field = f"{where}.{environment.name}"
        variables = {
            str(k): _resolve(v, base, f"{field}.variables.{k}")
            for k, v in (environment.variables or {}).items()
        }
        entry: dict[str, Any] = {"name": str(environment.name), "variables": variables, "enter": None, "exit": None}
        script = environment.script
        if script is not None:
            symtab = SymbolTable(source=base)
            if script.embeddedFiles:
                _write_files(script.embeddedFiles, symtab, "Env", fresh_dir(), field)
            acts = script.actions
            if acts.onEnter is not None:
                entry["enter"] = _action(acts.onEnter, symtab, f"{field}.script.actions.onEnter")
            if acts.onExit is not None:
                entry["exit"] = _action(acts.onExit, symtab, f"{field}.script.actions.onExit")
            scripted = scripted or entry["enter"] is not None or entry["exit"] is not None
        environments.append(entry)
    if not scripted:
        # With no actions to run, environments are only their variables: plain process env.
        for entry in environments:
            env.update(entry["variables"])

    defs = step.parameterSpace.taskParameterDefinitions if step.parameterSpace else {}
    given = dict(task_parameters)
    if set(given) != set(defs):
        raise InvalidSpec(
            "task_parameters", f"step {step_name!r} takes {sorted(defs)}, got {sorted(given)}"
        )
    symtab = SymbolTable(source=base)
    for pname, tparam in defs.items():
        ptype = tparam.type.value
        raw = str(given[pname])
        symtab[f"Task.RawParam.{pname}"] = raw
        symtab[f"Task.Param.{pname}"] = apply_rules(ctx.rules, raw) if ptype == "PATH" and ctx.rules else raw
    sfield = f"steps.{step_name}.script"
    if step.script.embeddedFiles:
        _write_files(step.script.embeddedFiles, symtab, "Task", fresh_dir(), sfield)
    task = _action(step.script.actions.onRun, symtab, f"{sfield}.actions.onRun")

    if not scripted:
        return RunSpec(
            argv=tuple(task["argv"]),
            env=env,
            cwd=str(work),
            timeout=task["timeout"],
            cancel_grace=task["cancel"]["grace"],
        )
    run_file = Path(fresh_dir()) / "session.json"
    run_file.write_text(
        json.dumps({"environments": environments, "task": task}), encoding="utf-8"
    )
    has_exit = any(e["exit"] is not None for e in environments)
    return RunSpec(
        # Run by file path, not ``-m``: the runner needs only the standard library, so
        # this works whether or not aiofarm is importable in the task's environment.
        argv=(sys.executable, _RUNNER, str(run_file)),
        env=dict(spec.env),
        cwd=str(work),
        timeout=None,  # the runner times each action itself
        cancel_grace=task["cancel"]["grace"] + (_EXIT_GRACE if has_exit else 0.0),
    )
