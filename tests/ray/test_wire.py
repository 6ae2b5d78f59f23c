"""The Ray driver's pure wire functions (no head needed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yarl

from aiofarm import InvalidSpec, JobSpec, JobStatus, Resources
from aiofarm.drivers.ray import wire
from aiofarm.drivers.ray.driver import RayDriver
from aiofarm.drivers.ray.package import PackageTooLarge, zip_directory

pytestmark = pytest.mark.ray


def test_entrypoint_quotes_sequences_and_keeps_strings() -> None:
    assert wire.entrypoint(["echo", "it's", "$HOME"]) == "exec echo 'it'\"'\"'s' '$HOME'"
    assert wire.entrypoint("echo $HOME | wc") == "echo $HOME | wc"
    assert wire.entrypoint(["sleep", "9"], 2.5) == "exec timeout -k 5 2.5 sleep 9"
    assert wire.entrypoint("a && b", 1) == "exec timeout -k 5 1 /bin/sh -c 'a && b'"


def test_submit_body_maps_every_field() -> None:
    spec = JobSpec(
        command=["python", "x.py"], name="n", tags=("a", "b"), description="d", priority=70,
        env={"K": "v"}, resources=Resources(cpu=2, memory_mb=10, gpu=1), pool="accel",
    )  # fmt: skip
    body = wire.submit_body(spec, "id-1", owner="me", working_dir="gcs://_ray_pkg_x.zip", depends_on=["a-0"])
    assert body["submission_id"] == "id-1"
    assert body["runtime_env"] == {"env_vars": {"K": "v"}, "working_dir": "gcs://_ray_pkg_x.zip"}
    assert (body["entrypoint_num_cpus"], body["entrypoint_num_gpus"]) == (2.0, 1.0)
    assert body["entrypoint_memory"] == 10 * 2**20 and body["entrypoint_resources"] == {"accel": 1.0}
    meta = body["metadata"]
    assert all(isinstance(v, str) for v in meta.values())
    assert (meta["name"], json.loads(meta["tags"]), meta["owner"], meta["priority"]) == ("n", ["a", "b"], "me", "70")
    job = wire.job_from_record({**body, "status": "PENDING", "start_time": 1_000_000, "type": "SUBMISSION"})
    assert (job.name, job.tags, job.owner, job.priority, job.description, job.pool) == ("n", ("a", "b"), "me", 70, "d", "accel")
    assert job.depends_on == ("a-0",)


@pytest.mark.parametrize(
    ("ray", "status"),
    [("PENDING", JobStatus.PENDING), ("RUNNING", JobStatus.RUNNING), ("STOPPED", JobStatus.CANCELED),
     ("SUCCEEDED", JobStatus.SUCCEEDED), ("FAILED", JobStatus.FAILED), ("WHAT", JobStatus.UNKNOWN)],
)  # fmt: skip
def test_status_mapping(ray: str, status: JobStatus) -> None:
    job = wire.job_from_record({"submission_id": "j", "status": ray, "start_time": 1000, "end_time": 2000})
    assert job.status is status and job.history[-1].status is status
    assert (job.finished_at is not None) is status.is_finished


def test_failed_record_reason_and_exit_code() -> None:
    rec = {
        "submission_id": "j", "status": "FAILED", "start_time": 1000, "end_time": 2000, "driver_exit_code": 3,
        "message": "Job entrypoint command failed with exit code 3, last available logs:\nsecret log line\n",
        "error_type": "JOB_ENTRYPOINT_COMMAND_ERROR",
    }  # fmt: skip
    job = wire.job_from_record(rec)
    assert job.exit_code == 3 and job.reason is not None
    assert "exit code 3" in job.reason and "secret log line" not in job.reason
    stopped = wire.job_from_record({"submission_id": "j", "status": "STOPPED", "start_time": 1000, "end_time": 2000})
    assert [t.status for t in stopped.history] == [JobStatus.PENDING, JobStatus.CANCELED]  # never ran


def test_list_leaves_out_ray_drivers() -> None:
    data = [{"type": "SUBMISSION", "submission_id": "a"}, {"type": "DRIVER", "submission_id": None, "job_id": "01"}]
    assert [r["submission_id"] for r in wire.submission_records(data)] == ["a"]


def test_split_log_streams_partial_lines_and_cursor() -> None:
    data = (
        b"2026-11-29 09:47:51,174\tINFO job_manager.py:581 -- Runtime env is setting up.\n"
        b"h\xc3\xa9llo\r\nRunning entrypoint for job j1: exec echo hello\nwor"
    )
    cursor = wire.LogCursor()
    lines = wire.split_log(data, cursor, final=False, limit=100, streams=frozenset({"stdout", "ray"}), job_id="j1")
    assert [(ln.stream, ln.text) for ln in lines] == [
        ("ray", "2026-11-29 09:47:51,174\tINFO job_manager.py:581 -- Runtime env is setting up."),
        ("stdout", "h\u00e9llo"),
        ("ray", "Running entrypoint for job j1: exec echo hello"),
    ]
    assert cursor.offset == len(data) - len(b"wor")  # bytes; the partial line waits
    rest = wire.split_log(b"wor" + b"ld\r50%\xff\n", cursor, final=True, limit=100,
                          streams=frozenset({"stdout"}), job_id="j1")  # fmt: skip
    # a lone CR stays in its line; bytes that are not UTF-8 are replaced
    assert [ln.text for ln in rest] == ["world\r50%\ufffd"] and cursor.offset == len(data) + 8
    assert wire.LogCursor.parse(cursor.token()).offset == cursor.offset
    with pytest.raises(ValueError):
        wire.LogCursor.parse("x")


def test_pools_from_usage_and_workers() -> None:
    usage = {"CPU": [1.0, 4.0], "GPU": [0.0, 1.0], "memory": [0.0, 9.0], "node:127.0.0.1": [0.0, 1.0], "accel": [0, 2]}
    got = {p.name: (p.slots, free) for p, free in wire.pools_from_usage(usage)}
    assert got == {"CPU": (4, 3), "GPU": (1, 1), "accel": (2, 2)}
    node = {"node_id": "n1", "node_name": "127.0.0.1", "state": "ALIVE", "resources_total": {"CPU": 4.0}}
    worker = wire.worker_from_node(node)
    assert (worker.id, worker.name, worker.enabled, worker.status, worker.cpus) == ("n1", "127.0.0.1", True, "alive", 4)


def test_zip_directory_is_deterministic_and_bounded(tmp_path: Path) -> None:
    root = tmp_path
    (root / "a.py").write_text("x = 1\n")
    (root / "__pycache__").mkdir()
    (root / "__pycache__" / "a.pyc").write_bytes(b"junk")
    name1, data1 = zip_directory(str(root))
    name2, data2 = zip_directory(str(root))
    assert name1 == name2 and data1 == data2 and name1.startswith("_ray_pkg_") and b"a.pyc" not in data1
    with pytest.raises(PackageTooLarge):
        zip_directory(str(root), limit=3)


@pytest.mark.parametrize("value", ["ftp://127.0.0.1:52365", "127.0.0.1:52365", "http://h:1/?x=1"])
def test_agent_url_option_must_be_an_http_address(value: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        RayDriver.from_url(yarl.URL("ray+http://127.0.0.1:8265"), {"agent_url": value, "token": "t"})
    assert err.value.field == "options.agent_url"
    driver = RayDriver.from_url(yarl.URL("ray+http://127.0.0.1:8265"), {"agent_url": "http://h:52365/", "token": "t"})
    assert driver.log_files.agent_url == "http://h:52365"
