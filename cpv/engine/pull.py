"""Pull: a snapshot from a store into a folder, byte-identical, every byte verified.

Plan: resolve every chunk of every file to (pack, offset, length) through the index; group
chunks by pack and coalesce neighbours into ranged GETs of up to ``max_range`` bytes. Run: worker
threads fetch ranges into reusable buffers, check every chunk against its blake3 id (invariant
2), and ``pwrite`` it at its offset(s) into a temporary file beside the target. A file is renamed
into place only when all of its chunks are written; a failed pull removes its temporary files and
leaves every existing file as it was.

Files already present with the right content are left alone, and when a file is present with
*other* content (an older version), its chunks that the new version still contains are copied
from it locally instead of downloaded — pulling v0.2 over v0.1 fetches only what changed.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import stat
import threading
import time
from collections import defaultdict, deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cpv import osio
from cpv.engine.chunking import iter_file_chunks, new_read_buffer
from cpv.engine.hashing import Hasher, chunk_id
from cpv.engine.paths import Placement
from cpv.engine.snapshot import check_snapshot_matches
from cpv.engine.statcache import FileStamp, cache_key, settled
from cpv.engine.transfer import (
    ChunkWant,
    PackRange,
    TaskPool,
    TransferLimits,
    fetch_ranges,
    plan_ranges,
)
from cpv.errors import (
    CPVError,
    FormatError,
    IntegrityError,
    LocalIOError,
    ObjectNotFoundError,
    TransferError,
)
from cpv.pathrules import in_scope
from cpv.progress import NULL_PROGRESS, Progress, counted

if TYPE_CHECKING:
    from cpv.engine.repository import Repository
    from cpv.engine.snapshot import FileEntry, Snapshot
    from cpv.engine.statcache import StatCache

log = logging.getLogger(__name__)



@dataclass(frozen=True, slots=True)
class PullResult:
    """What a pull did."""

    snapshot_id: str
    files: int
    files_written: int
    files_unchanged: int
    total_bytes: int
    downloaded_bytes: int
    local_bytes: int
    chunks_fetched: int
    requests: int
    seconds: float


@dataclass(eq=False, slots=True)
class _Target:
    """One file a pull writes. Slotted and lean: a pull of 10^5 files holds 10^5 of them."""

    entry: FileEntry
    path: Path
    remaining: int
    dirs: _Dirs
    mode: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    created: bool = False
    done: bool = False
    discarded: bool = False  # the pull failed: a straggling worker must not re-create ``tmp``
    fsync: bool = False
    written: tuple[int, int, int, int] | None = None
    """(dev, inode, size, mtime_ns) of the file cpv wrote, taken before its rename; a whole
    ``os.stat_result`` per file cost 0.68 KiB (tracemalloc), 0.1 GB for 10^5 files."""

    @property
    def tmp(self) -> str:
        """The temporary name beside the target, derived when needed rather than stored."""
        folder, name = os.path.split(self.path)
        return os.path.join(folder, f".{name}.{self.dirs.tmp_tag}.tmp")

    def seal(self, fd: int) -> None:
        """Note the stamp of the written file and make sure it has its mode.

        The file was created with its permission bits already (one ``fchmod`` less per file,
        a few % of a 10^5-file pull), so only a umask that took bits away, or setuid, setgid
        and sticky bits (never given at create time), need the ``fchmod``; it does not change
        the mtime the stamp holds.
        """
        st = os.fstat(fd)
        if stat.S_IMODE(st.st_mode) != self.mode:
            osio.fchmod(fd, self.mode, self.tmp)
        self.written = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class _Dirs:
    """Parent folders of one pull, each created once, when its first file is written, and the
    tag of the pull's temporary names.

    Creating them lazily keeps a pull that fails early from leaving empty folders; creating
    each only once spared a 20,000-file pull 20,000 ``mkdir``+``stat`` calls (~15 % of it).
    """

    def __init__(self, tmp_tag: str) -> None:
        self.tmp_tag = tmp_tag
        self._made: set[str] = set()
        self._lock = threading.Lock()

    def ensure(self, folder: Path) -> None:
        key = str(folder)
        if key in self._made:
            return
        folder.mkdir(parents=True, exist_ok=True)
        with self._lock:
            self._made.add(key)


PULL_BATCH_FILES = 20_000
"""Files a pull plans, fetches and writes at once (its memory per file is one batch's)."""


# Where one fetched chunk goes: (file, offset in it) for every file that holds it.
_Dests = tuple[tuple[_Target, int], ...]
_Want = ChunkWant[_Dests]
_Range = PackRange[_Dests]


def select_files(snapshot: Snapshot, paths: Sequence[str] | None) -> list[FileEntry]:
    """The files of ``snapshot`` under any of ``paths`` (exact files or folder prefixes).

    Each file costs its depth, not the number of ``paths``: a filtered pull hands over one
    path per chosen file (100,000 of a 10^6-file version made this 10^11 comparisons).
    """
    wanted = [p.strip("/") for p in paths or ()]
    if not wanted or any(w in ("", ".") for w in wanted):
        return list(snapshot.files)
    inside = in_scope(wanted)
    chosen = [f for f in snapshot.files if inside(f.path)]
    met: set[str] = set()
    for f in chosen:
        rel = f.path
        while rel not in met:
            met.add(rel)
            cut = rel.rfind("/")
            if cut < 0:
                break
            rel = rel[:cut]
    missing = [w for w in wanted if w not in met]
    if missing:
        raise LocalIOError(
            f"not in this version: {missing[0]}",
            path=missing[0],
            hint="list the version's files (cpv ls) and check the path",
        )
    return chosen


def pull(
    repo: Repository,
    snapshot_id: str,
    dest: Path,
    *,
    paths: Sequence[str] | None = None,
    progress: Progress = NULL_PROGRESS,
    limits: TransferLimits | None = None,
    reuse_local: bool = True,
    fsync: bool = False,
    keep_special_bits: bool = False,
    replace: Collection[str] = (),
    expected: Mapping[str, tuple[int, str]] | None = None,
    snapshot: Snapshot | None = None,
    _fallback: bool = True,
) -> PullResult:
    """Write the files of snapshot ``snapshot_id`` under ``dest``.

    Args:
        repo: the opened store.
        snapshot_id: the snapshot to restore.
        dest: destination folder (created if needed).
        paths: restrict to these files or folders of the snapshot.
        progress: receives "download" byte counts.
        limits: concurrency and memory knobs.
        reuse_local: copy chunks that existing files at the targets already hold instead of
            downloading them.
        fsync: flush each file to disk before renaming it into place. Off by default: the
            rename alone already guarantees a crash leaves the old or the new file, never a torn
            one, and a pulled file can always be pulled again; on for power-loss durability.
        keep_special_bits: restore setuid, setgid and sticky bits as stored. Off by default:
            a version from someone else must not make setuid files (as root, setuid-root ones).
        replace: paths (relative to ``dest``) of the version being replaced, which the pull
            may delete where the new version needs a folder in place of a file or a file in
            place of a folder. Anything else in the way is the user's, and the pull refuses.
        expected: what the manifest naming this snapshot lists (path -> (size, blake3));
            a snapshot that holds anything else is refused before anything is written
            (:func:`~cpv.engine.snapshot.check_snapshot_matches`).
        snapshot: the snapshot ``snapshot_id``, when the caller has read it already through
            :meth:`Repository.load_snapshot` (paths checked): a 10^6-file snapshot is ~0.5 GB
            of objects and 10 s to read, not to be held twice.

    Every path and symlink of the snapshot has passed the shared path rule and the link graph
    check when it was loaded (:meth:`Snapshot.decode`), and every obstacle on the disk is
    judged here, before a single byte is written (invariant 7).

    Raises:
        UnsafePathError: the snapshot names a path or symlink that would escape ``dest``, or a
            symlink of the user's redirects a write.
        IntegrityError: the store returned bytes that do not match their id, or lacks a chunk,
            or the snapshot does not match ``expected``.
        LocalIOError: the destination cannot be written (disk full, permissions), or a file
            or folder of the user's own stands where the version needs to write.
        StoreError/TransferError: the store failed. Existing files are left as they were.
    """
    repo.use_snapshot_locations(snapshot_id)
    if repo.partial_index and _fallback:
        # A fresh machine: this version's share of the index only. If it is stale (a gc
        # moved a chunk), nothing was kept of the failed try; read the whole index and go on.
        try:
            return pull(repo, snapshot_id, dest, paths=paths, progress=progress, limits=limits,
                        reuse_local=reuse_local, fsync=fsync,
                        keep_special_bits=keep_special_bits, replace=replace,
                        expected=expected, snapshot=snapshot, _fallback=False)
        except (ObjectNotFoundError, IntegrityError, FormatError) as exc:
            log.info("this version's locations are stale (%s); reading the whole index", exc)
            repo.refresh_index()
    limits = limits or TransferLimits()
    started = time.monotonic()
    requests_before = repo.store.request_count
    down_before = repo.store.bytes_down
    if snapshot is None:
        snapshot = repo.load_snapshot(snapshot_id)
    if expected is not None:
        check_snapshot_matches(snapshot, expected, snapshot_id=snapshot_id)
    files = select_files(snapshot, paths)
    dest = Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LocalIOError(f"cannot create {dest}: {exc.strerror}", path=str(dest)) from exc
    # Invariant 7: every target is checked before a single byte is written. Only the
    # decision is kept: the paths are made again batch by batch (a Path per file of 10^6
    # cost half a gigabyte).
    placement = Placement(dest, replace)
    folders: set[str] = set()
    progress.begin("check", total=len(files), unit="files")
    try:
        for f in counted(files, progress, "check"):
            placement.check(f.path)
            folders.add(f.path.rpartition("/")[0])
    finally:
        progress.end("check")
    placement.clear()
    _remove_stale_temps({dest.joinpath(*d.split("/")) if d else dest for d in folders})
    del folders
    mode_mask = 0o7777 if keep_special_bits else 0o777
    cache = repo.stat_cache
    # One random tag per pull: file names already make the temp names unique within it.
    dirs = _Dirs(f"cpv-{os.getpid()}-{secrets.token_hex(4)}")
    dest_key = os.path.abspath(dest)
    _check_available(repo, files, dest, dest_key, mode_mask, cache, limits,
                     reuse_local=reuse_local)
    unchanged = written = fetched = local_bytes = total = 0
    unsettled: deque[tuple[str, FileStamp, str, tuple[bytes, ...]]] = deque()
    in_place = _InPlace() if reuse_local else None
    progress.begin("download", total=None, unit="B")
    try:
        # Batches of files, each planned, fetched and written before the next is looked
        # at: what a pull holds per file (targets, wanted chunks, ranges) is one batch's,
        # whatever the version's size. A chunk that two batches need is fetched twice.
        for at in range(0, len(files), PULL_BATCH_FILES):
            batch = files[at : at + PULL_BATCH_FILES]
            if cache is not None:  # the batch's rows in one query: its paths are close
                low, high = min(f.path for f in batch), max(f.path for f in batch)
                cache.load_range(cache_key(dest_key, low), cache_key(dest_key, high) + "\0")
            targets: list[_Target] = []
            if in_place is not None:
                in_place.sources = {}
            for entry in batch:
                if entry.is_symlink:
                    continue
                target = _target_of(repo, entry, dest, dest_key, mode_mask, cache, dirs,
                                    in_place, fsync=fsync)
                if target is None:
                    unchanged += 1
                else:
                    targets.append(target)
            ranges, local_wants = _plan(repo, targets,
                                        in_place.sources if in_place is not None else {}, limits)
            total += sum(r.length for r in ranges)
            progress.set_total("download", total)
            try:
                for t in targets:
                    if t.remaining == 0:
                        _finish_empty(t)
                local_bytes += _copy_local(local_wants)
                _fetch_all(repo, ranges, limits, progress)
            except BaseException:
                for t in targets:
                    _discard(t)
                raise
            leftover = [t.entry.path for t in targets if not t.done]
            if leftover:
                raise TransferError(f"pull incomplete: {leftover[0]} was not fully written")
            if cache is not None:
                for t in targets:
                    stamp = _stamp_of_written(t)
                    if stamp is not None:
                        unsettled.append((cache_key(dest_key, t.entry.path), stamp,
                                          t.entry.blake3, t.entry.chunks))
                # A file written within the stat cache's racy window is not recorded
                # (``settled``): a batch's files wait for later batches to go by first.
                while unsettled and settled(unsettled[0][1]):
                    cache.record(*unsettled.popleft())
            written += len(targets)
            fetched += sum(len(r.wants) for r in ranges)
        for entry in files:
            if entry.is_symlink:
                _place_symlink(entry, dest.joinpath(*entry.path.split("/")))
                written += 1
    finally:
        progress.end("download")
        if cache is not None:
            for row in unsettled:  # those still in the racy window are left out here
                cache.record(*row)
            cache.flush()
    return PullResult(
        snapshot_id=snapshot_id,
        files=len(files),
        files_written=written,
        files_unchanged=unchanged,
        total_bytes=sum(f.size for f in files),
        downloaded_bytes=repo.store.bytes_down - down_before,
        local_bytes=local_bytes,
        chunks_fetched=fetched,
        requests=repo.store.request_count - requests_before,
        seconds=time.monotonic() - started,
    )


def _check_available(
    repo: Repository, files: list[FileEntry], dest: Path, dest_key: str, mode_mask: int,
    cache: StatCache | None, limits: TransferLimits, *, reuse_local: bool,
) -> None:
    """Refuse, before the first batch writes a byte, a pull that would meet a chunk neither
    the store's index nor the file in place holds (IntegrityError, as :func:`_plan` says it).

    Only files with such a chunk are judged further, so a healthy store costs one index
    lookup per chunk here.
    """
    index = repo.index
    doubtful = [f for f in files if not f.is_symlink and any(c not in index for c in f.chunks)]
    in_place = _InPlace() if reuse_local else None
    dirs = _Dirs("unused")
    targets = [t for entry in doubtful
               if (t := _target_of(repo, entry, dest, dest_key, mode_mask, cache, dirs,
                                   in_place)) is not None]
    if targets:  # raises for what is missing
        _plan(repo, targets, in_place.sources if in_place is not None else {}, limits)


@dataclass(slots=True)
class _InPlace:
    """What the files already at the targets can give a pull (``reuse_local``): the chunks
    found in them, and the one buffer they are read with."""

    sources: dict[bytes, tuple[Path, int, int]] = field(default_factory=dict)
    buf: memoryview | None = None

    def index(self, path: Path, repo: Repository) -> None:
        if self.buf is None:
            self.buf = new_read_buffer(repo.config.chunker)
        _index_local_chunks(path, repo, self.sources, self.buf)


def _target_of(
    repo: Repository, entry: FileEntry, dest: Path, dest_key: str, mode_mask: int,
    cache: StatCache | None, dirs: _Dirs, in_place: _InPlace | None, *, fsync: bool = False,
) -> _Target | None:
    """What writing ``entry`` takes, or None when the file in place already holds it (its
    mode set); with ``in_place``, the chunks of the file in place are indexed first. The one
    judgement of a file, for the availability check and for each batch."""
    path = dest.joinpath(*entry.path.split("/"))
    mode = entry.mode & mode_mask
    if _already_there(path, entry, mode, cache, cache_key(dest_key, entry.path)):
        return None
    if in_place is not None and entry.size > repo.config.chunker.min_size and path.exists():
        in_place.index(path, repo)
    return _Target(entry, path, remaining=len(entry.chunks), dirs=dirs, mode=mode, fsync=fsync)


def _stamp_of_written(t: _Target) -> FileStamp | None:
    """The stat-cache stamp of the file this pull wrote, or None if the path now holds another.

    A file replaced since its rename (``cp -p`` or ``rsync -a``: new inode, same size, old
    mtime) must not be recorded with the pulled hash, or status and push would never see the
    change. Only the inode cpv wrote, with the size and mtime it had before the rename, is
    recorded. ctime is taken from the path because the rename itself may change it.
    """
    w = t.written
    if w is None:
        return None
    try:
        st = os.stat(t.path, follow_symlinks=False)
    except OSError:
        return None
    if (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) != w:
        log.info("%s changed after the pull wrote it; not caching its hash", t.path)
        return None
    return FileStamp.of(st)


def _already_there(
    path: Path, entry: FileEntry, mode: int, cache: object, cache_key: str
) -> bool:
    """True if ``path`` is a regular file with exactly ``entry``'s content (and now ``mode``)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return False
    if not stat.S_ISREG(st.st_mode) or st.st_size != entry.size:
        return False
    from cpv.engine.statcache import StatCache

    digest = None
    if isinstance(cache, StatCache):
        hit = cache.lookup(cache_key, FileStamp.of(st))
        digest = hit.blake3 if hit else None
    if digest is None:
        hasher = Hasher()
        try:
            with open(path, "rb") as fh:
                while block := fh.read(8 * 1024 * 1024):
                    hasher.update(block)
        except OSError:
            return False
        digest = hasher.hexdigest()
    if digest != entry.blake3:
        return False
    if stat.S_IMODE(st.st_mode) != mode:
        try:
            os.chmod(path, mode)
        except OSError:
            return False
    return True


def _index_local_chunks(
    path: Path, repo: Repository, out: dict[bytes, tuple[Path, int, int]], buf: memoryview
) -> None:
    """Remember which chunks an existing (older) file at the target holds."""
    try:
        st = os.stat(path, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode):
            return
        for offset, data in iter_file_chunks(path, repo.config.chunker, buffer=buf):
            out.setdefault(chunk_id(data), (path, offset, len(data)))
    except (OSError, CPVError) as exc:
        log.debug("not reusing %s: %s", path, exc)


def _plan(
    repo: Repository,
    targets: list[_Target],
    local_sources: dict[bytes, tuple[Path, int, int]],
    limits: TransferLimits,
) -> tuple[list[_Range], dict[Path, list[tuple[bytes, int, int, list[tuple[_Target, int]]]]]]:
    """Resolve chunks to pack ranges (or local copies); fail before writing if any is missing."""
    index = repo.index
    needed: dict[bytes, list[tuple[_Target, int]]] = defaultdict(list)
    for t in targets:
        offset = 0
        sizes_known = len(t.entry.chunks) == 1
        for cid in t.entry.chunks:
            needed[cid].append((t, offset))
            loc = index.get(cid)
            if loc is not None:
                offset += loc.length
            elif cid in local_sources:
                offset += local_sources[cid][2]
            elif not sizes_known:
                raise IntegrityError(
                    f"{t.entry.path}: chunk {cid.hex()[:16]}… is not in the store's index",
                    object_id=cid.hex(),
                )
    by_pack: dict[str, list[_Want]] = defaultdict(list)
    local: dict[Path, list[tuple[bytes, int, int, list[tuple[_Target, int]]]]] = defaultdict(list)
    for cid, dests in needed.items():
        src = local_sources.get(cid)
        if src is not None:
            local[src[0]].append((cid, src[1], src[2], dests))
            continue
        loc = index.get(cid)
        if loc is None:
            raise IntegrityError(
                f"{dests[0][0].entry.path}: chunk {cid.hex()[:16]}… is missing from the store",
                object_id=cid.hex(),
            )
        by_pack[loc.pack_id].append(ChunkWant(cid, loc.offset, loc.length, tuple(dests)))
    # A local source file may itself be a target being replaced: copy before anything renames.
    return plan_ranges(by_pack, limits), local


def _copy_local(local: dict[Path, list[tuple[bytes, int, int, list[tuple[_Target, int]]]]]) -> int:
    """Copy reusable chunks from the old files; every source is opened before any rename.

    A target finished here replaces its old file, which may still be the source of chunks for
    another target; the descriptors opened first keep reading the old content.
    """
    fds: dict[Path, int] = {}
    copied = 0
    try:
        for src in local:
            try:
                fds[src] = os.open(src, os.O_RDONLY | osio.O_BINARY | osio.O_CLOEXEC)
            except OSError as exc:
                raise _local_error(exc, src) from exc
        for src, wants in local.items():
            for cid, offset, length, dests in sorted(wants, key=lambda w: w[1]):
                data = osio.pread(fds[src], length, offset)
                if len(data) != length or chunk_id(data) != cid:
                    raise IntegrityError(
                        f"{src} changed while cpv was reusing its chunks; re-run the pull"
                    )
                for target, at in dests:
                    _write(target, at, memoryview(data))
                copied += length
    finally:
        for fd in fds.values():
            os.close(fd)
    return copied


def _fetch_all(
    repo: Repository, ranges: list[_Range], limits: TransferLimits, progress: Progress
) -> None:
    with TaskPool(limits.workers, name="fetch", serial=limits.serial) as pool:
        fetch_ranges(repo.store, ranges, pool=pool, deliver=_deliver, on_damaged=_damaged,
                     progress=progress, phase="download")


def _damaged(w: _Want, r: _Range, actual: bytes) -> None:
    raise IntegrityError(
        f"pack {r.pack_id} holds damaged data for chunk {w.chunk_id.hex()[:16]}… "
        f"(needed by {w.ref[0][0].entry.path})",
        object_id=r.pack_id,
        expected=w.chunk_id.hex(),
        actual=actual.hex(),
    )


def _deliver(r: _Range, view: memoryview) -> None:
    """Write a verified range: chunks that follow each other in the pack and in one file go
    out in a single ``pwrite`` (a 16 MiB range of a big file is one syscall, not sixteen)."""
    run: tuple[_Target, int, int, int] | None = None  # target, file offset, view offset, chunks
    run_len = 0
    for w in r.wants:
        pos = w.offset - r.start
        for target, at in w.ref:
            if (
                run is not None
                and len(w.ref) == 1
                and target is run[0]
                and at == run[1] + run_len
                and pos == run[2] + run_len
            ):
                run = (run[0], run[1], run[2], run[3] + 1)
                run_len += w.length
                continue
            if run is not None:
                _write(run[0], run[1], view[run[2] : run[2] + run_len], chunks=run[3])
            if len(w.ref) == 1:
                run, run_len = (target, at, pos, 1), w.length
            else:
                run = None
                _write(target, at, view[pos : pos + w.length])
    if run is not None:
        _write(run[0], run[1], view[run[2] : run[2] + run_len], chunks=run[3])


def _open_tmp(t: _Target) -> int:
    try:
        t.dirs.ensure(t.path.parent)
        # Owner read/write always: a file of several ranges is opened again for each (as
        # another user than root, a 0o444 file could not be); seal() narrows it afterwards.
        fd = os.open(t.tmp, os.O_WRONLY | os.O_CREAT | (0 if t.created else os.O_EXCL),
                     (t.mode & 0o777) | 0o600)
        if not t.created:
            t.created = True
            if len(t.entry.chunks) > 1:
                os.ftruncate(fd, t.entry.size)
        return fd
    except OSError as exc:
        raise _local_error(exc, t.tmp) from exc


# Writes into one file from several threads serialise on the file's lock in the kernel, and a
# thread waiting for it spins: one 16 MiB pwrite per range cost 1-2 more CPU-s per GiB (system
# time) than writes of about a chunk, which let the writers interleave.
_WRITE_SLICE = 1024 * 1024


def _write(t: _Target, offset: int, data: memoryview, *, chunks: int = 1) -> None:
    """Write ``chunks`` consecutive chunks of ``t``; the writer of its last renames it into place.

    Only creating the file and counting down happen under the file's lock: the ``pwrite``
    itself runs unlocked, so all workers write into one big file at once (chunks never overlap).
    The file is opened per write rather than kept open: a data set may have thousands of files
    in flight, and an open/close is negligible next to a megabyte-sized chunk.
    """
    with t.lock:
        if t.done or t.discarded:
            return
        fd = _open_tmp(t)
    try:
        written = 0
        while written < len(data):
            piece = data[written : written + _WRITE_SLICE]
            written += osio.pwrite(fd, piece, offset + written)
        with t.lock:
            t.remaining -= chunks
            last = t.remaining == 0
        if last:
            if t.fsync:
                osio.fdatasync(fd)
            t.seal(fd)
            os.close(fd)
            fd = -1
            os.replace(t.tmp, t.path)
            with t.lock:
                t.done = True
    except OSError as exc:
        raise _local_error(exc, t.path) from exc
    finally:
        if fd >= 0:
            os.close(fd)


def _finish_empty(t: _Target) -> None:
    with t.lock:
        fd = _open_tmp(t)
        try:
            try:
                t.seal(fd)
            finally:
                os.close(fd)
            os.replace(t.tmp, t.path)
        except OSError as exc:
            raise _local_error(exc, t.path) from exc
        t.done = True


def _place_symlink(entry: FileEntry, path: Path) -> None:
    assert entry.link is not None
    tmp = path.parent / f".{path.name}.cpv-{os.getpid()}-{secrets.token_hex(4)}.lnk"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(entry.link, tmp)
        os.replace(tmp, path)
    except OSError as exc:
        raise _local_error(exc, path) from exc


_TEMP_NAME = re.compile(r"\..+\.cpv-(\d+)-[0-9a-f]{8}\.(?:tmp|lnk)")


def _remove_stale_temps(folders: set[Path]) -> None:
    """Delete temporary files that a killed pull left (their process is gone).

    Temporary names carry the writer's pid, so a pull running at the same time in another
    process keeps its files.
    """
    for folder in folders:
        try:
            names = os.listdir(folder)
        except OSError:
            continue
        for name in names:
            match = _TEMP_NAME.fullmatch(name)
            if match is None:
                continue
            pid = int(match.group(1))
            if pid == os.getpid() or _pid_alive(pid):
                continue
            try:
                os.unlink(folder / name)
                log.debug("removed %s left by an interrupted pull", folder / name)
            except OSError as exc:
                log.debug("could not remove stale temporary file %s: %s", folder / name, exc)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def _discard(t: _Target) -> None:
    with t.lock:
        t.discarded = True
        if not t.done:
            try:
                os.unlink(t.tmp)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove temporary file %s: %s", t.tmp, exc)


def _local_error(exc: OSError, path: str | Path) -> LocalIOError:
    if exc.errno == errno.ENOSPC:
        return LocalIOError(
            f"disk full while writing {path}",
            path=str(path),
            hint="free disk space and re-run; existing files were left as they were",
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return LocalIOError(
            f"cannot write {path}: {exc.strerror}",
            path=str(path),
            hint="check the folder's permissions",
        )
    return LocalIOError(f"cannot write {path}: {exc.strerror}", path=str(path))
