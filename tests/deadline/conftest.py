"""Fixtures: one fake Deadline Cloud (+ moto CloudWatch Logs) child process per test
session, reset before each test; AWS environment pointed at it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.deadline.process import FakeDeadlineProcess, aws_env


@pytest.fixture(scope="session")
def fake_process() -> Iterator[FakeDeadlineProcess]:
    with FakeDeadlineProcess(moto=True) as fake:
        yield fake


@pytest.fixture
def fake(
    fake_process: FakeDeadlineProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> Iterator[FakeDeadlineProcess]:
    fake_process.reset()
    for key, value in aws_env(str(tmp_path)).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    yield fake_process
    fake_process.reset()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Caches (aiofarm's, the official client's) private to the test."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def url(fake: FakeDeadlineProcess) -> str:
    return fake.url()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = __file__.rsplit("/", 1)[0]
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.deadline)
