"""The reliability suite: everything here carries the ``reliability`` marker, and the
figures the tests measure are printed together at the end of the run (never asserted
as timings: see docs/reliability.md for the goals)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest

_FIGURES: list[tuple[str, str, str]] = []

#: AIOFARM_RELIABILITY_FULL=1 (the nox session) runs the long variants
FULL = bool(os.environ.get("AIOFARM_RELIABILITY_FULL"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.reliability)


@pytest.fixture
def figure(request: pytest.FixtureRequest) -> Callable[[str, object], None]:
    """``figure("local: longest loop stall", "12.3 ms")`` — kept for the end-of-run table."""

    def record(name: str, value: object) -> None:
        _FIGURES.append((request.node.name, name, str(value)))

    return record


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _FIGURES:
        return
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    terminalreporter.section(f"reliability figures (load average {load}, {time.strftime('%H:%M')})")
    width = max(len(name) for _, name, _ in _FIGURES)
    for test, name, value in _FIGURES:
        terminalreporter.write_line(f"  {name:<{width}}  {value:<24} {test}")
