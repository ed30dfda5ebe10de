"""The one owner of "which files a recorded version holds".

A schema-2 (pointer) manifest names its store snapshot and a summary, not the files: the file
list lives in the store only, so Git's growth per version does not depend on the file count.
Everything that needs the files of a version (ls, diff, status's baseline fallback, pull's
selection and checks, the change counts of a new manifest) asks :class:`FileLists`, never
``Manifest.files``; a schema-1 manifest still lists its files and is answered from that list.

Lists are streamed, one entry at a time, in path order (:meth:`FileLists.iter_files`,
:meth:`FileLists.changes`): ``cpv ls`` and ``cpv diff`` of 10^6 files never hold a version's
list as Python objects; a diff of two tree snapshots (store format 2) reads only the sub-trees
that differ. Only :meth:`FileLists.files` (pull's planning, a push's change counts) builds a
whole list.

Lists read whole from the store are kept under ``.cpv/local/filelists/<snapshot id>``. A snapshot id
is the hash of the snapshot's content, so an entry never goes stale; each entry carries the
blake3 of its own payload so a damaged copy is dropped and read again. Deleting the folder is
always safe: it only costs re-reading snapshots from the store. With the list cached, ``cpv ls``
and ``cpv diff`` of versions this machine has seen work without the store.

What a snapshot may hold is decided by the path rule (:mod:`cpv.pathrules`), which the engine
applies when it decodes a snapshot; what a manifest promises about it (file count, total size,
one file named after a single-file tracked path) is checked here before anything uses the list.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Final, NamedTuple, NoReturn, Protocol, TypeVar

from cpv.engine.hashing import Hasher, chunk_id
from cpv.engine.snapshot import FileEntry, Snapshot, check_snapshot_matches
from cpv.engine.tree import merge_by_path
from cpv.errors import IntegrityError, NoStoreError, StoreUnreachableError
from cpv.localmemo import keep_out_of_git
from cpv.progress import NULL_PROGRESS, Progress
from cpv.versioning import ChangeCounts, Manifest

if TYPE_CHECKING:
    from cpv.engine.repository import Repository

log = logging.getLogger(__name__)

CACHE_DIR: Final = ".cpv/local/filelists"
_MAGIC: Final = b"CPVLIST2"
"""Then the blake3 of the payload, then the payload: zlib'd lines, each a JSON array of up to
:data:`_ROWS` rows, so that a list is read back a block at a time (a ``CPVLIST1`` list, one
JSON array, is read again from the store)."""
_HASH_LEN: Final = 32
_ROWS: Final = 4096
"""Rows per line of a cached list: one ``json.loads`` per line, RAM bounded."""


class ListedFile(NamedTuple):
    """One entry of a version: a file (``link`` None) or a symlink to ``link``.

    A named tuple rather than a dataclass: a 10^6-file list is built from the cache in one
    C-level pass, about four times faster than frozen dataclass instances.
    """

    path: str
    size: int
    blake3: str
    link: str | None = None


class _Entry(Protocol):
    """What a version's summary is checked on: a listed file or a snapshot's own entry."""

    @property
    def path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def link(self) -> str | None: ...


_E = TypeVar("_E", bound=_Entry)


def snapshot_listing(snapshot: Snapshot) -> tuple[ListedFile, ...]:
    """A decoded (so path-checked) snapshot's entries, sorted by path as the snapshot is."""
    return tuple(map(listed, snapshot.files))


def listed(f: FileEntry) -> ListedFile:
    """What a version's list keeps of a snapshot entry."""
    return ListedFile(f.path, f.size, f.blake3, f.link)


def within(files: Iterable[ListedFile], under: str) -> Iterator[ListedFile]:
    """The entries of a path-ordered list that are ``under`` or below it ("" = all).

    Entries below a folder are contiguous in path order: the scan stops after them."""
    if not under:
        yield from files
        return
    below = under + "/"
    seen = False
    for f in files:
        if f.path == under or f.path.startswith(below):
            seen = True
            yield f
        elif seen and f.path > under:
            return


