"""``aiofarm run``: submit a command, stream its output here, exit with its exit code."""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from typing import Any

import click

from ..errors import FarmError
from ..models import JobStatus
from .common import EXIT_INTERRUPTED, Options, note, parse_env, run_command
from .output import describe_end, duration, job_exit_code, print_logs

__all__ = ["register", "run"]


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", help="Job name (default: the command line, shortened).")
@click.option("--pool", help="Pool (queue, partition) to run in.")
@click.option("--priority", type=int, default=50, show_default=True, help="0..100, higher first.")
@click.option(
    "--env",
    "-e",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=parse_env,
    help="Set an environment variable (repeatable); KEY alone passes this shell's value.",
)
@click.option("--cwd", help="Working directory of the job.")
@click.option("--tag", "tags", multiple=True, help="Tag the job (repeatable).")
@click.option("--timeout", type=float, help="Kill the job after this many seconds.")
@click.option(
    "--retries", type=int, default=0, show_default=True, help="Extra attempts on failure."
)
@click.option(
    "--shell",
    is_flag=True,
    help="Run the command through /bin/sh -c (the words joined by spaces).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the job's own output.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def run(
    opts: Options,
    name: str | None,
    pool: str | None,
    priority: int,
    env: dict[str, str],
    cwd: str | None,
    tags: tuple[str, ...],
    timeout: float | None,
    retries: int,
    shell: bool,
    quiet: bool,
    command: tuple[str, ...],
) -> None:
    """Submit COMMAND, stream its output here, and exit with its exit code.

    Job stdout goes to stdout and job stderr to stderr. Ctrl-C cancels the job;
    a second Ctrl-C kills it; a third stops waiting. Put -- before the command
    when it starts with a dash or you want to be explicit:

    \b
      aiofarm run -- echo hello from aiofarm
      aiofarm run --pool gpu -e SEED=3 -- python render.py --frames 1-10
    """
    cmd: str | tuple[str, ...] = " ".join(command) if shell else command
    if name is None:
        line = cmd if isinstance(cmd, str) else shlex.join(cmd)
        name = line if len(line) <= 60 else line[:59] + "…"
    sys.exit(
        run_command(
            lambda: _run_job(
                opts,
                cmd,
                name=name,
                pool=pool,
                priority=priority,
                env=env,
                cwd=cwd,
                tags=tags,
                timeout=timeout,
                retries=retries,
                quiet=quiet,
            )
        )
    )


async def _run_job(
    opts: Options, command: str | tuple[str, ...], *, quiet: bool, **spec: Any
) -> int:
    import anyio
    import anyio.abc

    from ..models import Capability

    tty = sys.stderr.isatty() and not quiet
    job_id: str | None = None
    signals_seen: list[int] = []
    async with opts.client() as farm, anyio.create_task_group() as tg:

        async def cancel_job() -> None:
            assert job_id is not None
            if not quiet:
                note(f"canceling job {job_id} (Ctrl-C again to kill it)", fg="yellow")
            await farm.jobs.cancel(job_id)

        async def kill_job() -> None:
            assert job_id is not None
            if not quiet:
                note(f"killing job {job_id} (Ctrl-C again to stop waiting)", fg="yellow")
            # best effort: a job already gone, or a back end without signals, is fine:
            # the cancel is on its way
            with contextlib.suppress(FarmError):
                await farm.jobs.send_signal(job_id, signal.SIGKILL)

        async def on_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            # SIGHUP too: a closed terminal should not leave the job running unwatched
            with anyio.open_signal_receiver(
                signal.SIGINT, signal.SIGTERM, signal.SIGHUP
            ) as received:
                task_status.started()
                async for signum in received:
                    signals_seen.append(signum)
                    if job_id is None:
                        continue  # handled once the job exists
                    if len(signals_seen) == 1:
                        tg.start_soon(cancel_job)
                    elif len(signals_seen) == 2:
                        tg.start_soon(kill_job)
                    else:
                        tg.cancel_scope.cancel()

        await tg.start(on_signals)  # installed before the job exists: no window without it
        job = await farm.jobs.start(command, **spec)
        job_id = job.id
        if tty:
            note(f"job {job.id} submitted", dim=True)
        if signals_seen:  # Ctrl-C came while submitting
            tg.start_soon(cancel_job)

        if Capability.LOGS_FOLLOW in farm.capabilities:
            try:
                await print_logs(farm, job.id, follow=True, timestamps=False)
            except BrokenPipeError:
                # like `cmd | head`: the reader is gone, so the job's output has nowhere
                # to go: cancel it rather than leave it running unread
                with anyio.CancelScope(shield=True):
                    await farm.jobs.cancel(job.id)
                raise
            result = await farm.jobs.wait(job.id)
        else:  # no live logs on this back end: wait, then print what the job wrote
            result = await farm.jobs.wait(job.id)
            if Capability.LOGS in farm.capabilities:
                await print_logs(farm, job.id, follow=False, timestamps=False)
        tg.cancel_scope.cancel()

    interrupted = 128 + signals_seen[0] if signals_seen else None
    if len(signals_seen) > 2:
        return interrupted or EXIT_INTERRUPTED
    job = result.job
    code = job_exit_code(job)
    if interrupted and job.status is not JobStatus.SUCCEEDED:
        code = interrupted
    if job.status is JobStatus.SUCCEEDED:
        if tty:
            note(f"job {job.id} succeeded in {duration(job)}", dim=True)
    elif not quiet:
        note(describe_end(job), fg="red")
    return code


def register(group: click.Group) -> None:
    group.add_command(run)
