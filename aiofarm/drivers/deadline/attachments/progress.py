"""Counting files and bytes of one transfer phase for a progress callback."""

from __future__ import annotations

import time
from collections.abc import Callable

from ....models import TransferProgress

__all__ = ["Meter"]

_EVERY = 0.05  # seconds between two reports of the same phase (the last one always goes)


class Meter:
    def __init__(
        self,
        phase: str,
        files: int,
        total: int,
        on_progress: Callable[[TransferProgress], object] | None,
    ) -> None:
        self.phase = phase
        self.files_total = files
        self.bytes_total = total
        self.files_done = self.bytes_done = 0
        self.files_skipped = self.bytes_skipped = 0
        self._on = on_progress
        self._last = 0.0

    def _report(self, force: bool = False) -> None:
        if self._on is None:
            return
        now = time.monotonic()
        if not force and now - self._last < _EVERY:
            return
        self._last = now
        self._on(
            TransferProgress(
                self.phase,
                self.files_done,
                self.files_total,
                self.bytes_done,
                self.bytes_total,
                self.files_skipped,
                self.bytes_skipped,
            )
        )

    def bytes(self, n: int) -> None:
        self.bytes_done += n
        self._report()

    def file(self, size: int = 0, *, skipped: bool = False, counted: int = 0) -> None:
        """One file done; ``counted`` of its ``size`` were already reported by bytes()."""
        self.files_done += 1
        self.bytes_done += size - counted
        if skipped:
            self.files_skipped += 1
            self.bytes_skipped += size
        self._report()

    def finish(self) -> None:
        self._report(force=True)
