"""``cancel``, ``pause``, ``resume``, ``retry``, ``delete``: change jobs named by id or
selected with ``--where`` / ``-l``.

Jobs named by id are changed at once (you named them). A selection that matches more
than one job asks first on a terminal, and without a terminal refuses unless ``--yes``
(exit 2): a script never hangs on a prompt, and never changes a hundred jobs by a typo
in a filter. Each changed job gets a line on stdout (``canceled j1``); ``-o name``
prints only the ids.
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import click

from .common import Options, confirm_many, note, run_command
from .selection import select_jobs, selection_expr, selection_options

if TYPE_CHECKING:
    from ..client import Client
    from ..models import Job

__all__ = ["register"]

#: which jobs an action applies to (the others are reported and skipped)
_APPLIES: dict[str, Callable[[Job], bool]] = {
    "cancel": lambda j: not j.status.is_finished,
    "pause": lambda j: not j.status.is_finished,
    "resume": lambda j: j.status.value == "suspended",
    "retry": lambda j: j.status.value in ("failed", "canceled"),
    "delete": lambda j: True,
}
_DONE = {"cancel": "canceled", "pause": "paused", "resume": "resumed", "retry": "retrying", "delete": "deleted"}


def _action(farm: Client, verb: str, stop_work: bool | None) -> Callable[[list[str]], Awaitable[None]]:
    jobs = farm.jobs
    if verb == "cancel":
        return lambda ids: jobs.cancel(ids, stop_work=stop_work)
    if verb == "pause":
        return lambda ids: jobs.pause(ids, stop_work=stop_work)
    fn: Callable[[list[str]], Awaitable[None]] = getattr(jobs, verb)
    return fn


def _make(verb: str, summary: str) -> click.Command:
    @click.command(verb, help=summary)
    @click.argument("job_ids", metavar="[ID]...", nargs=-1)
    @selection_options
    @click.option("--yes", "-y", is_flag=True, help="Do not ask before changing several selected jobs.")
    @click.option(
        "--output", "-o", "fmt", type=click.Choice(["text", "name"]), default="text",
        show_default=True, help="name: print only the ids of the changed jobs.",
    )
    @click.pass_obj
    def command(
        opts: Options,
        /,
        job_ids: tuple[str, ...],
        where_text: str | None,
        selectors: tuple[str, ...],
        yes: bool,
        fmt: str,
        **extra: Any,
    ) -> None:
        if not job_ids and where_text is None and not selectors:
            raise click.UsageError("give job ids, or --where / -l to select jobs")

        async def go() -> int:
            expr = selection_expr(where_text, selectors)
            async with opts.client() as farm:
                jobs, selected = await select_jobs(farm, job_ids, expr)
                if expr is not None:
                    if not selected and not jobs:
                        note("no job matches")
                        return 0
                    if not confirm_many(verb.capitalize(), [j.id for j in selected], yes):
                        note("nothing changed")
                        return 1
                    jobs += selected
                todo = [j.id for j in jobs if _APPLIES[verb](j)]
                if todo:
                    await _action(farm, verb, extra.get("stop_work"))(todo)
            for job in jobs:
                if job.id in todo:
                    click.echo(job.id if fmt == "name" else f"{_DONE[verb]} {job.id}")
                elif fmt != "name":
                    note(f"{job.id} is {job.status.value}: not {_DONE[verb]}", dim=True)
            return 0

        sys.exit(run_command(go))

    if verb in ("cancel", "pause"):
        default = "stop" if verb == "cancel" else "keep running work"
        command = click.option(
            "--stop-work/--keep-work",
            "stop_work",
            default=None,
            help=f"Stop running tasks now, or let them end (default: the farm's; {default}).",
        )(command)
    return command


_COMMANDS = [
    _make("cancel", "Cancel jobs (running work is stopped)."),
    _make("pause", "Pause jobs: nothing new starts until `aiofarm resume`."),
    _make("resume", "Resume paused jobs."),
    _make("retry", "Rerun the failed (and canceled) tasks of jobs; tasks that succeeded stay done."),
    _make("delete", "Delete jobs and their records (running ones are stopped first)."),
]


def register(group: click.Group) -> None:
    for command in _COMMANDS:
        group.add_command(command)
