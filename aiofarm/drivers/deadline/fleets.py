"""Pools and workers on Deadline Cloud: a queue is a pool, its slots the workers of the
fleets associated with it."""

from __future__ import annotations

from typing import Any

from ...models import Pool, Worker
from . import wire
from .api import DeadlineApi

__all__ = ["capacity", "list_pools", "list_workers"]


async def _fleets_by_queue(
    api: DeadlineApi,
) -> tuple[dict[str, list[str]], dict[str, dict[str, Any]]]:
    assoc = await api.pages(
        "list_queue_fleet_associations", "queueFleetAssociations", farmId=api.farm_id
    )
    fleets = {f["fleetId"]: f for f in await api.pages("list_fleets", "fleets", farmId=api.farm_id)}
    by_queue: dict[str, list[str]] = {}
    for a in assoc:
        if a.get("status", "ACTIVE") == "ACTIVE":
            by_queue.setdefault(a["queueId"], []).append(a["fleetId"])
    return by_queue, fleets


async def list_pools(api: DeadlineApi) -> list[Pool]:
    queues = await api.pages("list_queues", "queues", farmId=api.farm_id)
    by_queue, fleets = await _fleets_by_queue(api)
    return [
        wire.pool_from_wire(
            q,
            sum(
                int(fleets[f].get("workerCount") or 0)
                for f in by_queue.get(q["queueId"], [])
                if f in fleets
            ),
        )
        for q in queues
    ]


async def capacity(api: DeadlineApi) -> dict[str, int]:
    """Idle workers of the fleets that serve each queue."""
    queues = await api.pages("list_queues", "queues", farmId=api.farm_id)
    by_queue, _ = await _fleets_by_queue(api)
    idle: dict[str, int] = {}
    for fleet_id in {f for fs in by_queue.values() for f in fs}:
        workers = await api.pages("list_workers", "workers", farmId=api.farm_id, fleetId=fleet_id)
        idle[fleet_id] = sum(1 for w in workers if w.get("status") in ("IDLE", "STARTED"))
    return {
        q["displayName"]: sum(idle.get(f, 0) for f in by_queue.get(q["queueId"], []))
        for q in queues
    }


async def list_workers(api: DeadlineApi, queue_name: str) -> list[Worker]:
    by_queue, _ = await _fleets_by_queue(api)
    out: list[Worker] = []
    for fleet_id in by_queue.get(api.queue_id, []):
        for w in await api.pages("list_workers", "workers", farmId=api.farm_id, fleetId=fleet_id):
            out.append(wire.worker_from_wire(w, queue_name))
    return out
