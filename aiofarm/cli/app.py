"""The ``aiofarm`` command group and its entry point.

Each command group lives in a module of its own that defines ``register(group)``, adding
its commands to the group; :data:`COMMAND_GROUPS` lists those modules, and a new group
(a module with a ``register``) is one more entry there. Command modules never import
this one, so there is no cycle: shared helpers are in :mod:`.common` and :mod:`.output`.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import click

from . import (
    admin,
    bundle,
    contexts,
    control,
    deadline,
    farm,
    interactive,
    logs,
    reads,
    run,
    submit,
    top,
    waiting,
)
from .common import COLOR_MODE, Options

__all__ = ["COMMAND_GROUPS", "cli", "main"]

#: the modules whose ``register(group)`` adds their commands to ``aiofarm``
COMMAND_GROUPS: tuple[ModuleType, ...] = (
    run,
    submit,
    reads,
    logs,
    waiting,
    control,
    bundle,
    interactive,
    deadline,
    farm,
    admin,
    top,
    contexts,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    default=None,
    help="Farm to talk to (local://DIR, slurm+http://HOST:PORT, deadline://FARM/QUEUE, "
    "ray+http://HOST:PORT). Wins over everything else.",
)
@click.option(
    "--context",
    "-c",
    metavar="NAME",
    default=None,
    help="A named farm of config.toml (`aiofarm config ls`). Order: --url, --context, "
    "$AIOFARM_URL, $AIOFARM_CONTEXT, the current context, local://.",
)
@click.option(
    "--color",
    type=click.Choice(["auto", "always", "never"]),
    default="auto",
    show_default=True,
    help="auto: on a terminal, unless NO_COLOR is set or TERM=dumb (FORCE_COLOR forces it).",
)
@click.version_option(package_name="aiofarm", prog_name="aiofarm")
@click.pass_context
def cli(ctx: click.Context, url: str | None, context: str | None, color: str) -> None:
    """Run jobs on a compute farm and watch them: the local machine, Slurm, Ray,
    Deadline Cloud.

    \b
      aiofarm run -- echo hello from aiofarm
      aiofarm ls --status failed --where 'priority < 50'
      aiofarm logs -f JOB_ID
    """
    COLOR_MODE["mode"] = color
    ctx.obj = Options(url, context)


for _group in COMMAND_GROUPS:
    _group.register(cli)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``aiofarm`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="aiofarm")
