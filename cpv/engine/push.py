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

import functools
import heapq
import logging
import os
import secrets
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cpv import osio
from cpv.engine.chunking import iter_file_chunks, new_read_buffer, read_small
from cpv.engine.fingerprint import dir_part as _dir_part
from cpv.engine.fingerprint import file_part as _file_part
from cpv.engine.fingerprint import folder_fingerprint as _fingerprint
from cpv.engine.fingerprint import link_part as _link_part
from cpv.engine.hashing import Hasher, chunk_id, split_ids
from cpv.engine.index import write_locations
from cpv.engine.locks import PushLease, wait_while_gc_runs
from cpv.engine.roots import RootInfo, record_push
from cpv.engine.snapshot import FileEntry, Snapshot
from cpv.engine.statcache import (
    CachedFolder,
    FileStamp,
    StatCache,
    cache_key,
    encode_chunk_packs,
    settled,
)
from cpv.engine.transfer import PackUploader, TaskPool, TransferLimits
from cpv.engine.tree import encode_folder, encode_root
from cpv.engine.worktree import forkable, units_of, walker_pool
from cpv.errors import (
    CPVError,
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
    from cpv.engine.index import ChunkIndex
    from cpv.engine.repository import Repository

log = logging.getLogger(__name__)

Exclude = Callable[[str], bool]
NoteFolder = Callable[[str, "list[tuple[str, FileEntry | bytes]]"], object]
"""Called with each folder a push encodes, (prefix, its entries by name: a file's or link's
entry, a sub-folder's node id), in the process that encodes it; what it returns is kept in
:attr:`PushResult.folder_notes` (it must pickle)."""
SymlinkPolicy = Literal["keep", "skip", "follow"]
"""What a push does with a symlink that leaves the tree: refuse it, leave it out, follow it."""


@dataclass(frozen=True, slots=True)
class PushResult:
    """What a push did. Byte counts are exact; ``uploaded_bytes`` is what went over the wire."""

    snapshot_id: str
    load_snapshot: Callable[[], Snapshot] = field(repr=False, compare=False)
    """Gives :attr:`snapshot` (read back from the store when the push kept no file list)."""
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
    folders_reused: int = 0
    """Format 2: folders whose node was taken from the last push, unread (docs/format.md)."""
    folder_fingerprints: tuple[tuple[str, bytes], ...] = ()
    """(folder prefix, fingerprint) of each folder whose files were all settled: the snapshot
    holds exactly what that fingerprint stamps, so the workspace's baseline can record it and
    ``status`` judge the folder by one comparison (``cpv/engine/fingerprint.py``)."""
    folder_notes: Mapping[str, object] | None = field(default=None, repr=False, compare=False)
    """Format 2, given ``note_folder``: what it said of each folder encoded, by prefix. Every
    other folder of the version is in :attr:`reused_folders`."""
    reused_folders: tuple[tuple[str, bytes], ...] = ()
    """Format 2: (prefix, fingerprint) of each folder whose node was reused unread."""
    _memo: list[Snapshot] = field(default_factory=list, repr=False, compare=False)

    @property
    def snapshot(self) -> Snapshot:
        """The pushed snapshot with its file list.

        A format-2 push holds no list of its files, so that its memory does not grow with the
        file count; the list is read back from the store (and kept) the first time it is asked
        for, exactly as any other version's would be.
        """
        if not self._memo:
            self._memo.append(self.load_snapshot())
        return self._memo[0]

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
    link: str | None = None
    """A symlink's target (as the scan read it); None for a file."""

    @classmethod
    def of(cls, relpath: str, path: str, st: os.stat_result, link: str | None = None) -> _Source:
        return cls(relpath, path, st.st_mode, FileStamp.of(st), link)

    @property
    def size(self) -> int:
        return self.stamp.size


_HINT_EXCLUDE = "or leave it out of the push with an exclude rule"
_HINT_LINKS = (
    "symlinks must stay inside the pushed tree; leave such links out (symlinks='skip') or push "
    "what they point to (symlinks='follow')"
)


@dataclass(slots=True)
class _Folder:
    """A folder the scan found, and what the names and stamps of its entries hash to."""

    prefix: str  # "" for the top folder, else "a/b/"
    path: str
    fingerprint: bytes
    known: bool
    """The stat cache holds this fingerprint: the folder is as it was when last pushed."""


@dataclass(slots=True)
class _Scan:
    """One scan's state: the folders found, the links to judge together, and the policy."""

    exclude: Exclude | None
    symlinks: SymlinkPolicy
    readable: Callable[[os.stat_result], bool]
    known: Callable[[str], bytes | None] | None = None
    """A folder's stat-cache key -> the fingerprint it had when last pushed."""
    tree_key: str = ""
    folders: list[_Folder] = field(default_factory=list)
    links: dict[str, tuple[str, str]] = field(default_factory=dict)  # relpath -> (path, target)
    followed: set[tuple[int, int]] = field(default_factory=set)  # loop guard for followed links
    skipped: list[str] = field(default_factory=list)
    gone: set[str] = field(default_factory=set)  # links left out (skipped, or not followable)
    follow_files: dict[str, _Source] = field(default_factory=dict)
    follow_dirs: set[str] = field(default_factory=set)
    dirty: set[str] = field(default_factory=set)  # folders holding a link judged away
    single: _Source | None = None  # the root is this one file
    unknown_bytes: int = 0  # bytes of the files in folders not known: what may need hashing
    big: list[tuple[int, str, _Source]] = field(default_factory=list)
    """The biggest files of folders not known (a heap of at most :data:`_EARLY`): hashed first."""
    found: list[_Source] | None = None  # every file and link, for scan_tree only
    done: Mapping[str, bytes] = field(default_factory=dict)
    """Sub-trees a walker process scanned and encoded already: prefix -> fingerprint."""
    used: list[str] = field(default_factory=list)  # the ones of those this scan met
    listings: dict[str, list[tuple[str, os.DirEntry[str], os.stat_result]]] | None = None
    """In a walker process: the listing of each folder not known, checked, kept for the
    encoding pass (a sub-tree's, not the tree's: the push's process lists again)."""
    progress: Progress = NULL_PROGRESS
    """Told of each folder's entries as they are listed (the "scan" phase)."""


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
    found = _scan(root, exclude, symlinks, collect=True).found
    assert found is not None
    return found


def _scan(
    root: Path, exclude: Exclude | None, symlinks: SymlinkPolicy, *,
    known: Callable[[str], bytes | None] | None = None, collect: bool = False,
    done: Mapping[str, bytes] | None = None, progress: Progress = NULL_PROGRESS,
) -> _Scan:
    """Pass one of a push: every folder's fingerprint, every check, no list of files kept.

    A folder whose fingerprint the stat cache ``known`` holds was checked by the push that
    recorded it (same names, same stamps), so its names are not checked again; the push
    reuses its node without reading the folder a second time. A sub-tree in ``done`` was
    scanned and encoded by a walker process (:func:`_push_units`): only its fingerprint is
    taken.
    """
    if symlinks not in ("keep", "skip", "follow"):
        raise ValueError(f"symlinks must be 'keep', 'skip' or 'follow', not {symlinks!r}")
    scan = _Scan(exclude, symlinks, _read_permission(), known, os.path.abspath(root),
                 found=[] if collect else None, done=done or {}, progress=progress)
    try:
        st = os.stat(root)
    except FileNotFoundError as exc:
        raise LocalIOError(f"nothing to push: {root} does not exist", path=str(root)) from exc
    except OSError as exc:
        raise LocalIOError(f"cannot read {root}: {exc.strerror}", path=str(root)) from exc
    if stat.S_ISREG(st.st_mode):
        _check_readable(scan, str(root), st)
        scan.single = _Source.of(root.name, os.path.realpath(root), st)
        # A single-file root is keyed under its folder (its relpath is its name).
        scan.tree_key = os.path.dirname(scan.tree_key)
        scan.folders.append(_Folder("", scan.tree_key, b"", False))
        scan.unknown_bytes = st.st_size
        if scan.found is not None:
            scan.found.append(scan.single)
        return scan
    if not stat.S_ISDIR(st.st_mode):
        raise LocalIOError(f"cannot push {root}: not a regular file or folder", path=str(root))
    scan.followed.add((st.st_dev, st.st_ino))
    _walk(scan, str(root), "")
    _judge_links(scan)
    if scan.found is not None:
        scan.found.sort(key=lambda s: s.relpath)
    _deepest_first(scan)
    return scan


def _deepest_first(scan: _Scan) -> None:
    """Order the scan's folders for encoding: a folder's node names its sub-folders' nodes,
    so they are encoded before it."""
    scan.folders.sort(key=lambda f: -f.prefix.count("/"))


def _list_folder(
    scan: _Scan, folder: str, prefix: str
) -> list[tuple[str, os.DirEntry[str], os.stat_result]]:
    """A folder's entries that the push considers, by name: (name, entry, its lstat).

    One ``lstat`` per entry (``DirEntry.stat`` keeps it, so asking again costs nothing) and
    no other object per entry: this runs for every file of every push, a no-op's main cost.
    """
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        raise LocalIOError(
            f"cannot list {folder}: {exc.strerror}",
            path=folder,
            hint=f"check the folder's permissions, {_HINT_EXCLUDE}",
        ) from exc
    exclude = scan.exclude
    out: list[tuple[str, os.DirEntry[str], os.stat_result]] = []
    add = out.append
    for entry in entries:
        name = entry.name
        if exclude is not None and exclude(prefix + name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise LocalIOError(
                f"cannot stat {entry.path}: {exc.strerror}", path=entry.path
            ) from exc
        mode = st.st_mode
        if _ISREG(mode) or _ISDIR(mode) or _ISLNK(mode):
            add((name, entry, st))
        else:
            _check_name(prefix + name, name)
            log.warning("skipping %s: not a regular file, folder or symlink", entry.path)
    out.sort()  # by name: names are unique in a folder, so no entry is ever compared
    return out


_ISREG, _ISDIR, _ISLNK = stat.S_ISREG, stat.S_ISDIR, stat.S_ISLNK


def _read_link(entry: os.DirEntry[str]) -> str:
    try:
        return os.readlink(entry.path)
    except OSError as exc:
        raise LocalIOError(
            f"cannot read symlink {entry.path}: {exc.strerror}", path=entry.path
        ) from exc


def _check_name(rel: str, name: str) -> None:
    if is_git_segment(name):
        raise UnsupportedPathError(
            rel, "is a nested Git repository (cpv cannot version one inside a tracked folder)",
            hint=f"move the repository out of the tracked folder, {_HINT_EXCLUDE}",
        )
    problem = path_problem(rel)
    if problem is not None:
        raise UnsupportedPathError(rel, f"its name {problem}", hint=f"rename it, {_HINT_EXCLUDE}")


def _parent(prefix_or_rel: str) -> str:
    """The folder prefix (``"a/"``, or ``""`` at the top) that holds a path or folder prefix."""
    cut = prefix_or_rel.rstrip("/").rfind("/")
    return prefix_or_rel[: cut + 1] if cut >= 0 else ""


def _walk(scan: _Scan, folder: str, prefix: str) -> bytes:
    """Scan ``folder`` (and below), checking what is not known; returns its fingerprint.

    A known folder costs its listing, one ``lstat`` and one fingerprint part per entry: its
    files' names are checked, and :class:`_Source` objects made, only when it is not known.
    """
    parts: list[bytes] = []
    add = parts.append
    listing = _list_folder(scan, folder, prefix)
    scan.progress.advance("scan", len(listing))
    for name, entry, st in listing:
        mode = st.st_mode
        if _ISREG(mode):
            add(_file_part(name, mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))
        elif _ISDIR(mode):
            rel = prefix + name
            _check_name(rel, name)
            unit = scan.done.get(rel + "/")
            if unit is not None:
                scan.used.append(rel + "/")
                add(_dir_part(name, unit))
            else:
                add(_dir_part(name, _walk(scan, entry.path, rel + "/")))
        else:
            target = _read_link(entry)
            scan.links[prefix + name] = (entry.path, target)
            add(_link_part(name, target))
    fingerprint = _fingerprint(parts)
    known = (scan.known is not None
             and scan.known(cache_key(scan.tree_key, prefix)) == fingerprint)
    if not known and scan.listings is not None:
        scan.listings[prefix] = listing
    if not known or scan.found is not None:
        for name, entry, st in listing:
            if _ISDIR(st.st_mode):
                continue
            link = scan.links[prefix + name][1] if _ISLNK(st.st_mode) else None
            if scan.found is not None:
                scan.found.append(_Source.of(prefix + name, entry.path, st, link))
            if known:
                continue
            _check_name(prefix + name, name)
            if link is None:
                _check_readable(scan, entry.path, st)
                scan.unknown_bytes += st.st_size
                if st.st_size >= _EARLY_MIN:
                    _note_big(scan, _Source.of(prefix + name, entry.path, st))
    scan.folders.append(_Folder(prefix, folder, fingerprint, known))
    return fingerprint


_EARLY = 64
_EARLY_MIN = 64 * 1024 * 1024


def _note_big(scan: _Scan, src: _Source) -> None:
    """Remember one of the biggest files, so that its hashing starts first, not with its
    folder: one huge file must not start last and run alone at the end."""
    item = (src.size, src.relpath, src)
    if len(scan.big) < _EARLY:
        heapq.heappush(scan.big, item)
    elif item[:2] > scan.big[0][:2]:
        heapq.heapreplace(scan.big, item)


def _judge_links(scan: _Scan) -> None:
    """Keep the links that stay in the tree; refuse, skip or follow the ones that leave it.

    Links are judged together, because one may climb out through another. The links that
    leave on their own (absolute, or climbing out) go first: ``python -> python3`` leaves only
    through ``python3 -> /usr/bin/python3``, and once that one is skipped or followed it stays
    in the tree. Following a link into a folder may find more links, so this repeats until no
    link leaves the tree. A folder holding a link judged away is encoded again (never reused).
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
        if scan.found is not None:
            scan.found = [s for s in scan.found if s.relpath not in gone]
        for rel in leaving:
            path, target = scan.links.pop(rel)
            scan.dirty.add(_parent(rel))
            if scan.symlinks == "skip":
                log.info("leaving out %s: symlink to %r points outside the tree", rel, target)
                scan.skipped.append(rel)
                scan.gone.add(rel)
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
        src = _Source.of(rel, real, st)
        scan.follow_files[rel] = src
        scan.unknown_bytes += st.st_size
        if st.st_size >= _EARLY_MIN:
            _note_big(scan, src)
        if scan.found is not None:
            scan.found.append(src)
    elif stat.S_ISDIR(st.st_mode):
        if (st.st_dev, st.st_ino) in scan.followed:
            raise UnsupportedPathError(
                rel, f"symlink to {target!r} leads back into a folder already pushed (a loop)",
                hint="leave such links out (symlinks='skip')",
            )
        scan.followed.add((st.st_dev, st.st_ino))
        scan.follow_dirs.add(rel)
        _walk(scan, real, rel + "/")
    else:
        log.warning("skipping %s: symlink to something that is not a file or folder", path)
        scan.gone.add(rel)


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
        self, index: ChunkIndex, uploader: PackUploader | _Collector, pool: TaskPool,
        progress: Progress,
    ) -> None:
        self.index = index
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
    walkers: int = 1,
    note_folder: NoteFolder | None = None,
) -> PushResult:
    """Push the tree at ``root`` (a folder or a single file) and return its snapshot.

    Args:
        repo: the opened store.
        root: folder or file to push; paths in the snapshot are relative to it (a single file
            is stored under its own name).
        exclude: called with each relative path; True leaves it (and a folder's contents) out.
        progress: receives "scan" counts (entries listed, before anything is hashed), then
            "hash" and "upload" byte counts.
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
        walkers: above 1, that many forked processes scan and encode the sub-trees first
            (a big tree the stat cache knows: :func:`~cpv.engine.worktree.walkers_for`);
            only where this process may fork.
        note_folder: told of each folder the push encodes (a format-2 push that keeps no
            file list): what a caller must know of the changed folders (a workspace's
            baseline) is worked out where they are encoded, without reading the version
            back.

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
    cache = None if rehash else repo.stat_cache
    known: Callable[[str], bytes | None] | None = None
    if cache is not None and repo.config.tree_snapshots and not dry_run:
        folders = cache

        def known(key: str) -> bytes | None:
            row = folders.folder(key, with_ids=False)
            return None if row is None else row.fingerprint

    units: dict[str, _UnitPush] = {}
    seen: frozenset[str] = frozenset()
    # Before the first byte is hashed, a big tree is listed (and, with walkers, encoded):
    # 15-20 s at 10^6 files, shown as the entries scanned so far.
    progress.begin("scan", total=None, unit="files")
    try:
        if (known is not None and cache is not None and walkers > 1 and forkable()
                and os.path.isdir(root)):
            if repo.partial_index:
                repo.refresh_index()
            index = repo.index
            if index.still_holds(index.index_ids):  # nothing judged by a chunk only in memory
                seen = frozenset(index.index_ids)
                units = _push_units(repo, root, exclude, symlinks, walkers, cache,
                                    _trusted_token(repo, cache), note_folder, progress)
        scan = _scan(root, exclude, symlinks, known=known,
                     done={p: u.fingerprint for p, u in units.items()}, progress=progress)
    finally:
        progress.end("scan")
    run = functools.partial(
        _push, repo, root, note_folder=note_folder, progress=progress, limits=limits,
        cache=cache, meta=meta,
        record_root=record_root, started=started, requests_before=requests_before,
        bytes_before=bytes_before)
    if dry_run:
        if repo.partial_index:
            repo.refresh_index()  # what is new is judged against the whole store
        return run(scan, dry_run=True, lease=None)
    # A shared lease tells a concurrent gc this push may rely on what the index names now
    # (invariant 6); the index is re-read *after* the lease exists so that a gc which did not
    # see the lease has already finished rewriting the index (docs/gc.md).
    with PushLease(repo.store) as lease:
        # (The walkers' index, when nothing changed since: reading it again gives the same.)
        repo.refresh_index(keep_current=bool(units))
        # A push that died before: index its finished packs, abort its abandoned uploads.
        repo.recover_orphan_packs()
        repo.abort_stale_uploads()
        if units and not repo.index.still_holds(seen):
            # A gc rewrote the index since the walkers judged what the store holds: what they
            # found held may be gone, so the tree is encoded again here (invariant 9).
            scan = _scan(root, exclude, symlinks, known=known)
        return run(scan, dry_run=False, lease=lease, units=[units[p] for p in scan.used])


def _trusted_token(repo: Repository, cache: StatCache) -> bytes:
    """The token of the folder rows this push may trust unchecked (b"": none): the last
    push's, while the store has lost nothing since (:meth:`ChunkIndex.still_holds`)."""
    last = cache.store_state(repo.config.store_id)
    return last[0] if last is not None and repo.index.still_holds(last[1]) else b""


def _push(
    repo: Repository,
    root: Path,
    scan: _Scan,
    *,
    units: list[_UnitPush] | None = None,
    note_folder: NoteFolder | None = None,
    progress: Progress,
    limits: TransferLimits,
    dry_run: bool,
    cache: StatCache | None,
    meta: dict[str, str] | None,
    record_root: RootInfo | None,
    started: float,
    requests_before: int,
    bytes_before: int,
    lease: PushLease | None,
) -> PushResult:
    index = repo.index
    index_ids_at_start = set(index.index_ids)
    tree_mode = repo.config.tree_snapshots
    # The folders the last push recorded are trusted unchecked while the store has lost
    # nothing since (ChunkIndex.still_holds); otherwise this push checks each folder it
    # reuses chunk by chunk and vouches for it anew under a token of its own.
    token = trusted = b""
    if cache is not None and tree_mode and not dry_run:
        token = trusted = _trusted_token(repo, cache)
        if not token:
            token = secrets.token_bytes(16)
    # A format-1 snapshot lists every file, and a dry run hands its snapshot back without
    # writing it: both need every file's entry, so neither reuses a folder's node.
    collect = dry_run or not tree_mode
    units = units or []
    hash_total = scan.unknown_bytes + sum(u.hashed_bytes for u in units)
    progress.begin("hash", total=hash_total, unit="B")
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
        state = _PushState(repo.index, uploader, pool, progress)
        tree = _TreePush(state, scan, cache, repo.config.chunker, tree_mode=tree_mode,
                         collect=collect, record=cache is not None and not dry_run,
                         hash_total=hash_total, trusted=trusted)
        tree.note = None if collect else note_folder
        top = tree.run(units)
        records = uploader.finish()
        # Every new chunk is in ``records`` now: the claims made while hashing (~100 B per
        # chunk, 100 MB at 10^6 files) go before the index grows by as many entries.
        state.pending = set()
    progress.end("hash")
    progress.end("upload")

    meta = dict(meta or {})
    snapshot: Snapshot | None = None
    if collect:
        assert tree.entries is not None
        snapshot = Snapshot(files=tuple(sorted(tree.entries, key=lambda f: f.path)), meta=meta,
                            tree_id=top if tree_mode else None,
                            node_ids=frozenset(tree.node_ids))
        snapshot_id, raw = snapshot.encode()
    else:
        snapshot_id, raw = encode_root(top, files=tree.files, size=tree.size, meta=meta)
    root_id = None
    if not dry_run:
        # Invariant 1: packs are all confirmed by finish(); now the index, then the snapshot.
        new_index = repo.add_packs(records)
        assert lease is not None
        _keep_reused_chunks_indexed(repo, tree.needed, index_ids_at_start)
        lease.check_alive()
        packs = tree.locate(repo.index) if tree_mode else None
        if packs is not None:
            # After the index, before the root: one version's share of the index, for pulls.
            write_locations(repo.store, snapshot_id, packs)
        repo.save_snapshot_bytes(snapshot_id, raw)
        # A gc that listed snapshots before ours may rewrite the index after the check above;
        # once no gc runs, one more check sees any such rewrite (docs/gc.md, "push").
        wait_while_gc_runs(repo.store)
        _keep_reused_chunks_indexed(repo, tree.needed, index_ids_at_start)
        if record_root is not None:
            # After the snapshot (invariant 1): a root names only what is durable.
            # A new record even for an unchanged tree: a forget running now may be retiring the
            # old one, and it cannot name a record written after it listed.
            root_id = record_push(repo, snapshot_id, record_root)
        if cache is not None:
            if packs is not None and tree.record:
                # Only now, the push durable: a folder row vouches for what the store holds.
                for key, row in tree.rows:
                    cache.record_folder(key, replace(row, token=token))
                if new_index is not None:
                    index_ids_at_start.add(new_index)
                cache.record_store_state(repo.config.store_id, token,
                                         frozenset(index_ids_at_start))
            cache.flush()
    if snapshot is None:
        # The push kept no list of its files (memory bounded whatever the count): a caller that
        # asks for them reads them back, as it would any other version.
        load: Callable[[], Snapshot] = functools.partial(repo.load_snapshot, snapshot_id)
    else:
        load = functools.partial(lambda s: s, snapshot)
    return PushResult(
        snapshot_id=snapshot_id,
        load_snapshot=load,
        files=tree.files,
        total_bytes=tree.size,
        hashed_bytes=state.hashed_bytes,
        new_bytes=uploader.bytes_added - tree.new_node_bytes,
        uploaded_bytes=repo.store.bytes_up - bytes_before,
        chunks_new=uploader.chunks_added - tree.new_nodes,
        chunks_reused=state.chunks_reused,
        packs_written=len(records),
        requests=repo.store.request_count - requests_before,
        seconds=time.monotonic() - started,
        dry_run=dry_run,
        root_id=root_id,
        skipped_links=tuple(sorted(scan.skipped)),
        tree_nodes=len(tree.node_ids),
        tree_nodes_new=tree.new_nodes,
        tree_bytes_new=tree.new_node_bytes,
        folders_reused=tree.reused,
        folder_fingerprints=tuple(tree.settled),
        folder_notes=tree.notes if tree.note is not None else None,
        reused_folders=tuple(tree.reused_folders),
    )


def _keep_reused_chunks_indexed(
    repo: Repository, needed: Callable[[], Iterable[bytes]], seen: set[str]
) -> None:
    """If a gc rewrote the index during this push, make sure every chunk reused is still indexed.

    The push may have deduplicated against a pack that the gc then condemned (it was dead when
    the gc looked). Re-indexing that pack un-condemns it; only then may the snapshot name it.
    ``needed`` gives every chunk and tree node id the snapshot names.
    """
    if seen <= {key.split("/", 1)[1] for key in repo.index_keys()}:
        return
    from cpv.engine.gc import rescue_chunks

    index = repo.refresh_index()
    missing = {c for c in needed() if c not in index}
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


_AHEAD = 8
"""Folders whose files may be hashing while the oldest one waits to be encoded."""


@dataclass(slots=True)
class _Open:
    """A folder encoded again: its entries, and the hashing of its files still under way."""

    folder: _Folder
    items: list[tuple[str, _Source | str]]  # (name, file or link | sub-folder prefix)
    results: list[tuple[FileEntry, FileStamp, bool] | None]  # (entry, stamp, was hashed now)
    left: int = 0
    early: list[tuple[int, _Open]] = field(default_factory=list)
    """Files of this folder whose hashing started before it: (item index, their own slot)."""

    @property
    def done(self) -> bool:
        return self.left == 0 and all(slot.left == 0 for _, slot in self.early)


class _TreePush:
    """Pass two of a push: each folder, sub-folders first, becomes its node (format 2).

    A folder whose fingerprint is the one the stat cache recorded for it, whose sub-folders
    were all reused too, and whose node ids and file chunk ids are all indexed, is not read
    again: its node is the one pushed before (restic and Git reuse unchanged trees the same
    way). "All indexed" is not even looked up when the row carries ``trusted``, the token of
    a push after which the store lost nothing (``ChunkIndex.still_holds``): a no-op push of
    10^6 files then makes no index lookup at all (with the on-disk table, 10^6 lookups cost
    ~7 CPU-s), and the version's pack list is the union of its folders' recorded packs.
    Any other folder is listed again and encoded from its files' entries: from the stat
    cache when it vouches for a file, else from hashing it. Only a few folders are open at a
    time, so memory follows the folder size, not the tree size.
    """

    def __init__(
        self, state: _PushState, scan: _Scan, cache: StatCache | None, params: ChunkerParams,
        *, tree_mode: bool, collect: bool, record: bool, hash_total: int, trusted: bytes = b"",
    ) -> None:
        self.state = state
        self.scan = scan
        self.cache = cache
        self.params = params
        self.tree_mode = tree_mode
        self.reuse = tree_mode and not collect and cache is not None
        self.record_files = record
        self.record = record and tree_mode and not collect
        self.hash_total = hash_total
        self.trusted = trusted
        self.rows: list[tuple[str, CachedFolder]] = []
        """Folder rows to record once the push is durable (set by :meth:`locate`)."""
        # Folders whose packs are looked up at the end: (key, row, whether to record it).
        self._pending: list[tuple[str, CachedFolder, bool]] = []
        self._trusted_packs: list[bytes] = []  # the packs of trusted folders, from their rows
        # Trusted rows of folders encoded again, by key: where their chunks are, for locate().
        self._prev: dict[str, CachedFolder] = {}
        self.entries: list[FileEntry] | None = [] if collect else None
        self.node_ids: set[bytes] = set()
        self.chunk_ids: list[bytes] = []  # per folder: its files' chunk ids, concatenated
        self.files = 0
        self.size = 0
        self.new_nodes = 0
        self.new_node_bytes = 0
        self.reused = 0
        self.settled: list[tuple[str, bytes]] = []  # (prefix, fingerprint): PushResult's
        # Folders encoded whose parent is not yet: prefix -> (node id, fingerprint, settled).
        self._done: dict[str, tuple[bytes, bytes, bool]] = {}
        self._blocked: set[str] = set()  # folders with a sub-folder that was encoded again
        self._open: deque[_Open] = deque()
        self._early: dict[str, _Open] = {}
        self.note: NoteFolder | None = None
        self.notes: dict[str, object] = {}
        self.reused_folders: list[tuple[str, bytes]] = []
        self.budget: int | None = None
        """In a walker process: the bytes it may still hash (what it hashes is sent whole)."""
        self.hashed: list[tuple[str, FileStamp, str, tuple[bytes, ...]]] | None = None
        """In a walker process: the stat-cache entries of the files it hashed, for the push's
        process to record (the walker's connection to the cache reads only)."""

    def run(self, units: Iterable[_UnitPush] = ()) -> bytes:
        """Encode every folder; returns the top folder's node id (b"" for format 1).

        ``units`` are sub-trees walker processes encoded already (:func:`_push_units`): their
        new nodes and chunks are uploaded from here, and their folders' rows taken as if this
        process had encoded them.
        """
        for unit in units:
            self._adopt(unit)
        self._encode_all()
        return self._done.pop("")[0]

    def _encode_all(self) -> None:
        self._start_big()
        for folder in self.scan.folders:
            if not self._reused(folder):
                self._start(folder)
            while self._open and (len(self._open) > _AHEAD or self._open[0].done):
                self._finish(self._open.popleft())
        while self._open:
            self._finish(self._open.popleft())

    def encode_unit(self, prefix: str) -> _UnitPush:
        """In a walker process: encode the sub-tree at ``prefix`` (its folders are this
        tree's scan) and hand back what the push process needs of it, new bytes included."""
        self._encode_all()
        top, fingerprint, settled_all = self._done.pop(prefix)
        state = self.state
        assert isinstance(state.uploader, _Collector)
        assert self.hashed is not None
        return _UnitPush(
            prefix, top, fingerprint, settled_all, _parent(prefix) in self._blocked,
            frozenset(self.node_ids), self.chunk_ids, self.files, self.size, self.reused,
            self.settled, self._pending, self._trusted_packs, self._prev,
            state.uploader.added, self.hashed, state.hashed_bytes, state.chunks_reused,
            state.reused_bytes, self.notes, self.reused_folders)

    def _adopt(self, unit: _UnitPush) -> None:
        """Take a sub-tree a walker process encoded: its new nodes and chunks go to the
        uploader (claimed here, so a chunk two sub-trees share is uploaded once)."""
        state = self.state
        self.node_ids |= unit.node_ids
        self.chunk_ids += unit.chunk_ids
        self.files += unit.files
        self.size += unit.size
        self.reused += unit.reused
        self.settled += unit.settled
        self.notes.update(unit.notes)
        self.reused_folders += unit.reused_folders
        self._pending += unit.pending
        self._trusted_packs += unit.trusted_packs
        self._prev.update(unit.prev)
        for cid, raw in unit.added:
            node = cid in unit.node_ids
            if state.is_new(cid):
                state.uploader.add(cid, memoryview(raw))
                if node:
                    self.new_nodes += 1
                    self.new_node_bytes += len(raw)
                else:
                    state.queued_bytes += len(raw)
            elif not node:
                state.chunks_reused += 1
                state.reused_bytes += len(raw)
        state.chunks_reused += unit.chunks_reused
        state.reused_bytes += unit.reused_bytes
        state.hashed_bytes += unit.hashed_bytes
        if state.queued_bytes:
            state.progress.set_total("upload", state.queued_bytes)
        state.progress.advance("hash", unit.hashed_bytes)
        if self.cache is not None and self.record_files:
            for key, stamp, digest, chunks in unit.hashed:
                self.cache.record(key, stamp, digest, chunks)
        if unit.encoded:
            self._blocked.add(_parent(unit.prefix))
        self._done[unit.prefix] = (unit.top, unit.fingerprint, unit.settled_all)

    def needed(self) -> Iterator[bytes]:
        """Every tree node id and file chunk id the snapshot names."""
        yield from self.node_ids
        for blob in self.chunk_ids:
            yield from split_ids(blob)

    def locate(self, index: ChunkIndex) -> set[str] | None:
        """The packs holding every node and chunk the snapshot names (None if one is not
        indexed): a trusted folder's from its row, the others' looked up chunk by chunk and
        kept in their rows (:attr:`rows`) for the next push."""
        found = {p.hex() for blob in self._trusted_packs for p in split_ids(blob)}
        rows = []
        for key, row, record in self._pending:
            prev = self._prev.pop(key, None)
            located = _pack_list(index, row, prev.pack_map() if prev is not None else {})
            if located is None:
                return None
            found |= {p.hex() for p in located[0]}
            if record:
                rows.append((key, replace(row, packs=b"".join(located[0]),
                                          chunk_packs=located[1])))
        self.rows = rows
        self._pending = []
        self._prev = {}
        return found

    def _start_big(self) -> None:
        """Start hashing the biggest files the stat cache does not vouch for, biggest first."""
        big = sorted(self.scan.big, reverse=True)
        self.scan.big = []
        cache, index = self.cache, self.state.index
        hits = (cache.lookup_many([(cache_key(self.scan.tree_key, s.relpath), s.stamp)
                                   for _, _, s in big])
                if cache is not None else [None] * len(big))
        for (_, rel, src), hit in zip(big, hits, strict=True):
            if hit is None or not all(c in index for c in hit.chunks):
                slot = _Open(_Folder("", "", b"", False), [], [None], 1)
                self._early[rel] = slot
                self.state.pool.submit(_ingest_into, slot, 0, self.state, src, self.params)

    def _reused(self, folder: _Folder) -> bool:
        if (not self.reuse or not folder.known or folder.prefix in self._blocked
                or folder.prefix in self.scan.dirty):
            return False
        assert self.cache is not None
        key = cache_key(self.scan.tree_key, folder.prefix)
        row = self.cache.folder(key)
        if row is None or row.fingerprint != folder.fingerprint or not row.nodes:
            return False
        chunks = row.chunks
        if self.trusted and row.token == self.trusted:
            self._trusted_packs.append(row.packs)
        else:
            # Invariant 9: what a gc removed since is not reused (the folder is encoded again
            # and its files' chunks uploaded again).
            index = self.state.index
            if (any(n not in index for n in row.nodes)
                    or any(c not in index for c in split_ids(chunks))):
                return False
            self._pending.append((key, row, self.record))
        self.node_ids.update(row.nodes)
        self.chunk_ids.append(chunks)
        self.files += row.files
        self.size += row.size
        self.reused += 1
        self.settled.append((folder.prefix, folder.fingerprint))
        self.reused_folders.append((folder.prefix, folder.fingerprint))
        self._done[folder.prefix] = (row.nodes[0], folder.fingerprint, True)
        return True

    def _start(self, folder: _Folder) -> None:
        """List the folder again, take what the stat cache vouches for, hash the rest."""
        if folder.prefix:
            self._blocked.add(_parent(folder.prefix))
        items = _entries_now(self.scan, folder)
        op = _Open(folder, items, [None] * len(items))
        files = [(i, src) for i, (_, src) in enumerate(items)
                 if isinstance(src, _Source) and src.link is None]
        cache, index, tree_key = self.cache, self.state.index, self.scan.tree_key
        leaf = (cache_key(tree_key, folder.prefix)
                if folder.prefix and not any(isinstance(src, str) for _, src in items) else None)
        base = cache_key(tree_key, "")  # + a relpath: its key (10^6 of them at 1 % changed)
        hits = (cache.lookup_many([(base + s.relpath, s.stamp) for _, s in files], leaf=leaf)
                if cache is not None else [None] * len(files))
        prev = self._trusted_row(folder)
        vouched: set[bytes] = set()
        if prev is not None:
            vouched = set(split_ids(prev.chunks))
            if prev.chunk_packs:
                self._prev[cache_key(tree_key, folder.prefix)] = prev
        reads: list[tuple[int, _Source]] = []
        total = self.hash_total
        early = self._early
        for (i, src), hit in zip(files, hits, strict=True):
            slot = early.pop(src.relpath, None) if early else None
            if slot is not None:  # hashing since the push began (one of the biggest files)
                op.early.append((i, slot))
                if folder.known:
                    total += src.size
            elif hit is not None and (vouched.issuperset(hit.chunks)
                                      or all(c in vouched or c in index for c in hit.chunks)):
                op.results[i] = (FileEntry(src.relpath, src.size, stat.S_IMODE(src.mode),
                                           hit.blake3, hit.chunks), src.stamp, False)
                if not folder.known:
                    total -= src.size
            else:
                reads.append((i, src))
                if folder.known:
                    total += src.size
        if total != self.hash_total:
            self.hash_total = total
            self.state.progress.set_total("hash", max(total, 0))
        if self.budget is not None:
            self.budget -= sum(src.size for _, src in reads)
            if self.budget < 0:
                raise _TooMuchToHashError(folder.prefix)
        op.left = len(reads)
        # Biggest first, so one huge file does not start last and run alone at the end.
        reads.sort(key=lambda r: -r[1].size)
        for i, src in reads:
            self.state.pool.submit(_ingest_into, op, i, self.state, src, self.params)
        self._open.append(op)

    def _trusted_row(self, folder: _Folder) -> CachedFolder | None:
        """The folder's row when a trusted push recorded it: the chunks it names are in the
        store unchecked (:meth:`ChunkIndex.still_holds`), in the packs it names, so the files
        of a changed folder that the stat cache vouches for need no index lookup, neither
        now nor for the version's pack list (at 10^6 files changed 1 % in every folder,
        those lookups were 10 of the push's 68 s)."""
        if not self.trusted or self.cache is None or not self.tree_mode:
            return None
        row = self.cache.folder(cache_key(self.scan.tree_key, folder.prefix))
        if row is None or row.token != self.trusted:
            return None
        return row

    def _finish(self, op: _Open) -> None:
        """Build the folder's node once its files are hashed; record it for the next push."""
        if not op.done:
            self.state.pool.wait_until(lambda: op.done)
        for i, slot in op.early:
            op.results[i] = slot.results[0]
        prefix = op.folder.prefix
        entries: list[tuple[str, FileEntry | bytes]] = []
        parts: list[bytes] = []
        chunks: list[bytes] = []
        settled_all = True
        size = 0
        for (name, item), result in zip(op.items, op.results, strict=True):
            if isinstance(item, str):
                child = self._done.pop(item, None)
                if child is None:  # a folder made after the scan: this push did not check it
                    raise SourceChangedError(os.path.join(op.folder.path, name))
                entries.append((name, child[0]))
                parts.append(_dir_part(name, child[1]))
                settled_all = settled_all and child[2]
                continue
            if item.link is not None:
                entry = _link_entry(item)
                parts.append(_link_part(name, item.link))
            else:
                assert result is not None  # wait_until raised if a file failed
                entry, stamp, hashed = result
                parts.append(_file_part(name, entry.mode, stamp.size, stamp.mtime_ns,
                                        stamp.ctime_ns, stamp.ino))
                if hashed and self.cache is not None and self.record_files:
                    key = cache_key(self.scan.tree_key, item.relpath)
                    if self.hashed is not None:  # a walker process's: recorded by the push's
                        self.hashed.append((key, stamp, entry.blake3, entry.chunks))
                    else:
                        self.cache.record(key, stamp, entry.blake3, entry.chunks)
                settled_all = settled_all and settled(stamp)
                size += entry.size
            chunks.extend(entry.chunks)
            entries.append((name, entry))
            if self.entries is not None:
                self.entries.append(entry)
        blob = b"".join(chunks)
        nodes: list[bytes] = []
        top = b""
        if self.tree_mode:

            def emit(node_id: bytes, raw: bytes) -> None:
                nodes.append(node_id)
                if self.state.is_new(node_id):
                    self.state.uploader.add(node_id, memoryview(raw))
                    self.new_nodes += 1
                    self.new_node_bytes += len(raw)

            top = encode_folder(entries, emit)
            self.node_ids.update(nodes)
            if self.note is not None:
                self.notes[prefix] = self.note(prefix, entries)
        self.chunk_ids.append(blob)
        self.files += len(op.items) - sum(isinstance(item, str) for _, item in op.items)
        self.size += size
        fingerprint = _fingerprint(parts)
        if self.tree_mode:
            others = tuple(n for n in nodes if n != top)
            self._pending.append((cache_key(self.scan.tree_key, prefix), CachedFolder(
                fingerprint, (top, *others), blob, len(entries) - sum(
                    isinstance(v, bytes) for _, v in entries), size),
                self.record and settled_all))
        if settled_all:
            self.settled.append((prefix, fingerprint))
        self._done[prefix] = (top, fingerprint, settled_all)


_UNIT_HASH_BYTES = 64 * 1024 * 1024
"""What one walker process may hash for its sub-tree: the new bytes it finds travel whole to
the push's process, so a sub-tree with more to read is left to the push's hash workers."""

_UNITS_HELD_BYTES = 512 * 1024 * 1024
"""What the push's process holds of all sub-trees' new bytes until it uploads them; the
sub-trees beyond are encoded by the push's process itself."""


class _TooMuchToHashError(Exception):
    """A walker process's sub-tree has more to hash than it may send."""


class _Collector:
    """A walker process's uploader: keeps what the push's process will claim and upload."""

    def __init__(self) -> None:
        self.added: list[tuple[bytes, bytes]] = []

    def add(self, cid: bytes, data: memoryview | bytes) -> None:
        self.added.append((cid, bytes(data)))  # (a hash worker's buffer is reused)


@dataclass(slots=True)
class _UnitPush:
    """A sub-tree a walker process scanned and encoded (sent back whole, by pickling)."""

    prefix: str
    top: bytes
    fingerprint: bytes
    settled_all: bool
    encoded: bool
    """Its top folder was encoded again, not reused: the folder above cannot be reused."""
    node_ids: frozenset[bytes]
    chunk_ids: list[bytes]
    files: int
    size: int
    reused: int
    settled: list[tuple[str, bytes]]
    pending: list[tuple[str, CachedFolder, bool]]
    trusted_packs: list[bytes]
    prev: dict[str, CachedFolder]
    added: list[tuple[bytes, bytes]]
    """The nodes and chunks its process did not find in the index: (id, bytes)."""
    hashed: list[tuple[str, FileStamp, str, tuple[bytes, ...]]]
    hashed_bytes: int
    chunks_reused: int
    reused_bytes: int
    notes: dict[str, object]
    reused_folders: list[tuple[str, bytes]]

    @property
    def held(self) -> int:
        return sum(len(raw) for _, raw in self.added)


@dataclass(slots=True)
class _UnitJob:
    """What the walker processes of one push share: inherited through ``fork``, never
    pickled (the exclude test is a closure, the index an open table)."""

    root: str
    exclude: Exclude | None
    symlinks: SymlinkPolicy
    cache: StatCache
    index: ChunkIndex
    params: ChunkerParams
    trusted: bytes
    note: NoteFolder | None


_UNIT_JOB: _UnitJob | None = None


def _push_unit(unit: tuple[str, str]) -> _UnitPush | None:
    """In a walker process: scan and encode one sub-tree as the push's process would, or
    None to leave it to that process (a link, which is judged with the whole tree's; more to
    hash than :data:`_UNIT_HASH_BYTES`; anything that fails, which it then names)."""
    job = _UNIT_JOB
    assert job is not None
    path, prefix = unit
    # A connection of its own: one inherited through fork must not be used (sqlite's rule).
    cache = job.cache.reader()

    def known(key: str) -> bytes | None:
        row = cache.folder(key, with_ids=False)
        return None if row is None else row.fingerprint

    try:
        scan = _Scan(job.exclude, job.symlinks, _read_permission(), known, job.root,
                     listings={})
        _walk(scan, path, prefix)
        if scan.links or scan.big:
            return None
        _deepest_first(scan)
        with TaskPool(1, name="unit", serial=True) as pool:
            state = _PushState(job.index, _Collector(), pool, NULL_PROGRESS)
            tree = _TreePush(state, scan, cache, job.params, tree_mode=True, collect=False,
                             record=True, hash_total=0, trusted=job.trusted)
            tree.budget = _UNIT_HASH_BYTES
            tree.note = job.note
            tree.hashed = []
            return tree.encode_unit(prefix)
    except (CPVError, OSError, _TooMuchToHashError):
        return None
    finally:
        cache.close()


def _push_units(repo: Repository, root: Path, exclude: Exclude | None,
                symlinks: SymlinkPolicy, walkers: int, cache: StatCache,
                trusted: bytes, note: NoteFolder | None,
                progress: Progress = NULL_PROGRESS) -> dict[str, _UnitPush]:
    """Sub-trees of ``root`` scanned and encoded by ``walkers`` forked processes, by prefix.

    A push with 1 % of 10^6 files changed in every folder lists, looks up and encodes every
    folder again: alone, the push's process took 42-47 s, most of it per-file Python that
    these processes share out (docs/benchmarks.md). What a process found new comes back
    with it; nothing is uploaded until the push holds its lease and has checked that the
    index these processes judged by still holds (:func:`push`).
    """
    units = units_of(str(root), exclude, 4 * walkers)
    if not units:
        return {}
    cache.flush()  # the walkers read the cache through connections of their own
    repo.index.preload()
    global _UNIT_JOB
    _UNIT_JOB = _UnitJob(os.path.abspath(root), exclude, symlinks, cache, repo.index,
                         repo.config.chunker, trusted, note)
    out: dict[str, _UnitPush] = {}
    held = 0
    try:
        with walker_pool(walkers) as pool:
            for got in pool.imap_unordered(_push_unit, units):
                if got is None or held + got.held > _UNITS_HELD_BYTES:
                    continue  # scanned and encoded by the push's process
                held += got.held
                out[got.prefix] = got
                progress.advance("scan", got.files)
    finally:
        _UNIT_JOB = None
    return out


def _pack_list(index: ChunkIndex, row: CachedFolder,
               known: Mapping[bytes, bytes]) -> tuple[list[bytes], bytes] | None:
    """The packs holding a folder's nodes and chunks, sorted, and each chunk's number among
    them (:attr:`CachedFolder.chunk_packs`); None if one is not indexed (a reader would miss
    it). ``known`` gives the pack of a chunk a trusted row recorded, unlooked up."""
    pack_of = index.pack_of
    by_chunk: list[bytes] = []
    for cid in split_ids(row.chunks):
        pack = known.get(cid)
        if pack is None:
            found = pack_of(cid)
            if found is None:
                return None
            pack = bytes.fromhex(found)
        by_chunk.append(pack)
    packs = set(by_chunk)
    for node in row.nodes:
        found = pack_of(node)
        if found is None:
            return None
        packs.add(bytes.fromhex(found))
    ordered = sorted(packs)
    number = {p: i for i, p in enumerate(ordered)}
    return ordered, encode_chunk_packs(number[p] for p in by_chunk)


def _entries_now(scan: _Scan, folder: _Folder) -> list[tuple[str, _Source | str]]:
    """A folder's entries as the push encodes them, listed again: files and links as sources,
    sub-folders by prefix, links as the scan judged them.

    The folder may have changed since the scan, so names are checked again; a link or folder
    the scan did not see is refused (its checks need the whole tree) rather than pushed.
    """
    if scan.single is not None:
        return [(scan.single.relpath, scan.single)]
    out: list[tuple[str, _Source | str]] = []
    kept = scan.listings.pop(folder.prefix, None) if scan.listings is not None else None
    fresh = kept is None  # else listed and checked by the scan, moments ago (a walker's)
    for name, entry, st in (kept if kept is not None
                            else _list_folder(scan, folder.path, folder.prefix)):
        rel, path = folder.prefix + name, entry.path
        if _ISLNK(st.st_mode):
            target = _read_link(entry)
            if rel in scan.follow_dirs:
                out.append((name, rel + "/"))
            elif rel in scan.follow_files:
                out.append((name, scan.follow_files[rel]))
            elif rel not in scan.gone:
                if scan.links.get(rel, ("", None))[1] != target:
                    raise SourceChangedError(path)
                out.append((name, _Source.of(rel, path, st, target)))
            continue
        if fresh:
            _check_name(rel, name)
        if stat.S_ISDIR(st.st_mode):
            out.append((name, rel + "/"))
        else:
            if fresh:
                _check_readable(scan, path, st)
            out.append((name, _Source.of(rel, path, st)))
    return out


def _link_entry(src: _Source) -> FileEntry:
    assert src.link is not None
    return FileEntry(src.relpath, 0, 0o777, Hasher(src.link.encode()).hexdigest(), (),
                     link=src.link)


def _ingest_into(op: _Open, i: int, state: _PushState, src: _Source,
                 params: ChunkerParams) -> None:
    entry, stamp = _ingest(state, src, params)
    op.results[i] = (entry, stamp, True)
    with state.lock:
        op.left -= 1


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
