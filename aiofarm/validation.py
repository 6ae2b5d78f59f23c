"""Generic input validation, done once in the client layer for every driver.

Each check raises :class:`InvalidSpec` whose ``field`` is a path a user can find
in their own call (``specs[3].env['PATH']``) and whose ``reason`` says what is
wrong. Nothing is created until a whole batch has passed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import InvalidSpec
from .models import MAX_LABELS, JobSpec, Resources, label_key_problem, label_value_problem

__all__ = [
    "MAX_PRIORITY",
    "as_ids",
    "check_interval",
    "check_labels",
    "check_priority",
    "check_timeout",
    "dependency_order",
    "validate_spec",
]

MAX_PRIORITY = 100  # Deadline Cloud and Smedge both use 0..100
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
    return job_id


def check_priority(priority: object, field: str) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidSpec(field, f"must be an integer, got {type(priority).__name__}")
    if not 0 <= priority <= MAX_PRIORITY:
        raise InvalidSpec(field, f"must be between 0 and {MAX_PRIORITY}, got {priority}")
    return priority


def check_interval(max_interval: object) -> float:
    if isinstance(max_interval, bool) or not isinstance(max_interval, (int, float)) or not max_interval > 0:
        raise InvalidSpec("max_interval", f"must be a number > 0, got {max_interval!r}")
    return float(max_interval)


def check_timeout(timeout: object) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or math.isnan(timeout) or timeout < 0:
        raise InvalidSpec("timeout", f"must be None or a number >= 0, got {timeout!r}")
    return float(timeout)


def _check_str(value: object, field: str, *, empty: bool = False) -> None:
    if not isinstance(value, str):
        raise InvalidSpec(field, f"must be a string, got {type(value).__name__}")
    if not empty and not value:
        raise InvalidSpec(field, "cannot be empty")
    if "\x00" in value:
        raise InvalidSpec(field, "contains a NUL byte")
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            # a lone surrogate: no back end can store or pass it on
            raise InvalidSpec(field, "is not valid Unicode text (a lone surrogate)") from None


def check_text(value: object, field: str) -> str:
    """A non-empty string any back end can store: no NUL, no lone surrogate."""
    _check_str(value, field)
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
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidSpec(field, f"must be a finite number, got {value!r}")
    if value < minimum or (strict and value == minimum):
        raise InvalidSpec(field, f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}")


def _check_int(value: object, field: str, *, minimum: int, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidSpec(field, f"must be an integer, got {value!r}")
    if value < minimum:
        raise InvalidSpec(field, f"must be >= {minimum}, got {value}")


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
        _check_str(spec.name, f"{field}.name")
    for key, value in spec.env.items():
        _check_str(key, f"{field}.env")
        if "=" in key:
            raise InvalidSpec(f"{field}.env[{key!r}]", "a variable name cannot contain '='")
        _check_str(value, f"{field}.env[{key!r}]", empty=True)
    if spec.cwd is not None:
        _check_str(spec.cwd, f"{field}.cwd")
    if spec.pool is not None:
        _check_str(spec.pool, f"{field}.pool")
    for i, tag in enumerate(spec.tags):
        _check_str(tag, f"{field}.tags[{i}]")
    check_labels(spec.labels, f"{field}.labels")
    if spec.description is not None:
        _check_str(spec.description, f"{field}.description", empty=True)
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
            f"{spec.id!r}: 1-128 characters of letters, digits and ._:@-, starting with a letter or digit",
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
