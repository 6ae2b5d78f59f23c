"""The process for one task of a template job: format strings resolved (expressions
too, with the EXPR extension), embedded files written, and, when environments have
actions, the session runner (:mod:`aiofarm.openjd.session_runner`) in front of it.

Two shapes:

- :func:`task_run`: one process for one task attempt (a session of one task);
- :func:`session_run` + :func:`session_task`: one session process that enters the
  environments once and is then handed task after task on its stdin, for a driver that
  keeps a session per worker slot. :func:`session_key` says which tasks may share one;
- :func:`session_batch`: one session process given all its tasks up front, for a batch
  scheduler (Slurm) that starts a session per array element.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSpec
from ..models import JobSpec
from ..pathmap import apply_rules, rules_document
from .instance import JobInstance, job_instance, record_types
from .plan import RunSpec

if TYPE_CHECKING:
    from openjd.model import SymbolTable

__all__ = [
    "EXIT_GRACE",
    "SESSION_RUNNER",
    "session_batch",
    "session_key",
    "session_run",
    "session_task",
    "task_run",
]

#: Spec default when a NOTIFY_THEN_TERMINATE action gives no notifyPeriodInSeconds.
DEFAULT_NOTIFY_PERIOD = 120.0
#: Extra seconds the runner gets after a canceled task to run environment onExit actions.
EXIT_GRACE = 10.0
#: The session runner, started by file path (it needs only the standard library).
SESSION_RUNNER = str(Path(__file__).resolve().parent / "session_runner.py")
#: the name of the path-mapping rules file in a session directory
RULES_FILE = "path-mapping-rules.json"


def _resolve(value: Any, symtab: SymbolTable, field: str) -> str:
    from openjd.model import FormatStringError

    text = str(value)
    if "{{" not in text:
        return text  # a literal: nothing to resolve
    try:
        return str(value.resolve(symtab=symtab))
    except FormatStringError as exc:
        raise InvalidSpec(field, str(exc)) from None


def _resolve_args(args: Any, symtab: SymbolTable, field: str) -> list[str]:
    """Arguments as the reference runtime builds them: a whole-field expression that
    gives a list becomes one argument per item, one that gives null none (EXPR)."""
    from openjd.model import FormatStringError

    out: list[str] = []
    for i, arg in enumerate(args or ()):
        text = str(arg)
        if "{{" not in text:
            out.append(text)
            continue
        try:
            value = arg.resolve_value(symtab=symtab)
        except FormatStringError:
            out.append(_resolve(arg, symtab, f"{field}[{i}]"))
            continue
        if isinstance(value, str):
            out.append(value)
        elif getattr(value, "is_null", False):
            continue
        elif str(getattr(value, "type", "")).lower().startswith("list"):
            out.extend(str(item) for item in value)
        else:
            out.append(str(value))
    return out


def _number(value: Any, symtab: SymbolTable, field: str) -> float | None:
    """An int field that FEATURE_BUNDLE_1 lets be a format string (timeout, notify period)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = _resolve(value, symtab, field)
    try:
        number = float(text)
    except ValueError:
        raise InvalidSpec(field, f"must resolve to a number, got {text!r}") from None
    if number <= 0:
        raise InvalidSpec(field, f"must be positive, got {text!r}")
    return number


def _cancel(action: Any, symtab: SymbolTable, field: str) -> dict[str, Any]:
    method = action.cancelation
    if method is not None and method.mode.value == "NOTIFY_THEN_TERMINATE":
        period = _number(method.notifyPeriodInSeconds, symtab, f"{field}.cancelation.notifyPeriodInSeconds")
        return {"mode": "NOTIFY_THEN_TERMINATE", "grace": period if period is not None else DEFAULT_NOTIFY_PERIOD}
    return {"mode": "TERMINATE", "grace": 0.0}


def _action(action: Any, symtab: SymbolTable, field: str) -> dict[str, Any]:
    argv = [_resolve(action.command, symtab, f"{field}.command")]
    argv += _resolve_args(action.args, symtab, f"{field}.args")
    timeout = _number(action.timeout, symtab, f"{field}.timeout")
    return {"argv": argv, "timeout": timeout, "cancel": _cancel(action, symtab, field)}


