"""The driver contract suite runs the same behaviour tests against every back end
that has a module in tests/backends/: adding a back end is adding that one file.

A backend module provides::

    MARKS: tuple[str, ...]      # pytest marks (e.g. ("slurm",)) so CI can select it
    EXECUTES: bool              # exit codes and output of commands are observable
    open_client() -> AsyncContextManager[Client]   # a fresh farm for one test
    VARIANTS: tuple[str, ...]   # optional: real set-ups to run once each (Slurm
                                # versions); open_client(variant), variant_marks(variant)
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
        # a back end with several real set-ups (Slurm versions) runs once per set-up
        for variant in getattr(module, "VARIANTS", (None,)):
            extra = [getattr(pytest.mark, m) for m in module.variant_marks(variant)] if variant else []
            out.append(pytest.param((name, variant), id=f"{name}-{variant}" if variant else name, marks=marks + extra))
    return out


@pytest.fixture(params=_params())
def _backend_variant(request: pytest.FixtureRequest) -> tuple[ModuleType, str | None]:
    name, variant = request.param
    return _load(name), variant


@pytest.fixture
def backend(_backend_variant: tuple[ModuleType, str | None]) -> ModuleType:
    return _backend_variant[0]


@pytest.fixture
async def farm(_backend_variant: tuple[ModuleType, str | None]) -> AsyncIterator[Client]:
    module, variant = _backend_variant
    async with (module.open_client(variant) if variant else module.open_client()) as client:
        yield client
