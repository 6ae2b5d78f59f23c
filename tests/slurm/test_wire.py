"""The pure Slurm wire conversions (no cluster needed: not marked slurm)."""

from __future__ import annotations

import subprocess

import pytest
import yarl

from aiofarm import InvalidSpec, JobSpec, JobStatus
from aiofarm.drivers.slurm import SlurmDriver, wire


@pytest.mark.parametrize(
    ("raw", "code"),
    [(0, 0), (768, 3), (256, 1), (15, -15), (9, -9), (137 << 8, 137), (4294901708, None), (None, None)],
)
def test_decode_wait_status(raw: object, code: int | None) -> None:
    assert wire.decode_wait_status(raw) == code


def test_index_expressions() -> None:
    assert wire.parse_index_expr("0-4") == [0, 1, 2, 3, 4]
    assert wire.parse_index_expr("1,3,5-11:3%2") == [1, 3, 5, 8, 11]
    assert wire.parse_index_expr("") == []


def test_dependency_ids() -> None:
    assert wire.parse_dependency("afterok:12(unfulfilled),afterok:13_*(failed)") == ("12", "13")
    assert wire.parse_dependency("") == ()


def _rec(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {
        "job_id": 7, "array_job_id": 0, "array_task_id": None, "array_task_string": "",
        "job_state": "PENDING", "state_reason": "None", "name": "n", "user_name": "u",
        "partition": "debug", "nice": 40, "comment": "", "submit_time": 100, "start_time": 0,
        "end_time": 0, "exit_code": 0, "standard_output": "/l/slurm-%j.out", "dependency": "",
    }
    return {**base, **kw}


@pytest.mark.parametrize(
    ("state", "reason", "status"),
    [
        ("PENDING", "Resources", JobStatus.PENDING),
        ("PENDING", "JobHeldUser", JobStatus.SUSPENDED),
        ("RUNNING", "None", JobStatus.RUNNING),
        ("COMPLETING", "None", JobStatus.RUNNING),
        ("COMPLETED", "None", JobStatus.SUCCEEDED),
        ("FAILED", "NonZeroExitCode", JobStatus.FAILED),
        ("TIMEOUT", "TimeLimit", JobStatus.FAILED),
        ("CANCELLED", "DependencyNeverSatisfied", JobStatus.CANCELED),
        ("WEIRD", "None", JobStatus.UNKNOWN),
    ],
)
def test_status_mapping(state: str, reason: str, status: JobStatus) -> None:
    assert wire.record_status(_rec(job_state=state, state_reason=reason))[0] is status


def test_array_aggregation_counts_the_pending_remainder() -> None:
    records = [
        _rec(job_id=20, array_job_id=20, array_task_string="3-9", job_state="PENDING"),
        _rec(job_id=21, array_job_id=20, array_task_id=0, job_state="COMPLETED", start_time=101, end_time=102),
        _rec(job_id=22, array_job_id=20, array_task_id=1, job_state="FAILED", exit_code=512, start_time=101, end_time=103),
        _rec(job_id=23, array_job_id=20, array_task_id=2, job_state="RUNNING", start_time=102),
    ]
    grouped = wire.group_records(records)
    assert list(grouped) == ["20"]
    job = wire.job_from_records("20", grouped["20"])
    assert job.status is JobStatus.RUNNING
    assert dict(job.task_counts) == {"pending": 7, "succeeded": 1, "failed": 1, "running": 1}
    assert job.priority == 60 and job.finished_at is None
    tasks = wire.tasks_from_records("20", grouped["20"])
    assert [t.id for t in tasks] == [str(i) for i in range(10)]
    assert tasks[1].exit_code == 2 and tasks[1].log == "/l/slurm-22.out"


def test_comment_round_trip() -> None:
    comment = wire.make_comment(["a", "b"], "desc")
    assert wire.parse_comment(comment) == (("a", "b"), "desc")
    assert wire.parse_comment("someone else's comment") == ((), "someone else's comment")


def test_batch_script_quotes_every_word() -> None:
    argv = ["printf", "%s\\n", "$(touch /tmp/pwned)", "a'b", "*"]
    script = wire.batch_script([(argv, "/tmp/x y", {"K": "v w"})])
    out = subprocess.run(["sh", "-c", script.replace("cd '/tmp/x y' || exit 127; ", "")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == ["$(touch /tmp/pwned)", "a'b", "*"]
    with pytest.raises(InvalidSpec, match="env"):
        wire.batch_script([(["true"], None, {"BAD-NAME": "x"})])


def test_array_script_dispatches_on_the_task_id() -> None:
    script = wire.batch_script([(["echo", str(i)], None, {}) for i in range(3)])
    for i in range(3):
        out = subprocess.run(["sh", "-c", script], env={"SLURM_ARRAY_TASK_ID": str(i), "PATH": "/usr/bin:/bin"},
                             capture_output=True, text=True, check=True)
        assert out.stdout == f"{i}\n"


def test_submit_body() -> None:
    spec = JobSpec(command=["true"], priority=70, timeout=61, tags=["x"], paused=True,
                   options={"account": "a", "openjd": {"k": 1}})
    body = wire.submit_body(spec, script="#!/bin/sh\n", array_size=None, env={"A": "1"},
                            log_dir="/logs", dependency_ids=["5", "6"], default_partition="debug",
                            default_name="true")
    job = body["job"]
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
    ],
)
def test_bad_urls(url: str, field: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        SlurmDriver.from_url(yarl.URL(url), {})
    assert info.value.field == field


def test_url_forms(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLURM_JWT", "env-token")
    d = SlurmDriver.from_url(yarl.URL("slurm+unix:///run/rest.sock?partition=p&user=alice"), {})
    assert d.unix_path == "/run/rest.sock" and d.partition == "p" and d.user == "alice"
    assert d.http.token == "env-token"
    d = SlurmDriver.from_url(yarl.URL("slurm+http://10.0.0.1:7000"), {"token": "t"})
    assert d.base_url == "http://10.0.0.1:7000" and d.http.token == "t"
