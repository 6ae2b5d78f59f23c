"""Partitions as pools, nodes as workers."""

from __future__ import annotations

from collections.abc import Sequence

from ...errors import BackendError, InvalidSpec
from ...models import Pool, Worker
from .commands import CommandFailed, SlurmCommands
from .http import SlurmAPIError, SlurmHTTP
from .negotiate import Api
from .records import NodeRec

__all__ = ["Nodes"]

DRIVER = "slurm"


def _drained(node: NodeRec) -> bool:
    return bool(node.flags & {"DRAIN", "DRAINING", "DRAINED"}) or "drain" in node.state


def _usable(node: NodeRec) -> bool:
    return not _drained(node) and node.state in ("idle", "mixed", "allocated") and not (
        node.flags & {"DOWN", "NOT_RESPONDING", "FAIL"}
    )


def _status(node: NodeRec) -> str:
    return "+".join([node.state, *sorted(f.lower() for f in node.flags)]) if node.flags else node.state


class Nodes:
    def __init__(self, http: SlurmHTTP, commands: SlurmCommands) -> None:
        self.http = http
        self.commands = commands
        self.api: Api | None = None

    async def _get(self, path: str, key: str) -> list[dict[str, object]]:
        assert self.api is not None
        try:
            _, data = await self.http.call("GET", self.api.path(path))
        except SlurmAPIError as exc:
            raise exc.to_backend() from None
        items = data.get(key)
        return [n for n in items if isinstance(n, dict)] if isinstance(items, list) else []

    async def nodes(self) -> list[NodeRec]:
        assert self.api is not None
        return [self.api.wire.node(n) for n in await self._get("/nodes", "nodes")]

    async def address(self, name: str) -> str | None:
        assert self.api is not None
        try:
            _, data = await self.http.call("GET", self.api.path(f"/node/{name}"))
        except SlurmAPIError:
            return None
        nodes = data.get("nodes")
        if isinstance(nodes, list) and nodes and isinstance(nodes[0], dict):
            return self.api.wire.node(nodes[0]).address or None
        return None

    async def pools(self) -> list[Pool]:
        assert self.api is not None
        out = []
        for raw in await self._get("/partitions", "partitions"):
            p = self.api.wire.partition(raw)
            if p.name:
                out.append(Pool(id=p.name, name=p.name, slots=p.cpus, driver=DRIVER, raw=p.raw))
        return out

    async def capacity(self) -> dict[str, int]:
        out = {p.name: 0 for p in await self.pools()}
        for node in await self.nodes():
            if not _usable(node) or node.idle_cpus is None:
                continue
            for part in node.partitions:
                if part in out:
                    out[part] += node.idle_cpus
        return out

    async def workers(self) -> list[Worker]:
        return [
            Worker(
                id=n.name,
                name=n.name,
                enabled=not _drained(n),
                status=_status(n),
                pool=n.partitions[0] if n.partitions else None,
                cpus=n.cpus,
                reason=n.reason or None,
                raw=n.raw,
            )
            for n in await self.nodes()
        ]

    async def set_enabled(self, names: Sequence[str], enabled: bool, *, stop_work: bool, reason: str | None) -> None:
        """DRAIN (or DOWN with ``stop_work``) / RESUME through ``scontrol update``
        (Slurm admins only): no slurmrestd version this driver speaks updates nodes
        the same way, so every version goes one way."""
        if not names:
            return
        known = {w.name for w in await self.workers()}
        for n in names:
            if n not in known:
                raise InvalidSpec("names", f"no Slurm node {n!r} (nodes: {', '.join(sorted(known))})")
        args = ["scontrol", "update", f"NodeName={','.join(names)}"]
        if enabled:
            args.append("State=RESUME")
        else:
            args += ["State=DOWN" if stop_work else "State=DRAIN", f"Reason={reason or 'disabled by aiofarm'}"]
        feature = "workers.enable" if enabled else "workers.disable"
        try:
            await self.commands.run(args, owner=self.commands.user, feature=feature)
        except CommandFailed as exc:
            if enabled and "Invalid node state" in exc.message:
                return  # it was not disabled
            raise BackendError(DRIVER, exc.code, f"scontrol update: {exc.message}") from None
