"""A template job instantiated once per template + parameters (+ path mapping), and
cached: a driver plans a job once and builds a process per task, and decoding and
instantiating with openjd-model costs milliseconds of pydantic each time."""

from __future__ import annotations

import collections
import json
import threading
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..errors import InvalidSpec
from ..models import JobSpec, PathMappingRule
from ..pathmap import apply_rules, normalize_rule
from .documents import decode, json_default, plain
from .parameters import input_value, keep_foreign_paths, parameter_error

__all__ = ["JobInstance", "environment_templates", "job_instance", "record_types"]


@attrs.frozen(eq=False)
class JobInstance:
    job: Any  # openjd.model Job
    values: Any  # openjd.model JobParameterValues
    steps: Mapping[str, Any]
    rules: tuple[PathMappingRule, ...]
    # per step: the symbol table every task of the step starts from: Param.* (path-mapped),
    # RawParam.*, with EXPR also Job.Name, Step.Name and the step's ``let`` values, typed
    # for the expression engine
    tables: Mapping[str, Any]
    # per step: whether its tasks need a session directory of their own
    needs_dir: Mapping[str, bool]
    # environment templates (queue environments), entered before the job's own
    external: tuple[Any, ...] = ()
    extensions: frozenset[str] = frozenset()
    # per step: which of its tasks may share a session (taskrun.session_key), read per task
    session_keys: Mapping[str, str | None] = attrs.field(factory=dict)


_cache: collections.OrderedDict[str, JobInstance] = collections.OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 64
_by_id: collections.OrderedDict[int, tuple[weakref.ref[JobSpec], JobInstance]] = collections.OrderedDict()


def job_instance(spec: JobSpec) -> JobInstance:
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
        [
            spec.template,
            spec.parameters,
            [attrs.astuple(r) for r in rules],
            spec.options.get("openjd_environments"),
        ],
        sort_keys=True,
        default=json_default,
    )
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
    if hit is None:
        hit = _instantiate(spec, rules)
        with _cache_lock:
            _cache[key] = hit
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    with _cache_lock:
        _by_id[id(spec)] = (weakref.ref(spec), hit)
        while len(_by_id) > _CACHE_SIZE:
            _by_id.popitem(last=False)
    return hit


def environment_templates(spec: JobSpec) -> list[Any]:
    """The decoded environment templates a submission named (``options["openjd_environments"]``)."""
    from .documents import decode_environment

    docs = spec.options.get("openjd_environments") or ()
    if not isinstance(docs, (list, tuple)):
        raise InvalidSpec("options.openjd_environments", "must be a list of environment templates")
    return [decode_environment(plain(d, f"environments[{i}]"), f"environments[{i}]") for i, d in enumerate(docs)]


def record_types(symtab: Any, key: str, raw_key: str, ptype: str) -> None:
    """EXPR types of ``Param.X``/``RawParam.X`` (or ``Task.``...): the declared type for
    the mapped value; the raw one is a plain string for PATH (and LIST[STRING] for
    LIST[PATH]), as the reference runtime types them. Legacy templates ignore types."""
    if ptype == "CHUNK[INT]":
        return  # a range string: the engine infers it
    symtab.expr_types[key] = ptype
    if ptype == "LIST[PATH]":
        symtab.expr_types[raw_key] = "LIST[STRING]"
    elif ptype != "PATH":
        symtab.expr_types[raw_key] = ptype


