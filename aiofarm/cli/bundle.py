"""``aiofarm bundle submit`` and ``aiofarm template submit``: Open Job Description jobs
from the command line, with the Deadline Cloud CLI's option names where they overlap
(``deadline bundle submit -p Frames=1-100 ./bundle``).

Prints the job id (``--json``: the job as JSON). ``--wait`` waits for the job and exits
with its outcome: 0 succeeded, 1 failed or canceled (the failed tasks listed on stderr),
2 a bad bundle, option or any other aiofarm error, 130 interrupted.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import InvalidSpec
from ..models import JobStatus
from .common import EXIT_FAILED, Options, note, run_command
from .output import describe_end, duration, job_dict

if TYPE_CHECKING:
    from ..client import Client
    from ..models import CompletionResult, JobSpec, PathMappingRule, Task

__all__ = ["bundle", "register", "template"]


def _parameters(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def _submit_options(fn: Any) -> Any:
    """The options both ``bundle submit`` and ``template submit`` take (outermost last)."""
    for decorator in reversed(
        [
            click.option(
                "-p",
                "--parameter",
                "parameters",
                multiple=True,
                metavar="NAME=VALUE",
                callback=_parameters,
                help="A job parameter value (repeatable).",
            ),
            click.option(
                "--parameters-file",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Parameter values from a YAML/JSON file: {parameterValues: [{name, value}]} "
                "or a plain mapping; -p wins over it.",
            ),
            click.option("--name", help="Job name (default: the template's)."),
            click.option("--priority", type=click.IntRange(0, 100), help="0..100, higher first (default 50)."),
            click.option("--max-failed-tasks", type=click.IntRange(min=0), help="Fail the job after this many failed tasks."),
            click.option("--max-retries-per-task", type=click.IntRange(min=0), help="Extra attempts per task."),
            click.option("--max-worker-count", type=click.IntRange(min=1), help="At most this many tasks at once."),
            click.option("--submit-as-suspended", is_flag=True, help="Submit the job paused (resume it later)."),
            click.option(
                "--environment",
                "environments",
                multiple=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="An environment template entered before the job's own (repeatable, in order).",
            ),
            click.option(
                "--path-mapping-rules",
                type=click.Path(exists=True, dir_okay=False, path_type=Path),
                help="Path mapping rules: a pathmapping-1.0 JSON/YAML file.",
            ),
            click.option("--pool", help="Pool (queue, partition) to run in."),
            click.option("--wait", is_flag=True, help="Wait for the job; exit 0 if it succeeded, 1 if not."),
            click.option("--json", "as_json", is_flag=True, help="Print the job as JSON."),
        ]
    ):
        fn = decorator(fn)
    return fn


def _file_parameters(path: Path | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Values and ``deadline:*`` settings from a parameters file."""
    if path is None:
        return {}, {}
    from ..openjd.documents import read_document

    doc = read_document(path)
    if "parameterValues" in doc:
        from ..openjd.documents import parameter_values

        return parameter_values(path)
    values = {str(k): v for k, v in doc.items() if ":" not in str(k)}
    settings = {str(k): v for k, v in doc.items() if str(k).startswith("deadline:")}
    return values, settings


def _rules(path: Path | None) -> tuple[PathMappingRule, ...]:
    """A ``pathmapping-1.0`` document, as an OpenJD worker is given one."""
    if path is None:
        return ()
    from ..models import PathMappingRule
    from ..openjd.documents import read_document

    items = read_document(path).get("path_mapping_rules")
    if not isinstance(items, list):
        raise InvalidSpec("--path-mapping-rules", "expected {version: pathmapping-1.0, path_mapping_rules: [...]}")
    rules = []
    for i, item in enumerate(items):
        field = f"--path-mapping-rules[{i}]"
        if not isinstance(item, dict):
            raise InvalidSpec(field, "must be a mapping")
        try:
            fmt = str(item["source_path_format"]).lower()
            rules.append(
                PathMappingRule(
                    source_os="windows" if fmt == "windows" else "posix",
                    source=str(item["source_path"]),
                    destination=str(item["destination_path"]),
                )
            )
        except KeyError as exc:
            raise InvalidSpec(field, f"missing {exc.args[0]}") from None
    return tuple(rules)


def _settings(file_settings: dict[str, Any], kw: dict[str, Any]) -> dict[str, Any]:
    """Call options win over a parameters file's ``deadline:*`` settings."""
    from ..openjd.documents import as_int

    out = dict(kw)
    pairs = {
        "priority": "deadline:priority",
        "max_failed_tasks": "deadline:maxFailedTasksCount",
        "max_retries_per_task": "deadline:maxRetriesPerTask",
    }
    for key, name in pairs.items():
        if out.get(key) is None and name in file_settings:
            out[key] = as_int(file_settings[name], f"--parameters-file:{name}")
    if out.get("paused") is None and "deadline:targetTaskRunStatus" in file_settings:
        out["paused"] = str(file_settings["deadline:targetTaskRunStatus"]).upper() == "SUSPENDED"
    return out


