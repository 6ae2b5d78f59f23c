"""The pure conversions of drivers/deadline/wire.py (no service involved)."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest
import yarl

from aiofarm import JobSpec, JobStatus, Resources
from aiofarm.drivers.deadline import DeadlineDriver, wire
from aiofarm.errors import InvalidSpec, UnsupportedError

FARM = "farm-" + "a" * 32
QUEUE = "queue-" + "b" * 32


def test_status_mapping_covers_every_task_run_status() -> None:
    import botocore.session

    model = botocore.session.get_session().get_service_model("deadline")
    for value in model.shape_for("TaskRunStatus").enum:
        assert wire.job_status(value) is not JobStatus.UNKNOWN, value
    assert wire.job_status("SUCCEEDED", "CREATE_IN_PROGRESS") is JobStatus.PENDING
    assert wire.job_status(None, "CREATE_FAILED") is JobStatus.FAILED
    assert wire.status_filter_values(frozenset({JobStatus.RUNNING})) == ["INTERRUPTING", "RUNNING"]


def test_job_from_wire_reads_aiofarm_line_and_times() -> None:
    description = wire.join_description(
        "user text", {"tags": ["a", "b"], "depends": ["job-" + "1" * 32]}
    )
    job = wire.job_from_wire(
        {
            "jobId": "job-" + "2" * 32,
            "name": "n",
            "lifecycleStatus": "CREATE_COMPLETE",
            "priority": 40,
            "createdAt": datetime(2026, 1, 1, tzinfo=timezone.utc),
            "createdBy": "me",
            "taskRunStatus": "SUCCEEDED",
            "taskRunStatusCounts": {"SUCCEEDED": 3, "FAILED": 0},
            "endedAt": "2026-01-01T00:01:00Z",
            "description": description,
        },
        QUEUE,
    )
    assert job.status is JobStatus.SUCCEEDED and job.exit_code == 0
    assert job.description == "user text" and job.tags == ("a", "b")
    assert job.depends_on == ("job-" + "1" * 32,)
    assert job.task_counts == {"succeeded": 3}
    assert job.finished_at == datetime(2026, 1, 1, 0, 1, tzinfo=timezone.utc)
    assert job.pool == QUEUE and job.owner == "me"


def test_description_line_round_trip_and_limit() -> None:
    text = wire.join_description(None, {"tags": ["x"], "depends": []})
    assert text == '[aiofarm]{"tags":["x"]}'
    assert wire.split_description(text) == (None, {"tags": ["x"]})
    assert wire.split_description("plain [aiofarm] words") == ("plain [aiofarm] words", {})
    # the user's own trailing newlines survive (found by the property test)
    for user in ("\n", "text\n\n"):
        assert wire.split_description(wire.join_description(user, {"tags": "0"})) == (user, {"tags": "0"})
    with pytest.raises(InvalidSpec):
        wire.join_description("x" * 2040, {"tags": ["long-tag"]})


def test_command_job_becomes_a_one_step_template() -> None:
    spec = JobSpec(
        command=["python", "render.py", "--frame", "1"],
        name="cmd",
        env={"A": "1"},
        cwd="/work",
        timeout=2.5,
        retries=2,
        resources=Resources(cpu=4, memory_mb=2048, gpu=1),
        paused=True,
        max_failed_tasks=3,
        max_workers=2,
        tags=["t"],
    )
    req = wire.create_job_request(FARM, QUEUE, spec, "tok")
    template = json.loads(req["template"])
    (step,) = template["steps"]
    on_run = step["script"]["actions"]["onRun"]
    assert on_run["command"] == "/bin/sh"
    assert on_run["args"][-5:] == ["/work", "python", "render.py", "--frame", "1"]
    assert on_run["timeout"] == 3
    assert template["jobEnvironments"][0]["variables"] == {"A": "1"}
    assert {a["name"]: a["min"] for a in step["hostRequirements"]["amounts"]} == {
        "amount.worker.vcpu": 4, "amount.worker.memory": 2048, "amount.worker.gpu": 1,
    }  # fmt: skip
    assert req["templateType"] == "JSON" and req["clientToken"] == "tok"
    assert (
        req["maxRetriesPerTask"] == 2
        and req["maxFailedTasksCount"] == 3
        and req["maxWorkerCount"] == 2
    )
    assert req["targetTaskRunStatus"] == "SUSPENDED" and req["nameOverride"] == "cmd"
    assert wire.split_description(req["descriptionOverride"])[1] == {"tags": ["t"]}


def test_string_command_runs_through_sh_and_format_strings_are_refused() -> None:
    req = wire.create_job_request(FARM, QUEUE, JobSpec(command="echo $HOME"), "t")
    on_run = json.loads(req["template"])["steps"][0]["script"]["actions"]["onRun"]
    assert [on_run["command"], *on_run["args"]] == ["/bin/sh", "-c", "echo $HOME"]
    with pytest.raises(InvalidSpec) as err:
        wire.create_job_request(FARM, QUEUE, JobSpec(command=["echo", "{{Task.File.x}}"]), "t")
    assert err.value.field == "command[1]"
    with pytest.raises(InvalidSpec):
        wire.create_job_request(FARM, QUEUE, JobSpec(command=["true"], env={"BAD NAME": "x"}), "t")
    with pytest.raises(UnsupportedError):
        wire.create_job_request(FARM, QUEUE, JobSpec(command=["bash"], tty=True), "t")


def test_parameters_are_typed_per_template() -> None:
    template = {
        "parameterDefinitions": [
            {"name": "N", "type": "INT"}, {"name": "F", "type": "FLOAT"},
            {"name": "S", "type": "STRING"}, {"name": "P", "type": "PATH"},
        ]
    }  # fmt: skip
    assert wire.typed_parameters(template, {"N": 3, "F": 0.5, "S": "x", "P": "/a"}) == {
        "N": {"int": "3"}, "F": {"float": "0.5"}, "S": {"string": "x"}, "P": {"path": "/a"},
    }  # fmt: skip
    for bad in ({"N": "three"}, {"N": True}, {"F": "nan-ish"}, {"S": 1}, {"X": 1}):
        with pytest.raises(InvalidSpec) as err:
            wire.typed_parameters(template, bad)
        assert err.value.field == f"parameters.{next(iter(bad))}"


def test_tokens_round_trip_and_bad_tokens_are_invalid() -> None:
    token = wire.encode_token({"s": "session-x", "f": "f/1"})
    assert wire.decode_token(token) == {"s": "session-x", "f": "f/1"}
    with pytest.raises(InvalidSpec):
        wire.decode_token("not base64 json!")


@pytest.mark.parametrize(
    ("url", "field"),
    [
        (f"deadline://farm-x/{QUEUE}", "url"),
        (f"deadline://{FARM}/queue-x", "url"),
        (f"deadline://{FARM}/{QUEUE}?bogus=1", "url"),
        (f"deadline://{FARM}/{QUEUE}?max_attempts=zero", "url.max_attempts"),
        (f"deadline://{FARM}/{QUEUE}?retry_mode=fast", "url.retry_mode"),
    ],
)
def test_bad_urls(url: str, field: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        DeadlineDriver.from_url(yarl.URL(url), {})
    assert err.value.field == field


def test_good_url() -> None:
    driver = DeadlineDriver.from_url(
        yarl.URL(f"deadline://{FARM}/{QUEUE}?region=eu-west-1&profile=p&retry_mode=adaptive"), {}
    )
    assert isinstance(driver, DeadlineDriver)
    assert (driver.farm_id, driver.queue_id, driver.api.region, driver.api.profile) == (
        FARM,
        QUEUE,
        "eu-west-1",
        "p",
    )
    assert driver.api.retry_mode == "adaptive"
    assert driver.log_group == f"/aws/deadline/{FARM}/{QUEUE}"
