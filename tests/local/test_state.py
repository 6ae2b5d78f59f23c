"""The local driver's state dir: restarts, crashes, two clients, close, fd hygiene,
pools, workers, bad input, templates, tty/stdin, and the same through the Client."""

from __future__ import annotations

import itertools
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
import yarl

from aiofarm import Client
from aiofarm.drivers.base import Action, LogQuery
from aiofarm.drivers.local import EmbeddedDriver, LocalDriver
from aiofarm.errors import InvalidSpec, JobNotFound, PoolNotFound, StateLocked, UnsupportedError
from aiofarm.models import Capability, Job, JobSpec, JobStatus, Resources
from tests.conftest import open_fds

from .helpers import GRACE, alive, descendants_of_me, open_driver, read_pids, wait_for, wait_gone

pytestmark = pytest.mark.anyio


async def test_state_is_sqlite_wal_with_tables(tmp_path: Path) -> None:
    async with open_driver(tmp_path) as d:
        [job] = await d.submit([JobSpec(command="echo hi")])
        await wait_for(d, job.id)
    db = sqlite3.connect(tmp_path / "farm.sqlite")
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert {"jobs", "steps", "tasks", "history", "pools", "meta"} <= tables
        assert db.execute("SELECT status, exit_code FROM jobs").fetchall() == [("succeeded", 0)]
        assert [r[0] for r in db.execute("SELECT status FROM history ORDER BY rowid")] == [
            "pending",
            "running",
            "succeeded",
        ]
    finally:
        db.close()
    log = (tmp_path / "logs").iterdir().__next__().read_bytes()
    # <time> <kind><task index>.<attempt> <text>
    stamp, kind, text = log.rstrip(b"\n").split(b" ", 2)
    assert float(stamp) > 0 and kind == b"o0.1" and text == b"hi"


async def test_history_and_pending_jobs_survive_a_restart(tmp_path: Path) -> None:
    async with open_driver(tmp_path) as d:
        [done] = await d.submit([JobSpec(command="echo kept")])
        await wait_for(d, done.id)
        [held] = await d.submit([JobSpec(command="echo later", paused=True)])
    async with open_driver(tmp_path) as d:
        again = (await d.get_jobs([done.id]))[done.id]
        assert again.status is JobStatus.SUCCEEDED and len(again.history) == 3
        assert [ln.text for ln in (await d.read_log(done.id, None, LogQuery())).lines] == ["kept"]
        assert (await d.get_jobs([held.id]))[held.id].status is JobStatus.SUSPENDED
        await d.control([held.id], Action.RESUME, stop_work=False)
        assert (await wait_for(d, held.id)).status is JobStatus.SUCCEEDED
        # generated ids are never reused after a restart
        [new] = await d.submit([JobSpec(command=["true"])])
        assert new.id not in (done.id, held.id)


