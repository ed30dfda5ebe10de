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
import sys
import threading
import time
from array import array
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from cpv.engine.hashing import split_ids

log = logging.getLogger(__name__)

_RACY_NS = 2_000_000_000
_FLUSH_ROWS = 10_000  # queued entries written at once: a bound on memory, not on correctness
STAT_CACHE_FILE = "statcache.sqlite"
"""The cache's file name in a user's cache folder: one cache for every store, keyed by path."""
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
_FOLDER_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    path TEXT PRIMARY KEY,
    chunker TEXT NOT NULL,
    fingerprint BLOB NOT NULL,
    nodes BLOB NOT NULL,
    chunks BLOB NOT NULL,
    files INTEGER NOT NULL,
    size INTEGER NOT NULL,
    packs BLOB NOT NULL,
    token BLOB NOT NULL,
    chunk_packs BLOB NOT NULL DEFAULT X''
)
"""
_STORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS stores (
    store_id TEXT PRIMARY KEY,
    token BLOB NOT NULL,
    index_ids TEXT NOT NULL
)
"""
_SELECT_FILES = "SELECT path, size, mtime_ns, ctime_ns, ino, chunker, blake3, chunks FROM files"
_LOOKUP_BATCH = 500  # keys per SELECT ... IN (...): well under SQLite's variable limit

_LOAD_ROWS = ("SELECT path, size, mtime_ns, ctime_ns, ino, chunker, blake3, chunks"
              " FROM files WHERE path >= ? AND path < ?")
_LOAD_DIGESTS = ("SELECT path, size, mtime_ns, ctime_ns, ino, chunker, blake3, X''"
                 " FROM files WHERE path >= ? AND path < ?")
_LOAD_STAMPS = ("SELECT substr(path, ?), size, mtime_ns, ctime_ns, ino, blake3"
                " FROM files WHERE path >= ? AND path < ?")


def cache_key(folder: str, relpath: str) -> str:
    """The key of a file in a tree: ``folder`` is the tree's absolute path (``os.path.abspath``).

    Push and pull build keys the same way, so a pulled file is not hashed again by the next push.
    """
    return folder.rstrip("/") + "/" + relpath


class FileStamp(NamedTuple):
    """What must not change for a cached hash to stay valid.

    A tuple, not a dataclass: a push of 10^6 files makes one per file, and compares it
    with a cache row's first four columns as it is (a frozen dataclass cost ~3 µs each)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStamp:
        return tuple.__new__(cls, (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))


def settled(stamp: FileStamp) -> bool:
    """Whether a file's stamp is old enough to vouch for its content (not "racy").

    A file modified within the same clock tick as it was hashed could change again without its
    stamp changing; such a file is hashed again by the next push instead of being trusted.
    """
    return time.time_ns() - stamp.mtime_ns >= _RACY_NS


class CachedHash(NamedTuple):
    """A file's digest and chunk ids as the stat cache knows them (one per file looked up)."""

    blake3: str
    chunks: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class CachedFolder:
    """What a folder pushed before encoded to (see :meth:`StatCache.record_folder`)."""

    fingerprint: bytes
    nodes: tuple[bytes, ...]
    """The folder's node id first, then the parts of a split folder."""
    chunks: bytes
    """The chunk ids of the folder's own files, concatenated (32 bytes each)."""
    files: int
    size: int
    packs: bytes = b""
    """The packs (ids, 32 bytes each) holding the folder's nodes and chunks when recorded."""
    token: bytes = b""
    """The push's trust token (:meth:`StatCache.store_state`): while the store's state still
    has it, the folder's nodes and chunks are indexed there, in ``packs``, unchecked."""
    chunk_packs: bytes = b""
    """For each chunk id of ``chunks``, in order, the number of its pack in ``packs`` (u32,
    little-endian); empty when not known (a row of an older cpv)."""

    def pack_map(self) -> dict[bytes, bytes]:
        """Chunk id -> id of the pack it was recorded in (empty without ``chunk_packs``): a
        changed folder's unchanged files need no index lookup for the version's pack list."""
        if len(self.chunk_packs) != len(self.chunks) // 8:
            return {}
        packs = self.packs
        numbers = array("I")
        numbers.frombytes(self.chunk_packs)
        if sys.byteorder != "little":
            numbers.byteswap()
        if numbers and max(numbers) * 32 + 32 > len(packs):
            return {}
        chunks = self.chunks
        return {chunks[32 * i : 32 * i + 32]: packs[32 * n : 32 * n + 32]
                for i, n in enumerate(numbers)}


