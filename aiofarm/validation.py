"""Generic input validation, done once in the client layer for every driver.

Each check raises :class:`InvalidSpec` whose ``field`` is a path a user can find
in their own call (``specs[3].env['PATH']``) and whose ``reason`` says what is
wrong. Nothing is created until a whole batch has passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .errors import InvalidSpec
from .models import MAX_LABELS, JobSpec, Resources, label_key_problem, label_value_problem

__all__ = [
    "MAX_COUNT",
    "MAX_PRIORITY",
    "MAX_SECONDS",
    "as_ids",
    "check_count",
    "check_datetime",
    "check_exec_size",
    "check_interval",
    "check_labels",
    "check_priority",
    "check_seconds",
    "check_text",
    "check_timeout",
    "dependency_order",
    "validate_spec",
]

MAX_PRIORITY = 100  # Deadline Cloud and Smedge both use 0..100
# Counts (retries, slots, GPUs, lines, MB...) fit a signed 32-bit integer on every back
# end (Slurm's uint32 fields, SQLite, Deadline's Integer shapes); a larger one is a typo.
MAX_COUNT = 2**31 - 1
# Durations: about 31 years; past that a back end's clock arithmetic overflows
MAX_SECONDS = 1e9
# Text lengths every back end stores (Deadline: names 128, descriptions 2,048 — those
# are checked by its driver; these are the generic ceilings)
MAX_ID_LEN = 1024
MAX_NAME_LEN = 1024
MAX_TAG_LEN = 256
MAX_PATH_LEN = 4096
MAX_DESCRIPTION_LEN = 65536
#: largest page a listing asks a driver for (Deadline and Slurm page far below this)
MAX_PAGE_SIZE = 10_000
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")


def as_ids(ids: str | Iterable[str], field: str = "ids") -> list[str]:
    """One id or a sequence of ids → a list of ids, duplicates removed, order kept."""
    if isinstance(ids, str):
        items: Iterable[Any] = (ids,)
    elif isinstance(ids, (bytes, Mapping)) or not isinstance(ids, Iterable):
        raise InvalidSpec(field, f"must be a job id or a sequence of job ids, got {type(ids).__name__}")
    else:
        items = ids
    out: dict[str, None] = {}
    for i, job_id in enumerate(items):
        check_id(job_id, f"{field}[{i}]" if not isinstance(ids, str) else field)
        out[job_id] = None
    return list(out)


def check_id(job_id: object, field: str) -> str:
    if not isinstance(job_id, str):
        raise InvalidSpec(field, f"a job id is a string, got {type(job_id).__name__}")
    if not job_id:
        raise InvalidSpec(field, "a job id cannot be empty")
    _check_str(job_id, field, limit=MAX_ID_LEN)
    return job_id


def _shown(value: object) -> str:
    """A value for an error message: a huge one is not repeated back whole."""
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def check_priority(priority: object, field: str) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidSpec(field, f"must be an integer, got {type(priority).__name__}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise InvalidSpec(field, f"must be between 0 and {MAX_PRIORITY}, got {_shown(priority)}")
    return priority


def check_seconds(
    value: object, field: str, *, strict: bool = False, allow_inf: bool = False
) -> float:
    """A duration in seconds: finite (``inf`` only where it means "forever"), >= 0
    (> 0 if ``strict``), at most :data:`MAX_SECONDS`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSpec(field, f"must be a number of seconds, got {_shown(value)}")
    if isinstance(value, int) and value > MAX_SECONDS:  # before float(): 2**1100 overflows
        raise InvalidSpec(field, f"must be at most {MAX_SECONDS:g} seconds, got {_shown(value)}")
    seconds = float(value)
    if math.isnan(seconds):
        raise InvalidSpec(field, "must be a number of seconds, got NaN")
    if seconds < 0 or (strict and seconds == 0):
        raise InvalidSpec(field, f"must be {'>' if strict else '>='} 0, got {_shown(value)}")
    if math.isinf(seconds):
        if not allow_inf:
            raise InvalidSpec(field, "must be finite")
        return seconds
    if seconds > MAX_SECONDS:
        raise InvalidSpec(field, f"must be at most {MAX_SECONDS:g} seconds, got {_shown(value)}")
    return seconds


