"""Where the farm URL comes from: the argument, ``AIOFARM_URL``, the config file
(``$XDG_CONFIG_HOME/aiofarm/config.toml``: named contexts and a current one, as
kubectl's kubeconfig), else ``local://``. Stdlib only, so the CLI reads it cheaply.

.. code-block:: toml

    current-context = "render"
    [contexts.render]
    url = "slurm+http://head:6820?partition=gpu"
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from .errors import InvalidSpec

__all__ = ["config_path", "context_url", "read_config", "resolve_url"]


def config_path() -> Path:
    """``$XDG_CONFIG_HOME/aiofarm/config.toml`` (``~/.config/aiofarm/config.toml``)."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(Path.home(), ".config")
    return Path(base) / "aiofarm" / "config.toml"


def read_config() -> dict[str, Any]:
    """The config file as a mapping ({} when there is none)."""
    path = config_path()
    if not path.is_file():
        return {}
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InvalidSpec("config", f"{path}: {exc}") from None


def context_url(name: str, data: dict[str, Any] | None = None) -> str:
    """The URL of the named context of the config file (``[contexts.NAME] url = ...``)."""
    data = read_config() if data is None else data
    contexts = data.get("contexts")
    entry = contexts.get(name) if isinstance(contexts, dict) else None
    if not isinstance(entry, dict):
        known = ", ".join(sorted(contexts)) if isinstance(contexts, dict) and contexts else "none"
        raise InvalidSpec("context", f"no context {name!r} in {config_path()} (known: {known})")
    url = entry.get("url")
    if not isinstance(url, str):
        raise InvalidSpec(f"config.contexts.{name}.url", f"{config_path()}: must be a string")
    return url


def _config_url() -> str | None:
    """``AIOFARM_CONTEXT``'s URL, else the current context's, else the file's ``url``."""
    data = read_config()
    name = os.environ.get("AIOFARM_CONTEXT") or data.get("current-context")
    if name:
        if not isinstance(name, str):
            raise InvalidSpec("config.current-context", f"{config_path()}: must be a string")
        return context_url(name, data)
    url = data.get("url")
    if url is not None and not isinstance(url, str):
        raise InvalidSpec("config.url", f"{config_path()}: must be a string")
    return url


MAX_URL_LEN = 65536


def resolve_url(url: str | None = None) -> str:
    """The argument, else ``AIOFARM_URL``, else the config file (``AIOFARM_CONTEXT`` or
    its current context, else its ``url``), else ``local://``."""
    if url is None:
        url = os.environ.get("AIOFARM_URL") or _config_url() or "local://"
    if not isinstance(url, str):
        raise InvalidSpec("url", f"must be a string, got {type(url).__name__}")
    from .validation import check_text

    # before yarl, which drops a lone surrogate silently (another state dir, another host)
    check_text(url, "url", limit=MAX_URL_LEN, empty=True)
    return url