async def test_close_terminates_running_and_keeps_pending(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    async with open_driver(tmp_path / "s", slots=1) as d:
        [running, queued] = await d.submit(
            [JobSpec(command=f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait"), JobSpec(command="echo ran")]
        )
        grandchild, child = await read_pids(pids, 2)
    assert await wait_gone(child) and await wait_gone(grandchild)
    async with open_driver(tmp_path / "s", slots=1) as d:
        lost = (await d.get_jobs([running.id]))[running.id]
        assert lost.status is JobStatus.FAILED and lost.reason == "lost: farm closed"
        done = await wait_for(d, queued.id)
        assert done.status is JobStatus.SUCCEEDED


async def test_close_when_cancelled_still_cleans_up(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    with anyio.move_on_after(1.0):
        async with open_driver(tmp_path / "s") as d:
            await d.submit([JobSpec(command=f"echo $$ >> {pids}; sleep 60")])
            await anyio.sleep(60)  # cancelled here
    [pid] = await read_pids(pids, 1)
    assert await wait_gone(pid)


async def test_open_close_leaks_no_fd(tmp_path: Path) -> None:
    before = open_fds()
    async with open_driver(tmp_path) as d:
        job, _ = await d.submit([JobSpec(command="echo a; echo b >&2"), JobSpec(command="sleep 0.1", stdin=True)])
        await wait_for(d, job.id)
        [job2] = await d.submit([JobSpec(command=["sleep", "30"])])
        await wait_for(d, job2.id, JobStatus.RUNNING)
    assert open_fds() == before
    # and with a job canceled mid-run
    async with open_driver(tmp_path) as d:
        [job] = await d.submit([JobSpec(command=["sleep", "30"])])
        await wait_for(d, job.id, JobStatus.RUNNING)
        await d.control([job.id], Action.CANCEL, stop_work=True)
        await wait_for(d, job.id)
    assert open_fds() == before


CRASHER = textwrap.dedent(
    """
    import sys, anyio
    from aiofarm import Client, JobSpec

    async def main(state, pids):
        async with Client("local://" + state, cancel_grace=0.5, embedded=True) as farm:
            jobs = await farm.jobs.submit([
                JobSpec(command=f"sleep 60 & echo $! >> {pids}; echo $$ >> {pids}; wait", id="long"),
                JobSpec(command="echo quick", id="quick"),
                JobSpec(command=["true"], id="held", paused=True),
                JobSpec(command=["true"], id="after", depends_on=["long"]),
            ])
            await farm.jobs.wait("quick")
            print("ready", flush=True)
            await anyio.sleep(60)

    anyio.run(main, sys.argv[1], sys.argv[2])
    """
)


async def test_sigkilled_owner_reopened_marks_lost_and_leaves_no_orphan(tmp_path: Path) -> None:
    state = tmp_path / "state"
    pids = tmp_path / "pids"
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    proc = await anyio.open_process([sys.executable, str(script), str(state), str(pids)], stderr=subprocess.STDOUT)
    try:
        assert proc.stdout is not None
        with anyio.fail_after(30):
            out = b""
            while b"ready" not in out:
                out += await proc.stdout.receive()
        grandchild, child = await read_pids(pids, 2)
        assert alive(child) and alive(grandchild)
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()
    # the owner is dead; its job's processes are still there, orphaned
    assert alive(child) and alive(grandchild)
    async with open_driver(state) as d:
        got = await d.get_jobs(["long", "quick", "held", "after"])
        assert set(got) == {"long", "quick", "held", "after"}  # no record lost
        long_ = got["long"]
        assert long_.status is JobStatus.FAILED and long_.reason == "lost: farm service died"
        assert [h.status for h in long_.history] == [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED]
        [task] = await d.tasks("long")
        assert task.status is JobStatus.FAILED and task.reason == "lost: farm service died"
        assert got["quick"].status is JobStatus.SUCCEEDED
        assert got["held"].status is JobStatus.SUSPENDED
        assert got["after"].status is JobStatus.FAILED and got["after"].reason == "dependency long failed"
        assert [ln.text for ln in (await d.read_log("quick", None, LogQuery())).lines] == ["quick"]
        assert await wait_gone(child) and await wait_gone(grandchild)


async def test_a_reader_client_waits_through_the_poller(tmp_path: Path) -> None:
    url = f"local://{tmp_path}?embedded=true"
    async with Client(url) as owner, Client(url) as reader:
        assert isinstance(reader.driver, EmbeddedDriver) and reader.driver.role == "reader"
        job = await owner.jobs.start(["sh", "-c", "exit 3"])
        result = await reader.jobs.wait(job.id, timeout=30, max_interval=0.5)
        assert (result.status, result.job.exit_code) == (JobStatus.FAILED, 3)
        assert reader.hub.rounds >= 1  # polled: a reader pushes nothing


async def test_two_drivers_on_one_state_dir(tmp_path: Path) -> None:
    before = open_fds()
    async with open_driver(tmp_path) as owner:
        assert owner.role == "owner"
        with pytest.raises(StateLocked):
            async with open_driver(tmp_path, role="owner"):
                pass
        async with open_driver(tmp_path) as reader:
            assert reader.role == "reader"
            # a reader cannot hear the owner: it is polled, not a push driver
            assert Capability.PUSH not in reader.capabilities and Capability.PUSH in owner.capabilities
            with pytest.raises(UnsupportedError, match="push"):
                reader.subscribe(lambda job: None)
            [job] = await owner.submit([JobSpec(command="echo shared")])
            await wait_for(owner, job.id)
            got = (await reader.get_jobs([job.id]))[job.id]
            assert got.status is JobStatus.SUCCEEDED
            assert [ln.text for ln in (await reader.read_log(job.id, None, LogQuery())).lines] == ["shared"]
            assert [t.status for t in await reader.tasks(job.id)] == [JobStatus.SUCCEEDED]
            assert [p.name for p in await reader.list_pools()] == ["default"]
            assert (await reader.capacity())["default"] >= 1
            assert "finished" in await reader.explain(job.id)
            for call in (
                reader.submit([JobSpec(command=["true"])]),
                reader.control([job.id], Action.DELETE, stop_work=False),
                reader.create_pool("x", 1),
            ):
                with pytest.raises(StateLocked):
                    await call
    # once the owner is gone, a new driver owns the dir
    async with open_driver(tmp_path) as d:
        assert d.role == "owner"
    assert open_fds() == before  # the reader and the refused owner leaked nothing


async def test_pools_lifecycle_and_capacity(tmp_path: Path) -> None:
    async with open_driver(tmp_path, slots=3) as d:
        [default] = await d.list_pools()
        assert (default.name, default.slots) == ("default", 3)
        gpu = await d.create_pool("gpu", 2)
        assert (gpu.name, gpu.slots) == ("gpu", 2)
        assert await d.capacity() == {"default": 3, "gpu": 2}
        with pytest.raises(InvalidSpec):
            await d.create_pool("gpu", 1)
        renamed = await d.rename_pool(gpu.id, "gpu-a")
        assert renamed.id == gpu.id and renamed.name == "gpu-a"
        [job] = await d.submit([JobSpec(command=["sleep", "30"], pool="gpu-a")])
        await wait_for(d, job.id, JobStatus.RUNNING)
        assert await d.capacity() == {"default": 3, "gpu-a": 1}
        with pytest.raises(InvalidSpec) as info:
            await d.delete_pool("gpu-a")
        assert "active" in str(info.value)
        await d.control([job.id], Action.CANCEL, stop_work=True)
        await wait_for(d, job.id)
        await d.delete_pool(gpu.id)
        assert [p.name for p in await d.list_pools()] == ["default"]
        with pytest.raises(InvalidSpec):
            await d.delete_pool(default.id)
        with pytest.raises(InvalidSpec):
            await d.rename_pool("default", "other")
        with pytest.raises(PoolNotFound):
            await d.delete_pool("nope")
        with pytest.raises(PoolNotFound):
            await d.rename_pool("nope", "x")


async def test_disabled_worker_holds_dispatch(tmp_path: Path) -> None:
    async with open_driver(tmp_path) as d:
        [worker] = await d.list_workers()
        assert worker.enabled and worker.status == "idle" and worker.cpus == os.cpu_count()
        await d.set_workers_enabled([worker.name], False, stop_work=False, reason="maintenance")
        [job] = await d.submit([JobSpec(command=["true"])])
        await anyio.sleep(0.2)
        assert (await d.get_jobs([job.id]))[job.id].status is JobStatus.PENDING
        assert "disabled: maintenance" in await d.explain(job.id)
        [worker] = await d.list_workers()
        assert not worker.enabled and worker.status == "disabled" and worker.reason == "maintenance"
        await d.set_workers_enabled([], True, stop_work=False, reason=None)
        assert (await wait_for(d, job.id)).status is JobStatus.SUCCEEDED
        with pytest.raises(InvalidSpec):
            await d.set_workers_enabled(["not-this-host"], False, stop_work=False, reason=None)


BAD_URLS = [
    ("local://somehost/x", "url"),
    ("local:///x?bogus=1", "options.bogus"),
    ("local:///x?cancel_grace=abc", "options.cancel_grace"),
    ("local:///x?cancel_grace=-1", "options.cancel_grace"),
    ("local:///x?slots=0", "options.slots"),
    ("local:///x?slots=two", "options.slots"),
    ("local:///x?role=boss", "options.role"),
    ("local://:8080/x", "url"),
    ("local:///x?state_dir=/y", "options.state_dir"),
]


@pytest.mark.parametrize(("url", "field"), BAD_URLS)
def test_bad_urls_and_options(url: str, field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        LocalDriver.from_url(yarl.URL(url), {})
    assert info.value.field == field


def test_bad_option_mappings() -> None:
    for options, field in (
        ({"cancel_grace": True}, "options.cancel_grace"),
        ({"slots": 1.5}, "options.slots"),
        ({"state_dir": "relative"}, "options.state_dir"),
        ({"nope": 1}, "options.nope"),
    ):
        with pytest.raises(InvalidSpec) as info:
            LocalDriver.from_url(yarl.URL("local://"), options)
        assert info.value.field == field
    d = LocalDriver.from_url(yarl.URL("local://?cancel_grace=2&slots=3&embedded=true"), {"role": "reader"})
    assert isinstance(d, EmbeddedDriver)
    assert (d.cancel_grace, d.default_slots, d.wanted_role) == (2.0, 3, "reader")
    assert d.state_dir.endswith(os.path.join("data", "aiofarm"))  # $XDG_DATA_HOME/aiofarm
    with pytest.raises(InvalidSpec) as info:
        LocalDriver.from_url(yarl.URL("local://"), {"role": "reader"})  # roles: embedded only
    assert info.value.field == "options.role"
    with pytest.raises(InvalidSpec) as info:
        LocalDriver.from_url(yarl.URL("local://?embedded=perhaps"), {})
    assert info.value.field == "options.embedded"
    s = LocalDriver.from_url(yarl.URL("local://?idle_timeout=0"), {"slots": 2})
    assert not isinstance(s, EmbeddedDriver) and s.capabilities == EmbeddedDriver.capabilities


async def test_unwritable_state_dir_is_invalid_url(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidSpec) as info:
        async with open_driver(blocker / "state"):
            pass
    assert info.value.field == "url"


BAD_SPECS: list[tuple[list[JobSpec], str]] = [
    ([JobSpec(command=["true"], pool="nope")], "specs[0].pool"),
    ([JobSpec(command=())], "specs[0].command"),
    ([JobSpec(command="  ")], "specs[0].command"),
    ([JobSpec()], "specs[0].command"),
    ([JobSpec(command=["true"], cwd="/no/such/dir")], "specs[0].cwd"),
    ([JobSpec(command=["true"], depends_on=["ghost"])], "specs[0].depends_on"),
    ([JobSpec(command=["true"], id="x"), JobSpec(command=["true"], id="x")], "specs[1].id"),
    ([JobSpec(command=["true"], priority=-1)], "specs[0].priority"),
    ([JobSpec(command=["true"], retries=-1)], "specs[0].retries"),
    ([JobSpec(command=["true"], timeout=0)], "specs[0].timeout"),
    ([JobSpec(command=["true"], resources=Resources(cpu=10_000))], "specs[0].resources.cpu"),
    ([JobSpec(command=["true"]), JobSpec(command=["true"], id="y", depends_on=["y"])], "specs[1].depends_on"),
    ([JobSpec(command=["true"], env={"A": 1})], "specs[0].env['A']"),  # type: ignore[dict-item]
    ([JobSpec(command=["true"], max_workers=0)], "specs[0].max_workers"),
]


@pytest.mark.parametrize(("specs", "field"), BAD_SPECS)
async def test_bad_specs_raise_invalid_spec_and_create_nothing(
    tmp_path: Path, specs: list[JobSpec], field: str
) -> None:
    async with open_driver(tmp_path) as d:
        with pytest.raises(InvalidSpec) as info:
            await d.submit(specs)
        assert info.value.field == field
        from aiofarm.drivers.base import ListQuery

        assert (await d.list_page(ListQuery(), None, 10))[0] == []


async def test_existing_id_and_unknown_ids(tmp_path: Path) -> None:
    async with open_driver(tmp_path) as d:
        await d.submit([JobSpec(command=["true"], id="taken")])
        with pytest.raises(InvalidSpec) as info:
            await d.submit([JobSpec(command=["true"], id="taken")])
        assert info.value.field == "specs[0].id"
        assert await d.get_jobs(["nope"]) == {}
        for call in (d.tasks("nope"), d.explain("nope"), d.read_log("nope", None, LogQuery())):
            with pytest.raises(JobNotFound):
                await call
        for action in Action:
            with pytest.raises(JobNotFound):
                await d.control(["taken", "nope"], action, stop_work=False)


async def test_template_job_steps_and_tasks(tmp_path: Path) -> None:
    out = tmp_path / "out"
    template: dict[str, Any] = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "frames",
        "steps": [
            {
                "name": "Render",
                "parameterSpace": {"taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": "1-4"}]},
                "script": {
                    "actions": {"onRun": {"command": "/bin/sh", "args": ["-c", f"echo f{{{{Task.Param.Frame}}}} >> {out}"]}}
                },
            },
            {
                "name": "Encode",
                "dependencies": [{"dependsOn": "Render"}],
                "script": {"actions": {"onRun": {"command": "/bin/sh", "args": ["-c", f"echo encode >> {out}"]}}},
            },
        ],
    }
    async with open_driver(tmp_path / "s", slots=2) as d:
        [job] = await d.submit([JobSpec(template=template)])
        done = await wait_for(d, job.id)
        assert done.status is JobStatus.SUCCEEDED, done.reason
        assert dict(done.task_counts) == {"succeeded": 5}
        lines = out.read_text().split()
        assert sorted(lines[:4]) == ["f1", "f2", "f3", "f4"] and lines[4] == "encode"
        tasks = await d.tasks(job.id)
        assert [t.step for t in tasks] == ["Render"] * 4 + ["Encode"]
        assert [dict(t.parameters) for t in tasks[:4]] == [{"Frame": i} for i in range(1, 5)]


async def test_tty_and_stdin_jobs(tmp_path: Path) -> None:
    async with open_driver(tmp_path) as d:
        [tty_job, stdin_job] = await d.submit(
            [
                JobSpec(command="test -t 0 && test -t 1 && tty", tty=True),
                JobSpec(command=["cat"], stdin=True),
            ]
        )
        await wait_for(d, stdin_job.id, JobStatus.RUNNING)
        [task] = d.running_tasks(stdin_job.id)
        assert task.stdin_fd is not None and task.pgid == task.pid
        chunks: list[tuple[int, bytes]] = []
        task.add_listener(lambda fileno, data: chunks.append((fileno, data)))
        os.write(task.stdin_fd, b"hello\n")
        task.close_stdin()
        assert await task.wait() == 0
        assert (1, b"hello\n") in chunks
        done = await wait_for(d, stdin_job.id)
        assert done.status is JobStatus.SUCCEEDED
        assert [ln.text for ln in (await d.read_log(stdin_job.id, None, LogQuery())).lines] == ["hello"]
        t = await wait_for(d, tty_job.id)
        assert t.status is JobStatus.SUCCEEDED, (await d.read_log(tty_job.id, None, LogQuery())).lines
        [line] = (await d.read_log(tty_job.id, None, LogQuery())).lines
        assert line.text.startswith("/dev/pts/")


async def test_cannot_start_program_fails_the_task(tmp_path: Path) -> None:
    async with open_driver(tmp_path) as d:
        [job] = await d.submit([JobSpec(command=["/no/such/program"], retries=1)])
        done = await wait_for(d, job.id)
        assert done.status is JobStatus.FAILED and done.exit_code == 127
        assert done.reason is not None and "cannot start" in done.reason
        [task] = await d.tasks(job.id)
        assert task.attempts == 2
        page = await d.read_log(job.id, None, LogQuery(streams=frozenset({"aiofarm"})))
        assert len(page.lines) == 2 and "No such file" in page.lines[0].text


async def test_capabilities() -> None:
    caps = LocalDriver.capabilities
    assert Capability.PUSH in caps and Capability.POOLS_MANAGE in caps and Capability.EXPLAIN in caps


# -- through the Client ------------------------------------------------------------------


async def test_through_the_client(tmp_path: Path) -> None:
    from aiofarm import Client

    async with Client("local://" + str(tmp_path), cancel_grace=GRACE) as farm:
        assert farm.driver_name == "local"
        job = await farm.jobs.start(command="echo via-client; exit 4")
        result = await farm.jobs.wait(job.id, timeout=20)
        assert result.status is JobStatus.FAILED and result.job.exit_code == 4
        assert [t.exit_code for t in result.failed_tasks] == [4]
        assert "via-client" in await farm.logs.read(job.id)
        jobs = await farm.jobs.submit(
            [JobSpec(command=["true"], id="one"), JobSpec(command=["true"], id="two", depends_on=["one"])]
        )
        assert [j.id for j in jobs] == ["one", "two"]
        assert (await farm.jobs.wait("two", timeout=20)).status is JobStatus.SUCCEEDED
        assert farm.hub.rounds == 0  # push: no polling round was needed
        assert (await farm.pools.capacity())["default"] >= 1
        async with farm.jobs.list(statuses=[JobStatus.SUCCEEDED]) as it:
            assert [j.id async for j in it] == ["one", "two"]
        long = await farm.jobs.start(command=["sleep", "30"])
        await farm.jobs.cancel(long.id)
        assert (await farm.jobs.wait(long.id, timeout=20)).status is JobStatus.CANCELED


async def test_client_bad_inputs(tmp_path: Path) -> None:
    from aiofarm import Client

    with pytest.raises(InvalidSpec) as info:
        async with Client("local://" + str(tmp_path), bogus=1):
            pass
    assert info.value.field == "options.bogus"
    async with Client("local://" + str(tmp_path), cancel_grace=GRACE) as farm:
        with pytest.raises(InvalidSpec) as info:
            await farm.jobs.start(command=["true"], pool="nope")
        assert "pool" in info.value.field
        with pytest.raises(JobNotFound):
            await farm.jobs.get("nope")


async def test_failed_task_within_limit_cancels_the_steps_after_it(tmp_path: Path) -> None:
    template: dict[str, Any] = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "partial",
        "steps": [
            {
                "name": "Render",
                "parameterSpace": {"taskParameterDefinitions": [{"name": "Frame", "type": "INT", "range": "1-3"}]},
                "script": {"actions": {"onRun": {"command": "/bin/sh", "args": ["-c", "test {{Task.Param.Frame}} -ne 2"]}}},
            },
            {
                "name": "Encode",
                "dependencies": [{"dependsOn": "Render"}],
                "script": {"actions": {"onRun": {"command": "/bin/true"}}},
            },
        ],
    }
    async with open_driver(tmp_path) as d:
        [job] = await d.submit([JobSpec(template=template, max_failed_tasks=1)])
        done = await wait_for(d, job.id)
        assert done.status is JobStatus.FAILED and done.reason == "1 of 4 tasks failed"
        assert dict(done.task_counts) == {"succeeded": 2, "failed": 1, "canceled": 1}
        encode = [t for t in await d.tasks(job.id) if t.step == "Encode"]
        assert encode[0].status is JobStatus.CANCELED and encode[0].attempts == 0


async def test_max_workers_limits_a_jobs_parallel_tasks(tmp_path: Path) -> None:
    template: dict[str, Any] = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "serial",
        "steps": [
            {
                "name": "S",
                "parameterSpace": {"taskParameterDefinitions": [{"name": "N", "type": "INT", "range": "1-3"}]},
                "script": {"actions": {"onRun": {"command": "/bin/sleep", "args": ["0.1"]}}},
            }
        ],
    }
    async with open_driver(tmp_path, slots=3) as d:
        [job] = await d.submit([JobSpec(template=template, max_workers=1)])
        assert (await wait_for(d, job.id)).status is JobStatus.SUCCEEDED
        tasks = sorted(await d.tasks(job.id), key=lambda t: t.started_at)  # type: ignore[arg-type,return-value]
        for a, b in itertools.pairwise(tasks):
            assert a.finished_at <= b.started_at  # type: ignore[operator]


