"""``client.pools``: where jobs run (local pools, Slurm partitions, Deadline queues)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from .errors import InvalidSpec, PoolNotFound
from .models import Capability, Pool
from .validation import MAX_TAG_LEN, check_count, check_text

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Pools"]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def _check_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        shown = repr(name) if len(repr(name)) <= 80 else f"{repr(name)[:60]}..."
        raise InvalidSpec(field, f"{shown}: 1-64 letters, digits and ._-, starting with a letter or digit")
    return name


def _check_ref(pool: object) -> None:
    if not isinstance(pool, Pool):
        check_text(pool, "pool", limit=MAX_TAG_LEN)


class Pools:
    def __init__(self, client: Client) -> None:
        self._client = client

    async def list(self) -> list[Pool]:
        self._client.require(Capability.POOLS)
        from .display import PoolList

        return PoolList(await self._client.driver.list_pools())

    async def get(self, name_or_id: str | Pool) -> Pool:
        if isinstance(name_or_id, Pool):
            name_or_id = name_or_id.id
        check_text(name_or_id, "pool", limit=MAX_TAG_LEN)
        pools = await self.list()
        for pool in pools:
            if pool.id == name_or_id:
                return pool
        for pool in pools:
            if pool.name == name_or_id:
                return pool
        raise PoolNotFound(name_or_id, driver=self._client.driver.name, farm=self._client.driver.farm_url)

    async def create(self, name: str, *, slots: int | None = None) -> Pool:
        _check_name(name)
        check_count(slots, "slots", minimum=1, allow_none=True)
        self._client.require(Capability.POOLS_MANAGE)
        return await self._client.driver.create_pool(name, slots)

    async def rename(self, pool: str | Pool, new_name: str) -> Pool:
        _check_name(new_name, "new_name")
        _check_ref(pool)
        self._client.require(Capability.POOLS_MANAGE)
        found = await self.get(pool)
        return await self._client.driver.rename_pool(found.id, new_name)

    async def delete(self, pool: str | Pool) -> None:
        _check_ref(pool)
        self._client.require(Capability.POOLS_MANAGE)
        found = await self.get(pool)
        await self._client.driver.delete_pool(found.id)

    async def capacity(self) -> dict[str, int]:
        """Free slots per pool name, now."""
        self._client.require(Capability.POOLS)
        return await self._client.driver.capacity()
