"""The pure Slurm wire modules and mappings (no cluster needed: not marked slurm),
and a round trip of every captured slurmrestd answer (tests/slurm/examples: real
responses of 22.05/v0.0.38, 24.11/v0.0.42 and 26.05/v0.0.45 to the same operations)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yarl

from aiofarm import InvalidSpec, JobSpec, JobStatus
from aiofarm.drivers.slurm import SlurmDriver, mapping, script, wire_v0040
from aiofarm.drivers.slurm.records import Rec
from aiofarm.drivers.slurm.wire import KNOWN_VERSIONS, for_version

EXAMPLES = Path(__file__).parent / "examples"
DIRS = {"v0.0.38": "22.05.8-v0.0.38", "v0.0.42": "24.11.5-v0.0.42", "v0.0.45": "26.05.5-v0.0.45"}


def _example(version: str, name: str) -> dict[str, Any]:
    data = json.loads((EXAMPLES / DIRS[version] / f"{version}_{name}.json").read_text())
    assert isinstance(data, dict)
    return data


def _job(version: str, name: str) -> Rec:
    data = _example(version, name)
    raw = data["jobs"][0] if "jobs" in data else data
    return for_version(version).record(raw)


@pytest.mark.parametrize("version", list(DIRS))
@pytest.mark.parametrize(
    ("name", "state", "status", "code"),
    [
        ("job_completed", "COMPLETED", JobStatus.SUCCEEDED, 0),
        ("job_failed_exit3", "FAILED", JobStatus.FAILED, 3),
        ("job_cancelled", "CANCELLED", JobStatus.CANCELED, -15),
        ("job_held", "PENDING", JobStatus.SUSPENDED, None),
        ("job_running", "RUNNING", JobStatus.RUNNING, None),
    ],
)
def test_each_version_reads_its_captured_job_records(
    version: str, name: str, state: str, status: JobStatus, code: int | None
) -> None:
    rec = _job(version, name)
    assert rec.state == state and rec.job_id > 0 and rec.submit_time > 0 and rec.name
    job = mapping.job_from_records(str(rec.job_id), [rec])
    assert job.status is status
    assert job.exit_code == code
    if status.is_finished:
        assert job.finished_at is not None and job.started_at is not None
        # the log path, expanded whichever way the version shows it
        (task,) = mapping.tasks_from_records(job.id, [rec])
        assert task.log == f"/tmp/slurm-example-{rec.job_id}.out"
    assert job.raw == rec.raw  # the version's own record, untouched


@pytest.mark.parametrize("version", list(DIRS))
def test_each_version_reads_the_same_completed_job_the_same_way(version: str) -> None:
    folder = EXAMPLES / DIRS[version]
    jobs = []
    for path in sorted(folder.glob("cmp_*_job_completed.json")):
        served = path.name.split("_")[1]
        if served not in KNOWN_VERSIONS:
            continue  # v0.0.36/37: 22.05 serves them, aiofarm reads v0.0.38 only
        data = json.loads(path.read_text())
        rec = for_version(served).record(data["jobs"][0] if "jobs" in data else data)
        jobs.append(mapping.job_from_records(str(rec.job_id), [rec]))
    assert len(jobs) >= (1 if version == "v0.0.38" else 3)
    first = jobs[0]
    for job in jobs[1:]:
        assert (job.id, job.status, job.exit_code, job.created_at, job.finished_at, job.name) == (
            first.id, first.status, first.exit_code, first.created_at, first.finished_at, first.name
        )


@pytest.mark.parametrize("version", list(DIRS))
def test_array_tasks_group_under_their_array(version: str) -> None:
    data = _example(version, "jobs_array_tasks")
    w = for_version(version)
    groups = mapping.group_records(w.record(r) for r in data["jobs"])
    (array_id,) = groups
    job = mapping.job_from_records(array_id, groups[array_id])
    assert job.status is JobStatus.SUCCEEDED and dict(job.task_counts) == {"succeeded": 5}
    tasks = mapping.tasks_from_records(array_id, groups[array_id])
    assert [t.id for t in tasks] == ["0", "1", "2", "3", "4"]
    assert all(t.log and "%" not in t.log for t in tasks)


@pytest.mark.parametrize("version", KNOWN_VERSIONS)
def test_conditional_jobs_read(version: str) -> None:
    """How each version asks "what changed since" and says "nothing": v0.0.38 takes
    a timestamp and answers 304; v0.0.40+ take ``now-N`` (24.11's v0.0.40/41 refuse
    a timestamp) and answer no jobs with ``last_update`` 0."""
    wire = for_version(version)
    param = wire.since_param(1_000_000.7, 2.2)
    if version == "v0.0.38":
        assert param == "999999"
        assert wire.unchanged(304, {}) and not wire.unchanged(200, {"jobs": []})
        return
    assert param == "now-4"
    nothing = {"jobs": [], "last_update": {"set": True, "infinite": False, "number": 0}}
    assert wire.unchanged(200, nothing)
    # a cluster that has no jobs (left) answers its real last_update: a change
    assert not wire.unchanged(200, {"jobs": [], "last_update": {"set": True, "number": 1795956071}})
    assert not wire.unchanged(200, _example("v0.0.42" if version < "v0.0.43" else "v0.0.45", "jobs_trimmed"))


@pytest.mark.parametrize("version", list(DIRS))
def test_nodes_partitions_and_ping(version: str) -> None:
    wire = for_version(version)
    (node,) = [wire.node(n) for n in _example(version, "nodes")["nodes"]]
    assert node.name == "localhost" and node.state == "idle" and node.cpus and node.idle_cpus == node.cpus
    assert node.partitions == ("debug",) and node.address == "127.0.0.1"
    (part,) = [wire.partition(p) for p in _example(version, "partitions")["partitions"]]
    assert part.name == "debug" and part.cpus == node.cpus
    assert wire.ping_ok(_example(version, "ping"))


@pytest.mark.parametrize("version", list(DIRS))
def test_submit_body_has_the_versions_shape(version: str) -> None:
    captured = _example(version, "job_submit.request")
    desc = {
        "name": "example", "current_working_directory": "/tmp", "environment": {"PATH": "/usr/bin:/bin"},
        "standard_output": "/tmp/slurm-example-%j.out", "kill_on_invalid_dependency": True,
    }
    body = for_version(version).submit_body(desc, captured.get("script") or captured["job"]["script"])
    # the same keys in the same places as the request that worked on that version
    assert sorted(body) == sorted(captured)
    assert isinstance(body["job"]["environment"], type(captured["job"]["environment"]))
    if version != "v0.0.38":
        assert body["job"]["flags"] == ["KILL_INVALID_DEPENDENCY"] and "kill_on_invalid_dependency" not in body["job"]


def test_every_known_version_has_a_wire() -> None:
    for version in KNOWN_VERSIONS:
        assert for_version(version).version == version


@pytest.mark.parametrize(
    ("raw", "code"),
    [(0, 0), (768, 3), (256, 1), (15, -15), (9, -9), (137 << 8, 137), (4294901708, None), (None, None)],
)
def test_decode_wait_status(raw: object, code: int | None) -> None:
    assert mapping.decode_wait_status(raw) == code


def test_v004x_numbers_and_exit_codes() -> None:
    assert wire_v0040.number({"set": True, "infinite": False, "number": 5}) == 5
    assert wire_v0040.number({"set": False, "infinite": True, "number": 0}) is None
    assert wire_v0040.number(7) == 7 and wire_v0040.number(True) is None
    assert wire_v0040.exit_code({"status": ["SUCCESS"], "return_code": {"set": True, "number": 0}}) == 0
    signaled = {"status": ["SIGNALED"], "return_code": {"set": False}, "signal": {"id": {"set": True, "number": 9}}}
    assert wire_v0040.exit_code(signaled) == -9
    assert wire_v0040.exit_code({"status": ["PENDING"], "return_code": {"set": False}}) is None


def test_index_expressions_and_dependencies() -> None:
    assert mapping.parse_index_expr("0-4") == [0, 1, 2, 3, 4]
    assert mapping.parse_index_expr("1,3,5-11:3%2") == [1, 3, 5, 8, 11]
    assert mapping.parse_index_expr("") == []
    assert mapping.parse_dependency("afterok:12(unfulfilled),afterok:13_*(failed)") == ("12", "13")
    assert mapping.parse_dependency("") == ()


@pytest.mark.parametrize(
    ("state", "flags", "reason", "status"),
    [
        ("PENDING", (), "Resources", JobStatus.PENDING),
        ("PENDING", (), "JobHeldUser", JobStatus.SUSPENDED),
        ("PENDING", ("REQUEUE_HOLD",), "JobHeldAdmin", JobStatus.SUSPENDED),
        ("RUNNING", (), "None", JobStatus.RUNNING),
        ("COMPLETING", (), "None", JobStatus.RUNNING),
        ("COMPLETED", (), "None", JobStatus.SUCCEEDED),
        ("FAILED", (), "NonZeroExitCode", JobStatus.FAILED),
        ("TIMEOUT", (), "TimeLimit", JobStatus.FAILED),
        ("CANCELLED", ("COMPLETING",), "DependencyNeverSatisfied", JobStatus.CANCELED),
        ("WEIRD", (), "None", JobStatus.UNKNOWN),
    ],
)
def test_status_mapping(state: str, flags: tuple[str, ...], reason: str, status: JobStatus) -> None:
    assert mapping.record_status(Rec(job_id=7, state=state, flags=flags, reason=reason))[0] is status


def test_array_aggregation_counts_the_pending_remainder() -> None:
    out = "/l/slurm-%j.out"
    records = [
        Rec(job_id=20, array_job_id=20, array_task_string="3-9", state="PENDING", stdout=out, nice=40),
        Rec(job_id=21, array_job_id=20, array_task_id=0, state="COMPLETED", start_time=101, end_time=102, exit_code=0),
        Rec(job_id=22, array_job_id=20, array_task_id=1, state="FAILED", exit_code=2, start_time=101, end_time=103,
            stdout=out),
        Rec(job_id=23, array_job_id=20, array_task_id=2, state="RUNNING", start_time=102),
    ]
    grouped = mapping.group_records(records)
    assert list(grouped) == ["20"]
    job = mapping.job_from_records("20", grouped["20"])
    assert job.status is JobStatus.RUNNING
    assert dict(job.task_counts) == {"pending": 7, "succeeded": 1, "failed": 1, "running": 1}
    assert job.priority == 60 and job.finished_at is None
    tasks = mapping.tasks_from_records("20", grouped["20"])
    assert [t.id for t in tasks] == [str(i) for i in range(10)]
    assert tasks[1].exit_code == 2 and tasks[1].log == "/l/slurm-22.out"


def test_comment_round_trip() -> None:
    comment = mapping.make_comment(["a", "b"], "desc")
    assert mapping.parse_comment(comment) == (("a", "b"), "desc")
    assert mapping.parse_comment("someone else's comment") == ((), "someone else's comment")


def test_batch_script_quotes_every_word() -> None:
    argv = ["printf", "%s\\n", "$(touch /tmp/pwned)", "a'b", "*"]
    text = script.batch_script([(argv, "/tmp/x y", {"K": "v w"}, None)])
    out = subprocess.run(["sh", "-c", text.replace("cd '/tmp/x y' || exit 127; ", "")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["$(touch /tmp/pwned)", "a'b", "*"]
    with pytest.raises(InvalidSpec, match="env"):
        script.batch_script([(["true"], None, {"BAD-NAME": "x"}, None)])


def test_retries_requeue_from_inside_the_job() -> None:
    text = script.batch_script([(["false"], None, {}, None)], retries=2)
    assert 'scontrol requeue "$SLURM_JOB_ID"' in text and "-lt 2" in text
    # out of retries: the command's own exit status
    out = subprocess.run(["sh", "-c", text], env={"SLURM_RESTART_COUNT": "2", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 1


def test_array_script_dispatches_on_the_task_id() -> None:
    text = script.batch_script([(["echo", str(i)], None, {}, None) for i in range(3)])
    for i in range(3):
        out = subprocess.run(["sh", "-c", text], env={"SLURM_ARRAY_TASK_ID": str(i), "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True)
        assert out.stdout == f"{i}\n"


def test_job_description() -> None:
    spec = JobSpec(command=["true"], priority=70, timeout=61, tags=["x"], paused=True,
                   options={"account": "a", "openjd": {"k": 1}})
    job = script.job_description(spec, array_size=None, env={"A": "1"}, log_dir="/logs", dependency_ids=["5", "6"],
                                 default_partition="debug", default_name="true")
    assert job["nice"] == 30 and job["time_limit"] == 2 and job["hold"] is True
    assert job["dependency"] == "afterok:5:6" and job["partition"] == "debug"
    assert job["environment"]["A"] == "1" and "PATH" in job["environment"]
    assert job["standard_output"] == "/logs/slurm-%j.out" and job["account"] == "a"
    assert "openjd" not in job


@pytest.mark.parametrize(
    ("url", "field"),
    [
        ("slurm+http://", "url"),
        ("slurm+unix://", "url"),
        ("slurm+http://h:1?bogus=1", "options.bogus"),
        ("slurm+http://h:1?log_dir=rel", "options.log_dir"),
        ("slurm+http://h:1?token_file=/nonexistent/t", "options.token_file"),
        ("slurm+http://h:1?api=latest", "options.api"),
        ("slurm+http://h:1?bin_dir=rel", "options.bin_dir"),
    ],
)
def test_bad_urls(url: str, field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        SlurmDriver.from_url(yarl.URL(url), {})
    assert info.value.field == field


def test_url_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JWT", "env-token")
    d = SlurmDriver.from_url(yarl.URL("slurm+unix:///run/rest.sock?partition=p&user=alice&api=v0.0.41"), {})
    assert d.config.unix_path == "/run/rest.sock" and d.config.partition == "p" and d.user == "alice"
    assert d.http.token == "env-token" and d.config.api == "v0.0.41"
    d = SlurmDriver.from_url(yarl.URL("slurm+http://10.0.0.1:7000"), {"token": "t"})
    assert d.config.base_url == "http://10.0.0.1:7000" and d.http.token == "t"
    assert "token='t'" not in repr(d.config)
