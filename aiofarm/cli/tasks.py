"""``aiofarm tasks ID``: a job's tasks with their status, progress and last message;
``aiofarm retry ID...``: rerun the failed tasks of jobs."""

from __future__ import annotations

import sys
from typing import Any

import click

from .common import Options, parse_statuses, run_command

__all__ = ["register", "retry", "tasks"]


def task_dict(task: Any) -> dict[str, Any]:
    return {
        "id": task.id,
        "step": task.step,
        "parameters": dict(task.parameters),
        "status": task.status.value,
        "attempts": task.attempts,
        "exit_code": task.exit_code,
        "progress": task.progress,
        "status_message": task.status_message,
        "reason": task.reason,
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "finished_at": task.finished_at.isoformat() if task.finished_at else None,
    }


@click.command()
@click.argument("job_id", metavar="ID")
@click.option(
    "--status", "-s", "statuses", multiple=True, callback=parse_statuses, metavar="STATUS",
    help="Only tasks in these statuses (repeatable or comma-separated).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def tasks(opts: Options, job_id: str, statuses: Any, as_json: bool) -> None:
    """List a job's tasks: status, progress, the task's last status message or why it failed."""

    async def go() -> int:
        async with opts.client() as farm:
            found = await farm.jobs.tasks(job_id)
        if statuses:
            found = [t for t in found if t.status in statuses]
        if as_json:
            import json

            click.echo(json.dumps([task_dict(t) for t in found], indent=2))
            return 0
        for t in found:
            params = ",".join(f"{k}={v}" for k, v in t.parameters.items())
            progress = "-" if t.progress is None else f"{t.progress:g}%"
            detail = t.reason if t.reason and t.status.value == "failed" else (t.status_message or "")
            click.echo(f"{t.id}\t{params or '-'}\t{t.status.value}\t{progress}\t{detail}")
        return 0

    sys.exit(run_command(go))


@click.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True)
@click.pass_obj
def retry(opts: Options, job_ids: tuple[str, ...]) -> None:
    """Rerun the failed (and canceled) tasks of jobs; the tasks that succeeded stay done."""

    async def go() -> int:
        ids = list(dict.fromkeys(job_ids))
        async with opts.client() as farm:
            await farm.jobs.get_many(ids)  # unknown ids fail before anything changes
            await farm.jobs.retry(ids)
        for job_id in ids:
            click.echo(f"retrying {job_id}")
        return 0

    sys.exit(run_command(go))


def register(group: click.Group) -> None:
    group.add_command(tasks)
    group.add_command(retry)
