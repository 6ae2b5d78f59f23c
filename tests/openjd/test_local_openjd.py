"""An Open Job Description bundle run end to end on a real local farm."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiofarm import Client
from aiofarm.errors import InvalidSpec
from aiofarm.models import JobStatus

from .bundle_fixture import make_bundle

pytestmark = pytest.mark.anyio


async def test_bundle_frames_failure_logs_and_retry(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bundle = make_bundle(tmp_path, out, fail_frame=7)
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_bundle(bundle, parameters={"Frames": "1-20"}, max_failed_tasks=1)
        assert job.name == "Demo 1-20"
        assert job.priority == 65  # from parameter_values.yaml

        result = await farm.jobs.wait(job.id, timeout=90)
        assert result.status is JobStatus.FAILED
        (failed,) = result.failed_tasks
        assert failed.step == "Render" and dict(failed.parameters) == {"Frame": 7}
        assert failed.exit_code == 3 and failed.log

        tasks = await farm.jobs.tasks(job.id)
        assert len(tasks) == 21
        render = [t for t in tasks if t.step == "Render"]
        assert sorted(t.parameters["Frame"] for t in render) == list(range(1, 21))
        assert {t.status for t in render if t.parameters["Frame"] != 7} == {JobStatus.SUCCEEDED}
        (assemble,) = [t for t in tasks if t.step == "Assemble"]
        assert assemble.status is not JobStatus.SUCCEEDED  # its dependency step failed
        assert not (out / "count.txt").exists()
        assert sorted(p.name for p in out.glob("frame-*.txt")) == sorted(
            f"frame-{f}.txt" for f in range(1, 21) if f != 7
        )
        # a session per worker slot: the environment entered once for many tasks, and
        # exited as often as entered
        log = (out / "env.log").read_text().split()
        sessions = log.count("enter")
        assert sessions == log.count("exit") and 1 <= sessions < 20

        # logs per task
        frame3 = next(t for t in render if t.parameters["Frame"] == 3)
        text3 = await farm.logs.read(job.id, task=frame3.id)
        assert "rendered frame 3" in text3 and "rendered frame 4" not in text3
        text7 = await farm.logs.read(job.id, task=failed.id)
        assert "frame 7 failing on purpose" in text7

        # retry reruns only the failed task (and then the step that waited on it)
        (out / "allow-7").write_text("")
        await farm.jobs.retry(job.id)
        result = await farm.jobs.wait(job.id, timeout=90)
        assert result.status is JobStatus.SUCCEEDED, result
        assert result.failed_tasks == ()
        tasks = {t.id: t for t in await farm.jobs.tasks(job.id)}
        assert tasks[failed.id].attempts == 2
        assert all(t.attempts == 1 for t in tasks.values() if t.id != failed.id)
        assert (out / "frame-7.txt").read_text() == "frame 7 mode=fast quality=high-1.5\n"
        assert (out / "count.txt").read_text().strip() == "20"
        log = (out / "env.log").read_text().split()
        assert log.count("enter") == log.count("exit") == sessions + 1


async def test_max_failed_tasks_stops_the_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bundle = make_bundle(tmp_path, out)
    template = (bundle / "template.yaml").read_text().replace(
        "-eq {{Param.FailFrame}}", "-ge {{Param.FailFrame}}"
    )
    (bundle / "template.yaml").write_text(template)
    async with Client("local://" + str(tmp_path / "farm"), slots=1) as farm:
        job = await farm.jobs.submit_bundle(
            bundle, parameters={"Frames": "1-10", "FailFrame": 3}, max_failed_tasks=2
        )
        result = await farm.jobs.wait(job.id, timeout=90)
        assert result.status is JobStatus.FAILED
        # frames 3.. fail; the third failure exceeds the limit and the rest never run
        assert len(result.failed_tasks) == 3
        assert not (out / "frame-10.txt").exists()


async def test_submit_template_and_bad_parameters(tmp_path: Path) -> None:
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "hello",
        "parameterDefinitions": [{"name": "Who", "type": "STRING"}],
        "steps": [
            {"name": "Say", "script": {"actions": {"onRun": {"command": "echo", "args": ["hi {{Param.Who}}"]}}}}
        ],
    }
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_template(template, parameters={"Who": "there"})
        result = await farm.jobs.wait(job.id, timeout=60)
        assert result.status is JobStatus.SUCCEEDED
        assert "hi there" in await farm.logs.read(job.id)
        with pytest.raises(InvalidSpec) as err:
            await farm.jobs.submit_template(template, parameters={"Who": 3})
        assert err.value.field == "parameters.Who"


async def test_path_mapping_on_the_client_and_per_submission(tmp_path: Path) -> None:
    from aiofarm.models import JobSpec, PathMappingRule

    projects = tmp_path / "projects"
    (projects / "show1").mkdir(parents=True)
    rule = PathMappingRule("windows", "P:\\projects", str(projects))
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "pm",
        "parameterDefinitions": [{"name": "Scene", "type": "PATH"}],
        "steps": [
            {"name": "S", "script": {"actions": {"onRun": {
                "command": "/bin/sh", "args": ["-c", "printf '%s %s\\n' 'scene={{Param.Scene}}' 'raw={{RawParam.Scene}}'"]}}}}
        ],
    }
    async with Client("local://" + str(tmp_path / "farm"), path_mapping=[rule]) as farm:
        job = await farm.jobs.submit_template(template, parameters={"Scene": "P:\\projects\\show1\\a.ma"})
        assert (await farm.jobs.wait(job.id, timeout=60)).succeeded
        text = await farm.logs.read(job.id)
        assert f"scene={projects}/show1/a.ma raw=P:\\projects\\show1\\a.ma" in text
        # the working directory of a plain job, with a per-submission rule
        own = PathMappingRule("posix", "/studio/projects", str(projects))
        (cmd,) = await farm.jobs.submit(
            [JobSpec(command=["/bin/pwd"], cwd="/studio/projects/show1", path_mapping=[own])]
        )
        assert (await farm.jobs.wait(cmd.id, timeout=60)).succeeded
        assert (await farm.logs.read(cmd.id)).strip() == str(projects / "show1")


async def test_client_path_mapping_add_list_remove(tmp_path: Path) -> None:
    from aiofarm.models import JobSpec

    projects = tmp_path / "projects"
    (projects / "show2").mkdir(parents=True)
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        assert farm.path_mapping.list() == ()
        rule = farm.path_mapping.add("posix", "/studio/p", str(projects))
        assert farm.path_mapping.list() == (rule,)
        (job,) = await farm.jobs.submit([JobSpec(command=["/bin/pwd"], cwd="/studio/p/show2")])
        assert (await farm.jobs.wait(job.id, timeout=60)).succeeded
        assert (await farm.logs.read(job.id)).strip() == str(projects / "show2")
        assert farm.path_mapping.remove("/studio/p") == rule
        assert farm.path_mapping.list() == ()
        with pytest.raises(InvalidSpec):
            farm.path_mapping.remove("/studio/p")


async def test_cancel_notifies_then_exits_environment(tmp_path: Path) -> None:
    import anyio

    out = tmp_path / "out"
    bundle = make_bundle(tmp_path, out)
    template = (bundle / "template.yaml").read_text().replace(
        'echo "rendered frame {{Task.Param.Frame}}"',
        "trap 'echo notified > \"$out/notified\"; exit 5' TERM; echo task-started; "
        "while :; do sleep 0.05; done",
    )
    (bundle / "template.yaml").write_text(template)
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_bundle(bundle, parameters={"Frames": "1", "FailFrame": 0})
        with anyio.fail_after(60):
            async with farm.logs.stream(job.id, follow=True) as lines:
                async for line in lines:
                    if "task-started" in line.text:
                        break
            await farm.jobs.cancel(job.id)
            result = await farm.jobs.wait(job.id)
        assert result.status is JobStatus.CANCELED
        assert (out / "notified").read_text() == "notified\n"  # SIGTERM first, not SIGKILL
        assert (out / "env.log").read_text() == "enter\nexit\n"  # onExit ran after the cancel
