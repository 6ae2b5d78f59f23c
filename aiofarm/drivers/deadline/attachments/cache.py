"""What this host already knows about job attachment files, in one SQLite file (0600 in
a 0700 directory, ``$XDG_CACHE_HOME/aiofarm/deadline/attachments.sqlite``):

- the hash of each file by (path, size, mtime): an unchanged file is not read again;
- the S3 objects seen to exist (``bucket/key``): content-addressed data never changes,
  so a file already stored is not asked about again. The uploader checks a sample of
  these against S3 on every submission and forgets the bucket's entries if one is gone
  (someone emptied the bucket), as the official client's integrity check does.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["AttachmentsCache", "default_path"]


def default_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "aiofarm" / "deadline" / "attachments.sqlite"


class AttachmentsCache:
    """Blocking calls: run them in a worker thread (``anyio.to_thread``)."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or default_path()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS hashes (path TEXT PRIMARY KEY, size INTEGER,"
                " mtime_ns INTEGER, hash TEXT)"
            )
            db.execute("CREATE TABLE IF NOT EXISTS objects (key TEXT PRIMARY KEY, seen REAL)")
            self._db = db
        return self._db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def hashes(self, files: Sequence[tuple[str, int, int]]) -> dict[str, str]:
        """Known hashes of ``(path, size, mtime_ns)`` whose size and mtime still match."""
        out: dict[str, str] = {}
        with self._lock:
            db = self._conn()
            for start in range(0, len(files), 500):
                chunk = files[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = db.execute(
                    f"SELECT path, size, mtime_ns, hash FROM hashes WHERE path IN ({marks})",
                    [f[0] for f in chunk],
                ).fetchall()
                stat = {f[0]: (f[1], f[2]) for f in chunk}
                for path, size, mtime_ns, digest in rows:
                    if stat.get(path) == (size, mtime_ns):
                        out[path] = digest
        return out

    def put_hashes(self, rows: Iterable[tuple[str, int, int, str]]) -> None:
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO hashes VALUES (?, ?, ?, ?)", list(rows))
            db.execute("COMMIT")

    def known(self, keys: Sequence[str]) -> set[str]:
        """Which of ``bucket/key`` were seen in S3."""
        found: set[str] = set()
        with self._lock:
            db = self._conn()
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                found.update(
                    r[0]
                    for r in db.execute(f"SELECT key FROM objects WHERE key IN ({marks})", chunk)
                )
        return found

    def put_known(self, keys: Iterable[str]) -> None:
        now = time.time()
        with self._lock:
            db = self._conn()
            db.execute("BEGIN")
            db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?)", [(k, now) for k in keys])
            db.execute("COMMIT")

    def forget_bucket(self, bucket: str) -> None:
        with self._lock:
            self._conn().execute("DELETE FROM objects WHERE key LIKE ?", (bucket + "/%",))