def table_of(files: Iterable[ListedFile]) -> dict[str, tuple[int, str]]:
    """``path -> (size, blake3 or ->target)``, as baselines keep a folder's files."""
    return {f.path: table_entry(f) for f in files}


def table_entry(f: ListedFile | FileEntry) -> tuple[int, str]:
    """One entry as baselines keep it: ``(size, blake3)``, or ``(size, "->" + target)``."""
    return (f.size, f"->{f.link}" if f.link is not None else f.blake3)


def regular(files: Iterable[ListedFile]) -> list[ListedFile]:
    """The regular files: what a manifest's summary counts (symlinks are not listed there)."""
    return [f for f in files if f.link is None]


def count_changes(
    before: Iterable[ListedFile] | None, after: Iterable[ListedFile]
) -> ChangeCounts:
    """Regular files added, changed (other content) and removed from ``before`` to ``after``."""
    old = {f.path: (f.size, f.blake3) for f in regular(before or ())}
    new = {f.path: (f.size, f.blake3) for f in regular(after)}
    changed = sum(1 for p, v in new.items() if p in old and old[p] != v)
    added = sum(1 for p in new if p not in old)
    return ChangeCounts(added=added, changed=changed, removed=len(old) - (len(new) - added))


def check_summary(manifest: Manifest, files: Iterable[_Entry], label: str) -> None:
    """Refuse a snapshot that is not the version its pointer manifest summarises.

    The snapshot id already pins the content; this catches a manifest whose summary lies about
    it (what a reviewer of ``git log`` trusts) and a single-file tracked path whose snapshot
    holds anything but that one file (nothing else may be written next to it).

    Raises:
        IntegrityError: naming the difference; nothing has been written.
    """
    for _ in checked(manifest, files, label):
        pass


def checked(manifest: Manifest, files: Iterable[_E], label: str) -> Iterator[_E]:
    """``files`` as they stream, then :func:`check_summary`'s verdict on the whole list.

    A single-file version is refused at its second entry, before it is passed on; the counts
    of a folder's version can only be judged after its last entry (IntegrityError then)."""
    count = total = entries = 0
    basename = manifest.path.rsplit("/", 1)[-1]
    for f in files:
        entries += 1
        if not manifest.is_dir and (entries > 1 or f.path != basename or f.link is not None):
            _refuse(manifest, label,
                    f"the single file {manifest.path!r} is not the snapshot's only entry")
        if f.link is None:
            count += 1
            total += f.size
        yield f
    if not manifest.is_dir and entries != 1:
        _refuse(manifest, label, f"the single file {manifest.path!r} is not the snapshot's "
                                 "only entry")
    if manifest.is_dir and (count, total) != (manifest.file_count, manifest.total_size):
        _refuse(manifest, label, f"it holds {count} file(s) of {total} bytes, the manifest says "
                                 f"{manifest.file_count} of {manifest.total_size}")


def _refuse(manifest: Manifest, label: str, problem: str) -> NoReturn:
    raise IntegrityError(
        f"{label}: snapshot {manifest.snapshot_id[:12]} does not match its manifest: "
        f"{problem}", object_id=manifest.snapshot_id,
        hint="the version was tampered with or its manifest names another snapshot; "
             "nothing was written")


def check_snapshot(manifest: Manifest, snapshot: Snapshot, label: str) -> None:
    """Refuse a snapshot that is not the one ``manifest`` describes (either schema)."""
    if manifest.files is None:
        check_summary(manifest, snapshot.files, label)
        return
    expected = {f.path: (f.size, f.blake3) for f in manifest.files}
    try:
        check_snapshot_matches(snapshot, expected, snapshot_id=manifest.snapshot_id)
    except IntegrityError as exc:
        raise IntegrityError(f"{label}: {exc.message}", hint=exc.hint) from exc


