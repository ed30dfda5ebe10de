"""Push: a file tree into a store, as new chunks in packs, an index object and a snapshot.

Order of writes (invariant 1): packs (all confirmed) → index object → snapshot. The caller
records the snapshot id (e.g. in a Git manifest) only after :func:`push` returns. A push killed at
any point leaves at most unreferenced packs; the next push indexes those from their footers
(:meth:`Repository.recover_orphan_packs`) and so uploads only what is still missing.

Each file is read once: a hash worker cuts it into chunks (FastCDC), hashes each chunk and the
whole file (blake3), and hands chunks the store does not hold yet to the :class:`PackUploader`,
which uploads parts while hashing goes on. Unchanged files (same size, mtime, ctime, inode as when
last hashed) are not read at all when the stat cache knows them and the store holds their chunks.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.engine.chunking import iter_file_chunks, new_read_buffer, read_small
from cpv.engine.hashing import Hasher, chunk_id
from cpv.engine.locks import PushLease, wait_while_gc_runs
from cpv.engine.paths import check_relpath, check_symlink_target
from cpv.engine.snapshot import FileEntry, Snapshot
from cpv.engine.statcache import FileStamp, cache_key
from cpv.engine.transfer import PackUploader, TaskPool, TransferLimits
from cpv.errors import (
    IntegrityError,
    LocalIOError,
    SourceChangedError,
    TransferError,
    UnsafePathError,
)
from cpv.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from cpv.engine.chunking import ChunkerParams
    from cpv.engine.repository import Repository

log = logging.getLogger(__name__)

Exclude = Callable[[str], bool]


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did. Byte counts are exact; ``uploaded_bytes`` is what went over the wire."""

    snapshot_id: str
    snapshot: Snapshot
    files: int
    total_bytes: int
    hashed_bytes: int
    new_bytes: int
    uploaded_bytes: int
    chunks_new: int
    chunks_reused: int
    packs_written: int
    requests: int
    seconds: float
    dry_run: bool

    @property
    def dedup_ratio(self) -> float:
        """Share of the tree's bytes that did not need uploading (1.0 = nothing new)."""
        return 1.0 - (self.new_bytes / self.total_bytes) if self.total_bytes else 1.0


@dataclass(slots=True)
class _Source:
    relpath: str
    path: str  # a str, not a Path: building 20,000 Path objects cost a no-op push 0.3 s
    st: os.stat_result


def scan_tree(root: Path, *, exclude: Exclude | None = None) -> list[_Source]:
    """Regular files and symlinks under ``root`` (or ``root`` itself if it is a file), sorted.

    Symlinks are recorded as links, never followed, and must point inside the tree.
    """
    try:
        st = os.lstat(root)
    except FileNotFoundError as exc:
        raise LocalIOError(f"nothing to push: {root} does not exist", path=str(root)) from exc
    except OSError as exc:
        raise LocalIOError(f"cannot read {root}: {exc.strerror}", path=str(root)) from exc
    if stat.S_ISREG(st.st_mode):
        return [_Source(root.name, str(root), st)]
    if not stat.S_ISDIR(st.st_mode):
        raise LocalIOError(f"cannot push {root}: not a regular file or folder", path=str(root))
    found: list[_Source] = []
    _walk(root, "", exclude, found)
    found.sort(key=lambda s: s.relpath)
    return found


def _walk(folder: Path, prefix: str, exclude: Exclude | None, out: list[_Source]) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise LocalIOError(
            f"cannot list {folder}: {exc.strerror}",
            path=str(folder),
            hint="check the folder's permissions",
        ) from exc
    for entry in entries:
        rel = prefix + entry.name
        if exclude is not None and exclude(rel):
            continue
        try:
            check_relpath(rel)
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise LocalIOError(
                f"cannot stat {entry.path}: {exc.strerror}", path=entry.path
            ) from exc
        if stat.S_ISDIR(st.st_mode):
            _walk(Path(entry.path), rel + "/", exclude, out)
        elif stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
            out.append(_Source(rel, entry.path, st))
        else:
            log.warning("skipping %s: not a regular file, folder or symlink", entry.path)


