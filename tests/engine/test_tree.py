"""Tree snapshots (store format 2): layout, incremental writes, streaming, diff, compatibility.

The properties that make format 2 worth having are measured here, not assumed: a version that
changes 1% of the files writes a small share of a full listing, adding one file to a huge folder
rewrites a few nodes, a diff reads only the changed paths, and format-1 stores keep working.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpv.engine import Repository, gc, pull, push, verify
from cpv.engine.format import CONFIG_KEY, FORMAT_VERSION, upgrade_store_format
from cpv.engine.hashing import chunk_id
from cpv.engine.snapshot import SNAPSHOT_MAGIC, FileEntry, snapshot_key
from cpv.engine.transfer import PackUploader, TaskPool
from cpv.engine.tree import (
    LEAF_AVG,
    ROOT_MAGIC,
    TREE_MAGIC,
    TreeWalker,
    build_tree,
    decode_node,
    encode_folder,
    encode_root,
)
from cpv.errors import FormatError, UnsafePathError
from cpv.store.memory import MemoryStore
from tests.engine.conftest import LIMITS, make_repo, make_tree

H = "ab" * 32


def _files(n: int, *, folders: int = 1, tag: str = "") -> list[FileEntry]:
    out = []
    for i in range(n):
        h = chunk_id(f"{tag}{i}".encode()).hex()  # real listings are hashes: incompressible
        out.append(FileEntry(f"d{i % folders:03d}/f{i:07d}.bin", 1024, 0o644, h,
                             (bytes.fromhex(h),)))
    out.sort(key=lambda f: f.path)
    return out


def _nodes(files: Sequence[FileEntry]) -> tuple[bytes, dict[bytes, bytes]]:
    nodes: dict[bytes, bytes] = {}
    top = build_tree(files, lambda nid, raw: nodes.__setitem__(nid, raw))
    return top, nodes


def _reader(nodes: Mapping[bytes, bytes], log: list[bytes] | None = None) -> Any:
    def read(ids: Sequence[bytes]) -> dict[bytes, bytes]:
        if log is not None:
            log.extend(ids)
        missing = [i for i in ids if i not in nodes]
        if missing:
            raise FormatError(f"tree node {missing[0].hex()} is missing")
        return {i: nodes[i] for i in ids}
    return read


def _node(doc: object) -> tuple[bytes, bytes]:
    raw = TREE_MAGIC + zlib.compress(json.dumps(doc).encode())
    return chunk_id(raw), raw


# -- layout ---------------------------------------------------------------------------------


def test_nodes_are_canonical_json_whatever_the_entries() -> None:
    """Node ids are content addresses: two machines (and two cpv versions) must encode the same
    folder to the same bytes. Every node is the canonical JSON of what it holds (sorted keys,
    no spaces), whatever its entries: single- and multi-chunk files, an empty file, a link, an
    executable, a sub-folder, a name beyond ASCII, and a folder split into parts."""
    c1, c2 = chunk_id(b"one"), chunk_id(b"two")
    entries: list[tuple[str, FileEntry | bytes]] = [
        ("a.bin", FileEntry("a.bin", 3, 0o644, c1.hex(), (c1,))),
        ("big", FileEntry("big", 6, 0o755, H, (c1, c2))),
        ("empty", FileEntry("empty", 0, 0o644, H, ())),
        ("link", FileEntry("link", 0, 0o777, H, (), link="a.bin")),
        ("sub", chunk_id(b"node")),
        ("\u00e9t\u00e9.txt", FileEntry("\u00e9t\u00e9.txt", 3, 0o600, c2.hex(), (c2,))),
    ]
    many: list[tuple[str, FileEntry | bytes]] = [
        (f"f{i:05d}", FileEntry(f"f{i:05d}", 3, 0o644, c1.hex(), (c1,)))
        for i in range(LEAF_AVG * 6)]
    for folder in (entries, many):
        nodes: dict[bytes, bytes] = {}
        encode_folder(folder, nodes.__setitem__)
        assert len(nodes) > (1 if folder is many else 0)
        for raw in nodes.values():
            text = zlib.decompress(raw[len(TREE_MAGIC):]).decode("utf-8")
            assert text == json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False)


def test_walk_yields_every_file_in_path_order() -> None:
    files = [FileEntry(p, 3, 0o644, H, (bytes.fromhex(H),)) for p in
             sorted(["a.txt", "a/b", "a/c/d", "a-b", "z", "a0/x"])]
    top, nodes = _nodes(files)
    got = list(TreeWalker(_reader(nodes)).files(top))
    assert got == files  # Git's ordering rule: a depth-first walk is the sorted path order


def test_one_percent_changed_writes_a_small_share_of_a_full_listing() -> None:
    """10^4 files in 100 folders; 1% of them change, clustered in one folder as a new shard."""
    before = _files(10_000, folders=100)
    after = list(before)
    for i in range(100):  # folder d007 gets new contents for all its 100 files
        f = after[700 + i]
        h = chunk_id(f"new{i}".encode())
        after[700 + i] = FileEntry(f.path, 2048, 0o644, h.hex(), (h,))
    _, old = _nodes(before)
    _, new = _nodes(after)
    full = sum(len(r) for r in new.values())
    written = sum(len(r) for nid, r in new.items() if nid not in old)
    assert written < 0.05 * full, (written, full)


def test_adding_one_file_to_a_huge_folder_rewrites_a_few_nodes() -> None:
    files = _files(50_000)
    _, old = _nodes(files)
    assert len(old) > 50_000 // LEAF_AVG // 4  # the folder is split into parts
    extra = FileEntry("d000/f0012345x.bin", 1, 0o644, H, (bytes.fromhex(H),))
    _, new = _nodes(sorted([*files, extra], key=lambda f: f.path))
    fresh = [nid for nid in new if nid not in old]
    assert 1 <= len(fresh) <= 4, len(fresh)
    assert sum(len(new[n]) for n in fresh) < 0.02 * sum(len(r) for r in new.values())


def test_diff_reads_only_the_changed_paths() -> None:
    before = _files(20_000, folders=200)
    after = list(before)
    f = after[12_345]
    after[12_345] = FileEntry(f.path, 7, 0o644, "cd" * 32, (bytes.fromhex("cd" * 32),))
    added = FileEntry("d150/new.bin", 1, 0o644, H, (bytes.fromhex(H),))
    after = sorted([*after[:100], *after[101:], added], key=lambda f: f.path)
    a, old = _nodes(before)
    b, new = _nodes(after)
    read: list[bytes] = []
    changes = list(TreeWalker(_reader({**old, **new}, read)).diff(a, b))
    assert {(c.path, c.old is not None, c.new is not None) for c in changes} == {
        (f.path, True, True), (before[100].path, True, False), (added.path, False, True)}
    assert len(set(read)) <= 8, len(set(read))  # three folders' nodes and the two tops


# -- through a store ------------------------------------------------------------------------


def test_push_pull_roundtrip_format_2(any_store: Any, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    repo = make_repo(any_store, tmp_path / "c")
    assert repo.config.version == FORMAT_VERSION == 2
    first = push(repo, src, limits=LIMITS)
    assert any_store.get(snapshot_key(first.snapshot_id)).startswith(ROOT_MAGIC)
    assert first.tree_nodes_new == first.tree_nodes >= 3
    again = push(repo, src, limits=LIMITS)
    assert (again.snapshot_id, again.tree_nodes_new, again.uploaded_bytes) == (
        first.snapshot_id, 0, 0)
    fresh = Repository.open(any_store)
    snap = fresh.load_snapshot(first.snapshot_id)
    assert snap.files == first.snapshot.files and snap.node_ids == first.snapshot.node_ids
    assert list(fresh.iter_files(first.snapshot_id)) == list(snap.files)
    assert fresh.snapshot_summary(first.snapshot_id) == (len(snap.files), snap.total_size)
    pull(fresh, first.snapshot_id, tmp_path / "out", limits=LIMITS)
    for f in snap.files:
        p = tmp_path / "out" / f.path
        if f.is_symlink:
            assert os.readlink(p) == f.link
        else:
            assert p.read_bytes() == (src / f.path).read_bytes()
    assert not verify(fresh, deep=True).affected


def test_changed_file_writes_only_the_nodes_along_its_path(memory_store: Any,
                                                           tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    repo = make_repo(memory_store, tmp_path / "c")
    first = push(repo, src, limits=LIMITS)
    (src / "data" / "train" / "s0003.txt").write_bytes(b"changed")
    second = push(repo, src, limits=LIMITS)
    assert second.tree_nodes_new == 3  # data/train, data, and the top folder
    changes = list(repo.diff(first.snapshot_id, second.snapshot_id))
    assert [c.path for c in changes] == ["data/train/s0003.txt"]
    assert changes[0].new is not None and changes[0].new.size == 7


def test_gc_keeps_tree_nodes_of_live_snapshots(memory_store: Any, tmp_path: Path) -> None:
    from cpv.engine.roots import RootInfo

    src = make_tree(tmp_path / "src")
    repo = make_repo(memory_store, tmp_path / "c")
    kept = push(repo, src, limits=LIMITS, record_root=RootInfo(kind="model", name="m"))
    (src / "data" / "train" / "s0001.txt").write_bytes(b"gone soon")
    push(repo, src, limits=LIMITS)  # not recorded as a root: dead after the grace period
    report = gc.collect_garbage(repo, grace_period_s=0, repack_threshold=0.99)
    assert len(report.snapshots_deleted) == 1 and report.packs_condemned
    gc.collect_garbage(repo, grace_period_s=0, repack_threshold=0.99)
    fresh = Repository.open(memory_store)
    assert fresh.load_snapshot(kept.snapshot_id).node_ids == kept.snapshot.node_ids
    assert not verify(fresh, deep=True).affected


def test_format_1_store_stays_format_1_until_upgraded(memory_store: Any, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    repo = make_repo(memory_store, tmp_path / "c", version=1)
    v1 = push(repo, src, limits=LIMITS)
    assert memory_store.get(snapshot_key(v1.snapshot_id)).startswith(SNAPSHOT_MAGIC)
    config, changed = upgrade_store_format(memory_store)
    assert changed and config.version == 2 and config.store_id == repo.config.store_id
    assert upgrade_store_format(memory_store)[1] is False
    (src / "empty.txt").write_bytes(b"now v2")
    repo2 = Repository.open(memory_store, cache_dir=tmp_path / "c")
    v2 = push(repo2, src, limits=LIMITS)
    assert memory_store.get(snapshot_key(v2.snapshot_id)).startswith(ROOT_MAGIC)
    assert [c.path for c in repo2.diff(v1.snapshot_id, v2.snapshot_id)] == ["empty.txt"]
    pull(repo2, v1.snapshot_id, tmp_path / "old", limits=LIMITS)  # v1 snapshot still reads
    assert (tmp_path / "old" / "empty.txt").read_bytes() == b""
    assert not verify(repo2, deep=True).affected


def test_format_1_client_refuses_a_format_2_store_in_one_line(memory_store: Any) -> None:
    """The format-1 reader refuses any ``version`` other than 1 with "upgrade cpv"; format 2
    must therefore bump exactly that field (this replays the format-1 check on the bytes)."""
    Repository.init(memory_store)
    doc = json.loads(memory_store.get(CONFIG_KEY))
    assert doc["format"] == "cpv-store" and doc["version"] == 2
    changed = memory_store.get(CONFIG_KEY).replace(b'"version": 2', b'"version": 1')
    assert json.loads(changed)["version"] == 1  # the one field a format-1 client compares


# -- hostile trees --------------------------------------------------------------------------


def _store_tree(repo: Repository, nodes: dict[bytes, bytes], top: bytes, n: int = 1) -> str:
    with TaskPool(1, name="t", serial=True) as pool, PackUploader(
            repo.store, pool=pool, pack_size=repo.config.pack_size, limits=LIMITS) as up:
        for nid, raw in nodes.items():
            up.add(nid, memoryview(raw))
        repo.add_packs(up.finish())
    sid, raw = encode_root(top, files=n, size=0, meta={})
    repo.store.put(snapshot_key(sid), raw)
    return sid


@pytest.mark.parametrize("name", ["../x", ".git", ".GIT", "a/b", "", ".", "x\x00y"])
def test_hostile_name_in_a_node_is_refused_before_writing(memory_store: Any, tmp_path: Path,
                                                         name: str) -> None:
    repo = make_repo(memory_store, tmp_path / "c")
    top, raw = _node({"e": [{"n": name, "s": 0, "m": 420, "h": H, "c": None}]})
    sid = _store_tree(repo, {top: raw}, top)
    with pytest.raises(UnsafePathError):
        pull(repo, sid, tmp_path / "dest", limits=LIMITS)
    assert not (tmp_path / "x").exists() and not any((tmp_path / "dest").rglob("*"))


def test_node_naming_a_missing_node_is_a_clear_error_and_stops_gc(memory_store: Any,
                                                                  tmp_path: Path) -> None:
    repo = make_repo(memory_store, tmp_path / "c")
    top, raw = _node({"e": [{"n": "sub", "d": "ee" * 32}]})
    sid = _store_tree(repo, {top: raw}, top)
    with pytest.raises(FormatError, match=f"tree node {'ee' * 32} is missing"):
        pull(repo, sid, tmp_path / "dest", limits=LIMITS)
    assert sid in verify(repo).unreadable_snapshots
    with pytest.raises(FormatError, match="gc stopped before deleting anything"):
        gc.collect_garbage(repo, live_snapshots=[sid], grace_period_s=0)


def test_duplicate_and_unsorted_names_are_refused() -> None:
    for entries in (
        [{"n": "a", "s": 0, "m": 420, "h": H, "c": None}] * 2,
        [{"n": "b", "s": 0, "m": 420, "h": H, "c": None},
         {"n": "a", "s": 0, "m": 420, "h": H, "c": None}],
        [{"n": "a", "s": 0, "m": 420, "h": H, "c": None}, {"n": "a", "d": H}],
    ):
        top, raw = _node({"e": entries})
        with pytest.raises(FormatError, match="out of order or twice"):
            list(TreeWalker(_reader({top: raw})).files(top))


def test_a_diff_refuses_hostile_nodes_on_either_side() -> None:
    """The diff compares rows as decoded, without building entries; the same refusals hold."""
    row = {"s": 0, "m": 420, "h": H, "c": None}
    good, good_raw = _node({"e": [{"n": "a", **row}, {"n": "b", **row}]})
    for entries in (
        [{"n": "a", **row}] * 2,
        [{"n": "b", **row}, {"n": "a", **row}],
        [{"n": "a", **row}, {"n": "a", "d": H}],
    ):
        bad, bad_raw = _node({"e": entries})
        for a, b in ((good, bad), (bad, good)):
            with pytest.raises(FormatError, match="out of order or twice"):
                list(TreeWalker(_reader({good: good_raw, bad: bad_raw})).diff(a, b))
    bad, bad_raw = _node({"e": [{"n": "../x", **row}]})
    for a, b in ((good, bad), (bad, good)):
        with pytest.raises(UnsafePathError):
            list(TreeWalker(_reader({good: good_raw, bad: bad_raw})).diff(a, b))


def test_duplicates_across_parts_are_refused() -> None:
    leaf, raw = _node({"e": [{"n": "a", "s": 0, "m": 420, "h": H, "c": None}]})
    top, top_raw = _node({"p": [leaf.hex(), leaf.hex()]})
    with pytest.raises(FormatError, match="out of order or twice"):
        list(TreeWalker(_reader({leaf: raw, top: top_raw})).files(top))


def test_a_cycle_is_refused_not_followed() -> None:
    """Honest blake3 ids cannot form a cycle; a reader that does not verify could. Refused."""
    fake = "cc" * 32
    _, raw = _node({"e": [{"n": "loop", "d": fake}]})
    nodes = {bytes.fromhex(fake): raw}
    with pytest.raises(FormatError, match="cycle"):
        list(TreeWalker(_reader(nodes)).files(bytes.fromhex(fake)))
    _, parts = _node({"p": [fake]})
    with pytest.raises(FormatError, match="cycle"):
        list(TreeWalker(_reader({bytes.fromhex(fake): parts})).files(bytes.fromhex(fake)))


def test_huge_node_is_refused_without_expanding_it() -> None:
    bomb = TREE_MAGIC + zlib.compress(b'{"e": [' + b" " * (80 * 1024 * 1024) + b"]}", 9)
    with pytest.raises(FormatError, match="expands beyond"):
        decode_node(bomb, where="bomb")


def test_malformed_nodes_raise_format_error() -> None:
    docs: list[object] = [{}, {"e": 1}, {"p": []}, {"p": ["zz"]}, {"e": [{"n": 1}]},
            {"e": [{"n": "a", "d": "short"}]}, {"e": [], "p": [H]}, [1]]
    for doc in docs:
        _, raw = _node(doc)
        with pytest.raises(FormatError):
            list(TreeWalker(_reader({chunk_id(raw): raw})).files(chunk_id(raw)))
    with pytest.raises(FormatError):
        decode_node(b"CPVTREE1garbage", where="x")
    with pytest.raises(FormatError):
        decode_node(b"not a node", where="x")


def test_node_id_mismatch_in_a_pack_is_refused(tmp_path: Path) -> None:
    store = MemoryStore()
    repo = make_repo(store, tmp_path / "c")
    top, _ = _node({"e": [{"n": "a", "s": 0, "m": 420, "h": H, "c": None}]})
    _, other = _node({"e": [{"n": "b", "s": 0, "m": 420, "h": H, "c": None}]})
    sid = _store_tree(repo, {top: other}, top)  # the pack holds other bytes under top's id
    with pytest.raises(FormatError, match="damaged data for tree node"):
        repo.load_snapshot(sid)


# -- per-snapshot locations: a fresh machine reads one version's share of the index ---------


class _Recording:
    """The real store, with every key read recorded (what a fresh machine downloads)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.read: list[str] = []

    def get(self, key: str) -> bytes:
        self.read.append(key)
        data: bytes = self._inner.get(key)
        return data

    def get_range_into(self, key: str, start: int, buf: memoryview) -> None:
        self.read.append(key)
        self._inner.get_range_into(key, start, buf)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def test_fresh_pull_reads_only_that_versions_locations(any_store: Any, tmp_path: Path) -> None:
    from tests.engine.conftest import rand_bytes

    repo = make_repo(any_store, tmp_path / "c")
    sids = []
    for seed in range(3):
        src = tmp_path / f"v{seed}"
        src.mkdir()
        (src / "w.bin").write_bytes(rand_bytes(300_000, seed))
        sids.append(push(repo, src, limits=LIMITS).snapshot_id)
    assert len(list(any_store.list("index/"))) == 3
    recording = _Recording(any_store)
    fresh = Repository.open(recording)  # no cache: a new machine
    pull(fresh, sids[1], tmp_path / "out", limits=LIMITS)
    assert (tmp_path / "out" / "w.bin").read_bytes() == rand_bytes(300_000, 1)
    assert fresh.partial_index
    assert not [k for k in recording.read if k.startswith("index/")], recording.read
    assert f"locations/{sids[1]}" in recording.read


