"""``aiofarm deadline farms|queues|fleets|storage-profiles|auth-status|download-output``:
what only Deadline Cloud has, as its own client's ``deadline farm list``, ``queue list``,
``fleet list``, ``auth status`` and ``job download-output``.

The farm (and queue) come from ``--farm``/``--queue``, else from a ``deadline://`` URL
(``--url`` of ``aiofarm`` or ``AIOFARM_URL``), which also gives the region, profile and
endpoint unless the options here do.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from .common import EXIT_FAILED, Options, run_command

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ..drivers.deadline.discovery import DeadlineBackend

__all__ = ["deadline", "register"]


class _Target:
    def __init__(self, url: str | None, **values: str | None) -> None:
        self.url = url
        self.values = values


def _defaults(opts: Options) -> dict[str, str]:
    """farm, queue, region, profile, endpoint_url from a deadline:// URL, if one is set."""
    import yarl

    from ..config import resolve_url
    from ..drivers.deadline.driver import parse_options

    url = yarl.URL(resolve_url(opts.url))
    if url.scheme != "deadline":
        return {}
    out = {"farm_id": url.host or "", "queue_id": url.path.strip("/")}
    parsed = parse_options(url, {})
    for key in ("region", "profile", "endpoint_url"):
        if parsed.get(key):
            out[key] = parsed[key]
    return out


def _run(ctx: click.Context, fn: Callable[[DeadlineBackend], Awaitable[int]]) -> None:
    from ..drivers.deadline.discovery import connect

    target: _Target = ctx.obj

    async def go() -> int:
        async with connect(**{k: v for k, v in target.values.items() if v}) as backend:
            return await fn(backend)

    sys.exit(run_command(go))


def _table(rows: list[dict[str, Any]], columns: list[str], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in columns).rstrip())
    for row in rows:
        click.echo("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


_JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


@click.group("deadline")
@click.option("--farm", "farm_id", metavar="FARM_ID", help="Farm id (default: the URL's).")
@click.option("--queue", "queue_id", metavar="QUEUE_ID", help="Queue id (default: the URL's).")
@click.option("--region", help="AWS region (default: the URL's, the profile's).")
@click.option("--profile", help="AWS profile (default: the URL's, the credential chain).")
@click.option("--endpoint-url", help="Deadline Cloud endpoint (default: AWS's).")
@click.pass_context
def deadline(
    ctx: click.Context,
    farm_id: str | None,
    queue_id: str | None,
    region: str | None,
    profile: str | None,
    endpoint_url: str | None,
) -> None:
    """Deadline Cloud: farms, queues, fleets, storage profiles, credentials, outputs."""
    opts: Options = ctx.obj
    values: dict[str, str | None] = dict(_defaults(opts))
    given = {"farm_id": farm_id, "queue_id": queue_id, "region": region, "profile": profile,
             "endpoint_url": endpoint_url}  # fmt: skip
    values.update({k: v for k, v in given.items() if v})
    ctx.obj = _Target(opts.url, **values)


@deadline.command("farms")
@_JSON
@click.pass_context
def farms(ctx: click.Context, as_json: bool) -> None:
    """The farms these credentials can see."""

    async def go(backend: DeadlineBackend) -> int:
        rows = [{"id": f.id, "name": f.name} for f in await backend.farms()]
        _table(rows, ["id", "name"], as_json)
        return 0

    _run(ctx, go)


@deadline.command("queues")
@_JSON
@click.pass_context
def queues(ctx: click.Context, as_json: bool) -> None:
    """The queues of the farm."""

    async def go(backend: DeadlineBackend) -> int:
        rows = [{"id": q.id, "name": q.name, "status": q.status} for q in await backend.queues()]
        _table(rows, ["id", "name", "status"], as_json)
        return 0

    _run(ctx, go)


@deadline.command("fleets")
@_JSON
@click.pass_context
def fleets(ctx: click.Context, as_json: bool) -> None:
    """The fleets of the farm."""

    async def go(backend: DeadlineBackend) -> int:
        rows = [
            {"id": f.id, "name": f.name, "status": f.status, "workers": f.worker_count}
            for f in await backend.fleets()
        ]
        _table(rows, ["id", "name", "status", "workers"], as_json)
        return 0

    _run(ctx, go)


@deadline.command("storage-profiles")
@_JSON
@click.pass_context
def storage_profiles(ctx: click.Context, as_json: bool) -> None:
    """The storage profiles the queue may use, with their file system locations."""

    async def go(backend: DeadlineBackend) -> int:
        rows = [
            {
                "id": p.id,
                "name": p.name,
                "os": p.os_family,
                "locations": ", ".join(f"{k}={v}" for k, v in p.locations.items()),
            }
            for p in await backend.storage_profiles()
        ]
        _table(rows, ["id", "name", "os", "locations"], as_json)
        return 0

    _run(ctx, go)


@deadline.command("auth-status")
@_JSON
@click.pass_context
def auth_status(ctx: click.Context, as_json: bool) -> None:
    """Whether credentials were found and Deadline Cloud accepts them (exit 1 if not)."""

    async def go(backend: DeadlineBackend) -> int:
        status = await backend.auth_status()
        row = {
            "authenticated": status.authenticated,
            "api_available": status.api_available,
            "source": status.source,
            "profile": status.profile,
            "region": status.region,
            "message": status.message,
        }
        if as_json:
            click.echo(json.dumps(row, indent=2))
        else:
            for key, value in row.items():
                if value is not None:
                    click.echo(f"{key.replace('_', ' ')}: {value}")
        return 0 if status.authenticated and status.api_available else EXIT_FAILED

    _run(ctx, go)


@deadline.command("download-output")
@click.argument("job_id")
@click.option("--step", help="Only this step's outputs (a step id or name).")
@click.option("--task", help="Only this task's outputs (a task id; needs --step).")
@click.option(
    "--dest", type=click.Path(file_okay=False), help="Put them here, not where they were."
)
@click.pass_context
def download_output(
    ctx: click.Context, job_id: str, step: str | None, task: str | None, dest: str | None
) -> None:
    """Download what a job's tasks produced (job attachments), with a progress bar.

    Without --dest the files go where they were on the submitting host (through the
    farm's path mapping rules, or this host's storage profile)."""
    target: _Target = ctx.obj

    async def go() -> int:
        from ..client import Client
        from .render import TransferBar

        async with Client(target.url, **_client_options(target)) as farm:
            with TransferBar() as bar:
                paths = await farm.jobs.download_outputs(
                    job_id, step=step, task=task, dest=dest, on_progress=bar
                )
        for path in paths:
            click.echo(str(path))
        return 0

    sys.exit(run_command(go))


def _client_options(target: _Target) -> dict[str, Any]:
    """What --region, --profile and --endpoint-url add to the URL's options."""
    return {
        k: v for k, v in target.values.items() if v and k in ("region", "profile", "endpoint_url")
    }


def register(group: click.Group) -> None:
    group.add_command(deadline)
