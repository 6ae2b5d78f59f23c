"""Worker-side code.

- The async Open Job Description adaptor runtime (docs/adaptors.md): :class:`AsyncAdaptor`,
  :class:`AsyncCommandAdaptor`, :class:`AsyncProcess`, :class:`RegexCallback`,
  :class:`AdaptorContext`, and :class:`EntryPoint`/:func:`main` for an adaptor's command
  line (compatible with openjd-adaptor-runtime's). Loaded on first use.
- The Python function runner (:mod:`.function_runner`), a program aiofarm starts as a
  child process: it imports only the standard library, so importing this package must
  stay cheap. (The OpenJD session runner is :mod:`aiofarm.openjd.session_runner`.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

_LAZY = {
    "AsyncAdaptor": "adaptor",
    "AsyncCommandAdaptor": "adaptor",
    "AdaptorContext": "adaptor",
    "AsyncProcess": "process",
    "RegexCallback": "process",
    "ApplicationExited": "process",
    "EntryPoint": "cli",
    "main": "cli",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'aiofarm.adaptors' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from .adaptor import AdaptorContext as AdaptorContext
    from .adaptor import AsyncAdaptor as AsyncAdaptor
    from .adaptor import AsyncCommandAdaptor as AsyncCommandAdaptor
    from .cli import EntryPoint as EntryPoint
    from .cli import main as main
    from .process import ApplicationExited as ApplicationExited
    from .process import AsyncProcess as AsyncProcess
    from .process import RegexCallback as RegexCallback