def test_stale_locations_fall_back_to_the_whole_index(memory_store: Any, tmp_path: Path) -> None:
    from cpv.engine.roots import RootInfo
    from tests.engine.conftest import rand_bytes

    repo = make_repo(memory_store, tmp_path / "c")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    shared = rand_bytes(200_000, 7)
    (a / "big.bin").write_bytes(rand_bytes(2_000_000, 8))
    (a / "s.bin").write_bytes(shared)
    push(repo, a, limits=LIMITS)
    (b / "s.bin").write_bytes(shared)
    keep = push(repo, b, limits=LIMITS, record_root=RootInfo(kind="data", name="d"))
    # gc repacks s.bin out of the mostly-dead pack and sweeps it: keep's locations are stale.
    report = gc.collect_garbage(repo, grace_period_s=0, repack_threshold=0.5)
    assert report.packs_repacked and set(report.packs_repacked) <= set(report.packs_deleted)
    assert memory_store.exists(f"locations/{keep.snapshot_id}")
    fresh = Repository.open(memory_store)
    pull(fresh, keep.snapshot_id, tmp_path / "out", limits=LIMITS)
    assert (tmp_path / "out" / "s.bin").read_bytes() == shared
    assert not fresh.partial_index  # it fell back


def test_gc_deletes_the_locations_of_dead_snapshots(memory_store: Any, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    repo = make_repo(memory_store, tmp_path / "c")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    assert memory_store.exists(f"locations/{sid}")
    gc.collect_garbage(repo, grace_period_s=0)
    assert not memory_store.exists(f"locations/{sid}")
    assert not list(memory_store.list("locations/"))


# -- fuzz -----------------------------------------------------------------------------------

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=10)
    | st.sampled_from([H, "..", ".git", "a/b", ""]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["e", "p", "n", "d", "s", "m", "h", "c", "l", "x"]), inner, max_size=5),
    max_leaves=20,
)


