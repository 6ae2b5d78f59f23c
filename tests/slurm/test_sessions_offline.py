"""OpenJD on Slurm without a cluster (not marked slurm): host requirements as job
properties of every API version, and the batch script's session directory, made
fresh from the submit-time inputs and removed when the session ends."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from aiofarm import JobSpec, UnsupportedError
from aiofarm.drivers.slurm import script
from aiofarm.drivers.slurm.requirements import step_requirements
from aiofarm.drivers.slurm.wire import for_version


def _spec(requirements: dict[str, Any], **options: Any) -> JobSpec:
    template = {
        "specificationVersion": "jobtemplate-2023-09",
        "name": "req",
        "steps": [{
            "name": "S",
            "hostRequirements": requirements,
            "script": {"actions": {"onRun": {"command": "true"}}},
        }],
    }
    return JobSpec(template=template, options=options)


def test_amounts_and_attributes_become_resources_and_constraints() -> None:
    spec = _spec({
        "amounts": [
            {"name": "amount.worker.vcpu", "min": 3},
            {"name": "amount.worker.memory", "min": 1500},
            {"name": "amount.worker.gpu", "min": 1},
            {"name": "amount.worker.disk.scratch", "min": 2},
        ],
        "attributes": [
            {"name": "attr.worker.os.family", "anyOf": ["linux"]},
            {"name": "attr.worker.cpu.arch", "anyOf": ["x86_64", "arm64"]},
            {"name": "attr.custom.site", "allOf": ["fx", "lab"]},
        ],
    })
    reqs = step_requirements(spec, "S")
    assert reqs == {
        "cpus_per_task": 3, "memory_per_node": 1500, "gpus": 1, "tmp_disk_mb": 2048,
        "constraints": "linux&(x86_64|arm64)&fx&lab",
    }
    desc = script.job_description(
        JobSpec(command=["true"], options={"constraints": "big"}), array_size=None, env={}, log_dir="/l",
        dependency_ids=[], default_partition=None, default_name="n", requirements=reqs,
    )
    assert desc["constraints"] == "(big)&(linux&(x86_64|arm64)&fx&lab)"
    old = for_version("v0.0.38").submit_body(desc, "#!/bin/sh\n")["job"]
    assert old["gpus"] == "1" and old["minimum_tmp_disk_per_node"] == 2048 and old["cpus_per_task"] == 3
    for version in ("v0.0.40", "v0.0.42", "v0.0.45"):
        new = for_version(version).submit_body(desc, "#!/bin/sh\n")["job"]
        assert new["tres_per_job"] == "gres/gpu:1" and new["temporary_disk_per_node"] == 2048
        assert new["memory_per_node"] == 1500 and "gpus" not in new and "tmp_disk_mb" not in new


@pytest.mark.parametrize(
    ("requirement", "feature"),
    [
        ({"amounts": [{"name": "amount.worker.gpu.memory", "min": 1024}]}, "hostRequirements.amount.worker.gpu.memory"),
        ({"amounts": [{"name": "amount.custom.licence", "min": 1}]}, "hostRequirements.amount.custom.licence"),
        ({"amounts": [{"name": "amount.worker.vcpu", "min": 1, "max": 4}]}, "hostRequirements.amount.worker.vcpu.max"),
    ],
)
def test_what_slurm_cannot_ask_for_is_refused(requirement: dict[str, Any], feature: str) -> None:
    with pytest.raises(UnsupportedError) as info:
        step_requirements(_spec(requirement), "S")
    assert (info.value.driver, info.value.feature) == ("slurm", feature)
    # unless the submitter says to ignore them, as on the local farm
    assert step_requirements(_spec(requirement, openjd_ignore_host_requirements=True), "S") == {}


def test_session_directory_is_made_fresh_and_removed_at_the_end(tmp_path: Path) -> None:
    session = tmp_path / "0-0"
    inputs = Path(str(session) + script.SESSION_INPUTS)
    inputs.mkdir()
    (inputs / "data.txt").write_text("from submit")
    text = script.batch_script([(["sh", "-c", "cat data.txt; echo more > made.txt; exit 3"], str(session), {}, str(session))])
    for _ in range(2):  # a rerun (retry) gets a fresh directory too
        out = subprocess.run(["sh", "-c", text], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
        assert (out.returncode, out.stdout) == (3, "from submit")
        assert not session.exists() and sorted(p.name for p in inputs.iterdir()) == ["data.txt"]
