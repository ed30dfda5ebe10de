"""Bad input and failures: each gives a clear error and leaves store and workspace intact."""

from __future__ import annotations

import errno
import importlib
import os
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.engine.format import CONFIG_KEY
from cpv.engine.packs import pack_id_from_key
from cpv.engine.snapshot import FileEntry, Snapshot
from cpv.errors import (
    FormatError,
    IntegrityError,
    LocalIOError,
    NoStoreError,
    SourceChangedError,
    StoreError,
    TransientStoreError,
    TreeDamagedError,
    UnsafePathError,
)
from cpv.store import MiB

from .conftest import LIMITS, make_repo, make_tree, rand_bytes, tree_digest


class FlakyStore:
    """Delegates to a real store but fails the N-th upload of part or object (crash injection)."""

    def __init__(self, inner: Any, *, fail_after: int) -> None:
        self._inner = inner
        self.url = inner.url
        self.caps = inner.caps
        self.uploads = 0
        self.fail_after = fail_after

    def _tick(self) -> None:
        self.uploads += 1
        if self.uploads > self.fail_after:
            raise TransientStoreError("injected failure")

    def put(self, key: str, data: Any, *, if_absent: bool = False) -> None:
        if key.startswith("packs/"):
            self._tick()
        self._inner.put(key, data, if_absent=if_absent)

    def start_multipart(self, key: str) -> Any:
        inner = self._inner.start_multipart(key)
        outer = self

        class Upload:
            def __init__(self) -> None:
                self.key, self.upload_id = inner.key, inner.upload_id

            def upload_part(self, n: int, data: Any) -> None:
                outer._tick()
                inner.upload_part(n, data)

            def complete(self) -> None:
                inner.complete()

            def abort(self) -> None:
                inner.abort()

        return Upload()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _keys(store: Any, prefix: str) -> list[str]:
    return sorted(o.key for o in store.list(prefix))


