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

import itertools
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cpv import osio
from cpv.engine.chunking import iter_file_chunks, new_read_buffer, read_small
from cpv.engine.hashing import Hasher, chunk_id
from cpv.engine.index import write_locations
from cpv.engine.locks import PushLease, wait_while_gc_runs
from cpv.engine.roots import RootInfo, record_push
from cpv.engine.snapshot import FileEntry, Snapshot
from cpv.engine.statcache import FileStamp, cache_key
from cpv.engine.transfer import PackUploader, TaskPool, TransferLimits
from cpv.engine.tree import build_tree
from cpv.errors import (
    IntegrityError,
    LocalIOError,
    SourceChangedError,
    TransferError,
    UnsafePathError,
    UnsupportedPathError,
)
from cpv.pathrules import check_symlink_target, is_git_segment, path_problem, resolve_in_tree
from cpv.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from cpv.engine.chunking import ChunkerParams
    from cpv.engine.repository import Repository

log = logging.getLogger(__name__)

Exclude = Callable[[str], bool]
SymlinkPolicy = Literal["keep", "skip", "follow"]
"""What a push does with a symlink that leaves the tree: refuse it, leave it out, follow it."""


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
    root_id: str | None = None
    skipped_links: tuple[str, ...] = ()
    """Symlinks left out because they leave the tree (``symlinks="skip"``), sorted."""
    tree_nodes: int = 0
    """Format 2: tree nodes the snapshot references (0 for a format-1 snapshot)."""
    tree_nodes_new: int = 0
    tree_bytes_new: int = 0
    """Format 2: tree nodes (and their bytes) this push wrote; the rest existed already."""

    @property
    def dedup_ratio(self) -> float:
        """Share of the tree's bytes that did not need uploading (1.0 = nothing new)."""
        return 1.0 - (self.new_bytes / self.total_bytes) if self.total_bytes else 1.0


@dataclass(slots=True)
class _Source:
    relpath: str
    path: str  # a str, not a Path: building 20,000 Path objects cost a no-op push 0.3 s
    mode: int
    stamp: FileStamp  # not the os.stat_result: ~600 B per file, 60 MiB at 100,000 files

    @classmethod
    def of(cls, relpath: str, path: str, st: os.stat_result) -> _Source:
        return cls(relpath, path, st.st_mode, FileStamp.of(st))

    @property
    def size(self) -> int:
        return self.stamp.size


_HINT_EXCLUDE = "or leave it out of the push with an exclude rule"
_HINT_LINKS = (
    "symlinks must stay inside the pushed tree; leave such links out (symlinks='skip') or push "
    "what they point to (symlinks='follow')"
)


@dataclass(slots=True)
class _Scan:
    """One scan's state: what was found, the links to judge together, and the policy."""

    exclude: Exclude | None
    symlinks: SymlinkPolicy
    found: list[_Source]
    links: dict[str, tuple[str, str]]  # relpath -> (absolute path, target)
    followed: set[tuple[int, int]]  # folders entered through a followed link (loop guard)
    skipped: list[str]
    readable: Callable[[os.stat_result], bool]


def scan_tree(
    root: Path, *, exclude: Exclude | None = None, symlinks: SymlinkPolicy = "keep"
) -> list[_Source]:
    """Regular files and symlinks under ``root`` (or ``root`` itself if it is a file), sorted.

    Everything cpv cannot version is decided here, before a byte is uploaded: a name that
    breaks the path rule (not UTF-8, a backslash...), a nested Git repository, an unreadable
    file or folder, a symlink that leaves the tree. ``root`` itself may be a symlink (a
    ``model -> /mnt/ckpt`` layout): the user named it, so it is followed.

    Symlinks inside the tree are recorded as links. A link that leaves the tree (absolute, or
    climbing out, possibly through another link) is refused with ``symlinks="keep"``, left out
    with ``"skip"`` (:attr:`PushResult.skipped_links` lists them), or replaced by what it
    points to with ``"follow"``.

    Raises:
        UnsupportedPathError: a name cpv cannot version, a nested Git repository, a link leaving
            the tree (with ``"keep"``); the hint says how to leave it out.
        LocalIOError: ``root`` is missing, or a file or folder cannot be read.
    """
    return _scan(root, exclude, symlinks).found


