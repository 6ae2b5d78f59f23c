"""Environment templates attached to a submission (queue environments), and the
session's path-mapping rules file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aiofarm import Client
from aiofarm.errors import InvalidSpec
from aiofarm.models import JobStatus, PathMappingRule
from aiofarm.openjd.loading import load_bundle, template_spec

from .samples import AFTER_QUEUE_ENV, QUEUE_ENV, SESSION_DIR, write_bundle

pytestmark = pytest.mark.anyio


async def test_environment_templates_entered_before_the_jobs_own(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    env_file = tmp_path / "studio-tools.yaml"
    env_file.write_text(QUEUE_ENV)
    bundle = write_bundle(tmp_path / "bundle", AFTER_QUEUE_ENV)
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        job = await farm.jobs.submit_bundle(
            bundle, parameters={"OutDir": str(out), "ToolVersion": "5.0"}, environments=[env_file]
        )
        result = await farm.jobs.wait(job.id, timeout=60)
        assert result.status is JobStatus.SUCCEEDED, await farm.logs.read(job.id)
    assert (out / "order.log").read_text().split("\n")[:-1] == [
        "queue-enter",
        "job-enter tools=yes",
        "task tools-5.0 yes",
        "job-exit",
        "queue-exit",
    ]


def test_environment_template_parameters_default_and_merge(tmp_path: Path) -> None:
    spec = template_spec(AFTER_QUEUE_ENV, {"OutDir": "/o"}, environments=[_env_doc()])
    assert spec.parameters["ToolVersion"] == "4.2"
    assert spec.options["openjd_environments"][0]["environment"]["name"] == "StudioTools"


def test_environment_template_given_as_text() -> None:
    # as submit_template takes its template: YAML (it has a line break) or JSON text
    as_yaml = template_spec(AFTER_QUEUE_ENV, {"OutDir": "/o"}, environments=[QUEUE_ENV])
    as_json = template_spec(AFTER_QUEUE_ENV, {"OutDir": "/o"}, environments=[json.dumps(_env_doc())])
    assert as_yaml.options["openjd_environments"] == as_json.options["openjd_environments"] == [_env_doc()]


def _env_doc() -> dict[str, object]:
    import yaml

    doc = yaml.safe_load(QUEUE_ENV)
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"specificationVersion": "environment-2023-09", "environment": {"name": "E"}}, "environments[0]:environment"),
        ({"specificationVersion": "jobtemplate-2023-09", "environment": {"name": "E", "variables": {"A": "1"}}},
         "environments[0]:specificationVersion"),
        ({"specificationVersion": "environment-2023-09", "extensions": ["WRAP_ACTIONS"],
          "environment": {"name": "E", "variables": {"A": "1"}}}, "environments[0]:extensions[0]"),
        ("/nonexistent/env.yaml", "environments[0]"),
        ("x" * 5000, "environments[0]"),  # a file name too long to look up
        ("specificationVersion: [\n", "environments[0]"),  # text that is not YAML
    ],
)
def test_bad_environment_templates_are_named(bad: object, field: str, tmp_path: Path) -> None:
    bundle = write_bundle(tmp_path / "bundle", AFTER_QUEUE_ENV)
    with pytest.raises(InvalidSpec) as info:
        load_bundle(bundle, {"OutDir": "/o"}, environments=[bad])  # type: ignore[list-item]
    assert info.value.field == field


async def test_path_mapping_rules_file_is_always_a_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    rule = PathMappingRule(source_os="windows", source="Z:\\shows", destination="/mnt/shows")
    async with Client("local://" + str(tmp_path / "farm")) as farm:
        plain = await farm.jobs.submit_template(SESSION_DIR, parameters={"OutDir": str(out)})
        assert (await farm.jobs.wait(plain.id, timeout=60)).status is JobStatus.SUCCEEDED
        empty = json.loads((out / "rules-1.json").read_text())
        assert empty == {"version": "pathmapping-1.0", "path_mapping_rules": []}
        mapped = await farm.jobs.submit(
            [template_spec(SESSION_DIR, {"OutDir": str(out)}, path_mapping=[rule])]
        )
        assert (await farm.jobs.wait(mapped[0].id, timeout=60)).status is JobStatus.SUCCEEDED
    rules = json.loads((out / "rules-2.json").read_text())["path_mapping_rules"]
    assert rules == [{"source_path_format": "WINDOWS", "source_path": "Z:\\shows", "destination_path": "/mnt/shows"}]


def test_a_driver_without_environment_templates_refuses_them() -> None:
    from aiofarm.capabilities import require_spec
    from aiofarm.drivers.deadline.driver import DeadlineDriver
    from aiofarm.drivers.slurm.driver import SlurmDriver
    from aiofarm.errors import UnsupportedError
    from aiofarm.models import Capability

    class TemplatesOnly(DeadlineDriver):
        name = "templates-only"
        capabilities = DeadlineDriver.capabilities - {Capability.SUBMIT_ENVIRONMENTS}

    spec = template_spec(AFTER_QUEUE_ENV, {"OutDir": "/o"}, environments=[_env_doc()])
    with pytest.raises(UnsupportedError) as info:
        require_spec(TemplatesOnly, spec, "specs[0]")
    assert "submit.environments" in str(info.value) and "templates-only" in str(info.value)
    require_spec(SlurmDriver, spec, "specs[0]")  # its tasks run under the session runner
    require_spec(DeadlineDriver, spec, "specs[0]")  # the template's first job environments
    require_spec(TemplatesOnly, template_spec(AFTER_QUEUE_ENV, {"OutDir": "/o"}), "specs[0]")
