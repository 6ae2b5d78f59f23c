"""The driver contract suite runs the same behaviour tests against every back
end that has a module in tests/backends/ (local always; slurm and deadline start
their real cluster / fake service and are marked so CI can run them apart)."""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from types import ModuleType

import pytest

from aiofarm import Client

BACKENDS = ("local", "slurm", "deadline", "ray")


def _load(name: str) -> ModuleType | None:
    try:
        return importlib.import_module(f"tests.backends.{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"tests.backends.{name}":
            return None
        raise


def _params() -> list[object]:
    out: list[object] = []
    for name in BACKENDS:
        module = _load(name)
        if module is None:
            continue
        marks = [getattr(pytest.mark, m) for m in getattr(module, "MARKS", ())]
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@pytest.fixture(params=_params())
def backend(request: pytest.FixtureRequest) -> ModuleType:
    module = _load(request.param)
    assert module is not None
    return module


@pytest.fixture
async def farm(backend: ModuleType) -> AsyncIterator[Client]:
    async with backend.open_client() as client:
        yield client
