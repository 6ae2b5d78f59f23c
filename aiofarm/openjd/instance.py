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

__all__ = ["JobInstance", "job_instance"]


@attrs.frozen(eq=False)
class JobInstance:
    job: Any  # openjd.model Job
    values: Any  # openjd.model JobParameterValues
    steps: Mapping[str, Any]
    rules: tuple[PathMappingRule, ...]
    # Param.* (path-mapped) and RawParam.* for every task's symbol table
    symbols: Mapping[str, str]
    # per step: whether its tasks need a session directory of their own
    needs_dir: Mapping[str, bool]


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
        [spec.template, spec.parameters, [attrs.astuple(r) for r in rules]],
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


def _instantiate(spec: JobSpec, rules: tuple[PathMappingRule, ...]) -> JobInstance:
    from openjd.model import DecodeValidationError, create_job, preprocess_job_parameters

    assert spec.template is not None
    doc = plain(spec.template, "template")
    jt = decode(doc, "template")
    defs = {p.name: p for p in (jt.parameterDefinitions or [])}
    inputs = {}
    for pname, value in spec.parameters.items():
        if pname not in defs:
            raise InvalidSpec(f"parameters.{pname}", "not defined by the template")
        inputs[pname] = input_value(pname, defs[pname].type.value, value)
    try:
        # Values were resolved at submission; no template dir to check against here.
        values = preprocess_job_parameters(
            job_template=jt,
            job_parameter_values=inputs,
            job_template_dir=Path(),
            current_working_dir=Path(),
            allow_job_template_dir_walk_up=True,
        )
        keep_foreign_paths(values, inputs)
        job = create_job(job_template=jt, job_parameter_values=values)
    except (ValueError, DecodeValidationError) as exc:
        raise parameter_error(list(defs), str(exc)) from None
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
    return JobInstance(
        job=job,
        values=values,
        steps={s.name: s for s in job.steps},
        rules=rules,
        symbols=symbols,
        needs_dir=needs_dir,
    )
