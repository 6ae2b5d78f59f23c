"""Adaptor runtime overhead: aiofarm.adaptors beside openjd-adaptor-runtime 0.9.x, the
same REPL adaptor (examples/adaptors/repl_adaptor and its official twin in
tests/adaptors/official_repl), measured in the same run.

Per task, ``daemon run`` is started as a session runner starts it (a fresh process,
stdout on a pipe) against a daemon that already runs the application; the task renders
2 steps of 0.1 s, and the application answers the command with a line at once:
  first line  task command started -> first line of the application's output on the
              command's stdout (what the session sees)
  run->exit   task command started -> command exited
  overhead    run->exit minus the 0.2 s the application itself works
  CPU         user+system time of the task command (its own rusage)
Also ``daemon start`` and ``daemon stop`` once each, and the CPU a daemon burns while it
waits for the next task (user+system time over an idle window, as % of one core).
Wall times depend on the host's load; the CPU rows do not.

    .venv/bin/python benchmarks/p_adaptor.py [--tasks 20] [--idle 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RUNTIMES = {
    "official": "tests.adaptors.official_repl",
    "aiofarm": "examples.adaptors.repl_adaptor",
}


def env_for(home: str) -> dict[str, str]:
    env = dict(os.environ, HOME=home, PYTHONPATH=str(ROOT))
    env.pop("OPENJD_ADAPTOR_SOCKET", None)
    return env


WORK = 0.2  # seconds the application works per task (2 steps of 0.1 s)


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, float]:
    """(seconds to the first application line, seconds to exit, CPU seconds) of one
    command."""
    began = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    first = None
    for raw in proc.stdout:
        if first is None and b"STDOUT: " in raw:
            first = time.perf_counter() - began
    proc.stdout.close()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    ended = time.perf_counter() - began
    if proc.returncode != 0:
        raise RuntimeError(f"{argv} exited with {proc.returncode}")
    return (first if first is not None else ended), ended, usage.ru_utime + usage.ru_stime


def measure(name: str, tasks: int, idle: float) -> dict[str, object]:
    pkg = RUNTIMES[name]
    with tempfile.TemporaryDirectory(prefix=f"p-adaptor-{name}-") as home:
        env = env_for(home)
        conn = os.path.join(home, "connection.json")
        base = [sys.executable, "-m", pkg, "daemon"]
        start = timed([*base, "start", "--connection-file", conn], env)[1]
        try:
            daemon = next(
                p
                for p in psutil.process_iter(["cmdline"])
                if "_serve" in (p.info["cmdline"] or []) and conn in (p.info["cmdline"] or [])
            )
            firsts, exits, cpus = [], [], []
            for i in range(tasks):
                run_data = json.dumps({"frame": i, "steps": 2, "delay": WORK / 2})
                first, ended, cpu_s = timed(
                    [*base, "run", "--connection-file", conn, "--run-data", run_data], env
                )
                firsts.append(first)
                exits.append(ended)
                cpus.append(cpu_s)
            before = daemon.cpu_times()
            time.sleep(idle)  # the measurement itself: a daemon left alone
            after = daemon.cpu_times()
            cpu = (after.user - before.user + after.system - before.system) / idle * 100
        finally:
            stop = timed([*base, "stop", "--connection-file", conn], env)[1]
    return {
        "start": start,
        "stop": stop,
        "first": firsts,
        "exit": exits,
        "overhead": [e - WORK for e in exits],
        "cpu": cpus,
        "idle_cpu": cpu,
    }


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100)[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    res = {name: measure(name, args.tasks, args.idle) for name in RUNTIMES}
    off, ours = res["official"], res["aiofarm"]

    def ms(x: float) -> str:
        return f"{x * 1000:8.0f} ms"

    rows = []
    for label, key in (
        ("task -> first app line", "first"),
        ("task run -> exit", "exit"),
        ("task overhead (exit - 0.2 s)", "overhead"),
        ("task command CPU", "cpu"),
    ):
        for q in (50, 90):
            a = pct(off[key], q)  # type: ignore[arg-type]
            b = pct(ours[key], q)  # type: ignore[arg-type]
            rows.append((f"{label} p{q}", ms(a), ms(b), f"{a / b:6.1f}x"))
    for label, key in (("daemon start", "start"), ("daemon stop", "stop")):
        a, b = off[key], ours[key]
        rows.append((label, ms(a), ms(b), f"{a / b:6.1f}x"))  # type: ignore[operator]
    rows.append(
        (f"idle daemon CPU ({args.idle:g} s)", f"{off['idle_cpu']:8.3f} %", f"{ours['idle_cpu']:8.3f} %", "")
    )
    load = os.getloadavg()[0]
    print(f"p_adaptor: {args.tasks} tasks per runtime, python {sys.version.split()[0]}, load {load:.1f}")
    print(f"{'':32} {'official 0.9':>11} {'aiofarm':>11} {'speed-up':>9}")
    for row in rows:
        print(f"{row[0]:32} {row[1]:>11} {row[2]:>11} {row[3]:>9}")


if __name__ == "__main__":
    main()
