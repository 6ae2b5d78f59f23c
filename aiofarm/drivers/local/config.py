"""``local://`` URLs and options: where the state lives and how the farm runs."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import attrs

from ...errors import InvalidSpec
from ..base import url_options

if TYPE_CHECKING:
    import yarl

#: validation.MAX_COUNT (drivers do not import the client layer)
MAX_COUNT = 2**31 - 1
OPTIONS = ("cancel_grace", "slots", "role", "state_dir", "embedded", "idle_timeout")
#: minutes of idleness (no active job, no client) after which the service exits
DEFAULT_IDLE_TIMEOUT = 600.0


@attrs.frozen
class FarmConfig:
    state_dir: str
    cancel_grace: float | None = None  # None: the farm's default (10 s), or what it has
    slots: int | None = None
    role: str = "auto"
    embedded: bool = False
    idle_timeout: float | None = None  # None: DEFAULT_IDLE_TIMEOUT

    @property
    def socket_path(self) -> str:
        return os.path.join(self.state_dir, "farm.sock")


def default_state_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "aiofarm")


def parse(url: yarl.URL, options: Mapping[str, Any]) -> FarmConfig:
    if url.scheme != "local":
        raise InvalidSpec("url", f"the local driver takes local:// URLs, not {url.scheme}://")
    if url.host:
        raise InvalidSpec("url", f"local:// takes an absolute path (local:///abs/path), got host {url.host!r}")
    if url.user or url.password or url.port or url.fragment:
        raise InvalidSpec("url", "local:// URLs take only a path and query options")
    merged = url_options(url, options, OPTIONS, "local://")
    path = url.path
    if path not in ("", "/") and "state_dir" in merged:
        raise InvalidSpec("options.state_dir", "the URL already names a state dir")
    if "state_dir" in merged:
        path = _str_option(merged, "state_dir")
        if not os.path.isabs(path):
            raise InvalidSpec("options.state_dir", "must be an absolute path")
    elif path in ("", "/"):
        path = default_state_dir()
    grace = _float_option(merged, "cancel_grace") if "cancel_grace" in merged else None
    idle = _float_option(merged, "idle_timeout") if "idle_timeout" in merged else None
    slots_opt = merged.get("slots")
    slots: int | None = None
    if slots_opt is not None:
        shown = repr(slots_opt)[:60]
        try:
            slots = int(slots_opt)
        except (TypeError, ValueError, OverflowError):
            raise InvalidSpec("options.slots", f"must be an integer, got {shown}") from None
        if isinstance(slots_opt, bool) or slots < 1 or (isinstance(slots_opt, float) and slots != slots_opt):
            raise InvalidSpec("options.slots", f"must be an integer >= 1, got {shown}")
        if slots > MAX_COUNT:
            raise InvalidSpec("options.slots", f"must be at most {MAX_COUNT}, got {shown}")
    role = str(merged.get("role", "auto"))
    if role not in ("auto", "owner", "reader"):
        raise InvalidSpec("options.role", f"must be auto, owner or reader, got {role!r}")
    embedded = _bool_option(merged, "embedded")
    if role != "auto" and not embedded:
        raise InvalidSpec("options.role", "only an embedded farm (embedded=true) has roles")
    _check_path(path, "options.state_dir" if "state_dir" in merged else "url")
    return FarmConfig(
        state_dir=os.path.abspath(path),
        cancel_grace=grace,
        slots=slots,
        role=role,
        embedded=embedded,
        idle_timeout=idle,
    )


def _check_path(path: str, field: str) -> None:
    """A state dir the file system can hold: no NUL, encodable, within PATH_MAX/NAME_MAX."""
    if "\x00" in path:
        raise InvalidSpec(field, "the state dir path contains a NUL byte")
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        raise InvalidSpec(field, "the state dir path is not encodable in the file system's encoding") from None
    # the socket path under it must fit sun_path (108 bytes) too, but a longer state
    # dir is still served: the service falls back to a short link (connect.py)
    if len(raw) > 4000 or any(len(part) > 255 for part in raw.split(b"/")):
        raise InvalidSpec(field, "the state dir path is longer than the file system allows")


def _bool_option(options: Mapping[str, Any], key: str) -> bool:
    value = options.get(key, False)
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise InvalidSpec(f"options.{key}", f"must be true or false, got {value!r}")


def _str_option(options: Mapping[str, Any], key: str) -> str:
    value = options[key]
    if not isinstance(value, (str, os.PathLike)):
        raise InvalidSpec(f"options.{key}", f"must be a path string, got {type(value).__name__}")
    return str(os.fspath(value))


def _float_option(options: Mapping[str, Any], key: str) -> float:
    value = options[key]
    if isinstance(value, bool):
        raise InvalidSpec(f"options.{key}", f"must be a number of seconds, got {value!r}")
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise InvalidSpec(f"options.{key}", f"must be a number of seconds, got {value!r}") from None
    if not math.isfinite(out) or out < 0:
        raise InvalidSpec(f"options.{key}", f"must be a finite number >= 0, got {value!r}")
    return out
