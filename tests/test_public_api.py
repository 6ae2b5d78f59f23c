"""Every public name is exported from aiofarm/__init__.py (and listed in __all__);
users never need to import from a submodule."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import aiofarm

# modules whose __all__ is public API; everything else (backoff, watch,
# validation, drivers) is internal
PUBLIC_MODULES = [
    "client",
    "errors",
    "models",
    "jobs",
    "logs",
    "pools",
    "workers",
    "where",
    "functions",
    "stdio",
    "portforward",
]


def test_all_names_resolve_and_are_sorted() -> None:
    assert aiofarm.__all__ == sorted(set(aiofarm.__all__))
    for name in aiofarm.__all__:
        assert getattr(aiofarm, name) is not None, name


def test_every_public_module_name_is_exported_from_the_package() -> None:
    missing = []
    for mod in PUBLIC_MODULES:
        module = importlib.import_module(f"aiofarm.{mod}")
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and getattr(obj, "__module__", "") != module.__name__:
                continue  # re-exported from elsewhere; checked where it is defined
            if name not in aiofarm.__all__:
                missing.append(f"aiofarm.{mod}.{name}")
    assert not missing, f"public names not exported from aiofarm: {missing}"


def test_exported_objects_are_the_defining_ones() -> None:
    for name in aiofarm.__all__:
        obj = getattr(aiofarm, name)
        if inspect.isclass(obj):
            assert obj.__module__.startswith("aiofarm."), name


def test_every_error_has_one_root() -> None:
    exported = [getattr(aiofarm, n) for n in aiofarm.__all__]
    errors = [obj for obj in exported if inspect.isclass(obj) and issubclass(obj, BaseException)]
    assert len(errors) >= 12
    for err in errors:
        assert issubclass(err, aiofarm.FarmError), err


def test_import_is_light() -> None:
    code = "import sys, aiofarm; print(sorted(m for m in ('aiohttp', 'aiobotocore', 'botocore', 'openjd', 'anyio', 'asyncio') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
