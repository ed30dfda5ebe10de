"""The engine's lazy reader against the real S3 test server: ranges, verification, caching."""

from __future__ import annotations

import bisect
import io
import os
import random
from pathlib import Path

import pytest

from cpv.engine import push
from cpv.engine.packs import pack_key
from cpv.engine.reader import ChunkCache, SnapshotReader
from cpv.errors import IntegrityError, NotAFileError, PathNotFoundError, UnsafePathError
from cpv.store import KiB, MiB
from tests.engine.conftest import LIMITS, SMALL_CHUNKER, make_repo, rand_bytes

from .conftest import Pushed

pytestmark = pytest.mark.integration


def test_every_file_reads_back_byte_identical(pushed: Pushed) -> None:
    reader = SnapshotReader(pushed.repo(), pushed.snapshot_id, limits=LIMITS)
    files = reader.files()
    assert len(files) == 44  # make_tree's 43 regular files + big.bin; the symlink is not a file
    for info in files:
        with reader.open(info.path) as fh:
            assert fh.read() == (pushed.src / info.path).read_bytes(), info.path
            assert fh.size == info.size


def test_random_ranges_match_the_source(pushed: Pushed) -> None:
    data = (pushed.src / "big.bin").read_bytes()
    reader = SnapshotReader(pushed.repo(), pushed.snapshot_id, limits=LIMITS)
    rng = random.Random(5)
    with reader.open("big.bin") as fh:
        for _ in range(200):
            start = rng.randrange(len(data) + 10)
            length = rng.choice([0, 1, 17, 4096, 70 * KiB, 300 * KiB, 3 * MiB])
            fh.seek(start)
            assert fh.read(length) == data[start : start + length], (start, length)


def test_a_small_read_fetches_only_the_chunks_it_touches(pushed: Pushed) -> None:
    repo = pushed.repo(cache=None)  # no disk cache: every chunk comes from the store
    reader = SnapshotReader(repo, pushed.snapshot_id, limits=LIMITS)
    fh = reader.open("big.bin")  # loads the snapshot and the index
    before, requests = repo.store.bytes_down, repo.store.request_count
    fh.seek(5 * MiB)
    assert fh.read(100) == (pushed.src / "big.bin").read_bytes()[5 * MiB : 5 * MiB + 100]
    # One chunk (at most SMALL_CHUNKER.max_size) or two when the range straddles a cut.
    assert repo.store.bytes_down - before <= 2 * SMALL_CHUNKER.max_size
    assert repo.store.request_count - requests <= 2
    # Reading it again costs nothing: the chunk is held in memory.
    before = repo.store.bytes_down
    fh.seek(5 * MiB + 10)
    fh.read(50)
    assert repo.store.bytes_down == before


def test_neighbouring_chunks_are_fetched_in_one_coalesced_request(pushed: Pushed) -> None:
    repo = pushed.repo(cache=None)
    reader = SnapshotReader(repo, pushed.snapshot_id, limits=LIMITS)
    fh = reader.open("big.bin")
    starts = reader._layout("big.bin").starts
    touched = bisect.bisect_left(starts, 2 * MiB + 600 * KiB) - bisect.bisect_right(starts, 2 * MiB)
    assert touched >= 8  # about a dozen 48 KiB chunks
    requests = repo.store.request_count
    fh.seek(2 * MiB)
    fh.read(600 * KiB)
    # One request per pack the range crosses (2 MiB packs), or two where it outgrows max_range.
    assert repo.store.request_count - requests <= 4


def test_second_reader_is_served_from_the_disk_cache(pushed: Pushed, tmp_path: Path) -> None:
    cache = tmp_path / "lazy-cache"
    first = pushed.repo(cache)
    with SnapshotReader(first, pushed.snapshot_id, limits=LIMITS).open("big.bin") as fh:
        fh.seek(3 * MiB)
        expected = fh.read(1 * MiB)
    assert ChunkCache(cache / "chunks").size() >= 1 * MiB

    second = pushed.repo(cache)
    fh = SnapshotReader(second, pushed.snapshot_id, limits=LIMITS).open("big.bin")
    before = second.store.bytes_down
    fh.seek(3 * MiB)
    assert fh.read(1 * MiB) == expected
    assert second.store.bytes_down == before  # not one byte from the store


