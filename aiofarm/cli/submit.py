"""``aiofarm submit FILE``: JobSpecs from a JSON or YAML file (``-`` reads stdin).

The file holds one spec (a mapping with JobSpec's field names: ``command``, ``name``,
``env``, ``resources: {cpu, memory_mb, gpu}``, ``depends_on``, ``labels``, ...), a list
of specs, or ``{"jobs": [...]}``. Several specs are one batch: a spec may name another
spec's ``id`` in ``depends_on``. An unknown field or a wrong type is an error naming
it (``jobs[2].comand: unknown field``) before anything is submitted.

Prints each job's id, one a line, in the file's order (``-o json|yaml`` the jobs);
``--wait`` then waits for them and exits 0 if all succeeded, 1 if not.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from ..errors import InvalidSpec
from .common import EXIT_FAILED, Options, run_command

__all__ = ["register", "specs_from", "submit"]

_NESTED = {"resources", "path_mapping"}


def _spec(item: Any, field: str) -> Any:
    import attrs

    from ..models import JobSpec, PathMappingRule, Resources

    if not isinstance(item, dict):
        raise InvalidSpec(field, f"must be a mapping of JobSpec fields, got {type(item).__name__}")
    known = {a.name for a in attrs.fields(JobSpec)}
    args: dict[str, Any] = {}
    for key, value in item.items():
        if key not in known:
            raise InvalidSpec(f"{field}.{key}", f"unknown field (JobSpec has {', '.join(sorted(known))})")
        args[key] = value
    try:
        if "resources" in args:
            if not isinstance(args["resources"], dict):
                raise InvalidSpec(f"{field}.resources", "must be a mapping (cpu, memory_mb, gpu)")
            args["resources"] = Resources(**args["resources"])
        if "path_mapping" in args:
            rules = args["path_mapping"]
            if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
                raise InvalidSpec(f"{field}.path_mapping", "must be a list of mappings")
            args["path_mapping"] = tuple(PathMappingRule(**r) for r in rules)
        return JobSpec(**args)
    except TypeError as exc:
        raise InvalidSpec(field, str(exc)) from None


def specs_from(text: str, source: str) -> list[Any]:
    """The JobSpecs a JSON or YAML document holds."""
    import json

    try:
        data = json.loads(text)
    except ValueError:
        import yaml  # type: ignore[import-untyped]

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InvalidSpec("file", f"{source} is neither JSON nor YAML: {exc}") from None
    if isinstance(data, dict) and set(data) == {"jobs"}:
        data = data["jobs"]
    if isinstance(data, dict):
        return [_spec(data, "job")]
    if not isinstance(data, list) or not data:
        raise InvalidSpec("file", f"{source} must hold a JobSpec mapping or a non-empty list of them")
    return [_spec(item, f"jobs[{i}]") for i, item in enumerate(data)]


@click.command()
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--wait", is_flag=True, help="Wait for the jobs; exit 0 if all succeeded, 1 if not.")
@click.option(
    "--output", "-o", "fmt", type=click.Choice(["name", "json", "yaml"]), default="name",
    show_default=True, help="name: the ids, one a line; json/yaml: the jobs.",
)
@click.pass_obj
def submit(opts: Options, file: Any, wait: bool, fmt: str) -> None:
    """Submit the JobSpecs of FILE (JSON or YAML; - for stdin) as one batch.

    \b
      aiofarm submit job.yaml
      echo '[{"command": ["echo", "a"]}, {"command": "echo b"}]' | aiofarm submit -
    """

    async def go() -> int:
        specs = specs_from(file.read(), file.name)
        async with opts.client() as farm:
            jobs = await farm.jobs.submit(specs)
            from .formats import emit
            from .views import JOB_COLUMNS, job_dict

            emit(jobs, fmt, columns=JOB_COLUMNS, to_dict=job_dict, name=lambda j: j.id, empty="")
            if not wait:
                return 0
            sys.stdout.flush()
            from ..models import JobStatus
            from .render import wait_progress

            ids = [j.id for j in jobs]
            good = await wait_progress(
                farm.jobs.as_completed(ids), len(ids), lambda j: j.status is JobStatus.SUCCEEDED, "waiting"
            )
        return 0 if good == len(jobs) else EXIT_FAILED

    sys.exit(run_command(go))


def register(group: click.Group) -> None:
    group.add_command(submit)
