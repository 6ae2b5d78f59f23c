"""AWS Deadline Cloud driver (``deadline://<farm-id>/<queue-id>?region=...&profile=...``).

aiobotocore is imported only when the driver opens, so ``import aiofarm`` stays light.
"""

from .driver import DeadlineDriver

__all__ = ["DeadlineDriver"]