def test_versions_share_cached_chunks(pushed: Pushed, tmp_path: Path) -> None:
    """Chunks are cached by id, so v2 of a file fetches only the part that changed."""
    src = pushed.src
    data = bytearray((src / "big.bin").read_bytes())
    data[4 * MiB : 4 * MiB + 200 * KiB] = rand_bytes(200 * KiB, 1234)
    (src / "big.bin").write_bytes(bytes(data))
    repo = pushed.repo()
    v2 = push(repo, src, limits=LIMITS).snapshot_id
    repo.close()

    cache = tmp_path / "shared"
    reader1 = SnapshotReader(pushed.repo(cache), pushed.snapshot_id, limits=LIMITS)
    reader1.open("big.bin").read()
    repo2 = pushed.repo(cache)
    fh = SnapshotReader(repo2, v2, limits=LIMITS).open("big.bin")
    before = repo2.store.bytes_down
    assert fh.read() == bytes(data)
    fetched = repo2.store.bytes_down - before
    assert 0 < fetched < 200 * KiB + 4 * SMALL_CHUNKER.max_size


def test_damaged_pack_bytes_are_refused(pushed: Pushed) -> None:
    repo = pushed.repo(cache=None)
    reader = SnapshotReader(repo, pushed.snapshot_id, limits=LIMITS)
    fh = reader.open("big.bin")
    layout = reader._layout("big.bin")
    cid = layout.entry.chunks[3]
    loc = repo.index.get(cid)
    assert loc is not None
    key = pack_key(loc.pack_id)
    raw = bytearray(pushed.store.get(key))
    raw[loc.offset + 10] ^= 0xFF
    pushed.store.put(key, bytes(raw))
    fh.seek(layout.starts[3])
    with pytest.raises(IntegrityError, match="damaged data") as err:
        fh.read(10)
    assert err.value.expected == cid.hex()
    fh.seek(0)
    assert fh.read(1000) == (pushed.src / "big.bin").read_bytes()[:1000]  # other chunks still fine


def test_damaged_cache_file_is_dropped_and_fetched_again(pushed: Pushed, tmp_path: Path) -> None:
    cache_root = tmp_path / "c"
    reader = SnapshotReader(pushed.repo(cache_root), pushed.snapshot_id, limits=LIMITS)
    expected = reader.read_range("big.bin", 0, 10)
    cid = reader._layout("big.bin").entry.chunks[0]
    cached = cache_root / "chunks" / cid.hex()[:2] / cid.hex()
    raw = bytearray(cached.read_bytes())
    raw[5] ^= 0x01
    cached.write_bytes(bytes(raw))

    repo = pushed.repo(cache_root)
    fresh = SnapshotReader(repo, pushed.snapshot_id, limits=LIMITS)
    fh = fresh.open("big.bin")
    before = repo.store.bytes_down
    assert fh.read(10) == expected
    assert repo.store.bytes_down > before  # fetched again, not served from the bad file
    assert ChunkCache(cache_root / "chunks").get(cid) is not None  # and the cache is repaired


def test_seek_and_read_semantics(pushed: Pushed) -> None:
    data = (pushed.src / "big.bin").read_bytes()
    reader = SnapshotReader(pushed.repo(), pushed.snapshot_id, limits=LIMITS)
    fh = reader.open("big.bin")
    assert fh.readable() and fh.seekable() and not fh.writable()
    assert fh.seek(-100, io.SEEK_END) == len(data) - 100
    assert fh.read() == data[-100:]
    assert fh.read() == b""
    assert fh.read(10) == b""
    assert fh.seek(10) == 10
    assert fh.seek(5, io.SEEK_CUR) == 15
    assert fh.tell() == 15
    buf = bytearray(1000)
    assert fh.readinto(buf) == 1000
    assert bytes(buf) == data[15:1015]
    fh.seek(len(data) + 50)
    assert fh.read(10) == b""
    assert fh.readinto(bytearray(5)) == 0
    fh.seek(0)
    assert fh.read(-1) == data
    with pytest.raises(ValueError, match="negative seek"):
        fh.seek(-1)
    with pytest.raises(ValueError, match="whence"):
        fh.seek(0, 7)
    with pytest.raises(io.UnsupportedOperation):
        fh.write(b"x")
    buffered = io.BufferedReader(reader.open("big.bin"))
    buffered.seek(1 * MiB)
    assert buffered.read(3) == data[1 * MiB : 1 * MiB + 3]
    fh.close()
    with pytest.raises(ValueError, match="closed"):
        fh.read(1)


