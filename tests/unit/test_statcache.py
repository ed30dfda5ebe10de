"""The stat cache: what one range query loads, and that lookups outside it still work."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpv.engine.statcache import FileStamp, StatCache, cache_key


@pytest.fixture
def sc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StatCache:
    monkeypatch.setattr("cpv.engine.statcache._RACY_NS", 0)
    return StatCache(tmp_path / "sc.sqlite", chunker_key="k")


def _stamp(n: int) -> FileStamp:
    return FileStamp(size=n, mtime_ns=n, ctime_ns=n, ino=n)


def test_load_folder_serves_its_own_files_and_no_sibling_with_a_shared_prefix(
    sc: StatCache,
) -> None:
    # "/w/a" and "/w/a-b", "/w/a0": siblings whose names extend "a" must not be served as "a/".
    for n, key in enumerate(["/w/a/x", "/w/a/d/y", "/w/a-b/x", "/w/a0/x", "/w/b"], start=1):
        sc.record(key, _stamp(n), f"h{n}", (bytes([n]) * 32,))
    sc.flush()
    sc.load_folder("/w/a/")
    assert set(sc._loaded) == {"/w/a/x", "/w/a/d/y"}
    hit = sc.lookup("/w/a/d/y", _stamp(2))
    assert hit is not None and hit.blake3 == "h2" and hit.chunks == (b"\x02" * 32,)
    assert sc.lookup("/w/a/x", _stamp(99)) is None  # stamp changed: a miss
    assert sc.lookup("/w/a/missing", _stamp(1)) is None
    # Outside the loaded folder the lookup goes to SQLite as before.
    other = sc.lookup("/w/a-b/x", _stamp(3))
    assert other is not None and other.blake3 == "h3"
    # A flush drops the loaded copy, so a later load sees new entries.
    sc.record("/w/a/z", _stamp(6), "h6", ())
    sc.flush()
    assert sc.lookup("/w/a/z", _stamp(6)) is not None


def test_cache_key_is_the_same_for_every_spelling_of_the_folder(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    spellings = [str(tmp_path), str(tmp_path) + "/", str(tmp_path / "sub" / "..")]
    keys = {cache_key(os.path.abspath(s), "f/g.bin") for s in spellings}
    assert keys == {str(tmp_path / "f" / "g.bin")}


def test_digests_need_no_chunker_and_serve_no_chunk_lists(sc: StatCache, tmp_path: Path) -> None:
    """A whole file's blake3 does not depend on the chunker: the store-less cache of status
    and the no-op push answers it, but never a chunk list, and never records one."""
    sc.record("/w/a", _stamp(1), "h1", (b"\x01" * 32,))
    sc.flush()
    digests = StatCache(tmp_path / "sc.sqlite", chunker_key=None)
    assert digests.digest("/w/a", _stamp(1)) == "h1"
    assert digests.digest("/w/a", _stamp(2)) is None  # another stamp: a doubt
    assert digests.lookup("/w/a", _stamp(1)) is None
    digests.record("/w/b", _stamp(3), "h3", ())
    digests.close()
    assert sc.digest("/w/b", _stamp(3)) is None
    other = StatCache(tmp_path / "sc.sqlite", chunker_key="another")
    assert other.lookup("/w/a", _stamp(1)) is None and other.digest("/w/a", _stamp(1)) == "h1"


def test_queued_entries_are_written_in_batches(
    sc: StatCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Entries of 10^6 files must not wait in memory for the end of a push."""
    monkeypatch.setattr("cpv.engine.statcache._FLUSH_ROWS", 3)
    for n in range(1, 8):
        sc.record(f"/w/{n}", _stamp(n), f"h{n}", ())
    assert len(sc._pending) == 1
    reader = StatCache(tmp_path / "sc.sqlite", chunker_key="k")
    assert [reader.digest(f"/w/{n}", _stamp(n)) for n in (1, 6, 7)] == ["h1", "h6", None]


def test_folder_rows_of_an_older_cpv_are_dropped_and_the_file_rows_kept(tmp_path: Path) -> None:
    import sqlite3

    from cpv.engine.statcache import CachedFolder

    path = tmp_path / "sc.sqlite"
    old = sqlite3.connect(path)  # the layout before trust tokens: no packs, no token
    old.execute("CREATE TABLE folders (path TEXT PRIMARY KEY, chunker TEXT NOT NULL, "
                "fingerprint BLOB NOT NULL, nodes BLOB NOT NULL, chunks BLOB NOT NULL, "
                "files INTEGER NOT NULL, size INTEGER NOT NULL)")
    old.execute("INSERT INTO folders VALUES ('/w/a/', 'k', x'01', x'02', x'', 1, 1)")
    old.commit()
    old.close()
    sc = StatCache(path, chunker_key="k")
    assert sc.folder("/w/a/") is None  # no row vouched for by a token: encoded again
    row = CachedFolder(b"f" * 32, (b"n" * 32,), b"c" * 32, 1, 1024, b"p" * 32, b"t" * 16)
    sc.record_folder("/w/a/", row)
    sc.record_store_state("store-1", b"t" * 16, frozenset({"i1", "i2"}))
    assert sc.store_state("store-1") is None  # queued: written by flush, with the rows
    sc.close()
    again = StatCache(path, chunker_key="k")
    assert again.folder("/w/a/") == row
    assert again.store_state("store-1") == (b"t" * 16, frozenset({"i1", "i2"}))
    assert again.store_state("store-2") is None


def test_load_range_replaces_what_was_read_and_serves_only_its_keys(sc: StatCache) -> None:
    for n, key in enumerate(["/d/a.txt", "/d/a/x", "/d/b/y", "/d/c"], start=1):
        sc.record(key, _stamp(n), f"h{n}", ())
    sc.flush()
    sc.load_range("/d/a.txt", "/d/a/x\0")  # a batch's lowest and highest key, both kept
    assert set(sc._loaded) == {"/d/a.txt", "/d/a/x"}
    sc.load_range("/d/b/y", "/d/c\0")  # the next batch: the previous one's rows are gone
    assert set(sc._loaded) == {"/d/b/y", "/d/c"}
    hit = sc.lookup("/d/c", _stamp(4))
    assert hit is not None and hit.blake3 == "h4"
    outside = sc.lookup("/d/a.txt", _stamp(1))  # outside the range: read from SQLite
    assert outside is not None and outside.blake3 == "h1"


def test_rows_read_through_a_reader_are_those_flushed(sc: StatCache, tmp_path: Path) -> None:
    sc.record("/r/x", _stamp(1), "h1", ())
    sc.flush()
    sc.record("/r/y", _stamp(2), "h2", ())  # queued, not flushed: a reader cannot see it
    reader = sc.reader()
    try:
        assert set(reader.stamps_in("/r")) == {"x"}
        reader.record("/r/z", _stamp(3), "h3", ())
        reader.flush()  # read-only: the write fails quietly, nothing is lost but that row
    finally:
        reader.close()
    sc.flush()
    assert set(sc.stamps_in("/r")) == {"x", "y"}
