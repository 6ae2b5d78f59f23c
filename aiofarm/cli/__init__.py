"""The ``aiofarm`` command line: ``aiofarm run -- echo hello from aiofarm``.

Decisions are in docs/cli.md.
"""

from __future__ import annotations

from . import interactive as _interactive
from .main import cli, main

_interactive.register(cli)  # exec, attach, port-forward (aiofarm/cli/interactive.py)

__all__ = ["cli", "main"]
