"""The session runner as a real child process: environments entered once for many tasks
fed on stdin, both openjd_env forms, redaction, scoping, results on their own fd."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from aiofarm.openjd.taskrun import SESSION_RUNNER


def sh(script: str) -> dict[str, Any]:
    return {"argv": ["/bin/sh", "-c", script], "timeout": 30.0, "cancel": {"mode": "TERMINATE", "grace": 0.0}}


def run_session(
    tmp_path: Path, plan: dict[str, Any], feed: list[dict[str, Any]] | None = None
) -> tuple[int, str, list[dict[str, Any]]]:
    session = tmp_path / "session.json"
    session.write_text(json.dumps(plan))
    read, write = os.pipe()
    args = [sys.executable, SESSION_RUNNER, str(session), "--results-fd", str(write)]
    if feed is not None:
        args.append("--feed")
    proc = subprocess.Popen(
        args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=(write,), cwd=tmp_path
    )
    os.close(write)
    lines = "".join(json.dumps(t) + "\n" for t in feed or ())
    out, _ = proc.communicate(lines.encode(), timeout=60)
    with os.fdopen(read) as results:
        events = [json.loads(line) for line in results]
    return proc.returncode, out.decode(), events


def test_environment_entered_once_for_many_fed_tasks(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    env = {
        "name": "Heavy",
        "variables": {"STUDIO": "one"},
        "enter": sh(f"echo enter >> {marks}; echo 'openjd_env: WARM=yes'"),
        "exit": sh(f"echo exit >> {marks}"),
    }
    first = {"id": "T/0", "action": sh(f"echo task0 $WARM $STUDIO >> {marks}")}
    more = [{"id": f"T/{i}", "action": sh(f"echo task{i} $WARM >> {marks}; exit {i % 2}")} for i in range(1, 5)]
    code, out, events = run_session(tmp_path, {"environments": [env], "tasks": [first]}, more)
    assert marks.read_text().split("\n")[:-1] == [
        "enter", "task0 yes one", "task1 yes", "task2 yes", "task3 yes", "task4 yes", "exit",
    ]
    ends = [(e["id"], e["exit"]) for e in events if e["event"] == "end"]
    assert ends == [("T/0", 0), ("T/1", 1), ("T/2", 0), ("T/3", 1), ("T/4", 0)]
    assert [e["id"] for e in events if e["event"] == "start"] == [f"T/{i}" for i in range(5)]
    assert code == 1  # the first failure's status; later tasks still ran
    assert out.count("enter environment 'Heavy': exit code 0") == 1


def test_env_forms_unset_redaction_and_scope(tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    after = tmp_path / "after.txt"
    secret = tmp_path / "secret"
    secret.write_text("hunter22")  # as from a secrets manager: never in the template
    enter = (
        "echo 'openjd_env: PLAIN=x=1 y'; "
        """printf '%s\\n' 'openjd_env: "QUOTED=tab\\there"'; """
        "echo 'openjd_unset_env: GONE'; "
        f"echo \"openjd_redacted_env: TOKEN=$(cat {secret})\"; echo token is $(cat {secret})"
    )
    outer = {"name": "Outer", "variables": {"GONE": "x"}, "enter": None, "exit": sh(f"echo \"[$PLAIN][$GONE]\" > {after}")}
    inner = {"name": "Inner", "variables": {}, "enter": sh(enter), "exit": None}
    task = sh(
        f"{sys.executable} -c 'import json,os; print(json.dumps({{k: os.environ.get(k) for k in "
        f"(\"PLAIN\",\"QUOTED\",\"GONE\",\"TOKEN\")}}))' > {seen}; echo the task printed $TOKEN"
    )
    code, out, _ = run_session(tmp_path, {"environments": [outer, inner], "tasks": [{"id": "a", "action": task}]})
    assert code == 0, out
    assert json.loads(seen.read_text()) == {"PLAIN": "x=1 y", "QUOTED": "tab\there", "GONE": None, "TOKEN": "hunter22"}
    # Inner's changes are undone when it exits: Outer's onExit sees its own GONE again
    assert after.read_text() == "[][x]\n"
    assert "hunter22" not in out
    assert "openjd_redacted_env: TOKEN=********" in out
    assert "token is ********" in out and "the task printed ********" in out


def test_failed_enter_runs_no_task_and_exits_entered(tmp_path: Path) -> None:
    marks = tmp_path / "marks"
    first = {"name": "A", "variables": {}, "enter": None, "exit": sh(f"echo exit-A >> {marks}")}
    broken = {"name": "B", "variables": {}, "enter": sh("echo 'openjd_fail: no licence'; exit 5"), "exit": sh(f"echo exit-B >> {marks}")}
    task = {"id": "t", "action": sh(f"echo task >> {marks}")}
    code, _, events = run_session(tmp_path, {"environments": [first, broken], "tasks": [task]}, [])
    assert code == 5
    # B was entered (its onEnter ran), so it is exited too, then A
    assert marks.read_text().split() == ["exit-B", "exit-A"]
    (end,) = [e for e in events if e["event"] == "end"]
    assert end["id"] == "t" and end["exit"] == 5 and end["ran"] is False and end["fail"] == "no licence"


def test_malformed_env_line_fails_the_enter(tmp_path: Path) -> None:
    env = {"name": "Bad", "variables": {}, "enter": sh("echo 'openjd_env: 9LIVES=x'; sleep 30"), "exit": None}
    code, out, events = run_session(tmp_path, {"environments": [env], "tasks": [{"id": "t", "action": sh("true")}]})
    assert code != 0
    assert "malformed message" in out
    assert events[-1]["ran"] is False


def test_task_fail_message_and_env_messages_ignored_from_tasks(tmp_path: Path) -> None:
    seen = tmp_path / "seen"
    tasks = [
        {"id": "1", "action": sh("echo 'openjd_env: LEAK=1'; echo 'openjd_fail: disk full'; exit 3")},
        {"id": "2", "action": sh(f"echo \"[$LEAK]\" > {seen}")},
    ]
    code, _, events = run_session(tmp_path, {"environments": [], "tasks": tasks})
    ends = {e["id"]: e for e in events if e["event"] == "end"}
    assert ends["1"]["exit"] == 3 and ends["1"]["fail"] == "disk full"
    assert ends["2"]["exit"] == 0 and ends["2"]["fail"] is None
    assert seen.read_text() == "[]\n"  # only an environment's actions change the session
    assert code == 3
