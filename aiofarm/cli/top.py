"""``aiofarm top``: a live view of the farm: pools and their free slots, active jobs
with their task counts, the jobs that finished last, redrawn every ``--interval``.

On a terminal it takes the screen (rich's alternate screen, as top(1)) until Ctrl-C,
SIGTERM or SIGHUP, and gives it back as it was (cursor included). Off a terminal, or
with ``-n 1``, it prints plain snapshots (as ``top -b``), one per interval.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from .common import STATUS_STYLE, Options, color, run_command
from .output import duration, local_time

if TYPE_CHECKING:
    from ..client import Client
    from ..models import Job, Pool

__all__ = ["register", "top"]


async def _snapshot(farm: Client, recent: int) -> tuple[list[Pool], dict[str, int], list[Job], list[Job]]:
    from ..models import Capability, JobStatus

    pools: list[Pool] = []
    free: dict[str, int] = {}
    if Capability.POOLS in farm.capabilities:
        pools = await farm.pools.list()
        free = await farm.pools.capacity()
    async with farm.jobs.list(statuses=JobStatus.active_items(), reverse=True, limit=200) as it:
        active = [j async for j in it]
    async with farm.jobs.list(statuses=JobStatus.finished_items(), reverse=True, limit=recent) as it:
        finished = [j async for j in it]
    return pools, free, active, finished


def _view(snapshot: tuple[list[Pool], dict[str, int], list[Job], list[Job]], url: str) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    pools, free, active, finished = snapshot
    counts: dict[str, int] = {}
    for job in active:
        counts[job.status.value] = counts.get(job.status.value, 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no active jobs"
    header = Text.assemble(("aiofarm top", "bold"), f"  {url}  ", (summary, "dim"))
    pool_table = Table(box=None, header_style="bold", pad_edge=False, title_justify="left")
    for name in ("POOL", "SLOTS", "FREE", "RUNNING"):
        pool_table.add_column(name, justify="left" if name == "POOL" else "right")
    for pool in pools:
        running = sum(1 for j in active if j.pool == pool.name and j.status.value == "running")
        slots = "-" if pool.slots is None else str(pool.slots)
        pool_table.add_row(pool.name, slots, str(free.get(pool.name, "-")), str(running))

    def jobs_table(jobs: list[Job], title: str) -> Table:
        table = Table(box=None, header_style="bold", pad_edge=False, title=title, title_justify="left")
        for name in ("ID", "NAME", "STATUS", "POOL", "PRI", "TASKS", "TIME", "CREATED"):
            table.add_column(name, no_wrap=True, overflow="ellipsis", max_width=40 if name == "NAME" else None)
        for job in jobs:
            tasks = " ".join(f"{k}:{v}" for k, v in sorted(job.task_counts.items()) if v) or "-"
            table.add_row(
                job.id,
                job.name or "-",
                Text(job.status.value, style=STATUS_STYLE.get(job.status, "")),
                job.pool or "-",
                str(job.priority),
                tasks,
                duration(job),
                local_time(job.created_at),
            )
        return table

    return Group(
        header,
        Text(""),
        pool_table,
        Text(""),
        jobs_table(active, f"ACTIVE ({len(active)})"),
        Text(""),
        jobs_table(finished, "FINISHED (latest)"),
    )


@click.command()
@click.option("--interval", "-d", type=click.FloatRange(min=0.1), default=2.0, show_default=True, help="Seconds between redraws.")
@click.option("--iterations", "-n", type=click.IntRange(min=1), help="Stop after N redraws (default: until Ctrl-C).")
@click.option("--finished", "recent", type=click.IntRange(min=0), default=10, show_default=True, help="How many finished jobs to show.")
@click.pass_obj
def top(opts: Options, interval: float, iterations: int | None, recent: int) -> None:
    """A live view of pools, active jobs and the latest finished ones (Ctrl-C quits)."""

    async def go() -> int:
        import anyio
        from rich.console import Console
        from rich.live import Live

        from ..client import redact_url

        url = redact_url(opts.resolved_url())
        console = Console(no_color=color() is False, force_terminal=color() or None)
        live = console.is_terminal and iterations != 1
        async with opts.client() as farm:
            n = 0
            if live:
                with Live(console=console, screen=True, auto_refresh=False) as screen:
                    while iterations is None or n < iterations:
                        screen.update(_view(await _snapshot(farm, recent), url), refresh=True)
                        n += 1
                        await anyio.sleep(interval)
                return 0
            while True:
                console.print(_view(await _snapshot(farm, recent), url))
                n += 1
                if iterations is not None and n >= iterations:
                    return 0
                await anyio.sleep(interval)

    code = run_command(go)
    sys.exit(0 if code == 130 else code)  # Ctrl-C is how one quits a viewer


def register(group: click.Group) -> None:
    group.add_command(top)
