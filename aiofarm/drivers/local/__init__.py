"""The embedded local farm driver (``local://``): see docs/local-driver.md."""

from .driver import LocalDriver

__all__ = ["LocalDriver"]
