"""aiofarm: one asyncio client for compute and render farms.

    async with aiofarm.Client() as farm:          # local:// by default
        job = await farm.jobs.start(["echo", "hi"])
        result = await farm.jobs.wait(job.id)

Every public name lives here, and only here. Submodules load on first use, so
``import aiofarm`` stays cheap and never imports aiohttp or aiobotocore.
"""

from __future__ import annotations

import sys
import types

# not typing.TYPE_CHECKING: importing typing costs more than the rest of this module
# (mypy reads any TYPE_CHECKING name as true)
TYPE_CHECKING = False

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
    "Secret": "models",
    "StatusTransition": "models",
    "Task": "models",
    "TransferProgress": "models",
    "Worker": "models",
    # notebook display
    "JobList": "display",
    "TaskList": "display",
    "PoolList": "display",
    "LogLines": "display",
    # errors
    "AuthError": "errors",
    "BackendError": "errors",
    "BackendUnavailable": "errors",
    "ConnectionFailed": "errors",
    "ConnectionLost": "errors",
    "FarmError": "errors",
    "InvalidSpec": "errors",
    "JobNotFound": "errors",
    "JobNotRunning": "errors",
    "PoolNotFound": "errors",
    "RemoteError": "errors",
    "StateError": "errors",
    "StateLocked": "errors",
    "StatusNotReached": "errors",
    "TransientError": "errors",
    "UnsupportedError": "errors",
    "WaitTimeout": "errors",
}

__all__ = sorted([*_LAZY, "__version__"])



class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # The import system binds a loaded submodule on its package: the subpackage
        # aiofarm.where must not hide the public `where` object it defines. Lazy, so that
        # `import aiofarm` (and a per-task adaptor frontend) never pays for attrs.
        if name == "where" and isinstance(value, types.ModuleType):
            value = value.where
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


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
    from typing import Any

    from .client import Client
    from .display import JobList, LogLines, PoolList, TaskList
    from .errors import (
        AuthError,
        BackendError,
        BackendUnavailable,
        ConnectionFailed,
        ConnectionLost,
        FarmError,
        InvalidSpec,
        JobNotFound,
        JobNotRunning,
        PoolNotFound,
        RemoteError,
        StateError,
        StateLocked,
        StatusNotReached,
        TransientError,
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
        Secret,
        StatusTransition,
        Task,
        TransferProgress,
        Worker,
    )
    from .pathmap import PathMapping
    from .pools import Pools
    from .portforward import ForwardError, ForwardEvent, PortForward
    from .stdio import StdStream
    from .where import And, Compare, Expr, Not, Or, WhereSyntaxError, where
    from .workers import Workers
