"""The daemon's fixes over the official runtime: token and file modes, init data off the
command line, streamed output, a dropped ``daemon run`` cancels, idle timeout, a second
SIGTERM shuts down, bounded start-up."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from aiofarm.adaptors import httpwire
from aiofarm.adaptors.frontend import FrontendError, spawn_backend

from .helpers import AIOFARM, cli, popen, processes_with, reaped, wait_until


def start(home: Path, *extra: str, init: dict[str, object] | None = None) -> Path:
    conn = home / "connection.json"
    done = cli(
        AIOFARM,
        "daemon",
        "start",
        "--connection-file",
        str(conn),
        "--init-data",
        json.dumps(init or {}),
        *extra,
        home=home,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return conn


def backend_of(conn: Path) -> psutil.Process:
    found = [p for p in processes_with(str(conn)) if "_serve" in p.cmdline()]
    assert len(found) == 1
    return found[0]


def stop(home: Path, conn: Path) -> None:
    done = cli(AIOFARM, "daemon", "stop", "--connection-file", str(conn), home=home)
    assert done.returncode == 0, done.stdout + done.stderr
    assert not conn.exists()


def long_run(home: Path, conn: Path) -> subprocess.Popen[str]:
    """A ``daemon run`` of a long render, once its first progress line is out."""
    run = popen(
        AIOFARM, "daemon", "run", "--connection-file", str(conn),
        "--run-data", '{"frame": 1, "steps": 1000, "delay": 0.05}', home=home,
    )  # fmt: skip
    assert run.stdout is not None
    while "openjd_progress" not in run.stdout.readline():
        pass
    return run


def test_connection_file_token_and_modes(tmp_path: Path) -> None:
    with reaped(str(tmp_path)):
        secret = "s3cr3t-init-value"
        conn = start(tmp_path, init={"password": secret})
        assert stat.S_IMODE(conn.stat().st_mode) == 0o600
        settings = json.loads(conn.read_text())
        sock = settings["socket"]
        assert stat.S_IMODE(os.stat(os.path.dirname(sock)).st_mode) == 0o700
        backend = backend_of(conn)
        assert secret not in " ".join(backend.cmdline())  # came over stdin

        bare = httpwire.call(sock, "GET", "/heartbeat")
        wrong = httpwire.call(sock, "GET", "/heartbeat", headers={"Authorization": "Bearer x"})
        good = httpwire.call(sock, "GET", "/heartbeat", headers={"Authorization": f"Bearer {settings['token']}"})
        body = json.loads(good.body)
        assert set(body) == {"state", "status", "output", "failed"}
        assert body["state"] == "start" and body["status"] == "idle"
        assert (bare.status, wrong.status, good.status) == (401, 401, 200)
        stop(tmp_path, conn)
        wait_until(lambda: not backend.is_running(), what="the daemon to exit")
        assert not os.path.exists(sock)


def test_output_is_forwarded_as_it_happens(tmp_path: Path) -> None:
    with reaped(str(tmp_path)):
        conn = start(tmp_path)
        run = popen(
            AIOFARM,
            "daemon",
            "run",
            "--connection-file",
            str(conn),
            "--run-data",
            '{"frame": 1, "steps": 6, "delay": 0.4}',
            home=tmp_path,
        )
        assert run.stdout is not None
        began = time.monotonic()
        first = run.stdout.readline()
        while "openjd_progress" not in first:
            first = run.stdout.readline()
        seen_at = time.monotonic() - began
        run.communicate(timeout=60)
        ended_at = time.monotonic() - began
        assert run.returncode == 0
        # the first step's progress arrived ~2 s before the end, not with it
        assert ended_at - seen_at > 1.0, (seen_at, ended_at)
        stop(tmp_path, conn)


def test_killed_frontend_cancels_the_run(tmp_path: Path) -> None:
    with reaped(str(tmp_path)):
        conn = start(tmp_path)
        run = long_run(tmp_path, conn)
        run.kill()
        run.communicate()
        # the daemon is free again at once: the next task runs (the official backend
        # would answer 400 until the 50 s render ended)
        done = cli(
            AIOFARM, "daemon", "run", "--connection-file", str(conn), "--run-data", '{"frame": 2}', home=tmp_path
        )
        assert done.returncode == 0, done.stdout
        assert "STDOUT: aborted f1" in done.stdout.splitlines()
        stop(tmp_path, conn)


def test_stop_during_a_run_cancels_it(tmp_path: Path) -> None:
    with reaped(str(tmp_path)):
        conn = start(tmp_path)
        run = long_run(tmp_path, conn)
        backend = backend_of(conn)
        everything = [backend, *backend.children(recursive=True)]
        stop(tmp_path, conn)  # the official backend answers 400 here and keeps running
        run.communicate(timeout=30)
        assert run.returncode == 0  # canceled, not failed
        _, alive = psutil.wait_procs(everything, timeout=30)
        assert not alive


def test_idle_timeout_shuts_the_daemon_down(tmp_path: Path) -> None:
    with reaped(str(tmp_path)):
        conn = start(tmp_path, "--idle-timeout", "1")
        backend = backend_of(conn)
        app = [c for c in backend.children(recursive=True) if "repl_app.py" in " ".join(c.cmdline())]
        assert app
        _, alive = psutil.wait_procs([backend, *app], timeout=30)
        assert not alive
        assert not conn.exists()


def test_second_sigterm_shuts_down(tmp_path: Path) -> None:
    with reaped(str(tmp_path)):
        conn = start(tmp_path)
        backend = backend_of(conn)
        run = long_run(tmp_path, conn)
        backend.send_signal(signal.SIGTERM)  # first: cancels the run, the daemon stays
        run.communicate(timeout=30)
        assert run.returncode == 0
        assert backend.is_running()
        app = [c for c in backend.children(recursive=True) if "repl_app.py" in " ".join(c.cmdline())]
        backend.send_signal(signal.SIGTERM)  # second: stop, cleanup, exit
        _, alive = psutil.wait_procs([backend, *app], timeout=30)
        assert not alive
        assert not conn.exists()


def test_startup_wait_is_bounded_and_kills_what_it_started(tmp_path: Path) -> None:
    lines: list[str] = []
    slow = [sys.executable, "-c", "import time; time.sleep(600)", "--"]
    began = time.monotonic()
    with pytest.raises(FrontendError, match=r"did not start within 0\.5 s"):
        spawn_backend(
            slow,
            str(tmp_path / "c.json"),
            {"init_data": {}, "path_mapping_rules": {}},
            official=False,
            startup_timeout=0.5,
            emit=lines.append,
        )
    assert time.monotonic() - began < 10
    assert not [p for p in processes_with("time.sleep(600)") if p.status() != psutil.STATUS_ZOMBIE]


def test_backend_that_dies_fails_the_start_at_once(tmp_path: Path) -> None:
    lines: list[str] = []
    dying = [sys.executable, "-c", "import sys; print('boom'); sys.exit(4)", "--"]
    with pytest.raises(FrontendError, match="exited with code 4"):
        spawn_backend(
            dying,
            str(tmp_path / "c.json"),
            {"init_data": {}, "path_mapping_rules": {}},
            official=False,
            startup_timeout=60,
            emit=lines.append,
        )
    assert "boom" in lines


def test_socket_from_the_environment_both_backends(tmp_path: Path) -> None:
    """`daemon start` announces OPENJD_ADAPTOR_SOCKET; a `daemon run` given only that
    variable finds the daemon (aiofarm's: and its token, beside the socket) — also an
    official daemon, through the official heartbeat exchange."""
    from .helpers import OFFICIAL

    with reaped(str(tmp_path)):
        for starter in (AIOFARM, OFFICIAL):
            home = tmp_path / starter.rsplit(".", 1)[-1]
            home.mkdir()
            conn = home / "connection.json"
            started = cli(starter, "daemon", "start", "--connection-file", str(conn), home=home)
            assert started.returncode == 0, started.stdout + started.stderr
            announced = [
                line.split("=", 1)[1]
                for line in started.stdout.splitlines()
                if line.startswith("openjd_env: OPENJD_ADAPTOR_SOCKET=")
            ]
            assert announced == [json.loads(conn.read_text())["socket"]]
            done = cli(
                AIOFARM, "daemon", "run", "--run-data", '{"frame": 3}', home=home,
                OPENJD_ADAPTOR_SOCKET=announced[0],
            )  # fmt: skip
            assert done.returncode == 0, done.stdout + done.stderr
            assert any(line.endswith("openjd_status: frame 3 done") for line in done.stdout.splitlines())
            stopped = cli(AIOFARM, "daemon", "stop", home=home, OPENJD_ADAPTOR_SOCKET=announced[0])
            assert stopped.returncode == 0, stopped.stdout + stopped.stderr


def test_a_daemon_whose_frontend_died_during_start_up_exits(tmp_path: Path) -> None:
    from .helpers import env_for

    conn = tmp_path / "c.json"
    argv = [sys.executable, "-m", AIOFARM, "daemon", "_serve", "--connection-file", str(conn), "--aiofarm-stdin"]
    # nothing on stdin: the frontend died before handing over the init data
    empty = subprocess.run(argv, env=env_for(tmp_path), input=b"", capture_output=True, timeout=60)
    assert empty.returncode == 1 and not conn.exists()
    # data handed over, but nobody reads the "ready" line any more
    proc = subprocess.Popen(
        argv, env=env_for(tmp_path), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdout.close()
    proc.stdin.write(b'{"init_data": {}, "path_mapping_rules": {}}')
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert not conn.exists()
