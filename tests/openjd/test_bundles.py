"""aiofarm.openjd on its own: loading, validation errors, planning, and task processes run
for real (no farm in between)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiofarm.errors import InvalidSpec
from aiofarm.models import JobSpec, PathMappingRule
from aiofarm.openjd.loading import load_bundle, template_spec
from aiofarm.openjd.plan import RunSpec, plan_job, plan_template
from aiofarm.openjd.taskrun import EXIT_GRACE, SESSION_RUNNER, task_run

from .bundle_fixture import TEMPLATE, make_bundle

pytestmark = pytest.mark.anyio


async def run(r: RunSpec) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        list(r.argv), cwd=r.cwd, env={**os.environ, **r.env}, check=False
    )


# -- loading ---------------------------------------------------------------------------


def test_load_bundle_reads_files_and_types_parameters(tmp_path: Path) -> None:
    out = tmp_path / "out"
    bundle = make_bundle(tmp_path, out)
    spec = load_bundle(bundle, {"Frames": "1-5"}, max_failed_tasks=3, max_retries_per_task=2)
    assert spec.name == "Demo 1-5"
    assert dict(spec.parameters) == {"Frames": "1-5", "FailFrame": 7, "OutDir": str(out), "Scale": 1.5}
    assert isinstance(spec.parameters["FailFrame"], int)
    assert spec.priority == 65  # deadline:priority from parameter_values.yaml
    assert (spec.max_failed_tasks, spec.retries, spec.paused) == (3, 2, False)
    assert spec.options["asset_references"]["outputs"]["directories"] == [str(out)]
    assert spec.template is not None and spec.template["name"] == "Demo {{Param.Frames}}"
    # the stored template is plain data: a driver can serialise it
    json.dumps(dict(spec.template))


def test_template_spec_text_json_and_mapping(tmp_path: Path) -> None:
    import yaml

    doc = yaml.safe_load(TEMPLATE)
    a = template_spec(TEMPLATE, {"OutDir": str(tmp_path)}, name="given", priority=10, paused=True)
    b = template_spec(json.dumps(doc), {"OutDir": str(tmp_path)})
    c = template_spec(doc, parameters={"OutDir": str(tmp_path), "Scale": 2})
    assert (a.name, a.priority, a.paused) == ("given", 10, True)
    assert b.name == "Demo 1-20"
    assert c.parameters["Scale"] == 2.0 and isinstance(c.parameters["Scale"], float)
    assert a.template == b.template == c.template


def test_plan_frames_steps_and_dependencies(tmp_path: Path) -> None:
    spec = load_bundle(make_bundle(tmp_path, tmp_path / "out"))
    plan = plan_job(spec)  # the drivers' entry point goes through plan_template
    assert [s.name for s in plan] == ["Render", "Assemble"]
    render, assemble = plan
    assert [dict(t.parameters) for t in render.tasks] == [{"Frame": f} for f in range(1, 21)]
    assert render.depends_on == ()
    assert assemble.depends_on == ("Render",)
    assert [dict(t.parameters) for t in assemble.tasks] == [{}]


def test_plan_chunked_frames() -> None:
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "extensions": ["TASK_CHUNKING"],
        "name": "chunks",
        "steps": [
            {
                "name": "R",
                "parameterSpace": {
                    "taskParameterDefinitions": [
                        {"name": "F", "type": "CHUNK[INT]", "range": "1-20",
                         "chunks": {"defaultTaskCount": 8, "rangeConstraint": "CONTIGUOUS"}}
                    ]
                },
                "script": {"actions": {"onRun": {"command": "echo", "args": ["{{Task.Param.F}}"]}}},
            }
        ],
    }
    spec = template_spec(template)
    (step,) = plan_template(spec)
    assert [t.parameters["F"] for t in step.tasks] == ["1-7", "8-14", "15-20"]  # openjd-model balances the chunks
    r = task_run(spec, "R", {"F": "8-14"}, "/tmp")
    assert r.argv == ("echo", "8-14")


# -- validation ------------------------------------------------------------------------


def _bundle(tmp_path: Path, text: str, name: str = "template.yaml") -> Path:
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / name).write_text(text)
    return bundle


def test_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, "specificationVersion: [unclosed\n")
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle)
    assert err.value.field == str(bundle / "template.yaml")


def test_json_syntax_error(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, '{"specificationVersion": ', "template.json")
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle)
    assert err.value.field == str(bundle / "template.json")
    with pytest.raises(InvalidSpec) as err2:
        template_spec('{"specificationVersion": ')
    assert err2.value.field == "template"


def test_model_error_names_template_path_and_field(tmp_path: Path) -> None:
    bad = TEMPLATE.replace('command: "{{Task.File.render}}"', "timeout: 5")
    bundle = _bundle(tmp_path, bad)
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle, {"OutDir": "/tmp"})
    assert err.value.field == f"{bundle / 'template.yaml'}:steps[0].script.actions.onRun.command"
    assert "required" in err.value.reason.lower()


def test_undefined_variable_and_bad_version() -> None:
    t = TEMPLATE.replace("{{Task.Param.Frame}} -eq", "{{Task.Param.Frme}} -eq")
    with pytest.raises(InvalidSpec) as err:
        template_spec(t, {"OutDir": "/tmp"})
    assert err.value.field == "template:steps[0].script.embeddedFiles[0].data"
    assert "Task.Param.Frme" in err.value.reason
    with pytest.raises(InvalidSpec) as err2:
        template_spec({"specificationVersion": "jobtemplate-1999", "name": "x", "steps": []})
    assert err2.value.field == "template:specificationVersion"


def test_unknown_parameter(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, tmp_path / "out")
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle, {"Frams": "1-3"})
    assert err.value.field == "parameters.Frams"
    assert "Frames" in err.value.reason  # says what the template does define


@pytest.mark.parametrize(
    ("parameters", "field"),
    [
        ({"FailFrame": "seven"}, "parameters.FailFrame"),
        ({"FailFrame": 2.5}, "parameters.FailFrame"),
        ({"FailFrame": True}, "parameters.FailFrame"),
        ({"Frames": 5}, "parameters.Frames"),
        ({"Scale": "big"}, "parameters.Scale"),
        ({"OutDir": 3}, "parameters.OutDir"),
        ({"FailFrame": 5000}, "parameters.FailFrame"),  # maxValue, checked by openjd-model
        ({"Frames": "1-x"}, "parameters.Frames"),  # bad range found when the job is created
    ],
)
def test_wrong_parameter_type_or_value(tmp_path: Path, parameters: dict[str, Any], field: str) -> None:
    bundle = make_bundle(tmp_path, tmp_path / "out")
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle, parameters)
    assert err.value.field == field


def test_missing_required_parameter() -> None:
    with pytest.raises(InvalidSpec) as err:
        template_spec(TEMPLATE)
    assert err.value.field == "parameters.OutDir"


def test_missing_bundle_files(tmp_path: Path) -> None:
    with pytest.raises(InvalidSpec) as err:
        load_bundle(tmp_path / "nope")
    assert err.value.field == "bundle"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InvalidSpec) as err2:
        load_bundle(empty)
    assert err2.value.field == str(empty / "template.yaml")
    assert "missing" in err2.value.reason


def test_ambiguous_template(tmp_path: Path) -> None:
    bundle = _bundle(tmp_path, TEMPLATE)
    (bundle / "template.json").write_text("{}")
    with pytest.raises(InvalidSpec, match="ambiguous"):
        load_bundle(bundle)


def test_symlink_escaping_the_bundle(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("not yours")
    bundle = make_bundle(tmp_path, tmp_path / "out")
    (bundle / "scenes").mkdir()
    (bundle / "scenes" / "inside.txt").write_text("ok")
    (bundle / "scenes" / "ok-link").symlink_to("inside.txt")  # inside: fine
    load_bundle(bundle)
    (bundle / "scenes" / "leak").symlink_to(outside)
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle)
    assert err.value.field == str(bundle / "scenes" / "leak")
    assert "outside the bundle" in err.value.reason


def test_template_itself_a_symlink_out(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text(TEMPLATE)
    bundle = tmp_path / "b"
    bundle.mkdir()
    (bundle / "template.yaml").symlink_to(elsewhere)
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle)
    assert err.value.field == str(bundle / "template.yaml")


def test_path_default_walking_out_of_the_bundle(tmp_path: Path) -> None:
    t = TEMPLATE.replace("- name: OutDir\n  type: PATH\n", "- name: OutDir\n  type: PATH\n  default: ../../etc\n")
    bundle = _bundle(tmp_path, t)
    with pytest.raises(InvalidSpec) as err:
        load_bundle(bundle)
    assert err.value.field == "parameters.OutDir"


def test_bad_job_settings(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, tmp_path / "out")
    for kwargs, field in [
        ({"priority": 101}, "priority"),
        ({"max_failed_tasks": -1}, "max_failed_tasks"),
        ({"max_retries_per_task": "x"}, "max_retries_per_task"),
        ({"command": ["true"]}, "command"),
    ]:
        with pytest.raises(InvalidSpec) as err:
            load_bundle(bundle, **kwargs)
        assert err.value.field == field


# -- running tasks ---------------------------------------------------------------------


async def test_task_runs_with_environment_enter_exit(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = load_bundle(make_bundle(tmp_path, out), {"Frames": "1-3"})
    r = task_run(spec, "Render", {"Frame": 2}, tmp_path / "work")
    assert r.cwd == str(tmp_path / "work")
    assert r.cancel_grace == 5 + EXIT_GRACE
    done = await run(r)
    assert done.returncode == 0, done
    assert (out / "frame-2.txt").read_text() == "frame 2 mode=fast quality=high-1.5\n"
    assert (out / "env.log").read_text() == "enter\nexit\n"
    assert b"rendered frame 2" in done.stdout


async def test_failing_task_still_exits_environment(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = load_bundle(make_bundle(tmp_path, out))
    done = await run(task_run(spec, "Render", {"Frame": 7}, tmp_path / "work"))
    assert done.returncode == 3
    assert b"frame 7 failing on purpose" in done.stderr
    assert (out / "env.log").read_text() == "enter\nexit\n"
    assert not (out / "frame-7.txt").exists()


async def test_failing_enter_skips_task(tmp_path: Path) -> None:
    t = TEMPLATE.replace("echo 'openjd_env: RENDER_MODE=fast';", "exit 9;")
    spec = template_spec(t, {"OutDir": str(tmp_path)})
    done = await run(task_run(spec, "Render", {"Frame": 1}, tmp_path / "work"))
    assert done.returncode == 9
    assert not (tmp_path / "frame-1.txt").exists()


async def test_step_without_environment_is_a_direct_process(tmp_path: Path) -> None:
    out = tmp_path / "out"
    spec = load_bundle(make_bundle(tmp_path, out))
    r = task_run(spec, "Assemble", {}, tmp_path / "work")
    assert r.argv[0] == "/bin/sh"  # no runner in between
    assert r.cancel_grace == 0.0  # TERMINATE (the default mode)
    (out / "frame-1.txt").write_text("x")
    done = await run(r)
    assert done.returncode == 0 and (out / "count.txt").read_text().strip() == "1"


async def test_cancel_notify_then_terminate(tmp_path: Path) -> None:
    """SIGTERM to the runner notifies the task (which may clean up), then exits the env."""
    t = TEMPLATE.replace(
        'echo "rendered frame {{Task.Param.Frame}}"',
        "trap 'echo notified > \"$out/notified\"; exit 5' TERM; echo task-started; "
        "while :; do sleep 0.05; done",
    )
    spec = template_spec(t, {"OutDir": str(tmp_path), "FailFrame": 0})
    r = task_run(spec, "Render", {"Frame": 1}, tmp_path / "work")
    with anyio.fail_after(30):
        async with await anyio.open_process(
            list(r.argv), cwd=r.cwd, env={**os.environ, **r.env}, stderr=subprocess.DEVNULL
        ) as proc:
            assert proc.stdout is not None
            seen = b""
            async for chunk in proc.stdout:
                seen += chunk
                if b"task-started" in seen:
                    break
            proc.send_signal(signal.SIGTERM)
            async for _ in proc.stdout:
                pass
            code = await proc.wait()
    assert (tmp_path / "notified").read_text() == "notified\n"
    assert code == 5
    assert (tmp_path / "env.log").read_text() == "enter\nexit\n"


async def test_action_timeout(tmp_path: Path) -> None:
    t = TEMPLATE.replace(
        'command: "{{Task.File.render}}"', 'command: "/bin/sleep"\n        args: ["30"]\n        timeout: 1'
    )
    spec = template_spec(t, {"OutDir": str(tmp_path)})
    started = time.monotonic()
    done = await run(task_run(spec, "Render", {"Frame": 1}, tmp_path / "work"))
    assert done.returncode != 0
    assert b"timed out" in done.stdout
    assert time.monotonic() - started < 20
    assert (tmp_path / "env.log").read_text() == "enter\nexit\n"


async def test_path_mapping_applies_to_path_parameters(tmp_path: Path) -> None:
    t = """
