"""The ``aiofarm`` command, run for real as a child process against a local:// farm."""

from __future__ import annotations

import os
import signal
import uuid
from pathlib import Path

import anyio
import psutil
import pytest

from .conftest import COMMAND, Farm, read_until

pytestmark = pytest.mark.anyio


def _clean_error(stderr: str, *fragments: str) -> None:
    """One red line (plain under NO_COLOR), no traceback."""
    assert "Traceback" not in stderr, stderr
    first = stderr.splitlines()[0]
    assert first.startswith("aiofarm: error: "), stderr
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)


async def test_help_lists_every_command(farm: Farm) -> None:
    top = await farm("--help", url=False)
    assert top.code == 0
    for command in ("run", "ls", "status", "logs", "wait", "cancel"):
        assert f"  {command} " in top.stdout, top.stdout
    run_help = await farm("run", "--help", url=False)
    assert run_help.code == 0 and "Ctrl-C cancels the job" in run_help.stdout


async def test_readme_first_command(farm: Farm) -> None:
    """`aiofarm run -- echo hello from aiofarm`: the output, exit 0, nothing else on a pipe."""
    done = await farm("run", "--", "echo", "hello", "from", "aiofarm", url=False)
    assert done == type(done)(done.args, 0, "hello from aiofarm\n", ""), done
    # the default farm is local:// under $XDG_DATA_HOME
    listed = await farm("ls", "--json", url=False)
    assert [j["name"] for j in listed.json()] == ["echo hello from aiofarm"]


async def test_run_without_dashes_passes_options_to_the_command(farm: Farm) -> None:
    done = await farm("run", "printf", "%s|", "-n", "--name", "x")
    assert done.code == 0 and done.stdout == "-n|--name|x|\n", done  # logs are lines


async def test_run_splits_streams_and_exits_with_the_job_code(farm: Farm) -> None:
    done = await farm("run", "--", "sh", "-c", "echo out; echo err >&2; echo out2; exit 3")
    assert done.code == 3, done
    assert done.stdout == "out\nout2\n"
    lines = done.stderr.splitlines()
    assert lines[0] == "err"
    assert lines[-1].startswith("aiofarm: job ") and "failed (exit code 3" in lines[-1], lines
    quiet = await farm("run", "-q", "--", "sh", "-c", "echo err >&2; exit 4")
    assert (quiet.code, quiet.stderr) == (4, "err\n")


async def test_run_killed_by_a_signal_exits_128_plus_n(farm: Farm) -> None:
    done = await farm("run", "-q", "--", "sh", "-c", "kill -TERM $$")
    assert done.code == 128 + signal.SIGTERM, done


async def test_run_options_reach_the_job(farm: Farm, tmp_path: Path) -> None:
    workdir = tmp_path / "work dir"
    workdir.mkdir()
    os.environ["AIOFARM_CLI_PASSTHROUGH"] = "from-shell"
    try:
        done = await farm(
            "run",
            "--name",
            "probe",
            "--priority",
            "77",
            "--tag",
            "a",
            "--tag",
            "b",
            "--env",
            "GREETING=hi there",
            "--env",
            "EMPTY=",
            "-e",
            "AIOFARM_CLI_PASSTHROUGH",
            "--cwd",
            str(workdir),
            "--",
            "sh",
            "-c",
            'echo "$GREETING|$EMPTY|$AIOFARM_CLI_PASSTHROUGH|$(pwd)"',
        )
    finally:
        del os.environ["AIOFARM_CLI_PASSTHROUGH"]
    assert done.code == 0, done
    assert done.stdout == f"hi there||from-shell|{workdir}\n"
    (job,) = (await farm("ls", "--json")).json()
    assert (job["name"], job["priority"], job["tags"]) == ("probe", 77, ["a", "b"])


async def test_run_shell_flag(farm: Farm) -> None:
    done = await farm("run", "--shell", "-q", "--", "echo", "$((1 + 2))", "|", "tr", "3", "x")
    assert (done.code, done.stdout) == (0, "x\n"), done
    # without --shell the words are exec'd, never interpreted
    plain = await farm("run", "-q", "--", "echo", "$((1 + 2))", "|", "tr")
    assert plain.stdout == "$((1 + 2)) | tr\n"