@settings(max_examples=220, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_json.map(lambda d: _node(d)[1]), st.binary(max_size=64).map(
    lambda b: TREE_MAGIC + b)))
def test_fuzz_nodes_raise_only_clear_errors(raw: bytes) -> None:
    """Whatever a node holds, a walk yields checked files or raises FormatError/UnsafePathError."""
    nid = chunk_id(raw)
    try:
        for f in TreeWalker(_reader({nid: raw})).files(nid):
            assert f.path and ".." not in f.path.split("/")
    except (FormatError, UnsafePathError):
        pass
    # gc's walk (no path rule, shared walked set) must fail just as clearly.
    try:
        for cid in TreeWalker(_reader({nid: raw}), check_paths=False,
                              walked=set()).chunk_ids(nid):
            assert len(cid) == 32
    except FormatError:
        pass


def test_needed_chunks_is_exactly_the_snapshots_chunks_and_nodes(memory_store: Any,
                                                                 tmp_path: Path) -> None:
    """What gc streams instead of loading trees must be what the loaded snapshot names."""
    src = make_tree(tmp_path / "src")
    for version in (1, 2):
        store = MemoryStore()
        repo = make_repo(store, tmp_path / f"c{version}", version=version)
        snap = push(repo, src, limits=LIMITS).snapshot
        fresh = Repository.open(store)
        sid = snap.encode()[0]
        want = {c for f in snap.files for c in f.chunks} | snap.node_ids
        assert set(fresh.needed_chunks(sid)) == want and want


