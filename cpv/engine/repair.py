"""Repair: make every version the store can still describe restorable again.

Three kinds of damage, each healed from what is still good:

1. **Index objects** that are damaged or gone: every pack describes itself in its footer, so
   the packs no readable index object names are read and written into one new index object;
   only then are the damaged index objects deleted (invariant 1: the new one is durable first).
2. **Chunks** that are damaged (a flipped byte) or in a missing pack: a deep verify finds them,
   and a damage record (``damage/<pack>.<id>``, :func:`cpv.engine.index.record_damage`) makes
   every reader prefer any other copy and every push upload a new one.
3. **New copies** of those chunks are cut from local files that still hold them (``sources``:
   any folders or files, typically the workspace that pushed them) and uploaded in new packs.

The push lease is held throughout, so a concurrent gc treats repair as a running push.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.engine.chunking import iter_file_chunks, new_read_buffer
from cpv.engine.hashing import chunk_id
from cpv.engine.index import INDEX_PREFIX, PackRecord, decode_index, record_damage
from cpv.engine.locks import PushLease, condemned_pack_ids
from cpv.engine.packs import pack_id_from_key
from cpv.engine.transfer import PackUploader, TaskPool, TransferLimits
from cpv.engine.verify import VerifyReport, verify
from cpv.errors import CPVError, FormatError, ObjectNotFoundError
from cpv.progress import NULL_PROGRESS, Progress

if TYPE_CHECKING:
    from cpv.engine.repository import Repository

log = logging.getLogger(__name__)


@dataclass
class RepairReport:
    """What :func:`repair` found and fixed; ``ok`` when every checked snapshot is whole."""

    index_objects_damaged: list[str] = field(default_factory=list)
    packs_reindexed: int = 0
    missing_packs: list[str] = field(default_factory=list)
    damaged_chunks: int = 0
    chunks_repaired: int = 0
    bytes_uploaded: int = 0
    unrepaired: dict[str, list[str]] = field(default_factory=dict)
    final: VerifyReport | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.final is not None and self.final.ok

    def summary(self) -> str:
        text = (
            f"rebuilt {len(self.index_objects_damaged)} damaged index object(s) "
            f"({self.packs_reindexed} pack(s) re-indexed); {len(self.missing_packs)} missing "
            f"pack(s), {self.damaged_chunks} damaged chunk(s); re-uploaded "
            f"{self.chunks_repaired} chunk(s) ({self.bytes_uploaded} bytes) from local files"
        )
        if self.unrepaired:
            text += f"; {len(self.unrepaired)} snapshot(s) still damaged"
        return text


def repair(
    repo: Repository,
    *,
    sources: Sequence[Path] = (),
    snapshot_ids: Sequence[str] | None = None,
    limits: TransferLimits | None = None,
    progress: Progress = NULL_PROGRESS,
) -> RepairReport:
    """Heal the store (see the module docstring); returns what was done and what is left.

    Args:
        repo: the opened store.
        sources: folders or files whose content may still hold damaged or missing chunks.
        snapshot_ids: the snapshots to check (default: every snapshot in the store).
        limits: concurrency for verify and upload.
        progress: receives "verify" and "upload" counts.

    Raises:
        StoreError / TransferError: the store failed; what was written is consistent, re-run.
    """
    limits = limits or TransferLimits()
    started = time.monotonic()
    report = RepairReport()
    with PushLease(repo.store):
        _rebuild_index(repo, report)
        found = verify(repo, snapshot_ids=snapshot_ids, deep=True, limits=limits,
                       progress=progress)
        report.missing_packs = sorted(found.missing_packs)
        report.damaged_chunks = len(found.damaged_chunks)
        for pid in report.missing_packs:
            record_damage(repo.store, pid, None)
        for pid, chunks in sorted(found.damaged_at.items()):
            record_damage(repo.store, pid, {bytes.fromhex(c) for c in chunks})
        # With the damage recorded, a chunk with no good copy left is no longer "in" the index.
        index = repo.refresh_index()
        wanted = {c for c in _needed(repo, found) if c not in index}
        if wanted and sources:
            _upload_from_sources(repo, wanted, sources, report, limits, progress)
        report.final = verify(repo, snapshot_ids=snapshot_ids, limits=limits)
        report.unrepaired = dict(report.final.affected)
    report.seconds = time.monotonic() - started
    return report


def _needed(repo: Repository, found: VerifyReport) -> set[bytes]:
    needed: set[bytes] = set()
    for sid in found.affected:
        try:
            snap = repo.load_snapshot(sid)
        except CPVError:
            continue
        needed.update(snap.node_ids)
        for f in snap.files:
            needed.update(f.chunks)
    return needed


def _rebuild_index(repo: Repository, report: RepairReport) -> None:
    """Write one index object for the packs no readable index names; then drop damaged ones."""
    store = repo.store
    named: set[str] = set()
    damaged: list[str] = []
    for obj in store.list(INDEX_PREFIX):
        index_id = obj.key[len(INDEX_PREFIX) :]
        try:
            raw = store.get(obj.key)
            if chunk_id(raw).hex() != index_id:
                raise FormatError(f"index object {index_id} does not match its id (damaged)")
            named.update(loc.pack_id for _, loc in decode_index(raw, where=index_id))
        except ObjectNotFoundError:
            continue
        except FormatError as exc:
            log.warning("%s; rebuilding it from pack footers", exc)
            damaged.append(index_id)
    condemned = condemned_pack_ids(store)
    records: list[PackRecord] = []
    for obj in store.list("packs/"):
        pid = pack_id_from_key(obj.key)
        if pid is None or pid in named or pid in condemned:
            continue
        try:
            records.append(repo.read_pack_entries(pid, size=obj.size))
        except (FormatError, ObjectNotFoundError) as exc:
            log.warning("pack %s cannot describe itself (%s); its chunks count as missing",
                        pid, exc)
    written = repo.add_packs(records) if records else None
    for index_id in damaged:
        # The rebuilt object has the same id when it describes exactly the same packs: it has
        # then already replaced the damaged bytes under that key.
        if index_id != written:
            store.delete(INDEX_PREFIX + index_id)
    report.index_objects_damaged = damaged
    report.packs_reindexed = len(records)
    repo.refresh_index()


def _upload_from_sources(
    repo: Repository,
    wanted: set[bytes],
    sources: Sequence[Path],
    report: RepairReport,
    limits: TransferLimits,
    progress: Progress,
) -> None:
    """Cut every regular file under ``sources`` and upload the wanted chunks it holds."""
    params = repo.config.chunker
    buf = new_read_buffer(params)
    left = set(wanted)
    with TaskPool(limits.workers, name="repair", serial=limits.serial) as pool, PackUploader(
            repo.store, pool=pool, pack_size=repo.config.pack_size, limits=limits,
            progress=progress) as uploader:
        for path in _files(sources):
            if not left:
                break
            try:
                for _, data in iter_file_chunks(path, params, buffer=buf):
                    cid = chunk_id(data)
                    if cid in left:
                        uploader.add(cid, data)
                        left.discard(cid)
                        report.chunks_repaired += 1
                        report.bytes_uploaded += len(data)
            except (OSError, CPVError) as exc:
                log.warning("cannot read %s for repair: %s", path, exc)
        records = uploader.finish()
    repo.add_packs(records)


def _files(sources: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for src in sources:
        src = Path(src)
        if src.is_file():
            out.append(src)
            continue
        for folder, dirs, names in os.walk(src):
            dirs[:] = [d for d in dirs if d != ".git"]
            for name in names:
                path = Path(folder) / name
                try:
                    if stat.S_ISREG(os.lstat(path).st_mode):
                        out.append(path)
                except OSError:
                    continue
    return out


__all__ = ["RepairReport", "repair"]
