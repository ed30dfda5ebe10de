"""Garbage collection: delete what no live snapshot needs, never what one or a running push needs.

Two phases, so that pushes on other machines never have to stop (``docs/gc.md`` has the protocol
and the argument for why it is safe; restic's ordering rules and rustic's two-phase prune are the
models):

**Mark** (under the exclusive ``locks/gc`` lock):

1. Snapshots that no live root in the store names (``cpv/engine/roots.py``) and that are not
   younger than the grace period are deleted first: the reverse of invariant 1, so no snapshot
   is ever left pointing at data that is gone. Every remaining snapshot's chunks are live.
2. Each live chunk is assigned one pack that holds it. Packs with no live chunk are *condemned*;
   packs whose live share is below ``repack_threshold`` have their live chunks copied into new
   packs (through the push's :class:`~cpv.engine.transfer.PackUploader`) and are condemned too.
3. One new index object describing every surviving pack is written, and only then are the old
   index objects deleted. Pushes that start from now on cannot see condemned packs.
4. The push leases alive at this moment and the condemned packs are written to a
   ``gc/condemned/<id>`` record.

**Sweep** (same run or a later one): a record's packs are deleted once the record is older than
the grace period *and* none of the pushes it names is still running. Before deleting, every pack
that some index object names again is spared (a push re-indexed it), and every chunk some current
snapshot needs that only a condemned pack holds gets that pack re-indexed instead of deleted.

A gc killed at any point leaves a store in which every snapshot verifies; a re-run finishes the
work (deletes are idempotent, records stay until their packs are gone).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cpv.engine.hashing import chunk_id
from cpv.engine.index import (
    DAMAGE_PREFIX,
    INDEX_PREFIX,
    LOCATIONS_PREFIX,
    PackRecord,
    decode_index,
    read_damage,
    write_index,
)
from cpv.engine.locks import (
    DEFAULT_LEASE_STALE_S,
    DEFAULT_LOCK_STALE_S,
    DEFAULT_REFRESH_S,
    GCLock,
    condemned_pack_ids,
    iter_records,
    list_leases,
    server_now,
    write_record,
)
from cpv.engine.packs import TRAILER_SIZE, PackEntry, pack_id_from_key, pack_key
from cpv.engine.repository import SNAPSHOT_TOUCH_AGE_S
from cpv.engine.roots import live_for_gc
from cpv.engine.snapshot import SNAPSHOT_PREFIX, check_snapshot_id, snapshot_key
from cpv.engine.transfer import (
    ChunkWant,
    PackRange,
    PackUploader,
    TaskPool,
    TransferLimits,
    fetch_ranges,
    plan_ranges,
)
from cpv.errors import FormatError, ObjectNotFoundError, StoreError
from cpv.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from cpv.engine.repository import Repository

# SNAPSHOT_TOUCH_AGE_S: a push that reuses an existing snapshot older than this rewrites it, so
# its age restarts. The grace period must be longer for the grace to protect a snapshot between
# a push and the Git commit that names it.

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 24 * 3600.0
"""Snapshots and packs younger than this are never collected (other workspaces, running pushes)."""


@dataclass
class GCReport:
    """What :func:`collect_garbage` did (or, with ``dry_run``, would do).

    Attributes:
        snapshots_deleted: dead snapshots removed (or that would be).
        packs_condemned: packs this run marked for deletion (dead or repacked).
        packs_repacked: mostly-dead packs whose live chunks were copied into new packs.
        packs_deleted: packs actually deleted by this run's sweep.
        packs_rescued: condemned packs that a concurrent push needed, re-indexed instead.
        bytes_freed: bytes of deleted packs.
        would_free_bytes: bytes the condemned and repacked packs occupy beyond their live data.
        sweep_deferred: why some condemned packs were not deleted yet.
        missing_live: live snapshot ids the store does not hold (nothing to protect there).
        warnings: damage found on the way (dangling index entries, unreadable orphans).
    """

    dry_run: bool = False
    snapshots_total: int = 0
    snapshots_deleted: list[str] = field(default_factory=list)
    snapshots_kept: int = 0
    packs_total: int = 0
    packs_condemned: list[str] = field(default_factory=list)
    packs_repacked: list[str] = field(default_factory=list)
    packs_written: int = 0
    packs_deleted: list[str] = field(default_factory=list)
    packs_rescued: list[str] = field(default_factory=list)
    bytes_freed: int = 0
    bytes_repacked: int = 0
    would_free_bytes: int = 0
    index_objects_before: int = 0
    index_objects_after: int = 0
    uploads_aborted: int = 0
    leases_removed: int = 0
    sweep_deferred: list[str] = field(default_factory=list)
    missing_live: list[str] = field(default_factory=list)
    roots_live: int = 0
    requests: int = 0
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{verb} {len(self.snapshots_deleted)} snapshot(s); condemned "
            f"{len(self.packs_condemned)} pack(s) ({len(self.packs_repacked)} repacked); "
            f"{'would free' if self.dry_run else 'freed'} "
            f"{self.would_free_bytes if self.dry_run else self.bytes_freed} bytes"
        )
        if self.sweep_deferred:
            text += f"; {len(self.sweep_deferred)} deletion batch(es) deferred"
        return text


@dataclass
class _Pack:
    pack_id: str
    size: int
    mtime: float
    indexed: bool
    entries: dict[bytes, PackEntry] = field(default_factory=dict)

    @property
    def data_bytes(self) -> int:
        return sum(e.length for e in self.entries.values())


def collect_garbage(
    repo: Repository,
    *,
    live_snapshots: Iterable[str] = (),
    dry_run: bool = False,
    grace_period_s: float = DEFAULT_GRACE_S,
    repack_threshold: float = 0.5,
    break_stale_lock: bool = False,
    lock_stale_s: float = DEFAULT_LOCK_STALE_S,
    lease_stale_s: float = DEFAULT_LEASE_STALE_S,
    lock_refresh_s: float = DEFAULT_REFRESH_S,
    progress: Progress = NULL_PROGRESS,
    limits: TransferLimits | None = None,
) -> GCReport:
    """Delete snapshots and pack data that no live snapshot needs; see the module docstring.

    Args:
        repo: the opened store.
        live_snapshots: extra snapshot ids to keep, on top of what the store's roots keep. It
            can only protect, never condemn: liveness comes from the roots in the store
            (:func:`cpv.engine.roots.live_for_gc`), never from one clone's Git history.
            Snapshots younger than ``grace_period_s`` survive as well (a push records its root
            just after its snapshot).
        dry_run: take no lock, change nothing; the report says what would be deleted.
        grace_period_s: nothing younger than this is collected, and condemned packs wait this
            long before they are deleted. Keep it well above the longest push (default 24 h).
        repack_threshold: packs whose live share is below this are rewritten (0 disables).
        break_stale_lock: take over a gc lock that was not refreshed for ``lock_stale_s``.
        lock_stale_s: age after which a gc lock counts as abandoned.
        lease_stale_s: age after which a push lease counts as belonging to a dead push.
        lock_refresh_s: how often the gc lock is rewritten; pushes waiting on a gc treat a lock
            that missed three refreshes as left by a dead gc.
        progress: receives "gc" object counts.
        limits: concurrency for repacking.

    Raises:
        MigrationNeededError: the store holds snapshots but records no roots (a format-1 store
            that was never migrated); nothing was deleted.
        StoreLockedError: another gc holds the lock (or ours was broken while we ran).
        FormatError: a snapshot that must survive cannot be read, so liveness is unknown;
            nothing was deleted.
        StoreError: the store failed; what was done so far is safe, re-run to finish.
    """
    if not 0.0 <= repack_threshold < 1.0:
        raise ValueError("repack_threshold must be in [0, 1)")
    if grace_period_s < 0:
        raise ValueError("grace_period_s must be >= 0")
    if grace_period_s < SNAPSHOT_TOUCH_AGE_S:
        log.warning(
            "gc grace period %.0f s is below %.0f s: snapshots pushed moments ago but not yet "
            "recorded as a root in the store may be collected",
            grace_period_s, SNAPSHOT_TOUCH_AGE_S,
        )
    extra = {check_snapshot_id(s) for s in live_snapshots}
    limits = limits or TransferLimits()
    started = time.monotonic()
    requests_before = repo.store.request_count
    report = GCReport(dry_run=dry_run)
    if dry_run:
        live = live_for_gc(repo) | extra
        report.roots_live = len(live)
        _mark(repo, report, live=live, now=time.time(), grace_s=grace_period_s,
              repack_threshold=repack_threshold, lock=None, limits=limits, progress=progress,
              lease_stale_s=lease_stale_s)
        report.seconds = time.monotonic() - started
        report.requests = repo.store.request_count - requests_before
        return report
    with GCLock(
        repo.store, stale_s=lock_stale_s, break_stale=break_stale_lock, refresh_s=lock_refresh_s
    ) as lock:
        # Roots are read under the lock: a forget or tag written after this is seen by the
        # next gc, and what this one keeps is a superset of what any root named when it began.
        live = live_for_gc(repo) | extra
        report.roots_live = len(live)
        _mark(repo, report, live=live, now=lock.acquired_at, grace_s=grace_period_s,
              repack_threshold=repack_threshold, lock=lock, limits=limits, progress=progress,
              lease_stale_s=lease_stale_s)
        _sweep(repo, report, grace_s=grace_period_s, lease_stale_s=lease_stale_s, lock=lock)
        report.uploads_aborted = repo.abort_stale_uploads(
            older_than_s=max(grace_period_s, 24 * 3600.0)
        )
    repo.refresh_index()
    report.seconds = time.monotonic() - started
    report.requests = repo.store.request_count - requests_before
    return report


# -- mark -----------------------------------------------------------------------------------


def _mark(
    repo: Repository,
    report: GCReport,
    *,
    live: set[str],
    now: float,
    grace_s: float,
    repack_threshold: float,
    lock: GCLock | None,
    limits: TransferLimits,
    progress: Progress,
    lease_stale_s: float,
) -> None:
    store = repo.store
    dry_run = lock is None
    cutoff = now - grace_s

    # 1. Snapshots: decide, read the survivors (all of them: liveness must be exact), delete
    #    the dead first so nothing left can point at what goes next.
    # Format-2 trees are read through the index: it must include every push finished so far.
    repo.refresh_index()
    listed = {o.key[len(SNAPSHOT_PREFIX) :]: o for o in store.list(SNAPSHOT_PREFIX)}
    report.snapshots_total = len(listed)
    report.missing_live = sorted(live - listed.keys())
    for sid in report.missing_live:
        log.warning("live snapshot %s is not in store %s; nothing to keep for it", sid, repo.url)
    dead = sorted(sid for sid, o in listed.items() if sid not in live and o.mtime <= cutoff)
    # Only the set of needed chunk ids is kept, streamed from each snapshot: RAM grows with
    # the store's unique chunks, not with versions times files.
    # Tree nodes shared by versions are walked once (content addressing: same id, same
    # sub-tree), so 100 versions of which each changed 1% cost one tree plus the changes.
    survivors: set[str] = set()
    needed: set[bytes] = set()
    walked: set[bytes] = set()
    for sid in sorted(listed.keys() - set(dead)):
        try:
            needed.update(repo.needed_chunks(sid, walked=walked))
            survivors.add(sid)
        except ObjectNotFoundError:
            # Deleted under us cannot happen under the lock; tolerate it anyway. Its walk may
            # have stopped half-way, so no node it marked as walked can be trusted to be.
            walked.clear()
            continue
        except FormatError as exc:
            raise FormatError(
                f"gc stopped before deleting anything: snapshot {sid} cannot be read ({exc}), "
                "so what it needs is unknown",
                hint="run 'cpv verify'; remove or repair that snapshot before collecting garbage",
            ) from exc
    progress.begin("gc", total=None, unit="objects")
    if lock is not None:
        lock.check_held()
        for n, sid in enumerate(dead, 1):
            if n % 200 == 0:
                lock.check_held()
            store.delete(snapshot_key(sid))
            progress.advance("gc", 1)
        # A snapshot's locations (a read hint, engine/index.py) go with it, and so do those a
        # push left behind when it died before its snapshot.
        gone = set(dead)
        for obj in store.list(LOCATIONS_PREFIX):
            sid = obj.key[len(LOCATIONS_PREFIX):]
            if sid in gone or (sid not in listed and obj.mtime <= cutoff):
                store.delete(obj.key)
    report.snapshots_deleted = dead
    report.snapshots_kept = len(survivors)

    # 2. What the index says, and what is really there.
    index_keys = [o.key for o in store.list(INDEX_PREFIX)]
    report.index_objects_before = len(index_keys)
    packs: dict[str, _Pack] = {}
    for obj in store.list("packs/"):
        pid = pack_id_from_key(obj.key)
        if pid is not None:
            packs[pid] = _Pack(pid, obj.size, obj.mtime, indexed=False)
    report.packs_total = len(packs)
    dangling: set[str] = set()
    damaged_index = False
    for key in index_keys:
        try:
            raw = store.get(key)
        except ObjectNotFoundError:
            continue
        index_id = key[len(INDEX_PREFIX) :]
        try:
            if chunk_id(raw).hex() != index_id:
                raise FormatError(f"index object {index_id} does not match its id (damaged)")
            for cid, loc in decode_index(raw, where=index_id):
                pack = packs.get(loc.pack_id)
                if pack is None:
                    dangling.add(loc.pack_id)
                    continue
                pack.indexed = True
                pack.entries.setdefault(cid, PackEntry(cid, loc.offset, loc.length))
        except FormatError as exc:
            # Never fatal: what it described is read from the pack footers below, and the
            # rewritten index replaces it.
            report.warnings.append(f"{exc}; rebuilt from pack footers")
            damaged_index = True
    for pid in sorted(dangling):
        report.warnings.append(f"index names pack {pid} which is missing; its entries are dropped")
    # Packs an earlier run condemned are the sweep's business, unless an index names them again
    # (a push re-indexed them because it needs them): then they are ordinary packs once more.
    already = {
        pid for pid in condemned_pack_ids(store) if not (pid in packs and packs[pid].indexed)
    }
    for pack in packs.values():
        young = pack.mtime > cutoff
        if pack.indexed or pack.pack_id in already or (young and not damaged_index):
            continue
        if pack.size < TRAILER_SIZE:
            # Too short to hold a chunk: an upload killed before its body (SeaweedFS keeps
            # such an empty object). Nothing to adopt; dead once past the grace period.
            continue
        # An old orphan (a push that died long ago, or a gc run that died mid-way): read its
        # footer, so a live chunk only it holds is adopted rather than lost.
        try:
            record = repo.read_pack_entries(pack.pack_id, size=pack.size)
        except (FormatError, ObjectNotFoundError) as exc:
            report.warnings.append(f"orphan pack {pack.pack_id} is unreadable ({exc}); left alone")
            pack.mtime = float("inf")  # treat as young: never touched
            continue
        pack.entries = {e.chunk_id: e for e in record.entries}
        # A young pack a damaged index object named: keep it indexed in the rewrite.
        pack.indexed = pack.indexed or young

    # 3. Assign each needed chunk one holder; prefer packs that must stay anyway, then fuller ones.
    # A copy known damaged (damage records) is never chosen while a good one exists, so the
    # good copy a repair wrote is what survives.
    damage = read_damage(store)
    holders: dict[bytes, list[_Pack]] = defaultdict(list)
    spare: dict[bytes, list[_Pack]] = defaultdict(list)
    for pack in packs.values():
        bad = damage.get(pack.pack_id, frozenset())
        for cid in pack.entries:
            if cid in needed:
                if bad is None or cid in bad:
                    spare[cid].append(pack)
                else:
                    holders[cid].append(pack)
    for cid, plist in spare.items():
        if cid not in holders:
            holders[cid] = plist  # no good copy: keep the doubtful one rather than nothing
    count = dict.fromkeys(packs, 0)
    for plist in holders.values():
        for pack in plist:
            count[pack.pack_id] += 1
    live_bytes: dict[str, int] = defaultdict(int)
    chosen: dict[str, list[PackEntry]] = defaultdict(list)
    unlocated = 0
    for cid in needed:
        holding = holders.get(cid)
        if not holding:
            unlocated += 1
            continue
        best = max(holding, key=lambda p: (p.mtime > cutoff, count[p.pack_id], p.pack_id))
        entry = best.entries[cid]
        live_bytes[best.pack_id] += entry.length
        chosen[best.pack_id].append(entry)
    if unlocated:
        report.warnings.append(
            f"{unlocated} chunk(s) needed by surviving snapshots are in no pack; run 'cpv verify'"
        )

    condemn: list[str] = []
    repack: list[_Pack] = []
    keep: list[_Pack] = []
    for pack in sorted(packs.values(), key=lambda p: p.pack_id):
        if pack.pack_id in already:
            continue  # the sweep decides about it
        if pack.mtime > cutoff:
            if pack.indexed:
                keep.append(pack)
            continue  # young: maybe a running push's; never touched
        if not pack.entries:
            if not pack.indexed and pack.size < TRAILER_SIZE:
                condemn.append(pack.pack_id)  # an old empty orphan: nothing is lost
                report.would_free_bytes += pack.size
            continue  # else an unreadable orphan, left alone above
        share = live_bytes[pack.pack_id] / max(1, pack.data_bytes)
        if live_bytes[pack.pack_id] == 0:
            condemn.append(pack.pack_id)
            report.would_free_bytes += pack.size
        elif share < repack_threshold:
            repack.append(pack)
            report.would_free_bytes += pack.size - live_bytes[pack.pack_id]
        else:
            keep.append(pack)
    report.packs_condemned = condemn + [p.pack_id for p in repack]
    report.packs_repacked = [p.pack_id for p in repack]
    if dry_run:
        report.bytes_repacked = sum(live_bytes[p.pack_id] for p in repack)
        progress.end("gc")
        return
    assert lock is not None

    # 4. Repack: copy live chunks into new packs; they are durable before any index names them.
    new_records: list[PackRecord] = []
    if repack:
        new_records, failed = _repack(repo, repack, chosen, limits=limits, progress=progress)
        for pack in failed:
            report.warnings.append(f"pack {pack.pack_id} has damaged live data; not repacked")
            report.packs_condemned.remove(pack.pack_id)
            report.packs_repacked.remove(pack.pack_id)
            keep.append(pack)
        report.packs_written = len(new_records)
        report.bytes_repacked = sum(sum(e.length for e in r.entries) for r in new_records)

    # 5. One new index for every survivor, written before the old ones go (invariant 1 reversed).
    changed = bool(report.packs_condemned or dangling or new_records or len(index_keys) > 1)
    changed = changed or damaged_index
    changed = changed or any(not p.indexed for p in keep)
    if changed:
        records = [PackRecord(p.pack_id, p.size, tuple(p.entries.values())) for p in keep]
        records += new_records
        new_key = INDEX_PREFIX + write_index(store, records, repo.cache_dir) if records else ""
        lock.check_held()
        for n, key in enumerate(index_keys, 1):
            if key != new_key:
                store.delete(key)
                progress.advance("gc", 1)
            if n % 200 == 0:
                lock.check_held()
    report.index_objects_after = len(list(store.list(INDEX_PREFIX)))

    # 6. Record what is condemned with the pushes alive now: their index may still name it.
    if report.packs_condemned:
        leases = [
            lease.holder_id for lease in list_leases(store, now=server_now(store))
            if lease.age_s < lease_stale_s
        ]
        write_record(store, report.packs_condemned, leases)
    progress.end("gc")


def _repack(
    repo: Repository,
    packs: list[_Pack],
    chosen: dict[str, list[PackEntry]],
    *,
    limits: TransferLimits,
    progress: Progress,
) -> tuple[list[PackRecord], list[_Pack]]:
    """Copy each pack's live chunks, checked against their ids, into new packs.

    A pack is read the way pull reads (``fetch_ranges``: coalesced ranges, in parallel), one
    pack at a time, so memory stays at one pack's live bytes plus the range buffers. A pack
    that is gone or holds a damaged chunk is left as it is (reported, not repacked).
    """
    store = repo.store
    failed: list[_Pack] = []
    with TaskPool(limits.workers, name="repack", serial=limits.serial) as pool, PackUploader(
        store, pool=pool, pack_size=repo.config.pack_size, limits=limits, progress=progress
    ) as uploader:
        for pack in packs:
            wants = [ChunkWant(e.chunk_id, e.offset, e.length, None) for e in chosen[pack.pack_id]]
            blobs: dict[int, tuple[bytes, bytes]] = {}
            problems: list[str] = []

            def keep(r: PackRange[None], view: memoryview, blobs: dict[int, tuple[bytes, bytes]]
                     = blobs) -> None:
                for w in r.wants:
                    at = w.offset - r.start
                    blobs[w.offset] = (w.chunk_id, bytes(view[at : at + w.length]))

            def damaged(w: ChunkWant[None], r: PackRange[None], _actual: bytes,
                        problems: list[str] = problems) -> None:
                problems.append(f"chunk {w.chunk_id.hex()[:16]}… in pack {r.pack_id} is damaged")

            def unreadable(r: PackRange[None], exc: StoreError,
                           problems: list[str] = problems) -> None:
                if not isinstance(exc, ObjectNotFoundError):
                    raise exc
                problems.append(str(exc))

            fetch_ranges(store, plan_ranges({pack.pack_id: wants}, limits), pool=pool,
                         deliver=keep, on_damaged=damaged, on_unreadable=unreadable)
            if problems:
                log.warning("not repacking %s: %s", pack.pack_id, problems[0])
                failed.append(pack)
                continue
            for offset in sorted(blobs):
                cid, data = blobs[offset]
                uploader.add(cid, memoryview(data))
        records = uploader.finish()
    return records, failed


# -- sweep ----------------------------------------------------------------------------------


def _sweep(
    repo: Repository, report: GCReport, *, grace_s: float, lease_stale_s: float, lock: GCLock
) -> None:
    store = repo.store
    records = list(iter_records(store))
    if not records:
        return
    now = server_now(store)
    leases = list_leases(store, now=now)
    alive = {lease.holder_id for lease in leases if lease.age_s < lease_stale_s}
    for lease in leases:
        if lease.age_s >= 2 * lease_stale_s:
            store.delete(lease.key)  # a dead push's leftover; ignored anyway, just tidy
            report.leases_removed += 1
    ready = []
    for record in records:
        if now - record.written_at < grace_s:
            report.sweep_deferred.append(
                f"{len(record.packs)} pack(s) condemned {now - record.written_at:.0f} s ago wait "
                f"for the {grace_s:.0f} s grace period"
            )
        elif record.leases & alive:
            report.sweep_deferred.append(
                f"{len(record.packs)} pack(s) wait for {len(record.leases & alive)} push(es) "
                "that were running when they were condemned"
            )
        else:
            ready.append(record)
    if not ready:
        return
    doomed = set().union(*(r.packs for r in ready))
    # A pack also named by a record that is not ready waits for that record's pushes too.
    for record in records:
        if record not in ready:
            doomed -= record.packs

    # A pack any index object names is spared: a push re-indexed it.
    located: set[bytes] = set()
    for obj in store.list(INDEX_PREFIX):
        try:
            raw = store.get(obj.key)
        except ObjectNotFoundError:
            continue
        try:
            for cid, loc in decode_index(raw, where=obj.key):
                located.add(cid)
                if loc.pack_id in doomed:
                    doomed.discard(loc.pack_id)
                    report.packs_rescued.append(loc.pack_id)
        except FormatError as exc:
            # Its chunks count as unlocated, so the rescue below keeps any a snapshot needs.
            report.warnings.append(f"sweep: {exc}")
    # Every chunk of every snapshot must stay somewhere: re-index a condemned pack if it is the
    # only holder (a push that started before the mark deduplicated against it).
    needed: set[bytes] = set()
    walked: set[bytes] = set()
    repo.refresh_index()  # format-2 trees are read through it; pushes may have indexed more
    for obj in store.list(SNAPSHOT_PREFIX):
        try:
            needed.update(c for c in repo.needed_chunks(obj.key[len(SNAPSHOT_PREFIX) :],
                                                         walked=walked)
                          if c not in located)
        except (ObjectNotFoundError, FormatError) as exc:
            raise FormatError(f"gc sweep stopped: {exc}", hint="run 'cpv verify'") from exc
    if needed:
        rescued = rescue_chunks(repo, needed, candidates=doomed)
        doomed -= rescued
        report.packs_rescued.extend(sorted(rescued))

    sizes = {pid: o.size for o in store.list("packs/") if (pid := pack_id_from_key(o.key))}
    lock.check_held()
    for n, pid in enumerate(sorted(doomed), 1):
        if n % 200 == 0:
            lock.check_held()
        store.delete(pack_key(pid))
        if pid in sizes:
            report.packs_deleted.append(pid)
            report.bytes_freed += sizes[pid]
    for obj in store.list(DAMAGE_PREFIX):
        if obj.key[len(DAMAGE_PREFIX) :].split(".")[0] in doomed:
            store.delete(obj.key)  # the damaged pack is gone; its record has nothing to say
    for record in ready:
        store.delete(record.key)


def rescue_chunks(
    repo: Repository, chunk_ids: set[bytes], *, candidates: set[str] | None = None
) -> set[str]:
    """Re-index condemned packs that hold any of ``chunk_ids``; returns the packs re-indexed.

    A push calls this before publishing its snapshot when a gc ran meanwhile: the push may have
    deduplicated against a pack that gc then condemned. Writing an index object that names the
    pack is what un-condemns it (a sweep never deletes a pack an index names).
    """
    if candidates is None:
        candidates = condemned_pack_ids(repo.store)
    wanted = set(chunk_ids)
    found: list[PackRecord] = []
    for pid in sorted(candidates):
        if not wanted:
            break
        try:
            record = repo.read_pack_entries(pid)
        except (FormatError, ObjectNotFoundError) as exc:
            log.debug("condemned pack %s cannot be read: %s", pid, exc)
            continue
        if any(e.chunk_id in wanted for e in record.entries):
            found.append(record)
            wanted -= {e.chunk_id for e in record.entries}
    if found:
        repo.add_packs(found)
        log.info("re-indexed %d condemned pack(s) that a push still needs", len(found))
    return {r.pack_id for r in found}


__all__ = [
    "DEFAULT_GRACE_S", "SNAPSHOT_TOUCH_AGE_S", "GCReport", "collect_garbage", "rescue_chunks",
]
