"""The commands of issue 15, run for real as child processes against a local:// farm:
output formats, submit, describe, selection with --where / --yes, pools, workers,
contexts, wait's exit codes, multi-job logs, colour, and the not-found message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml  # type: ignore[import-untyped]

from .conftest import Farm, read_until

pytestmark = pytest.mark.anyio


async def test_every_read_command_takes_output_formats(farm: Farm) -> None:
    first = await farm.run_ok("true", options=["--name", "one", "--tag", "t"])
    second = await farm.run_ok("true", options=["--name", "two"])
    for args, key in [
        (("ls",), "id"),
        (("status", first), "id"),
        (("describe", first), "id"),
        (("tasks", first), "id"),
        (("pools", "ls"), "name"),
        (("workers", "ls"), "name"),
    ]:
        as_json = await farm(*args, "-o", "json")
        assert as_json.code == 0, as_json
        data = as_json.json()
        items = data if isinstance(data, list) else [data]
        names = await farm(*args, "-o", "name")
        assert names.stdout.splitlines() == [str(i[key]) for i in items], args
        if args[0] in ("ls", "status"):  # one formatter for all: two commands show it
            as_yaml = await farm(*args, "-o", "yaml")
            assert yaml.safe_load(as_yaml.stdout) == data, args
            wide = await farm(*args, "-o", "wide")
            assert wide.code == 0 and wide.stdout, args
    assert (await farm("ls", "--sort", "name", "-o", "name")).stdout.split() == [first, second]
    assert (await farm("ls", "--sort", "-name", "-o", "name")).stdout.split() == [second, first]
    ls = (await farm("ls", "-o", "json")).json()
    assert [j["id"] for j in ls] == [second, first]
    assert ls[1]["tags"] == ["t"] and "labels" in ls[1]
    wide = (await farm("ls", "-o", "wide")).stdout.splitlines()[0].split()
    assert wide[:8] == ["ID", "NAME", "STATUS", "POOL", "PRI", "CREATED", "TIME", "EXIT"]
    assert {"OWNER", "TAGS", "LABELS", "REASON"} <= set(wide)
    described = (await farm("describe", first, "-o", "json")).json()
    assert described["tasks"][0]["status"] == "succeeded" and described["explain"] is None


async def test_submit_a_file_and_many_from_stdin(farm: Farm, tmp_path: Path) -> None:
    one = tmp_path / "job.yaml"
    one.write_text("command: [sh, -c, 'echo from yaml']\nname: yml\nresources: {cpu: 1}\n")
    done = await farm("submit", str(one), "--wait")
    assert done.code == 0, done
    job_id = done.stdout.strip()
    assert (await farm("logs", job_id)).stdout == "from yaml\n"
    batch = json.dumps(
        [
            {"id": "first", "command": ["sh", "-c", "echo a"]},
            {"command": "echo b", "depends_on": ["first"], "name": "after"},
        ]
    )
    many = await farm.with_input(batch, "submit", "-", "-o", "json")
    assert many.code == 0, many
    jobs = many.json()
    assert jobs[0]["id"] == "first" and jobs[1]["depends_on"] == ["first"]
    bad = await farm.with_input('[{"command": "true"}, {"comand": "x"}]', "submit", "-")
    assert bad.code == 2 and "jobs[1].comand: unknown field" in bad.stderr, bad
    assert len((await farm("ls", "-o", "json")).json()) == 3  # nothing of the bad batch


async def test_change_many_jobs_needs_yes_off_a_terminal(farm: Farm) -> None:
    ids = []
    for n in range(3):
        done = await farm("run", "-d", "--priority", str(10 + n), "--", "sleep", "60")
        assert done.code == 0, done
        ids.append(done.stdout.strip())
    paused = await farm("pause", ids[0])  # named by id: no question
    assert (paused.code, paused.stdout) == (0, f"paused {ids[0]}\n"), paused
    refused = await farm("cancel", "--where", "priority >= 10")
    assert refused.code == 2 and "--yes" in refused.stderr, refused
    assert {j["status"] for j in (await farm("ls", "-o", "json")).json()} <= {"running", "suspended", "pending"}
    canceled = await farm("cancel", "--where", "priority >= 10", "--yes", "-o", "name")
    assert canceled.code == 0, canceled
    assert sorted(canceled.stdout.split()) == sorted(ids)
    assert {j["status"] for j in (await farm("ls", "-o", "json")).json()} == {"canceled"}
    again = await farm("retry", ids[1])
    assert (again.code, again.stdout) == (0, f"retrying {ids[1]}\n"), again
    await farm("cancel", ids[1])
    gone = await farm("delete", "--where", "priority == 12", "--yes")
    assert gone.stdout == f"deleted {ids[2]}\n", gone
    assert len((await farm("ls", "-o", "json")).json()) == 2
    nothing = await farm("resume", "--where", "priority > 90")
    assert (nothing.code, nothing.stdout) == (0, ""), nothing
    assert "no job matches" in nothing.stderr


async def test_pools_and_workers(farm: Farm) -> None:
    created = await farm("pools", "create", "gpu", "--slots", "2")
    assert created.code == 0, created
    assert (await farm("pools", "rename", "gpu", "gpu-a")).code == 0
    pools = {p["name"]: p for p in (await farm("pools", "ls", "-o", "json")).json()}
    assert pools["gpu-a"]["slots"] == 2 and pools["gpu-a"]["free"] == 2
    assert (await farm("pools", "delete", "gpu-a")).code == 0
    missing = await farm("pools", "delete", "gpu-a")
    assert missing.code == 2 and "'gpu-a' not found" in missing.stderr
    (worker,) = (await farm("workers", "ls", "-o", "json")).json()
    off = await farm("workers", "disable", worker["name"], "--reason", "maintenance")
    assert off.code == 0, off
    assert (await farm("workers", "ls", "-o", "json")).json()[0]["enabled"] is False
    assert (await farm("workers", "enable", "--regex", ".*")).code == 0
    assert (await farm("workers", "ls", "-o", "json")).json()[0]["enabled"] is True
    bare = await farm("workers", "disable")
    assert bare.code == 2 and "--regex" in bare.stderr


async def test_contexts_and_their_precedence(farm: Farm, tmp_path: Path) -> None:
    cfg = tmp_path / "cfg"
    other = f"local://{tmp_path / 'other'}"
    env = farm.env(XDG_CONFIG_HOME=str(cfg))
    assert (await farm("config", "set", "main", farm.url, url=False, env=env)).code == 0
    assert (await farm("config", "set", "other", other, url=False, env=env)).code == 0
    secret = await farm("config", "set", "remote", "ray+http://h:1?token=s3cret", url=False, env=env)
    assert "s3cret" not in secret.stdout and "***" in secret.stdout
    assert oct((cfg / "aiofarm" / "config.toml").stat().st_mode & 0o777) == "0o600"
    used = await farm("config", "use", "other", url=False, env=env)
    assert used.code == 0, used
    listed = (await farm("config", "ls", "-o", "json", url=False, env=env)).json()
    assert [c["name"] for c in listed if c["current"]] == ["other"]
    assert "s3cret" not in json.dumps(listed)
    await farm("run", "-q", "--name", "in-other", "--", "true", url=False, env=env)
    assert [j["name"] for j in (await farm("ls", "-o", "json", url=False, env=env)).json()] == ["in-other"]
    # flag over environment over file, as kubectl's --context and docker's DOCKER_CONTEXT
    by_flag = await farm("--context", "main", "ls", "-o", "json", url=False, env=env)
    assert by_flag.json() == []
    by_env = await farm("ls", "-o", "json", url=False, env={**env, "AIOFARM_CONTEXT": "main"})
    assert by_env.json() == []
    flag_wins = await farm("--context", "other", "ls", "-o", "json", url=False, env={**env, "AIOFARM_URL": farm.url})
    assert [j["name"] for j in flag_wins.json()] == ["in-other"]
    current = await farm("config", "current", url=False, env={**env, "AIOFARM_CONTEXT": "main"})
    assert current.stdout.startswith(farm.url) and "$AIOFARM_CONTEXT" in current.stdout
    unknown = await farm("--context", "nope", "ls", url=False, env=env)
    assert unknown.code == 2 and "no context 'nope'" in unknown.stderr and "main" in unknown.stderr
    assert (await farm("config", "delete", "other", url=False, env=env)).code == 0
    assert "current-context" not in (cfg / "aiofarm" / "config.toml").read_text()


async def test_wait_exit_codes(farm: Farm) -> None:
    nothing = await farm("wait")
    assert (nothing.code, nothing.stdout) == (0, "") and "nothing to wait for" in nothing.stderr
    none_active = await farm("wait", "--where", "status == running")
    assert none_active.code == 0 and "nothing to wait for" in none_active.stderr
    sleeper = (await farm("run", "-d", "--", "sleep", "60")).stdout.strip()
    timed_out = await farm("wait", sleeper, "--timeout", "0.2")
    assert timed_out.code == 124, timed_out
    await farm("cancel", sleeper)
    ok = await farm.run_ok("true")
    lines = await farm("wait", ok, sleeper, "-o", "json")
    assert lines.code == 1, lines
    records = [json.loads(line) for line in lines.stdout.splitlines()]
    assert {r["type"] for r in records} == {"job"}
    assert {r["id"]: r["reached"] for r in records} == {ok: True, sleeper: False}


async def test_logs_of_many_jobs_with_prefix_and_json(farm: Farm) -> None:
    a = await farm.run_ok("sh", "-c", "echo a1; echo a2", options=["--tag", "pair"])
    b = await farm.run_ok("sh", "-c", "echo b1 >&2", options=["--tag", "pair"])
    both = await farm("logs", a, b)
    assert both.code == 0, both
    assert sorted(both.stdout.splitlines()) == [f"[{a}] a1", f"[{a}] a2"]
    assert both.stderr == f"[{b}] b1\n"
    by_where = await farm("logs", "--where", "tags contains pair", "--no-prefix", "--tail", "1")
    assert sorted((by_where.stdout + by_where.stderr).split()) == ["a2", "b1"]
    records = [json.loads(x) for x in (await farm("logs", a, "-o", "json")).stdout.splitlines()]
    assert [(r["type"], r["job"], r["stream"], r["text"]) for r in records] == [
        ("log", a, "stdout", "a1"),
        ("log", a, "stdout", "a2"),
    ]
    future = await farm("logs", a, "--since", "2999-01-01T00:00:00")
    assert (future.code, future.stdout) == (0, ""), future
    recent = await farm("logs", a, "--since", "10m")
    assert recent.stdout == "a1\na2\n"
    bad = await farm("logs", a, "--since", "yesterday")
    assert bad.code == 2 and "since" in bad.stderr
    nobody = await farm("logs")
    assert nobody.code == 2 and "give job ids" in nobody.stderr


async def test_colour_follows_the_flag_and_the_environment(farm: Farm) -> None:
    await farm.run_ok("true")
    base = {k: v for k, v in farm.env().items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM")}
    forced = await farm("ls", env={**base, "FORCE_COLOR": "1"})
    assert "\x1b[" in forced.stdout
    assert "\x1b[" not in (await farm("ls", env=base)).stdout  # a pipe: plain
    assert "\x1b[" not in (await farm("ls", env={**base, "FORCE_COLOR": "1", "NO_COLOR": "1"})).stdout
    assert "\x1b[" not in (await farm("ls", env={**base, "TERM": "dumb"})).stdout
    assert "\x1b[" in (await farm("--color", "always", "ls", env={**base, "NO_COLOR": "1"})).stdout
    assert "\x1b[" not in (await farm("--color", "never", "ls", env={**base, "FORCE_COLOR": "1"})).stdout


async def test_not_found_names_the_farm_url(farm: Farm) -> None:
    await farm.run_ok("true")  # the service runs: the quick path
    for args in (("status", "nope"), ("describe", "nope"), ("cancel", "nope")):
        done = await farm(*args)
        assert done.code == 2
        assert f"job 'nope' not found on {farm.url}\n" in done.stderr, done  # named once


async def test_run_detach_prints_the_id_and_leaves_the_job(farm: Farm) -> None:
    done = await farm("run", "-d", "--", "sh", "-c", "sleep 0.3; echo late")
    assert done.code == 0 and done.stdout.strip(), done
    job_id = done.stdout.strip()
    waited = await farm("wait", job_id)
    assert waited.code == 0, waited
    assert (await farm("logs", job_id)).stdout == "late\n"


async def test_a_dead_slurm_port_is_an_unreachable_host_not_a_missing_token(farm: Farm) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in farm.env().items() if k != "SLURM_JWT"}
    done = await farm("--url", f"slurm+http://127.0.0.1:{port}", "ls", url=False, env=env)
    assert done.code == 2, done
    assert f"cannot reach slurmrestd at http://127.0.0.1:{port}" in done.stderr, done
    assert "JWT" not in done.stderr


ECHO = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('127.0.0.1', 0)); s.listen(); print(s.getsockname()[1], flush=True)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(c.recv(100).upper()); c.close()\n"
)


async def test_port_forward_several_ports_and_an_address(farm: Farm) -> None:
    import anyio

    job_id = (await farm("run", "-d", "--", "python3", "-c", ECHO)).stdout.strip()
    async with await farm.spawn("logs", "-f", job_id) as follower:
        first = await read_until(follower.stdout, b"\n")
        follower.terminate()
    port = first.decode().split()[0]
    async with await farm.spawn("port-forward", "--address", "127.0.0.1", job_id, f":{port}", f"0:{port}") as proc:
        out = await read_until(proc.stdout, b"\n")
        while out.count(b"\n") < 2:  # one line per listener
            out += await read_until(proc.stdout, b"\n")
        with anyio.fail_after(30):
            lines = out.decode().splitlines()
            assert all(line.startswith("Forwarding from 127.0.0.1:") for line in lines), lines
            locals_ = {int(line.split(":")[1].split()[0]) for line in lines}
            assert len(locals_) == 2 and all(line.endswith(f"-> {port}") for line in lines)
            for local in locals_:
                async with await anyio.connect_tcp("127.0.0.1", local) as conn:
                    await conn.send(b"hello")
                    assert await conn.receive() == b"HELLO"
            await farm("cancel", job_id)  # the forward ends with the job
            assert await proc.wait() == 0
    bad = await farm("port-forward", job_id, "x:80")
    assert bad.code == 2 and "LOCAL:REMOTE" in bad.stderr


async def test_ls_over_several_pages_on_the_quick_path(farm: Farm) -> None:
    """More jobs than one page of the service's listing (5,000): the quick path, which
    runs without an event loop, meets the listing's checkpoint between pages."""
    specs = json.dumps([{"command": ["true"], "paused": True} for _ in range(5001)])
    assert (await farm.with_input(specs, "submit", "-")).code == 0
    listed = await farm("ls", "-n", "0", "-o", "name")
    assert listed.code == 0, listed.stderr[-2000:]
    assert len(listed.stdout.split()) == 5001
