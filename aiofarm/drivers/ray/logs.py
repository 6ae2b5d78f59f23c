"""Where a Ray job's log bytes come from: ranged reads, so a reader resumes at its
byte offset instead of downloading the log again.

Ray 2.60 keeps a job's output in ``job-driver-<submission id>.log`` in the logs
directory of the node its supervisor runs on (the record's ``driver_node_id`` and
``driver_agent_http_address``). Of what the cluster serves, only the node agent's
static ``/logs/`` route (aiohttp's, token-checked like the dashboard) answers an HTTP
``Range`` request; the dashboard's log endpoints all start at the file's beginning
(``/api/jobs/{id}/logs``, its WebSocket tail) or at a count of lines from its end
(``/api/v0/logs/{file,stream}?lines=N``), and its tail waits ~1 s before the first
byte of every connection. So:

- the file is read from the agent with ``Range: bytes=<offset>-<offset + chunk>``;
- when this host cannot connect to the agent at all (a cluster behind a gateway that
  only exposes the dashboard), the dashboard's ``/api/v0/logs/file?lines=-1`` (the
  raw bytes of the same file) is read whole and cut at the offset; that agent is
  then not tried again by this driver. A connection made and then dropped is a
  ``ConnectionFailed``: the caller resumes at the same offset.

Both give the file's own bytes, so one offset fits both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

from ...errors import BackendUnavailable, ConnectionFailed
from .http import RayAPIError, RayHTTP, Unreachable

__all__ = ["LogFiles"]

#: bytes asked for per read (a read that holds no complete line asks for more)
CHUNK = 1 << 20
#: seconds to wait for a connection to an agent before reading through the dashboard
AGENT_CONNECT_TIMEOUT = 5.0
#: how the dashboard's /api/v0/logs/file says the file does not exist
_NO_FILE = (b"A file is not found at", b"Could not find a log file")
#: job locations remembered (they never change once the supervisor started)
_KEEP = 4096


class LogFiles:
    def __init__(self, http: RayHTTP, agent_url: str | None) -> None:
        self.http = http
        #: every agent is reached at this address instead of the one Ray records (a
        #: single-node cluster through a port-forward or proxy)
        self.agent_url = agent_url.rstrip("/") if agent_url else None
        self._where: dict[str, tuple[str, str]] = {}  # job id -> (agent URL, node id)
        self._unreachable: set[str] = set()  # agents this driver could not connect to

    def forget(self, job_id: str) -> None:
        """The job is deleted: its id may name another job later, on another node."""
        self._where.pop(job_id, None)

    async def read(
        self, job_id: str, offset: int, record: Callable[[], Awaitable[Mapping[str, Any]]]
    ) -> tuple[bytes, bool]:
        """The log file's bytes from ``offset`` on, at least one complete line unless
        the end came first; and whether they reach the file's end. ``record`` reads
        the job's record (only while its location is not known yet). Nothing yet (the
        supervisor has not started) is ``(b"", True)``."""
        where = self._where.get(job_id)
        if where is None:
            rec = await record()
            agent, node = rec.get("driver_agent_http_address"), rec.get("driver_node_id")
            if not (isinstance(agent, str) and agent and isinstance(node, str) and node):
                return b"", True
            where = (self.agent_url or agent.rstrip("/"), node)
            if len(self._where) >= _KEEP:
                self._where.pop(next(iter(self._where)))
            self._where[job_id] = where
        agent, node = where
        size = CHUNK
        while agent not in self._unreachable:
            try:
                data, end = await self._from_agent(agent, job_id, offset, size)
            except Unreachable:
                self._unreachable.add(agent)
                break
            except RayAPIError as exc:
                if exc.status == 404 and self.agent_url is None:
                    return b"", True  # the supervisor has not opened the file yet
                if exc.status == 404:
                    break  # agent_url= is another node's agent: the dashboard knows
                raise exc.to_backend() from None
            if end or b"\n" in data:
                return data, end
            size *= 2  # one line longer than the chunk
        data = await self._from_dashboard(job_id, node)
        return data[offset:], True

    async def _from_agent(self, agent: str, job_id: str, offset: int, size: int) -> tuple[bytes, bool]:
        url = f"{agent}/logs/{quote(f'job-driver-{job_id}.log', safe='')}"
        status, data, total = await self.http.read_bytes(
            url, first=offset, last=offset + size - 1, connect_timeout=AGENT_CONNECT_TIMEOUT
        )
        if status == 416:  # the offset is the file's end (or past it)
            return b"", True
        if status == 200:  # no range applied: the whole file
            return data[offset:], True
        # the file's end: its length says so (a short answer, if the length is missing)
        return data, offset + len(data) >= total if total is not None else len(data) < size

    async def _from_dashboard(self, job_id: str, node: str) -> bytes:
        query = urlencode({"node_id": node, "submission_id": job_id, "lines": "-1"})
        try:
            status, data, _ = await self.http.read_bytes(f"/api/v0/logs/file?{query}", accept=frozenset({200, 500}))
        except Unreachable as exc:
            raise ConnectionFailed(f"cannot reach the Ray head at {self.http.base_url}: {exc}") from None
        except RayAPIError as exc:
            if exc.status == 404:
                return b""
            raise exc.to_backend() from None
        if status == 500:
            # Ray 2.60 answers 500 when the file is not there (yet): no output, not a failure
            if any(text in data for text in _NO_FILE):
                return b""
            text = data.decode("utf-8", "replace").strip()
            raise BackendUnavailable("ray", status, text[-200:])
        return data