def encode_chunk_packs(numbers: Iterable[int]) -> bytes:
    """:attr:`CachedFolder.chunk_packs` for each chunk's pack number, in order (what
    :meth:`CachedFolder.pack_map` reads back)."""
    encoded = array("I", numbers)
    if sys.byteorder != "little":
        encoded.byteswap()
    return encoded.tobytes()


class StatCache:
    """A small sqlite file; safe to share between threads of one process.

    ``chunker_key`` names the store's chunker, whose cut points the cached chunk lists follow.
    Without one (``None``) the cache answers only :meth:`digest`: a whole file's blake3 does
    not depend on the chunker, so "is this file still what this machine last wrote?" can be
    answered before the store (and boto3) is even opened.
    """

    def __init__(self, path: Path, *, chunker_key: str | None, read_only: bool = False) -> None:
        self._path = path
        self._chunker_key = chunker_key
        self._lock = threading.Lock()
        self._pending: list[tuple[object, ...]] = []
        self._pending_folders: list[tuple[object, ...]] = []
        self._pending_stores: list[tuple[object, ...]] = []
        self._db: sqlite3.Connection | None = None
        self._loaded_range: tuple[str, str] | None = None  # [low, high) of the keys read
        self._loaded: dict[str, tuple[Any, ...]] = {}
        if read_only:
            try:
                self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True,
                                           check_same_thread=False, timeout=10)
            except sqlite3.Error as exc:
                log.debug("stat cache %s unreadable (%s)", path, exc)
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(str(path), check_same_thread=False, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            columns = {r[1] for r in db.execute("PRAGMA table_info(folders)")}
            if columns and "token" not in columns:
                # Rows of an older cpv, without packs or token: encoding those folders once
                # more costs less than trusting rows no push vouched for.
                db.execute("DROP TABLE folders")
            db.execute(_FOLDER_SCHEMA)
            if "token" in columns and "chunk_packs" not in columns:  # an older cpv's rows stay
                db.execute("ALTER TABLE folders ADD COLUMN chunk_packs BLOB NOT NULL DEFAULT X''")
            db.execute(_STORE_SCHEMA)
            db.commit()
            self._db = db
        except (OSError, sqlite3.Error) as exc:
            # A missing cache only costs re-hashing; it must never fail a push.
            log.warning("stat cache %s unusable (%s); files will be re-hashed", path, exc)

    def reader(self) -> StatCache:
        """The same cache through a read-only connection of its own: what a forked process
        uses (a connection inherited through ``fork`` must not be used, sqlite's rule); it
        sees what this one has flushed."""
        return StatCache(self._path, chunker_key=self._chunker_key, read_only=True)

    def load_folder(self, folder: str) -> None:
        """Read every entry under ``folder`` in one query, so lookups there need no SQL.

        A no-op push of 20,000 files spent most of its time in 20,000 single-row SELECTs;
        one range scan over the primary key (paths under ``folder/`` sort together) replaces
        them. ``folder`` must be absolute.
        """
        base = folder.rstrip("/")
        self.load_range(base + "/", base + "0")  # "0" is the character after "/"

    def load_range(self, low: str, high: str) -> None:
        """Read every entry whose key is from ``low`` up to, not including, ``high``, in one
        query, replacing what was read before: lookups in that range then need no SQL.

        A pull reads one batch of files' keys at a time (they are consecutive, in path
        order): a whole 10^6-file folder's rows held 0.8 GB while the pull went on.
        """
        if self._db is None:
            return
        # Without a chunker only digest() answers: the chunk lists (32 bytes per chunk, most
        # of a big file's row) are not read.
        query = _LOAD_DIGESTS if self._chunker_key is None else _LOAD_ROWS
        with self._lock:
            self._loaded, self._loaded_range = {}, None
            try:
                rows = self._db.execute(query, (low, high)).fetchall()
            except sqlite3.Error as exc:
                log.debug("stat cache load failed: %s", exc)
                return
            self._loaded = {r[0]: r[1:] for r in rows}
            self._loaded_range = (low, high)

    def stamps_under(self, folder: str) -> dict[str, tuple[int, int, int, int, str]]:
        """Every entry written under the absolute ``folder``, by path relative to it:
        ``(size, mtime_ns, ctime_ns, ino, blake3)``. One query answers a whole tree, and each
        file then costs one lookup by the name a walk already has (a no-op push of 20,000
        files asks this); an entry is valid only if all four stamp fields still match."""
        if self._db is None:
            return {}
        base = folder.rstrip("/")
        with self._lock:
            try:
                rows = self._db.execute(_LOAD_STAMPS, (len(base) + 2, base + "/", base + "0"))
                return {r[0]: r[1:] for r in rows}
            except sqlite3.Error as exc:
                log.debug("stat cache load failed: %s", exc)
                return {}

    def stamps_in(self, folder: str) -> dict[str, tuple[int, int, int, int, str]]:
        """:meth:`stamps_under` for the files directly in ``folder`` (not below): what a
        ``status`` that judges one changed folder asks, so its cost stays that folder's."""
        if self._db is None:
            return {}
        base = folder.rstrip("/")
        with self._lock:
            try:
                rows = self._db.execute(_LOAD_STAMPS + " AND instr(substr(path, ?), '/') = 0",
                                        (len(base) + 2, base + "/", base + "0", len(base) + 2))
                return {r[0]: r[1:] for r in rows}
            except sqlite3.Error as exc:
                log.debug("stat cache load failed: %s", exc)
                return {}

    def lookup(self, path: Path | str, stamp: FileStamp) -> CachedHash | None:
        row = self._row(str(path), stamp)
        if row is None or row[4] != self._chunker_key:
            return None
        blob = row[6]
        chunks = split_ids(blob)
        return CachedHash(row[5], chunks)

    def lookup_many(self, items: list[tuple[str, FileStamp]], *,
                    leaf: str | None = None) -> list[CachedHash | None]:
        """:meth:`lookup` for one folder's files at once (a few SELECTs, not one per file).

        What a push asks of each folder it has to encode again; nothing is preloaded, so the
        memory it takes is one folder's rows whatever the tree's size. ``leaf``, the key of a
        folder with no sub-folder (:func:`cache_key` of its prefix), lets one range scan of
        the key order answer (a third of the time of 1,000 probes by key): with sub-folders,
        that range would hold every file below.
        """
        if self._db is None or self._chunker_key is None or not items:
            return [None] * len(items)
        keys = [k for k, _ in items]
        rows: dict[str, tuple[Any, ...]] = {}
        with self._lock:
            try:
                if leaf is not None:
                    base = leaf.rstrip("/")
                    # Below it, only what a rule left out: filtered here, not made into rows.
                    for r in self._db.execute(_LOAD_ROWS + " AND instr(substr(path, ?), '/') = 0",
                                              (base + "/", base + "0", len(base) + 2)):
                        rows[r[0]] = r
                else:
                    for start in range(0, len(keys), _LOOKUP_BATCH):
                        batch = keys[start : start + _LOOKUP_BATCH]
                        marks = ",".join("?" * len(batch))  # only "?" marks are formatted in
                        query = f"{_SELECT_FILES} WHERE path IN ({marks})"
                        for r in self._db.execute(query, batch):
                            rows[r[0]] = r
            except sqlite3.Error as exc:
                log.debug("stat cache lookup failed: %s", exc)
                return [None] * len(items)
        out: list[CachedHash | None] = []
        chunker = self._chunker_key
        for key, stamp in items:
            # (path, size, mtime_ns, ctime_ns, ino, chunker, blake3, chunks)
            row = rows.get(key)
            if row is None or row[5] != chunker or row[1:5] != stamp:
                out.append(None)
                continue
            out.append(CachedHash(row[6], split_ids(row[7])))
        return out

    def folder(self, path: str, *, with_ids: bool = True) -> CachedFolder | None:
        """What the folder at ``path`` (a :func:`cache_key`) encoded to when last pushed.

        ``with_ids=False`` reads the fingerprint alone (the scan's question, "is this folder
        as it was?"); the node and chunk ids are read only for a folder the push reuses.
        """
        if self._db is None or self._chunker_key is None:
            return None
        cols = ("fingerprint, nodes, chunks, files, size, packs, token, chunk_packs" if with_ids
                else "fingerprint")
        with self._lock:
            try:
                row = self._db.execute(
                    f"SELECT {cols} FROM folders WHERE path = ? AND chunker = ?",  # noqa: S608
                    (path, self._chunker_key),
                ).fetchone()
            except sqlite3.Error as exc:
                log.debug("stat cache folder lookup failed: %s", exc)
                return None
        if row is None:
            return None
        if not with_ids:
            return CachedFolder(bytes(row[0]), (), b"", 0, 0)
        blob = bytes(row[1])
        nodes = split_ids(blob)
        return CachedFolder(bytes(row[0]), nodes, bytes(row[2]), int(row[3]), int(row[4]),
                            bytes(row[5]), bytes(row[6]), bytes(row[7]))

    def record_folder(self, path: str, folder: CachedFolder) -> None:
        """Queue what a folder encoded to; written by :meth:`flush`.

        The caller records only a folder whose every file was settled (:func:`settled`) and
        whose sub-folders were recorded, so equal fingerprints mean equal content, and only
        once its push has succeeded (its token then vouches for what the store holds).
        """
        if self._chunker_key is None:
            return
        with self._lock:
            self._pending_folders.append(
                (path, self._chunker_key, folder.fingerprint, b"".join(folder.nodes),
                 folder.chunks, folder.files, folder.size, folder.packs, folder.token,
                 folder.chunk_packs)
            )

    def store_state(self, store_id: str) -> tuple[bytes, frozenset[str]] | None:
        """The trust token of the last push to ``store_id`` that recorded one, and the index
        objects the store had then (ids), or None.

        Folder rows carrying that token were pushed into that store by pushes that succeeded;
        while every one of those index objects is still listed and no damage is known, no
        gc or repair has removed anything from the store since, so the rows' nodes and chunks
        are all still there, in the packs they name (``push`` decides; docs/format.md).
        """
        if self._db is None or self._chunker_key is None:
            return None
        with self._lock:
            try:
                row = self._db.execute("SELECT token, index_ids FROM stores WHERE store_id = ?",
                                       (store_id,)).fetchone()
            except sqlite3.Error as exc:
                log.debug("stat cache store lookup failed: %s", exc)
                return None
        if row is None:
            return None
        return bytes(row[0]), frozenset(str(row[1]).split(",")) - {""}

    def record_store_state(self, store_id: str, token: bytes, index_ids: frozenset[str]) -> None:
        """Queue the state :meth:`store_state` answers; written by :meth:`flush`, in the same
        transaction as the folder rows queued before it."""
        if self._chunker_key is None:
            return
        with self._lock:
            self._pending_stores.append((store_id, token, ",".join(sorted(index_ids))))

    def digest(self, path: Path | str, stamp: FileStamp) -> str | None:
        """The file's whole-content blake3 (hex) if it was hashed with exactly ``stamp``."""
        row = self._row(str(path), stamp)
        return None if row is None else str(row[5])

    def _row(self, key: str, stamp: FileStamp) -> tuple[Any, ...] | None:
        """The entry of ``key``, only if its stamp is ``stamp`` (any chunker)."""
        if self._db is None:
            return None
        with self._lock:
            loaded = self._loaded_range
            if loaded is not None and loaded[0] <= key < loaded[1]:
                row = self._loaded.get(key)
            else:
                try:
                    row = self._db.execute(
                        "SELECT size, mtime_ns, ctime_ns, ino, chunker, blake3, chunks FROM files"
                        " WHERE path = ?",
                        (key,),
                    ).fetchone()
                except sqlite3.Error as exc:
                    log.debug("stat cache lookup failed: %s", exc)
                    return None
        if row is None or (row[0], row[1], row[2], row[3]) != (
            stamp.size,
            stamp.mtime_ns,
            stamp.ctime_ns,
            stamp.ino,
        ):
            return None
        return row

    def record(
        self, path: Path | str, stamp: FileStamp, digest: str, chunks: tuple[bytes, ...]
    ) -> None:
        """Queue an entry; written by :meth:`flush`. Racy (just-modified) files are skipped."""
        if not settled(stamp) or self._chunker_key is None:
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
            full = len(self._pending) >= _FLUSH_ROWS
        if full:
            # An entry states only what a file's bytes hash to, true whether or not the push
            # that hashed it succeeds; writing in batches keeps 10^6 files' rows out of memory.
            self.flush()

    def flush(self) -> None:
        if self._db is None:
            return
        with self._lock:
            rows, self._pending = self._pending, []
            folders, self._pending_folders = self._pending_folders, []
            stores, self._pending_stores = self._pending_stores, []
            self._loaded, self._loaded_range = {}, None
            if not rows and not folders and not stores:
                return
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows
                )
                self._db.executemany(
                    "INSERT OR REPLACE INTO folders VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", folders
                )
                self._db.executemany("INSERT OR REPLACE INTO stores VALUES (?, ?, ?)", stores)
                self._db.commit()
            except sqlite3.Error as exc:
                log.warning("could not update stat cache %s: %s", self._path, exc)

    def close(self) -> None:
        self.flush()
        if self._db is not None:
            self._db.close()
            self._db = None