def _scan(root: Path, exclude: Exclude | None, symlinks: SymlinkPolicy) -> _Scan:
    if symlinks not in ("keep", "skip", "follow"):
        raise ValueError(f"symlinks must be 'keep', 'skip' or 'follow', not {symlinks!r}")
    scan = _Scan(exclude, symlinks, [], {}, set(), [], _read_permission())
    try:
        st = os.stat(root)
    except FileNotFoundError as exc:
        raise LocalIOError(f"nothing to push: {root} does not exist", path=str(root)) from exc
    except OSError as exc:
        raise LocalIOError(f"cannot read {root}: {exc.strerror}", path=str(root)) from exc
    if stat.S_ISREG(st.st_mode):
        _check_readable(scan, str(root), st)
        scan.found.append(_Source.of(root.name, os.path.realpath(root), st))
        return scan
    if not stat.S_ISDIR(st.st_mode):
        raise LocalIOError(f"cannot push {root}: not a regular file or folder", path=str(root))
    scan.followed.add((st.st_dev, st.st_ino))
    _walk(scan, str(root), "")
    _judge_links(scan)
    scan.found.sort(key=lambda s: s.relpath)
    return scan


def _walk(scan: _Scan, folder: str, prefix: str) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise LocalIOError(
            f"cannot list {folder}: {exc.strerror}",
            path=folder,
            hint=f"check the folder's permissions, {_HINT_EXCLUDE}",
        ) from exc
    for entry in entries:
        rel = prefix + entry.name
        if scan.exclude is not None and scan.exclude(rel):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise LocalIOError(
                f"cannot stat {entry.path}: {exc.strerror}", path=entry.path
            ) from exc
        if is_git_segment(entry.name):
            raise UnsupportedPathError(
                rel, "is a nested Git repository (cpv cannot version one inside a tracked folder)",
                hint=f"move the repository out of the tracked folder, {_HINT_EXCLUDE}",
            )
        problem = path_problem(rel)
        if problem is not None:
            hint = f"rename it, {_HINT_EXCLUDE}"
            raise UnsupportedPathError(rel, f"its name {problem}", hint=hint)
        if stat.S_ISDIR(st.st_mode):
            _walk(scan, entry.path, rel + "/")
        elif stat.S_ISREG(st.st_mode):
            _check_readable(scan, entry.path, st)
            scan.found.append(_Source.of(rel, entry.path, st))
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(entry.path)
            except OSError as exc:
                raise LocalIOError(
                    f"cannot read symlink {entry.path}: {exc.strerror}", path=entry.path
                ) from exc
            scan.links[rel] = (entry.path, target)
            scan.found.append(_Source.of(rel, entry.path, st))
        else:
            log.warning("skipping %s: not a regular file, folder or symlink", entry.path)


def _judge_links(scan: _Scan) -> None:
    """Keep the links that stay in the tree; refuse, skip or follow the ones that leave it.

    Links are judged together, because one may climb out through another. The links that
    leave on their own (absolute, or climbing out) go first: ``python -> python3`` leaves only
    through ``python3 -> /usr/bin/python3``, and once that one is skipped or followed it stays
    in the tree. Following a link into a folder may find more links, so this repeats until no
    link leaves the tree.
    """
    while True:
        inside = {rel: target for rel, (_, target) in scan.links.items()}
        leaving = [rel for rel in sorted(inside) if _leaves_alone(rel, inside[rel])]
        if not leaving:
            for rel in sorted(inside):
                try:
                    resolve_in_tree(rel, inside)
                except UnsafePathError:
                    leaving.append(rel)
        if not leaving:
            return
        if scan.symlinks == "keep":
            rel = leaving[0]
            raise UnsupportedPathError(
                rel, f"symlink to {inside[rel]!r} points outside the pushed tree",
                hint=_HINT_LINKS,
            )
        gone = set(leaving)
        scan.found = [s for s in scan.found if s.relpath not in gone]
        for rel in leaving:
            path, target = scan.links.pop(rel)
            if scan.symlinks == "skip":
                log.info("leaving out %s: symlink to %r points outside the tree", rel, target)
                scan.skipped.append(rel)
            else:
                _follow(scan, rel, path, target)


