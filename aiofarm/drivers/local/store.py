"""The local farm's SQLite state: schema, every SQL statement, (de)serialisation,
and row → model helpers.

All access goes through one ``sqlite3.Connection`` per farm, used only on the
event loop thread in short transactions (measured: a batched flush of a few
hundred rows costs well under a millisecond, less than a thread hop). Files are
created 0600 whatever the umask: SQLite gives the -wal and -shm files the mode
of the database file, so creating that one ourselves covers all three.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from ...models import Job, JobStatus, StatusTransition, Task
from ..base import ListQuery
from .codec import dumps, from_dt, job_from_row, to_dt

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pools (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    slots INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT,
    status TEXT NOT NULL,
    owner TEXT,
    pool TEXT NOT NULL,
    tags TEXT NOT NULL DEFAULT '[]',
    labels TEXT NOT NULL DEFAULT '{}',
    description TEXT,
    priority INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    exit_code INTEGER,
    reason TEXT,
    paused INTEGER NOT NULL DEFAULT 0,
    slots INTEGER NOT NULL DEFAULT 1,
    depends_on TEXT NOT NULL DEFAULT '[]',
    task_counts TEXT NOT NULL DEFAULT '{}',
    updated INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, seq);
CREATE INDEX IF NOT EXISTS jobs_updated ON jobs (updated);
CREATE TABLE IF NOT EXISTS steps (
    job_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    depends_on TEXT NOT NULL DEFAULT '[]',
    PRIMARY KEY (job_seq, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS tasks (
    job_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    id TEXT NOT NULL,
    step INTEGER NOT NULL,
    parameters TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    failures INTEGER NOT NULL DEFAULT 0,
    exit_code INTEGER,
    started_at REAL,
    finished_at REAL,
    reason TEXT,
    pid INTEGER,
    pgid INTEGER,
    pstart REAL,
    progress REAL,
    status_message TEXT,
    PRIMARY KEY (job_seq, idx)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tasks_status ON tasks (status);
CREATE TABLE IF NOT EXISTS history (
    job_seq INTEGER NOT NULL,
    time REAL NOT NULL,
    status TEXT NOT NULL,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS history_job ON history (job_seq);
CREATE TABLE IF NOT EXISTS launches (
    token TEXT PRIMARY KEY,
    job_seq INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    time REAL NOT NULL
);
"""

JOB_COLUMNS = (
    "seq, id, name, status, owner, pool, tags, description, priority, created_at, "
    "started_at, finished_at, exit_code, reason, paused, slots, depends_on, task_counts, updated, labels"
)


