"""Job output read from the files Slurm writes, on a filesystem this host shares
with the nodes (docs/slurm.md). Slurm's files carry no per-line times: the driver
does not declare ``logs.since`` / ``logs.timestamps``, so the client refuses reads
by time before they get here."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence

from ...errors import BackendError, InvalidSpec
from ...models import LogLine, LogPage, Task
from ..base import LogQuery
from .mapping import expand_path
from .records import Rec

__all__ = ["read_log"]

DRIVER = "slurm"
_MAX_READ = 1 << 20


def _read_chunk(path: str, start: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(_MAX_READ)


def _paths(rec: Rec, index: int | None) -> dict[str, str]:
    out = {}
    if rec.stdout:
        out["stdout"] = expand_path(rec.stdout, rec, index)
    # merged output: stderr is empty (26.05) or stdout's own path (24.11)
    if rec.stderr:
        err = expand_path(rec.stderr, rec, index)
        if err != out.get("stdout"):
            out["stderr"] = err
    return out


async def read_log(
    job_id: str,
    token: str | None,
    query: LogQuery,
    tasks: Sequence[tuple[Task, int | None, Rec]],
    is_array: bool,
    refreshed_tasks: Callable[[], Awaitable[dict[str, Task]]],
) -> LogPage:
    """Lines after ``token`` (byte offsets per (task, stream)) from each task's files."""
    import anyio.to_thread

    offsets: dict[str, int] = {}
    if token is not None:
        try:
            loaded = json.loads(token)
            if not isinstance(loaded, dict):
                raise ValueError
            offsets = {str(k): int(v) for k, v in loaded.items()}
        except (ValueError, TypeError):
            raise InvalidSpec("next_token", "not a log token of the Slurm driver") from None
    entries = list(tasks)
    if query.task is not None:
        entries = [e for e in entries if e[0].id == query.task]
        if not entries:
            raise InvalidSpec("task", f"job {job_id} has no task {query.task!r}")
    lines: list[LogLine] = []
    fresh: dict[str, Task] | None = None
    for task, index, rec in entries:
        for stream, path in _paths(rec, index).items():
            if stream not in query.streams or len(lines) >= query.limit:
                continue
            cursor = f"{task.id}:{stream}"
            start = offsets.get(cursor, 0)
            try:
                # a thread: the shared filesystem may be slow (NFS)
                data = await anyio.to_thread.run_sync(_read_chunk, path, start)
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise BackendError(DRIVER, exc.errno, f"cannot read {path}: {exc.strerror}") from None
            done = task.status.is_finished
            if data and not data.endswith(b"\n") and not done:
                # a trailing partial line is final only if the task has ended
                if fresh is None:
                    fresh = await refreshed_tasks()
                done = task.id in fresh and fresh[task.id].status.is_finished
            pos = start
            for raw_line in data.splitlines(keepends=True):
                if len(lines) >= query.limit:
                    break
                if not raw_line.endswith(b"\n") and not (done and len(data) < _MAX_READ):
                    break
                pos += len(raw_line)
                text = raw_line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
                lines.append(LogLine(None, stream, text, task.id if is_array else None))
            if pos != start:
                offsets[cursor] = pos
    new_token = json.dumps(offsets, separators=(",", ":"), sort_keys=True) if offsets else token
    return LogPage(tuple(lines), new_token)