@pytest.mark.parametrize(
    ("signals", "trap", "code", "said"),
    [
        # an embedded farm's jobs die with us, so a signal cancels the job (a farm
        # service's jobs outlive us: there Ctrl-C detaches, see test_run_signals.py)
        # one Ctrl-C: cancel (SIGTERM to the job), wait for the end, exit 128+SIGINT
        ((signal.SIGINT,), "", 130, [b"canceling job"]),
        ((signal.SIGTERM,), "", 143, [b"SIGTERM: canceling job"]),
        ((signal.SIGHUP,), "", 129, [b"hang-up (SIGHUP): canceling job"]),
        # a job that ignores SIGTERM: the second Ctrl-C kills it at once
        ((signal.SIGINT, signal.SIGINT), "trap '' TERM; ", 130, [b"canceling job", b"killing job"]),
    ],
)
async def test_interrupt_cancels_the_job(
    farm: Farm, signals: tuple[int, ...], trap: str, code: int, said: list[bytes]
) -> None:
    marker = f"aiofarm-cli-{uuid.uuid4().hex}"
    # the marker rides in the job's environment, so this test finds exactly its own sleep
    script = f"{trap}echo ready; MARKER={marker} exec sleep 60"
    embedded = f"{farm.url}?embedded=true"
    argv = [*COMMAND, "--url", embedded, "run", "--", "sh", "-c", script]
    async with await anyio.open_process(argv, env=farm.env(), cwd=farm.cwd) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        with anyio.fail_after(30):
            got = b""
            while b"ready\n" not in got:
                got += await proc.stdout.receive()
        sleepers = [
            p
            for p in psutil.process_iter(["name", "environ"])
            if p.info["name"] == "sleep" and (p.info["environ"] or {}).get("MARKER") == marker
        ]
        assert len(sleepers) == 1
        err = b""
        with anyio.fail_after(30):
            for n, signum in enumerate(signals, 1):
                proc.send_signal(signum)
                # the next signal only once this one was acted on
                while err.count(b"aiofarm: ") < n:
                    err += await proc.stderr.receive()
            # a job that ignores SIGTERM would hold on for the driver's whole grace period:
            # ending within a few seconds shows the kill worked
            with anyio.fail_after(8 if trap else 30):
                returned = await proc.wait()
            async for chunk in proc.stderr:
                err += chunk
    assert returned == code, err
    assert b"Traceback" not in err, err
    for words in said:
        assert words in err, err
    if signals == (signal.SIGHUP,):
        assert b"Ctrl-C" not in err, err  # no one at a closed terminal to press it
    assert not sleepers[0].is_running() or sleepers[0].status() == psutil.STATUS_ZOMBIE
    (job,) = (await farm("--url", embedded, "ls", "--json", url=False)).json()
    assert job["status"] == "canceled", job
    if trap:  # it ignored SIGTERM, so only our SIGKILL ended it
        assert job["exit_code"] == -signal.SIGKILL, job


async def test_ls_table_filters_and_limit(farm: Farm) -> None:
    ok = await farm.run_ok("true", options=["--name", "fine", "--priority", "20"])
    failed = await farm("run", "-q", "--name", "broken", "--priority", "80", "--", "false")
    assert failed.code == 1
    third = await farm.run_ok("true", options=["--name", "Cleanup 12345", "--tag", "final"])

    table = await farm("ls")
    assert table.code == 0, table
    header, *rows = table.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "POOL", "PRI", "CREATED", "TIME", "EXIT"]
    assert len(rows) == 3
    assert rows[0].startswith(third) and rows[2].startswith(ok)  # newest first
    assert "broken" in rows[1] and "failed" in rows[1]

    async def names(*args: str) -> list[str]:
        done = await farm("ls", "--json", *args)
        assert done.code == 0, done
        return [j["name"] for j in done.json()]

    assert await names("--status", "failed") == ["broken"]
    assert await names("-s", "succeeded,failed") == ["Cleanup 12345", "broken", "fine"]
    assert await names("--status", "finished") == ["Cleanup 12345", "broken", "fine"]
    assert await names("--status", "active") == []
    assert await names("--where", "priority < 50 and not tags contains final") == ["fine"]
    assert await names("-w", r'name matches "^Cleanup \d{5}$" or exit_code != 0') == [
        "Cleanup 12345",
        "broken",
    ]
    assert await names("--limit", "0") == ["Cleanup 12345", "broken", "fine"]

    limited = await farm("ls", "--limit", "2")
    assert limited.code == 0 and len(limited.stdout.splitlines()) == 3
    assert "showing the newest 2" in limited.stderr
    ids = await farm("ls", "-q", "-s", "succeeded")
    assert (ids.code, ids.stdout) == (0, f"{third}\n{ok}\n")
    empty = await farm("ls", "--status", "running")
    assert (empty.code, empty.stdout, empty.stderr.strip()) == (0, "", "no jobs")


