"""Lazy reads: random access to the files of a snapshot, fetching only the chunks read.

A pull writes a whole tree; a reader instead answers "bytes ``a..b`` of ``model/x.safetensors``"
by mapping the range to the file's chunks (their lengths come from the index), fetching only the
chunks it does not hold yet, and checking each against its blake3 id before a byte is returned
(invariant 2). Fetches reuse the pull's planning: chunks of one pack are coalesced into ranged GETs
(:func:`cpv.engine.transfer.plan_ranges`) and verified with one re-fetch on a mismatch
(:func:`cpv.engine.transfer.fetch_ranges`).

Verified chunks are kept in two places:

- in memory, a few recent chunks per reader, so the small sequential reads that parsers make
  (pandas reads a CSV 64 KiB at a time) do not cost a request or a re-hash each;
- on disk in a :class:`ChunkCache` under the cache root (``<cache>/chunks/``), keyed by chunk id
  only. A chunk id is the hash of the chunk's bytes, so the same bytes are shared by every
  version and every store that holds them, and a damaged cache file is detected on read and
  dropped. The cache is bounded: the least recently used chunks are evicted past ``max_bytes``.

Symlinks stored in the snapshot are followed inside the snapshot (a target outside it is refused
as :class:`~cpv.errors.UnsafePathError`); folders are listable but cannot be opened.
"""

from __future__ import annotations

import bisect
import io
import logging
import os
import posixpath
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cpv.engine.hashing import Buffer, chunk_id
from cpv.engine.transfer import (
    TransferLimits,
    fetch_chunks,
)
from cpv.errors import (
    IntegrityError,
    NotAFileError,
    ObjectNotFoundError,
    PathNotFoundError,
    UnsafePathError,
)
from cpv.store import GiB, MiB

if TYPE_CHECKING:
    from cpv.engine.index import ChunkIndex
    from cpv.engine.repository import Repository
    from cpv.engine.snapshot import FileEntry

log = logging.getLogger(__name__)

DEFAULT_CACHE_BYTES = 2 * GiB
"""Default bound of the on-disk chunk cache (about two thousand chunks of the default size)."""

MEMORY_CACHE_BYTES = 32 * MiB
"""Verified chunks a reader keeps in memory for repeated and sequential small reads."""

MAX_SYMLINK_HOPS = 40


@dataclass(frozen=True, slots=True)
class PathInfo:
    """One entry of a snapshot as listed: ``path`` is relative to the snapshot's root."""

    path: str
    type: Literal["file", "directory"]
    size: int
    blake3: str | None = None