def test_paths_folders_symlinks_and_missing_files(pushed: Pushed) -> None:
    reader = SnapshotReader(pushed.repo(), pushed.snapshot_id, limits=LIMITS)
    root = {i.path: i for i in reader.listdir("")}
    assert set(root) == {"big.bin", "data", "empty.txt", "latest", "model.bin", "run.sh"}
    assert root["data"].type == "directory"
    assert root["latest"].type == "file"  # a symlink inside the snapshot is followed
    assert root["latest"].size == root["model.bin"].size
    assert [i.path for i in reader.listdir("data")] == ["data/train"]
    assert len(reader.listdir("data/train/")) == 40
    assert len(reader.files("data")) == 40
    assert reader.info("data/train").type == "directory"
    assert reader.open("latest").read() == (pushed.src / "model.bin").read_bytes()
    assert reader.open("empty.txt").read() == b""
    with pytest.raises(PathNotFoundError) as missing:
        reader.open("data/train/nope.txt")
    assert isinstance(missing.value, FileNotFoundError)
    with pytest.raises(FileNotFoundError):
        reader.listdir("nope")
    with pytest.raises(FileNotFoundError):
        reader.files("nope")
    with pytest.raises(NotAFileError):
        reader.open("data/train")
    with pytest.raises(UnsafePathError):
        reader.open("data/../../etc/passwd")


def test_symlinks_to_folders_are_followed_and_loops_refused(s3_store: object, tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "real").mkdir(parents=True)
    (src / "real" / "w.bin").write_bytes(b"weights")
    os.symlink("real", src / "alias")
    os.symlink("missing", src / "dangling")
    repo = make_repo(s3_store, tmp_path / "cache")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    reader = SnapshotReader(repo, sid, limits=LIMITS)
    assert reader.open("alias/w.bin").read() == b"weights"
    assert [i.path for i in reader.listdir("alias")] == ["alias/w.bin"]
    assert {i.path for i in reader.listdir("")} == {"alias", "real"}  # broken links list as nothing
    with pytest.raises(PathNotFoundError):
        reader.open("dangling")
    # A loop never gets into a snapshot: the push's link check (the one rule) refuses it.
    os.symlink("loop2", src / "loop1")
    os.symlink("loop1", src / "loop2")
    with pytest.raises(UnsafePathError):
        push(repo, src, limits=LIMITS)


def test_chunk_cache_stays_within_its_bound(tmp_path: Path) -> None:
    from cpv.engine.hashing import chunk_id

    cache = ChunkCache(tmp_path / "chunks", max_bytes=1 * MiB)
    blobs = [rand_bytes(100 * KiB, i) for i in range(30)]
    for blob in blobs:
        cache.put(chunk_id(blob), blob)
    assert cache.size() <= 1 * MiB
    assert cache.get(chunk_id(blobs[-1])) == blobs[-1]  # the newest survives
    assert cache.get(chunk_id(blobs[0])) is None  # the oldest went first


def test_one_reader_serves_several_threads(pushed: Pushed) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = (pushed.src / "big.bin").read_bytes()
    reader = SnapshotReader(pushed.repo(cache=None), pushed.snapshot_id, limits=LIMITS)

    def check(seed: int) -> None:
        rng = random.Random(seed)
        with reader.open("big.bin") as fh:
            for _ in range(30):
                start, length = rng.randrange(len(data)), rng.randrange(1, 400 * KiB)
                fh.seek(start)
                assert fh.read(length) == data[start : start + length]

    with ThreadPoolExecutor(6) as pool:
        list(pool.map(check, range(6)))
