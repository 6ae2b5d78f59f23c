"""Run the fake as a child process (with moto's CloudWatch Logs) and talk to its admin API.

Used by the test fixtures, ``tests/backends/deadline.py`` and the benchmark.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = ["FakeDeadlineProcess", "aws_env", "fake_env"]

ROOT = Path(__file__).resolve().parents[3]


class FakeDeadlineProcess:
    """``with FakeDeadlineProcess() as fake:`` — a fake Deadline Cloud (and moto) on
    free loopback ports, stopped and reaped on exit."""

    def __init__(self, *, moto: bool = True, auto: float | None = None, workers: int = 4) -> None:
        self.moto = moto
        self.auto_interval = auto
        self.workers = workers
        self.proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._stderr: Any = None

    # -- lifecycle ---------------------------------------------------------------
    def start(self) -> FakeDeadlineProcess:
        cmd = [sys.executable, "-m", "tests.fakes.deadline", "--port", "0", "--die-with-parent",
               "--workers", str(self.workers)]  # fmt: skip
        if self.moto:
            cmd.append("--moto")
        if self.auto_interval:
            cmd += ["--auto", str(self.auto_interval)]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
        )
        assert self.proc.stdout is not None
        timer = threading.Timer(60, self.proc.kill)  # a fake that never starts must not hang us
        timer.start()
        try:
            line = self.proc.stdout.readline().decode()
        finally:
            timer.cancel()
        if not line.startswith("READY "):
            self.stop()
            raise RuntimeError(f"fake deadline did not start: {line!r} {self.stderr()}")
        self.info = json.loads(line[len("READY ") :])
        return self

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            if proc.stdin:
                proc.stdin.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> FakeDeadlineProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- facts -------------------------------------------------------------------
    @property
    def endpoint(self) -> str:
        return str(self.info["endpoint"])

    @property
    def logs_endpoint(self) -> str | None:
        return self.info.get("logsEndpoint")

    @property
    def s3_endpoint(self) -> str | None:
        return self.info.get("s3Endpoint")

    @property
    def attachments(self) -> dict[str, str] | None:
        """The default queue's jobAttachmentSettings (bucket, root prefix), with moto."""
        return self.info.get("attachments")

    @property
    def farm_id(self) -> str:
        return str(self.info["farmId"])

    @property
    def queue_id(self) -> str:
        return str(self.info["queueId"])

    def url(self, **extra: str) -> str:
        query = {"region": "us-west-2", "endpoint_url": self.endpoint, **extra}
        if self.logs_endpoint:
            query.setdefault("logs_endpoint_url", self.logs_endpoint)
        if self.s3_endpoint:
            query.setdefault("s3_endpoint_url", self.s3_endpoint)
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        return f"deadline://{self.farm_id}/{self.queue_id}?{qs}"

    # -- admin -------------------------------------------------------------------
    def admin(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.endpoint}/_fake/{path}", data=data, method="GET" if body is None else "POST"
        )
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=120) as resp:
            return json.load(resp)

    def advance(self, ticks: int = 1) -> Any:
        return self.admin("advance", {"ticks": ticks})

    def reset(self) -> None:
        self.admin("reset", {})

    def fail(self, *rules: Mapping[str, Any]) -> None:
        self.admin("fail", {"rules": list(rules)})

    def faults(self, **config: Any) -> None:
        self.admin("faults", config)

    def auto(self, interval: float | None) -> None:
        self.admin("auto", {"interval": interval})

    def stats(self) -> dict[str, int]:
        return dict(self.admin("stats"))


def fake_env(fake: FakeDeadlineProcess, home: str) -> dict[str, str]:
    """Environment for SDK clients (the official one included) to reach the fake."""
    env = {
        **aws_env(home),
        "AWS_ENDPOINT_URL_DEADLINE": fake.endpoint,
        "AWS_DISABLE_HOST_PREFIX_INJECTION": "true",
    }
    if fake.logs_endpoint:
        env["AWS_ENDPOINT_URL_CLOUDWATCH_LOGS"] = fake.logs_endpoint
    if fake.s3_endpoint:
        env["AWS_ENDPOINT_URL_S3"] = fake.s3_endpoint
    return env


def aws_env(home: str) -> dict[str, str]:
    """Dummy credentials and a region; no developer profile is read."""
    return {
        "AWS_ACCESS_KEY_ID": "fake-access-key",
        "AWS_SECRET_ACCESS_KEY": "fake-secret-key",
        "AWS_DEFAULT_REGION": "us-west-2",
        "AWS_CONFIG_FILE": os.path.join(home, "aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@contextlib.contextmanager
def patched_environ(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
