"""``aiofarm run``: submit a command, stream its output here, exit with its exit code.

Signals (docs/cli.md "run"): on a farm whose jobs outlive this process (every farm but
an embedded ``local://...?embedded=true``), the first Ctrl-C detaches: it stops
printing, says how to re-attach, and gives a short window in which a second Ctrl-C
cancels the job instead. SIGTERM and SIGHUP detach at once (no one is there to press a
key). On an embedded farm, whose jobs die with us, Ctrl-C cancels the job; again
kills it; a third stops waiting.
"""

from __future__ import annotations

import contextlib
import shlex
import signal
import sys
from typing import TYPE_CHECKING, Any

import click

from ..errors import FarmError
from ..models import JobStatus
from .common import EXIT_INTERRUPTED, SIGNAL_WORDS, Options, note, parse_env, run_command
from .output import describe_end, duration, job_exit_code, print_logs

if TYPE_CHECKING:
    from ..client import Client

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
@click.option("--detach", "-d", is_flag=True, help="Print the job id and exit; the job runs on.")
@click.option(
    "--tty/--no-tty",
    "-t",
    "tty",
    default=None,
    help="Run the job on a terminal (its stdout and stderr merged). Default: when our "
    "stdout is a terminal and the farm can.",
)
@click.option("--label", "-l", "labels", multiple=True, metavar="KEY=VALUE", help="Label the job (repeatable).")
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
    detach: bool,
    tty: bool | None,
    labels: tuple[str, ...],
    command: tuple[str, ...],
) -> None:
    """Submit COMMAND, stream its output here, and exit with its exit code.

    Job stdout goes to stdout and job stderr to stderr. Ctrl-C detaches (the job
    runs on; `aiofarm logs -f ID` re-attaches) and a second Ctrl-C right after
    cancels the job; on an embedded farm Ctrl-C cancels the job. Put -- before the
    command when it starts with a dash or you want to be explicit:

    \b
      aiofarm run -- echo hello from aiofarm
      aiofarm run --pool gpu -e SEED=3 -- python render.py --frames 1-10
      aiofarm run -d -l team=fx -- ./render.sh
    """
    cmd: str | tuple[str, ...] = " ".join(command) if shell else command
    if name is None:
        line = cmd if isinstance(cmd, str) else shlex.join(cmd)
        name = line if len(line) <= 60 else line[:59] + "…"
    spec: dict[str, Any] = {}
    if labels:
        spec["labels"] = _labels(labels)
    sys.exit(
        run_command(
            lambda: _run_job(
                opts,
                cmd,
                detach=detach,
                tty=tty,
                name=name,
                pool=pool,
                priority=priority,
                env=env,
                cwd=cwd,
                tags=tags,
                timeout=timeout,
                retries=retries,
                quiet=quiet,
                **spec,
            ),
            signals=False,
        )
    )


def _labels(items: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--label")
        out[key] = value
    return out


def _outlives_us(farm: Client) -> bool:
    """Whether the farm's jobs go on when this process exits (all but an embedded
    local farm)."""
    return farm.driver.jobs_outlive_client


def _how_to_reattach(job_id: str) -> str:
    return (
        f"job {job_id} goes on. Follow it: aiofarm logs -f {job_id} · "
        f"wait: aiofarm wait {job_id} · cancel: aiofarm cancel {job_id}"
    )


#: how long after a first Ctrl-C (detach) a second one cancels the job instead
CANCEL_WINDOW = 2.0


async def _run_job(
    opts: Options,
    command: str | tuple[str, ...],
    *,
    detach: bool,
    tty: bool | None,
    quiet: bool,
    **spec: Any,
) -> int:
    import anyio
    import anyio.abc

    from ..models import Capability

    chatty = sys.stderr.isatty() and not quiet
    job_id: str | None = None
    signals_seen: list[int] = []
    detached: list[int] = []  # the signal we detached on
    canceling = [0]  # 1 canceled, 2 killed, 3 stopped waiting
    window: list[anyio.CancelScope] = []
    async with opts.client() as farm, anyio.create_task_group() as tg:
        outlives = _outlives_us(farm)
        if tty is None:
            tty = not detach and sys.stdout.isatty() and Capability.SUBMIT_TTY in farm.capabilities

        def say(message: str) -> None:
            if not quiet:
                note(message, fg="yellow")

        async def escalate(signum: int) -> None:
            assert job_id is not None
            canceling[0] += 1
            word = SIGNAL_WORDS.get(signal.Signals(signum), "signal")
            if canceling[0] == 1:
                again = "Ctrl-C again to kill it" if signum == signal.SIGINT else "again to kill it"
                say(f"{word}: canceling job {job_id}" + ("" if signum == signal.SIGHUP else f" ({again})"))
                await farm.jobs.cancel(job_id)
            elif canceling[0] == 2:
                say(f"{word}: killing job {job_id} (again to stop waiting)")
                # best effort: a job already gone, or a back end without signals, is
                # fine: the cancel is on its way
                with contextlib.suppress(FarmError):
                    await farm.jobs.send_signal(job_id, signal.SIGKILL)
            else:
                tg.cancel_scope.cancel()

        def leave(signum: int) -> None:
            assert job_id is not None
            detached.append(signum)
            if not quiet:
                word = SIGNAL_WORDS.get(signal.Signals(signum), "signal")
                note(f"{word}: detached; {_how_to_reattach(job_id)}", fg="yellow")
            tg.cancel_scope.cancel()

        async def detach_window(signum: int) -> None:
            with anyio.CancelScope() as scope:
                window.append(scope)
                say(f"detaching from job {job_id}; Ctrl-C again within {CANCEL_WINDOW:g}s cancels it")
                await anyio.sleep(CANCEL_WINDOW)
                leave(signum)

        def handle(signum: int) -> None:
            if not outlives or canceling[0]:
                tg.start_soon(escalate, signum)
            elif signum != signal.SIGINT:
                leave(signum)  # SIGTERM, SIGHUP: no one is there to press a key
            elif window:
                window.pop().cancel()  # the second Ctrl-C: cancel after all
                tg.start_soon(escalate, signum)
            else:
                tg.start_soon(detach_window, signum)

        async def on_signals(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as received:
                task_status.started()
                async for signum in received:
                    signals_seen.append(int(signum))
                    if job_id is not None:
                        handle(int(signum))

        await tg.start(on_signals)  # installed before the job exists: no window without it
        job = await farm.jobs.start(command, tty=tty, **spec)
        job_id = job.id
        if detach:
            click.echo(job.id)
            tg.cancel_scope.cancel()
            return 0
        if chatty:
            note(f"job {job.id} submitted", dim=True)
        if signals_seen:  # a signal came while submitting: handled now
            handle(signals_seen[-1])

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

    if detached:
        return 128 + detached[0]
    interrupted = 128 + signals_seen[0] if signals_seen else None
    if canceling[0] > 2:
        return interrupted or EXIT_INTERRUPTED
    job = result.job
    code = job_exit_code(job)
    if interrupted and job.status is not JobStatus.SUCCEEDED:
        code = interrupted
    if job.status is JobStatus.SUCCEEDED:
        if chatty:
            note(f"job {job.id} succeeded in {duration(job)}", dim=True)
    elif not quiet:
        note(describe_end(job), fg="red")
    return code


def register(group: click.Group) -> None:
    group.add_command(run)
