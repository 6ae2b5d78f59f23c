"""The CLI on a real terminal (a pty): Ctrl-C in ``run`` detaches from a farm
service's job and a second one cancels it, jobs get a terminal by default, a
progress bar hides the cursor and SIGTERM/SIGHUP give it back, the commands that
change many jobs ask first, ``attach`` detaches on Ctrl-C with exit 0."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
from collections.abc import Iterator

import anyio
import pytest

from .conftest import COMMAND, Farm, read_until

pytestmark = pytest.mark.anyio

SHOW_CURSOR, HIDE_CURSOR = b"\x1b[?25h", b"\x1b[?25l"


class Terminal:
    """The CLI with a pty as its stdin, stdout and stderr, as in an interactive shell."""

    def __init__(self, farm: Farm, *args: str) -> None:
        self.master, slave = os.openpty()
        env = farm.env()
        env.pop("NO_COLOR", None)
        env["TERM"] = "xterm"
        self.proc = subprocess.Popen(
            [*COMMAND, "--url", farm.url, *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            start_new_session=True,
            env=env,
            cwd=farm.cwd,
        )
        os.close(slave)
        self.out = b""

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every writer of the pty is gone
            return False
        self.out += chunk
        return bool(chunk)

    async def until(self, needle: bytes, timeout: float = 30) -> None:
        with anyio.fail_after(timeout):
            while needle not in self.out:
                if not await anyio.to_thread.run_sync(self._read, 0.2):
                    raise AssertionError(f"{needle!r} never came: {self.out!r}")

    def write(self, data: bytes) -> None:
        os.write(self.master, data)

    async def exit_code(self, timeout: float = 30) -> int:
        with anyio.fail_after(timeout):
            while await anyio.to_thread.run_sync(self._read, 0.2):
                if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                    break
            return await anyio.to_thread.run_sync(self.proc.wait)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@contextlib.contextmanager
def terminal(farm: Farm, *args: str) -> Iterator[Terminal]:
    term = Terminal(farm, *args)
    try:
        yield term
    finally:
        term.close()


async def _job(farm: Farm) -> dict[str, object]:
    (job,) = (await farm("ls", "-o", "json")).json()
    return dict(job)


async def test_ctrl_c_detaches_from_a_service_job_and_says_how_to_come_back(farm: Farm) -> None:
    script = "if [ -t 1 ]; then echo on-a-tty; fi; echo ready; exec sleep 60"
    with terminal(farm, "run", "--", "sh", "-c", script) as term:
        await term.until(b"ready")
        term.proc.send_signal(signal.SIGINT)
        await term.until(b"Ctrl-C again within")
        code = await term.exit_code()
    assert code == 130, term.out
    assert b"on-a-tty" in term.out  # -t is on by default on a terminal
    job = await _job(farm)
    assert b"detached; job " in term.out and f"aiofarm logs -f {job['id']}".encode() in term.out
    assert job["status"] == "running", job  # the job goes on
    assert (await farm("cancel", str(job["id"]))).code == 0


async def test_a_second_ctrl_c_cancels_and_sigterm_detaches_at_once(farm: Farm) -> None:
    with terminal(farm, "run", "--", "sh", "-c", "echo ready; exec sleep 60") as term:
        await term.until(b"ready")
        term.proc.send_signal(signal.SIGINT)
        await term.until(b"Ctrl-C again within")
        term.proc.send_signal(signal.SIGINT)
        await term.until(b"canceling job")
        code = await term.exit_code()
    assert code == 130, term.out
    assert (await _job(farm))["status"] == "canceled"
    with terminal(farm, "run", "--", "sh", "-c", "echo ready; exec sleep 60") as term:
        await term.until(b"ready")
        term.proc.send_signal(signal.SIGTERM)
        code = await term.exit_code()
    assert code == 143, term.out
    assert b"SIGTERM: detached" in term.out and b"Ctrl-C again" not in term.out
    jobs = (await farm("ls", "-o", "json", "-s", "running")).json()
    assert len(jobs) == 1
    await farm("cancel", jobs[0]["id"])


@pytest.mark.parametrize(("signum", "word"), [(signal.SIGTERM, b"SIGTERM"), (signal.SIGHUP, b"hang-up (SIGHUP)")])
async def test_a_signal_during_wait_gives_the_cursor_back(farm: Farm, signum: int, word: bytes) -> None:
    job_id = (await farm("run", "-d", "--", "sleep", "60")).stdout.strip()
    with terminal(farm, "wait", job_id) as term:
        await term.until(HIDE_CURSOR)  # the progress bar is up
        term.proc.send_signal(signum)
        code = await term.exit_code()
    assert code == 128 + signum, term.out
    assert term.out.rfind(SHOW_CURSOR) > term.out.rfind(HIDE_CURSOR), term.out
    text = term.out.replace(b"\r", b"")
    assert word + b": stopped waiting; the jobs go on" in text
    assert b"Server disconnected" not in text, text
    assert b"Ctrl-C again" not in term.out
    assert (await _job(farm))["status"] == "running"  # waiting never changes a job
    await farm("cancel", job_id)


async def test_changing_many_jobs_asks_on_a_terminal(farm: Farm) -> None:
    for _ in range(2):
        await farm("run", "-d", "--tag", "batch", "--", "sleep", "60")
    with terminal(farm, "cancel", "--where", "tags contains batch") as term:
        await term.until(b"Cancel 2 jobs")
        term.write(b"n\r")
        assert await term.exit_code() == 1
    assert {j["status"] for j in (await farm("ls", "-o", "json")).json()} == {"running"}
    with terminal(farm, "cancel", "--where", "tags contains batch") as term:
        await term.until(b"[y/N]")
        term.write(b"y\r")
        assert await term.exit_code() == 0
    assert {j["status"] for j in (await farm("ls", "-o", "json")).json()} == {"canceled"}


async def test_attach_detaches_on_ctrl_c_with_exit_0(farm: Farm) -> None:
    job_id = (await farm("run", "-d", "--", "sh", "-c", "while :; do echo tick; sleep 0.1; done")).stdout.strip()
    async with await farm.spawn("attach", job_id) as proc:
        assert proc.stderr is not None
        await read_until(proc.stdout, b"tick")
        with anyio.fail_after(30):
            proc.send_signal(signal.SIGINT)
            code = await proc.wait()
            err = b"".join([chunk async for chunk in proc.stderr])
    assert code == 0, err
    assert f"detached from {job_id}".encode() in err
    assert (await _job(farm))["status"] == "running"
    await farm("cancel", job_id)


async def test_top_takes_the_screen_and_gives_it_back(farm: Farm) -> None:
    await farm.run_ok("true", options=["--name", "seen-by-top"])
    with terminal(farm, "top", "--interval", "0.2") as term:
        await term.until(b"seen-by-top")
        term.proc.send_signal(signal.SIGTERM)
        code = await term.exit_code()
    assert code == 128 + signal.SIGTERM, term.out
    assert b"\x1b[?1049h" in term.out and term.out.rfind(b"\x1b[?1049l") > term.out.rfind(b"seen-by-top")
    assert term.out.rfind(SHOW_CURSOR) > term.out.rfind(HIDE_CURSOR)
    with terminal(farm, "top", "--interval", "0.2") as term:
        await term.until(b"seen-by-top")
        term.proc.send_signal(signal.SIGINT)
        assert await term.exit_code() == 0  # Ctrl-C is how one leaves a viewer
