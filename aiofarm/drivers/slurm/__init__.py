"""Slurm through slurmrestd (``slurm+http://`` / ``slurm+unix://``); see docs/slurm.md."""

from .driver import SlurmDriver

__all__ = ["SlurmDriver"]