def _instantiate(spec: JobSpec, rules: tuple[PathMappingRule, ...]) -> JobInstance:
    from openjd.model import (
        DecodeValidationError,
        SymbolTable,
        create_job,
        create_job_with_symbol_tables,
        preprocess_job_parameters,
    )

    assert spec.template is not None
    doc = plain(spec.template, "template")
    jt = decode(doc, "template")
    external = environment_templates(spec)
    defs = {p.name: p for p in (jt.parameterDefinitions or [])}
    for env_t in external:
        for p in env_t.parameterDefinitions or []:
            defs.setdefault(p.name, p)
    inputs = {}
    for pname, value in spec.parameters.items():
        if pname not in defs:
            raise InvalidSpec(f"parameters.{pname}", "not defined by the template")
        inputs[pname] = input_value(pname, defs[pname].type.value, value)
    extensions = frozenset(str(getattr(e, "value", e)) for e in (jt.extensions or ()))
    step_tables: dict[str, Any] = {}
    try:
        # Values were resolved at submission; no template dir to check against here.
        values = preprocess_job_parameters(
            job_template=jt,
            job_parameter_values=inputs,
            job_template_dir=Path("/"),
            current_working_dir=Path("/"),
            allow_job_template_dir_walk_up=True,
            environment_templates=external or None,
        )
        keep_foreign_paths(values, inputs)
        if "EXPR" in extensions:
            from openjd.expr import PathFormat

            made = create_job_with_symbol_tables(
                job_template=jt, job_parameter_values=values, environment_templates=external or None
            )
            job = made.job
            for sname, table in made.step_symbol_tables.items():
                engine = table.to_symtab(path_format=PathFormat.POSIX)
                step_tables[sname] = {name: engine[name] for name in engine.symbols}
        else:
            job = create_job(job_template=jt, job_parameter_values=values, environment_templates=external or None)
    except (ValueError, DecodeValidationError) as exc:
        raise parameter_error(list(defs), str(exc)) from None
    base = SymbolTable()
    for pname, pv in values.items():
        raw = pv.value
        ptype = pv.type.value
        key, raw_key = f"Param.{pname}", f"RawParam.{pname}"
        base[raw_key] = raw
        if ptype == "PATH" and rules:
            base[key] = apply_rules(rules, str(raw))
        elif ptype == "LIST[PATH]" and rules:
            base[key] = [apply_rules(rules, str(v)) for v in raw]
        else:
            base[key] = raw
        record_types(base, key, raw_key, ptype)
    if "EXPR" in extensions:
        base["Job.Name"] = str(job.name)
    tables: dict[str, Any] = {}
    for step in job.steps:
        # the create-time step scope first (Step.Name, the step's let values), then
        # this host's values over it, as the reference runtime layers them
        table = SymbolTable(source=dict(step_tables.get(str(step.name), {}))).union(base)
        if "EXPR" in extensions:
            table["Step.Name"] = str(step.name)
            table.expr_host_rules = []  # host scope: apply_path_mapping() and the like work
        tables[str(step.name)] = table
    needs_dir: dict[str, bool] = {}
    job_envs = [*(e.environment for e in external), *(job.jobEnvironments or ())]
    job_envs_text = json.dumps(doc.get("jobEnvironments", [])) + json.dumps(
        [plain(d, "environments") for d in spec.options.get("openjd_environments") or ()]
    )
    step_docs = {str(sd.get("name")): sd for sd in doc.get("steps", []) if isinstance(sd, Mapping)}
    session_keys: dict[str, str | None] = {}
    for step in job.steps:
        envs = job_envs + list(step.stepEnvironments or ())
        text = job_envs_text + json.dumps(step_docs.get(str(step.name), {}))
        scripted = any(e.script is not None for e in envs)
        needs_dir[str(step.name)] = (
            scripted
            or bool(step.script.embeddedFiles)
            or "Session." in text  # the directory or the path-mapping rules file
        )
        # tasks with the same key share a session: the same environments (the step's own
        # make it the step's); None: no environment actions to share
        session_keys[str(step.name)] = (str(step.name) if step.stepEnvironments else "") if scripted else None
    return JobInstance(
        job=job,
        values=values,
        steps={s.name: s for s in job.steps},
        rules=rules,
        tables=tables,
        needs_dir=needs_dir,
        session_keys=session_keys,
        external=tuple(external),
        extensions=extensions,
    )
