"""Incremental tree encoding: a push reuses the node of every folder that is as it was pushed.

What must hold, and is checked here against a push that encodes everything again (``rehash``):
an unchanged folder keeps its node unread, a change anywhere in a folder (content, mode, name,
a deleted, added or re-pointed entry) gives that folder and its ancestors new nodes and nothing
else, and the version pulled back is the tree on disk. Reuse never names what the store does
not hold (invariant 9), and a folder whose files were just written is not trusted.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.engine.push import PushResult
from cpv.store.local import LocalStore
from tests.engine.conftest import LIMITS, age, make_repo, make_tree, rand_bytes, tree_digest

FOLDERS = 6  # "", data, data/train, other, other/a, other/b


def _tree(root: Path) -> Path:
    make_tree(root)
    for name in ("a", "b"):
        sub = root / "other" / name
        sub.mkdir(parents=True)
        for i in range(5):
            (sub / f"{name}{i}.bin").write_bytes(rand_bytes(3000 + i, ord(name) * 100 + i))
        os.symlink(f"{name}0.bin", sub / "first")
    age(root)
    return root


def _push_and_check(repo: Repository, src: Path, out: Path) -> PushResult:
    """Push, then prove reuse changed nothing: same id as encoding everything, same tree back."""
    result = push(repo, src, limits=LIMITS)
    again = push(repo, src, limits=LIMITS, rehash=True)
    assert again.folders_reused == 0 and again.snapshot_id == result.snapshot_id
    pull(repo, result.snapshot_id, out, limits=LIMITS)
    assert tree_digest(out) == tree_digest(src)
    return result


def test_unchanged_folders_keep_their_nodes_and_a_change_writes_only_its_path(
        local_store: LocalStore, tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    repo = make_repo(local_store, tmp_path / "c")
    first = push(repo, src, limits=LIMITS)
    assert first.folders_reused == 0 and first.tree_nodes == FOLDERS
    noop = push(repo, src, limits=LIMITS)
    assert (noop.snapshot_id, noop.folders_reused, noop.tree_nodes_new, noop.hashed_bytes) == (
        first.snapshot_id, FOLDERS, 0, 0)
    assert noop.files == first.files and noop.total_bytes == first.total_bytes
    (src / "data" / "train" / "s0003.txt").write_bytes(b"changed")
    age(src / "data" / "train" / "s0003.txt")
    changed = _push_and_check(repo, src, tmp_path / "out")
    # data/train, data and the top folder: three new nodes, the other three folders reused.
    assert (changed.tree_nodes_new, changed.folders_reused) == (3, FOLDERS - 3)
    assert changed.hashed_bytes == len(b"changed")
    assert [c.path for c in repo.diff(first.snapshot_id, changed.snapshot_id)] == [
        "data/train/s0003.txt"]
    assert not verify(Repository.open(local_store), deep=True).affected


def _chmod(sub: Path) -> None:
    (sub / "a1.bin").chmod(0o600)


def _rename(sub: Path) -> None:
    (sub / "a1.bin").rename(sub / "a1-renamed.bin")


def _delete(sub: Path) -> None:
    (sub / "a1.bin").unlink()


def _add(sub: Path) -> None:
    (sub / "new.bin").write_bytes(b"new file")
    age(sub / "new.bin")


def _relink(sub: Path) -> None:
    (sub / "first").unlink()
    os.symlink("a2.bin", sub / "first")


def _file_to_folder(sub: Path) -> None:
    (sub / "a1.bin").unlink()
    (sub / "a1.bin").mkdir()
    (sub / "a1.bin" / "inner").write_bytes(b"inner")
    age(sub / "a1.bin")


@pytest.mark.parametrize("change", [_chmod, _rename, _delete, _add, _relink, _file_to_folder])
def test_any_change_in_an_otherwise_unchanged_folder_gives_it_a_new_node(
        local_store: LocalStore, tmp_path: Path, change: Callable[[Path], None]) -> None:
    src = _tree(tmp_path / "src")
    repo = make_repo(local_store, tmp_path / "c")
    first = push(repo, src, limits=LIMITS)
    assert push(repo, src, limits=LIMITS).folders_reused == FOLDERS
    change(src / "other" / "a")
    result = _push_and_check(repo, src, tmp_path / "out")
    assert result.snapshot_id != first.snapshot_id
    # other/a, other and the top folder are encoded again (a new sub-folder adds its own node).
    assert result.folders_reused == FOLDERS - 3
    paths = {c.path for c in repo.diff(first.snapshot_id, result.snapshot_id)}
    assert paths and all(p.startswith("other/a/") for p in paths)


def test_a_folder_is_not_reused_in_a_store_that_lacks_its_data(tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    cache = tmp_path / "c"  # one machine's cache, two stores
    first_store, second_store = LocalStore(tmp_path / "s1"), LocalStore(tmp_path / "s2")
    push(make_repo(first_store, cache), src, limits=LIMITS)
    assert push(Repository.open(first_store, cache_dir=cache), src,
                limits=LIMITS).folders_reused == FOLDERS
    second = push(make_repo(second_store, cache), src, limits=LIMITS)
    assert second.folders_reused == 0 and second.hashed_bytes == second.total_bytes
    pull(Repository.open(second_store), second.snapshot_id, tmp_path / "out", limits=LIMITS)
    assert tree_digest(tmp_path / "out") == tree_digest(src)


def test_a_folder_with_a_just_written_file_is_not_trusted(local_store: LocalStore,
                                                          tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    repo = make_repo(local_store, tmp_path / "c")
    (src / "other" / "b" / "b1.bin").write_bytes(b"racy: written within the clock's tick")
    push(repo, src, limits=LIMITS)
    again = push(repo, src, limits=LIMITS)
    # other/b holds a file too new to vouch for its content: it and its ancestors are read.
    assert again.folders_reused == FOLDERS - 3
    assert again.hashed_bytes == len(b"racy: written within the clock's tick")


def test_files_hashed_ahead_of_their_folder_give_the_same_version(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    push_module = importlib.import_module("cpv.engine.push")  # the package's push is the function
    src = _tree(tmp_path / "src")
    plain = push(make_repo(LocalStore(tmp_path / "s1"), tmp_path / "c1"), src, limits=LIMITS)
    # Every file over 2 KB counts as "big": its hashing starts before any folder is encoded.
    monkeypatch.setattr(push_module, "_EARLY_MIN", 2000)
    store = LocalStore(tmp_path / "s2")
    early = push(make_repo(store, tmp_path / "c2"), src, limits=LIMITS)
    assert early.snapshot_id == plain.snapshot_id and early.hashed_bytes == plain.total_bytes
    (src / "other" / "a" / "a3.bin").write_bytes(rand_bytes(5000, 7))
    age(src / "other" / "a" / "a3.bin")
    again = _push_and_check(Repository.open(store, cache_dir=tmp_path / "c2"), src,
                            tmp_path / "out")
    assert again.hashed_bytes == 5000 and again.folders_reused == FOLDERS - 3


def _fresh_pull_uses_only_its_pack_list(store: LocalStore, sid: str, src: Path,
                                        out: Path) -> None:
    """A new machine pulls ``sid`` through its pack list alone: the list names every pack."""
    fresh = Repository.open(store)
    pull(fresh, sid, out, limits=LIMITS)
    assert fresh.partial_index  # never fell back to the whole index
    assert tree_digest(out) == tree_digest(src)


def test_trusted_folders_give_a_complete_pack_list(local_store: LocalStore,
                                                   tmp_path: Path) -> None:
    src = _tree(tmp_path / "src")
    cache = tmp_path / "c"
    push(make_repo(local_store, cache), src, limits=LIMITS)
    (src / "other" / "a" / "a2.bin").write_bytes(rand_bytes(4000, 99))
    age(src / "other" / "a" / "a2.bin")
    # Three folders trusted from their rows (their packs unread), three encoded again.
    changed = push(Repository.open(local_store, cache_dir=cache), src, limits=LIMITS)
    assert changed.folders_reused == FOLDERS - 3
    _fresh_pull_uses_only_its_pack_list(local_store, changed.snapshot_id, src, tmp_path / "o")


def test_after_a_gc_reuse_is_checked_again_and_what_went_is_uploaded(
        local_store: LocalStore, tmp_path: Path) -> None:
    from cpv.engine.gc import collect_garbage

    src = _tree(tmp_path / "src")
    cache = tmp_path / "c"
    repo = make_repo(local_store, cache)
    push(repo, src, limits=LIMITS)  # no root: dead once the grace period is over
    assert push(repo, src, limits=LIMITS).folders_reused == FOLDERS
    for _ in range(2):  # mark, then sweep
        collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert not list(local_store.list("packs/"))
    # The rows still match the tree, but the store lost their chunks: nothing is reused.
    again = push(Repository.open(local_store, cache_dir=cache), src, limits=LIMITS)
    assert again.folders_reused == 0 and again.hashed_bytes == again.total_bytes
    _fresh_pull_uses_only_its_pack_list(local_store, again.snapshot_id, src, tmp_path / "o")
    # Vouched for anew: the next push trusts them again.
    assert push(Repository.open(local_store, cache_dir=cache), src,
                limits=LIMITS).folders_reused == FOLDERS


def _touch(sub: Path) -> None:
    st = (sub / "a1.bin").stat()
    os.utime(sub / "a1.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def _same_bytes_new_inode(sub: Path) -> None:
    import shutil

    shutil.copy2(sub / "a1.bin", sub / "a1.tmp")  # same bytes, same mtime, another inode
    (sub / "a1.tmp").replace(sub / "a1.bin")


def _same_size_and_mtime_new_bytes(sub: Path) -> None:
    st = (sub / "a1.bin").stat()
    (sub / "a1.bin").write_bytes(rand_bytes(st.st_size, 4242))
    os.utime(sub / "a1.bin", ns=(st.st_atime_ns, st.st_mtime_ns))  # only ctime tells


@pytest.mark.parametrize("change", [_touch, _same_bytes_new_inode, _same_size_and_mtime_new_bytes])
def test_a_stamp_change_alone_makes_the_folder_read_again(
        local_store: LocalStore, tmp_path: Path, change: Callable[[Path], None]) -> None:
    src = _tree(tmp_path / "src")
    repo = make_repo(local_store, tmp_path / "c")
    push(repo, src, limits=LIMITS)
    assert push(repo, src, limits=LIMITS).folders_reused == FOLDERS
    change(src / "other" / "a")
    result = _push_and_check(repo, src, tmp_path / "out")  # the tree on disk, pulled back
    assert result.folders_reused == FOLDERS - 3


def test_a_changed_folder_takes_its_other_files_from_the_trusted_row_unlooked_up(
        local_store: LocalStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cpv.engine.index import ChunkIndex

    src = _tree(tmp_path / "src")
    cache = tmp_path / "c"
    first = push(make_repo(local_store, cache), src, limits=LIMITS)
    others = {c for f in first.load_snapshot().files
              if f.path.startswith("other/a/a") and f.path != "other/a/a2.bin" for c in f.chunks}
    assert others
    (src / "other" / "a" / "a2.bin").write_bytes(rand_bytes(4000, 99))
    age(src / "other" / "a" / "a2.bin")
    asked: set[object] = set()
    real = ChunkIndex.__contains__

    real_pack_of = ChunkIndex.pack_of

    def spy(self: ChunkIndex, cid: object) -> bool:
        asked.add(cid)
        return real(self, cid)

    def spy_pack_of(self: ChunkIndex, cid: bytes) -> str | None:
        asked.add(cid)
        return real_pack_of(self, cid)

    repo = Repository.open(local_store, cache_dir=cache)
    with monkeypatch.context() as patched:
        patched.setattr(ChunkIndex, "__contains__", spy)
        patched.setattr(ChunkIndex, "pack_of", spy_pack_of)
        changed = push(repo, src, limits=LIMITS)
    assert changed.folders_reused == FOLDERS - 3 and changed.hashed_bytes == 4000
    # The trusted push's row of other/a names their chunks and their packs: in the store,
    # neither checked nor located again, and the version's pack list still names them.
    assert not others & asked
    _fresh_pull_uses_only_its_pack_list(local_store, changed.snapshot_id, src, tmp_path / "f")
    again = push(repo, src, limits=LIMITS, rehash=True)
    assert again.snapshot_id == changed.snapshot_id
    pull(repo, changed.snapshot_id, tmp_path / "o", limits=LIMITS)
    assert tree_digest(tmp_path / "o") == tree_digest(src)


def test_rows_of_a_cpv_without_chunk_packs_are_still_used(local_store: LocalStore,
                                                           tmp_path: Path) -> None:
    import sqlite3

    from cpv.engine.statcache import STAT_CACHE_FILE

    src = _tree(tmp_path / "src")
    cache = tmp_path / "c"
    push(make_repo(local_store, cache), src, limits=LIMITS)
    (db_path,) = cache.rglob(STAT_CACHE_FILE)
    with sqlite3.connect(db_path) as db:  # the table as the previous cpv wrote it
        db.execute("ALTER TABLE folders DROP COLUMN chunk_packs")
    assert "chunk_packs" not in {r[1] for r in sqlite3.connect(db_path).execute(
        "PRAGMA table_info(folders)")}
    (src / "other" / "a" / "a2.bin").write_bytes(rand_bytes(4000, 99))
    age(src / "other" / "a" / "a2.bin")
    changed = push(Repository.open(local_store, cache_dir=cache), src, limits=LIMITS)
    assert changed.folders_reused == FOLDERS - 3 and changed.hashed_bytes == 4000
    _fresh_pull_uses_only_its_pack_list(local_store, changed.snapshot_id, src, tmp_path / "o")
    assert push(Repository.open(local_store, cache_dir=cache), src,
                limits=LIMITS).folders_reused == FOLDERS