def check_interval(max_interval: object) -> float:
    return check_seconds(max_interval, "max_interval", strict=True)


def check_timeout(timeout: object, field: str = "timeout") -> float | None:
    """None or a number of seconds >= 0; ``inf`` is the same as None (no limit)."""
    if timeout is None:
        return None
    seconds = check_seconds(timeout, field, allow_inf=True)
    return None if math.isinf(seconds) else seconds


def check_count(
    value: object, field: str, *, minimum: int = 0, maximum: int = MAX_COUNT, allow_none: bool = False
) -> int | None:
    """An integer in ``[minimum, maximum]`` (None allowed if ``allow_none``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(field, f"must be an integer, got {_shown(value)}")
    if value < minimum:
        raise InvalidSpec(field, f"must be >= {minimum}, got {_shown(value)}")
    if value > maximum:
        raise InvalidSpec(field, f"must be at most {maximum}, got {_shown(value)}")
    return value


def check_datetime(value: object, field: str) -> datetime | None:
    """None, or a timezone-aware datetime that exists in UTC (year 1 at +05:00 does not)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidSpec(field, f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidSpec(field, "must be timezone-aware (e.g. datetime.now(timezone.utc))")
    try:
        value.astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise InvalidSpec(field, f"{value.isoformat()} is out of range in UTC") from None
    return value


def check_argv_size(
    argv: Sequence[str], limits: tuple[int, int] | None, field: str, *, shell: bool = False
) -> int:
    """The bytes ``argv`` takes in execve(2); InvalidSpec naming the argument past ``limits``."""
    if limits is None:
        return 0
    per_string, total = limits
    used = 0
    for i, arg in enumerate(argv):
        size = len(arg.encode("utf-8")) + 1
        if size > per_string:
            raise InvalidSpec(field if shell else f"{field}[{i}]", f"{size} bytes is over this back end's {per_string} bytes per argument")
        used += size + 8
    if used > total:
        raise InvalidSpec(field, f"{used} bytes of arguments is over this back end's {total} bytes (ARG_MAX)")
    return used


def check_exec_size(spec: JobSpec, limits: tuple[int, int] | None, field: str) -> None:
    """The command and environment of ``spec`` fit what the back end can exec
    (``limits`` = (largest single string, largest argv + environment), in bytes, as
    the kernel counts them: each string with its NUL and its pointer)."""
    if limits is None or spec.command is None:
        return
    per_string, total = limits
    argv = ["/bin/sh", "-c", spec.command] if isinstance(spec.command, str) else list(spec.command)
    command_bytes = check_argv_size(argv, limits, f"{field}.command", shell=isinstance(spec.command, str))
    env_bytes = 0
    for key, value in spec.env.items():
        size = len(key.encode("utf-8")) + len(value.encode("utf-8")) + 2
        if size > per_string:
            raise InvalidSpec(f"{field}.env[{key[:40]!r}]", f"{size} bytes is over this back end's {per_string} bytes per variable")
        env_bytes += size + 8
    if command_bytes + env_bytes > total:
        part = "env" if env_bytes > command_bytes else "command"
        raise InvalidSpec(
            f"{field}.{part}",
            f"command ({command_bytes} bytes) and env ({env_bytes} bytes) are over this back end's "
            f"{total} bytes for both (ARG_MAX)",
        )


def _check_str(value: object, field: str, *, empty: bool = False, limit: int | None = None) -> None:
    if not isinstance(value, str):
        raise InvalidSpec(field, f"must be a string, got {type(value).__name__}")
    if not empty and not value:
        raise InvalidSpec(field, "cannot be empty")
    if limit is not None and len(value) > limit:
        raise InvalidSpec(field, f"is {len(value)} characters long, at most {limit}")
    if "\x00" in value:
        raise InvalidSpec(field, "contains a NUL byte")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate: no back end can store or pass it on
            raise InvalidSpec(field, "is not valid Unicode text (a lone surrogate)") from None


def check_text(value: object, field: str, *, limit: int | None = MAX_NAME_LEN, empty: bool = False) -> str:
    """A string any back end can store: no NUL, no lone surrogate, at most ``limit``
    characters (non-empty unless ``empty``)."""
    _check_str(value, field, limit=limit, empty=empty)
    return value  # type: ignore[return-value]


def check_label_key(key: object, field: str) -> str:
    """A label key (``team``, ``example.com/team``), as Kubernetes spells them."""
    if not isinstance(key, str):
        raise InvalidSpec(field, f"a label key is a string, got {type(key).__name__}")
    problem = label_key_problem(key)
    if problem is not None:
        raise InvalidSpec(field, problem)
    return key


def check_labels(labels: object, field: str) -> dict[str, str]:
    """Labels: a mapping of label keys to values (values: empty, or the syntax of a
    label name)."""
    if not isinstance(labels, Mapping):
        raise InvalidSpec(field, f"must be a mapping of str to str, got {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise InvalidSpec(field, f"at most {MAX_LABELS} labels, got {len(labels)}")
    out: dict[str, str] = {}
    for key, value in labels.items():
        check_label_key(key, field)
        where = f"{field}[{key!r}]"
        if not isinstance(value, str):
            raise InvalidSpec(where, f"a label value is a string, got {type(value).__name__}")
        problem = label_value_problem(value)
        if problem is not None:
            raise InvalidSpec(where, problem)
        out[key] = value
    return out


def _check_number(value: object, field: str, *, minimum: float, strict: bool, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidSpec(field, f"must be a finite number, got {_shown(value)}")
    if (isinstance(value, int) and value > MAX_COUNT) or not math.isfinite(value) or value > MAX_COUNT:
        raise InvalidSpec(field, f"must be a finite number at most {MAX_COUNT}, got {_shown(value)}")
    if value < minimum or (strict and value == minimum):
        raise InvalidSpec(field, f"must be {'>' if strict else '>='} {minimum:g}, got {_shown(value)}")


def _check_int(value: object, field: str, *, minimum: int, allow_none: bool = False) -> None:
    check_count(value, field, minimum=minimum, allow_none=allow_none)


def validate_spec(spec: object, field: str) -> JobSpec:
    if not isinstance(spec, JobSpec):
        raise InvalidSpec(field, f"must be an aiofarm.JobSpec, got {type(spec).__name__}")
    cmd = spec.command
    if cmd is None and spec.template is None:
        raise InvalidSpec(f"{field}.command", "a job needs a command (or a template)")
    if cmd is not None and spec.template is not None:
        raise InvalidSpec(f"{field}.command", "give a command or a template, not both")
    if isinstance(cmd, str):
        if not cmd.strip():
            raise InvalidSpec(f"{field}.command", "is empty")
        _check_str(cmd, f"{field}.command")
    elif cmd is not None:
        if not cmd:
            raise InvalidSpec(f"{field}.command", "is empty")
        for i, arg in enumerate(cmd):
            _check_str(arg, f"{field}.command[{i}]", empty=i > 0)
    if spec.template is not None and not isinstance(spec.template, Mapping):
        raise InvalidSpec(f"{field}.template", "must be a mapping (use jobs.submit_template)")
    if spec.name is not None:
        _check_str(spec.name, f"{field}.name", limit=MAX_NAME_LEN)
    for key, value in spec.env.items():
        _check_str(key, f"{field}.env", limit=MAX_NAME_LEN)
        if "=" in key:
            raise InvalidSpec(f"{field}.env[{key!r}]", "a variable name cannot contain '='")
        # the value's size is the back end's to bound (check_exec_size)
        _check_str(value, f"{field}.env[{key!r}]", empty=True)
    if spec.cwd is not None:
        _check_str(spec.cwd, f"{field}.cwd", limit=MAX_PATH_LEN)
    if spec.pool is not None:
        _check_str(spec.pool, f"{field}.pool", limit=MAX_TAG_LEN)
    for i, tag in enumerate(spec.tags):
        _check_str(tag, f"{field}.tags[{i}]", limit=MAX_TAG_LEN)
    check_labels(spec.labels, f"{field}.labels")
    if spec.description is not None:
        _check_str(spec.description, f"{field}.description", empty=True, limit=MAX_DESCRIPTION_LEN)
    check_priority(spec.priority, f"{field}.priority")
    res = spec.resources
    if not isinstance(res, Resources):
        raise InvalidSpec(f"{field}.resources", f"must be aiofarm.Resources, got {type(res).__name__}")
    _check_number(res.cpu, f"{field}.resources.cpu", minimum=0, strict=True, allow_none=False)
    _check_int(res.memory_mb, f"{field}.resources.memory_mb", minimum=1, allow_none=True)
    _check_int(res.gpu, f"{field}.resources.gpu", minimum=0)
    _check_number(spec.timeout, f"{field}.timeout", minimum=0, strict=True, allow_none=True)
    _check_int(spec.retries, f"{field}.retries", minimum=0)
    _check_int(spec.max_failed_tasks, f"{field}.max_failed_tasks", minimum=0, allow_none=True)
    _check_int(spec.max_workers, f"{field}.max_workers", minimum=1, allow_none=True)
    for i, dep in enumerate(spec.depends_on):
        check_id(dep, f"{field}.depends_on[{i}]")
    if spec.id is not None and (not isinstance(spec.id, str) or not _ID.fullmatch(spec.id)):
        raise InvalidSpec(
            f"{field}.id",
            f"{_shown(spec.id)}: 1-128 characters of letters, digits and ._:@-, starting with a letter or digit",
        )
    if spec.tty and cmd is None:
        raise InvalidSpec(f"{field}.tty", "only a command job can run on a tty")
    return spec


def dependency_order(specs: Sequence[JobSpec]) -> tuple[list[int], set[str]]:
    """Indices of ``specs`` so that a spec comes after every spec of the batch it
    depends on, and the set of ids it depends on outside the batch. Rejects
    duplicate ids and cycles."""
    local: dict[str, int] = {}
    for i, spec in enumerate(specs):
        if spec.id is not None:
            if spec.id in local:
                raise InvalidSpec(f"specs[{i}].id", f"duplicate id {spec.id!r} (also specs[{local[spec.id]}])")
            local[spec.id] = i
    external: set[str] = set()
    # Kahn's algorithm, stable: ready specs are taken in input order
    indegree = [0] * len(specs)
    dependants: dict[int, list[int]] = {}
    for i, spec in enumerate(specs):
        for dep in spec.depends_on:
            j = local.get(dep)
            if j is None:
                external.add(dep)
            elif j == i:
                raise InvalidSpec(f"specs[{i}].depends_on", f"job {dep!r} cannot depend on itself")
            else:
                indegree[i] += 1
                dependants.setdefault(j, []).append(i)
    if not dependants:
        return list(range(len(specs))), external
    import heapq

    ready = [i for i, d in enumerate(indegree) if d == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for k in dependants.get(i, ()):
            indegree[k] -= 1
            if indegree[k] == 0:
                heapq.heappush(ready, k)
    if len(order) != len(specs):
        stuck = next(i for i, d in enumerate(indegree) if d > 0)
        raise InvalidSpec(f"specs[{stuck}].depends_on", "dependency cycle within the batch")
    return order, external
