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

# not typing.TYPE_CHECKING: a per-task adaptor frontend must not pay for importing typing
# (mypy reads any TYPE_CHECKING name as true)
TYPE_CHECKING = False

__all__ = [
    "AdaptorContext",
    "ApplicationExited",
    "AsyncAdaptor",
    "AsyncCommandAdaptor",
    "AsyncProcess",
    "EntryPoint",
    "RegexCallback",
    "main",
]


def __getattr__(name: str) -> Any:
    # static imports, made on first use: the function runner imports this package and
    # must not pay for anyio
    if name in ("AdaptorContext", "AsyncAdaptor", "AsyncCommandAdaptor"):
        from . import adaptor as module
    elif name in ("ApplicationExited", "AsyncProcess", "RegexCallback"):
        from . import process as module  # type: ignore[no-redef]
    elif name in ("EntryPoint", "main"):
        from . import cli as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module 'aiofarm.adaptors' has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


if TYPE_CHECKING:
    from typing import Any

    from .adaptor import AdaptorContext as AdaptorContext
    from .adaptor import AsyncAdaptor as AsyncAdaptor
    from .adaptor import AsyncCommandAdaptor as AsyncCommandAdaptor
    from .cli import EntryPoint as EntryPoint
    from .cli import main as main
    from .process import ApplicationExited as ApplicationExited
    from .process import AsyncProcess as AsyncProcess
    from .process import RegexCallback as RegexCallback