class _PushState:
    """Shared by the hash workers: which chunks are known, counters, the uploader."""

    def __init__(
        self, repo: Repository, uploader: PackUploader, pool: TaskPool, progress: Progress
    ) -> None:
        self.index = repo.index
        self.uploader = uploader
        self.pool = pool
        self.progress = progress
        self.lock = threading.Lock()
        self.pending: set[bytes] = set()
        self.chunks_reused = 0
        self.reused_bytes = 0
        self.hashed_bytes = 0
        self.local = threading.local()

    def is_new(self, cid: bytes) -> bool:
        """True exactly once per chunk id the store does not hold (claims it for upload)."""
        if cid in self.index:
            return False
        with self.lock:
            if cid in self.pending:
                return False
            self.pending.add(cid)
            return True


def push(
    repo: Repository,
    root: Path,
    *,
    exclude: Exclude | None = None,
    progress: Progress = NULL_PROGRESS,
    limits: TransferLimits | None = None,
    dry_run: bool = False,
    rehash: bool = False,
    meta: dict[str, str] | None = None,
) -> PushResult:
    """Push the tree at ``root`` (a folder or a single file) and return its snapshot.

    Args:
        repo: the opened store.
        root: folder or file to push; paths in the snapshot are relative to it (a single file
            is stored under its own name).
        exclude: called with each relative path; True leaves it (and a folder's contents) out.
        progress: receives "hash" and "upload" byte counts.
        limits: concurrency and memory knobs.
        dry_run: hash and plan everything, upload nothing; the result says what would be sent.
        rehash: ignore the stat cache and read every file again.
        meta: small string metadata stored in the snapshot.

    Raises:
        LocalIOError: a file cannot be read. SourceChangedError: a file changed while read.
        UnsafePathError: a symlink points outside the tree. StoreError/TransferError: the store
        failed; nothing referencing the failed uploads was written.
    """
    limits = limits or TransferLimits()
    started = time.monotonic()
    requests_before = repo.store.request_count
    bytes_before = repo.store.bytes_up
    root = Path(root)
    sources = scan_tree(root, exclude=exclude)
    if dry_run:
        return _push(repo, root, sources, exclude=exclude, progress=progress, limits=limits,
                     dry_run=True, rehash=rehash, meta=meta, started=started,
                     requests_before=requests_before, bytes_before=bytes_before, lease=None)
    # A shared lease tells a concurrent gc this push may rely on what the index names now
    # (invariant 6); the index is re-read *after* the lease exists so that a gc which did not
    # see the lease has already finished rewriting the index (docs/gc.md).
    with PushLease(repo.store) as lease:
        repo.refresh_index()
        # A push that died before: index its finished packs, abort its abandoned uploads.
        repo.recover_orphan_packs()
        repo.abort_stale_uploads()
        return _push(repo, root, sources, exclude=exclude, progress=progress, limits=limits,
                     dry_run=False, rehash=rehash, meta=meta, started=started,
                     requests_before=requests_before, bytes_before=bytes_before, lease=lease)


