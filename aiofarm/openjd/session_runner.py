"""Run one Open Job Description session for one task: enter environments, run the
task, exit the entered environments in reverse order.

``python aiofarm/openjd/session_runner.py SESSION.json`` where the JSON (written by
:func:`aiofarm.openjd.taskrun.task_run`, every format string already resolved) is::

    {"environments": [{"name": str, "variables": {str: str},
                       "enter": ACTION | null, "exit": ACTION | null}, ...],
     "task": ACTION}
    ACTION = {"argv": [str, ...], "timeout": float | null,
              "cancel": {"mode": "TERMINATE" | "NOTIFY_THEN_TERMINATE", "grace": float}}

Deliberately standard library only and synchronous: it starts once per task, so its
start-up time is paid per task (tens of milliseconds, against half a second to import
openjd-model or openjd-sessions).

Behaviour (OpenJD session semantics):
- an environment's ``variables`` are set before its onEnter runs;
- an onEnter action may print ``openjd_env: NAME=VALUE`` / ``openjd_unset_env: NAME``
  lines on stdout to change the environment of every later action;
- if an onEnter fails, the task does not run; environments already entered are exited;
- onExit actions run in reverse order after the task, whether it succeeded, failed or
  was canceled; the exit status is the first failure's (the task's if it failed);
- an action longer than its ``timeout`` is canceled like a canceled task;
- on SIGTERM/SIGINT the running action is canceled with its own mode: TERMINATE kills
  it at once, NOTIFY_THEN_TERMINATE sends SIGTERM and SIGKILL after ``grace`` seconds.
  Children share this process's group, so a driver that signals the group reaches
  them too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from types import FrameType
from typing import Any

_ENV_LINE = re.compile(rb"^openjd_env:\s*([^=\s]+)=(.*?)\r?$")
_UNSET_LINE = re.compile(rb"^openjd_unset_env:\s*(\S+)\s*$")


class _Session:
    def __init__(self) -> None:
        self.env = dict(os.environ)
        self.canceled = False
        self.current: subprocess.Popen[bytes] | None = None
        self.current_cancel: dict[str, Any] = {"mode": "TERMINATE", "grace": 0.0}
        self.kill_at: float | None = None

    def say(self, text: str) -> None:
        sys.stdout.buffer.write(f"openjd: {text}\n".encode())
        sys.stdout.flush()

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

    def run(self, action: dict[str, Any], label: str, *, parse_env: bool) -> int:
        self.say(f"{label}: {' '.join(action['argv'])}")
        self.current_cancel = action["cancel"]
        self.kill_at = None
        try:
            proc = subprocess.Popen(
                action["argv"], stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, env=self.env
            )
        except OSError as exc:
            self.say(f"{label}: cannot start: {exc}")
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
                sys.stdout.buffer.write(chunk)
                sys.stdout.flush()
                if parse_env:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        self._env_message(line)
        finally:
            sel.close()
            out.close()
        if parse_env and pending:
            self._env_message(pending)
        code = proc.wait()
        self.current = None
        if timed_out and code == 0:
            code = 1
        self.say(f"{label}: exit code {code}")
        return code

    def _env_message(self, line: bytes) -> None:
        m = _ENV_LINE.match(line)
        if m:
            self.env[m.group(1).decode()] = m.group(2).decode(errors="replace")
            return
        m = _UNSET_LINE.match(line)
        if m:
            self.env.pop(m.group(1).decode(), None)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: session_runner.py SESSION.json", file=sys.stderr)
        return 2
    with open(args[0], encoding="utf-8") as f:
        plan = json.load(f)
    session = _Session()
    signal.signal(signal.SIGTERM, session.on_signal)
    signal.signal(signal.SIGINT, session.on_signal)

    status = 0
    entered: list[dict[str, Any]] = []
    for environment in plan["environments"]:
        if session.canceled:
            break
        session.env.update(environment["variables"])
        entered.append(environment)
        if environment["enter"] is not None:
            code = session.run(
                environment["enter"], f"enter environment {environment['name']!r}", parse_env=True
            )
            if code != 0:
                status = code
                break
    if status == 0 and not session.canceled:
        status = session.run(plan["task"], "task", parse_env=False)
    # Exit actions run even after a cancel: only the running action is interrupted.
    was_canceled = session.canceled
    session.canceled = False
    for environment in reversed(entered):
        if environment["exit"] is not None:
            code = session.run(
                environment["exit"], f"exit environment {environment['name']!r}", parse_env=True
            )
            if status == 0 and code != 0:
                status = code
    if was_canceled and status == 0:
        status = 128 + signal.SIGTERM
    return status


if __name__ == "__main__":
    sys.exit(main())
