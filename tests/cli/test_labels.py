"""Labels, ``wait --for`` and ``logs --attempt`` from the command line (the API of
issue 15: ``JobSpec.labels``, ``jobs.wait(until=)``, ``logs.stream(attempt=)``)."""

from __future__ import annotations

import json

import pytest

from .conftest import Farm, read_until

pytestmark = pytest.mark.anyio


async def test_labels_select_jobs_everywhere(farm: Farm) -> None:
    fx = (await farm("run", "-d", "-l", "team=fx", "-l", "shot=010", "--", "sh", "-c", "echo fx-out; exec sleep 60")).stdout.strip()
    light = (await farm("run", "-d", "--label", "team=lighting", "--", "sleep", "60")).stdout.strip()
    assert (await farm("ls", "-l", "team=fx", "-o", "name")).stdout.split() == [fx]
    assert (await farm("ls", "-l", "team=fx,shot=010", "-o", "name")).stdout.split() == [fx]
    assert (await farm("ls", "-l", "team=fx", "-l", "shot=020", "-o", "name")).stdout == ""
    (shown,) = [j for j in (await farm("ls", "-o", "json")).json() if j["id"] == fx]
    assert shown["labels"] == {"team": "fx", "shot": "010"}
    assert "shot=010,team=fx" in (await farm("ls", "-o", "wide")).stdout
    reached = await farm("wait", "--for", "running", "-l", "team=lighting", "--timeout", "60")
    assert reached.code == 0, reached
    async with await farm.spawn("logs", "-f", "-l", "team=fx", "--since", "1h") as follower:
        got = await read_until(follower.stdout, b"\n")  # one job selected: no prefix
        follower.terminate()
    assert got == b"fx-out\n", got
    tail = await farm("logs", "--tail", "1", "-l", "team=fx", "--prefix")
    assert (tail.code, tail.stdout) == (0, f"[{fx}] fx-out\n"), tail
    canceled = await farm("cancel", "-l", "team=fx")  # one job: no question asked
    assert canceled.stdout == f"canceled {fx}\n", canceled
    never = await farm("wait", "--for", "running", fx, "-o", "json")
    assert never.code == 1, never
    (record,) = [json.loads(line) for line in never.stdout.splitlines()]
    assert (record["type"], record["id"], record["reached"], record["status"]) == ("job", fx, False, "canceled")
    await farm("cancel", light)
    bad = await farm("ls", "-l", "team")
    assert bad.code == 2 and "KEY=VALUE" in bad.stderr


async def test_submit_labels_and_logs_of_one_attempt(farm: Farm, tmp_path: object) -> None:
    spec = '{"command": ["sh", "-c", "echo run; exit 1"], "retries": 1, "labels": {"kind": "flaky"}}'
    done = await farm.with_input(spec, "submit", "-", "--wait")
    assert done.code == 1, done  # it failed twice
    job_id = done.stdout.strip()
    assert (await farm("ls", "-l", "kind=flaky", "-o", "name")).stdout.split() == [job_id]
    both = await farm("logs", job_id)
    assert both.stdout == "run\nrun\n", both
    second = await farm("logs", "--attempt", "2", job_id, "-o", "json")
    assert [json.loads(x)["text"] for x in second.stdout.splitlines()] == ["run"], second
    none = await farm("logs", "--attempt", "3", job_id)
    assert (none.code, none.stdout) == (0, "")