def _push(
    repo: Repository,
    root: Path,
    sources: list[_Source],
    *,
    exclude: Exclude | None,
    progress: Progress,
    limits: TransferLimits,
    dry_run: bool,
    rehash: bool,
    meta: dict[str, str] | None,
    started: float,
    requests_before: int,
    bytes_before: int,
    lease: PushLease | None,
) -> PushResult:
    index = repo.index
    index_ids_at_start = set(index.index_ids)
    cache = None if rehash else repo.stat_cache
    params = repo.config.chunker

    entries: dict[str, FileEntry] = {}
    to_read: list[_Source] = []
    total = 0
    # Stat-cache keys are built from the tree's absolute path, without a syscall per file; a
    # single-file root is keyed under its folder (its relpath is its name).
    tree_key = os.path.abspath(root)
    if not root.is_dir():
        tree_key = os.path.dirname(tree_key)
    elif cache is not None:
        cache.load_folder(tree_key)
    for src in sources:
        total += src.st.st_size if not stat.S_ISLNK(src.st.st_mode) else 0
        if stat.S_ISLNK(src.st.st_mode):
            entries[src.relpath] = _link_entry(src)
            continue
        key = cache_key(tree_key, src.relpath)
        hit = cache.lookup(key, FileStamp.of(src.st)) if cache else None
        if hit is not None and all(c in index for c in hit.chunks):
            entries[src.relpath] = FileEntry(
                src.relpath, src.st.st_size, stat.S_IMODE(src.st.st_mode), hit.blake3, hit.chunks
            )
        else:
            to_read.append(src)

    progress.begin("hash", total=sum(s.st.st_size for s in to_read), unit="B")
    progress.begin("upload", total=None, unit="B")
    # One pool for the whole push: the hash workers here, upload and completion lanes in the
    # uploader. An error or Ctrl-C cancels all of them at once.
    with TaskPool(limits.hash_workers, name="hash", serial=limits.serial) as pool, PackUploader(
        repo.store,
        pool=pool,
        pack_size=repo.config.pack_size,
        limits=limits,
        progress=progress,
        dry_run=dry_run,
    ) as uploader:
        state = _PushState(repo, uploader, pool, progress)
        # Biggest first, so one huge file does not start last and run alone at the end.
        to_read.sort(key=lambda s: -s.st.st_size)
        futures = [pool.submit(_ingest, state, src, params) for src in to_read]
        pool.join()
        for src, f in zip(to_read, futures, strict=True):
            entry, stamp = f.result()
            entries[entry.path] = entry
            if cache is not None and not dry_run:
                key = cache_key(tree_key, src.relpath)
                cache.record(key, stamp, entry.blake3, entry.chunks)
        records = uploader.finish()
    progress.end("hash")
    progress.end("upload")

    snapshot = Snapshot(files=tuple(entries[k] for k in sorted(entries)), meta=dict(meta or {}))
    if dry_run:
        snapshot_id, _ = snapshot.encode()
    else:
        # Invariant 1: packs are all confirmed by finish(); now the index, then the snapshot.
        repo.add_packs(records)
        assert lease is not None
        _keep_reused_chunks_indexed(repo, snapshot, index_ids_at_start)
        lease.check_alive()
        snapshot_id, _ = repo.save_snapshot(snapshot)
        # A gc that listed snapshots before ours may rewrite the index after the check above;
        # once no gc runs, one more check sees any such rewrite (docs/gc.md, "push").
        wait_while_gc_runs(repo.store)
        _keep_reused_chunks_indexed(repo, snapshot, index_ids_at_start)
        if cache is not None:
            cache.flush()
    return PushResult(
        snapshot_id=snapshot_id,
        snapshot=snapshot,
        files=len(snapshot.files),
        total_bytes=total,
        hashed_bytes=state.hashed_bytes,
        new_bytes=uploader.bytes_added,
        uploaded_bytes=repo.store.bytes_up - bytes_before,
        chunks_new=uploader.chunks_added,
        chunks_reused=state.chunks_reused,
        packs_written=len(records),
        requests=repo.store.request_count - requests_before,
        seconds=time.monotonic() - started,
        dry_run=dry_run,
    )


