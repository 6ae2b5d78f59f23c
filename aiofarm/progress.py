"""Progress of ``jobs.wait``, ``jobs.as_completed`` and ``fn.map``, shown where the
user is: in Jupyter an HTML display updated in place (IPython's display ids, no
widget library needed), elsewhere a line on stderr (rewritten in place on a
terminal, one line per change otherwise).

``progress=True`` shows it everywhere, ``None`` only in a notebook, ``False``
(the default of every call) never. IPython is imported only when a notebook
kernel already has it loaded: a library user who never displays pays nothing.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from .display import badge
from .errors import InvalidSpec
from .models import Job

__all__ = ["Counter", "count_display", "in_notebook", "status_display"]

#: a terminal line is rewritten at most this often (a notebook display too)
_MIN_INTERVAL = 0.1


def in_notebook() -> bool:
    """True inside a Jupyter kernel (IPython with a kernel attached)."""
    if "ipykernel" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - ipykernel without IPython cannot be
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class _Surface(Protocol):
    def show(self, text: str, markup: str, final: bool) -> None: ...


class _Notebook:
    def __init__(self) -> None:
        from IPython.display import HTML, display

        self._html = HTML
        self._handle: Any = display(HTML(""), display_id=True)  # type: ignore[no-untyped-call]

    def show(self, text: str, markup: str, final: bool) -> None:
        self._handle.update(self._html(f'<div class="aiofarm-progress">{markup}</div>'))  # type: ignore[no-untyped-call]


class _Text:
    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last = ""

    def show(self, text: str, markup: str, final: bool) -> None:
        if text == self._last and not final:
            return
        self._last = text
        if self._tty:
            sys.stderr.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            sys.stderr.write(text + "\n")
        sys.stderr.flush()


def _surface(mode: bool | None) -> _Surface | None:
    if mode is not True and mode is not None:
        raise InvalidSpec("progress", f"must be True, False or None, got {mode!r}")
    if in_notebook():
        return _Notebook()
    return _Text() if mode else None


def status_display(job_id: str, mode: bool | None) -> Callable[[Job], None] | None:
    """A callback showing one job's status as it changes (for ``jobs.wait``)."""
    surface = _surface(mode)
    if surface is None:
        return None

    def show(job: Job) -> None:
        final = job.status.is_finished
        code = "" if job.exit_code is None else f" (exit code {job.exit_code})"
        text = f"job {job.id}: {job.status}{code}"
        markup = f"job <code>{html.escape(job.id)}</code>: {badge(job.status)}{html.escape(code)}"
        surface.show(text, markup, final)

    return show


class Counter:
    """``done`` of ``total`` things, shown as a bar (for ``as_completed``, ``fn.map``)."""

    def __init__(self, surface: _Surface | None, total: int, what: str) -> None:
        self._surface = surface
        self.total = total
        self.done = 0
        self.failed = 0
        self._what = what
        self._shown = 0.0
        self._show(final=False)

    def add(self, n: int = 1, *, failed: int = 0) -> None:
        self.done += n
        self.failed += failed
        now = time.monotonic()
        if self.done >= self.total or now - self._shown >= _MIN_INTERVAL:
            self._show(final=self.done >= self.total)

    def close(self) -> None:
        if self._surface is not None and self.done < self.total:
            self._show(final=True)

    def _show(self, *, final: bool) -> None:
        if self._surface is None:
            return
        self._shown = time.monotonic()
        share = self.done / self.total if self.total else 1.0
        failed = f", {self.failed} failed" if self.failed else ""
        text = f"{self._what}: {self.done}/{self.total}{failed}"
        width = 30
        bar = "#" * round(share * width)
        line = f"[{bar:<{width}}] {text}"
        markup = (
            f'<progress value="{self.done}" max="{max(self.total, 1)}" style="width:20em"></progress> '
            f"{html.escape(text)}"
        )
        self._surface.show(line, markup, final)


def count_display(total: int, what: str, mode: bool | None) -> Counter:
    """A :class:`Counter` that shows itself per ``mode`` (shows nothing when off)."""
    return Counter(None if mode is False else _surface(mode), total, what)
