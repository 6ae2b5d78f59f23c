"""Which slurmrestd API version to speak, and what the server offers with it.

The server's versions come from ``GET /openapi/v3`` (every path it serves; 24.11
and later want a token for it). Where that document cannot be read (22.05 frames
it with a wrong length) the known versions are asked for, newest first, with a
path every version serves: an unknown path gets a 404, or from 26.05 a reply that
is not valid HTTP, and both only mean "not this one".
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import attrs

from ...errors import AuthError, BackendError, FarmError, UnsupportedError
from .http import SlurmAPIError, SlurmHTTP
from .records import Wire
from .wire import KNOWN_VERSIONS, for_version

__all__ = ["Api", "negotiate"]

DRIVER = "slurm"
_PATH = re.compile(r"/(slurm|slurmdb)/(v\d+\.\d+\.\d+)(/.*)?$")


@attrs.frozen
class Api:
    """The negotiated version and what the server does with it."""

    version: str
    wire: Wire
    #: accounting (slurmdbd) through ``/slurmdb/{version}``: jobs slurmctld forgot
    accounting: bool
    #: ``GET /job/{id}/requeue`` (v0.0.45): retry and pause(stop_work) without scontrol
    requeue: bool = False

    def path(self, rest: str) -> str:
        return f"/slurm/{self.version}{rest}"

    def db_path(self, rest: str) -> str:
        return f"/slurmdb/{self.version}{rest}"


def _served(paths: Iterable[str]) -> dict[str, set[str]]:
    """version -> the paths under ``/slurm/{version}`` and ``/slurmdb/{version}``."""
    out: dict[str, set[str]] = {}
    for p in paths:
        m = _PATH.match(p)
        if m:
            out.setdefault(m.group(2), set()).add(f"/{m.group(1)}{(m.group(3) or '/').rstrip('/')}")
    return out


def _order(version: str) -> tuple[int, ...]:
    return tuple(int(x) for x in version[1:].split("."))


def _refusal(offered: Iterable[str], requested: str | None) -> UnsupportedError:
    offered = sorted(set(offered), key=_order, reverse=True)
    what = f"slurmrestd API {requested}" if requested else "any slurmrestd API version this server offers"
    return UnsupportedError(
        DRIVER,
        what,
        f"the server offers {', '.join(offered) or 'none aiofarm could find'}; "
        f"aiofarm speaks {', '.join(KNOWN_VERSIONS)}",
    )


async def _spec_paths(http: SlurmHTTP) -> list[str] | None:
    try:
        _, spec = await http.call("GET", "/openapi/v3")
    except AuthError:
        raise
    except (FarmError, SlurmAPIError):
        return None
    paths = spec.get("paths")
    return list(paths) if isinstance(paths, dict) and paths else None


async def _answers(http: SlurmHTTP, version: str) -> bool:
    try:
        await http.call("GET", f"/slurm/{version}/diag")
    except SlurmAPIError as exc:
        # served, but slurmctld had something to say: still this version's answer
        return exc.status not in (400, 404)
    except BackendError:
        return False
    return True


async def negotiate(http: SlurmHTTP, requested: str | None) -> Api:
    """Pick the version: ``requested`` if the server serves it, else the newest
    both sides speak. Raises UnsupportedError listing both sides' versions."""
    if requested is not None and requested not in KNOWN_VERSIONS:
        raise UnsupportedError(
            DRIVER, f"slurmrestd API {requested}", f"aiofarm speaks {', '.join(KNOWN_VERSIONS)}"
        )
    paths = await _spec_paths(http)
    if paths is not None:
        served = _served(paths)
        offered = [v for v in served if any(p.startswith("/slurm/") for p in served[v])]
        choice = requested if requested in offered else None
        if requested is None:
            choice = next((v for v in KNOWN_VERSIONS if v in offered), None)
        if choice is None:
            raise _refusal(offered, requested)
        mine = served[choice]
        wire = for_version(choice)
        accounting = "/slurmdb/jobs" in mine and wire.accounting_record is not None
        requeue = "/slurm/job/{job_id}/requeue" in mine
        return Api(choice, wire, accounting, requeue)
    # no readable spec: ask each version in turn
    candidates = [requested] if requested is not None else list(KNOWN_VERSIONS)
    for version in candidates:
        if await _answers(http, version):
            wire = for_version(version)
            # without the spec (22.05) accounting is not known to be there
            return Api(version, wire, False)
    others: list[str] = []
    if requested is not None:
        others = [v for v in KNOWN_VERSIONS if v != requested and await _answers(http, v)]
    raise _refusal(others, requested)