def expected_files(manifest: Manifest) -> dict[str, tuple[int, str]] | None:
    """What a schema-1 manifest lists, as the engine checks a snapshot against it; None for a
    pointer manifest, whose snapshot id already pins the content."""
    if manifest.files is None:
        return None
    return {f.path: (f.size, f.blake3) for f in manifest.files}


Pair = tuple[ListedFile | None, ListedFile | None]
"""One path of a diff: its entry in the older and in the newer version (None: absent)."""


class FileLists:
    """File lists of recorded versions, from the manifest (schema 1), the local cache, or the
    store. One per service; ``repository`` opens the store only when a list is not cached."""

    def __init__(self, workspace_root: Path, repository: Callable[[], Repository]) -> None:
        self._dir = workspace_root / CACHE_DIR
        self._repository = repository
        self._memo: dict[str, tuple[ListedFile, ...]] = {}
        self._snapshots: dict[str, Snapshot] = {}

    def files(self, manifest: Manifest, label: str) -> tuple[ListedFile, ...]:
        """Every entry of the version, sorted by path, checked against the manifest, whole.

        For what needs the list at once (a pull's plan, a push's change counts); listing and
        comparing use :meth:`iter_files` and :meth:`changes`, which hold no whole list.

        Raises:
            NoStoreError, ObjectNotFoundError, StoreUnreachableError: the list is not cached
                and the store cannot give it. IntegrityError: it is not the manifest's version.
        """
        if manifest.files is not None:
            # Schema 1 lists its regular files itself (never its symlinks): no store needed.
            return tuple(ListedFile(f.path, f.size, f.blake3) for f in manifest.files)
        listing = self._memo.get(manifest.snapshot_id)
        if listing is None:
            listing = tuple(self._rows(manifest.snapshot_id, ""))
            if manifest.snapshot_id not in self._snapshots:
                self._memo[manifest.snapshot_id] = listing
        check_summary(manifest, listing, label)
        return listing

    def iter_files(self, manifest: Manifest, label: str, *, under: str = ""
                   ) -> Iterator[ListedFile]:
        """The version's entries at or below ``under`` (a path in the tracked folder; "" for
        all), in path order, one at a time: from the manifest (schema 1), the local cache, or
        the store, whose tree snapshots then read only the nodes of that sub-tree.

        The whole version is checked against its manifest after its last entry (raising
        IntegrityError then; a single-file version before any); a sub-tree is what the
        snapshot, pinned by its id, holds there.
        """
        under = under.strip("/")
        if manifest.files is not None:
            rows: Iterable[ListedFile] = sorted(
                (ListedFile(f.path, f.size, f.blake3) for f in manifest.files),
                key=lambda f: f.path)
            yield from within(rows, under)
            return
        rows = self._rows(manifest.snapshot_id, under)
        yield from (rows if under else checked(manifest, rows, label))

    def changes(self, a: Manifest, b: Manifest, labels: tuple[str, str]
                ) -> tuple[list[Pair], int]:
        """The entries that differ from version ``a`` to ``b`` (other content or link target,
        in path order), and how many entries of ``a`` are unchanged.

        Two pointer versions in a store of format 2 are compared tree against tree: every
        sub-tree with the same id on both sides is skipped unread, so the cost is what
        changed. Otherwise (schema-1 manifests, a format-1 store, no store reachable but both
        lists cached) the two lists are merged as they stream, one entry of each at a time.
        """
        if a.files is None and b.files is None:
            repo = self._store_for_tree_diff(a, b)
            if repo is not None:
                pairs = [(listed(c.old) if c.old else None, listed(c.new) if c.new else None)
                         for c in repo.diff(a.snapshot_id, b.snapshot_id)]
                pairs = [p for p in pairs if _differ(*p)]
                entries = repo.snapshot_summary(a.snapshot_id)[0]
                return pairs, entries - sum(1 for old, _ in pairs if old is not None)
        out: list[Pair] = []
        unchanged = 0
        merged = merge_by_path(self.iter_files(a, labels[0]), self.iter_files(b, labels[1]),
                               where=f"{labels[0]}..{labels[1]}")
        for old, new in merged:
            if _differ(old, new):
                out.append((old, new))
            else:
                unchanged += 1
        return out, unchanged

    def _store_for_tree_diff(self, a: Manifest, b: Manifest) -> Repository | None:
        """The store, when a tree diff is possible; None to merge the lists instead (a
        format-1 store, or no store to reach while both lists are in the local cache)."""
        try:
            repo = self._repository()
        except (NoStoreError, StoreUnreachableError):
            if all((self._dir / m.snapshot_id).is_file() for m in (a, b)):
                return None
            raise
        return repo if repo.config.version >= 2 else None

    def snapshot(self, manifest: Manifest, label: str, *,
                 progress: Progress = NULL_PROGRESS) -> Snapshot:
        """The version's snapshot from the store (a pull needs its chunks), checked against
        the manifest; its list is cached on the way. ``progress`` is told of the files read
        (the "list" phase)."""
        # Read once per command: planning, the refusal check and the write of a pull all need
        # it, and a 100,000-file snapshot is megabytes (content-addressed: immutable).
        snapshot = self._snapshots.get(manifest.snapshot_id)
        if snapshot is None:
            snapshot = self._repository().load_snapshot(manifest.snapshot_id,
                                                        progress=progress)
            if len(self._snapshots) >= 8:
                self._snapshots.clear()
            self._snapshots[manifest.snapshot_id] = snapshot
        check_snapshot(manifest, snapshot, label)
        # Cached on disk, not listed in memory too: :meth:`_rows` lists the snapshot held
        # here (a 10^6-file list beside the snapshot was 80 MB more of a pull).
        self._cache(manifest.snapshot_id, snapshot.files)
        return snapshot

    def remember(self, snapshot_id: str, snapshot: Snapshot) -> tuple[ListedFile, ...]:
        """Keep the list of a snapshot just pushed or read (best effort on disk)."""
        listing = snapshot_listing(snapshot)
        self._memo[snapshot_id] = listing
        self._cache(snapshot_id, listing)
        return listing

    def _cache(self, snapshot_id: str, files: Sequence[ListedFile | FileEntry]) -> None:
        """Write a snapshot's list to the local cache, unless it is there (best effort)."""
        if not (self._dir / snapshot_id).exists():
            writer = _CacheWriter(self._dir, snapshot_id)
            writer.add(files)
            writer.commit()

    def _rows(self, snapshot_id: str, under: str) -> Iterator[ListedFile]:
        """A snapshot's entries at or below ``under``, in path order: from this command's
        memo, the local cache, or the store (a whole list read from there is cached)."""
        memo = self._memo.get(snapshot_id)
        if memo is not None:
            yield from within(memo, under)
            return
        snapshot = self._snapshots.get(snapshot_id)
        if snapshot is not None:
            yield from within(map(listed, snapshot.files), under)
            return
        cached = self._read(snapshot_id)
        if cached is not None:
            yield from within(cached, under)
            return
        files = map(listed, self._repository().iter_files(snapshot_id, under=under))
        if under:
            yield from files
            return
        writer = _CacheWriter(self._dir, snapshot_id)
        try:
            batch: list[ListedFile] = []
            for f in files:
                batch.append(f)
                if len(batch) >= _ROWS:
                    writer.add(batch)
                    yield from batch
                    batch = []
            writer.add(batch)
            writer.commit()  # the walk ended: every name and link was checked
            yield from batch
        finally:
            writer.discard()

    def _read(self, snapshot_id: str) -> Iterator[ListedFile] | None:
        """The cached list, its payload's hash checked before the first row; None if absent
        or damaged (then read from the store again)."""
        path = self._dir / snapshot_id
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        payload = memoryview(raw)[len(_MAGIC) + _HASH_LEN:]
        if not raw.startswith(_MAGIC):
            log.debug("cached file list %s has an older layout; reading it again", path)
            return None
        if raw[len(_MAGIC):len(_MAGIC) + _HASH_LEN] != chunk_id(payload):
            log.warning("cached file list %s is damaged; reading it from the store again", path)
            return None
        return _parse(payload, path)


