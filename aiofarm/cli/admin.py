"""``aiofarm pools ls|create|rename|delete`` and ``aiofarm workers ls|enable|disable``.

``pools ls`` shows each pool's free slots now beside its size (``FREE``) where the
farm reports capacity. Workers are chosen by name (arguments) or ``--regex``; enabling
or disabling with neither is refused, so a bare ``workers disable`` never stops the
whole farm.
"""

from __future__ import annotations

import sys

import click

from .common import Options, run_command
from .formats import Column, emit, output_option
from .views import POOL_COLUMNS, WORKER_COLUMNS, pool_dict, worker_dict

__all__ = ["pools", "register", "workers"]


@click.group()
def pools() -> None:
    """Pools (partitions, queues): named slot counts jobs run in."""


@pools.command("ls")
@output_option
@click.pass_obj
def pools_ls(opts: Options, fmt: str, as_json: bool) -> None:
    """List pools with their slots and free slots now."""
    fmt = "json" if as_json else fmt

    async def go() -> int:
        from ..models import Capability

        async with opts.client() as farm:
            found = await farm.pools.list()
            free: dict[str, int] = {}
            if Capability.POOLS in farm.capabilities:
                free = await farm.pools.capacity()
        columns = [
            *POOL_COLUMNS[:2],
            Column("FREE", lambda p: str(free[p.name]) if p.name in free else "-", right=True),
            *POOL_COLUMNS[2:],
        ]
        emit(
            found,
            fmt,
            columns=columns,
            to_dict=lambda p: {**pool_dict(p), "free": free.get(p.name)},
            name=lambda p: p.name,
            empty="no pools",
        )
        return 0

    sys.exit(run_command(go))


@pools.command("create")
@click.argument("name")
@click.option("--slots", type=click.IntRange(min=1), help="How many tasks at once (default: the farm's).")
@click.pass_obj
def pools_create(opts: Options, name: str, slots: int | None) -> None:
    """Create pool NAME."""

    async def go() -> int:
        async with opts.client() as farm:
            pool = await farm.pools.create(name, slots=slots)
        click.echo(f"created pool {pool.name} ({'-' if pool.slots is None else pool.slots} slots)")
        return 0

    sys.exit(run_command(go))


@pools.command("rename")
@click.argument("pool")
@click.argument("new_name")
@click.pass_obj
def pools_rename(opts: Options, pool: str, new_name: str) -> None:
    """Rename POOL (a name or id) to NEW_NAME."""

    async def go() -> int:
        async with opts.client() as farm:
            renamed = await farm.pools.rename(pool, new_name)
        click.echo(f"renamed pool {pool} to {renamed.name}")
        return 0

    sys.exit(run_command(go))


@pools.command("delete")
@click.argument("pool")
@click.pass_obj
def pools_delete(opts: Options, pool: str) -> None:
    """Delete POOL (a name or id)."""

    async def go() -> int:
        async with opts.client() as farm:
            await farm.pools.delete(pool)
        click.echo(f"deleted pool {pool}")
        return 0

    sys.exit(run_command(go))


@click.group()
def workers() -> None:
    """Workers (nodes, hosts): list them, stop or restart dispatching to them."""


@workers.command("ls")
@click.argument("names", nargs=-1)
@click.option("--regex", help="Only workers whose name matches this regular expression.")
@output_option
@click.pass_obj
def workers_ls(opts: Options, names: tuple[str, ...], regex: str | None, fmt: str, as_json: bool) -> None:
    """List workers (all, or those NAMES / --regex)."""
    fmt = "json" if as_json else fmt

    async def go() -> int:
        async with opts.client() as farm:
            found = await farm.workers.list(list(names) or None, regex)
        emit(found, fmt, columns=WORKER_COLUMNS, to_dict=worker_dict, name=lambda w: w.name, empty="no workers")
        return 0

    sys.exit(run_command(go))


def _switch(enable: bool) -> click.Command:
    verb = "enable" if enable else "disable"

    @click.command(verb)
    @click.argument("names", nargs=-1)
    @click.option("--regex", help="Every worker whose name matches this regular expression.")
    @click.option("--stop-work", is_flag=True, hidden=enable, help="Also stop what they run now.")
    @click.option("--reason", hidden=enable, help="Why (shown in workers ls -o wide).")
    @click.pass_obj
    def command(
        opts: Options, names: tuple[str, ...], regex: str | None, stop_work: bool, reason: str | None
    ) -> None:
        if not names and regex is None:
            raise click.UsageError(f"name the workers to {verb}, or give --regex")

        async def go() -> int:
            async with opts.client() as farm:
                if enable:
                    changed = await farm.workers.enable(list(names) or None, regex)
                else:
                    changed = await farm.workers.disable(
                        list(names) or None, regex, stop_work=stop_work, reason=reason
                    )
            for worker in changed:
                click.echo(f"{verb}d {worker.name}")
            return 0

        sys.exit(run_command(go))

    command.help = (
        "Dispatch to these workers again." if enable else "Stop dispatching to these workers."
    )
    return command


workers.add_command(_switch(True))
workers.add_command(_switch(False))


def register(group: click.Group) -> None:
    group.add_command(pools)
    group.add_command(workers)
