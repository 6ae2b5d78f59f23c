"""Job output read from the files Slurm writes, on a filesystem this host shares
with the nodes (docs/slurm.md). Slurm's files carry no per-line times: the driver
does not declare ``logs.since`` / ``logs.timestamps``, so the client refuses reads
by time before they get here.

The tasks of a session (:mod:`.sessions`) share its output files. The session runner
marks each task's stdout (``openjd: task 3: <command>`` ... ``openjd: task 3: exit
code 1``), so a read of one task keeps the lines between its marks, and a read of the
whole job tags each line with the task it came from (the environments' lines with the
session's first task). Stderr carries no marks: it is the session's, whole."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Collection, Sequence

from ...errors import BackendError, InvalidSpec
from ...models import LogLine, LogPage, Task
from ..base import LogQuery
from .mapping import expand_path, record_status
from .records import Rec

__all__ = ["read_log"]

DRIVER = "slurm"
_MAX_READ = 1 << 20


def _read_chunk(path: str, start: int) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(_MAX_READ)


#: the session runner's marks of a task's stdout: its command, and how it ended
_MARK = re.compile(rb"openjd: task (\d+): (exit code |cannot start: )?")


def _section(line: bytes, current: int) -> tuple[int, int]:
    """(the session task ``line`` belongs to, the task after it), -1 for none: the
    runner marks a task's first line and its last."""
    m = _MARK.match(line)
    if m is None:
        return current, current
    task = int(m.group(1))
    return task, (-1 if m.group(2) else task)


def _index(task_id: str) -> int:
    return int(task_id.rpartition("/")[2])


def _sibling(task_id: str, index: int) -> str:
    """The id of task ``index`` of the step ``task_id`` is in."""
    step, slash, _ = task_id.rpartition("/")
    return f"{step}{slash}{index}"


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
    session_tasks: Collection[str] = (),
) -> LogPage:
    """Lines after ``token`` (byte offsets per (task, stream)) from each task's files.
    ``session_tasks``: the ids of the tasks that ran in sessions (see the module)."""
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
            # a session task's place in its session's stdout, carried in the token
            shared = task.id in session_tasks
            marked = shared and stream == "stdout"
            current = offsets.get(cursor + "#task", -1)
            wanted = _index(task.id) if marked and query.task is not None else None
            start = offsets.get(cursor, 0)
            while True:
                try:
                    # a thread: the shared filesystem may be slow (NFS)
                    data = await anyio.to_thread.run_sync(_read_chunk, path, start)
                except FileNotFoundError:
                    break
                except OSError as exc:
                    raise BackendError(DRIVER, exc.errno, f"cannot read {path}: {exc.strerror}") from None
                # a session's files end when the session does, not when one of its tasks does
                done = (record_status(rec)[0] if shared else task.status).is_finished
                if data and not data.endswith(b"\n") and not done and not shared:
                    # a trailing partial line is final only if the task has ended
                    if fresh is None:
                        fresh = await refreshed_tasks()
                    done = task.id in fresh and fresh[task.id].status.is_finished
                pos = start
                before = len(lines)
                for raw_line in data.splitlines(keepends=True):
                    if len(lines) >= query.limit:
                        break
                    if not raw_line.endswith(b"\n") and not (done and len(data) < _MAX_READ):
                        break
                    pos += len(raw_line)
                    tag = task.id if is_array else None
                    if marked:
                        owner, current = _section(raw_line, current)
                        if wanted is not None and owner != wanted:
                            continue  # another task's line, or the environments'
                        if owner >= 0:
                            tag = _sibling(task.id, owner)
                    text = raw_line.rstrip(b"\n").rstrip(b"\r").decode("utf-8", "replace")
                    lines.append(LogLine(None, stream, text, tag))
                if pos != start:
                    offsets[cursor] = pos
                    if marked:
                        offsets[cursor + "#task"] = current
                # a whole chunk of other tasks' lines: read on rather than answer nothing
                if wanted is None or len(lines) > before or len(data) < _MAX_READ or pos == start:
                    break
                start = pos
    new_token = json.dumps(offsets, separators=(",", ":"), sort_keys=True) if offsets else token
    return LogPage(tuple(lines), new_token)
