"""The driver contract suite runs the same behaviour tests against every back end
that has a module in tests/backends/: adding a back end is adding that one file.

A backend module provides::

    MARKS: tuple[str, ...]      # pytest marks (e.g. ("slurm",)) so CI can select it
    EXECUTES: bool              # exit codes and output of commands are observable
    open_client() -> AsyncContextManager[Client]   # a fresh farm for one test
    MISSING_ID: str             # optional: an id the back end certainly does not know

Everything else a test needs to know about a driver comes from its declared
capabilities: a behaviour the driver does not declare is tested to raise
UnsupportedError naming the driver and the capability, never skipped.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import AsyncIterator
from pathlib import Path
from types import ModuleType

import pytest

from aiofarm import Client

BACKENDS = tuple(
    sorted(m.name for m in pkgutil.iter_modules([str(Path(__file__).parent.parent / "backends")]))
)


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"tests.backends.{name}")


def _params() -> list[object]:
    out: list[object] = []
    for name in BACKENDS:
        module = _load(name)
        marks = [getattr(pytest.mark, m) for m in getattr(module, "MARKS", ())]
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(params=_params())
def backend(request: pytest.FixtureRequest) -> ModuleType:
    return _load(request.param)


@pytest.fixture
async def farm(backend: ModuleType) -> AsyncIterator[Client]:
    async with backend.open_client() as client:
        yield client
