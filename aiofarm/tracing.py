"""Optional OpenTelemetry spans: ``aiofarm.<subsystem>.<verb>``.

Spans are made only when ``opentelemetry-api`` is installed *and* the application
configured a tracer provider (``trace.set_tracer_provider(...)``): with the API's
default provider, or without the package, every call here is a no-op (the API is
imported on the first span of a client, never the SDK). No data leaves the process unless the application configured an exporter.

What is traced (docs/reliability.md):

- every driver primitive (``aiofarm.driver.<primitive>``, e.g. ``aiofarm.driver.get_jobs``),
- ``aiofarm.jobs.submit``, ``aiofarm.jobs.wait``, ``aiofarm.logs.stream``.

Attributes are counts and names only — ``aiofarm.driver`` (the scheme),
``aiofarm.job_count``, ``aiofarm.request_count`` — never an environment value, a
command, a token or a job's text.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["DRIVER_PRIMITIVES", "enabled", "span", "trace_driver", "traced"]

#: the driver calls that get a span each (async primitives; streams are not wrapped)
DRIVER_PRIMITIVES = (
    "submit", "get_jobs", "describe", "changes_since", "list_page", "count_jobs", "control", "update",
    "send_signal", "tasks", "explain", "read_log", "port_address", "list_pools", "create_pool",
    "rename_pool", "delete_pool", "capacity", "list_workers", "set_workers_enabled",
)  # fmt: skip

_tracer: Any = None
_unavailable = False


def _get_tracer() -> Any:
    """The tracer, or None while no provider is configured (checked on each call until
    one is: an application may configure it after importing aiofarm)."""
    global _tracer, _unavailable
    if _tracer is not None:
        return _tracer
    if _unavailable:
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        _unavailable = True
        return None
    provider = trace.get_tracer_provider()
    # the API's defaults: nothing configured, so nothing to do
    if type(provider).__name__ in ("ProxyTracerProvider", "NoOpTracerProvider"):
        return None
    from . import __version__

    _tracer = provider.get_tracer("aiofarm", __version__)
    return _tracer


def enabled() -> bool:
    return _get_tracer() is not None


def _job_count(args: Sequence[Any]) -> int | None:
    if args and isinstance(args[0], (list, tuple)):
        return len(args[0])
    if args and isinstance(args[0], str):
        return 1
    return None


@contextlib.contextmanager
def span(
    name: str, driver: str, *, job_count: int | None = None, requests: int | None = None, current: bool = True
) -> Iterator[Any]:
    """A span named ``name`` when tracing is on (else nothing); yields it (or None).
    ``current=False`` for a span across an async generator's yields, which must not
    become the caller's current context."""
    tracer = _get_tracer()
    if tracer is None:
        yield None
        return
    attributes: dict[str, Any] = {"aiofarm.driver": driver}
    if job_count is not None:
        attributes["aiofarm.job_count"] = job_count
    if requests is not None:
        attributes["aiofarm.request_count"] = requests
    if current:
        manager = tracer.start_as_current_span(name, attributes=attributes, record_exception=False)
    else:
        manager = contextlib.nullcontext(tracer.start_span(name, attributes=attributes, record_exception=False))
    with manager as made:
        try:
            yield made
        except BaseException as exc:
            from opentelemetry.trace import Status, StatusCode

            # the error's type only: its message may quote what the user sent
            made.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            if not current:
                made.end()


async def traced(coro: Awaitable[T], name: str, driver: str, *, job_count: int | None = None) -> T:
    """``await coro`` inside a span (callers wrap only when :func:`enabled`: a wait
    that is not traced costs no extra frame)."""
    with span(name, driver, job_count=job_count):
        return await coro


def _traced(driver_name: str, verb: str, method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        with span(f"aiofarm.driver.{verb}", driver_name, job_count=_job_count(args), requests=1):
            return await method(*args, **kwargs)

    return call


def trace_driver(driver: Any) -> None:
    """Give each async primitive of ``driver`` a span (when tracing is on at open)."""
    if not enabled():
        return
    for verb in DRIVER_PRIMITIVES:
        method = getattr(driver, verb, None)
        if method is not None and inspect.iscoroutinefunction(method):
            setattr(driver, verb, _traced(driver.name, verb, method))