def test_dry_run_after_a_partial_index_judges_against_the_whole_store(memory_store: Any,
                                                                      tmp_path: Path) -> None:
    from tests.engine.conftest import rand_bytes

    repo = make_repo(memory_store, tmp_path / "c")
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "x.bin").write_bytes(rand_bytes(100_000, 1))
    (b / "y.bin").write_bytes(rand_bytes(100_000, 2))
    sid_a = push(repo, a, limits=LIMITS).snapshot_id
    push(repo, b, limits=LIMITS)
    fresh = Repository.open(memory_store)
    fresh.load_snapshot(sid_a)
    assert fresh.partial_index  # only a's packs are indexed
    assert push(fresh, b, limits=LIMITS, dry_run=True).new_bytes == 0


def test_chunk_ids_names_every_part_of_a_split_folder() -> None:
    """gc keeps what this yields: a split folder's leaves must be in it, or a repack loses them."""
    files = _files(3000)  # above SINGLE_NODE_MAX: split into parts
    top, nodes = _nodes(files)
    assert len(nodes) > 3  # the folder really is split
    want = set(nodes) | {c for f in files for c in f.chunks}
    assert set(TreeWalker(_reader(nodes), check_paths=False).chunk_ids(top)) == want
    assert set(TreeWalker(_reader(nodes), walked=set()).chunk_ids(top)) == want