def _differ(old: ListedFile | None, new: ListedFile | None) -> bool:
    """Whether a path's entry changed in a way a diff shows: content, or link target."""
    return (old is None or new is None or old.blake3 != new.blake3 or old.link != new.link)


def _parse(payload: memoryview, path: Path) -> Iterator[ListedFile]:
    """The rows of a cached list (hash already checked), a block at a time."""
    inflate = zlib.decompressobj()
    pending = b""
    for start in range(0, len(payload), 1 << 20):
        pending += inflate.decompress(payload[start:start + (1 << 20)])
        cut = pending.rfind(b"\n")
        if cut < 0:
            continue
        yield from _rows_of(pending[:cut], path)
        pending = pending[cut + 1:]
    pending += inflate.flush()
    if pending.strip():
        yield from _rows_of(pending, path)


def _rows_of(lines: bytes, path: Path) -> Iterator[ListedFile]:
    """Rows from whole lines, each a JSON array of up to :data:`_ROWS` rows."""
    for line in lines.split(b"\n"):
        try:
            # The payload's hash matched: these are the rows _CacheWriter wrote, types too.
            rows = json.loads(line)
        except ValueError as exc:
            raise IntegrityError(
                f"cached file list {path} is unreadable: {exc}",
                hint=f"delete {path.parent} (always safe: it is a cache)") from exc
        yield from map(ListedFile._make, rows)


