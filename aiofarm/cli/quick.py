"""Fast reads for ``ls`` and ``status`` on a ``local://`` farm whose service runs.

A full Client imports aiohttp (over 200 ms on its own), opens an event stream and says
hello: more than the whole budget of an ``aiofarm ls`` (150 ms). The read primitives
are single request/response calls on the service's unix socket, so these commands send
them with the stdlib through ``connect.request`` (the blocking client ``aiofarm farm``
already uses) and let the one listing module (aiofarm/listing.py) filter, sort and
limit as it does for every driver: the output is the same as through a Client.

When the URL is not ``local://``, the farm is embedded, no service answers (this path
never starts one), or the service speaks another protocol version, :func:`reader`
returns None and the command goes through a Client as usual (which starts the
service, or raises the clear version-mismatch error).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from ..drivers.base import Driver
from ..errors import ConnectionLost, FarmError

if TYPE_CHECKING:
    from ..drivers.base import ListPlan, ListQuery
    from ..models import Job
    from .common import Options

__all__ = ["QuickReader", "reader"]


class QuickReader(Driver):
    """The read side of the local driver as blocking requests (see the module doc)."""

    name: ClassVar[str] = "local"
    scheme: ClassVar[str] = "local"

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir

    def call(self, name: str, body: dict[str, Any]) -> Any:
        from ..drivers.local import connect

        answer = connect.request(self.state_dir, name, body)
        if answer is None:
            raise ConnectionLost(f"the farm service for {self.state_dir} went away during {name}")
        return answer

    def plan_list(self, query: ListQuery) -> ListPlan:
        from ..drivers.local import filtering

        return filtering.plan(query)  # the service driver's own plan: SQL where it can

    async def list_page(
        self, query: ListQuery, page_token: str | None, page_size: int
    ) -> tuple[list[Job], str | None]:
        from ..drivers.local import wire

        body = {"query": wire.list_query_to(query), "token": page_token, "size": page_size}
        data = self.call("list", body)
        return [wire.job_from(d) for d in data["jobs"]], data["next"]

    async def get_jobs(self, ids: Sequence[str]) -> dict[str, Job]:
        from ..drivers.local import wire

        jobs = (wire.job_from(d) for d in self.call("get", {"ids": list(ids)})["jobs"])
        return {j.id: j for j in jobs}


def reader(opts: Options) -> QuickReader | None:
    """A quick reader for the farm ``opts`` name, or None (use a Client)."""
    import yarl

    from ..drivers.local import config, connect, wire

    try:
        url = yarl.URL(opts.resolved_url())
        if url.scheme != "local":
            return None
        cfg = config.parse(url, {})
        if cfg.embedded:
            return None
        hello = connect.request(cfg.state_dir, "hello", {"protocol": wire.PROTOCOL})
    except (FarmError, ValueError, OSError):
        return None  # the Client says what is wrong, as it would anyway
    if hello is None or not hello.get("ok"):
        return None
    return QuickReader(cfg.state_dir)
