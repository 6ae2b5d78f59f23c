"""``aiofarm farm start|stop|status|logs``: manage the local farm service of a
state dir (the one ``--url``/``$AIOFARM_URL`` names, default ``local://``).
Decisions are in docs/cli.md ("aiofarm farm")."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from ..drivers.local.config import FarmConfig

EXIT_ERROR = 2  # as every aiofarm error (docs/cli.md)
EXIT_NOT_RUNNING = 3


def _config(ctx: click.Context) -> FarmConfig:
    import yarl

    from ..config import resolve_url
    from ..drivers.local import config
    from ..errors import InvalidSpec

    url = resolve_url(getattr(ctx.obj, "url", None))
    try:
        parsed = yarl.URL(url)
        if parsed.scheme != "local":
            raise InvalidSpec("url", f"`aiofarm farm` manages the local farm service; {url} is not local://")
        cfg = config.parse(parsed, {})
    except InvalidSpec as exc:
        _fail(str(exc))
    if cfg.embedded:
        _fail("an embedded farm (embedded=true) has no service")
    return cfg


def _fail(message: str, code: int = EXIT_ERROR) -> Any:
    click.secho(f"aiofarm: error: {message}", fg="red", err=True)
    sys.exit(code)


def _request(cfg: FarmConfig, name: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """One request to the running service (None if none runs)."""
    from ..drivers.local import connect
    from ..errors import FarmError

    try:
        return connect.request(cfg.state_dir, name, body)
    except FarmError as exc:
        _fail(str(exc))
        return None


def register(cli: click.Group) -> None:
    cli.add_command(farm)


@click.group()
def farm() -> None:
    """Manage the local farm service (it starts by itself on first use).

    \b
      aiofarm farm status
      aiofarm farm stop --cancel-jobs
      aiofarm farm start --foreground --idle-timeout 0
    """


@farm.command()
@click.option("--foreground", is_flag=True, help="Run the service in this terminal (Ctrl-C stops it).")
@click.option("--idle-timeout", type=click.FloatRange(min=0), help="Exit after S idle seconds (0: never; default 600).")
@click.option("--slots", type=click.IntRange(min=1), help="Slots of the default pool (default: CPU count).")
@click.pass_context
def start(ctx: click.Context, foreground: bool, idle_timeout: float | None, slots: int | None) -> None:
    """Start the farm service (no-op if it runs)."""
    from ..drivers.local import connect

    cfg = _config(ctx)
    status = _request(cfg, "status", {})
    if status is not None:
        click.echo(f"farm service already running (pid {status['pid']}) for {cfg.state_dir}")
        return
    if foreground:
        from ..drivers.local import service

        argv = ["--state-dir", cfg.state_dir]
        if idle_timeout is not None:
            argv += ["--idle-timeout", repr(idle_timeout)]
        if slots is not None:
            argv += ["--slots", str(slots)]
        click.echo(f"farm service for {cfg.state_dir} in the foreground (Ctrl-C stops it)", err=True)
        sys.exit(service.main(argv))
    try:
        answer = connect.start_service(cfg.state_dir, slots=slots, cancel_grace=None, idle_timeout=idle_timeout)
    except Exception as exc:  # a FarmError or an OSError: said plainly
        _fail(str(exc))
    up = _wait_status(cfg, 5.0)
    if up is None:
        _fail(f"the farm service did not come up ({answer}); see {os.path.join(cfg.state_dir, connect.LOG_NAME)}")
        return
    click.echo(f"farm service running (pid {up['pid']}) for {cfg.state_dir}")


def _wait_status(cfg: FarmConfig, timeout: float) -> dict[str, Any] | None:
    deadline = time.monotonic() + timeout
    while True:
        status = _request(cfg, "status", {})
        if status is not None or time.monotonic() > deadline:
            return status
        time.sleep(0.02)


@farm.command()
@click.option("--cancel-jobs", is_flag=True, help="Cancel running and pending jobs first.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60, show_default=True, help="Wait this long for it to exit.")
@click.pass_context
def stop(ctx: click.Context, cancel_jobs: bool, timeout: float) -> None:
    """Stop the farm service. Refuses while jobs run, unless --cancel-jobs."""
    cfg = _config(ctx)
    status = _request(cfg, "status", {})
    if status is None:
        click.echo(f"no farm service running for {cfg.state_dir}")
        return
    from ..drivers.local import connect
    from ..errors import FarmError

    try:
        pid = connect.stop_service(cfg.state_dir, cancel_jobs=cancel_jobs, timeout=timeout)
    except FarmError as exc:
        _fail(str(exc))
        return
    click.echo(f"farm service stopped (pid {pid})")


@farm.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Whether the farm service runs, and what it is doing. Exit 3 if it does not run."""
    cfg = _config(ctx)
    info = _request(cfg, "status", {})
    if as_json:
        click.echo(json.dumps(info or {"running": False, "state_dir": cfg.state_dir}, indent=2))
    elif info is None:
        click.echo(f"no farm service running for {cfg.state_dir}")
    else:
        up = time.time() - float(info["started"])
        idle = info["idle_timeout"]
        click.echo(f"farm service running (pid {info['pid']}, up {up:.0f}s) for {info['state_dir']}")
        click.echo(
            f"  clients {info['clients']}, jobs running {info['jobs_running']},"
            f" pending {info['jobs_pending']}, active {info['jobs_active']}"
        )
        click.echo(f"  idle timeout {'never' if not idle else f'{idle:g}s'}; log {info['log']}")
        if info.get("write_error"):
            click.secho(f"  cannot write its state: {info['write_error']}", fg="red")
    if info is None:
        sys.exit(EXIT_NOT_RUNNING)


@farm.command()
@click.option("--follow", "-f", is_flag=True, help="Keep printing as the service writes.")
@click.option("--tail", "-n", type=click.IntRange(min=0), help="Only the last N lines.")
@click.pass_context
def logs(ctx: click.Context, follow: bool, tail: int | None) -> None:
    """The farm service's own log (starts, stops, errors)."""
    from ..drivers.local import connect

    cfg = _config(ctx)
    path = os.path.join(cfg.state_dir, connect.LOG_NAME)
    try:
        f = open(path, "rb")  # noqa: SIM115 - followed below
    except FileNotFoundError:
        click.echo(f"no farm service log yet ({path})", err=True)
        return
    with f:
        lines = f.readlines()
        if tail is not None:
            lines = lines[-tail:] if tail else []
        out = sys.stdout.buffer
        out.writelines(lines)
        out.flush()
        while follow:
            chunk = f.read()
            if chunk:
                out.write(chunk)
                out.flush()
            else:
                time.sleep(0.2)