class _CacheWriter:
    """Writes one list into the cache as it streams: a temporary file (opened at the first
    compressed bytes, so a refused small list leaves not even the folder), renamed into place
    only by :meth:`commit`, so an interrupted or refused walk leaves nothing behind."""

    def __init__(self, folder: Path, snapshot_id: str) -> None:
        self._folder = folder
        self._final = folder / snapshot_id
        self._tmp = folder / f".{snapshot_id}.{os.getpid()}.tmp"
        self._fh: BinaryIO | None = None
        self._failed = False
        self._zip = zlib.compressobj(1)  # the rows are mostly hex digests: 6 only cost CPU
        self._hash = Hasher()

    def add(self, files: Sequence[ListedFile | FileEntry]) -> None:
        for start in range(0, len(files), _ROWS):
            rows = [[f.path, f.size, f.blake3, f.link] for f in files[start:start + _ROWS]]
            text = json.dumps(rows, separators=(",", ":"), ensure_ascii=False) + "\n"
            self._put(self._zip.compress(text.encode("utf-8", "surrogateescape")))

    def _put(self, data: bytes) -> None:
        if self._failed or not data:
            return
        try:
            if self._fh is None:
                self._folder.mkdir(parents=True, exist_ok=True)
                keep_out_of_git(self._folder.parent)
                self._fh = self._tmp.open("wb")
                self._fh.write(_MAGIC + bytes(_HASH_LEN))
            self._fh.write(data)
            self._hash.update(data)
        except OSError as exc:
            log.debug("could not cache the file list %s: %s", self._final.name, exc)
            self.discard()

    def commit(self) -> None:
        self._put(self._zip.flush())
        if self._fh is None:
            return
        try:
            self._fh.seek(len(_MAGIC))
            self._fh.write(self._hash.digest())
            self._fh.close()
            self._fh = None
            os.replace(self._tmp, self._final)
        except OSError as exc:
            log.debug("could not cache the file list %s: %s", self._final.name, exc)
            self.discard()

    def discard(self) -> None:
        self._failed = True
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self._tmp.unlink(missing_ok=True)


__all__ = ["CACHE_DIR", "FileLists", "ListedFile", "Pair", "check_snapshot", "check_summary",
           "checked", "count_changes", "expected_files", "listed", "regular", "snapshot_listing",
           "table_entry", "table_of", "within"]
