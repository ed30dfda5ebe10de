"""Remember what files hashed to, so an unchanged tree is neither re-read nor re-hashed.

Keyed by absolute path; an entry is valid while size, mtime_ns, ctime_ns and inode are all
unchanged and the chunker parameters match. Like Git's index, a file modified within the same
clock tick as it was hashed could slip past the check ("racy" entries), so files whose mtime is
within a couple of seconds of the moment they were hashed are not cached.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

_RACY_NS = 2_000_000_000
_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    chunker TEXT NOT NULL,
    blake3 TEXT NOT NULL,
    chunks BLOB NOT NULL
)
"""


@dataclass(frozen=True, slots=True)
class FileStamp:
    """What must not change for a cached hash to stay valid."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@dataclass(frozen=True, slots=True)
class CachedHash:
    blake3: str
    chunks: tuple[bytes, ...]


class StatCache:
    """A small sqlite file; safe to share between threads of one process."""

    def __init__(self, path: Path, *, chunker_key: str) -> None:
        self._path = path
        self._chunker_key = chunker_key
        self._lock = threading.Lock()
        self._pending: list[tuple[object, ...]] = []
        self._db: sqlite3.Connection | None = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.commit()
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            # A missing cache only costs re-hashing; it must never fail a push.
            log.warning("stat cache %s unusable (%s); files will be re-hashed", path, exc)

    def lookup(self, path: Path, stamp: FileStamp) -> CachedHash | None:
        if self._db is None:
            return None
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT size, mtime_ns, ctime_ns, ino, chunker, blake3, chunks FROM files"
                    " WHERE path = ?",
                    (str(path),),
                ).fetchone()
            except sqlite3.Error as exc:
                log.debug("stat cache lookup failed: %s", exc)
                return None
        if row is None:
            return None
        size, mtime_ns, ctime_ns, ino, chunker, digest, blob = row
        if (size, mtime_ns, ctime_ns, ino) != (
            stamp.size,
            stamp.mtime_ns,
            stamp.ctime_ns,
            stamp.ino,
        ) or chunker != self._chunker_key:
            return None
        chunks = tuple(blob[i : i + 32] for i in range(0, len(blob), 32))
        return CachedHash(digest, chunks)

    def record(self, path: Path, stamp: FileStamp, digest: str, chunks: tuple[bytes, ...]) -> None:
        """Queue an entry; written by :meth:`flush`. Racy (just-modified) files are skipped."""
        if time.time_ns() - stamp.mtime_ns < _RACY_NS:
            return
        with self._lock:
            self._pending.append(
                (
                    str(path),
                    stamp.size,
                    stamp.mtime_ns,
                    stamp.ctime_ns,
                    stamp.ino,
                    self._chunker_key,
                    digest,
                    b"".join(chunks),
                )
            )

    def flush(self) -> None:
        if self._db is None:
            return
        with self._lock:
            rows, self._pending = self._pending, []
            if not rows:
                return
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                self._db.commit()
            except sqlite3.Error as exc:
                log.warning("could not update stat cache %s: %s", self._path, exc)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
