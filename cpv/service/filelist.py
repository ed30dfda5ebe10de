"""The one owner of "which files a recorded version holds".

A schema-2 (pointer) manifest names its store snapshot and a summary, not the files: the file
list lives in the store only, so Git's growth per version does not depend on the file count.
Everything that needs the files of a version (ls, diff, status's baseline fallback, pull's
selection and checks, the change counts of a new manifest) asks :class:`FileLists`, never
``Manifest.files``; a schema-1 manifest still lists its files and is answered from that list.

Lists read from the store are kept under ``.cpv/local/filelists/<snapshot id>``. A snapshot id
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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final, NamedTuple

from cpv.engine.hashing import chunk_id
from cpv.engine.snapshot import Snapshot, check_snapshot_matches
from cpv.errors import IntegrityError
from cpv.versioning import ChangeCounts, Manifest

if TYPE_CHECKING:
    from cpv.engine.repository import Repository

log = logging.getLogger(__name__)

CACHE_DIR: Final = ".cpv/local/filelists"
_MAGIC: Final = b"CPVLIST1"
_HASH_LEN: Final = 32


class ListedFile(NamedTuple):
    """One entry of a version: a file (``link`` None) or a symlink to ``link``.

    A named tuple rather than a dataclass: a 10^6-file list is built from the cache in one
    C-level pass, about four times faster than frozen dataclass instances.
    """

    path: str
    size: int
    blake3: str
    link: str | None = None


def snapshot_listing(snapshot: Snapshot) -> tuple[ListedFile, ...]:
    """A decoded (so path-checked) snapshot's entries, sorted by path as the snapshot is."""
    return tuple(ListedFile(f.path, f.size, f.blake3, f.link) for f in snapshot.files)


def table_of(files: Iterable[ListedFile]) -> dict[str, tuple[int, str]]:
    """``path -> (size, blake3 or ->target)``, as baselines keep a folder's files."""
    return {f.path: (f.size, f"->{f.link}" if f.link is not None else f.blake3) for f in files}


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


def check_summary(manifest: Manifest, files: Sequence[ListedFile], label: str) -> None:
    """Refuse a snapshot that is not the version its pointer manifest summarises.

    The snapshot id already pins the content; this catches a manifest whose summary lies about
    it (what a reviewer of ``git log`` trusts) and a single-file tracked path whose snapshot
    holds anything but that one file (nothing else may be written next to it).

    Raises:
        IntegrityError: naming the difference; nothing has been written.
    """
    files_only = regular(files)
    total = sum(f.size for f in files_only)
    problem = None
    if not manifest.is_dir:
        basename = manifest.path.rsplit("/", 1)[-1]
        if len(files) != 1 or files[0].path != basename or files[0].link is not None:
            problem = f"the single file {manifest.path!r} is not the snapshot's only entry"
    elif (len(files_only), total) != (manifest.file_count, manifest.total_size):
        problem = (f"it holds {len(files_only)} file(s) of {total} bytes, the manifest says "
                   f"{manifest.file_count} of {manifest.total_size}")
    if problem:
        raise IntegrityError(
            f"{label}: snapshot {manifest.snapshot_id[:12]} does not match its manifest: "
            f"{problem}", object_id=manifest.snapshot_id,
            hint="the version was tampered with or its manifest names another snapshot; "
                 "nothing was written")


def check_snapshot(manifest: Manifest, snapshot: Snapshot, label: str) -> None:
    """Refuse a snapshot that is not the one ``manifest`` describes (either schema)."""
    if manifest.files is None:
        check_summary(manifest, snapshot_listing(snapshot), label)
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


