"""``aiofarm config``: named farms (contexts) in config.toml, as kubectl's kubeconfig.

.. code-block:: toml

    current-context = "render"
    [contexts.render]
    url = "slurm+http://head:6820?partition=gpu"

Which farm a command talks to, first match wins (docs/cli.md "Contexts"): ``--url``,
``--context NAME``, ``$AIOFARM_URL``, ``$AIOFARM_CONTEXT``, the file's
``current-context``, its plain ``url``, ``local://``. A flag beats the environment,
which beats the file, as kubectl's ``--context`` and docker's ``--context`` /
``DOCKER_CONTEXT`` do. The file is written 0600 (URLs can carry tokens) and URLs are
shown with their secrets masked.
"""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

import click

from ..config import config_path, read_config
from ..errors import InvalidSpec
from .common import Options, run_command
from .formats import Column, emit, output_option

__all__ = ["config", "register"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise InvalidSpec("config", f"cannot write a {type(value).__name__} value")


def dumps(data: dict[str, Any], prefix: str = "") -> str:
    """A minimal TOML writer for config.toml: scalars, lists and nested tables."""
    lines = [f"{_key(k)} = {_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in data.items():
        if isinstance(v, dict):
            name = f"{prefix}.{_key(k)}" if prefix else _key(k)
            if any(not isinstance(x, dict) for x in v.values()) or not v:
                out += f"\n[{name}]\n"
            out += dumps(v, name)
    return out


def _write(data: dict[str, Any]) -> None:
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(dumps(data))
    os.replace(tmp, path)


def _contexts(data: dict[str, Any]) -> dict[str, Any]:
    contexts = data.get("contexts")
    if contexts is None:
        return {}
    if not isinstance(contexts, dict):
        raise InvalidSpec("config.contexts", f"{config_path()}: must be a table")
    return contexts


def _sync(fn: Any) -> int:
    async def go() -> int:
        return int(fn())

    return run_command(go, loop=False)


@click.group()
def config() -> None:
    """Named farms (contexts) in config.toml; `use` picks the current one.

    \b
      aiofarm config set render 'slurm+http://head:6820?partition=gpu'
      aiofarm config use render
      aiofarm --context home ls
    """


@config.command("ls")
@output_option
def config_ls(fmt: str, as_json: bool) -> None:
    """List contexts; * marks the current one."""
    from ..client import redact_url

    def go() -> int:
        data = read_config()
        current = os.environ.get("AIOFARM_CONTEXT") or data.get("current-context")
        rows = [
            {"name": name, "url": redact_url(str(entry.get("url", ""))), "current": name == current}
            for name, entry in sorted(_contexts(data).items())
            if isinstance(entry, dict)
        ]
        columns = [
            Column[dict[str, Any]]("CURRENT", lambda r: "*" if r["current"] else ""),
            Column[dict[str, Any]]("NAME", lambda r: str(r["name"])),
            Column[dict[str, Any]]("URL", lambda r: str(r["url"])),
        ]
        emit(rows, "json" if as_json else fmt, columns=columns, to_dict=lambda r: r,
             name=lambda r: str(r["name"]), empty=f"no contexts in {config_path()}")
        return 0

    sys.exit(_sync(go))


@config.command("set")
@click.argument("name")
@click.argument("url")
def config_set(name: str, url: str) -> None:
    """Add or change context NAME to talk to URL."""

    def go() -> int:
        from ..client import redact_url

        if "://" not in url or not url.split("://", 1)[0]:  # refused now, not at first use
            raise InvalidSpec("url", f"{redact_url(url)!r} has no scheme (e.g. local://, slurm+http://host:6820)")
        data = read_config()
        contexts = _contexts(data)
        data["contexts"] = contexts
        contexts[name] = {**(contexts.get(name) or {}), "url": url}
        _write(data)
        click.echo(f"context {name}: {redact_url(url)}")
        return 0

    sys.exit(_sync(go))


@config.command("use")
@click.argument("name")
def config_use(name: str) -> None:
    """Make NAME the current context (what commands use without --url/--context)."""

    def go() -> int:
        data = read_config()
        if name not in _contexts(data):
            from ..config import context_url

            context_url(name, data)  # raises, listing the known ones
        data["current-context"] = name
        _write(data)
        click.echo(f"switched to context {name}")
        if os.environ.get("AIOFARM_URL") or os.environ.get("AIOFARM_CONTEXT"):
            click.secho(
                "aiofarm: note: $AIOFARM_URL / $AIOFARM_CONTEXT is set and wins over it",
                err=True, fg="yellow",
            )
        return 0

    sys.exit(_sync(go))


@config.command("delete")
@click.argument("name")
def config_delete(name: str) -> None:
    """Remove context NAME (and unset it if it was the current one)."""

    def go() -> int:
        data = read_config()
        contexts = _contexts(data)
        if name not in contexts:
            raise InvalidSpec("context", f"no context {name!r} in {config_path()}")
        del contexts[name]
        if data.get("current-context") == name:
            del data["current-context"]
        _write(data)
        click.echo(f"deleted context {name}")
        return 0

    sys.exit(_sync(go))


@config.command("current")
@click.pass_obj
def config_current(opts: Options) -> None:
    """Print the farm URL commands use now, and where it comes from."""

    def go() -> int:
        from ..client import redact_url

        data = read_config()
        if opts.url is not None:
            source = "--url"
        elif opts.context is not None:
            source = f"--context {opts.context}"
        elif os.environ.get("AIOFARM_URL"):
            source = "$AIOFARM_URL"
        elif os.environ.get("AIOFARM_CONTEXT"):
            source = f"$AIOFARM_CONTEXT ({os.environ['AIOFARM_CONTEXT']})"
        elif data.get("current-context"):
            source = f"context {data['current-context']}"
        elif data.get("url"):
            source = str(config_path())
        else:
            source = "the default"
        click.echo(f"{redact_url(opts.resolved_url())}\t({source})")
        return 0

    sys.exit(_sync(go))


def register(group: click.Group) -> None:
    group.add_command(config)
