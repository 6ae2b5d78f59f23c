"""Run one Open Job Description session: enter environments once, run one or many
tasks, exit the entered environments in reverse order.

``python aiofarm/openjd/session_runner.py SESSION.json [--feed] [--results-fd N [--resume]]``
where the JSON (written by :mod:`aiofarm.openjd.taskrun`, every format string already
resolved) is::

    {"environments": [{"name": str, "variables": {str: str},
                       "enter": ACTION | null, "exit": ACTION | null}, ...],
     "tasks": [{"id": str | null, "action": ACTION}, ...]}      # ("task": ACTION: one)
    ACTION = {"argv": [str, ...], "timeout": float | null,
              "cancel": {"mode": "TERMINATE" | "NOTIFY_THEN_TERMINATE", "grace": float}}

With ``--feed``, more tasks come on stdin, one ``{"id": ..., "action": ...}`` JSON object
a line, until stdin closes: a driver keeps one session per worker slot and hands it the
next task of the same step, so environments are entered once for many tasks, as a
Deadline worker does. With ``--results-fd N`` each task's start and end is written to
fd N as a JSON line (``{"event": "start"|"end", "id": ..., "exit": int, "fail": str}``),
so the driver knows where one task's output ends and how it ended. With ``--resume``
fd N is open for reading and writing on the results of earlier runs of the same
session (a retry): a task they record as succeeded is not run again, and this run's
events follow theirs after a ``{"event": "run", "skipped": [ids]}`` line (the
environments are still entered and exited around what runs).

Deliberately standard library only and synchronous: it starts once per session, so its
start-up time is paid per session (tens of milliseconds, against half a second to
import openjd-model or openjd-sessions). Action messages are parsed by
:mod:`aiofarm.openjd.messages`, imported from this directory.

Behaviour (OpenJD session semantics):
- an environment's ``variables`` are set before its onEnter runs;
- an onEnter may print ``openjd_env: NAME=VALUE`` (or ``openjd_env: "NAME=VALUE"``,
  JSON-quoted), ``openjd_unset_env: NAME`` and ``openjd_redacted_env: NAME=VALUE`` to
  change the environment of every later action until that environment exits; a
  malformed one fails the onEnter; a redacted value is printed as ``********`` in every
  later line of output;
- if an onEnter fails, no task runs; environments already entered are exited;
- a failed task does not end the session: the next task runs (the driver decides
  whether to hand one);
- onExit actions run in reverse order at the end, whether tasks succeeded, failed or
  were canceled; the exit status is the first failure's;
- an action longer than its ``timeout`` is canceled like a canceled task;
- on SIGTERM/SIGINT the running action is canceled with its own mode: TERMINATE kills
  it at once, NOTIFY_THEN_TERMINATE sends SIGTERM and SIGKILL after ``grace`` seconds;
  no further task runs. Children share this process's group, so a driver that signals
  the group reaches them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

try:
    from . import messages
except ImportError:  # started by file path: the message parser is beside this file
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import messages  # type: ignore[no-redef,import-not-found,unused-ignore]

_UNSET = object()


def _succeeded(data: bytes) -> set[str]:
    """Ids of the tasks that earlier runs' results record as succeeded (last end wins)."""
    done: set[str] = set()
    for raw in data.splitlines():
        try:
            event = json.loads(raw)
        except ValueError:
            continue  # cut short when a run was killed
        if not isinstance(event, dict) or event.get("id") is None:
            continue
        if event.get("event") == "end" and event.get("exit") == 0:
            done.add(str(event["id"]))
        elif event.get("event") in ("start", "end"):
            done.discard(str(event["id"]))
    return done


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


