"""Garbage collection: frees what is dead, never what a live snapshot or a running push needs."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.engine.gc import collect_garbage
from cpv.engine.locks import GC_LOCK_KEY, GCLock, PushLease, list_leases, server_now
from cpv.engine.packs import pack_id_from_key, pack_key
from cpv.errors import FormatError, StoreLockedError
from cpv.store import KiB, MiB
from tests.engine.conftest import LIMITS, make_repo, rand_bytes, tree_digest

from .conftest import assert_store_consistent


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def _packs(store: Any) -> dict[str, int]:
    return {pid: o.size for o in store.list("packs/") if (pid := pack_id_from_key(o.key))}


def _keys(store: Any) -> list[tuple[str, int]]:
    return sorted((o.key, o.size) for o in store.list(""))


@pytest.fixture
def two_versions(any_store: Any, tmp_path: Path) -> tuple[Any, Repository, str, str, Path]:
    """A store with snapshot A (to be dead) and snapshot B (live) that share one file."""
    shared = rand_bytes(600 * KiB, 3)
    a = _tree(tmp_path / "a", {"only_a.bin": rand_bytes(3 * MiB, 1), "shared.bin": shared})
    b = _tree(tmp_path / "b", {"only_b.bin": rand_bytes(2 * MiB, 2), "shared.bin": shared})
    repo = make_repo(any_store, tmp_path / "cache")
    sid_a = push(repo, a, limits=LIMITS).snapshot_id
    sid_b = push(repo, b, limits=LIMITS).snapshot_id
    return any_store, repo, sid_a, sid_b, b


def test_gc_frees_dead_data_and_keeps_live(two_versions: Any, tmp_path: Path) -> None:
    store, repo, sid_a, sid_b, b = two_versions
    before = sum(_packs(store).values())
    report = collect_garbage(repo, live_snapshots=[sid_b], grace_period_s=0, limits=LIMITS)
    assert report.snapshots_deleted == [sid_a]
    assert report.packs_deleted and report.bytes_freed > 0
    after = sum(_packs(store).values())
    # What remains: what was there, minus what was freed, plus live chunks that were repacked.
    assert 0 <= after - (before - report.bytes_freed) <= report.bytes_repacked + 64 * KiB
    # Only-A's 3 MiB are gone; B (2 MiB + the shared 600 KiB) is all still there.
    assert after < before - 2 * MiB
    assert after >= 2 * MiB + 600 * KiB
    assert [o.key for o in store.list("snapshots/")] == [f"snapshots/{sid_b}"]
    assert list(store.list("gc/")) == []  # the sweep finished: no record left
    assert verify(Repository.open(store), deep=True).ok
    out = tmp_path / "out"
    pull(Repository.open(store), sid_b, out, limits=LIMITS)
    assert tree_digest(out) == tree_digest(b)
    # A second run finds nothing more to do.
    again = collect_garbage(repo, live_snapshots=[sid_b], grace_period_s=0, limits=LIMITS)
    assert again.packs_deleted == [] and again.snapshots_deleted == []


def test_dry_run_reports_and_changes_nothing(two_versions: Any) -> None:
    store, repo, sid_a, sid_b, _ = two_versions
    before = _keys(store)
    report = collect_garbage(
        repo, live_snapshots=[sid_b], grace_period_s=0, dry_run=True, limits=LIMITS
    )
    assert report.dry_run
    assert report.snapshots_deleted == [sid_a]
    assert report.packs_condemned
    assert report.would_free_bytes >= 3 * MiB
    assert report.packs_deleted == [] and report.bytes_freed == 0
    assert "would free" in report.summary()
    assert _keys(store) == before


def test_young_data_survives_the_grace_period(two_versions: Any) -> None:
    store, repo, sid_a, _sid_b, _ = two_versions
    before = _keys(store)
    report = collect_garbage(repo, live_snapshots=[], grace_period_s=3600, limits=LIMITS)
    assert report.snapshots_deleted == [] and report.packs_condemned == []
    # Only the index may be rewritten (and the first gc remembers its server probe).
    assert [k for k, _ in _keys(store) if not k.startswith(("index/", "probe/"))] == [
        k for k, _ in before if not k.startswith("index/")
    ]
    assert verify(Repository.open(store), snapshot_ids=[sid_a], deep=True).ok


def test_an_old_empty_pack_object_is_collected_and_a_young_one_left(two_versions: Any) -> None:
    """An upload killed before its body can leave an empty object under a pack's key
    (SeaweedFS does, docs/store-contract.md): it holds nothing, so gc collects it once past the
    grace period (it was "unreadable, left alone" for ever); a young one may be an upload in
    flight and is never touched."""
    store, repo, _sid_a, sid_b, _ = two_versions
    store.put(pack_key("ab" * 32), b"")
    young = collect_garbage(repo, live_snapshots=[sid_b], grace_period_s=3600, limits=LIMITS)
    assert "ab" * 32 not in young.packs_condemned and "ab" * 32 in _packs(store)
    report = collect_garbage(repo, live_snapshots=[sid_b], grace_period_s=0, limits=LIMITS)
    assert "ab" * 32 in report.packs_deleted and "ab" * 32 not in _packs(store)
    assert not any("ab" * 32 in w for w in report.warnings), report.warnings
    assert verify(Repository.open(store), deep=True).ok


def test_an_empty_gc_record_does_not_stop_gc(two_versions: Any) -> None:
    """A gc killed while writing its record can leave it empty (as above): it condemned nothing
    (the index it rewrote first leaves those packs orphans, judged again), so the next gc runs
    instead of stopping on 'not valid JSON' for ever. Any other unreadable record stops it."""
    store, repo, sid_a, sid_b, _ = two_versions
    store.put("gc/condemned/" + "0" * 32, b"")
    report = collect_garbage(repo, live_snapshots=[sid_b], grace_period_s=0, limits=LIMITS)
    assert report.snapshots_deleted == [sid_a] and report.packs_deleted
    store.put("gc/condemned/" + "1" * 32, b"{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        collect_garbage(repo, live_snapshots=[sid_b], grace_period_s=0, limits=LIMITS)


def test_mostly_dead_pack_is_repacked(memory_store: Any, tmp_path: Path) -> None:
    big, small = rand_bytes(1500 * KiB, 11), rand_bytes(100 * KiB, 12)
    repo = make_repo(memory_store, tmp_path / "cache")
    push(repo, _tree(tmp_path / "v1", {"big.bin": big, "small.bin": small}), limits=LIMITS)
    assert len(_packs(memory_store)) == 1  # both files share one pack
    old_pack = next(iter(_packs(memory_store)))
    keep_tree = _tree(tmp_path / "v2", {"small.bin": small})
    sid = push(repo, keep_tree, limits=LIMITS).snapshot_id  # format 2: a pack of tree nodes
    report = collect_garbage(
        repo, live_snapshots=[sid], grace_period_s=0, repack_threshold=0.5, limits=LIMITS
    )
    assert report.packs_repacked == [old_pack]
    assert report.packs_deleted == [old_pack]
    assert report.packs_written == 1
    assert 100 * KiB <= report.bytes_repacked < 200 * KiB
    remaining = _packs(memory_store)
    assert old_pack not in remaining and sum(remaining.values()) < 200 * KiB
    assert verify(Repository.open(memory_store), deep=True).ok
    pull(Repository.open(memory_store), sid, tmp_path / "out", limits=LIMITS)
    assert (tmp_path / "out" / "small.bin").read_bytes() == small


def test_second_gc_is_refused_while_one_holds_the_lock(memory_store: Any, tmp_path: Path) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    with GCLock(memory_store):
        with pytest.raises(StoreLockedError, match=r"locked by gc .* pid \d+") as info:
            collect_garbage(repo, live_snapshots=[], grace_period_s=0)
        assert info.value.holder.startswith("gc on ")
        assert "wait for that gc" in info.value.hint
    # Released: the next gc runs.
    collect_garbage(repo, live_snapshots=[], grace_period_s=0)
    assert not memory_store.exists(GC_LOCK_KEY)


def test_stale_lock_is_broken_only_when_asked(memory_store: Any, tmp_path: Path) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    GCLock(memory_store)._refresher.stop()  # a gc that died holding the lock
    with pytest.raises(StoreLockedError, match="locked by gc") as info:
        collect_garbage(repo, live_snapshots=[], grace_period_s=0, lock_stale_s=0)
    assert "break-stale-lock" in info.value.hint
    report = collect_garbage(
        repo, live_snapshots=[], grace_period_s=0, lock_stale_s=0, break_stale_lock=True
    )
    assert report.snapshots_deleted == []
    assert not memory_store.exists(GC_LOCK_KEY)


class _PausingStore:
    """Delegates to a real store; the first write under ``prefix`` waits until released."""

    def __init__(self, inner: Any, prefix: str) -> None:
        self._inner = inner
        self.url, self.caps = inner.url, inner.caps
        self._prefix = prefix
        self.reached = threading.Event()
        self.release = threading.Event()
        self._paused = False

    def _maybe_pause(self, key: str) -> None:
        if key.startswith(self._prefix) and not self._paused:
            self._paused = True
            self.reached.set()
            assert self.release.wait(60), "test never released the paused push"

    def put(self, key: str, data: Any, *, if_absent: bool = False) -> None:
        self._maybe_pause(key)
        self._inner.put(key, data, if_absent=if_absent)

    def start_multipart(self, key: str) -> Any:
        self._maybe_pause(key)
        return self._inner.start_multipart(key)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@pytest.mark.parametrize("pause_at", ["packs/", "index/", "snapshots/"])
def test_push_running_during_gc_keeps_all_its_data(
    s3_store: Any, tmp_path: Path, pause_at: str
) -> None:
    """The dangerous interleaving, made deterministic: a push deduplicates against data that is
    dead when gc looks, and gc runs (mark and sweep) while the push is paused mid-way."""
    reused = rand_bytes(3 * MiB, 21)
    a = _tree(tmp_path / "a", {"weights.bin": reused})
    b = _tree(tmp_path / "b", {"other.bin": rand_bytes(1 * MiB, 22)})
    c = _tree(tmp_path / "c", {"weights.bin": reused, "new.bin": rand_bytes(1 * MiB, 23)})
    repo = make_repo(s3_store, tmp_path / "cache")
    sid_a = push(repo, a, limits=LIMITS).snapshot_id
    sid_b = push(repo, b, limits=LIMITS).snapshot_id

    paused = _PausingStore(s3_store, pause_at)
    result: dict[str, Any] = {}

    def run_push() -> None:
        try:
            result["push"] = push(Repository.open(paused, cache_dir=tmp_path / "c2"), c, limits=LIMITS)
        except BaseException as exc:
            result["error"] = exc

    worker = threading.Thread(target=run_push)
    worker.start()
    assert paused.reached.wait(60), result.get("error")
    # gc while the push is paused: A is dead (not live, grace 0), and its packs hold the bytes
    # the push reuses. The push's lease is visible, so nothing it may need is deleted yet.
    during = collect_garbage(repo, live_snapshots=[sid_b], grace_period_s=0, limits=LIMITS)
    assert during.snapshots_deleted == [sid_a]
    assert during.packs_condemned
    assert during.packs_deleted == []
    assert during.sweep_deferred and "push" in during.sweep_deferred[0]
    paused.release.set()
    worker.join(120)
    assert "error" not in result, result.get("error")
    sid_c = result["push"].snapshot_id
    # The push published a snapshot whose every chunk is indexed and present right away.
    assert verify(Repository.open(s3_store), snapshot_ids=[sid_c], deep=True).ok
    # The next gc (push over) sweeps; what C needs survives, the rest goes.
    after = collect_garbage(repo, live_snapshots=[sid_b, sid_c], grace_period_s=0, limits=LIMITS)
    assert after.sweep_deferred == []
    assert_store_consistent(s3_store)
    assert verify(Repository.open(s3_store), deep=True).ok
    out = tmp_path / "out"
    pull(Repository.open(s3_store), sid_c, out, limits=LIMITS)
    assert tree_digest(out) == tree_digest(c)
    assert list(s3_store.list("gc/")) == []
    assert list_leases(s3_store, now=server_now(s3_store)) == []


def test_push_after_gc_mark_does_not_resurrect_condemned_packs(
    memory_store: Any, tmp_path: Path
) -> None:
    """A push that starts between mark and sweep uploads what it needs again instead of
    re-indexing a condemned pack; the sweep then frees the pack."""
    data = rand_bytes(2 * MiB, 31)
    repo = make_repo(memory_store, tmp_path / "cache")
    sid_old = push(repo, _tree(tmp_path / "a", {"w.bin": data}), limits=LIMITS).snapshot_id
    old_packs = set(_packs(memory_store))
    with PushLease(memory_store):  # a long push elsewhere keeps the sweep waiting
        mark = collect_garbage(repo, live_snapshots=[], grace_period_s=0, limits=LIMITS)
    assert mark.snapshots_deleted == [sid_old]
    assert set(mark.packs_condemned) == old_packs and mark.packs_deleted == []
    # The same bytes pushed again: the condemned pack is not reused.
    res = push(Repository.open(memory_store, cache_dir=tmp_path / "c2"),
               _tree(tmp_path / "b", {"w.bin": data}), limits=LIMITS)
    assert res.new_bytes == len(data)
    sweep = collect_garbage(repo, live_snapshots=[res.snapshot_id], grace_period_s=0)
    assert set(sweep.packs_deleted) == old_packs
    assert verify(Repository.open(memory_store), deep=True).ok


def test_grace_period_defers_the_sweep(memory_store: Any, tmp_path: Path) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    tree = _tree(tmp_path / "a", {"w.bin": rand_bytes(MiB, 41)})
    sid = push(repo, tree, limits=LIMITS).snapshot_id
    with PushLease(memory_store):
        mark = collect_garbage(repo, live_snapshots=[], grace_period_s=0, limits=LIMITS)
    assert mark.snapshots_deleted == [sid] and mark.packs_condemned
    held = collect_garbage(repo, live_snapshots=[], grace_period_s=3600, limits=LIMITS)
    assert held.packs_deleted == []
    assert "grace period" in held.sweep_deferred[0]
    done = collect_garbage(repo, live_snapshots=[], grace_period_s=0, limits=LIMITS)
    assert set(done.packs_deleted) == set(mark.packs_condemned)
    assert _packs(memory_store) == {}


def test_push_is_not_held_up_by_a_dead_gc_lock(memory_store: Any, tmp_path: Path) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    dead = GCLock(memory_store, refresh_s=0.2)
    dead._refresher.stop()  # the gc process died holding its lock
    # The push's final step waits only until the lock has missed three refreshes.
    res = push(repo, _tree(tmp_path / "a", {"w.bin": rand_bytes(MiB, 61)}), limits=LIMITS)
    assert verify(Repository.open(memory_store), snapshot_ids=[res.snapshot_id]).ok
    assert memory_store.exists(GC_LOCK_KEY)  # a push never breaks a gc lock, it only waits


def test_lock_objects_hold_no_secrets_and_name_their_holder(memory_store: Any) -> None:
    import json
    import os

    with PushLease(memory_store) as lease:
        doc = json.loads(memory_store.get(lease.key))
    assert set(doc) == {"kind", "id", "refresh_s", "host", "pid", "created"}
    assert doc["kind"] == "push" and doc["pid"] == os.getpid()
    assert not memory_store.exists(lease.key)


def test_pack_with_damaged_live_data_is_kept_not_repacked(
    local_store: Any, tmp_path: Path
) -> None:
    big, small = rand_bytes(1500 * KiB, 21), rand_bytes(100 * KiB, 22)
    repo = make_repo(local_store, tmp_path / "cache")
    push(repo, _tree(tmp_path / "v1", {"big.bin": big, "small.bin": small}), limits=LIMITS)
    old_pack = next(iter(_packs(local_store)))
    sid = push(repo, _tree(tmp_path / "v2", {"small.bin": small}), limits=LIMITS).snapshot_id
    # Flip a byte inside a live chunk (one of small.bin's) of the mostly-dead pack.
    live = repo.load_snapshot(sid).files[0].chunks[0]
    loc = repo.index.get(live)
    assert loc is not None and loc.pack_id == old_pack
    path = Path(local_store.url) / next(
        o.key for o in local_store.list("packs/") if pack_id_from_key(o.key) == old_pack
    )
    data = bytearray(path.read_bytes())
    data[loc.offset + 10] ^= 0xFF
    path.write_bytes(bytes(data))

    report = collect_garbage(
        repo, live_snapshots=[sid], grace_period_s=0, repack_threshold=0.5, limits=LIMITS
    )

    assert report.packs_repacked == [] and old_pack not in report.packs_deleted
    assert any("damaged live data" in w for w in report.warnings)
    assert old_pack in _packs(local_store)
