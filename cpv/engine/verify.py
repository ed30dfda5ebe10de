"""Verify: does the store still hold every byte its snapshots need, undamaged?

Shallow (default): every chunk of every checked snapshot is in the index, and every pack the
index points to exists with a plausible size. Deep: additionally read every needed chunk back and
check its blake3, reading exactly as a pull does (:func:`~cpv.engine.transfer.plan_ranges` and
:func:`~cpv.engine.transfer.fetch_ranges`: coalesced ranged GETs in parallel, into reused
buffers), so checking a store costs about what restoring it would. The report names what is
damaged and which snapshots and files it affects, so a user knows which versions are safe, in the
spirit of pip's aggregated hash errors.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cpv.engine.packs import pack_id_from_key
from cpv.engine.snapshot import SNAPSHOT_PREFIX
from cpv.engine.transfer import (
    ChunkWant,
    PackRange,
    TaskPool,
    TransferLimits,
    fetch_ranges,
    plan_ranges,
)
from cpv.errors import FormatError, ObjectNotFoundError, StoreError, TreeDamagedError
from cpv.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from cpv.engine.repository import Repository


@dataclass
class VerifyReport:
    """Findings of :func:`verify`; ``ok`` is True when nothing is wrong."""

    snapshots_checked: int = 0
    chunks_checked: int = 0
    bytes_read: int = 0
    deep: bool = False
    seconds: float = 0.0
    unreadable_snapshots: dict[str, str] = field(default_factory=dict)
    missing_chunks: set[str] = field(default_factory=set)
    missing_packs: set[str] = field(default_factory=set)
    damaged_chunks: set[str] = field(default_factory=set)
    # pack id -> chunk ids read back damaged from it (deep only): what repair records
    damaged_at: dict[str, set[str]] = field(default_factory=dict)
    affected: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (
            self.unreadable_snapshots
            or self.missing_chunks
            or self.missing_packs
            or self.damaged_chunks
        )

    def summary(self) -> str:
        if self.ok:
            return f"ok: {self.snapshots_checked} snapshot(s), {self.chunks_checked} chunk(s)" + (
                f", {self.bytes_read} bytes re-hashed" if self.deep else ""
            )
        parts = []
        if self.missing_packs:
            parts.append(f"{len(self.missing_packs)} missing pack(s)")
        if self.missing_chunks:
            parts.append(f"{len(self.missing_chunks)} chunk(s) not in any index")
        if self.damaged_chunks:
            parts.append(f"{len(self.damaged_chunks)} damaged chunk(s)")
        if self.unreadable_snapshots:
            parts.append(f"{len(self.unreadable_snapshots)} unreadable snapshot(s)")
        return "damaged: " + ", ".join(parts) + f"; {len(self.affected)} snapshot(s) affected"


def verify(
    repo: Repository,
    *,
    snapshot_ids: Sequence[str] | None = None,
    deep: bool = False,
    progress: Progress = NULL_PROGRESS,
    limits: TransferLimits | None = None,
) -> VerifyReport:
    """Check snapshots (all by default) against the store; see the module docstring."""
    limits = limits or TransferLimits()
    started = time.monotonic()
    report = VerifyReport(deep=deep)
    index = repo.refresh_index()
    packs = {}
    for obj in repo.store.list("packs/"):
        pid = pack_id_from_key(obj.key)
        if pid is not None:
            packs[pid] = obj.size
    if snapshot_ids is None:
        snapshot_ids = [o.key[len(SNAPSHOT_PREFIX) :] for o in repo.store.list(SNAPSHOT_PREFIX)]

    users: dict[bytes, list[tuple[str, str]]] = defaultdict(list)
    for sid in snapshot_ids:
        try:
            snap = repo.load_snapshot(sid, check_paths=False)
        except (FormatError, ObjectNotFoundError) as exc:
            if isinstance(exc, TreeDamagedError) and exc.missing_pack:
                report.missing_packs.add(exc.missing_pack)  # format 2: the tree's pack is gone
            report.unreadable_snapshots[sid] = str(exc)
            report.affected.setdefault(sid, [])
            continue
        report.snapshots_checked += 1
        for nid in snap.node_ids:  # format 2: its tree nodes, read once already by the load
            users[nid].append((sid, "(tree node)"))
        for f in snap.files:
            for cid in f.chunks:
                users[cid].append((sid, f.path))

    needed: dict[str, list[ChunkWant[None]]] = defaultdict(list)
    bad: set[bytes] = set()
    for cid in users:
        loc = index.get(cid)
        report.chunks_checked += 1
        if loc is None:
            report.missing_chunks.add(cid.hex())
            bad.add(cid)
        elif loc.pack_id not in packs or loc.offset + loc.length > packs[loc.pack_id]:
            report.missing_packs.add(loc.pack_id)
            bad.add(cid)
        elif index.is_suspect(cid):
            report.damaged_chunks.add(cid.hex())  # a damage record says so; no good copy
            bad.add(cid)
        else:
            needed[loc.pack_id].append(ChunkWant(cid, loc.offset, loc.length, None))

    if deep:
        ranges = plan_ranges(needed, limits)
        progress.begin("verify", total=sum(r.length for r in ranges), unit="B")
        lock = threading.Lock()

        def checked(r: PackRange[None], _data: memoryview) -> None:
            with lock:
                report.bytes_read += sum(w.length for w in r.wants)

        def damaged(w: ChunkWant[None], r: PackRange[None], _actual: bytes) -> None:
            with lock:
                report.damaged_chunks.add(w.chunk_id.hex())
                report.damaged_at.setdefault(r.pack_id, set()).add(w.chunk_id.hex())
                bad.add(w.chunk_id)

        def unreadable(r: PackRange[None], exc: StoreError) -> None:
            with lock:
                if isinstance(exc, ObjectNotFoundError):
                    report.missing_packs.add(r.pack_id)
                else:
                    report.damaged_chunks.update(w.chunk_id.hex() for w in r.wants)
                bad.update(w.chunk_id for w in r.wants)
            progress.advance("verify", r.length)

        with TaskPool(limits.workers, name="verify", serial=limits.serial) as pool:
            fetch_ranges(repo.store, ranges, pool=pool, deliver=checked, on_damaged=damaged,
                         on_unreadable=unreadable, progress=progress, phase="verify")
        progress.end("verify")

    for cid in bad:
        for sid, path in users[cid]:
            paths = report.affected.setdefault(sid, [])
            if path not in paths:
                paths.append(path)
    report.seconds = time.monotonic() - started
    return report
