"""The process for one attempt of one task of a template job: format strings resolved,
embedded files written, and, when environments have actions, the session runner
(:mod:`aiofarm.openjd.session_runner`) in front of the task."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSpec
from ..models import JobSpec
from ..pathmap import apply_rules, rules_document
from .instance import job_instance
from .plan import RunSpec

if TYPE_CHECKING:
    from openjd.model import SymbolTable

__all__ = ["EXIT_GRACE", "SESSION_RUNNER", "task_run"]

#: Spec default when a NOTIFY_THEN_TERMINATE action gives no notifyPeriodInSeconds.
DEFAULT_NOTIFY_PERIOD = 120.0
#: Extra seconds the runner gets after a canceled task to run environment onExit actions.
EXIT_GRACE = 10.0
#: The session runner, started by file path (it needs only the standard library).
SESSION_RUNNER = str(Path(__file__).resolve().parent / "session_runner.py")


def _cancel(action: Any) -> dict[str, Any]:
    method = action.cancelation
    if method is not None and method.mode.value == "NOTIFY_THEN_TERMINATE":
        period = method.notifyPeriodInSeconds
        grace = float(period) if period is not None else DEFAULT_NOTIFY_PERIOD
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
    ``python aiofarm/openjd/session_runner.py`` which enters the environments in order,
    runs the task, and exits the entered environments in reverse order (also after a
    failure or a cancel). Format strings are all resolved here, with openjd-model.
    """
    from openjd.model import SymbolTable

    ctx = job_instance(spec)
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
        argv=(sys.executable, SESSION_RUNNER, str(run_file)),
        env=dict(spec.env),
        cwd=str(work),
        timeout=None,  # the runner times each action itself
        cancel_grace=task["cancel"]["grace"] + (EXIT_GRACE if has_exit else 0.0),
    )