def create_private(path: str) -> None:
    """Create ``path`` (if missing) as a 0600 file, and make it 0600 if it is not."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def connect(path: str) -> sqlite3.Connection:
    create_private(path)
    for extra in (path + "-wal", path + "-shm"):
        # left by an older version or another umask: tighten before SQLite reuses them
        with contextlib.suppress(FileNotFoundError):
            if os.stat(extra).st_mode & 0o077:
                os.chmod(extra, 0o600)
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one flush = one transaction
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: durable against a process crash (our failure model), and
    # a commit does not fsync, which keeps the per-flush cost small
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = OFF")
    return db


@contextlib.contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction; rolled back (if SQLite has not already) on any error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
        raise


def init_schema(db: sqlite3.Connection) -> None:
    with transaction(db):
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        # a state dir from before tasks reported OpenJD progress: the two columns added
        have = {row[1] for row in db.execute("PRAGMA table_info(tasks)")}
        for column, kind in (("progress", "REAL"), ("status_message", "TEXT")):
            if column not in have:
                db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {kind}")
        # ... and from before jobs had labels
        if "labels" not in {row[1] for row in db.execute("PRAGMA table_info(jobs)")}:
            db.execute("ALTER TABLE jobs ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'")
        db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )


# -- rows -> models --------------------------------------------------------------


def history_for(db: sqlite3.Connection, seqs: Sequence[int]) -> dict[int, list[StatusTransition]]:
    out: dict[int, list[StatusTransition]] = {s: [] for s in seqs}
    for chunk in _chunks(list(seqs), 900):
        marks = ",".join("?" * len(chunk))
        for seq, t, status, reason in db.execute(
            f"SELECT job_seq, time, status, reason FROM history WHERE job_seq IN ({marks})"
            " ORDER BY job_seq, rowid",
            chunk,
        ):
            out[seq].append(StatusTransition(JobStatus(status), to_dt(t), reason))  # type: ignore[arg-type]
    return out


TASK_COLUMNS = (
    "t.idx, t.id, s.name, t.parameters, t.status, t.attempts, t.failures, t.exit_code, "
    "t.started_at, t.finished_at, t.reason, t.pid, t.pgid, t.progress, t.status_message"
)


def tasks_from_db(db: sqlite3.Connection, job_seq: int, job_id: str, log_path: str) -> list[Task]:
    out = []
    for row in db.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks t JOIN steps s ON s.job_seq = t.job_seq AND s.idx = t.step"
        " WHERE t.job_seq = ? ORDER BY t.idx",
        (job_seq,),
    ):
        (idx, tid, step, params, status, attempts, failures, code, started, finished, reason, pid, pgid,
         progress, message) = row
        out.append(
            Task(
                id=tid,
                job_id=job_id,
                status=JobStatus(status),
                step=step,
                parameters=json.loads(params),
                attempts=attempts,
                exit_code=code,
                started_at=to_dt(started),
                finished_at=to_dt(finished),
                reason=reason,
                log=log_path,
                raw={"index": idx, "failures": failures, "pid": pid, "pgid": pgid},
                progress=progress,
                status_message=message,
            )
        )
    return out


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


chunks = _chunks


def marks(n: int) -> str:
    return ",".join("?" * n)


# -- the scheduler's state: load, write --------------------------------------------

LOAD_JOB_COLUMNS = (
    "seq, id, status, owner, reason, created_at, started_at, finished_at, exit_code,"
    " paused, spec, name, tags, description, priority, pool"
)


def load_rows(
    db: sqlite3.Connection, where: str, params: Sequence[Any]
) -> tuple[list[Any], list[Any], list[Any], dict[int, list[StatusTransition]]]:
    """Jobs matching ``where`` with their steps, tasks and history, for the scheduler."""
    rows = db.execute(f"SELECT {LOAD_JOB_COLUMNS} FROM jobs WHERE {where} ORDER BY seq", params).fetchall()
    seqs = [r[0] for r in rows]
    steps: list[Any] = []
    tasks: list[Any] = []
    for chunk in _chunks(seqs, 900):
        m = marks(len(chunk))
        steps += db.execute(
            f"SELECT job_seq, idx, name, depends_on FROM steps WHERE job_seq IN ({m}) ORDER BY job_seq, idx",
            chunk,
        ).fetchall()
        tasks += db.execute(
            "SELECT job_seq, idx, id, step, parameters, status, attempts, failures, exit_code,"
            " started_at, finished_at, reason, pid, pgid, pstart"
            f" FROM tasks WHERE job_seq IN ({m}) ORDER BY job_seq, idx",
            chunk,
        ).fetchall()
    return rows, steps, tasks, history_for(db, seqs)


def counters(db: sqlite3.Connection) -> tuple[int, int]:
    """The next job seq and the next change counter."""
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'jobs'").fetchone()
    updated = db.execute("SELECT max(updated) FROM jobs").fetchone()[0] or 0
    return (row[0] if row else 0) + 1, updated + 1


def write_changes(
    db: sqlite3.Connection,
    job_rows: Sequence[Sequence[Any]],
    task_rows: Sequence[Sequence[Any]],
    history: Sequence[Sequence[Any]],
    started: Sequence[Sequence[Any]],
    *,
    probe: bool = False,
) -> None:
    """One flush: changed jobs and tasks, new history; ``started`` (job_seq, idx) are
    tasks whose process ids are now in their rows, so their launch records can go.
    ``probe``: also write a row, to learn whether writing works again."""
    with transaction(db):
        if probe:
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('probe', ?)", (repr(os.times()),))
        if job_rows:
            db.executemany(
                "UPDATE jobs SET status=?, name=?, priority=?, tags=?, pool=?, started_at=?,"
                " finished_at=?, exit_code=?, reason=?, paused=?, task_counts=?, updated=?"
                " WHERE seq=?",
                job_rows,
            )
        if task_rows:
            db.executemany(
                "UPDATE tasks SET status=?, attempts=?, failures=?, exit_code=?, started_at=?,"
                " finished_at=?, reason=?, pid=?, pgid=?, pstart=?, progress=?, status_message=?"
                " WHERE job_seq=? AND idx=?",
                task_rows,
            )
        if history:
            db.executemany("INSERT INTO history (job_seq, time, status, reason) VALUES (?, ?, ?, ?)", history)
        if started:
            db.executemany("DELETE FROM launches WHERE job_seq=? AND idx=?", started)


def record_launches(db: sqlite3.Connection, rows: Sequence[tuple[str, int, int, float]]) -> None:
    """Durably note that these tasks are about to start (token, job_seq, idx, time):
    written BEFORE their processes exist, so recovery can always find them."""
    with transaction(db):
        db.executemany("INSERT OR REPLACE INTO launches (token, job_seq, idx, time) VALUES (?, ?, ?, ?)", rows)


def launches(db: sqlite3.Connection) -> list[tuple[str, int, int]]:
    return db.execute("SELECT token, job_seq, idx FROM launches").fetchall()


def clear_launches(db: sqlite3.Connection) -> None:
    with transaction(db):
        db.execute("DELETE FROM launches")


def insert_jobs(
    db: sqlite3.Connection,
    job_rows: Sequence[Sequence[Any]],
    step_rows: Sequence[Sequence[Any]],
    task_rows: Sequence[Sequence[Any]],
    hist_rows: Sequence[Sequence[Any]],
) -> None:
    with transaction(db):
        db.executemany(
            "INSERT INTO jobs (seq, id, name, status, owner, pool, tags, description, priority,"
            " created_at, paused, slots, depends_on, task_counts, updated, spec, labels)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            job_rows,
        )
        db.executemany("INSERT INTO steps (job_seq, idx, name, depends_on) VALUES (?, ?, ?, ?)", step_rows)
        db.executemany(
            "INSERT INTO tasks (job_seq, idx, id, step, parameters, status) VALUES (?, ?, ?, ?, ?, ?)",
            task_rows,
        )
        db.executemany("INSERT INTO history (job_seq, time, status, reason) VALUES (?, ?, ?, ?)", hist_rows)


def delete_jobs(db: sqlite3.Connection, ids: Sequence[str]) -> list[int]:
    """Delete jobs by id with everything they own; their seqs (for their files)."""
    seqs: list[int] = []
    for chunk in _chunks(list(ids), 900):
        seqs += [r[0] for r in db.execute(f"SELECT seq FROM jobs WHERE id IN ({marks(len(chunk))})", chunk)]
    with transaction(db):
        for chunk in _chunks(seqs, 900):
            m = marks(len(chunk))
            for table, col in (("jobs", "seq"), ("steps", "job_seq"), ("tasks", "job_seq"), ("history", "job_seq")):
                db.execute(f"DELETE FROM {table} WHERE {col} IN ({m})", chunk)
    return seqs


def update_jobs(db: sqlite3.Connection, changes: Mapping[str, Any], ids: Sequence[str]) -> None:
    """Set columns of (finished) jobs; ``changes`` maps column -> value."""
    if not changes:
        return
    sets = ", ".join(f"{col} = ?" for col in changes)
    values = list(changes.values())
    with transaction(db):
        db.executemany(f"UPDATE jobs SET {sets} WHERE id = ?", [(*values, i) for i in ids])


def existing_ids(db: sqlite3.Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(list(ids), 900):
        found.update(r[0] for r in db.execute(f"SELECT id FROM jobs WHERE id IN ({marks(len(chunk))})", chunk))
    return found


def status_of(db: sqlite3.Connection, job_id: str) -> JobStatus | None:
    row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return JobStatus(row[0]) if row else None


def seq_of(db: sqlite3.Connection, job_id: str) -> int | None:
    row = db.execute("SELECT seq FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return int(row[0]) if row else None


def task_ids(db: sqlite3.Connection, seq: int) -> dict[int, str]:
    return dict(db.execute("SELECT idx, id FROM tasks WHERE job_seq = ?", (seq,)).fetchall())


def jobs_where(db: sqlite3.Connection, where: str, params: Sequence[Any], tail: str = "") -> list[Job]:
    rows = db.execute(f"SELECT {JOB_COLUMNS} FROM jobs WHERE {where} {tail}", params).fetchall()
    history = history_for(db, [r[0] for r in rows])
    return [job_from_row(r, history[r[0]], "local") for r in rows]


def jobs_by_id(db: sqlite3.Connection, ids: Sequence[str]) -> list[Job]:
    out: list[Job] = []
    for chunk in _chunks(list(ids), 900):
        out += jobs_where(db, f"id IN ({marks(len(chunk))})", chunk)
    return out


def list_jobs(db: sqlite3.Connection, query: ListQuery, after: int | None, limit: int) -> list[Job]:
    """One page of ``list``: what of ``query`` SQL can filter natively (the client
    re-applies the whole query), after the seq ``after``."""
    where, params = structured_where(query)
    if after is not None:
        where.append("seq < ?" if query.reverse else "seq > ?")
        params.append(after)
    order = "DESC" if query.reverse else "ASC"
    return jobs_where(db, " AND ".join(where) or "1", params, f"ORDER BY seq {order} LIMIT {int(limit)}")


def structured_where(query: ListQuery) -> tuple[list[str], list[Any]]:
    """The conditions of ``query``'s structured fields (statuses ... pool), a superset."""
    where: list[str] = []
    params: list[Any] = []
    if query.statuses is not None:
        where.append(f"status IN ({marks(len(query.statuses))})")
        params.extend(s.value for s in query.statuses)
    if query.name is not None:
        where.append("name = ?")
        params.append(query.name)
    if query.pool is not None:
        where.append("pool = ?")
        params.append(query.pool)
    if query.owners:
        where.append(f"owner IN ({marks(len(query.owners))})")
        params.extend(query.owners)
    # half a microsecond of slack: datetimes hold microseconds, we store floats
    if query.since is not None:
        where.append("created_at >= ?")
        params.append(from_dt(query.since) - 5e-7)
    if query.until is not None:
        where.append("created_at <= ?")
        params.append(from_dt(query.until) + 5e-7)
    for tag in query.tags:
        where.append("instr(tags, ?) > 0")  # a superset: the client re-checks tags exactly
        params.append(dumps(tag))
    return where, params