def _let(bindings: Any, symtab: SymbolTable, field: str) -> None:
    """A script's own ``let`` bindings (EXPR), evaluated at session time."""
    if not bindings:
        return
    from openjd.model import evaluate_let_bindings

    try:
        evaluate_let_bindings(symtab=symtab, let_bindings=list(bindings))
    except ValueError as exc:
        raise InvalidSpec(f"{field}.let", str(exc)) from None


def _write_files(files: Any, symtab: SymbolTable, scope: str, files_dir: Path, field: str) -> None:
    """Write embedded files; their paths are defined first so a file's data may name
    itself or a sibling (``{{Task.File.other}}``)."""
    paths = []
    for f in files:
        path = files_dir / (f.filename or f.name)
        symtab[f"{scope}.File.{f.name}"] = str(path)
        paths.append(path)
    for f, path in zip(files, paths, strict=True):
        data = _resolve(f.data, symtab, f"{field}.embeddedFiles.{f.name}.data")
        eol = getattr(getattr(f, "endOfLine", None), "value", None)
        if eol == "CRLF":  # FEATURE_BUNDLE_1; AUTO and LF are this host's \n
            data = data.replace("\r\n", "\n").replace("\n", "\r\n")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o700 if f.runnable else 0o600)
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as out:
                out.write(data)
        except OSError as exc:
            raise InvalidSpec(f"{field}.embeddedFiles.{f.name}", f"cannot write {path}: {exc}") from None


def _make_dir(work: Path) -> None:
    try:
        try:
            os.mkdir(work, 0o700)
        except FileNotFoundError:
            os.makedirs(work, mode=0o700, exist_ok=True)
        except FileExistsError:
            pass
    except OSError as exc:
        raise InvalidSpec("workdir", f"cannot create {work}: {exc}") from None