async def test_a_failing_subscriber_does_not_stop_the_farm(tmp_path: Path) -> None:
    errors: list[dict[str, Any]] = []
    loop = __import__("asyncio").get_running_loop()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        async with open_driver(tmp_path) as d:

            def broken(job: Job) -> None:
                raise RuntimeError("subscriber bug")

            d.subscribe(broken)
            [job] = await d.submit([JobSpec(command=["true"])])
            assert (await wait_for(d, job.id)).status is JobStatus.SUCCEEDED
    finally:
        loop.set_exception_handler(None)
    assert errors and isinstance(errors[0]["exception"], RuntimeError)


async def test_close_right_after_cancel_or_pause_keeps_what_was_asked(tmp_path: Path) -> None:
    async with open_driver(tmp_path) as d:
        [canceled, paused] = await d.submit([JobSpec(command=["sleep", "30"]), JobSpec(command=["sleep", "30"])])
        await wait_for(d, canceled.id, JobStatus.RUNNING)
        await wait_for(d, paused.id, JobStatus.RUNNING)
        await d.control([canceled.id], Action.CANCEL, stop_work=True)
        await d.control([paused.id], Action.PAUSE, stop_work=True)
    async with open_driver(tmp_path) as d:
        got = await d.get_jobs([canceled.id, paused.id])
        assert got[canceled.id].status is JobStatus.CANCELED
        assert got[paused.id].status is JobStatus.SUSPENDED
        [task] = await d.tasks(paused.id)
        assert task.status is JobStatus.PENDING
        await d.control([paused.id], Action.CANCEL, stop_work=True)