@pytest.mark.parametrize("fail_after", [0, 1, 3])
def test_interrupted_push_leaves_no_reference_and_resumes(
    any_store: Any, tmp_path: Path, fail_after: int
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(rand_bytes(7 * MiB, 1))
    make_repo(any_store, tmp_path / "c0")
    flaky = FlakyStore(any_store, fail_after=fail_after)
    repo = Repository.open(flaky, cache_dir=tmp_path / "c1")
    with pytest.raises(StoreError):
        push(repo, src, limits=LIMITS)
    # Invariant 1: no snapshot and no index were written for the failed push.
    assert _keys(any_store, "snapshots/") == []
    assert _keys(any_store, "index/") == []
    complete_packs = [k for k in _keys(any_store, "packs/") if pack_id_from_key(k)]
    # Re-run on a healthy connection: completes, uploads only what the orphans lack.
    repo2 = Repository.open(any_store, cache_dir=tmp_path / "c1")
    result = push(repo2, src, limits=LIMITS)
    orphan_bytes = sum(o.size for o in any_store.list("packs/") if o.key in complete_packs)
    assert result.new_bytes <= 7 * MiB - orphan_bytes + 64 * 1024 * len(complete_packs) + 1
    assert verify(repo2, deep=True).ok
    out = tmp_path / "out"
    pull(repo2, result.snapshot_id, out, limits=LIMITS)
    assert (out / "a.bin").read_bytes() == (src / "a.bin").read_bytes()


def test_failed_multipart_uploads_are_aborted(memory_store: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(rand_bytes(12 * MiB, 2))
    make_repo(memory_store, tmp_path / "c", pack_size=12 * MiB)
    flaky = FlakyStore(memory_store, fail_after=1)
    with pytest.raises(StoreError):
        push(Repository.open(flaky, cache_dir=tmp_path / "c"), src, limits=LIMITS)
    assert list(memory_store.list_multipart("")) == []


def test_corrupt_pack_is_detected_and_nothing_is_overwritten(
    local_store: Any, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src")
    repo = make_repo(local_store, tmp_path / "c")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    out = tmp_path / "out"
    pull(repo, sid, out, limits=LIMITS)
    before = tree_digest(out)
    (out / "model.bin").unlink()  # force a re-download of the big file
    # Flip one byte in the middle of every pack.
    for obj in local_store.list("packs/"):
        path = Path(local_store.url) / obj.key
        data = bytearray(path.read_bytes())
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="damaged"):
        pull(Repository.open(local_store, cache_dir=tmp_path / "c"), sid, out, limits=LIMITS)
    assert not (out / "model.bin").exists()
    assert not [p for p in out.rglob("*") if ".cpv-" in p.name]
    del before["model.bin"]
    assert tree_digest(out) == before
    report = verify(Repository.open(local_store), deep=True)
    assert not report.ok and report.damaged_chunks
    assert sid in report.affected


@pytest.mark.parametrize("version", [1, 2])
def test_missing_pack_fails_before_writing(memory_store: Any, tmp_path: Path,
                                           version: int) -> None:
    src = make_tree(tmp_path / "src")
    repo = make_repo(memory_store, tmp_path / "c", version=version)
    sid = push(repo, src, limits=LIMITS).snapshot_id
    for obj in list(memory_store.list("packs/")):
        memory_store.delete(obj.key)
    out = tmp_path / "out"
    # Format 2: the tree nodes live in the packs too, so the snapshot itself is unreadable.
    with pytest.raises(StoreError if version == 1 else TreeDamagedError):
        pull(Repository.open(memory_store), sid, out, limits=LIMITS)
    assert not [p for p in out.rglob("*") if p.is_file() and p.stat().st_size > 0]
    report = verify(Repository.open(memory_store))
    assert report.missing_packs and sid in report.affected
    if version == 2:
        assert "lost data this version needs" in report.unreadable_snapshots[sid]


def test_unknown_store_format_is_refused(memory_store: Any) -> None:
    Repository.init(memory_store)
    raw = memory_store.get(CONFIG_KEY).replace(b'"version": 2', b'"version": 99')
    memory_store.delete(CONFIG_KEY)
    memory_store.put(CONFIG_KEY, raw)
    with pytest.raises(FormatError, match="version 99"):
        Repository.open(memory_store)


def test_no_store_at_location(memory_store: Any) -> None:
    with pytest.raises(NoStoreError):
        Repository.open(memory_store)


def test_file_changing_during_push_is_refused(
    memory_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cpv.engine re-exports the push() function under the module's name; fetch the module.
    push_mod = importlib.import_module("cpv.engine.push")

    src = tmp_path / "src"
    src.mkdir()
    target = src / "growing.bin"
    target.write_bytes(rand_bytes(2 * MiB, 1))
    real = push_mod.iter_file_chunks

    def appending(*args: Any, **kw: Any) -> Any:
        for i, item in enumerate(real(*args, **kw)):
            if i == 1:
                with open(target, "ab") as fh:
                    fh.write(b"more data written by a training loop")
            yield item

    monkeypatch.setattr(push_mod, "iter_file_chunks", appending)
    repo = make_repo(memory_store, tmp_path / "c")
    with pytest.raises(SourceChangedError, match=r"growing\.bin"):
        push(repo, src, limits=LIMITS)
    assert _keys(memory_store, "snapshots/") == []


def test_unreadable_file_is_a_clear_error(
    memory_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src")
    real_open = os.open

    def deny(path: Any, flags: int, *a: Any, **k: Any) -> int:
        if str(path).endswith("model.bin"):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    with pytest.raises(LocalIOError, match=r"cannot read .*model\.bin"):
        push(make_repo(memory_store, tmp_path / "c"), src, limits=LIMITS)


def test_missing_source_is_a_clear_error(memory_store: Any, tmp_path: Path) -> None:
    with pytest.raises(LocalIOError, match="does not exist"):
        push(make_repo(memory_store, tmp_path / "c"), tmp_path / "nope", limits=LIMITS)


def test_symlink_escaping_the_tree_is_refused_on_push(memory_store: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    os.symlink("/etc/passwd", src / "evil")
    with pytest.raises(UnsafePathError):
        push(make_repo(memory_store, tmp_path / "c"), src, limits=LIMITS)


@pytest.mark.parametrize("bad", ["../escape.txt", "/etc/cron.d/x", "a/../../b", "a//b", "a\\b"])
def test_hostile_snapshot_paths_are_refused(memory_store: Any, tmp_path: Path, bad: str) -> None:
    repo = make_repo(memory_store, tmp_path / "c")
    snap = Snapshot(files=(FileEntry(bad, 1, 0o644, "00" * 32, (b"\0" * 32,)),))
    sid, raw = snap.encode()
    memory_store.put("snapshots/" + sid, raw)
    out = tmp_path / "out"
    with pytest.raises(UnsafePathError):
        pull(repo, sid, out, limits=LIMITS)
    assert not (tmp_path / "escape.txt").exists()
    assert not out.exists() or not any(out.rglob("*"))


def test_symlinked_parent_in_destination_is_refused(memory_store: Any, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "f").write_bytes(b"payload")
    repo = make_repo(memory_store, tmp_path / "c")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(elsewhere, out / "sub")
    with pytest.raises(UnsafePathError, match="symlink"):
        pull(repo, sid, out, limits=LIMITS)
    assert list(elsewhere.iterdir()) == []


def test_disk_full_during_pull_keeps_old_file(
    memory_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(rand_bytes(3 * MiB, 1))
    repo = make_repo(memory_store, tmp_path / "c")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    out = tmp_path / "out"
    out.mkdir()
    (out / "w.bin").write_bytes(b"old version")
    calls = {"n": 0}
    real = os.pwrite

    def full(fd: int, data: Any, offset: int) -> int:
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", full)
    with pytest.raises(LocalIOError, match="disk full"):
        pull(repo, sid, out, limits=LIMITS)
    assert (out / "w.bin").read_bytes() == b"old version"
    assert [p.name for p in out.iterdir()] == ["w.bin"]


def test_a_pull_in_batches_refuses_a_chunk_the_index_lacks_before_writing(
        memory_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pull_module = importlib.import_module("cpv.engine.pull")
    monkeypatch.setattr(pull_module, "PULL_BATCH_FILES", 2)
    src = make_tree(tmp_path / "src")
    repo = make_repo(memory_store, tmp_path / "c", version=1)
    push(repo, src, limits=LIMITS)
    before = {o.key for o in memory_store.list("index/")}
    (src / "zz-last.bin").write_bytes(rand_bytes(5000, 77))  # in the last batch, its own pack
    sid = push(repo, src, limits=LIMITS).snapshot_id
    for key in {o.key for o in memory_store.list("index/")} - before:
        memory_store.delete(key)  # the store no longer indexes that chunk
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match=r"zz-last\.bin"):
        pull(Repository.open(memory_store), sid, out, limits=LIMITS)
    assert not [p for p in out.rglob("*") if p.is_file()]  # the first batches wrote nothing

    (src / "zz-last.bin").unlink()
    fine = push(Repository.open(memory_store, cache_dir=tmp_path / "c2"), src, limits=LIMITS)
    result = pull(Repository.open(memory_store), fine.snapshot_id, out, limits=LIMITS)
    assert tree_digest(out) == tree_digest(src)  # batches of two give the whole tree
    assert result.files_written == result.files > 4


def test_a_pull_in_batches_records_each_batch_once_it_has_settled(
        memory_store: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stat cache takes a written file only once it is out of the racy window; a batch
    recorded as soon as it was written would never be (each batch is written in < 2 s)."""
    import time

    from cpv.engine import statcache

    pull_module = importlib.import_module("cpv.engine.pull")
    monkeypatch.setattr(pull_module, "PULL_BATCH_FILES", 8)
    monkeypatch.setattr(statcache, "_RACY_NS", 300_000_000)
    real_fetch = pull_module._fetch_all

    def slow_fetch(*args: Any) -> None:
        time.sleep(0.35)  # the batch before has settled by the time this one is written
        real_fetch(*args)

    src = make_tree(tmp_path / "src")
    sid = push(make_repo(memory_store, tmp_path / "c"), src, limits=LIMITS).snapshot_id
    monkeypatch.setattr(pull_module, "_fetch_all", slow_fetch)
    repo = Repository.open(memory_store, cache_dir=tmp_path / "c2")
    out = tmp_path / "out"
    result = pull(repo, sid, out, limits=LIMITS)
    files = [p for p in out.rglob("*") if p.is_file() and not p.is_symlink()]
    assert result.files_written >= len(files) > 6
    cache = repo.stat_cache
    assert cache is not None
    known = cache.stamps_under(os.path.abspath(out))
    # Every batch but the last settled while a later one was written.
    assert len(known) >= len(files) - 8
