"""Shared fixtures. Tests are async on asyncio through anyio's pytest plugin."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from .services import services_with_env, stop_services


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_config(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """No test reads the developer's own aiofarm config, data dir or AIOFARM_URL; and
    every local farm service a test started (it inherits AIOFARM_TEST_MARK, also
    through CLI subprocesses) is stopped when the test ends."""
    home = tmp_path_factory.mktemp("xdg")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / "data"))
    monkeypatch.delenv("AIOFARM_URL", raising=False)
    # inherited by every process the test starts, and by the services those start
    monkeypatch.setenv("AIOFARM_TEST_MARK", str(home))
    yield
    stop_services(services_with_env("AIOFARM_TEST_MARK", str(home)))


def open_fds() -> set[int]:
    """This process's open file descriptors (for leak checks)."""
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def pytest_collection_finish(session: pytest.Session) -> None:
    """Install Ray (about a minute on a fresh machine) before the first Ray test, not
    inside its timeout; only when the run has Ray tests."""
    if session.config.option.collectonly or not any(item.get_closest_marker("ray") for item in session.items):
        return
    from tests.backends import ray

    ray.install()
