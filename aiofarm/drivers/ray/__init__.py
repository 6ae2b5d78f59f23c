"""The Ray driver (``ray+http://``, ``ray+https://``): see docs/ray.md."""

from .driver import RayDriver

__all__ = ["RayDriver"]