class FileLists:
    """File lists of recorded versions, from the manifest (schema 1), the local cache, or the
    store. One per service; ``repository`` opens the store only when a list is not cached."""

    def __init__(self, workspace_root: Path, repository: Callable[[], Repository]) -> None:
        self._dir = workspace_root / CACHE_DIR
        self._repository = repository
        self._memo: dict[str, tuple[ListedFile, ...]] = {}
        self._snapshots: dict[str, Snapshot] = {}

    def files(self, manifest: Manifest, label: str) -> tuple[ListedFile, ...]:
        """Every entry of the version, sorted by path, checked against the manifest.

        Raises:
            NoStoreError, ObjectNotFoundError, StoreUnreachableError: the list is not cached
                and the store cannot give it. IntegrityError: it is not the manifest's version.
        """
        if manifest.files is not None:
            # Schema 1 lists its regular files itself (never its symlinks): no store needed.
            return tuple(ListedFile(f.path, f.size, f.blake3) for f in manifest.files)
        listing = self._memo.get(manifest.snapshot_id)
        if listing is None:
            listing = self._read(manifest.snapshot_id)
        if listing is None:
            snapshot = self._repository().load_snapshot(manifest.snapshot_id)
            listing = self.remember(manifest.snapshot_id, snapshot)
        check_summary(manifest, listing, label)
        return listing

    def snapshot(self, manifest: Manifest, label: str) -> Snapshot:
        """The version's snapshot from the store (a pull needs its chunks), checked against
        the manifest; its list is cached on the way."""
        # Read once per command: planning, the refusal check and the write of a pull all need
        # it, and a 100,000-file snapshot is megabytes (content-addressed: immutable).
        snapshot = self._snapshots.get(manifest.snapshot_id)
        if snapshot is None:
            snapshot = self._repository().load_snapshot(manifest.snapshot_id)
            if len(self._snapshots) >= 8:
                self._snapshots.clear()
            self._snapshots[manifest.snapshot_id] = snapshot
        check_snapshot(manifest, snapshot, label)
        self.remember(manifest.snapshot_id, snapshot)
        return snapshot

    def remember(self, snapshot_id: str, snapshot: Snapshot) -> tuple[ListedFile, ...]:
        """Keep the list of a snapshot just pushed or read (best effort on disk)."""
        listing = snapshot_listing(snapshot)
        self._memo[snapshot_id] = listing
        if not (self._dir / snapshot_id).exists():
            self._write(snapshot_id, listing)
        return listing

    def _read(self, snapshot_id: str) -> tuple[ListedFile, ...] | None:
        path = self._dir / snapshot_id
        try:
            raw = path.read_bytes()
        except OSError:
            return None
        payload = raw[len(_MAGIC) + _HASH_LEN:]
        if (not raw.startswith(_MAGIC)
                or raw[len(_MAGIC):len(_MAGIC) + _HASH_LEN] != chunk_id(payload)):
            log.warning("cached file list %s is damaged; reading it from the store again", path)
            return None
        try:
            # The payload's hash matched: these are the rows _write wrote, types included.
            listing = tuple(map(ListedFile._make, json.loads(zlib.decompress(payload))))
        except (ValueError, TypeError, zlib.error) as exc:
            log.warning("cached file list %s is unreadable (%s); reading it again", path, exc)
            return None
        self._memo[snapshot_id] = listing
        return listing

    def _write(self, snapshot_id: str, listing: Sequence[ListedFile]) -> None:
        rows = [[f.path, f.size, f.blake3, f.link] for f in listing]
        payload = zlib.compress(json.dumps(rows, separators=(",", ":"),
                                           ensure_ascii=False).encode("utf-8"), 6)
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            ignore = self._dir.parent / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n")
            tmp = self._dir / f".{snapshot_id}.{os.getpid()}.tmp"
            tmp.write_bytes(_MAGIC + chunk_id(payload) + payload)
            os.replace(tmp, self._dir / snapshot_id)
        except OSError as exc:
            log.debug("could not cache the file list of %s: %s", snapshot_id, exc)


__all__ = ["CACHE_DIR", "FileLists", "ListedFile", "check_snapshot", "check_summary",
           "count_changes", "expected_files", "regular", "snapshot_listing", "table_of"]