def _leaves_alone(rel: str, target: str) -> bool:
    try:
        check_symlink_target(rel, target)
    except UnsafePathError:
        return True
    return False


def _follow(scan: _Scan, rel: str, path: str, target: str) -> None:
    """Push what the link at ``path`` points to, under the link's own name."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise LocalIOError(
            f"cannot follow symlink {path} to {target!r}: {exc.strerror}", path=path,
            hint="fix or remove the link, or leave such links out (symlinks='skip')",
        ) from exc
    real = os.path.realpath(path)
    if stat.S_ISREG(st.st_mode):
        _check_readable(scan, path, st)
        scan.found.append(_Source.of(rel, real, st))
    elif stat.S_ISDIR(st.st_mode):
        if (st.st_dev, st.st_ino) in scan.followed:
            raise UnsupportedPathError(
                rel, f"symlink to {target!r} leads back into a folder already pushed (a loop)",
                hint="leave such links out (symlinks='skip')",
            )
        scan.followed.add((st.st_dev, st.st_ino))
        _walk(scan, real, rel + "/")
    else:
        log.warning("skipping %s: symlink to something that is not a file or folder", path)


def _read_permission() -> Callable[[os.stat_result], bool]:
    """Whether this process may read a file, from its stat alone (no syscall per file).

    An unreadable file must be refused before the upload starts, and a data set of 100,000
    files cannot afford an ``access()`` each. ACLs are not seen; a file they deny still fails
    cleanly when read (:class:`~cpv.errors.LocalIOError`).
    """
    euid = os.geteuid() if hasattr(os, "geteuid") else 0
    groups = set(os.getgroups()) | {os.getegid()} if hasattr(os, "getegid") else set()

    def readable(st: os.stat_result) -> bool:
        if euid == 0:
            return True
        if st.st_uid == euid:
            return bool(st.st_mode & stat.S_IRUSR)
        if st.st_gid in groups:
            return bool(st.st_mode & stat.S_IRGRP)
        return bool(st.st_mode & stat.S_IROTH)

    return readable


def _check_readable(scan: _Scan, path: str, st: os.stat_result) -> None:
    if not scan.readable(st):
        raise LocalIOError(
            f"cannot read {path}: permission denied", path=path,
            hint=f"check the file's permissions, {_HINT_EXCLUDE}",
        )


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
        self.queued_bytes = 0
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
    record_root: RootInfo | None = None,
    symlinks: SymlinkPolicy = "keep",
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
        record_root: record the snapshot as a version of the store (a root, ``engine/roots.py``)
            once it is durable (one small object, even for an unchanged tree). Without it, gc
            keeps the snapshot only through its grace period.
        symlinks: what to do with a symlink that leaves the tree: refuse the push ("keep"),
            leave it out ("skip", listed in ``skipped_links``) or push what it points to
            ("follow"). Links inside the tree are always kept as links.

    Everything the tree holds that cpv cannot version is refused by the scan, before a byte
    is uploaded (:func:`scan_tree`).

    Raises:
        LocalIOError: a file cannot be read. SourceChangedError: a file changed while read.
        FormatError: the store has a write feature this cpv does not know ("upgrade cpv").
        UnsupportedPathError: a name cpv cannot version, a nested Git repository, or a symlink
            that leaves the tree (with ``symlinks="keep"``). StoreError/TransferError: the store
        failed; nothing referencing the failed uploads was written.
    """
    # A store whose cutting rule this cpv does not know: pushing would cut differently.
    repo.config.check_writable(repo.url)
    limits = limits or TransferLimits()
    started = time.monotonic()
    requests_before = repo.store.request_count
    bytes_before = repo.store.bytes_up
    root = Path(root)
    scan = _scan(root, exclude, symlinks)
    sources = scan.found
    skipped = tuple(sorted(scan.skipped))
    if dry_run:
        if repo.partial_index:
            repo.refresh_index()  # what is new is judged against the whole store
        return _push(repo, root, sources, exclude=exclude, progress=progress, limits=limits,
                     dry_run=True, rehash=rehash, meta=meta, record_root=record_root,
                     started=started,
                     requests_before=requests_before, bytes_before=bytes_before, lease=None,
                     skipped=skipped)
    # A shared lease tells a concurrent gc this push may rely on what the index names now
    # (invariant 6); the index is re-read *after* the lease exists so that a gc which did not
    # see the lease has already finished rewriting the index (docs/gc.md).
    with PushLease(repo.store) as lease:
        repo.refresh_index()
        # A push that died before: index its finished packs, abort its abandoned uploads.
        repo.recover_orphan_packs()
        repo.abort_stale_uploads()
        return _push(repo, root, sources, exclude=exclude, progress=progress, limits=limits,
                     dry_run=False, rehash=rehash, meta=meta, record_root=record_root,
                     started=started,
                     requests_before=requests_before, bytes_before=bytes_before, lease=lease,
                     skipped=skipped)


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
    record_root: RootInfo | None,
    started: float,
    requests_before: int,
    bytes_before: int,
    lease: PushLease | None,
    skipped: tuple[str, ...] = (),
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
        total += src.size if not stat.S_ISLNK(src.mode) else 0
        if stat.S_ISLNK(src.mode):
            entries[src.relpath] = _link_entry(src)
            continue
        key = cache_key(tree_key, src.relpath)
        hit = cache.lookup(key, src.stamp) if cache else None
        if hit is not None and all(c in index for c in hit.chunks):
            entries[src.relpath] = FileEntry(
                src.relpath, src.size, stat.S_IMODE(src.mode), hit.blake3, hit.chunks
            )
        else:
            to_read.append(src)

    progress.begin("hash", total=sum(s.size for s in to_read), unit="B")
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
        to_read.sort(key=lambda s: -s.size)
        # Results land in one list, not in a Future kept per file: a finished Future (with its
        # Condition and lock) cost ~1.2 KiB per file, 120 MiB for 100,000 small files.
        done: list[tuple[FileEntry, FileStamp] | None] = [None] * len(to_read)
        for i, src in enumerate(to_read):
            pool.submit(_ingest_into, done, i, state, src, params)
        pool.join()
        for i, src in enumerate(to_read):
            result = done[i]
            assert result is not None  # join() raised if any file failed
            done[i] = None
            entry, stamp = result
            entries[entry.path] = entry
            if cache is not None and not dry_run:
                key = cache_key(tree_key, src.relpath)
                cache.record(key, stamp, entry.blake3, entry.chunks)
        files = tuple(entries[k] for k in sorted(entries))
        tree = _write_tree(state, files) if repo.config.tree_snapshots else None
        records = uploader.finish()
    progress.end("hash")
    progress.end("upload")

    snapshot = Snapshot(files=files, meta=dict(meta or {}),
                        tree_id=tree.top if tree else None,
                        node_ids=frozenset(tree.node_ids) if tree else frozenset())
    root_id = None
    if dry_run:
        snapshot_id, _ = snapshot.encode()
    else:
        # Invariant 1: packs are all confirmed by finish(); now the index, then the snapshot.
        repo.add_packs(records)
        assert lease is not None
        _keep_reused_chunks_indexed(repo, snapshot, index_ids_at_start)
        lease.check_alive()
        if snapshot.tree_id is not None:
            # After the index, before the root: one version's share of the index, for pulls.
            write_locations(repo.store, snapshot.encode()[0], repo.index,
                            itertools.chain(snapshot.node_ids,
                                            (c for f in snapshot.files for c in f.chunks)))
        snapshot_id, _ = repo.save_snapshot(snapshot)
        # A gc that listed snapshots before ours may rewrite the index after the check above;
        # once no gc runs, one more check sees any such rewrite (docs/gc.md, "push").
        wait_while_gc_runs(repo.store)
        _keep_reused_chunks_indexed(repo, snapshot, index_ids_at_start)
        if record_root is not None:
            # After the snapshot (invariant 1): a root names only what is durable.
            # A new record even for an unchanged tree: a forget running now may be retiring the
            # old one, and it cannot name a record written after it listed.
            root_id = record_push(repo, snapshot_id, record_root)
        if cache is not None:
            cache.flush()
    return PushResult(
        snapshot_id=snapshot_id,
        snapshot=snapshot,
        files=len(snapshot.files),
        total_bytes=total,
        hashed_bytes=state.hashed_bytes,
        new_bytes=uploader.bytes_added - (tree.new_bytes if tree else 0),
        uploaded_bytes=repo.store.bytes_up - bytes_before,
        chunks_new=uploader.chunks_added - (tree.new_nodes if tree else 0),
        chunks_reused=state.chunks_reused,
        packs_written=len(records),
        requests=repo.store.request_count - requests_before,
        seconds=time.monotonic() - started,
        dry_run=dry_run,
        root_id=root_id,
        skipped_links=skipped,
        tree_nodes=len(tree.node_ids) if tree else 0,
        tree_nodes_new=tree.new_nodes if tree else 0,
        tree_bytes_new=tree.new_bytes if tree else 0,
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
    missing.update(n for n in snapshot.node_ids if n not in index)
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


@dataclass
class _Tree:
    top: bytes
    node_ids: list[bytes]
    new_nodes: int = 0
    new_bytes: int = 0


def _write_tree(state: _PushState, files: tuple[FileEntry, ...]) -> _Tree:
    """Queue the tree nodes the store does not hold yet, into the same packs as the data.

    A node that is already indexed is not written again (the index says it is durable), so a
    version that changes 1% of the files writes the nodes along the changed paths only. The
    packs that hold the nodes are confirmed before the index, and the index before the
    snapshot root that names the top node (invariant 1).
    """
    ids: list[bytes] = []
    counts = [0, 0]

    def emit(node_id: bytes, raw: bytes) -> None:
        ids.append(node_id)
        if state.is_new(node_id):
            state.uploader.add(node_id, memoryview(raw))
            counts[0] += 1
            counts[1] += len(raw)

    top = build_tree(files, emit)
    return _Tree(top, ids, counts[0], counts[1])


def _link_entry(src: _Source) -> FileEntry:
    try:
        target = os.readlink(src.path)
    except OSError as exc:
        raise LocalIOError(
            f"cannot read symlink {src.path}: {exc.strerror}", path=src.path
        ) from exc
    return FileEntry(src.relpath, 0, 0o777, Hasher(target.encode()).hexdigest(), (), link=target)


def _ingest_into(
    done: list[tuple[FileEntry, FileStamp] | None], i: int, state: _PushState, src: _Source,
    params: ChunkerParams,
) -> None:
    done[i] = _ingest(state, src, params)


def _ingest(state: _PushState, src: _Source, params: ChunkerParams) -> tuple[FileEntry, FileStamp]:
    """Read, chunk and hash one file; new chunks go to the uploader."""
    buf = getattr(state.local, "buf", None)
    if buf is None:
        buf = state.local.buf = new_read_buffer(params)
    try:
        fd = os.open(src.path, os.O_RDONLY | osio.O_BINARY | osio.O_NOFOLLOW | osio.O_CLOEXEC)
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
                with state.lock:
                    state.queued_bytes += n
                    # The upload's total is what hashing has found new so far: exact once
                    # hashing ends, so the bar can show a percentage and an ETA.
                    state.progress.set_total("upload", state.queued_bytes)
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
