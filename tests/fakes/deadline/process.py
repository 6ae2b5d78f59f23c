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

    def __init__(
        self, *, moto: bool = True, auto: float | None = None, workers: int = 4, s3: str = "moto"
    ) -> None:
        self.moto = moto
        self.auto_interval = auto
        self.workers = workers
        #: "moto" (moto's S3, in the fake's process) or "fast" (tests/fakes/s3, a process
        #: of its own: for benchmarks, where moto's speed would set the pace)
        self.s3 = s3
        self.proc: subprocess.Popen[bytes] | None = None
        self.s3_proc: subprocess.Popen[bytes] | None = None
        self.info: dict[str, Any] = {}
        self._stderr: Any = None

    # -- lifecycle ---------------------------------------------------------------
    def _spawn(self, module: str, *args: str) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        """``python -m module`` with the fakes' conventions: it prints ``READY {json}``."""
        cmd = [sys.executable, "-m", module, "--port", "0", "--die-with-parent", *args]
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env
        )
        assert proc.stdout is not None
        timer = threading.Timer(60, proc.kill)  # a fake that never starts must not hang us
        timer.start()
        try:
            line = proc.stdout.readline().decode()
        finally:
            timer.cancel()
        if not line.startswith("READY "):
            _stop(proc)
            raise RuntimeError(f"{module} did not start: {line!r} {self.stderr()}")
        return proc, json.loads(line[len("READY ") :])

    def start(self) -> FakeDeadlineProcess:
        args = ["--workers", str(self.workers)]
        if self.moto:
            args.append("--moto")
        if self.auto_interval:
            args += ["--auto", str(self.auto_interval)]
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        try:
            if self.s3 == "fast":
                self.s3_proc, s3_info = self._spawn("tests.fakes.s3")
                args += ["--s3-endpoint", s3_info["endpoint"]]
            self.proc, self.info = self._spawn("tests.fakes.deadline", *args)
        except BaseException:
            self.stop()
            raise
        return self

    def stderr(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-4000:]

    def stop(self) -> None:
        for proc in (self.proc, self.s3_proc):
            if proc is not None:
                _stop(proc)
        self.proc = self.s3_proc = None
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


def _stop(proc: subprocess.Popen[bytes]) -> None:
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
