"""The Slurm back ends for the shared contract suite and the Slurm suite: three
real single-node clusters, each started once per test process by the project's
own scripts and stopped when the process ends (unless it was already running):

- ``22.05``: host packages (Debian 12), slurmrestd v0.0.38, no accounting,
  scripts/slurm/start-slurm.sh, port 6820
- ``24.11``: Debian trixie in a chroot, v0.0.40-v0.0.42, slurmdbd + MariaDB,
  scripts/slurm/start-slurm-modern.sh, port 7820
- ``26.05``: Debian sid in a chroot, v0.0.42-v0.0.45, slurmdbd + MariaDB, port 7830

``AIOFARM_SLURM_CLUSTERS`` (comma-separated) picks which run; by default all
three. 24.11 also carries the ``slurm_2411`` marker so a run can leave it out.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import sys
import threading
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

REPO = Path(__file__).resolve().parents[2]
HOST_SCRIPT = REPO / "scripts" / "slurm" / "start-slurm.sh"
MODERN_SCRIPT = REPO / "scripts" / "slurm" / "start-slurm-modern.sh"
ALL = ("22.05", "24.11", "26.05")
#: markers beside "slurm" per cluster
CLUSTER_MARKS: dict[str, tuple[str, ...]] = {"22.05": (), "24.11": ("slurm_2411",), "26.05": ()}


def selected() -> tuple[str, ...]:
    names = os.environ.get("AIOFARM_SLURM_CLUSTERS")
    if not names:
        return ALL
    return tuple(n.strip() for n in names.split(",") if n.strip() in ALL)


#: the contract suite runs once per cluster (tests/contract/conftest.py reads this)
VARIANTS: tuple[str, ...] = selected()


def variant_marks(name: str) -> tuple[str, ...]:
    return CLUSTER_MARKS.get(name, ())


@attrs.frozen
class Cluster:
    name: str  # 22.05, 24.11, 26.05
    url: str  # a complete aiofarm URL (partition, user, token_file, bin_dir)
    rest: str  # http://host:port
    user: str
    token: str
    token_file: str
    job_user: str  # an unprivileged user for owner-sensitive tests
    job_user_token: str
    #: the start script and the environment that selects this cluster
    script: Path
    script_env: dict[str, str]
    #: directory of the Slurm client commands (None: the host's PATH)
    bin_dir: str | None
    accounting: bool
    #: seconds slurmctld keeps finished jobs
    min_job_age: int
    #: the client commands run in a chroot (as root only)
    chroot: bool
    api_versions: tuple[str, ...]

    @property
    def base(self) -> str:
        return self.url.split("?")[0]

    def client(self, **options: object) -> Client:
        return Client(self.url, **options)

    def command(self, name: str) -> str:
        """Path of a Slurm client command of this cluster."""
        found = shutil.which(name, path=self.bin_dir) if self.bin_dir else shutil.which(name)
        assert found, f"{name} not found for cluster {self.name}"
        return found

    def run_script(self, action: str) -> None:
        subprocess.run(
            [str(self.script), action], env=_script_env(self.script_env), check=True, capture_output=True, timeout=300
        )


_clusters: dict[str, Cluster] = {}
_thread_lock = threading.Lock()


def skip_reason() -> str | None:
    """Why this host cannot run the real clusters (None: it can)."""
    if os.geteuid() != 0:
        return "the Slurm suite starts real clusters and needs root (apt-get, chroot, daemons)"
    if shutil.which("apt-get") is None:
        return "there is no apt-get to install Slurm"
    return None


def _script_env(extra: dict[str, str]) -> dict[str, str]:
    # never a SLURM_* of ours (e.g. a sourced env file of another cluster)
    return {**{k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}, **extra}


def _read_env(path: str) -> dict[str, str]:
    out = {}
    for line in Path(path).read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, _, value = line[len("export ") :].partition("=")
            out[key] = value.strip('"')
    return out


def _start(name: str) -> Cluster:
    if name == "22.05":
        script, script_env, env_file, port = HOST_SCRIPT, {"SMOKE": "0"}, "/tmp/aiofarm-slurm-env.sh", 6820
    else:
        # jobs in the chroot see this checkout and this Python at the same paths, so
        # they can run the client's functions
        binds = " ".join(sorted({str(REPO), os.path.realpath(sys.base_prefix)}))
        script, port = MODERN_SCRIPT, 7820 if name == "24.11" else 7830
        script_env = {"CLUSTER": name, "EXTRA_BINDS": binds}
        env_file = f"/tmp/aiofarm-slurm-{name}-env.sh"
    proc = subprocess.run([str(script)], env=_script_env(script_env), capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{script.name} ({name}) failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    if "already up" not in proc.stdout and not os.environ.get("AIOFARM_SLURM_KEEP"):
        # we started it: stop it when this test process ends (no daemons left behind
        # in CI); AIOFARM_SLURM_KEEP=1 keeps it up between runs
        atexit.register(
            subprocess.run, [str(script), "stop"], env=_script_env(script_env), capture_output=True, timeout=120,
            check=False,
        )
    env = _read_env(env_file)
    bin_dir = env.get("SLURM_BIN")
    token_file = env["SLURM_TOKEN_FILE"]
    url = f"slurm+http://127.0.0.1:{port}?partition=debug&user={env['SLURM_USER']}&token_file={token_file}"
    if bin_dir:
        url += f"&bin_dir={bin_dir}"
    return Cluster(
        name=name,
        url=url,
        rest=env["SLURM_REST_URL"],
        user=env["SLURM_USER"],
        token=env["SLURM_JWT"],
        token_file=token_file,
        job_user=env["AIOFARM_SLURM_JOB_USER"],
        job_user_token=env["AIOFARM_SLURM_JOB_USER_JWT"],
        script=script,
        script_env=script_env,
        bin_dir=bin_dir,
        accounting=env.get("SLURM_ACCOUNTING") == "1",
        min_job_age=int(env.get("SLURM_MIN_JOB_AGE", "300")),
        chroot=bool(env.get("SLURM_CHROOT")),
        api_versions=tuple(env.get("SLURM_API_VERSIONS", "v0.0.38").split()),
    )


def start_cluster_sync(name: str = "22.05") -> Cluster:
    """Run the cluster's start script once per process (installs and starts what is
    missing; fast when it is up)."""
    reason = skip_reason()
    if reason is not None:
        pytest.skip(reason)
    with _thread_lock:
        if name not in _clusters:
            _clusters[name] = _start(name)
        return _clusters[name]


async def start_cluster(name: str = "22.05") -> Cluster:
    if name in _clusters:
        return _clusters[name]
    return await anyio.to_thread.run_sync(start_cluster_sync, name)


@asynccontextmanager
async def open_client(variant: str = "22.05") -> AsyncIterator[Client]:
    cluster = await start_cluster(variant)
    async with Client(cluster.url) as farm:
        yield farm
