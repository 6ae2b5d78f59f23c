"""Run an existing ``openjd.adaptor_runtime`` ``Adaptor``/``CommandAdaptor`` subclass
under this runtime, unchanged.

Its synchronous hooks run in a worker thread, one phase at a time, as the official
backend runs them; a cancel calls its ``cancel()``/``on_cancel()`` in another thread
and the phase ends when its hook returns (a thread cannot be interrupted). What the
adaptor gains is everything around it: no orphans, the token, streamed output, init data
over stdin, configuration read without writing files.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import Any

import anyio.to_thread

from .protocol import format_version


def is_official_adaptor(cls: type) -> bool:
    for base in cls.__mro__:
        if base.__module__.startswith("openjd.adaptor_runtime") and base.__name__ == "BaseAdaptor":
            return True
    return False


def module_dir_of(cls: type) -> str | None:
    module = sys.modules.get(cls.__module__)
    path = getattr(module, "__file__", None)
    return os.path.dirname(os.path.abspath(path)) if path else None


def official_interface_version(cls: type) -> str:
    version = cls({}).integration_data_interface_version
    return format_version((int(version.major), int(version.minor)))


class OfficialAdaptorShim:
    """The :class:`~aiofarm.adaptors.runner.Hooks` of an official adaptor instance."""

    stop_timeout = 600.0
    cleanup_timeout = 600.0
    cancel_timeout = 600.0

    def __init__(
        self,
        cls: type,
        init_data: Mapping[str, Any],
        path_mapping_data: Mapping[str, Any],
        config: Mapping[str, Any],
    ) -> None:
        self.adaptor: Any = cls(dict(init_data), path_mapping_data=dict(path_mapping_data))
        # Pre-set the configuration: the official property would build it through a
        # manager that creates empty default and user files when they are missing.
        opts = getattr(self.adaptor, "_config_opts", None)
        config_cls = getattr(opts, "config_cls", None)
        if config_cls is None:
            from openjd.adaptor_runtime.adaptors.configuration import AdaptorConfiguration

            config_cls = AdaptorConfiguration
        self.adaptor._config = config_cls(dict(config))

    async def on_start(self) -> None:
        await anyio.to_thread.run_sync(self.adaptor._start)

    async def on_run(self, run_data: dict[str, Any]) -> None:
        await anyio.to_thread.run_sync(self.adaptor._run, run_data)

    async def on_stop(self) -> None:
        await anyio.to_thread.run_sync(self.adaptor._stop)

    async def on_cleanup(self) -> None:
        await anyio.to_thread.run_sync(self.adaptor._cleanup)

    async def on_cancel(self) -> None:
        await anyio.to_thread.run_sync(self.adaptor.cancel)
