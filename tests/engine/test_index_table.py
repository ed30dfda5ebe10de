"""The on-disk index table of large stores must answer exactly as the in-memory dict does.

``SPILL_ENTRIES`` is lowered so that a few hundred entries take the table path; everything a
push, pull, repair or gc asks of the index (get, in, suspect, pack ids, damage, a store that a
gc rewrote) is compared with the dict's answers or checked end to end.
"""

from __future__ import annotations

import functools
import random
import struct
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpv.engine import Repository, gc, pull, push, verify
from cpv.engine import index as index_mod
from cpv.engine.hashing import chunk_id
from cpv.engine.index import (
    INDEX_PREFIX,
    TABLE_FILE,
    ChunkIndex,
    IndexTable,
    PackRecord,
    encode_index,
    record_damage,
    still_current,
    sync_index,
    write_index,
)
from cpv.engine.packs import PackEntry
from cpv.errors import FormatError
from cpv.store.memory import MemoryStore
from tests.engine.conftest import LIMITS, make_repo, make_tree, tree_digest


@pytest.fixture
def spill(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(index_mod, "SPILL_ENTRIES", 50)


def _records(rng: random.Random, packs: int, per_pack: int,
             shared: list[bytes]) -> list[PackRecord]:
    out = []
    for _ in range(packs):
        entries = [PackEntry(rng.randbytes(32), 100 * j, 100) for j in range(per_pack)]
        entries += [PackEntry(c, 100 * (per_pack + j), 7) for j, c in enumerate(shared)]
        out.append(PackRecord(rng.randbytes(32).hex(), 10**6, tuple(entries)))
    return out


def _store_with_index(objects: int = 4) -> tuple[MemoryStore, list[PackRecord]]:
    rng = random.Random(7)
    store = MemoryStore()
    shared = [bytes([0xAB, i]) + rng.randbytes(30) for i in range(3)]  # in every pack
    records: list[PackRecord] = []
    for _ in range(objects):
        batch = _records(rng, 3, 40, shared)
        write_index(store, batch, None)
        records += batch
    return store, records


def _same_answers(a: ChunkIndex, b: ChunkIndex, cids: list[bytes]) -> None:
    for cid in cids:
        assert (cid in a) == (cid in b), cid.hex()
        assert (a.get(cid) is None) == (b.get(cid) is None)
        for index in (a, b):
            loc = index.get(cid)
            assert index.pack_of(cid) == (loc.pack_id if loc is not None else None)
        assert a.is_suspect(cid) == b.is_suspect(cid)
    assert a.pack_ids() == b.pack_ids()
    assert a.index_ids == b.index_ids


def test_table_answers_as_the_dict_does(spill: None, tmp_path: Path) -> None:
    store, records = _store_with_index()
    memory, table = sync_index(store, None), sync_index(store, tmp_path)
    assert memory.table is None and table.table is not None
    assert (tmp_path / TABLE_FILE).exists()
    cids = [e.chunk_id for r in records for e in r.entries] + [b"\x00" * 32, b"\xff" * 32]
    _same_answers(memory, table, cids)
    for r in records[:3]:  # a chunk only one pack holds is found exactly there
        e = r.entries[0]
        assert table.get(e.chunk_id) == index_mod.Location(r.pack_id, e.offset, e.length)
    assert dict(table.items()).keys() == dict(memory.items()).keys()


def test_damaged_copies_are_avoided_and_all_bad_is_suspect(spill: None, tmp_path: Path) -> None:
    store, records = _store_with_index()
    shared = records[0].entries[-1].chunk_id
    only = records[0].entries[0].chunk_id
    for r in records[:-1]:  # every copy of ``shared`` but the last pack's is damaged
        record_damage(store, r.pack_id, [shared])
    record_damage(store, records[0].pack_id, [only])
    memory, table = sync_index(store, None), sync_index(store, tmp_path)
    loc = table.get(shared)
    assert loc is not None and loc.pack_id == records[-1].pack_id
    assert only not in table and table.is_suspect(only) and table.get(only) is not None
    _same_answers(memory, table, [e.chunk_id for r in records for e in r.entries])


def test_a_new_index_object_is_added_without_rebuilding(spill: None, tmp_path: Path) -> None:
    store, _ = _store_with_index()
    sync_index(store, tmp_path)
    before = (tmp_path / TABLE_FILE).stat().st_ino
    extra = _records(random.Random(9), 1, 5, [])
    write_index(store, extra, None)
    index = sync_index(store, tmp_path)
    assert (tmp_path / TABLE_FILE).stat().st_ino == before  # reused; the new object in RAM
    assert all(e.chunk_id in index for e in extra[0].entries)
    assert len(index.index_ids) == 5


def test_a_table_is_not_trusted_once_its_index_objects_are_gone(spill: None,
                                                                 tmp_path: Path) -> None:
    """What a gc does: every object replaced by one index of the survivors. The entries of the
    packs it dropped must not come back from the cached table (invariant 9)."""
    store, records = _store_with_index()
    sync_index(store, tmp_path)
    for obj in list(store.list(INDEX_PREFIX)):
        store.delete(obj.key)
    write_index(store, records[:6], None)  # the survivors, more entries than SPILL_ENTRIES
    index = sync_index(store, tmp_path)
    assert index.table is not None and len(index.index_ids) == 1
    dropped = {r.pack_id for r in records[6:]}
    assert not index.pack_ids() & dropped
    gone = records[-1].entries[0].chunk_id
    assert gone not in index and index.get(gone) is None


@pytest.mark.parametrize("cache", ["dict", "table"])
def test_an_index_is_kept_only_while_a_new_read_would_give_the_same(
        spill: None, tmp_path: Path, cache: str) -> None:
    """A push that loaded the index before its lease keeps it under the lease only while the
    store lists exactly its objects and records no damage (invariant 9: after a gc, a repair
    or a loss, the index is read again)."""
    store, records = _store_with_index()
    cache_dir = tmp_path if cache == "table" else None
    index = sync_index(store, cache_dir)
    assert still_current(store, index)
    extra = _records(random.Random(9), 1, 5, [])
    write_index(store, extra, None)  # another push's
    assert not still_current(store, index)
    index = sync_index(store, cache_dir)
    assert still_current(store, index)
    for obj in list(store.list(INDEX_PREFIX))[:1]:  # a gc's rewrite starts by one
        store.delete(obj.key)
    assert not still_current(store, index)
    index = sync_index(store, cache_dir)
    record_damage(store, records[-1].pack_id, None)
    assert not still_current(store, index)
    assert not still_current(store, sync_index(store, cache_dir))  # damage known: never kept


def test_damaged_table_file_and_damaged_index_object(spill: None, tmp_path: Path) -> None:
    store, records = _store_with_index()
    (tmp_path / TABLE_FILE).write_bytes(b"CPVITAB1 not really")
    assert sync_index(store, tmp_path).get(records[0].entries[0].chunk_id) is not None
    # An index object with a valid id and checksum whose entry names a pack it does not list:
    # found only while the table reads its entries; skipped, the rest still works.
    _, raw = encode_index(_records(random.Random(3), 1, 60, []))
    body = bytearray(raw[:-32])
    struct.pack_into("<I", body, len(body) - 16, 9)  # the last entry's pack number
    body += chunk_id(bytes(body))
    store.put(INDEX_PREFIX + chunk_id(bytes(body)).hex(), bytes(body))
    (tmp_path / TABLE_FILE).unlink()
    index = sync_index(store, tmp_path)
    assert index.table is not None and chunk_id(bytes(body)).hex() in index.damaged_ids
    _same_answers(sync_index(store, None), index,
                  [e.chunk_id for r in records for e in r.entries])


def test_push_pull_verify_gc_through_the_table(spill: None, memory_store: Any,
                                                tmp_path: Path) -> None:
    repo = make_repo(memory_store, tmp_path / "c")
    src = make_tree(tmp_path / "src", small=120)
    sid = push(repo, src, limits=LIMITS).snapshot_id
    # The push's own entries went to the table, not into RAM, and its pack list is whole.
    assert repo.index.table is not None and not repo.index.would_spill(0)
    assert set(index_mod.read_locations(memory_store, sid) or ()) == {
        loc.pack_id for _, loc in repo.index.items()}
    fresh = Repository.open(memory_store, cache_dir=tmp_path / "c2")
    assert fresh.index.table is not None  # more entries than SPILL_ENTRIES: on disk
    assert push(fresh, src, limits=LIMITS).new_bytes == 0  # dedup through the table
    assert verify(fresh).ok
    pull(fresh, sid, tmp_path / "out", limits=LIMITS)
    assert tree_digest(tmp_path / "out") == tree_digest(src)
    gc.collect_garbage(fresh, live_snapshots=[sid], grace_period_s=0)
    again = Repository.open(memory_store, cache_dir=tmp_path / "c2")
    pull(again, sid, tmp_path / "out2", limits=LIMITS)
    assert tree_digest(tmp_path / "out2") == tree_digest(src)


@functools.cache
def _table_bytes() -> tuple[list[PackRecord], bytes]:
    store, records = _store_with_index(2)
    with tempfile.TemporaryDirectory() as tmp:
        table = IndexTable.build(Path(tmp) / "t", [(o.key[len(INDEX_PREFIX):], store.get(o.key))
                                                   for o in store.list(INDEX_PREFIX)])
        table.close()
        return records, (Path(tmp) / "t").read_bytes()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(0, 10**9), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_a_damaged_table_file_is_refused_or_harmless(tmp_path: Path,
                                                          changes: list[tuple[int, int]]) -> None:
    """The table is a local file another process (or a disk) may have damaged: opening it
    raises FormatError (then it is rebuilt), or every lookup still returns well-formed
    locations (every byte read through them is verified against its chunk id anyway)."""
    records, pristine = _table_bytes()
    path = tmp_path / "t"
    raw = bytearray(pristine)
    for at, value in changes:
        raw[at % len(raw)] = value
    path.write_bytes(bytes(raw))
    try:
        table = IndexTable(path)
    except FormatError:
        return
    try:
        for r in records[:2]:
            for e in r.entries[:10]:
                for loc in table.find(e.chunk_id):
                    assert len(loc.pack_id) == 64 and loc.offset >= 0 and loc.length >= 0
        assert sum(1 for _ in table.records()) <= table.count
    finally:
        table.close()


def test_a_build_that_dies_half_way_leaves_the_old_table(spill: None, tmp_path: Path) -> None:
    """The table is replaced atomically: a build that fails mid-way (a damaged source, a full
    disk, a kill) leaves the previous table as it was and no half-written file in use."""
    store, records = _store_with_index()
    sync_index(store, tmp_path)
    before = (tmp_path / TABLE_FILE).read_bytes()
    sources = [(o.key[len(INDEX_PREFIX):], store.get(o.key)) for o in store.list(INDEX_PREFIX)]

    def dying() -> Any:
        yield sources[0]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        IndexTable.build(tmp_path / TABLE_FILE, dying())
    assert (tmp_path / TABLE_FILE).read_bytes() == before
    assert not list(tmp_path.glob(".index-table-*"))
    assert records[0].entries[0].chunk_id in sync_index(store, tmp_path)


def test_deferred_entries_are_all_found_by_threads_racing_to_the_first_lookup() -> None:
    import threading

    records = _records(random.Random(3), packs=4, per_pack=2000, shared=[])
    index_id, raw = encode_index(records)
    index = ChunkIndex()
    index.defer(index_id, raw)
    assert len(index) == 8000 and index.pack_ids() == {r.pack_id for r in records}
    wanted = [e.chunk_id for r in records for e in r.entries]
    missed: list[int] = []
    start = threading.Barrier(4)

    def look() -> None:
        start.wait()
        missed.append(sum(c not in index for c in wanted))

    threads = [threading.Thread(target=look) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert missed == [0, 0, 0, 0]
    assert index.get(wanted[0]) == index_mod.Location(records[0].pack_id, 0, 100)


def test_one_versions_index_spills_to_a_table_of_its_own(spill: None, tmp_path: Path) -> None:
    """A fresh machine's index of one version's packs (``index_of_packs``): the same answers
    as the dict, first copy first, in a table whose file is gone once it is open."""
    _, records = _store_with_index()
    memory, spilled = (index_mod.index_of_packs(records, None),
                       index_mod.index_of_packs(records, tmp_path))
    assert memory.table is None and spilled.table is not None
    cids = [e.chunk_id for r in records for e in r.entries] + [b"\x00" * 32]
    _same_answers(memory, spilled, cids)
    shared = records[0].entries[-1].chunk_id  # in every pack: the first record's copy
    assert spilled.get(shared) == memory.get(shared) == index_mod.Location(
        records[0].pack_id, records[0].entries[-1].offset, 7)
    assert not list(tmp_path.iterdir())  # unlinked once open: nothing left behind


def test_a_fresh_pull_of_a_big_version_indexes_its_packs_on_disk(
        spill: None, memory_store: Any, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    sid = push(make_repo(memory_store, tmp_path / "c"), src, limits=LIMITS).snapshot_id
    fresh = Repository.open(memory_store, cache_dir=tmp_path / "fresh")
    out = tmp_path / "out"
    pull(fresh, sid, out, limits=LIMITS)
    assert fresh.partial_index and fresh.index.table is not None
    assert tree_digest(out) == tree_digest(src)