def count_where(db: sqlite3.Connection, where: str, params: Sequence[Any]) -> int:
    return int(db.execute(f"SELECT count(*) FROM jobs WHERE {where}", params).fetchone()[0])


# -- pools, workers ---------------------------------------------------------------


def ensure_default_pool(db: sqlite3.Connection, name: str, slots: int, force: bool, now: float) -> None:
    with transaction(db):
        db.execute("INSERT OR IGNORE INTO pools (name, slots, created_at) VALUES (?, ?, ?)", (name, slots, now))
        if force:
            db.execute("UPDATE pools SET slots = ? WHERE name = ?", (slots, name))


def pools(db: sqlite3.Connection) -> list[tuple[int, str, int]]:
    return db.execute("SELECT id, name, slots FROM pools ORDER BY id").fetchall()


def find_pool(db: sqlite3.Connection, pool_id: str) -> tuple[int, str, int] | None:
    row = db.execute("SELECT id, name, slots FROM pools WHERE CAST(id AS TEXT) = ?", (pool_id,)).fetchone()
    if row is None:
        row = db.execute("SELECT id, name, slots FROM pools WHERE name = ?", (pool_id,)).fetchone()
    return None if row is None else (row[0], row[1], row[2])


def insert_pool(db: sqlite3.Connection, name: str, slots: int, now: float) -> None:
    with transaction(db):
        db.execute("INSERT INTO pools (name, slots, created_at) VALUES (?, ?, ?)", (name, slots, now))


