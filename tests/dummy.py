"""The dummy driver behind a test's Client."""

from __future__ import annotations

from aiofarm import Client
from aiofarm.drivers.dummy import DummyDriver


def dummy(client: Client) -> DummyDriver:
    """The open Client's driver, which must be the dummy one."""
    driver = client.driver
    assert isinstance(driver, DummyDriver)
    return driver