class _Session:
    """The symbols and files of one session directory."""

    def __init__(self, spec: JobSpec, step_name: str, workdir: str | os.PathLike[str], *, shared_ok: bool) -> None:
        from openjd.model import SymbolTable

        self.spec = spec
        self.ctx: JobInstance = job_instance(spec)
        step = self.ctx.steps.get(step_name)
        if step is None:
            raise InvalidSpec("step", f"no step {step_name!r} in the template (steps: {', '.join(self.ctx.steps)})")
        self.step = step
        self.step_name = step_name
        # A task gets a directory of its own only when it can tell the difference (see
        # docs/openjd.md): creating one per task costs as much as a tenth of a trivial task.
        self.own = not shared_ok or self.ctx.needs_dir.get(step_name, True) or spec.options.get("openjd_isolated_cwd") is True
        self.work = Path(workdir) if self.own else Path(workdir).parent
        _make_dir(self.work)
        base = SymbolTable(source=self.ctx.tables[step_name])
        base["Session.WorkingDirectory"] = str(self.work)
        base.expr_types["Session.WorkingDirectory"] = "PATH"
        base["Session.HasPathMappingRules"] = "true" if self.ctx.rules else "false"
        if self.own:
            # always a file, which may hold no rules (the spec's promise to actions)
            rules_file = self.work / RULES_FILE
            if not rules_file.exists():
                rules_file.write_text(rules_document(self.ctx.rules), encoding="utf-8")
            base["Session.PathMappingRulesFile"] = str(rules_file)
        else:
            base["Session.PathMappingRulesFile"] = ""  # nothing in the step refers to it
        self.base = base
        self.files_dir: Path | None = None

    def fresh_dir(self) -> Path:
        if self.files_dir is None:
            self.files_dir = Path(tempfile.mkdtemp(prefix="openjd-files-", dir=self.work))
        return self.files_dir

    def environments(self) -> tuple[list[dict[str, Any]], bool]:
        """Environment entries for the runner (queue environments, then the job's, then
        the step's) and whether any has an action to run."""
        from openjd.model import SymbolTable

        ctx, step = self.ctx, self.step
        all_envs = [(f"environments[{i}]", t.environment) for i, t in enumerate(ctx.external)]
        all_envs += [("jobEnvironments", e) for e in (ctx.job.jobEnvironments or ())]
        all_envs += [(f"steps.{self.step_name}.stepEnvironments", e) for e in (step.stepEnvironments or ())]
        entries: list[dict[str, Any]] = []
        scripted = False
        for where, environment in all_envs:
            field = f"{where}.{environment.name}"
            variables = {
                str(k): _resolve(v, self.base, f"{field}.variables.{k}")
                for k, v in (environment.variables or {}).items()
            }
            entry: dict[str, Any] = {"name": str(environment.name), "variables": variables, "enter": None, "exit": None}
            script = environment.script
            if script is not None:
                symtab = SymbolTable(source=self.base)
                if script.embeddedFiles:
                    _write_files(script.embeddedFiles, symtab, "Env", self.fresh_dir(), field)
                _let(getattr(script, "let", None), symtab, f"{field}.script")
                acts = script.actions
                if acts.onEnter is not None:
                    entry["enter"] = _action(acts.onEnter, symtab, f"{field}.script.actions.onEnter")
                if acts.onExit is not None:
                    entry["exit"] = _action(acts.onExit, symtab, f"{field}.script.actions.onExit")
                scripted = scripted or entry["enter"] is not None or entry["exit"] is not None
            entries.append(entry)
        return entries, scripted

    def task(self, task_parameters: Mapping[str, Any]) -> dict[str, Any]:
        """The runner's ACTION for one task (its embedded files written)."""
        from openjd.model import SymbolTable

        step, ctx = self.step, self.ctx
        defs = step.parameterSpace.taskParameterDefinitions if step.parameterSpace else {}
        given = dict(task_parameters)
        if set(given) != set(defs):
            raise InvalidSpec(
                "task_parameters", f"step {self.step_name!r} takes {sorted(defs)}, got {sorted(given)}"
            )
        symtab = SymbolTable(source=self.base)
        for pname, tparam in defs.items():
            ptype = tparam.type.value
            raw = str(given[pname])
            key, raw_key = f"Task.Param.{pname}", f"Task.RawParam.{pname}"
            symtab[raw_key] = raw
            symtab[key] = apply_rules(ctx.rules, raw) if ptype == "PATH" and ctx.rules else raw
            record_types(symtab, key, raw_key, ptype)
        sfield = f"steps.{self.step_name}.script"
        if step.script.embeddedFiles:
            # each task its own files directory: consecutive tasks of a session must
            # not overwrite a file an earlier one may still be reading
            self.files_dir = None
            _write_files(step.script.embeddedFiles, symtab, "Task", self.fresh_dir(), sfield)
        _let(getattr(step.script, "let", None), symtab, sfield)
        return _action(step.script.actions.onRun, symtab, f"{sfield}.actions.onRun")

    def runner(self, plan: dict[str, Any], extra: tuple[str, ...], grace: float, has_exit: bool) -> RunSpec:
        run_file = self.fresh_dir() / "session.json"
        run_file.write_text(json.dumps(plan), encoding="utf-8")
        return RunSpec(
            # Run by file path, not ``-m``: the runner needs only the standard library, so
            # this works whether or not aiofarm is importable in the task's environment.
            argv=(sys.executable, SESSION_RUNNER, str(run_file), *extra),
            env=dict(self.spec.env),
            cwd=str(self.work),
            timeout=None,  # the runner times each action itself
            cancel_grace=grace + (EXIT_GRACE if has_exit else 0.0),
            session_dir=str(self.work) if self.own else None,
        )