async def test_status_shows_details_and_history(farm: Farm) -> None:
    done = await farm("run", "-q", "--name", "st", "--tag", "x", "--", "sh", "-c", "exit 5")
    assert done.code == 5
    (job,) = (await farm("ls", "--json")).json()
    shown = await farm("status", job["id"])
    assert shown.code == 0, shown
    fields = dict(
        line.strip().split(None, 1)
        for line in shown.stdout.splitlines()[:6]
        if len(line.split(None, 1)) == 2
    )
    assert fields["id"] == job["id"] and fields["name"] == "st" and fields["status"] == "failed"
    assert "exit code" in shown.stdout and " 5" in shown.stdout
    history = shown.stdout.split("HISTORY", 1)[1]
    assert "pending" in history and "running" in history and "failed" in history
    as_json = (await farm("status", "--json", job["id"])).json()
    assert as_json["exit_code"] == 5 and as_json["tags"] == ["x"]
    assert [h["status"] for h in as_json["history"]][-1] == "failed"


async def test_logs_tail_timestamps_and_streams(farm: Farm) -> None:
    job_id = await farm.run_ok("sh", "-c", "for i in 1 2 3 4; do echo line$i; done; echo oops >&2")
    everything = await farm("logs", job_id)
    assert everything.code == 0, everything
    assert everything.stdout == "line1\nline2\nline3\nline4\n"
    assert everything.stderr == "oops\n"
    tail = await farm("logs", "--tail", "2", job_id)
    assert (tail.stdout + tail.stderr).splitlines() == ["line4", "oops"]
    stamped = await farm("logs", "-t", job_id)
    first = stamped.stdout.splitlines()[0]
    stamp, text = first.split(" ", 1)
    assert text == "line1" and stamp.startswith("20") and "T" in stamp
    followed = await farm("logs", "-f", "-n", "1", job_id)  # a finished job: ends at once
    assert (followed.code, followed.stdout, followed.stderr) == (0, "", "oops\n")


