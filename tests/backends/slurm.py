"""The Slurm back end for the shared contract suite: the real single-node cluster
that scripts/slurm/start-slurm.sh starts (idempotent; once per test process)."""

from __future__ import annotations

import atexit
import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import attrs
import pytest

from aiofarm import Client

MARKS: tuple[str, ...] = ("slurm",)
#: commands really run on the cluster, so exit codes, output and signals are observable
EXECUTES = True

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm" / "start-slurm.sh"
ENV_FILE = "/tmp/aiofarm-slurm-env.sh"
HOST, PORT = "127.0.0.1", 6820


@attrs.frozen
class Cluster:
    url: str  # a complete aiofarm URL (partition, user, token_file)
    rest: str  # http://host:port
    user: str
    token: str
    token_file: str
    job_user: str  # an unprivileged user for owner-sensitive tests
    job_user_token: str

    def client(self, **options: object) -> Client:
        return Client(self.url, **options)


_cluster: Cluster | None = None
_lock: anyio.Lock | None = None


def skip_reason() -> str | None:
    """Why this host cannot run the real cluster (None: it can)."""
    if os.geteuid() != 0:
        return "the Slurm suite starts a real cluster and needs root (apt-get, daemons)"
    if shutil.which("slurmctld") is None and shutil.which("apt-get") is None:
        return "Slurm is not installed and there is no apt-get to install it"
    return None


def _read_env() -> dict[str, str]:
    out = {}
    for line in Path(ENV_FILE).read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            out[key] = value
    return out


def _cluster_from_env() -> Cluster:
    env = _read_env()
    token_file = env["SLURM_TOKEN_FILE"]
    return Cluster(
        url=f"slurm+http://{HOST}:{PORT}?partition=debug&user={env['SLURM_USER']}&token_file={token_file}",
        rest=env["SLURM_REST_URL"],
        user=env["SLURM_USER"],
        token=env["SLURM_JWT"],
        token_file=token_file,
        job_user=env["AIOFARM_SLURM_JOB_USER"],
        job_user_token=env["AIOFARM_SLURM_JOB_USER_JWT"],
    )


def start_cluster_sync() -> Cluster:
    """Run the start script (installs and starts what is missing; fast when up)."""
    import subprocess

    global _cluster
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    if _cluster is None:
        proc = subprocess.run(
            [str(SCRIPT)], env={**os.environ, "SMOKE": "0"}, capture_output=True, text=True, timeout=900
        )
        if proc.returncode != 0:
            raise RuntimeError(f"start-slurm.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        if "already up" not in proc.stdout and not os.environ.get("AIOFARM_SLURM_KEEP"):
            # we started it: stop it when this test process ends (no daemons left
            # behind in CI); AIOFARM_SLURM_KEEP=1 keeps it up between runs
            atexit.register(_stop_cluster)
        _cluster = _cluster_from_env()
    return _cluster


def _stop_cluster() -> None:
    import subprocess

    subprocess.run([str(SCRIPT), "stop"], capture_output=True, timeout=120, check=False)


async def start_cluster() -> Cluster:
    global _lock
    if _cluster is not None:
        return _cluster
    if _lock is None:
        _lock = anyio.Lock()
    async with _lock:
        return await anyio.to_thread.run_sync(start_cluster_sync)


@asynccontextmanager
async def open_client() -> AsyncIterator[Client]:
    cluster = await start_cluster()
    async with Client(cluster.url) as farm:
        yield farm
