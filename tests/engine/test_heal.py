"""A store that heals, and local state that cannot be poisoned.

Damage is made for real on the S3 server (a pack deleted, a byte flipped in a pack or an index
object), then the engine's ordinary push/pull/verify/repair are run against it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cpv.engine import Repository, pull, push, verify
from cpv.engine.gc import collect_garbage
from cpv.engine.index import INDEX_PREFIX
from cpv.engine.repair import repair
from cpv.engine.roots import RootInfo
from cpv.progress import Phase, Unit
from cpv.store import KiB
from tests.engine.conftest import LIMITS, make_repo, rand_bytes, tree_digest


class _SwapAfterDownload:
    """A progress sink that, when the download phase ends, replaces one pulled file the way
    ``cp -p`` or ``rsync -a`` would: new inode, same size, the source's old mtime."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.swapped = path, data, False

    def begin(self, phase: Phase, *, total: int | None, unit: Unit = "B") -> None:
        pass

    def advance(self, phase: Phase, amount: int) -> None:
        pass

    def set_total(self, phase: Phase, total: int) -> None:
        pass

    def end(self, phase: Phase) -> None:
        if phase != "download" or self.swapped or not self.path.exists():
            return
        tmp = self.path.with_name("swap.tmp")
        tmp.write_bytes(self.data)
        old = time.time() - 3600
        os.utime(tmp, (old, old))
        os.replace(tmp, self.path)
        self.swapped = True


