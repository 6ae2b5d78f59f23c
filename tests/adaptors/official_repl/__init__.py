"""The example REPL adaptor written against the official openjd-adaptor-runtime
(synchronous hooks, threads), behaving like examples/adaptors/repl_adaptor: the
reference the aiofarm runtime is compared with."""

from .adaptor import OfficialReplAdaptor

__all__ = ["OfficialReplAdaptor"]