async def test_cancelled_wait_stream_and_list_leak_nothing(tmp_path: Path) -> None:
    from aiofarm import Client

    before = open_fds()
    # other suites' session fixtures (a fake service, a cluster) may run children of
    # their own: count only what appears during this test
    baseline = {p.pid for p in descendants_of_me()}
    async with Client("local://" + str(tmp_path), cancel_grace=GRACE) as farm:
        job = await farm.jobs.start(command="while :; do echo x; sleep 0.05; done")
        with anyio.move_on_after(0.3):
            await farm.jobs.wait(job.id)
        got: list[str] = []
        with anyio.move_on_after(0.5):
            async with farm.logs.stream(job.id, follow=True) as lines:
                async for line in lines:
                    got.append(line.text)
        assert got and set(got) == {"x"}
        with anyio.move_on_after(0.3):
            async with farm.jobs.list() as it:
                async for _ in it:
                    await anyio.sleep(5)
        assert (await farm.jobs.get(job.id)).status is JobStatus.RUNNING
    assert open_fds() == before
    left = [p for p in descendants_of_me() if p.pid not in baseline]
    assert left == []


_BASELINE: set[int] = set()


@pytest.fixture(scope="module", autouse=True)
def _children_at_module_start() -> None:
    _BASELINE.update(p.pid for p in descendants_of_me())


def test_no_leftover_children() -> None:
    """Runs last in this module: nothing any test of it started is still running."""
    left = [p for p in descendants_of_me() if p.pid not in _BASELINE]
    assert left == []
