"""Pools and the one worker (this host) of the local farm."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence

from ...errors import InvalidSpec, PoolNotFound
from ...models import Pool, Worker
from . import store
from .model import DEFAULT_POOL, FarmPool, now
from .queries import Queries
from .writer import translate

POOL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Admin(Queries):
    # -- pools -------------------------------------------------------------------
    def _pool_model(self, pool_id: int, name: str, slots: int) -> Pool:
        return Pool(id=str(pool_id), name=name, slots=slots, driver="local", raw={"default": name == DEFAULT_POOL})

    @translate
    async def list_pools(self) -> list[Pool]:
        db = self._sync()
        return [self._pool_model(*r) for r in store.pools(db)]

    def _find_pool(self, pool_id: str) -> tuple[int, str, int]:
        row = store.find_pool(self._require_db(), pool_id)
        if row is None:
            raise PoolNotFound(pool_id, driver="local")
        return row

    @translate
    async def create_pool(self, name: str, slots: int | None) -> Pool:
        self._require_owner("create a pool")
        if not isinstance(name, str) or not POOL_NAME.fullmatch(name):
            raise InvalidSpec("name", f"{name!r}: 1-64 letters, digits and ._-, starting with a letter or digit")
        if slots is None:
            slots = os.cpu_count() or 1
        if isinstance(slots, bool) or not isinstance(slots, int) or slots < 1:
            raise InvalidSpec("slots", f"must be an integer >= 1, got {slots!r}")
        if name in self._pools:
            raise InvalidSpec("name", f"a pool {name!r} already exists")
        self._record("create a pool")
        store.insert_pool(self._require_db(), name, slots, now())
        pid_, name, slots = self._find_pool(name)
        self._pools[name] = FarmPool(pid_, name, slots)
        return self._pool_model(pid_, name, slots)

    @translate
    async def rename_pool(self, pool_id: str, new_name: str) -> Pool:
        self._require_owner("rename a pool")
        self._sync()
        pid_, name, slots = self._find_pool(pool_id)
        if not isinstance(new_name, str) or not POOL_NAME.fullmatch(new_name):
            raise InvalidSpec("new_name", f"{new_name!r}: 1-64 letters, digits and ._-")
        if name == DEFAULT_POOL:
            raise InvalidSpec("pool", "the default pool cannot be renamed")
        if new_name == name:
            return self._pool_model(pid_, name, slots)
        if new_name in self._pools:
            raise InvalidSpec("new_name", f"a pool {new_name!r} already exists")
        self._record("rename a pool")
        store.rename_pool(self._require_db(), pid_, name, new_name)
        pool = self._pools.pop(name)
        pool.name = new_name
        self._pools[new_name] = pool
        for job in self._jobs.values():
            if job.pool == name:
                job.pool = new_name
        return self._pool_model(pid_, new_name, slots)

    @translate
    async def delete_pool(self, pool_id: str) -> None:
        self._require_owner("delete a pool")
        self._sync()
        pid_, name, _ = self._find_pool(pool_id)
        if name == DEFAULT_POOL:
            raise InvalidSpec("pool", "the default pool cannot be deleted")
        active = sum(1 for j in self._jobs.values() if j.pool == name)
        if active:
            raise InvalidSpec("pool", f"pool {name!r} has {active} active job(s); cancel or move them first")
        self._record("delete a pool")
        store.delete_pool(self._require_db(), pid_)
        self._pools.pop(name, None)

    @translate
    async def capacity(self) -> dict[str, int]:
        if self.role == "owner":
            self._require_db()
            return {p.name: max(0, p.slots - p.used) for p in self._pools.values()}
        db = self._sync()
        used = store.used_slots(db)
        return {name: max(0, slots - (used.get(name) or 0)) for _, name, slots in store.pools(db)}

    # -- workers -----------------------------------------------------------------
    @translate
    async def list_workers(self) -> list[Worker]:
        db = self._sync()
        enabled, reason = self._worker_enabled, self._worker_reason
        if self.role != "owner":
            enabled, reason = store.worker_meta(db)
            busy = store.running_task_count(db)
        else:
            busy = len(self._running)
        status = "disabled" if not enabled else ("busy" if busy else "idle")
        return [
            Worker(
                id=self.hostname,
                name=self.hostname,
                enabled=enabled,
                status=status,
                pool=None,
                cpus=os.cpu_count(),
                reason=reason,
                raw={"running_tasks": busy},
            )
        ]

    @translate
    async def set_workers_enabled(
        self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None
    ) -> None:
        self._require_owner("enable or disable workers")
        for i, name in enumerate(names):
            if name != self.hostname:
                raise InvalidSpec(f"names[{i}]", f"no worker {name!r}; the local farm has one: {self.hostname!r}")
        self._record("enable or disable workers")
        store.set_worker_meta(self._require_db(), enabled, None if enabled else reason)
        self._worker_enabled = enabled
        self._worker_reason = None if enabled else reason
        if not enabled and stop_work:
            for t in list(self._running):
                self._terminate(t, "requeue")
        self._kick()