def _keep_reused_chunks_indexed(repo: Repository, snapshot: Snapshot, seen: set[str]) -> None:
    """If a gc rewrote the index during this push, make sure every chunk reused is still indexed.

    The push may have deduplicated against a pack that the gc then condemned (it was dead when
    the gc looked). Re-indexing that pack un-condemns it; only then may the snapshot name it.
    """
    if seen <= {key.split("/", 1)[1] for key in repo.index_keys()}:
        return
    from cpv.engine.gc import rescue_chunks

    index = repo.refresh_index()
    missing = {c for f in snapshot.files for c in f.chunks if c not in index}
    if missing:
        rescue_chunks(repo, missing)
        index = repo.index
        still = [c for c in missing if c not in index]
        if still:
            raise TransferError(
                f"{len(still)} chunk(s) this push reused were removed by a concurrent gc; "
                "nothing was published",
                failures=[(c.hex(), IntegrityError("removed by gc")) for c in still[:10]],
            )


def _link_entry(src: _Source) -> FileEntry:
    try:
        target = os.readlink(src.path)
    except OSError as exc:
        raise LocalIOError(
            f"cannot read symlink {src.path}: {exc.strerror}", path=src.path
        ) from exc
    try:
        check_symlink_target(src.relpath, target)
    except UnsafePathError as exc:
        raise UnsafePathError(
            src.relpath, f"symlink to {target!r} points outside the pushed tree"
        ) from exc
    return FileEntry(src.relpath, 0, 0o777, Hasher(target.encode()).hexdigest(), (), link=target)


def _ingest(state: _PushState, src: _Source, params: ChunkerParams) -> tuple[FileEntry, FileStamp]:
    """Read, chunk and hash one file; new chunks go to the uploader."""
    buf = getattr(state.local, "buf", None)
    if buf is None:
        buf = state.local.buf = new_read_buffer(params)
    try:
        fd = os.open(src.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise LocalIOError(
            f"cannot read {src.path}: {exc.strerror}",
            path=src.path,
            hint="check the file's permissions",
        ) from exc
    try:
        before = os.fstat(fd)
        single = before.st_size <= params.min_size
        hasher = None if single else Hasher()
        chunks: list[bytes] = []
        size = 0
        if single:
            try:
                n = read_small(fd, buf, before.st_size)
            except OSError as exc:
                raise LocalIOError(
                    f"cannot read {src.path}: {exc.strerror}", path=src.path
                ) from exc
            pieces: Iterable[tuple[int, memoryview]] = [(0, buf[:n])] if n else []
        else:
            pieces = iter_file_chunks(fd, params, buffer=buf)
        for _offset, data in pieces:
            state.pool.check()  # Ctrl-C or a failure elsewhere stops a multi-GB file here
            cid = chunk_id(data)
            chunks.append(cid)
            if hasher is not None:
                hasher.update(data)
            n = len(data)
            size += n
            if state.is_new(cid):
                state.uploader.add(cid, data)
            else:
                with state.lock:
                    state.chunks_reused += 1
                    state.reused_bytes += n
            state.progress.advance("hash", n)
        after = os.fstat(fd)
    finally:
        os.close(fd)
    # A file read in one chunk was read in one syscall between two identical fstats: what was
    # read is what the file held then, so the path check (a stat per file, ~5 % of a 20,000-file
    # push) is kept for the multi-chunk reads that take long enough to race a save.
    if (
        size != before.st_size
        or FileStamp.of(after) != FileStamp.of(before)
        or (not single and _replaced(src.path, after))
    ):
        raise SourceChangedError(src.path)
    with state.lock:
        state.hashed_bytes += size
    if hasher is not None:
        digest = hasher.hexdigest()
    elif chunks:
        digest = chunks[0].hex()
    else:
        digest = Hasher().hexdigest()
    entry = FileEntry(src.relpath, size, stat.S_IMODE(before.st_mode), digest, tuple(chunks))
    return entry, FileStamp.of(before)


def _replaced(path: str, st: os.stat_result) -> bool:
    """True if the path now names another file (an atomic save replaced it mid-read)."""
    try:
        now = os.stat(path, follow_symlinks=False)
    except OSError:
        return True
    return (now.st_ino, now.st_dev) != (st.st_ino, st.st_dev)
