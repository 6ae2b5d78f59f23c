"""Example adaptor: drives ``repl_app.py`` (start it once, one ``render`` per task)."""

from .adaptor import ReplAdaptor

__all__ = ["ReplAdaptor"]
