"""The local back end for the shared contract suite: a fresh state dir per client,
through the farm service (the default); the service is stopped before its state dir
goes."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiofarm import Client
from aiofarm.drivers.local.connect import stop_service

MARKS: tuple[str, ...] = ()
#: commands really run, so exit codes, output and signals are observable
EXECUTES = True


@asynccontextmanager
async def open_client() -> AsyncIterator[Client]:
    with tempfile.TemporaryDirectory(prefix="aiofarm-contract-") as state:
        try:
            async with Client(f"local://{state}", cancel_grace=1) as farm:
                yield farm
        finally:
            stop_service(state, cancel_jobs=True)
