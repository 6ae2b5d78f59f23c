"""The ``aiofarm`` command line: ``aiofarm run -- echo hello from aiofarm``.

The group and its entry point are in :mod:`.app`; each command group in a module of its
own (:mod:`.run`, :mod:`.jobs`, :mod:`.interactive`), sharing :mod:`.common` (options,
exit codes, notes) and :mod:`.output` (log lines, job text). Decisions are in docs/cli.md.
"""

from __future__ import annotations

from .app import cli, main

__all__ = ["cli", "main"]