class ChunkCache:
    """Verified chunks on local disk, one file per chunk id, bounded by ``max_bytes``.

    Safe to share between processes and stores: files are written under a process-unique
    temporary name and renamed into place, and every read is checked against the id (a damaged
    or truncated file is removed and reported as a miss). Failing to write the cache never fails
    a read; the cache only saves transfers.
    """

    def __init__(self, folder: Path, *, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("max_bytes must be >= 0")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._total: int | None = None

    @classmethod
    def for_repository(
        cls, repo: Repository, *, max_bytes: int = DEFAULT_CACHE_BYTES
    ) -> ChunkCache | None:
        """The cache beside the repository's other caches, or None when it has no cache dir."""
        if repo.cache_root is None:
            return None
        return cls(repo.cache_root / "chunks", max_bytes=max_bytes)

    def _path(self, cid: bytes) -> Path:
        name = cid.hex()
        return self.folder / name[:2] / name

    def get(self, cid: bytes) -> bytes | None:
        """The chunk's bytes if cached and intact, else None."""
        path = self._path(cid)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if chunk_id(data) != cid:
            log.warning("dropping damaged cached chunk %s", path)
            self._remove(path)
            return None
        try:
            os.utime(path)  # recency for eviction
        except OSError:
            pass
        return data

    def put(self, cid: bytes, data: bytes) -> None:
        """Store a chunk the caller has verified; evicts old chunks past the bound."""
        if self.max_bytes == 0 or len(data) > self.max_bytes:
            return
        path = self._path(cid)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.debug("not caching chunk %s: %s", cid.hex(), exc)
            self._remove(tmp)
            return
        if self._total is None:
            self._total = self.size()
        else:
            self._total += len(data)
        if self._total > self.max_bytes:
            self.evict(keep=path)

    def size(self) -> int:
        """Bytes the cache holds now (every process's chunks)."""
        return sum(size for _, _, size in self._entries())

    def evict(self, *, keep: Path | None = None) -> int:
        """Remove least recently used chunks until the cache is under 80 % of its bound.

        Evicting below the bound leaves room, so a stream of new chunks does not rescan the
        folder on every write. Returns the bytes removed.
        """
        entries = sorted(self._entries())
        total = sum(size for _, _, size in entries)
        target = self.max_bytes * 8 // 10
        removed = 0
        for _, path, size in entries:
            if total - removed <= target:
                break
            if path == keep:
                continue
            if self._remove(path):
                removed += size
        self._total = total - removed
        return removed

    def _entries(self) -> Iterator[tuple[float, Path, int]]:
        try:
            subdirs = list(os.scandir(self.folder))
        except OSError:
            return
        for sub in subdirs:
            if not sub.is_dir(follow_symlinks=False):
                continue
            try:
                files = list(os.scandir(sub.path))
            except OSError:
                continue
            for f in files:
                if f.name.startswith("."):
                    continue
                try:
                    st = f.stat(follow_symlinks=False)
                except OSError:
                    continue
                yield st.st_mtime, Path(f.path), st.st_size

    @staticmethod
    def _remove(path: Path) -> bool:
        try:
            os.unlink(path)
        except OSError:
            return False
        return True


@dataclass(frozen=True, slots=True)
class _Layout:
    """Where each chunk of one file starts, so a byte range maps to chunks by bisection."""

    entry: FileEntry
    starts: tuple[int, ...]


class SnapshotReader:
    """Random access to the files of one snapshot; see the module docstring.

    Reads from several threads are safe but run one at a time (a lock guards the index, the
    in-memory chunks and the layouts); one large read still fetches its ranges in parallel.

    Args:
        repo: the opened store that holds the snapshot.
        snapshot_id: the snapshot to read.
        cache: the on-disk chunk cache; by default the repository's (None when it has no cache
            dir). Pass ``None`` explicitly to disable it.
        limits: ``max_range``/``range_gap`` shape the ranged GETs, ``workers`` how many run at
            once for a large read.

    Raises:
        ObjectNotFoundError: the store has no such snapshot.
        FormatError: the snapshot is damaged.
    """

    def __init__(
        self,
        repo: Repository,
        snapshot_id: str,
        *,
        cache: ChunkCache | Literal["default"] | None = "default",
        limits: TransferLimits | None = None,
    ) -> None:
        self.repo = repo
        self.snapshot_id = snapshot_id
        self.snapshot = repo.load_snapshot(snapshot_id)
        self.cache = ChunkCache.for_repository(repo) if cache == "default" else cache
        self.limits = limits or TransferLimits()
        self._files = {f.path: f for f in self.snapshot.files}
        self._dirs: set[str] = {""}
        self._children: dict[str, set[str]] = {"": set()}
        for f in self.snapshot.files:
            parts = f.path.split("/")
            for i in range(1, len(parts) + 1):
                parent, name = "/".join(parts[: i - 1]), parts[i - 1]
                self._children.setdefault(parent, set()).add(name)
                if i < len(parts):
                    self._dirs.add("/".join(parts[:i]))
        self._layouts: dict[str, _Layout] = {}
        self._lock = threading.RLock()
        self._memory: OrderedDict[bytes, bytes] = OrderedDict()
        self._memory_bytes = 0

    # -- names -------------------------------------------------------------------------------

    def resolve(self, path: str) -> str:
        """``path`` with every stored symlink along it followed, inside the snapshot.

        Raises:
            PathNotFoundError: nothing at ``path`` (or a symlink on the way dangles).
            UnsafePathError: a symlink leads outside the snapshot, or loops.
        """
        parts = _split(path)
        hops = 0
        done: list[str] = []
        while parts:
            done.append(parts.pop(0))
            current = "/".join(done)
            entry = self._files.get(current)
            if entry is None or entry.link is None:
                continue
            hops += 1
            if hops > MAX_SYMLINK_HOPS:
                raise UnsafePathError(path, "too many levels of symbolic links")
            target = posixpath.normpath(posixpath.join(posixpath.dirname(current), entry.link))
            if target == ".":
                target = ""
            if target.startswith("../") or target == ".." or target.startswith("/"):
                raise UnsafePathError(path, f"symlink {current} leads outside the version")
            parts = _split(target) + parts
            done = []
        resolved = "/".join(done)
        if resolved not in self._files and resolved not in self._dirs:
            raise PathNotFoundError(path, where=f"snapshot {self.snapshot_id[:12]}")
        return resolved

    def info(self, path: str) -> PathInfo:
        """Type and size of ``path`` (symlinks followed); the root is ``""``."""
        resolved = self.resolve(path)
        entry = self._files.get(resolved)
        if entry is None:
            return PathInfo(_clean(path), "directory", 0)
        return PathInfo(_clean(path), "file", entry.size, entry.blake3)

    def listdir(self, path: str = "") -> list[PathInfo]:
        """The entries directly inside folder ``path``, sorted by name.

        Raises:
            PathNotFoundError: no such folder.
            NotAFileError: never; a file ``path`` lists as itself (as ``ls`` does).
        """
        resolved = self.resolve(path)
        if resolved in self._files:
            return [self.info(path)]
        prefix = resolved + "/" if resolved else ""
        shown = _clean(path)
        shown_prefix = shown + "/" if shown else ""
        names: dict[str, PathInfo] = {}
        for name in self._children.get(resolved, set()):
            full = prefix + name
            if full in self._dirs:
                names[name] = PathInfo(shown_prefix + name, "directory", 0)
                continue
            entry = self._files[full]
            if entry.link is not None:
                try:
                    target = self.info(full)
                except (PathNotFoundError, UnsafePathError):
                    continue  # a dangling or escaping link lists as nothing, like a broken ls -L
                names[name] = PathInfo(shown_prefix + name, target.type, target.size, target.blake3)
            else:
                names[name] = PathInfo(shown_prefix + name, "file", entry.size, entry.blake3)
        return [names[n] for n in sorted(names)]

    def files(self, prefix: str = "") -> list[PathInfo]:
        """Every regular file at or under ``prefix`` with its size (symlinks not followed)."""
        clean = _clean(prefix)
        if clean and clean not in self._files and clean not in self._dirs:
            raise PathNotFoundError(prefix, where=f"snapshot {self.snapshot_id[:12]}")
        under = clean + "/"
        return [
            PathInfo(f.path, "file", f.size, f.blake3)
            for f in self.snapshot.files
            if f.link is None and (not clean or f.path == clean or f.path.startswith(under))
        ]

    # -- bytes -------------------------------------------------------------------------------

    def open(self, path: str) -> SnapshotFile:
        """A read-only, seekable binary file over ``path``; no byte is fetched until read.

        Raises:
            PathNotFoundError: the snapshot holds no such file.
            NotAFileError: ``path`` is a folder.
            IntegrityError: a chunk of the file is not in the store's index.
        """
        return SnapshotFile(self, self._layout(path), name=_clean(path))

    def read_range(self, path: str, start: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``start`` (fewer at the end of the file)."""
        layout = self._layout(path)
        start = max(0, min(start, layout.entry.size))
        length = max(0, min(length, layout.entry.size - start))
        out = bytearray(length)
        self._read_into(layout, start, memoryview(out))
        return bytes(out)

    def _layout(self, path: str) -> _Layout:
        with self._lock:
            return self._layout_locked(path)

    def _layout_locked(self, path: str) -> _Layout:
        resolved = self.resolve(path)
        cached = self._layouts.get(resolved)
        if cached is not None:
            return cached
        entry = self._files.get(resolved)
        if entry is None:
            raise NotAFileError(_clean(path))
        starts: list[int] = []
        if len(entry.chunks) == 1:
            starts.append(0)
        elif entry.chunks:
            index = self.repo.index
            pos = 0
            for cid in entry.chunks:
                loc = index.get(cid)
                if loc is None:
                    raise IntegrityError(
                        f"{entry.path}: chunk {cid.hex()[:16]}… is not in the store's index",
                        object_id=cid.hex(),
                    )
                starts.append(pos)
                pos += loc.length
            if pos != entry.size:
                raise IntegrityError(
                    f"{entry.path}: its chunks add up to {pos} bytes, the snapshot says "
                    f"{entry.size}",
                    object_id=self.snapshot_id,
                )
        layout = _Layout(entry, tuple(starts))
        self._layouts[resolved] = layout
        return layout

    def _read_into(self, layout: _Layout, pos: int, out: memoryview) -> None:
        """Fill ``out`` with the file's bytes from ``pos`` (the caller keeps it in bounds)."""
        if not len(out):
            return
        with self._lock:
            self._read_into_locked(layout, pos, out)

    def _read_into_locked(self, layout: _Layout, pos: int, out: memoryview) -> None:
        starts = layout.starts
        end = pos + len(out)
        first = bisect.bisect_right(starts, pos) - 1
        last = bisect.bisect_left(starts, end) - 1
        wanted = list(range(first, last + 1))
        # Bounded memory for a huge read: fetch and copy a window of chunks at a time.
        window = self.limits.max_range * self.limits.workers
        batch: list[int] = []
        batch_bytes = 0
        for i in wanted:
            batch.append(i)
            batch_bytes += self._chunk_length(layout, i)
            if batch_bytes >= window:
                self._copy(layout, batch, pos, out)
                batch, batch_bytes = [], 0
        if batch:
            self._copy(layout, batch, pos, out)

    def _chunk_length(self, layout: _Layout, i: int) -> int:
        nxt = layout.starts[i + 1] if i + 1 < len(layout.starts) else layout.entry.size
        return nxt - layout.starts[i]

    def _copy(self, layout: _Layout, indices: list[int], pos: int, out: memoryview) -> None:
        chunks = self._chunks([layout.entry.chunks[i] for i in indices], layout.entry.path)
        end = pos + len(out)
        for i in indices:
            cid = layout.entry.chunks[i]
            data = chunks[cid]
            c_start = layout.starts[i]
            lo, hi = max(pos, c_start), min(end, c_start + len(data))
            out[lo - pos : hi - pos] = memoryview(data)[lo - c_start : hi - c_start]

    def _chunks(self, ids: list[bytes], path: str) -> dict[bytes, bytes]:
        """Verified bytes of each chunk in ``ids``: memory, then disk cache, then the store."""
        found: dict[bytes, bytes] = {}
        missing: list[bytes] = []
        for cid in dict.fromkeys(ids):
            data = self._memory.get(cid)
            if data is not None:
                self._memory.move_to_end(cid)
            elif self.cache is not None:
                data = self.cache.get(cid)
                if data is not None:
                    self._remember(cid, data)
            if data is None:
                missing.append(cid)
            else:
                found[cid] = data
        if missing:
            for cid, data in self._fetch(missing, path).items():
                found[cid] = data
                if self.cache is not None:
                    self.cache.put(cid, data)
                self._remember(cid, data)
        return found

    def _fetch(self, ids: list[bytes], path: str) -> dict[bytes, bytes]:
        index = self.repo.index
        if self.repo.partial_index:
            # One snapshot's locations (a fresh machine): on any doubt, the whole index.
            if any(index.get(cid) is None for cid in ids):
                index = self.repo.refresh_index()
            else:
                try:
                    return self._fetch_from(index, ids, path)
                except ObjectNotFoundError:
                    index = self.repo.refresh_index()
        return self._fetch_from(index, ids, path)

    def _fetch_from(self, index: ChunkIndex, ids: list[bytes], path: str) -> dict[bytes, bytes]:
        return fetch_chunks(
            self.repo.store, ids, locate=index.get, limits=self.limits, name="read",
            missing=lambda cid: IntegrityError(
                f"{path}: chunk {cid.hex()[:16]}… is missing from the store",
                object_id=cid.hex()),
            damaged=lambda w, r, actual: IntegrityError(
                f"pack {r.pack_id} holds damaged data for chunk {w.chunk_id.hex()[:16]}… "
                f"(needed by {path})",
                object_id=r.pack_id, expected=w.chunk_id.hex(), actual=actual.hex()))

    def _remember(self, cid: bytes, data: bytes) -> None:
        if cid in self._memory or len(data) > MEMORY_CACHE_BYTES:
            return
        self._memory[cid] = data
        self._memory_bytes += len(data)
        while self._memory_bytes > MEMORY_CACHE_BYTES:
            _, old = self._memory.popitem(last=False)
            self._memory_bytes -= len(old)


class SnapshotFile(io.RawIOBase):
    """A read-only, seekable view of one file of a snapshot (see :meth:`SnapshotReader.open`).

    Every read returns as many bytes as asked up to the end of the file (never a short read
    in the middle), so it can be used as is or wrapped in :class:`io.BufferedReader`.
    """

    def __init__(
        self,
        reader: SnapshotReader,
        layout: _Layout,
        *,
        name: str,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._reader = reader
        self._layout = layout
        self._pos = 0
        self._on_close = on_close
        self.name = name
        self.size = layout.entry.size
        self.blake3 = layout.entry.blake3

    def set_on_close(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once when the file is closed (e.g. to close a store it owns)."""
        self._on_close = callback

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def write(self, data: Buffer, /) -> int:
        raise io.UnsupportedOperation("a version is read-only")

    def truncate(self, size: int | None = None, /) -> int:
        raise io.UnsupportedOperation("a version is read-only")

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def readinto(self, buffer: Buffer, /) -> int:
        self._check_open()
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        self._reader._read_into(self._layout, self._pos, view[:n])
        self._pos += n
        return n

    def readall(self) -> bytes:
        self._check_open()
        out = bytearray(max(0, self.size - self._pos))
        self.readinto(out)
        return bytes(out)

    def close(self) -> None:
        if not self.closed:
            callback, self._on_close = self._on_close, None
            super().close()
            if callback is not None:
                callback()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")


def _clean(path: str) -> str:
    return "/".join(_split(path))


def _split(path: str) -> list[str]:
    """Components of a snapshot path; ``""``, ``"."`` and ``"/"`` are the root."""
    if "\x00" in path or "\\" in path:
        raise UnsafePathError(path, "contains a NUL byte or a backslash")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafePathError(path, "has a '..' component")
    return parts
