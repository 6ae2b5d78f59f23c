"""Run the example adaptor under ``openjd.sessions.Session`` the way a Deadline Cloud
worker does (``daemon start`` on environment enter, ``daemon run`` per task, ``daemon
stop`` on exit, NOTIFY_THEN_TERMINATE cancels), and record each action's final
ActionStatus.

Runtimes (each the same REPL adaptor):
  official  openjd-adaptor-runtime with tests/adaptors/official_repl
  aiofarm   aiofarm.adaptors with examples/adaptors/repl_adaptor
  c         official frontend, aiofarm backend (tests/adaptors/mixed_c)
  d         aiofarm frontend, official backend (tests/adaptors/mixed_d)
  shim      aiofarm.adaptors running the official adaptor class unchanged
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
from openjd.model import create_job, decode_job_template
from openjd.sessions import ActionState, ActionStatus, Session

ROOT = Path(__file__).resolve().parents[2]

RUNTIMES = {
    "official": ["tests.adaptors.official_repl"],
    "aiofarm": ["examples.adaptors.repl_adaptor"],
    "c": ["tests.adaptors.mixed_c"],
    "d": ["tests.adaptors.mixed_d"],
    # the official adaptor class, unchanged, under aiofarm's runtime (the shim)
    "shim": ["aiofarm.adaptors", "tests.adaptors.official_repl.adaptor:OfficialReplAdaptor"],
}
#: runtimes whose daemon is aiofarm's (the ones that must leave nothing behind)
AIOFARM_BACKEND = {"aiofarm", "c", "shim"}
#: runtimes whose frontend is the official one
OFFICIAL_FRONTEND = {"official", "c"}

ACTION_TIMEOUT = 60.0


@dataclass
class Outcome:
    runtime: str
    case: str
    actions: list[tuple[str, ActionStatus]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def transcript(self, *, with_progress: bool = True) -> list[tuple[Any, ...]]:
        rows = []
        for name, st in self.actions:
            rows.append(
                (
                    name,
                    st.state.value,
                    st.progress if with_progress else None,
                    st.status_message,
                    st.fail_message,
                    st.exit_code,
                )
            )
        return rows


def _template(pkg: list[str], init_data: dict[str, Any], runs: list[dict[str, Any]]) -> Any:
    conn = "{{Session.WorkingDirectory}}/connection.json"
    cancel = {"mode": "NOTIFY_THEN_TERMINATE", "notifyPeriodInSeconds": 20}
    py = sys.executable

    def action(*args: str) -> dict[str, Any]:
        return {"command": py, "args": ["-m", *pkg, *args], "cancelation": cancel}

    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "adaptor matrix",
        "jobEnvironments": [
            {
                "name": "Adaptor",
                "script": {
                    "actions": {
                        "onEnter": action(
                            "daemon", "start", "--connection-file", conn, "--init-data", json.dumps(init_data)
                        ),
                        "onExit": action("daemon", "stop", "--connection-file", conn),
                    }
                },
            }
        ],
        "steps": [
            {
                "name": f"task{i}",
                "script": {
                    "actions": {
                        "onRun": action(
                            "daemon", "run", "--connection-file", conn, "--run-data", json.dumps(run)
                        )
                    }
                },
            }
            for i, run in enumerate(runs)
        ],
    }
    return create_job(job_template=decode_job_template(template=template), job_parameter_values={})


def _marked(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("AIOFARM_ADAPTOR_MATRIX") == marker:
                found.append(proc)
    return found


def _frontend_of(marker: str, word: str) -> psutil.Process | None:
    for proc in _marked(marker):
        with contextlib.suppress(psutil.Error):
            cmd = proc.cmdline()
            if "daemon" in cmd and word in cmd and "_serve" not in cmd:
                return proc
    return None


class _Watch:
    """Collects the session's callbacks; wakes waiters on the events they wait for."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.statuses: list[ActionStatus] = []

    def __call__(self, session_id: str, status: ActionStatus) -> None:
        with self.cond:
            self.statuses.append(status)
            self.cond.notify_all()

    def wait_for(self, predicate: Any, timeout: float = ACTION_TIMEOUT) -> ActionStatus:
        with self.cond:
            ok = self.cond.wait_for(lambda: any(predicate(s) for s in self.statuses), timeout)
            if not ok:
                raise TimeoutError(f"no matching action status in {self.statuses[-5:]}")
            return next(s for s in self.statuses if predicate(s))

    def final(self, session: Session) -> ActionStatus:
        def done() -> bool:
            st = session.action_status
            return st is not None and st.state != ActionState.RUNNING

        with self.cond:
            if not self.cond.wait_for(done, ACTION_TIMEOUT):
                raise TimeoutError(f"action did not end: {session.action_status}")
        st = session.action_status
        assert st is not None
        return st


