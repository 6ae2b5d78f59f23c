"""Loading template jobs: a job bundle directory or a template becomes a ``JobSpec``.

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

Drivers that run work themselves plan the job with :func:`aiofarm.openjd.plan.plan_job`
and build each task's process with :func:`aiofarm.openjd.taskrun.task_run`.

Parsing, validation, parameter checking, step dependency ordering, parameter-space
expansion (chunking included) and format-string resolution are all openjd-model's;
this module only maps them onto aiofarm's models and errors. ``openjd.model`` is
imported lazily so ``import aiofarm`` stays light.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Union

import attrs

from ..errors import InvalidSpec
from ..models import JobSpec
from .documents import (
    ASSET_FILES,
    PARAMETER_FILES,
    TEMPLATE_FILES,
    as_int,
    check_symlinks,
    decode,
    decode_environment,
    one_of,
    parameter_values,
    plain,
    read_document,
)
from .parameters import check_parameters, instantiate_error

__all__ = ["EnvironmentSource", "load_bundle", "read_environments", "template_spec"]

#: an environment template: a YAML/JSON file's path, the document as text (a ``str`` with a
#: line break, or starting with ``{``), or the document as a mapping
EnvironmentSource = Union[str, "os.PathLike[str]", Mapping[str, Any]]

_SPEC_FIELDS = frozenset(a.name for a in attrs.fields(JobSpec))
_RESERVED = frozenset(
    {"template", "parameters", "name", "priority", "paused", "max_failed_tasks", "retries"}
)


def load_bundle(
    path: str | os.PathLike[str],
    parameters: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    priority: int | None = None,
    paused: bool | None = None,
    max_failed_tasks: int | None = None,
    max_retries_per_task: int | None = None,
    environments: Sequence[EnvironmentSource] | None = None,
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

    ``environments``: environment templates (``environment-2023-09``; a file path, the
    YAML/JSON text, or a mapping), entered in order before the job's own environments, as a Deadline queue's
    environments are; they may define parameters of their own.
    """
    root = Path(path)
    if not root.is_dir():
        raise InvalidSpec("bundle", f"{str(root)!r} is not a directory")
    real_root = os.path.realpath(root)
    check_symlinks(root, real_root)

    template_file = one_of(root, TEMPLATE_FILES, required=True)
    assert template_file is not None
    doc = read_document(template_file)

    file_values: dict[str, Any] = {}
    settings: dict[str, Any] = {}
    values_file = one_of(root, PARAMETER_FILES, required=False)
    if values_file is not None:
        file_values, settings = parameter_values(values_file)

    options = dict(fields.pop("options", None) or {})
    assets_file = one_of(root, ASSET_FILES, required=False)
    if assets_file is not None:
        assets = read_document(assets_file)
        refs = assets.get("assetReferences")
        if not isinstance(refs, Mapping):
            raise InvalidSpec(f"{assets_file}:assetReferences", "must be a mapping")
        options["asset_references"] = dict(refs)
    options["bundle"] = str(root.resolve())

    if priority is None and "deadline:priority" in settings:
        priority = as_int(settings["deadline:priority"], f"{values_file}:deadline:priority")
    if max_failed_tasks is None and "deadline:maxFailedTasksCount" in settings:
        max_failed_tasks = as_int(
            settings["deadline:maxFailedTasksCount"], f"{values_file}:deadline:maxFailedTasksCount"
        )
    if max_retries_per_task is None and "deadline:maxRetriesPerTask" in settings:
        max_retries_per_task = as_int(
            settings["deadline:maxRetriesPerTask"], f"{values_file}:deadline:maxRetriesPerTask"
        )
    if paused is None and "deadline:targetTaskRunStatus" in settings:
        paused = str(settings["deadline:targetTaskRunStatus"]).upper() == "SUSPENDED"

    return build_spec(
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
        environments=environments,
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
    environments: Sequence[EnvironmentSource] | None = None,
    **fields: Any,
) -> JobSpec:
    """A job from a template given as YAML/JSON text or as a mapping.

    Relative PATH defaults are joined to ``template_dir`` (default: the current
    directory); with no bundle to escape, walking up from it is allowed.
    ``environments`` as for :func:`load_bundle`.
    """
    if isinstance(template, str):
        doc = _text_document(template, "template")
    elif isinstance(template, Mapping):
        doc = plain(template, "template")
    else:
        raise InvalidSpec("template", f"expected YAML/JSON text or a mapping, got {type(template).__name__}")
    options = dict(fields.pop("options", None) or {})
    tdir = Path(template_dir).absolute() if template_dir is not None else Path.cwd()
    return build_spec(
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
        environments=environments,
        options=options,
        fields=fields,
    )


