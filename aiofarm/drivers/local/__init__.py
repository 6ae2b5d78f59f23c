"""The local farm (``local://``): a per-user farm service and its client driver,
or an embedded farm with ``?embedded=true``. See docs/local-driver.md."""

from .client import ServiceDriver as LocalDriver
from .embedded import EmbeddedDriver

__all__ = ["EmbeddedDriver", "LocalDriver"]
