"""The local farm (``local://``): a per-user farm service and its client driver,
or an embedded farm with ``?embedded=true``. See docs/local-driver.md.

The drivers are imported on first use, so a module of this package (``connect``,
``wire``) can be used alone: the CLI's read commands talk to the service through
``connect.request`` without paying for the drivers' imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .client import ServiceDriver as LocalDriver
    from .embedded import EmbeddedDriver

__all__ = ["EmbeddedDriver", "LocalDriver"]


def __getattr__(name: str) -> Any:
    if name == "LocalDriver":
        from .client import ServiceDriver

        return ServiceDriver
    if name == "EmbeddedDriver":
        from .embedded import EmbeddedDriver

        return EmbeddedDriver
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
