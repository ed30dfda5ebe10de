"""Verify: does the store still hold every byte its snapshots need, undamaged?

Shallow (default): every chunk of every checked snapshot is in the index, and every pack the
index points to exists with a plausible size. Deep: additionally read every needed chunk back and
check its blake3. The report names what is damaged and which snapshots and files it affects, so
a user knows which versions are safe, in the spirit of pip's aggregated hash errors.
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cpv.engine.hashing import chunk_id
from cpv.engine.packs import pack_id_from_key, pack_key
from cpv.engine.snapshot import SNAPSHOT_PREFIX
from cpv.engine.transfer import TransferLimits
from cpv.errors import FormatError, ObjectNotFoundError, StoreError
from cpv.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from cpv.engine.index import Location
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
            report.unreadable_snapshots[sid] = str(exc)
            report.affected.setdefault(sid, [])
            continue
        report.snapshots_checked += 1
        for f in snap.files:
            for cid in f.chunks:
                users[cid].append((sid, f.path))

    needed: dict[str, list[tuple[bytes, Location]]] = defaultdict(list)
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
            needed[loc.pack_id].append((cid, loc))

    if deep:
        total = sum(loc.length for items in needed.values() for _, loc in items)
        progress.begin("verify", total=total, unit="B")
        lock = threading.Lock()

        def check_pack(pack_id: str) -> None:
            items = sorted(needed[pack_id], key=lambda it: it[1].offset)
            for cid, loc in items:
                try:
                    data = repo.store.get_range(pack_key(pack_id), loc.offset, loc.length)
                    damaged = chunk_id(data) != cid
                except ObjectNotFoundError:
                    with lock:
                        report.missing_packs.add(pack_id)
                        bad.update(c for c, _ in items)
                    return
                except StoreError:
                    damaged = True
                with lock:
                    report.bytes_read += loc.length
                    if damaged:
                        report.damaged_chunks.add(cid.hex())
                        report.damaged_at.setdefault(pack_id, set()).add(cid.hex())
                        bad.add(cid)
                progress.advance("verify", loc.length)

        with ThreadPoolExecutor(min(limits.workers, 8), thread_name_prefix="cpv-verify") as ex:
            for fut in [ex.submit(check_pack, pid) for pid in needed]:
                fut.result()
        progress.end("verify")

    for cid in bad:
        for sid, path in users[cid]:
            paths = report.affected.setdefault(sid, [])
            if path not in paths:
                paths.append(path)
    report.seconds = time.monotonic() - started
    return report