def rename_pool(db: sqlite3.Connection, pool_id: int, old: str, new: str) -> None:
    with transaction(db):
        db.execute("UPDATE pools SET name = ? WHERE id = ?", (new, pool_id))
        db.execute("UPDATE jobs SET pool = ? WHERE pool = ?", (new, old))


def delete_pool(db: sqlite3.Connection, pool_id: int) -> None:
    with transaction(db):
        db.execute("DELETE FROM pools WHERE id = ?", (pool_id,))


def used_slots(db: sqlite3.Connection) -> dict[str, int]:
    return dict(
        db.execute(
            "SELECT j.pool, sum(j.slots) FROM tasks t JOIN jobs j ON j.seq = t.job_seq"
            " WHERE t.status = 'running' GROUP BY j.pool"
        ).fetchall()
    )


def running_task_count(db: sqlite3.Connection) -> int:
    return int(db.execute("SELECT count(*) FROM tasks WHERE status = 'running'").fetchone()[0])


def worker_meta(db: sqlite3.Connection) -> tuple[bool, str | None]:
    meta = dict(db.execute("SELECT key, value FROM meta WHERE key LIKE 'worker.%'").fetchall())
    return meta.get("worker.enabled", "1") == "1", meta.get("worker.reason") or None


def set_worker_meta(db: sqlite3.Connection, enabled: bool, reason: str | None) -> None:
    with transaction(db):
        db.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            [("worker.enabled", "1" if enabled else "0"), ("worker.reason", reason or "")],
        )