def _is_document_text(text: str) -> bool:
    """A template given as text, not a file name: YAML has a line break, JSON a brace."""
    return "\n" in text or text.lstrip().startswith("{")


def _text_document(text: str, field: str) -> dict[str, Any]:
    from openjd.model import DecodeValidationError, DocumentType, document_string_to_object

    kind = DocumentType.JSON if text.lstrip().startswith("{") else DocumentType.YAML
    try:
        doc = document_string_to_object(document=text, document_type=kind)
    except DecodeValidationError as exc:
        raise InvalidSpec(field, str(exc)) from None
    if not isinstance(doc, dict):
        raise InvalidSpec(field, f"expected a mapping, got {type(doc).__name__}")
    return doc


def read_environments(environments: Sequence[EnvironmentSource] | None) -> list[dict[str, Any]]:
    """Environment templates as plain documents, each checked by openjd-model."""
    if environments is None:
        return []
    if isinstance(environments, (str, os.PathLike, Mapping)):
        raise InvalidSpec("environments", "must be a list of environment templates (paths, texts or mappings)")
    docs = []
    for i, item in enumerate(environments):
        field = f"environments[{i}]"
        if isinstance(item, str) and _is_document_text(item):
            doc, where = _text_document(item, field), field
        elif isinstance(item, (str, os.PathLike)):
            path = Path(item)
            try:
                found = path.is_file()
            except (OSError, ValueError):  # a name too long, a NUL
                found = False
            if not found:
                raise InvalidSpec(field, f"{str(path)!r} is not a file")
            doc, where = read_document(path), str(path)
        elif isinstance(item, Mapping):
            doc, where = plain(item, field), field
        else:
            raise InvalidSpec(field, f"expected a path or a mapping, got {type(item).__name__}")
        decode_environment(doc, where)
        docs.append(doc)
    return docs


def build_spec(
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
    environments: Sequence[EnvironmentSource] | None,
    options: dict[str, Any],
    fields: dict[str, Any],
) -> JobSpec:
    from openjd.model import DecodeValidationError, create_job

    for key in fields:
        if key not in _SPEC_FIELDS or key in _RESERVED or key == "command":
            raise InvalidSpec(key, "not a JobSpec field a template job takes")
    jt = decode(doc, where)
    env_docs = read_environments(environments)
    env_templates = [decode_environment(d, f"environments[{i}]") for i, d in enumerate(env_docs)]
    if env_docs:
        options["openjd_environments"] = env_docs
    typed, values = check_parameters(
        jt, parameters or {}, file_values, template_dir, allow_walk_up, env_templates
    )
    try:
        job = create_job(job_template=jt, job_parameter_values=values, environment_templates=env_templates or None)
    except DecodeValidationError as exc:
        raise instantiate_error(doc, where, list(typed), str(exc)) from None
    if name is not None and (not isinstance(name, str) or not name):
        raise InvalidSpec("name", "must be a non-empty str")
    if paused is not None and not isinstance(paused, bool):
        raise InvalidSpec("paused", "must be a bool")
    spec_priority = 50 if priority is None else as_int(priority, "priority", 0, 100)
    failed = None if max_failed_tasks is None else as_int(max_failed_tasks, "max_failed_tasks", 0)
    retries = 0 if max_retries_per_task is None else as_int(max_retries_per_task, "max_retries_per_task", 0)
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
