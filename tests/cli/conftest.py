"""Run the real ``aiofarm`` command as a child process against a local:// farm in tmp_path."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest

# the console script pip installs beside this interpreter; `python -m aiofarm.cli` otherwise
_SCRIPT = shutil.which("aiofarm", path=str(Path(sys.executable).parent))
COMMAND: tuple[str, ...] = (_SCRIPT,) if _SCRIPT else (sys.executable, "-m", "aiofarm.cli")


@attrs.frozen
class Result:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


class Farm:
    def __init__(self, url: str, cwd: Path) -> None:
        self.url = url
        self.cwd = cwd

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("AIOFARM_URL", None)
        env["NO_COLOR"] = "1"  # assertions read plain text
        env["COLUMNS"] = "200"
        env.update(extra)
        return env

    async def __call__(
        self, *args: str, url: bool = True, env: dict[str, str] | None = None, stdin: str | None = None
    ) -> Result:
        argv = [*COMMAND, *(("--url", self.url) if url else ()), *args]
        with anyio.fail_after(90):
            proc = await anyio.run_process(
                argv,
                input=None if stdin is None else stdin.encode(),
                check=False,
                env=env or self.env(),
                cwd=self.cwd,
            )
        return Result(tuple(args), proc.returncode, proc.stdout.decode(), proc.stderr.decode())

    async def with_input(self, text: str, *args: str) -> Result:
        return await self(*args, stdin=text)

    async def spawn(self, *args: str) -> anyio.abc.Process:
        """The CLI on this farm as a running child process (pipes for stdio)."""
        return await anyio.open_process([*COMMAND, "--url", self.url, *args], env=self.env(), cwd=self.cwd)

    async def run_ok(self, *command: str, options: Sequence[str] = ()) -> str:
        """``aiofarm run`` a command that must succeed; the job's id."""
        done = await self("run", "-q", *options, "--", *command)
        assert done.code == 0, done
        (job,) = (await self("ls", "--limit", "1", "--json")).json()
        return str(job["id"])


async def read_until(stream: anyio.abc.ByteReceiveStream | None, needle: bytes, timeout: float = 30) -> bytes:
    """What ``stream`` gave until ``needle`` came (fails after ``timeout``)."""
    assert stream is not None
    got = b""
    with anyio.fail_after(timeout):
        while needle not in got:
            got += await stream.receive()
    return got


@pytest.fixture
def farm(tmp_path: Path) -> Farm:
    return Farm(f"local://{tmp_path / 'state'}", tmp_path)
