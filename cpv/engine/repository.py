"""A store opened as a cpv repository: its config, its merged index and local caches."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.engine.chunking import DEFAULT_CHUNKER, ChunkerParams
from cpv.engine.format import (
    DEFAULT_PACK_SIZE,
    FORMAT_VERSION,
    StoreConfig,
    init_store,
    read_store_config,
    upgrade_store_format,
)
from cpv.engine.hashing import chunk_id
from cpv.engine.index import (
    INDEX_PREFIX,
    ChunkIndex,
    PackRecord,
    index_of_packs,
    read_damage,
    read_locations,
    record_damage,
    still_current,
    sync_index,
    write_index,
)
from cpv.engine.locks import condemned_pack_ids, wait_while_gc_runs
from cpv.engine.packs import TRAILER_SIZE, decode_footer, pack_id_from_key, pack_key, parse_trailer
from cpv.engine.snapshot import (
    SNAPSHOT_PREFIX,
    FileEntry,
    Snapshot,
    check_snapshot_id,
    check_tree_paths,
    snapshot_key,
)
from cpv.engine.statcache import STAT_CACHE_FILE, StatCache
from cpv.engine.transfer import (
    CountingStore,
    TaskPool,
    TransferLimits,
    fetch_chunks,
)
from cpv.engine.tree import Change, Root, TreeWalker, decode_root, merge_by_path
from cpv.engine.tree import is_root as is_tree_root
from cpv.errors import CPVError, FormatError, ObjectNotFoundError, TreeDamagedError
from cpv.progress import NULL_PROGRESS, Progress, counted

if TYPE_CHECKING:
    from cpv.store import ObjectInfo, ObjectStore

log = logging.getLogger(__name__)

STALE_UPLOAD_SECONDS = 24 * 3600
SNAPSHOT_TOUCH_AGE_S = 600.0
"""An existing snapshot older than this is rewritten when a push reuses it (see engine/gc.py)."""
_COMPARED_BYTES = 4 * 1024 * 1024
"""An existing snapshot up to this size is read back and compared before a push reuses it."""


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    """A snapshot as listed: id, when it was stored, and what it holds."""

    snapshot_id: str
    stored_at: float
    files: int
    total_size: int


class Repository:
    """The engine's handle on one store. Not thread-safe; one per operation or process.

    Args:
        store: where the bytes live.
        config: the store's parsed ``config``.
        cache_dir: a folder for this user's caches (index copies, stat cache); None disables
            caching, which costs re-downloads and re-hashing but is always correct.
    """

    def __init__(self, store: ObjectStore, config: StoreConfig, *, cache_dir: Path | None) -> None:
        self.store = store if isinstance(store, CountingStore) else CountingStore(store)
        self.config = config
        self.cache_root = cache_dir
        self.cache_dir = cache_dir / "stores" / config.store_id if cache_dir else None
        self._index: ChunkIndex | None = None
        self._stat_cache: StatCache | None = None

    @classmethod
    def init(
        cls,
        store: ObjectStore,
        *,
        chunker: ChunkerParams = DEFAULT_CHUNKER,
        pack_size: int = DEFAULT_PACK_SIZE,
        cache_dir: Path | None = None,
        version: int = FORMAT_VERSION,
    ) -> Repository:
        """Create a store (or open the existing one: init is idempotent)."""
        config = init_store(store, chunker=chunker, pack_size=pack_size, version=version)
        return cls(store, config, cache_dir=cache_dir)

    @classmethod
    def open(cls, store: ObjectStore, *, cache_dir: Path | None = None) -> Repository:
        """Open an existing store; NoStoreError if it has no config."""
        return cls(store, read_store_config(store), cache_dir=cache_dir)

    @property
    def url(self) -> str:
        return self.store.url

    @property
    def index(self) -> ChunkIndex:
        if self._index is None:
            self._index = sync_index(self.store, self.cache_dir)
            if self._index.damaged_ids:
                self._index_unindexed_packs(self._index)
        return self._index

    def _index_unindexed_packs(self, index: ChunkIndex) -> None:
        """Read the footers of packs no readable index object names (a damaged one did).

        In memory only, so that a damaged index object never blocks an intact version; the
        next push (:meth:`recover_orphan_packs`) or :func:`~cpv.engine.repair.repair` writes
        them into a new index object.
        """
        known = index.pack_ids() | condemned_pack_ids(self.store)
        for obj in self.store.list("packs/"):
            pid = pack_id_from_key(obj.key)
            if pid is None or pid in known:
                continue
            try:
                index.add_pack(self.read_pack_entries(pid, size=obj.size))
                index.unpersisted.add(pid)
            except (FormatError, ObjectNotFoundError) as exc:
                log.warning("pack %s has an unreadable footer: %s", pid, exc)

    def use_snapshot_locations(self, snapshot_id: str) -> bool:
        """Index only the packs ``snapshot_id`` uses (``locations/<id>``), if nothing is loaded.

        What lets a fresh machine pull one version of a big store without downloading the
        whole index: the list names the packs, their footers say where each chunk is. Returns
        True when this partial index is in use; callers fall back to :meth:`refresh_index`
        when a chunk or pack turns out missing (the list is a hint; every byte is verified).
        """
        if self._index is not None:
            return False
        packs = read_locations(self.store, snapshot_id)
        if packs is None:
            return False
        records: dict[str, PackRecord] = {}
        lock = threading.Lock()

        def footer(pid: str) -> None:
            try:
                record = self.read_pack_entries(pid)
            except (FormatError, ObjectNotFoundError) as exc:
                log.info("pack %s of %s is unreadable (%s)", pid, snapshot_id[:12], exc)
                return
            with lock:
                records[pid] = record

        workers = max(1, min(TransferLimits().workers, len(packs)))
        with TaskPool(workers, name="footers") as pool:
            for pid in packs:
                pool.submit(footer, pid)
            pool.join()
        # In the list's order: the same first-copy rule as the index.
        index = index_of_packs([records[pid] for pid in packs if pid in records],
                               self.cache_dir)
        index.exclude(read_damage(self.store))
        index.partial = True
        self._index = index
        return True

    @property
    def partial_index(self) -> bool:
        """Whether the loaded index is one snapshot's locations only (see above)."""
        return self._index is not None and self._index.partial

    def refresh_index(self, *, keep_current: bool = False) -> ChunkIndex:
        """The store's index read again; with ``keep_current``, the loaded one when it is
        still what a new read would give (:func:`~cpv.engine.index.still_current`)."""
        if keep_current and self._index is not None and still_current(self.store, self._index):
            return self._index
        self._index = None
        return self.index

    @property
    def stat_cache(self) -> StatCache | None:
        if self._stat_cache is None and self.cache_root is not None:
            chunker = self.config.chunker
            key = ":".join(
                str(v)
                for v in (chunker.algorithm, chunker.min_size, chunker.avg_size,
                          chunker.max_size, chunker.seed)
            )
            if chunker.tensor_boundaries:  # cached chunk lists were cut by this rule
                key += ":tensor-boundaries"
            self._stat_cache = StatCache(self.cache_root / STAT_CACHE_FILE, chunker_key=key)
        return self._stat_cache

    def add_packs(self, records: list[PackRecord]) -> str | None:
        """Index durable packs (step 2 of invariant 1); returns the index id."""
        if not records:
            return None
        if self._index is not None and self._index.partial:
            self.refresh_index()  # a writer needs the whole index, never one version's part
        index_id = write_index(self.store, records, self.cache_dir)
        if self.cache_dir is not None and self.index.would_spill(
                sum(len(r.entries) for r in records)):
            # A first push of 10^6 files would hold ~220 B per chunk more in RAM (the entry,
            # its id, its location): read the index again instead, which puts it in the
            # on-disk table, the table the next open would have built anyway.
            self.refresh_index()
            return index_id
        for record in records:
            self.index.add_pack(record)
        self.index.index_ids.add(index_id)
        return index_id

    def load_snapshot(self, snapshot_id: str, *, check_paths: bool = True,
                      progress: Progress = NULL_PROGRESS) -> Snapshot:
        """The snapshot, id and schema checked; ``check_paths=False`` only for chunk readers.

        See :meth:`Snapshot.decode`: gc and verify must read a snapshot whose paths break the
        path rule (its chunks are live all the same); pull must not. A format-2 snapshot is
        read whole here (its ``node_ids`` say which tree nodes it needs), its files counted to
        ``progress`` ("list": 10 s at 10^6 files); callers that can stream use
        :meth:`iter_files` or :meth:`diff` instead.
        """
        raw = self._snapshot_bytes(snapshot_id)
        if not is_tree_root(raw):
            return Snapshot.decode(raw, snapshot_id=snapshot_id, check_paths=check_paths)
        root = self._tree_root(raw, snapshot_id)
        self.use_snapshot_locations(snapshot_id)
        walker = self._walker(snapshot_id, check_paths)
        progress.begin("list", total=root.files, unit="files")
        try:
            files = tuple(counted(walker.files(root.tree), progress, "list"))
        finally:
            progress.end("list")
        if check_paths:
            check_tree_paths(files)
        return Snapshot(files=files, meta=root.meta, tree_id=root.tree,
                        node_ids=frozenset(walker.node_ids))

    def needed_chunks(self, snapshot_id: str, *,
                      walked: set[bytes] | None = None) -> Iterator[bytes]:
        """Every chunk id a snapshot needs, tree nodes included, streamed (ids may repeat).

        For gc and its sweep: no file entries are built and no path rule applies (see
        :meth:`Snapshot.decode`), but a tree that cannot be read raises FormatError, never ends
        early, so liveness is exact or gc stops. ``walked``, shared across the snapshots of
        one gc, skips the sub-trees an earlier snapshot yielded already (their chunks are in
        the caller's set): 100 versions cost one tree plus what changed (see
        :attr:`TreeWalker.walked`).
        """
        raw = self._snapshot_bytes(snapshot_id)
        if not is_tree_root(raw):
            for f in Snapshot.decode(raw, snapshot_id=snapshot_id, check_paths=False).files:
                yield from f.chunks
            return
        root = self._tree_root(raw, snapshot_id)
        self.use_snapshot_locations(snapshot_id)
        walker = self._walker(snapshot_id, False)
        walker.walked = walked
        yield from walker.chunk_ids(root.tree)

    def iter_files(self, snapshot_id: str, *, check_paths: bool = True,
                   under: str = "") -> Iterator[FileEntry]:
        """A snapshot's files in path order without holding them all (format 2 streams).

        ``under`` (a folder or file path inside the snapshot) keeps that file or sub-tree
        only; format 2 then reads only the nodes down to it and below it.
        Names are checked as they are read; the checks that need the whole tree (links that
        climb out through other links) run after the last file, so a consumer that writes
        files must use :meth:`load_snapshot`, as pull does.
        """
        raw = self._snapshot_bytes(snapshot_id)
        under = under.strip("/")
        if not is_tree_root(raw):
            files = Snapshot.decode(raw, snapshot_id=snapshot_id, check_paths=check_paths).files
            # Held whole anyway; sorted so that every caller may rely on path order.
            yield from sorted((f for f in files if not under or f.path == under
                               or f.path.startswith(under + "/")), key=lambda f: f.path)
            return
        root = self._tree_root(raw, snapshot_id)
        self.use_snapshot_locations(snapshot_id)
        links: list[FileEntry] = []
        walker = self._walker(snapshot_id, check_paths)
        for f in walker.files_under(root.tree, under) if under else walker.files(root.tree):
            if f.link is not None:
                links.append(f)
            yield f
        if check_paths:
            check_tree_paths(links)

    def diff(self, old_id: str, new_id: str) -> Iterator[Change]:
        """Paths that differ from snapshot ``old_id`` to ``new_id``.

        Between two format-2 snapshots, every sub-tree (and every part of a split folder) with
        the same id on both sides is skipped unread: the cost is what changed, not the tree.
        """
        raw_a, raw_b = self._snapshot_bytes(old_id), self._snapshot_bytes(new_id)
        if is_tree_root(raw_a) and is_tree_root(raw_b):
            walker = self._walker(f"{old_id[:12]}..{new_id[:12]}", True)
            a, b = self._tree_root(raw_a, old_id), self._tree_root(raw_b, new_id)
            yield from walker.diff(a.tree, b.tree)
            return
        pairs = merge_by_path(self.iter_files(old_id), self.iter_files(new_id),
                              where=f"snapshot {old_id[:12]}..{new_id[:12]}")
        for before, after in pairs:
            if before != after:
                yield Change((before or after).path, before, after)  # type: ignore[union-attr]

    def _snapshot_bytes(self, snapshot_id: str) -> bytes:
        check_snapshot_id(snapshot_id)
        try:
            return self.store.get(snapshot_key(snapshot_id))
        except ObjectNotFoundError as exc:
            raise ObjectNotFoundError(
                exc.key,
                message=f"snapshot {snapshot_id} not found in store {self.url}",
                hint="was it pushed to another store? check 'cpv config get store.url'",
            ) from exc

    @staticmethod
    def _tree_root(raw: bytes, snapshot_id: str) -> Root:
        if chunk_id(raw).hex() != snapshot_id:
            raise FormatError(f"snapshot {snapshot_id} does not match its id (damaged)")
        return decode_root(raw, where=snapshot_id)

    def _walker(self, where: str, check_paths: bool) -> TreeWalker:
        return TreeWalker(lambda ids: self.read_chunks(ids, what=f"snapshot {where}"),
                          check_paths=check_paths, where=where)

    def read_chunks(self, ids: Sequence[bytes], *, what: str) -> dict[bytes, bytes]:
        """Small chunks (tree nodes) by id, each verified; FormatError names a missing one.

        A missing or damaged node makes the snapshot unreadable as a whole, which every
        caller must treat as "damaged", never as "empty": gc refuses to run on it.
        """
        index = self.index
        if self.partial_index and any(index.get(cid) is None for cid in ids):
            index = self.refresh_index()  # another snapshot's nodes: the whole index then
        try:
            return fetch_chunks(
                self.store, ids, locate=index.get, limits=TransferLimits(), name="tree",
                missing=lambda cid: TreeDamagedError(
                    f"{what}: tree node {cid.hex()} is missing from the store (damaged)",
                    object_id=cid.hex()),
                damaged=lambda w, r, actual: TreeDamagedError(
                    f"{what}: pack {r.pack_id} holds damaged data for tree node "
                    f"{w.chunk_id.hex()}", object_id=w.chunk_id.hex()))
        except (ObjectNotFoundError, FormatError) as exc:
            if self.partial_index:
                # Stale locations (a gc moved a node and swept its old pack): the whole index.
                self.refresh_index()
                return self.read_chunks(ids, what=what)
            if isinstance(exc, FormatError):
                raise
            raise TreeDamagedError(
                f"{what}: the store lost data this version needs ({exc.key} is missing)",
                object_id=exc.key, missing_pack=pack_id_from_key(exc.key) or "") from exc

    def save_snapshot(self, snapshot: Snapshot) -> tuple[str, bool]:
        """Store ``snapshot`` unless an identical one exists; returns (id, written)."""
        return self.save_snapshot_bytes(*snapshot.encode())

    def save_snapshot_bytes(self, snapshot_id: str, raw: bytes) -> tuple[str, bool]:
        """:meth:`save_snapshot` for a snapshot already encoded (a push that streams its tree
        encodes the root from counts, with no list of files to build a :class:`Snapshot`)."""
        key = snapshot_key(snapshot_id)
        try:
            age = time.time() - self._stat_if_holds(key, raw).mtime
        except ObjectNotFoundError:
            self.store.put(key, raw)
            return snapshot_id, True
        written = False
        if age > SNAPSHOT_TOUCH_AGE_S:
            # Restart its age so gc's grace period covers the time until Git names it.
            self.store.put(key, raw)
            written = True
        # Reusing an existing snapshot object: a gc that listed it as dead before we touched it
        # may be deleting it right now. Once no gc holds the lock and the object is still there,
        # no gc that saw the old object can delete it any more (docs/gc.md).
        while True:
            wait_while_gc_runs(self.store)
            try:
                self._stat_if_holds(key, raw)
                return snapshot_id, written
            except ObjectNotFoundError:
                self.store.put(key, raw)
                written = True

    def _stat_if_holds(self, key: str, raw: bytes) -> ObjectInfo:
        """The object at ``key`` if it holds ``raw``; ObjectNotFoundError if it is missing or
        holds anything else.

        An upload killed before its body arrived can leave an empty object under its key
        (SeaweedFS does: docs/store-contract.md), and a push that reused it as "the snapshot is
        already there" would record a version nothing can restore. The size tells that; a
        snapshot small enough to read back cheaply (a format-2 root, a small format-1 list) is
        also compared byte for byte.
        """
        info = self.store.stat(key)
        if info.size == len(raw) and (len(raw) > _COMPARED_BYTES or self.store.get(key) == raw):
            return info
        log.warning("%s in %s does not hold what its id names (%d bytes, %d expected): "
                    "writing it again", key, self.url, info.size, len(raw))
        raise ObjectNotFoundError(key)

    def list_snapshots(self) -> list[SnapshotInfo]:
        infos = []
        for obj in self.store.list(SNAPSHOT_PREFIX):
            sid = obj.key[len(SNAPSHOT_PREFIX) :]
            try:
                files, size = self.snapshot_summary(sid)
            except (FormatError, ObjectNotFoundError) as exc:
                log.warning("skipping unreadable snapshot %s: %s", sid, exc)
                continue
            infos.append(SnapshotInfo(sid, obj.mtime, files, size))
        infos.sort(key=lambda s: (s.stored_at, s.snapshot_id))
        return infos

    def snapshot_summary(self, snapshot_id: str) -> tuple[int, int]:
        """(file count, total size); a format-2 root says so itself, no tree is read."""
        raw = self._snapshot_bytes(snapshot_id)
        if is_tree_root(raw):
            root = self._tree_root(raw, snapshot_id)
            return root.files, root.size
        snap = Snapshot.decode(raw, snapshot_id=snapshot_id, check_paths=False)
        return len(snap.files), snap.total_size

    def read_pack_entries(self, pack_id: str, *, size: int | None = None) -> PackRecord:
        """Rebuild a pack's index entries from its own footer."""
        key = pack_key(pack_id)
        if size is None:
            size = self.store.stat(key).size
        if size < TRAILER_SIZE:
            raise FormatError(f"pack {pack_id} is too short to be a pack")
        footer_len = parse_trailer(
            self.store.get_range(key, size - TRAILER_SIZE, TRAILER_SIZE),
            pack_size=size,
            where=pack_id,
        )
        footer = self.store.get_range(key, size - TRAILER_SIZE - footer_len, footer_len)
        entries = decode_footer(footer, data_size=size - TRAILER_SIZE - footer_len, where=pack_id)
        return PackRecord(pack_id, size, tuple(entries))

    def recover_orphan_packs(self) -> int:
        """Index packs that were uploaded but never indexed (a push that died after them).

        This is what makes a re-run after a crash upload only what is missing: the chunks in
        such packs become known again instead of being uploaded a second time.
        """
        # Packs a gc condemned are orphans on purpose; indexing them again would only keep
        # dead data alive (it would be safe: a gc never deletes a pack an index names).
        index = self.index
        indexed = (index.pack_ids() - index.unpersisted) | condemned_pack_ids(self.store)
        orphans = []
        listed: set[str] = set()
        for obj in self.store.list("packs/"):
            pid = pack_id_from_key(obj.key)
            if pid is None:
                continue
            listed.add(pid)
            if pid not in indexed:
                orphans.append((pid, obj.size))
        # Invariant 9: an index entry whose pack is gone is never reused. Recording the loss
        # makes every reader prefer the copy this push is about to upload.
        missing = index.pack_ids() - listed
        if missing:
            log.warning("%d indexed pack(s) are missing from the store; their chunks will be "
                        "uploaded again", len(missing))
            for pid in sorted(missing):
                record_damage(self.store, pid, None)
            index.exclude(dict.fromkeys(missing))
        records = []
        for pid, size in orphans:
            try:
                records.append(self.read_pack_entries(pid, size=size))
            except (FormatError, ObjectNotFoundError) as exc:
                log.warning("ignoring unreadable orphan pack %s: %s", pid, exc)
        if records:
            self.add_packs(records)
            index.unpersisted.clear()
            log.info("recovered %d orphan pack(s) left by an interrupted push", len(records))
        return len(records)

    def abort_stale_uploads(self, *, older_than_s: float = STALE_UPLOAD_SECONDS) -> int:
        """Abort multipart uploads a crashed push left behind, once clearly abandoned.

        Recent ones may belong to a push running right now on another machine.
        """
        now = time.time()
        aborted = 0
        for pending in self.store.list_multipart("packs/"):
            if now - pending.initiated >= older_than_s:
                try:
                    self.store.abort_multipart(pending.key, pending.upload_id)
                    aborted += 1
                except CPVError as exc:
                    log.warning("could not abort stale upload %s: %s", pending.key, exc)
        return aborted

    def upgrade_format(self) -> tuple[int, int]:
        """Move this store to the newest format; returns (version before, version after).

        Under the gc lock, so that no gc of an older cpv (which would not see tree nodes as
        live) runs across the switch; one that starts later reads the new config and refuses
        the store ("upgrade cpv"). Raises StoreLockedError while a gc runs.
        """
        from cpv.engine.locks import GCLock

        before = self.config.version
        with GCLock(self.store):
            self.config, _ = upgrade_store_format(self.store)
        return before, self.config.version

    def index_keys(self) -> list[str]:
        return [o.key for o in self.store.list(INDEX_PREFIX)]

    def close(self) -> None:
        if self._stat_cache is not None:
            self._stat_cache.close()
            self._stat_cache = None

    def __enter__(self) -> Repository:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