def _spec(kind: str, source: Path, opts: dict[str, Any]) -> JobSpec:
    from ..openjd.loading import load_bundle, template_spec

    file_values, file_settings = _file_parameters(opts["parameters_file"])
    parameters = {**file_values, **opts["parameters"]}
    kw: dict[str, Any] = _settings(
        file_settings,
        {
            "name": opts["name"],
            "priority": opts["priority"],
            "max_failed_tasks": opts["max_failed_tasks"],
            "max_retries_per_task": opts["max_retries_per_task"],
            "paused": True if opts["submit_as_suspended"] else None,
        },
    )
    extra: dict[str, Any] = {}
    if opts["max_worker_count"] is not None:
        extra["max_workers"] = opts["max_worker_count"]
    if opts["pool"] is not None:
        extra["pool"] = opts["pool"]
    rules = _rules(opts["path_mapping_rules"])
    if rules:
        extra["path_mapping"] = rules
    envs = [str(p) for p in opts["environments"]] or None
    if kind == "bundle":
        return load_bundle(source, parameters, environments=envs, **kw, **extra)
    try:
        text = source.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSpec(str(source), f"cannot read: {exc}") from None
    return template_spec(
        text, parameters, template_dir=source.resolve().parent, environments=envs, **kw, **extra
    )


def _task_line(task: Task) -> str:
    what = task.reason or (f"exit code {task.exit_code}" if task.exit_code is not None else task.status.value)
    params = ", ".join(f"{k}={v}" for k, v in task.parameters.items())
    return f"  {task.id}{f' ({params})' if params else ''}: {what}"


async def _follow(farm: Client, job_id: str) -> CompletionResult:
    """Wait, showing the job's task progress on a terminal (statuses on stderr otherwise)."""
    import anyio

    seen: list[JobStatus] = []

    def on_status(job: Any) -> None:
        if not seen or seen[-1] is not job.status:
            seen.append(job.status)
            if not job.status.is_finished:
                note(f"job {job.id} {job.status.value}", dim=True)

    if not sys.stderr.isatty():
        return await farm.jobs.wait(job_id, on_status=on_status)

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("tasks"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[summary]}"), console=Console(stderr=True),
    )
    result: list[CompletionResult] = []
    with progress:
        bar = progress.add_task("tasks", total=None, summary="")
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                result.append(await farm.jobs.wait(job_id, on_status=on_status))
                tg.cancel_scope.cancel()

            tg.start_soon(waiter)
            while True:  # the bar only: the wait above is what ends this
                job = await farm.jobs.get(job_id)
                counts = job.task_counts
                total = sum(counts.values()) or None
                done = sum(n for s, n in counts.items() if JobStatus(s).is_finished) if total else 0
                summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()) if n)
                progress.update(bar, total=total, completed=done, summary=summary)
                await anyio.sleep(1.0)
    return result[0]


async def _submit(opts: Options, kind: str, source: Path, params: dict[str, Any]) -> int:
    spec = _spec(kind, source, params)  # a bad bundle fails before connecting
    async with opts.client() as farm:
        from .render import TransferBar

        with TransferBar() as bar:  # job attachments being hashed and uploaded (Deadline)
            (job,) = await farm.jobs.submit([spec], on_progress=bar)
        if not params["wait"]:
            click.echo(json.dumps(job_dict(job), indent=2) if params["as_json"] else job.id)
            return 0
        if not params["as_json"]:
            click.echo(job.id)
            sys.stdout.flush()
        result = await _follow(farm, job.id)
    final = result.job
    if params["as_json"]:
        out = job_dict(final)
        out["failed_tasks"] = [
            {"id": t.id, "step": t.step, "parameters": dict(t.parameters), "exit_code": t.exit_code, "reason": t.reason}
            for t in result.failed_tasks
        ]
        click.echo(json.dumps(out, indent=2))
    if final.status is JobStatus.SUCCEEDED:
        note(f"job {final.id} succeeded in {duration(final)}", dim=True)
        return 0
    note(describe_end(final), fg="red")
    if result.failed_tasks:
        note(f"{len(result.failed_tasks)} failed task(s); `aiofarm retry {final.id}` reruns just those:", fg="red")
        for task in result.failed_tasks[:20]:
            click.echo(_task_line(task), err=True)
        if len(result.failed_tasks) > 20:
            click.echo(f"  ... and {len(result.failed_tasks) - 20} more", err=True)
    return EXIT_FAILED


@click.group()
def bundle() -> None:
    """Open Job Description job bundles (a directory with template.yaml)."""


@bundle.command("submit")
@click.argument("directory", type=click.Path(exists=True, file_okay=False, path_type=Path))
@_submit_options
@click.pass_obj
def bundle_submit(opts: Options, /, directory: Path, **params: Any) -> None:
    """Submit the job bundle DIRECTORY; print the job's id.

    \b
      aiofarm bundle submit -p Frames=1-100 ./render-bundle
      aiofarm bundle submit --environment conda.yaml --wait ./render-bundle
    """
    sys.exit(run_command(lambda: _submit(opts, "bundle", directory, params)))


@click.group()
def template() -> None:
    """Open Job Description job templates (one YAML/JSON file)."""


@template.command("submit")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@_submit_options
@click.pass_obj
def template_submit(opts: Options, /, file: Path, **params: Any) -> None:
    """Submit the job template FILE; print the job's id (relative PATH defaults are
    taken from FILE's directory)."""
    sys.exit(run_command(lambda: _submit(opts, "template", file, params)))


def register(group: click.Group) -> None:
    group.add_command(bundle)
    group.add_command(template)