CASES: dict[str, dict[str, Any]] = {
    "success": {"init": {}, "runs": [{"frame": 1, "steps": 2}, {"frame": 2, "steps": 4}]},
    "fail_start": {"init": {"fail_in": "start"}, "runs": [{"frame": 1}]},
    "fail_run": {"init": {}, "runs": [{"frame": 1, "fail": "no license"}]},
    "fail_stop": {"init": {"fail_in": "stop"}, "runs": [{"frame": 1}]},
    "fail_cleanup": {"init": {"fail_in": "cleanup"}, "runs": [{"frame": 1}]},
    "cancel_start": {"init": {"startup_delay": 30}, "runs": [{"frame": 1}], "cancel": "enter"},
    "cancel_run": {"init": {}, "runs": [{"frame": 1, "steps": 400, "delay": 0.05}], "cancel": "run"},
    "kill_frontend": {"init": {}, "runs": [{"frame": 1, "steps": 100, "delay": 0.05}], "kill": "run"},
}


def run_case(runtime: str, case: str) -> Outcome:
    spec = CASES[case]
    pkg = RUNTIMES[runtime]
    job = _template(pkg, spec["init"], spec["runs"])
    marker = uuid.uuid4().hex
    home = tempfile.mkdtemp(prefix="adaptor-home-")
    env = {
        "PYTHONPATH": str(ROOT),
        "HOME": home,  # the official runtime writes empty config files into $HOME
        "AIOFARM_ADAPTOR_MATRIX": marker,
    }
    out = Outcome(runtime, case)
    watch = _Watch()
    import logging

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            out.log.append(record.getMessage())

    keeper = _Keep()
    session_log = logging.getLogger("openjd.sessions")
    session_log.addHandler(keeper)
    session_log.setLevel(logging.INFO)
    with Session(session_id=f"matrix-{case}", job_parameter_values={}, callback=watch, os_env_vars=env) as session:
        ident = session.enter_environment(environment=job.jobEnvironments[0])
        if spec.get("cancel") == "enter":
            watch.wait_for(lambda s: s.status_message == "starting the application")
            _wait_line(marker, "loading")
            session.cancel_action()
        status = watch.final(session)
        out.actions.append(("enter", status))
        if status.state == ActionState.SUCCESS:
            for step in job.steps:
                watch.statuses.clear()
                session.run_task(step_script=step.script, task_parameter_values={})
                if spec.get("cancel") == "run":
                    watch.wait_for(lambda s: s.progress is not None)
                    session.cancel_action()
                if spec.get("kill") == "run":
                    watch.wait_for(lambda s: s.progress is not None)
                    proc = _frontend_of(marker, "run")
                    assert proc is not None, "daemon run frontend not found"
                    proc.kill()
                status = watch.final(session)
                out.actions.append((step.name, status))
                if status.state != ActionState.SUCCESS:
                    break
        watch.statuses.clear()
        session.exit_environment(identifier=ident)
        out.actions.append(("exit", watch.final(session)))
        # what is still running once the session is over: nothing, if all went well
        _gone, alive = psutil.wait_procs(_marked(marker), timeout=10)
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                out.leftovers.append(" ".join(proc.cmdline()[1:4]))
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(alive, timeout=5)
    return out


def _wait_line(marker: str, text: str) -> None:
    """The application printed ``text``: its process exists and has been running a bit.
    (Used to cancel a start while on_start is really waiting on the application.)"""
    import time

    deadline = time.monotonic() + ACTION_TIMEOUT
    while time.monotonic() < deadline:
        for proc in _marked(marker):
            with contextlib.suppress(psutil.Error):
                if "repl_app.py" in " ".join(proc.cmdline()):
                    return
        time.sleep(0.05)
    raise TimeoutError("the application never started")


def run_all(case: str) -> dict[str, list[Any]]:
    """The case under every runtime, each in its own process and all at once (a
    Session's action monitor listens on a process-wide logger, so two sessions in one
    process would hear each other's output). Returns per runtime
    ``{"transcript": [...], "transcript_np": [...], "leftovers": [...]}``."""
    import subprocess

    procs = {
        runtime: subprocess.Popen(
            [sys.executable, "-m", "tests.adaptors.matrix", runtime, case],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for runtime in RUNTIMES
    }
    results: dict[str, Any] = {}
    for runtime, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"{runtime}/{case} failed:\n{stderr.decode(errors='replace')[-3000:]}")
        results[runtime] = json.loads(stdout.decode().strip().splitlines()[-1])
    return results


if __name__ == "__main__":  # python -m tests.adaptors.matrix RUNTIME CASE
    result = run_case(sys.argv[1], sys.argv[2])
    if os.environ.get("MATRIX_LOG"):
        sys.stderr.write("\n".join(result.log) + "\n")
    print(
        json.dumps(
            {
                "transcript": result.transcript(),
                "transcript_np": result.transcript(with_progress=False),
                "leftovers": result.leftovers,
            }
        )
    )
