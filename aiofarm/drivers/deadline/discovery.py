"""``farm.backend`` on Deadline Cloud: farms, queues, fleets, storage profiles and the
state of the caller's credentials (``deadline farm list``, ``queue list``, ``fleet
list``, ``auth status`` of the official client), in one documented place.

Operations only this back end has live here, in the manner of Libcloud's ``ex_``
methods, never on the common subsystems.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import attrs

from ...errors import AuthError, ConnectionLost, FarmError, InvalidSpec
from . import wire
from .api import DeadlineApi

__all__ = [
    "AuthStatus",
    "DeadlineBackend",
    "Farm",
    "Fleet",
    "Queue",
    "StorageProfile",
    "connect",
]


@attrs.frozen
class Farm:
    id: str
    name: str
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class Queue:
    id: str
    name: str
    farm_id: str
    status: str | None = None
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class Fleet:
    id: str
    name: str
    farm_id: str
    status: str | None = None
    worker_count: int = 0
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class StorageProfile:
    id: str
    name: str
    os_family: str
    #: name -> path (local or shared) of each file system location
    locations: Mapping[str, str] = attrs.field(factory=dict)
    raw: Mapping[str, Any] = attrs.field(factory=dict, repr=False, eq=False)


@attrs.frozen
class AuthStatus:
    """What ``aiofarm deadline auth-status`` prints; never a secret."""

    authenticated: bool
    api_available: bool
    source: str | None  # botocore's name for where the credentials came from
    profile: str | None
    region: str | None
    message: str | None = None


class DeadlineBackend:
    """``farm.backend`` of a ``deadline://`` client (or built by the CLI from an open
    :class:`DeadlineApi` without a farm)."""

    def __init__(self, api: DeadlineApi) -> None:
        self._api = api

    def _farm(self, farm_id: str | None) -> str:
        farm = farm_id or self._api.farm_id
        if not farm:
            raise InvalidSpec("farm_id", "give a farm id (deadline farms lists them)")
        if not wire.FARM_RE.match(farm):
            raise InvalidSpec("farm_id", f"{farm!r} is not a farm id (farm-<32 hex>)")
        return farm

    async def farms(self) -> list[Farm]:
        items = await self._api.pages("list_farms", "farms")
        return [Farm(f["farmId"], f.get("displayName", ""), raw=f) for f in items]

    async def queues(self, farm_id: str | None = None) -> list[Queue]:
        farm = self._farm(farm_id)
        items = await self._api.pages("list_queues", "queues", farmId=farm)
        return [
            Queue(q["queueId"], q.get("displayName", ""), farm, q.get("status"), raw=q)
            for q in items
        ]

    async def fleets(self, farm_id: str | None = None) -> list[Fleet]:
        farm = self._farm(farm_id)
        items = await self._api.pages("list_fleets", "fleets", farmId=farm)
        return [
            Fleet(
                f["fleetId"],
                f.get("displayName", ""),
                farm,
                f.get("status"),
                int(f.get("workerCount") or 0),
                raw=f,
            )
            for f in items
        ]

    async def storage_profiles(
        self, farm_id: str | None = None, queue_id: str | None = None
    ) -> list[StorageProfile]:
        """The storage profiles a queue may use (the client's queue by default), with
        their file system locations."""
        farm = self._farm(farm_id)
        queue = queue_id or self._api.queue_id
        if not queue or not wire.QUEUE_RE.match(queue):
            raise InvalidSpec("queue_id", f"{queue!r} is not a queue id (queue-<32 hex>)")
        ids = {"farmId": farm, "queueId": queue}
        items = await self._api.pages("list_storage_profiles_for_queue", "storageProfiles", **ids)
        out = []
        for item in items:
            full = await self._api.call(
                "get_storage_profile_for_queue", **ids, storageProfileId=item["storageProfileId"]
            )
            out.append(storage_profile(full))
        return out

    async def auth_status(self) -> AuthStatus:
        """Whether credentials were found, where from, and whether Deadline Cloud
        accepts them (one ListFarms of one item), as ``deadline auth status``."""
        api = self._api
        creds = await api.session.get_credentials() if api.session is not None else None
        source = getattr(creds, "method", None) if creds is not None else None
        region = api.region or (api.session.get_config_variable("region") if api.session else None)
        if creds is None:
            return AuthStatus(False, False, None, api.profile, region, "no AWS credentials found")
        try:
            await api.call("list_farms", maxResults=1)
        except AuthError as exc:
            return AuthStatus(False, True, source, api.profile, region, str(exc))
        except ConnectionLost as exc:
            return AuthStatus(True, False, source, api.profile, region, str(exc))
        except FarmError as exc:
            return AuthStatus(True, False, source, api.profile, region, str(exc))
        return AuthStatus(True, True, source, api.profile, region, None)


def storage_profile(item: Mapping[str, Any]) -> StorageProfile:
    return StorageProfile(
        item["storageProfileId"],
        item.get("displayName", ""),
        str(item.get("osFamily", "")),
        {loc["name"]: loc["path"] for loc in item.get("fileSystemLocations") or []},
        raw=item,
    )


def not_found_message(kind: str, wanted: str, visible: Sequence[tuple[str, str]]) -> str:
    """"farm X not found; visible: a (name), b (name)" for the URL's farm or queue."""
    if not visible:
        return f"{kind} {wanted} does not exist or these credentials cannot see it; they see no {kind}"
    shown = ", ".join(f"{i} ({n})" for i, n in visible[:20])
    more = f" and {len(visible) - 20} more" if len(visible) > 20 else ""
    return f"{kind} {wanted} does not exist or these credentials cannot see it; visible: {shown}{more}"


@contextlib.asynccontextmanager
async def connect(
    *,
    farm_id: str = "",
    queue_id: str = "",
    region: str | None = None,
    profile: str | None = None,
    endpoint_url: str | None = None,
) -> AsyncIterator[DeadlineBackend]:
    """A :class:`DeadlineBackend` without a client, for discovery before there is a
    farm and queue to name (``aiofarm deadline farms``)."""
    api = DeadlineApi(
        farm_id=farm_id, queue_id=queue_id, region=region, profile=profile,
        endpoint_url=endpoint_url,
    )  # fmt: skip
    try:
        await api.open()
        yield DeadlineBackend(api)
    finally:
        await api.aclose()
