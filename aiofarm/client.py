"""``Client``: one object, every farm.

The URL picks the driver (entry-point group ``aiofarm.drivers``, keyed by URL
scheme). The Client owns the driver, the watch hub and one task group for all
background work (the poller, the local scheduler).

That task group lives in a single host task the Client starts itself, like
trio's system nursery (``trio.lowlevel.spawn_system_task``): a notebook may
open a Client in one cell and close it in another, i.e. in a different asyncio
task, which a task group entered in the caller's task would not survive.
Everything else the Client runs is owned by that task group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

import anyio

from .config import resolve_url
from .errors import ConnectionLost, FarmError, InvalidSpec, UnsupportedError
from .models import Capability, PathMappingRule
from .redaction import install_log_filters
from .redaction import redact_url as redact_url  # the CLI's import of it stays valid

if TYPE_CHECKING:
    import anyio.abc
    import yarl

    from .drivers.base import Driver
    from .functions import Functions
    from .jobs import Jobs
    from .logs import Logs
    from .pathmap import PathMapping
    from .pools import Pools
    from .watch import Hub
    from .workers import Workers

__all__ = ["Client"]

install_log_filters()  # no record of aiofarm's loggers carries a secret (docs/reliability.md)




def _parse(url: str) -> yarl.URL:
    import yarl

    if not url.strip():
        raise InvalidSpec("url", "is empty")
    try:
        parsed = yarl.URL(url)
    except (ValueError, TypeError) as exc:
        raise InvalidSpec("url", f"{redact_url(url)!r} is not a URL: {exc}") from None
    if not parsed.scheme:
        raise InvalidSpec("url", f"{redact_url(url)!r} has no scheme (e.g. local://, slurm+http://host:6820)")
    return parsed


def _driver_class(scheme: str) -> type[Driver]:
    """The driver for ``scheme``, from the ``aiofarm.drivers`` entry points (the
    built-in drivers are registered there too, in pyproject.toml)."""
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="aiofarm.drivers")}
    ep = found.get(scheme)
    if ep is None:
        raise InvalidSpec("url", f"no driver for scheme {scheme!r}; known: {', '.join(sorted(found))}")
    try:
        cls: type[Driver] = ep.load()
    except (ImportError, AttributeError) as exc:
        raise InvalidSpec("url", f"driver for {scheme!r} cannot be loaded: {exc}") from None
    return _client_side(cls)


def _client_side(cls: type[Driver]) -> type[Driver]:
    """``cls`` with the client layer's retries (aiofarm/retry.py) and, for a back end
    without dependencies, its holds (aiofarm/release.py) in front."""
    from .retry import retrying

    cls = retrying(cls)
    if not cls.native_dependencies:
        from .release import holding

        cls = holding(cls)
    return cls


class _Supervisor:
    """Hosts the Client's task group in one task of its own (see module docstring)."""

    def __init__(self) -> None:
        self.tg: anyio.abc.TaskGroup | None = None
        self._stop = asyncio.Event()
        self._ready = asyncio.Event()
        self._host: asyncio.Task[None] | None = None
        self.error: BaseException | None = None

    async def start(self) -> None:
        # the single task the Client creates outside a task group; it owns one
        self._host = asyncio.get_running_loop().create_task(self._run(), name="aiofarm-client")
        self._host.add_done_callback(lambda _: self._ready.set())  # a failed start wakes us too
        await self._ready.wait()
        if self.tg is None:
            await self._host  # re-raise what prevented the start

    async def _run(self) -> None:
        try:
            async with anyio.create_task_group() as tg:
                self.tg = tg
                self._ready.set()
                await self._stop.wait()
                tg.cancel_scope.cancel()
        except BaseException as exc:
            self.error = exc
            raise
        finally:
            self.tg = None

    def spawn(self, fn: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        if self.tg is None:
            raise ConnectionLost("the client's background tasks have stopped") from self.error
        self.tg.start_soon(fn)

    async def stop(self) -> None:
        self._stop.set()
        host = self._host
        if host is not None:
            # what ended the host is already in self.error
            with contextlib.suppress(BaseException):
                await asyncio.shield(host)


class Client:
    """``async with Client(url) as farm:`` — or ``await Client(url).open()`` and
    ``await farm.aclose()``.

    ``options`` go to the driver (as do the URL's query parameters);
    ``path_mapping`` rules apply to every submission.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        path_mapping: Sequence[PathMappingRule] = (),
        **options: Any,
    ) -> None:
        self._url_text = resolve_url(url)
        self._url = _parse(self._url_text)
        self._options = options
        self._driver_cls = _driver_class(self._url.scheme)
        self._driver: Driver | None = None
        self._hub: Hub | None = None
        self._supervisor: _Supervisor | None = None
        self._closed = False
        self._path_mapping_rules = tuple(path_mapping)
        self._path_mapping: PathMapping | None = None

        from .jobs import Jobs
        from .logs import Logs
        from .pools import Pools
        from .workers import Workers

        self.jobs: Jobs = Jobs(self)
        self.logs: Logs = Logs(self)
        self.pools: Pools = Pools(self)
        self.workers: Workers = Workers(self)
        self._functions: Functions | None = None

    # -- lifecycle ---------------------------------------------------------------
    async def open(self) -> Client:
        if self._driver is not None:
            return self
        if self._closed:
            raise FarmError("this Client is closed; make a new one")
        driver = self._driver_cls.from_url(self._url, self._options)
        driver.farm_url = redact_url(self._url_text)
        if type(driver) is not _client_side(type(driver)):
            # from_url built another class than its own (local's embedded farm): put the
            # client layer in front of that one
            driver.__class__ = _client_side(type(driver))
        from .tracing import trace_driver
        from .watch import Hub

        supervisor = _Supervisor()
        await supervisor.start()
        assert supervisor.tg is not None
        try:
            await driver.open(supervisor.tg)
            trace_driver(driver)  # spans per driver call, only when OpenTelemetry is configured
            hub = Hub(driver, supervisor.spawn)
            await hub.open(supervisor.tg)  # the driver's event stream, if it has one
        except BaseException:
            with anyio.CancelScope(shield=True):
                await driver.aclose()
                await supervisor.stop()
            raise
        self._supervisor = supervisor
        self._driver = driver
        self._hub = hub
        if not driver.native_dependencies:
            from .release import HoldMixin

            assert isinstance(driver, HoldMixin)
            driver.start_release(self._hub, supervisor.spawn)
        return self

    async def aclose(self) -> None:
        """Close the driver and stop background work; safe to call twice, and it
        completes even when the caller is being cancelled."""
        self._closed = True
        driver, supervisor, hub = self._driver, self._supervisor, self._hub
        self._driver = self._supervisor = self._hub = None
        if hub is not None:
            hub.close()
        if driver is not None and not driver.native_dependencies:
            from .release import HoldMixin

            if isinstance(driver, HoldMixin):
                driver.drop_holds()
        with anyio.CancelScope(shield=True):
            try:
                if driver is not None:
                    await driver.aclose()
            finally:
                if supervisor is not None:
                    await supervisor.stop()

    async def __aenter__(self) -> Client:
        return await self.open()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- introspection -----------------------------------------------------------
    @property
    def url(self) -> str:
        return self._url_text

    @property
    def driver_name(self) -> str:
        return self._driver_cls.name

    @property
    def capabilities(self) -> frozenset[Capability]:
        """What the driver can do: operations (``Capability.PAUSE``) and the parameters
        it honours (``Capability.PAUSE_STOP_WORK``, ``LOGS_SINCE``...). An open driver
        may know more than its class, e.g. from the back end's version."""
        if self._driver is not None:
            return self._driver.capabilities
        return self._driver_cls.capabilities

    @property
    def _driver_info(self) -> Driver | type[Driver]:
        """The open driver, else its class: what capability checks read."""
        return self._driver if self._driver is not None else self._driver_cls

    def require(self, capability: Capability, *value: object, detail: str = "") -> None:
        """Raise ``UnsupportedError`` naming the driver and ``capability`` unless the
        driver can do it (for a parameter: honour ``value``); see aiofarm/capabilities.py."""
        from .capabilities import require

        require(self._driver_info, capability, *value, detail=detail)

    @property
    def driver(self) -> Driver:
        """The open driver (for the subsystems and for tests)."""
        if self._driver is None:
            raise FarmError(
                "the Client is closed" if self._closed else "the Client is not open: use `async with Client(...)`"
            )
        return self._driver

    @property
    def backend(self) -> Any:
        """Operations only this back end has, in one documented place (Libcloud's ``ex_``
        methods): e.g. ``await farm.backend.farms()`` on Deadline Cloud
        (docs/deadline.md). ``UnsupportedError`` on a driver that has none."""
        found = self.driver.backend
        if found is None:
            raise UnsupportedError(self._driver_cls.name, "backend")
        return found

    @property
    def hub(self) -> Hub:
        self.driver  # noqa: B018 - raises when not open
        assert self._hub is not None
        return self._hub

    @property
    def functions(self) -> Functions:
        if self._functions is None:
            from .functions import Functions

            self._functions = Functions(self)
        return self._functions

    @property
    def path_mapping(self) -> PathMapping:
        """The rules applied to every submission: ``add``, ``list``, ``remove``."""
        if self._path_mapping is None:
            from .pathmap import PathMapping

            self._path_mapping = PathMapping(self._path_mapping_rules)
        return self._path_mapping

    def __repr__(self) -> str:
        state = "open" if self._driver is not None else ("closed" if self._closed else "new")
        return f"<aiofarm.Client {redact_url(self._url_text)!r} {state}>"
