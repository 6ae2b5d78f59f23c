"""The local farm's SQLite state: schema, (de)serialisation, and row → model helpers.

All access goes through one ``sqlite3.Connection`` per driver, used only on the
event loop thread in short transactions (measured: a batched flush of a few
hundred rows costs well under a millisecond, less than a thread hop).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

import attrs

from ...models import Job, JobSpec, JobStatus, PathMappingRule, Resources, StatusTransition, Task

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
"""

JOB_COLUMNS = (
    "seq, id, name, status, owner, pool, tags, description, priority, created_at, "
    "started_at, finished_at, exit_code, reason, paused, slots, depends_on, task_counts, updated"
)


def connect(path: str) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves, so one flush = one transaction
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA busy_timeout = 10000")
    db.execute("PRAGMA journal_mode = WAL")
    # NORMAL in WAL mode: durable against a process crash (our failure model), and
    # a commit does not fsync, which keeps the per-flush cost small
    db.execute("PRAGMA synchronous = NORMAL")
    db.execute("PRAGMA foreign_keys = OFF")
    return db


def init_schema(db: sqlite3.Connection) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                db.execute(statement)
        db.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)",
            (str(SCHEMA_VERSION),),
        )
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


# -- time ------------------------------------------------------------------------


def to_dt(value: float | None) -> datetime | None:
    if value is None:
        return None
    return datetime.fromtimestamp(value, timezone.utc)


def from_dt(value: datetime) -> float:
    if value.tzinfo is None:
        # naive datetimes are taken as UTC: the models promise aware UTC datetimes
        value = value.replace(tzinfo=timezone.utc)
    return value.timestamp()


# -- JobSpec <-> JSON ------------------------------------------------------------

_SPEC_DEFAULTS: dict[str, Any] = {}
for _f in attrs.fields(JobSpec):
    if _f.default is attrs.NOTHING:  # pragma: no cover - every field has a default
        continue
    if isinstance(_f.default, attrs.Factory):  # type: ignore[arg-type]
        _SPEC_DEFAULTS[_f.name] = _f.default.factory()  # type: ignore[union-attr]
    else:
        _SPEC_DEFAULTS[_f.name] = _f.default
_SPEC_DEFAULTS["env"] = {}
_SPEC_DEFAULTS["parameters"] = {}
_SPEC_DEFAULTS["options"] = {}
_SPEC_DEFAULTS["resources"] = Resources()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    if attrs.has(type(obj)):
        return attrs.asdict(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    return str(obj)


_ENCODER = json.JSONEncoder(default=_json_default, separators=(",", ":"))


def dumps(obj: Any) -> str:
    # the empty values are most of what a big batch writes: skip the encoder for them
    if not obj:
        if obj == ():
            return "[]"
        if obj == {}:
            return "{}"
    return _ENCODER.encode(obj)


def spec_to_json(spec: JobSpec) -> str:
    """Only the fields that differ from their defaults: keeps 10,000-spec batches cheap."""
    out: dict[str, Any] = {}
    for name, default in _SPEC_DEFAULTS.items():
        value = getattr(spec, name)
        if value != default:
            out[name] = value
    return dumps(out)


def spec_from_json(text: str) -> JobSpec:
    data: dict[str, Any] = json.loads(text)
    if "resources" in data:
        data["resources"] = Resources(**data["resources"])
    if "path_mapping" in data:
        data["path_mapping"] = tuple(PathMappingRule(**r) for r in data["path_mapping"])
    if isinstance(data.get("command"), list):
        data["command"] = tuple(data["command"])
    return JobSpec(**data)


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


def job_from_row(row: Sequence[Any], history: Iterable[StatusTransition], driver: str) -> Job:
    (
        seq,
        job_id,
        name,
        status,
        owner,
        pool,
        tags,
        description,
        priority,
        created_at,
        started_at,
        finished_at,
        exit_code,
        reason,
        paused,
        slots,
        depends_on,
        task_counts,
        updated,
    ) = row
    return Job(
        id=job_id,
        status=JobStatus(status),
        driver=driver,
        name=name,
        owner=owner,
        pool=pool,
        tags=tuple(json.loads(tags)),
        description=description,
        priority=priority,
        created_at=to_dt(created_at),
        started_at=to_dt(started_at),
        finished_at=to_dt(finished_at),
        exit_code=exit_code,
        reason=reason,
        history=tuple(history),
        task_counts=json.loads(task_counts),
        depends_on=tuple(json.loads(depends_on)),
        raw={"seq": seq, "paused": bool(paused), "slots": slots, "updated": updated},
    )


TASK_COLUMNS = (
    "t.idx, t.id, s.name, t.parameters, t.status, t.attempts, t.failures, t.exit_code, "
    "t.started_at, t.finished_at, t.reason, t.pid, t.pgid"
)


def tasks_from_db(db: sqlite3.Connection, job_seq: int, job_id: str, log_path: str) -> list[Task]:
    out = []
    for row in db.execute(
        f"SELECT {TASK_COLUMNS} FROM tasks t JOIN steps s ON s.job_seq = t.job_seq AND s.idx = t.step"
        " WHERE t.job_seq = ? ORDER BY t.idx",
        (job_seq,),
    ):
        (idx, tid, step, params, status, attempts, failures, code, started, finished, reason, pid, pgid) = row
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
            )
        )
    return out


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


chunks = _chunks
