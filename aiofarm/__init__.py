"""aiofarm: one asyncio client for compute and render farms.

    async with aiofarm.Client() as farm:          # local:// by default
        job = await farm.jobs.start(["echo", "hi"])
        result = await farm.jobs.wait(job.id)

Every public name lives here, and only here. Submodules load on first use, so
``import aiofarm`` stays cheap and never imports aiohttp or aiobotocore.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_LAZY = {
    # client and subsystems
    "Client": "client",
    "Jobs": "jobs",
    "Logs": "logs",
    "Pools": "pools",
    "Workers": "workers",
    "Functions": "functions",
    "Function": "functions",
    "BulkResult": "functions",
    "BulkError": "functions",
    "StdStream": "stdio",
    "PortForward": "portforward",
    "ForwardError": "portforward",
    "ForwardEvent": "portforward",
    # filters
    "where": "where",
    "Expr": "where",
    "Compare": "where",
    "And": "where",
    "Or": "where",
    "Not": "where",
    "WhereSyntaxError": "where",
    # models
    "Capability": "models",
    "CompletionResult": "models",
    "Job": "models",
    "JobEvent": "models",
    "JobSpec": "models",
    "JobStatus": "models",
    "LogLine": "models",
    "LogPage": "models",
    "Message": "models",
    "PathMappingRule": "models",
    "PathMapping": "pathmap",
    "Pool": "models",
    "Resources": "models",
    "StatusTransition": "models",
    "Task": "models",
    "TransferProgress": "models",
    "Worker": "models",
    # errors
    "AuthError": "errors",
    "BackendError": "errors",
    "ConnectionLost": "errors",
    "FarmError": "errors",
    "InvalidSpec": "errors",
    "JobNotFound": "errors",
    "JobNotRunning": "errors",
    "PoolNotFound": "errors",
    "RemoteError": "errors",
    "StateError": "errors",
    "StateLocked": "errors",
    "UnsupportedError": "errors",
    "WaitTimeout": "errors",
}

__all__ = sorted([*_LAZY, "__version__"])

# Loaded now, not lazily: the submodule aiofarm.where would otherwise shadow the
# `where` object the first time anything imports the module.
from .where import where  # noqa: E402


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aiofarm' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from .client import Client
    from .errors import (
        AuthError,
        BackendError,
        ConnectionLost,
        FarmError,
        InvalidSpec,
        JobNotFound,
        JobNotRunning,
        PoolNotFound,
        RemoteError,
        StateError,
        StateLocked,
        UnsupportedError,
        WaitTimeout,
    )
    from .functions import BulkError, BulkResult, Function, Functions
    from .jobs import Jobs
    from .logs import Logs
    from .models import (
        Capability,
        CompletionResult,
        Job,
        JobEvent,
        JobSpec,
        JobStatus,
        LogLine,
        LogPage,
        Message,
        PathMappingRule,
        Pool,
        Resources,
        StatusTransition,
        Task,
        TransferProgress,
        Worker,
    )
    from .pathmap import PathMapping
    from .pools import Pools
    from .portforward import ForwardError, ForwardEvent, PortForward
    from .stdio import StdStream
    from .where import And, Compare, Expr, Not, Or, WhereSyntaxError
    from .workers import Workers