specificationVersion: jobtemplate-2023-09
name: pm
parameterDefinitions:
- {name: Scene, type: PATH}
steps:
- name: S
  script:
    actions:
      onRun:
        command: /bin/sh
        args: ["-c", "echo '{{Param.Scene}}|{{RawParam.Scene}}|{{Session.HasPathMappingRules}}'; cat '{{Session.PathMappingRulesFile}}'"]
"""
    spec = template_spec(t, {"Scene": "Z:\\Projects\\shot1\\scene.ma"})
    rule = PathMappingRule("windows", "z:\\projects", str(tmp_path / "projects"))
    import attrs

    spec = attrs.evolve(spec, path_mapping=(rule,))
    done = await run(task_run(spec, "S", {}, tmp_path / "work"))
    first, rules = done.stdout.decode().split("\n", 1)
    assert first == f"{tmp_path}/projects/shot1/scene.ma|Z:\\Projects\\shot1\\scene.ma|true"
    doc = json.loads(rules)
    assert doc["version"] == "pathmapping-1.0"
    assert doc["path_mapping_rules"][0]["source_path_format"] == "WINDOWS"


def test_task_run_bad_step_and_parameters(tmp_path: Path) -> None:
    spec = load_bundle(make_bundle(tmp_path, tmp_path / "out"))
    with pytest.raises(InvalidSpec) as err:
        task_run(spec, "Nope", {}, tmp_path)
    assert err.value.field == "step"
    with pytest.raises(InvalidSpec) as err2:
        task_run(spec, "Render", {"Frame": 1, "Extra": 2}, tmp_path)
    assert err2.value.field == "task_parameters"
    with pytest.raises(InvalidSpec):
        plan_template(JobSpec(command=["true"]))


def test_runner_is_standard_library_only() -> None:
    """The per-task runner must start fast: it may not import openjd or aiofarm."""
    code = (
        "import runpy, sys; sys.argv=['x']\n"
        f"try:\n runpy.run_path({SESSION_RUNNER!r}, run_name='__main__')\nexcept SystemExit: pass\n"
        "bad=[m for m in sys.modules if m.startswith(('openjd','aiofarm','pydantic'))]\n"
        "print(bad)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_session_directory_only_when_a_task_can_tell(tmp_path: Path) -> None:
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "dirs",
        "steps": [
            {"name": "Plain", "script": {"actions": {"onRun": {"command": "/bin/true"}}}},
            {"name": "Uses", "script": {"actions": {"onRun": {
                "command": "/bin/echo", "args": ["{{Session.WorkingDirectory}}"]}}}},
        ],
    }
    spec = template_spec(template)
    job_dir = tmp_path / "job"
    plain = task_run(spec, "Plain", {}, job_dir / "0")
    assert plain.cwd == str(job_dir) and not (job_dir / "0").exists()
    uses = task_run(spec, "Uses", {}, job_dir / "1")
    assert uses.cwd == str(job_dir / "1") and uses.argv == ("/bin/echo", str(job_dir / "1"))
    import attrs

    isolated = attrs.evolve(spec, options={"openjd_isolated_cwd": True})
    assert task_run(isolated, "Plain", {}, job_dir / "2").cwd == str(job_dir / "2")
