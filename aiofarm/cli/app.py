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

from . import bundle, deadline, farm, interactive, jobs, run, tasks
from .common import Options

__all__ = ["COMMAND_GROUPS", "cli", "main"]

#: the modules whose ``register(group)`` adds their commands to ``aiofarm``
COMMAND_GROUPS: tuple[ModuleType, ...] = (run, jobs, tasks, bundle, interactive, deadline, farm)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--url",
    metavar="URL",
    default=None,
    help="Farm to talk to (local://DIR, slurm+http://HOST:PORT, deadline://FARM/QUEUE). "
    "Default: $AIOFARM_URL, else $XDG_CONFIG_HOME/aiofarm/config.toml, else local://.",
)
@click.version_option(package_name="aiofarm", prog_name="aiofarm")
@click.pass_context
def cli(ctx: click.Context, url: str | None) -> None:
    """Run jobs on a compute farm and watch them: the local machine, Slurm, Deadline Cloud.

    \b
      aiofarm run -- echo hello from aiofarm
      aiofarm ls --status failed --where 'priority < 50'
      aiofarm logs -f JOB_ID
    """
    ctx.obj = Options(url)


for _group in COMMAND_GROUPS:
    _group.register(cli)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of the ``aiofarm`` command."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="aiofarm")
