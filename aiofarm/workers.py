"""``client.workers``: the machines that run jobs (Smedge engines, Slurm nodes)."""

from __future__ import annotations

import builtins
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from .errors import InvalidSpec
from .models import Capability, Worker
from .validation import MAX_TAG_LEN, check_text

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Workers"]


def _selector(names: str | Sequence[str] | None, regex: str | None) -> tuple[set[str] | None, re.Pattern[str] | None]:
    wanted: set[str] | None = None
    if names is not None:
        if isinstance(names, str):
            names = [names]
        if isinstance(names, bytes) or not isinstance(names, Sequence):
            raise InvalidSpec("names", "must be worker names")
        for i, name in enumerate(names):
            check_text(name, f"names[{i}]", limit=MAX_TAG_LEN)
        wanted = set(names)
    pattern = None
    if regex is not None:
        check_text(regex, "regex", limit=MAX_TAG_LEN)
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise InvalidSpec("regex", f"{regex!r}: {exc}") from None
        except (RecursionError, OverflowError, MemoryError):
            raise InvalidSpec("regex", "nested too deeply to compile") from None
    return wanted, pattern


class Workers:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def list(self, names: str | Sequence[str] | None = None, regex: str | None = None) -> builtins.list[Worker]:
        wanted, pattern = _selector(names, regex)
        self._client.require(Capability.WORKERS)
        workers = await self._client.driver.list_workers()
        return [
            w
            for w in workers
            if (wanted is None or w.name in wanted) and (pattern is None or pattern.search(w.name))
        ]

    async def _set(
        self,
        names: str | Sequence[str] | None,
        regex: str | None,
        enabled: bool,
        stop_work: bool,
        reason: str | None,
    ) -> builtins.list[Worker]:
        if names is None and regex is None:
            raise InvalidSpec("names", "name the workers (names=... or regex=...)")
        if not isinstance(stop_work, bool):
            raise InvalidSpec("stop_work", f"must be a bool, got {stop_work!r}")
        self._client.require(Capability.WORKERS_MANAGE)
        self._client.require(Capability.WORKERS_STOP_WORK, stop_work)
        chosen = await self.list(names, regex)
        wanted, _ = _selector(names, regex)
        missing = (wanted or set()) - {w.name for w in chosen}
        if missing:
            raise InvalidSpec("names", f"no such worker: {', '.join(sorted(missing))}")
        if chosen:
            await self._client.driver.set_workers_enabled(
                [w.name for w in chosen], enabled, stop_work=stop_work, reason=reason
            )
        return chosen

    async def disable(
        self,
        names: str | Sequence[str] | None = None,
        regex: str | None = None,
        *,
        stop_work: bool = False,
        reason: str | None = None,
    ) -> builtins.list[Worker]:
        """Stop dispatching to these workers; ``stop_work`` also stops what they run."""
        return await self._set(names, regex, False, stop_work, reason)

    async def enable(self, names: str | Sequence[str] | None = None, regex: str | None = None) -> builtins.list[Worker]:
        return await self._set(names, regex, True, False, None)