def test_file_swapped_during_pull_is_not_cached_with_the_pulled_hash(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    src = tmp_path / "src"
    src.mkdir()
    original = rand_bytes(200 * KiB, 1)
    (src / "weights.bin").write_bytes(original)
    pushed = push(repo, src, limits=LIMITS)
    dest = tmp_path / "dest"
    other = rand_bytes(200 * KiB, 2)  # same size: only inode (and content) differ
    sink = _SwapAfterDownload(dest / "weights.bin", other)
    pull(repo, pushed.snapshot_id, dest, limits=LIMITS, progress=sink)
    assert sink.swapped
    # The next push must see the swapped content, not trust a poisoned stat-cache entry.
    again = push(repo, dest, limits=LIMITS)
    assert again.snapshot_id != pushed.snapshot_id
    back = tmp_path / "back"
    pull(Repository.open(s3_store), again.snapshot_id, back, limits=LIMITS)
    assert (back / "weights.bin").read_bytes() == other


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    root.mkdir(parents=True)
    for name, data in files.items():
        (root / name).write_bytes(data)
    return root


def _pack_keys(store: Any) -> list[str]:
    return sorted(o.key for o in store.list("packs/"))


def _flip(store: Any, key: str, at: int) -> None:
    raw = bytearray(store.get(key))
    raw[at] ^= 0x01
    store.put(key, bytes(raw))


def test_deleted_pack_is_not_reused_and_a_push_heals_the_version(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    src = _tree(tmp_path / "src", {"w.bin": rand_bytes(600 * KiB, 5), "c.json": b"{}"})
    first = push(repo, src, limits=LIMITS)
    for key in _pack_keys(s3_store):
        s3_store.delete(key)
    again = push(repo, src, limits=LIMITS)
    assert again.snapshot_id == first.snapshot_id
    assert again.chunks_new > 0 and again.uploaded_bytes >= 600 * KiB  # not "100 % reused"
    fresh = Repository.open(s3_store, cache_dir=tmp_path / "fresh-cache")
    pull(fresh, first.snapshot_id, tmp_path / "back", limits=LIMITS)
    assert (tmp_path / "back" / "w.bin").read_bytes() == (src / "w.bin").read_bytes()
    assert verify(fresh, deep=True).ok


def test_flipped_byte_in_a_pack_is_repaired_from_local_files(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    src = _tree(tmp_path / "src", {"w.bin": rand_bytes(600 * KiB, 6)})
    pushed = push(repo, src, limits=LIMITS)
    (key,) = _pack_keys(s3_store)
    _flip(s3_store, key, 1000)
    assert not verify(repo, deep=True).ok
    report = repair(repo, sources=[src], limits=LIMITS)
    assert report.damaged_chunks == 1 and report.chunks_repaired == 1, report.summary()
    assert report.ok and not report.unrepaired
    # Readers prefer the good copy although the damaged one is still listed first.
    fresh = Repository.open(s3_store, cache_dir=tmp_path / "fresh-cache")
    pull(fresh, pushed.snapshot_id, tmp_path / "back", limits=LIMITS)
    assert (tmp_path / "back" / "w.bin").read_bytes() == (src / "w.bin").read_bytes()
    assert verify(fresh, deep=True).ok


def test_known_damage_is_not_deduplicated_a_push_of_the_files_heals_it(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    src = _tree(tmp_path / "src", {"w.bin": rand_bytes(600 * KiB, 7)})
    pushed = push(repo, src, limits=LIMITS)
    (key,) = _pack_keys(s3_store)
    _flip(s3_store, key, 1000)
    found = repair(repo, limits=LIMITS)  # no local files: the damage is recorded, not fixed
    assert not found.ok and pushed.snapshot_id in found.unrepaired
    again = push(repo, src, limits=LIMITS)
    assert again.chunks_new == 1
    fresh = Repository.open(s3_store, cache_dir=tmp_path / "fresh-cache")
    assert verify(fresh, deep=True).ok
    pull(fresh, pushed.snapshot_id, tmp_path / "back", limits=LIMITS)
    assert (tmp_path / "back" / "w.bin").read_bytes() == (src / "w.bin").read_bytes()


def test_damaged_index_object_never_blocks_intact_versions(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    a = _tree(tmp_path / "a", {"a.bin": rand_bytes(400 * KiB, 8)})
    b = _tree(tmp_path / "b", {"b.bin": rand_bytes(400 * KiB, 9)})
    sid_a = push(repo, a, limits=LIMITS).snapshot_id
    index_a = sorted(o.key for o in s3_store.list(INDEX_PREFIX))
    sid_b = push(repo, b, limits=LIMITS).snapshot_id
    _flip(s3_store, index_a[0], 20)
    # Another machine (no cached copy of the index) pulls both, verifies, pushes.
    other = Repository.open(s3_store, cache_dir=tmp_path / "other")
    for sid, tree in ((sid_a, a), (sid_b, b)):
        dest = tmp_path / f"pull-{sid[:6]}"
        pull(other, sid, dest, limits=LIMITS)
        assert tree_digest(dest) == tree_digest(tree)
    assert verify(other).ok
    report = repair(other, limits=LIMITS)
    assert report.index_objects_damaged == [index_a[0][len(INDEX_PREFIX) :]]
    assert report.ok, (report.summary(), report.final and report.final.summary())
    fresh = Repository.open(s3_store, cache_dir=tmp_path / "fresh")
    assert not fresh.index.damaged_ids and verify(fresh, deep=True).ok


def test_gc_survives_a_damaged_index_object(s3_store: Any, tmp_path: Path) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    a = _tree(tmp_path / "a", {"a.bin": rand_bytes(400 * KiB, 10)})
    sid = push(repo, a, limits=LIMITS, record_root=RootInfo(kind="model", name="m")).snapshot_id
    (key,) = [o.key for o in s3_store.list(INDEX_PREFIX)]
    _flip(s3_store, key, 20)
    report = collect_garbage(Repository.open(s3_store), grace_period_s=0, limits=LIMITS)
    assert any("rebuilt from pack footers" in w for w in report.warnings)
    fresh = Repository.open(s3_store, cache_dir=tmp_path / "fresh")
    assert not fresh.index.damaged_ids and verify(fresh, deep=True).ok
    pull(fresh, sid, tmp_path / "back", limits=LIMITS)
    assert tree_digest(tmp_path / "back") == tree_digest(a)
