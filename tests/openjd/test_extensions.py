"""OpenJD 2023-09 extensions through openjd-model, run on a real local farm: EXPR,
FEATURE_BUNDLE_1, REDACTED_ENV_VARS and TASK_CHUNKING accepted, others refused by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiofarm import Client
from aiofarm.errors import InvalidSpec
from aiofarm.models import JobStatus
from aiofarm.openjd.loading import template_spec

from .samples import EXPRESSIONS, SESSION_ENV, write_bundle

pytestmark = pytest.mark.anyio


async def test_expressions_and_bash_shorthand(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    bundle = write_bundle(tmp_path / "bundle", EXPRESSIONS, {"OutDir": str(out)})
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_bundle(
            bundle, parameters={"Shots": 4, "Preview": "yes", "Passes": ["rgb", "alpha matte"]}
        )
        assert job.name == "Turntable 4"
        result = await farm.jobs.wait(job.id, timeout=60)
        assert result.status is JobStatus.SUCCEEDED, await farm.logs.read(job.id)
    lines = {p.name: p.read_text().strip() for p in out.iterdir()}
    assert lines == {
        f"shot-{n}.txt": f"shot={n} angle={n * 90} preview=true argc=2 a1=rgb a2=alpha matte step=SPIN"
        for n in range(1, 5)
    }


def test_typed_expr_parameters_are_kept_json_compatible() -> None:
    spec = template_spec(EXPRESSIONS, {"OutDir": "/tmp/o", "Preview": True})
    assert spec.parameters["Preview"] is True
    assert spec.parameters["Passes"] == ["beauty", "depth map"]
    assert spec.parameters["Shots"] == 3
    json.dumps(dict(spec.parameters))


@pytest.mark.parametrize("extension", ["WRAP_ACTIONS", "NOT_A_THING"])
def test_an_extension_we_cannot_honour_is_refused_by_name(extension: str) -> None:
    text = EXPRESSIONS.replace("extensions: [EXPR, FEATURE_BUNDLE_1]", f"extensions: [EXPR, {extension}]")
    with pytest.raises(InvalidSpec) as info:
        template_spec(text, {"OutDir": "/tmp/o"})
    assert info.value.field == "template:extensions[1]"
    assert extension in info.value.reason


def test_features_need_their_extension_declared() -> None:
    text = EXPRESSIONS.replace("extensions: [EXPR, FEATURE_BUNDLE_1]", "extensions: [EXPR]")
    with pytest.raises(InvalidSpec) as info:
        template_spec(text, {"OutDir": "/tmp/o"})
    assert "FEATURE_BUNDLE_1" in str(info.value)


def test_bad_typed_values_name_the_parameter() -> None:
    with pytest.raises(InvalidSpec) as info:
        template_spec(EXPRESSIONS, {"OutDir": "/tmp/o", "Preview": "maybe"})
    assert info.value.field == "parameters.Preview"
    with pytest.raises(InvalidSpec) as info:
        template_spec(EXPRESSIONS, {"OutDir": "/tmp/o", "Passes": 3})
    assert info.value.field == "parameters.Passes"


async def test_session_variables_both_forms_and_redaction(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        secret = tmp_path / "licence"
        secret.write_text("s3cr3t-v4lue\n")
        job = await farm.jobs.submit_template(
            SESSION_ENV, parameters={"OutDir": str(out), "SecretFile": str(secret)}
        )
        result = await farm.jobs.wait(job.id, timeout=60)
        log = await farm.logs.read(job.id)
        assert result.status is JobStatus.SUCCEEDED, log
    assert json.loads((out / "env.json").read_text()) == {
        "PLAIN": "a=b c",
        "QUOTED": 'line one\tand "two"',
        "DROP_ME": None,
        "LICENSE_KEY": "s3cr3t-v4lue",
    }
    assert (out / "exit.txt").read_text() == "exit PLAIN=a=b c\n"
    assert "s3cr3t-v4lue" not in log
    assert "entered with key ********" in log and "task sees key ********" in log


def test_deadline_sends_extension_templates_and_names_untyped_parameters() -> None:
    from aiofarm.drivers.deadline.wire import create_job_request

    shorthand = EXPRESSIONS.replace(
        """- name: Preview
  type: BOOL
  default: false
- name: Passes
  type: "LIST[STRING]"
  default: ["beauty", "depth map"]
""",
        "",
    ).replace("{{Param.Preview}}", "no").replace('args: ["{{Param.Passes}}"]', 'args: ["a", "b"]')
    spec = template_spec(shorthand, {"OutDir": "/tmp/o"})
    req = create_job_request("farm-1", "queue-1", spec, "token")
    assert json.loads(req["template"])["extensions"] == ["EXPR", "FEATURE_BUNDLE_1"]
    with pytest.raises(InvalidSpec) as info:
        create_job_request("farm-1", "queue-1", template_spec(EXPRESSIONS, {"OutDir": "/o"}), "token")
    assert info.value.field.startswith("parameters.") and "deadline" in info.value.reason