async def test_wait_and_cancel_finished_jobs(farm: Farm) -> None:
    good = await farm.run_ok("true")
    also = await farm.run_ok("true")
    waited = await farm("wait", good, also)
    assert waited.code == 0, waited
    assert f"✓ {good}" in waited.stderr and f"✓ {also}" in waited.stderr
    bad = await farm("run", "-q", "--", "false")
    assert bad.code == 1
    (failed,) = (await farm("ls", "--json", "--status", "failed")).json()
    mixed = await farm("wait", good, failed["id"], "--timeout", "30")
    assert mixed.code == 1, mixed
    assert f"✗ {failed['id']}" in mixed.stderr
    finished = await farm("cancel", good, failed["id"])
    assert finished.code == 0, finished
    assert finished.stdout == ""
    assert f"{good} is succeeded: not canceled" in finished.stderr
    unknown = await farm("cancel", good, "nope")
    assert unknown.code == 2
    _clean_error(unknown.stderr, "'nope' not found")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("status", "nope"), ("'nope' not found",)),
        (("logs", "nope"), ("not found",)),
        (("wait", "nope"), ("not found",)),
        (("ls", "--where", "status == flailed"), ("'flailed'", "    status == flailed", "^")),
        (("ls", "--where", "priority <"), ("at column 11",)),
        (("run", "--priority", "500", "--", "true"), ("priority",)),
        (("run", "--pool", "no-such-pool", "--", "true"), ("no-such-pool",)),
        (("run", "--", ""), ("command",)),
    ],
)
async def test_farm_errors_are_one_red_line_and_exit_2(
    farm: Farm, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    done = await farm(*args)
    assert done.code == 2, done
    _clean_error(done.stderr, *fragments)


async def test_bad_url_is_a_clean_error(farm: Farm) -> None:
    done = await farm("--url", "nope://x", "ls", url=False)
    assert done.code == 2
    _clean_error(done.stderr, "nope")
    from_env = await farm("ls", url=False, env=farm.env(AIOFARM_URL="nope://y"))
    assert from_env.code == 2
    _clean_error(from_env.stderr, "nope")


@pytest.mark.parametrize(
    "args",
    [
        ("ls", "--status", "flailed"),
        ("ls", "--limit", "-1"),
        ("run", "--env", "=x", "--", "true"),
        ("run", "--env", "AIOFARM_SURELY_UNSET_VAR", "--", "true"),
        ("run",),
        ("cancel",),
        ("frobnicate",),
    ],
)
async def test_usage_errors_exit_2(farm: Farm, args: tuple[str, ...]) -> None:
    done = await farm(*args)
    assert done.code == 2, done
    assert "Traceback" not in done.stderr and "Error" in done.stderr, done


async def test_aiofarm_url_from_the_environment(farm: Farm) -> None:
    done = await farm(
        "run", "-q", "--", "echo", "via env", url=False, env=farm.env(AIOFARM_URL=farm.url)
    )
    assert (done.code, done.stdout) == (0, "via env\n"), done
    listed = await farm("ls", "--json")  # --url farm.url: the same farm
    assert [j["name"] for j in listed.json()] == ["echo 'via env'"]


async def test_other_commands_follow_a_job_another_run_owns(farm: Farm, tmp_path: Path) -> None:
    """`run` in one process; `ls`, `wait`, `logs -f` from others see the job live."""
    gate = tmp_path / "go"
    script = f"echo start; while [ ! -e '{gate}' ]; do sleep 0.05; done; echo end"
    argv = [*COMMAND, "--url", farm.url, "run", "--name", "gated", "--", "sh", "-c", script]
    async with await anyio.open_process(argv, env=farm.env(), cwd=farm.cwd) as runner:
        assert runner.stdout is not None
        with anyio.fail_after(30):
            got = b""
            while b"start\n" not in got:
                got += await runner.stdout.receive()
        (job,) = (await farm("ls", "--json", "--status", "running")).json()
        assert job["name"] == "gated"
        timed_out = await farm("wait", job["id"], "--timeout", "0.3")
        assert timed_out.code == 124  # as timeout(1)
        assert "timed out after 0.3s" in timed_out.stderr and "Traceback" not in timed_out.stderr

        async with await farm.spawn("logs", "-f", job["id"]) as follower:
            assert follower.stdout is not None
            seen = await read_until(follower.stdout, b"start\n")
            with anyio.fail_after(30):
                gate.touch()
                async for chunk in follower.stdout:
                    seen += chunk
                assert await follower.wait() == 0
        assert seen == b"start\nend\n"
        waited = await farm("wait", job["id"])
        assert waited.code == 0, waited
        with anyio.fail_after(30):
            assert await runner.wait() == 0


async def test_cancel_a_job_another_process_runs(farm: Farm) -> None:
    """The farm service runs the jobs, whoever submitted them: `cancel` from a second
    process stops the job `aiofarm run` in the first is following, and that `run`
    ends with the job's end (SIGTERM: 128 + 15)."""
    argv = [*COMMAND, "--url", farm.url, "run", "--", "sh", "-c", "echo ready; exec sleep 60"]
    async with await anyio.open_process(argv, env=farm.env(), cwd=farm.cwd) as runner:
        assert runner.stdout is not None
        try:
            with anyio.fail_after(30):
                got = b""
                while b"ready\n" not in got:
                    got += await runner.stdout.receive()
            (job,) = (await farm("ls", "--json")).json()
            done = await farm("cancel", job["id"])
            assert done.code == 0, done
            assert done.stdout == f"canceled {job['id']}\n"
            with anyio.fail_after(30):
                code = await runner.wait()
            assert code != 0
            (after,) = (await farm("ls", "--json")).json()
            assert after["status"] == "canceled"
        finally:
            if runner.returncode is None:
                runner.send_signal(signal.SIGINT)
                with anyio.fail_after(30):
                    await runner.wait()


async def test_run_into_a_closed_pipe_cancels_the_job(farm: Farm) -> None:
    """`aiofarm run -- endless | head -1`: when the reader goes, the job is canceled and
    the CLI exits 141 (128 + SIGPIPE) without a traceback, as a shell pipeline would."""
    argv = [
        *COMMAND,
        "--url",
        farm.url,
        "run",
        "--",
        "sh",
        "-c",
        "while :; do echo y; sleep 0.01; done",
    ]
    read_end, write_end = os.pipe()  # a real pipe whose reader we can really close
    try:
        async with await anyio.open_process(
            argv, env=farm.env(), cwd=farm.cwd, stdout=write_end
        ) as proc:
            os.close(write_end)
            write_end = -1
            assert proc.stderr is not None
            with anyio.fail_after(30):
                first = await anyio.to_thread.run_sync(os.read, read_end, 2)
                assert first == b"y\n"
                os.close(read_end)
                read_end = -1
                code = await proc.wait()
                err = b"".join([chunk async for chunk in proc.stderr])
    finally:
        for fd in (read_end, write_end):
            if fd != -1:
                os.close(fd)
    assert code == 141, err
    assert b"Traceback" not in err, err
    (job,) = (await farm("ls", "--json")).json()
    assert job["status"] == "canceled", job