class _Session:
    def __init__(self, results_fd: int | None) -> None:
        self.env = dict(os.environ)
        self.canceled = False
        self.current: subprocess.Popen[bytes] | None = None
        self.current_cancel: dict[str, Any] = {"mode": "TERMINATE", "grace": 0.0}
        self.kill_at: float | None = None
        self.redacted: set[str] = set()
        self.results = os.fdopen(results_fd, "w", buffering=1) if results_fd is not None else None
        # per entered environment: the values its variables and onEnter replaced
        self.undo: list[dict[str, object]] = []
        self.fail_message: str | None = None

    def say(self, text: str) -> None:
        self.emit(f"openjd: {text}\n".encode())

    def emit(self, data: bytes) -> None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()

    def report(self, **event: Any) -> None:
        if self.results is not None:
            self.results.write(json.dumps(event) + "\n")

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.canceled:
            return
        self.canceled = True
        self._cancel_current()

    def _cancel_current(self) -> None:
        proc = self.current
        if proc is None or proc.poll() is not None:
            return
        if self.current_cancel["mode"] == "NOTIFY_THEN_TERMINATE":
            try:
                proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                return
            self.kill_at = time.monotonic() + float(self.current_cancel["grace"])
        else:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def setenv(self, name: str, value: str | None) -> None:
        """Change a variable, remembering the old value for the environment's exit."""
        if self.undo and name not in self.undo[-1]:
            self.undo[-1][name] = self.env.get(name, _UNSET)
        if value is None:
            self.env.pop(name, None)
        else:
            self.env[name] = value

    def restore(self) -> None:
        for name, old in self.undo.pop().items():
            if old is _UNSET:
                self.env.pop(name, None)
            else:
                self.env[name] = str(old)

    def redact(self, line: str) -> str:
        for value in self.redacted:
            line = line.replace(value, messages.REDACTED)
        return line

    def run(self, action: dict[str, Any], label: str, *, environment: bool) -> int:
        self.say(f"{label}: {self.redact(' '.join(action['argv']))}")
        self.current_cancel = action["cancel"]
        self.kill_at = None
        self.fail_message = None
        try:
            proc = subprocess.Popen(
                action["argv"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=self.env
            )
        except OSError as exc:
            self.say(f"{label}: cannot start: {exc}")
            self.fail_message = f"cannot start: {exc}"
            return 127
        self.current = proc
        if self.canceled:
            self._cancel_current()
        deadline = time.monotonic() + action["timeout"] if action["timeout"] else None
        assert proc.stdout is not None
        out = proc.stdout
        sel = selectors.DefaultSelector()
        sel.register(out, selectors.EVENT_READ)
        pending = b""
        timed_out = False
        malformed = False
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline and not timed_out:
                    timed_out = True
                    self.say(f"{label}: timed out after {action['timeout']:g}s")
                    self._cancel_current()
                if self.kill_at is not None and now >= self.kill_at and proc.poll() is None:
                    proc.kill()
                waits = [t - now for t in (deadline if not timed_out else None, self.kill_at) if t]
                # Capped: a signal handler may set kill_at while select() waits, and
                # PEP 475 resumes the wait with the old timeout.
                timeout = max(0.0, min([*waits, 0.5]))
                if not sel.select(timeout):
                    continue
                chunk = os.read(out.fileno(), 65536)
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > 65536:  # no newline in sight: pass it on as it is
                    lines.append(pending)
                    pending = b""
                for line in lines:
                    malformed = self._line(line, environment) or malformed
                    if malformed and proc.poll() is None:
                        with contextlib.suppress(ProcessLookupError):
                            proc.kill()
        finally:
            sel.close()
            out.close()
        if pending:
            malformed = self._line(pending, environment) or malformed
        code = proc.wait()
        self.current = None
        if (timed_out or malformed) and code == 0:
            code = 1
        self.say(f"{label}: exit code {code}")
        return code

    def _line(self, raw: bytes, environment: bool) -> bool:
        """Relay one line of output (redacted); act on its message. True if malformed."""
        line = raw.decode(errors="replace")
        msg = messages.parse(line)
        if msg is not None and msg.kind == "redacted_env":
            assert isinstance(msg.value, str)
            if msg.value:
                self.redacted.add(msg.value)
            line = f"openjd_redacted_env: {msg.text}={messages.REDACTED}"
        elif self.redacted:
            line = self.redact(line)
        self.emit(line.encode() + b"\n")
        if msg is None:
            return False
        if msg.kind == "fail":
            self.fail_message = msg.text
        elif not environment:
            return False  # env messages count only from an environment's actions
        elif msg.kind in ("env", "redacted_env"):
            assert isinstance(msg.value, str)
            self.setenv(msg.text, msg.value)
        elif msg.kind == "unset_env":
            self.setenv(msg.text, None)
        elif msg.kind == "malformed":
            self.say(f"malformed message ({msg.value}): failing the action")
            self.fail_message = f"malformed openjd message: {msg.value}"
            return True
        return False

    def enter(self, environment: dict[str, Any]) -> int:
        self.undo.append({})
        for name, value in environment["variables"].items():
            self.setenv(name, value)
        if environment["enter"] is None:
            return 0
        return self.run(environment["enter"], f"enter environment {environment['name']!r}", environment=True)

    def exit(self, environment: dict[str, Any]) -> int:
        code = 0
        if environment["exit"] is not None:
            code = self.run(environment["exit"], f"exit environment {environment['name']!r}", environment=True)
        self.restore()
        return code

    def task(self, item: dict[str, Any]) -> int:
        self.report(event="start", id=item.get("id"))
        label = "task" if item.get("id") is None else f"task {item['id']}"
        code = self.run(item["action"], label, environment=False)
        self.report(event="end", id=item.get("id"), exit=code, fail=self.fail_message)
        return code


def _tasks(plan: dict[str, Any], feed: bool) -> Any:
    if "task" in plan:
        yield {"id": None, "action": plan["task"]}
    yield from plan.get("tasks", ())
    if feed:
        for line in sys.stdin:
            if line.strip():
                yield json.loads(line)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    feed = "--feed" in args
    resume = "--resume" in args
    results_fd: int | None = None
    rest = [a for a in args if a not in ("--feed", "--resume")]
    if "--results-fd" in rest:
        i = rest.index("--results-fd")
        results_fd = int(rest[i + 1])
        del rest[i : i + 2]
    if len(rest) != 1 or (resume and results_fd is None):
        print("usage: session_runner.py SESSION.json [--feed] [--results-fd N [--resume]]", file=sys.stderr)
        return 2
    with open(rest[0], encoding="utf-8") as f:
        plan = json.load(f)
    # read before anything is written: afterwards the fd is at the end of the earlier runs
    skip = _succeeded(_read_all(results_fd)) if resume and results_fd is not None else set()
    session = _Session(results_fd)
    if resume:
        skipped = [str(t["id"]) for t in plan.get("tasks", ()) if str(t.get("id")) in skip]
        session.report(event="run", skipped=skipped)
        if skipped:
            session.say(f"tasks {', '.join(skipped)} succeeded in an earlier run: not run again")
        plan["tasks"] = [t for t in plan.get("tasks", ()) if str(t.get("id")) not in skip]
    signal.signal(signal.SIGTERM, session.on_signal)
    signal.signal(signal.SIGINT, session.on_signal)

    status = 0
    entered: list[dict[str, Any]] = []
    for environment in plan["environments"]:
        if session.canceled:
            break
        entered.append(environment)
        code = session.enter(environment)
        if code != 0:
            status = code
            break
    tasks = _tasks(plan, feed)
    if status == 0 and not session.canceled:
        for item in tasks:
            code = session.task(item)
            if status == 0 and code != 0:
                status = code
            if session.canceled:
                break
    else:
        # The session could not start: a task handed to it fails without running.
        why = session.fail_message or "an environment failed to enter"
        for item in tasks:
            session.report(event="start", id=item.get("id"))
            session.report(event="end", id=item.get("id"), exit=status or 1, fail=why, ran=False)
            break
    # Exit actions run even after a cancel: only the running action is interrupted.
    was_canceled = session.canceled
    session.canceled = False
    for environment in reversed(entered):
        code = session.exit(environment)
        if status == 0 and code != 0:
            status = code
    if was_canceled and status == 0:
        status = 128 + signal.SIGTERM
    return status


if __name__ == "__main__":
    sys.exit(main())