def task_run(
    spec: JobSpec,
    step_name: str,
    task_parameters: Mapping[str, Any],
    workdir: str | os.PathLike[str],
) -> RunSpec:
    """The process to start for one attempt of one task (a session of one task).

    ``workdir`` is this attempt's session working directory (``Session.WorkingDirectory``,
    the process's cwd); its parent must be a directory of the job's own. A step whose
    tasks cannot tell their directory apart (no embedded files, no environment actions,
    no ``{{Session.*}}``) runs in that parent instead, saving a mkdir per task;
    ``spec.options["openjd_isolated_cwd"] = True`` turns that off. ``RunSpec.session_dir``
    is the directory the driver removes when the process has ended.

    When no environment has onEnter/onExit actions, the task's command is returned
    directly (the fast path: one process per task, nothing in between). Otherwise the
    task runs under ``python aiofarm/openjd/session_runner.py`` which enters the
    environments in order, runs the task, and exits the entered environments in reverse
    order (also after a failure or a cancel). Format strings are all resolved here.
    """
    session = _Session(spec, step_name, workdir, shared_ok=True)
    environments, scripted = session.environments()
    task = session.task(task_parameters)
    if not scripted:
        # With no actions to run, environments are only their variables: plain process env.
        env: dict[str, str] = dict(spec.env)
        for entry in environments:
            env.update(entry["variables"])
        return RunSpec(
            argv=tuple(task["argv"]),
            env=env,
            cwd=str(session.work),
            timeout=task["timeout"],
            cancel_grace=task["cancel"]["grace"],
            session_dir=str(session.work) if session.own else None,
        )
    has_exit = any(e["exit"] is not None for e in environments)
    return session.runner(
        {"environments": environments, "tasks": [{"id": None, "action": task}]},
        (),
        task["cancel"]["grace"],
        has_exit,
    )


def session_key(spec: JobSpec, step_name: str) -> str | None:
    """Tasks of a job with the same key may run one after another in one session (their
    environments are the same: the queue's and the job's, and the step's own); None when
    the step's tasks have no environment actions to share, so :func:`task_run`'s fast
    path is the better choice."""
    keys = job_instance(spec).session_keys
    if step_name not in keys:
        raise InvalidSpec("step", f"no step {step_name!r} in the template")
    return keys[step_name]


def session_run(
    spec: JobSpec,
    step_name: str,
    task_parameters: Mapping[str, Any],
    session_dir: str | os.PathLike[str],
    *,
    task_id: str,
    results_fd: int,
) -> RunSpec:
    """A session process that enters the environments once, runs the first task, then
    reads more tasks (:func:`session_task` lines) on stdin until it closes; each task's
    start and end is written as a JSON line to ``results_fd`` (which the driver opens)."""
    session = _Session(spec, step_name, session_dir, shared_ok=False)
    environments, _ = session.environments()
    task = session.task(task_parameters)
    has_exit = any(e["exit"] is not None for e in environments)
    return session.runner(
        {"environments": environments, "tasks": [{"id": task_id, "action": task}]},
        ("--feed", "--results-fd", str(results_fd)),
        task["cancel"]["grace"],
        has_exit,
    )


def session_task(
    spec: JobSpec,
    step_name: str,
    task_parameters: Mapping[str, Any],
    session_dir: str | os.PathLike[str],
    *,
    task_id: str,
) -> bytes:
    """The stdin line that hands one more task to a running :func:`session_run` process."""
    session = _Session(spec, step_name, session_dir, shared_ok=False)
    task = session.task(task_parameters)
    return json.dumps({"id": task_id, "action": task}).encode() + b"\n"


def session_batch(
    spec: JobSpec,
    step_name: str,
    tasks: Sequence[tuple[str, Mapping[str, Any]]],
    session_dir: str | os.PathLike[str],
    *,
    results_fd: int,
    resume: bool = False,
) -> RunSpec:
    """One session process for a batch scheduler (Slurm: one array element): enters
    the environments once, runs ``tasks`` ((task id, parameters), in order), exits the
    environments; each task's start and end is written as a JSON line to ``results_fd``
    (which the scheduler's script opens). The same runner as :func:`session_run`, with
    every task known up front instead of fed. ``resume``: the script opens
    ``results_fd`` read-write on the earlier runs' results, and a rerun skips the
    tasks they record as succeeded."""
    session = _Session(spec, step_name, session_dir, shared_ok=False)
    environments, _ = session.environments()
    actions = [(task_id, session.task(params)) for task_id, params in tasks]
    if not actions:
        raise InvalidSpec("tasks", "a session runs at least one task")
    has_exit = any(e["exit"] is not None for e in environments)
    grace = max(float(action["cancel"]["grace"]) for _, action in actions)
    return session.runner(
        {"environments": environments, "tasks": [{"id": i, "action": a} for i, a in actions]},
        ("--results-fd", str(results_fd), *(("--resume",) if resume else ())),
        grace,
        has_exit,
    )