def test_walk_shared_across_versions_reads_each_node_once() -> None:
    """gc over many versions: what they share is read once, and nothing any of them needs is
    missed (the union equals the versions walked one by one)."""
    v1 = _files(4000, folders=40)
    v2 = [f if i // 100 != 7 else FileEntry(f.path, 1, 0o644, H, (bytes.fromhex(H),))
          for i, f in enumerate(v1)]  # one whole folder (of 40) changed
    (t1, n1), (t2, n2) = _nodes(v1), _nodes(v2)
    nodes = {**n1, **n2}
    alone = set(TreeWalker(_reader(nodes)).chunk_ids(t1)) | set(
        TreeWalker(_reader(nodes)).chunk_ids(t2))
    log: list[bytes] = []
    walked: set[bytes] = set()
    shared = set()
    for top in (t1, t2, t2):
        shared |= set(TreeWalker(_reader(nodes, log), walked=walked).chunk_ids(top))
    assert shared == alone
    assert len(log) == len(set(log)) == len(nodes)  # every node read once, the third walk none
    assert len(set(n2) - set(n1)) <= 3  # the second version's new nodes: top and one folder


def test_cycles_stop_gcs_walk_too() -> None:
    """The chunk walk gc uses (no path rule, shared walked set) refuses a cycle, never loops."""
    fake = bytes.fromhex("cc" * 32)
    _, loop = _node({"e": [{"n": "loop", "d": fake.hex()}]})
    _, parts = _node({"p": [fake.hex()]})
    for raw in (loop, parts):
        for walked in (None, set[bytes]()):
            walker = TreeWalker(_reader({fake: raw}), check_paths=False, walked=walked)
            with pytest.raises(FormatError, match="cycle"):
                list(walker.chunk_ids(fake))
    # A longer loop, through a sub-folder that an earlier version walked: still a cycle.
    a, b = bytes.fromhex("aa" * 32), bytes.fromhex("bb" * 32)
    _, raw_a = _node({"e": [{"n": "b", "d": b.hex()}]})
    _, raw_b = _node({"e": [{"n": "a", "d": a.hex()}]})
    with pytest.raises(FormatError, match="cycle"):
        list(TreeWalker(_reader({a: raw_a, b: raw_b}), walked=set()).chunk_ids(a))


def test_node_listing_a_parent_name_is_live_for_gc_but_refused_for_pull() -> None:
    """``../x`` in a node never reaches a file system, but its chunks count as live: gc must
    not decide liveness by the path rule (it would free data a repaired snapshot needs)."""
    top, raw = _node({"e": [{"n": "../x", "s": 5, "m": 420, "h": H, "c": None}]})
    with pytest.raises(UnsafePathError):
        list(TreeWalker(_reader({top: raw})).files(top))
    assert set(TreeWalker(_reader({top: raw}), check_paths=False,
                          walked=set()).chunk_ids(top)) == {top, bytes.fromhex(H)}
