"""The ObjectStore contract (``cpv/store/__init__.py``), run on every adapter.

``any_store`` is MemoryStore, LocalStore (a real folder) and S3Store (the real SeaweedFS server
over HTTP, one prefix per test). A behaviour the engine relies on belongs here, not in an
adapter-specific test, so all three are held to it.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from cpv.errors import (
    LocalIOError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StoreAccessError,
    StoreError,
)
from cpv.store import KiB, MiB, ObjectStore
from cpv.store.local import LocalStore
from cpv.store.s3 import S3Store
from tests.conftest import main_server_name

INVALID_KEYS = ["", "/abs", "a/../b", "..", "a//b", "./a", "a/.", "a/", "a\\b", "a\x00b"]


def part_size(store: ObjectStore) -> int:
    """The smallest part every adapter accepts for non-last parts (5 MiB on S3)."""
    return max(store.caps.min_part_size, 256 * KiB)


def keys_of(store: ObjectStore, prefix: str = "") -> list[str]:
    return [info.key for info in store.list(prefix)]


# -- put / get ------------------------------------------------------------------------------


def test_put_get_roundtrip(any_store: ObjectStore) -> None:
    payloads = [b"", b"x", bytes(range(256)) * 1000, os.urandom(3 * MiB + 17)]
    for i, payload in enumerate(payloads):
        any_store.put(f"obj/{i}", payload)
    for i, payload in enumerate(payloads):
        assert any_store.get(f"obj/{i}") == payload
        assert any_store.stat(f"obj/{i}").size == len(payload)


def test_put_takes_bytearray_memoryview_and_mmap(any_store: ObjectStore) -> None:
    payload = os.urandom(200_000)
    any_store.put("b/bytearray", bytearray(payload))
    any_store.put("b/view", memoryview(payload)[1000:])
    with mmap.mmap(-1, len(payload)) as m:
        m[:] = payload
        any_store.put("b/mmap", memoryview(m))
        any_store.put("b/mmap-slice", memoryview(m)[5:105])
    assert any_store.get("b/bytearray") == payload
    assert any_store.get("b/view") == payload[1000:]
    assert any_store.get("b/mmap") == payload
    assert any_store.get("b/mmap-slice") == payload[5:105]


def test_put_again_replaces(any_store: ObjectStore) -> None:
    any_store.put("k", b"first version")
    any_store.put("k", b"second")
    assert any_store.get("k") == b"second"
    assert any_store.stat("k").size == len(b"second")


def test_get_range(any_store: ObjectStore) -> None:
    data = os.urandom(300_000)
    any_store.put("r", data)
    assert any_store.get_range("r", 0, 10) == data[:10]
    assert any_store.get_range("r", 1000, 5000) == data[1000:6000]
    assert any_store.get_range("r", len(data) - 7, 7) == data[-7:]
    assert any_store.get_range("r", 5, 0) == b""
    assert any_store.get_range("r", len(data), 0) == b""


def test_get_range_into_fills_only_the_view(any_store: ObjectStore) -> None:
    data = os.urandom(4 * MiB + 3)
    any_store.put("into", data)
    buf = bytearray(20_000)
    any_store.get_range_into("into", 123, memoryview(buf)[100:5100])
    assert buf[100:5100] == data[123:5123]
    assert buf[:100] == bytes(100)
    assert buf[5100:] == bytes(len(buf) - 5100)
    # A whole multi-MiB object into a page-aligned mmap, as the engine's buffers are.
    with mmap.mmap(-1, 8 * MiB) as m, memoryview(m) as view:
        any_store.get_range_into("into", 0, view[: len(data)])
        assert view[: len(data)] == data
        any_store.get_range_into("into", 1, view[:0])


def test_stat_and_exists(any_store: ObjectStore) -> None:
    before = time.time()
    any_store.put("s/one", b"12345")
    after = time.time()
    info = any_store.stat("s/one")
    assert (info.key, info.size) == ("s/one", 5)
    # S3 keeps whole seconds; the server shares this machine's clock.
    assert before - 2 <= info.mtime <= after + 2
    assert any_store.exists("s/one")
    assert not any_store.exists("s/two")
    assert not any_store.exists("s")


def test_missing_key_is_object_not_found(any_store: ObjectStore) -> None:
    calls: list[Callable[[], object]] = [
        lambda: any_store.get("no/such"),
        lambda: any_store.get_range("no/such", 0, 1),
        lambda: any_store.get_range_into("no/such", 0, memoryview(bytearray(4))),
        lambda: any_store.get_range_into("no/such", 0, memoryview(bytearray(0))),
        lambda: any_store.stat("no/such"),
    ]
    for call in calls:
        with pytest.raises(ObjectNotFoundError) as info:
            call()
        assert info.value.key == "no/such"
        assert "no/such" in str(info.value)


def test_short_or_bad_range_is_store_error(any_store: ObjectStore) -> None:
    any_store.put("short", bytes(100))
    bad: list[Callable[[], object]] = [
        lambda: any_store.get_range("short", 90, 20),
        lambda: any_store.get_range("short", 100, 1),
        lambda: any_store.get_range("short", 200, 10),
        lambda: any_store.get_range("short", 101, 0),
        lambda: any_store.get_range("short", -1, 5),
        lambda: any_store.get_range("short", 0, -5),
        lambda: any_store.get_range_into("short", 95, memoryview(bytearray(10))),
    ]
    for call in bad:
        with pytest.raises(StoreError) as info:
            call()
        assert not isinstance(info.value, ObjectNotFoundError)


def test_concurrent_puts_of_one_key_never_mix(any_store: ObjectStore) -> None:
    # Invariant 5: writers racing on one key (same id, possibly different bytes in a bug or an
    # attack) leave one whole version, never a blend or a half-written object.
    payloads = [bytes([i]) * (512 * KiB) for i in range(6)]
    barrier = threading.Barrier(len(payloads))

    def write(payload: bytes) -> None:
        barrier.wait()
        any_store.put("same", payload)

    with ThreadPoolExecutor(len(payloads)) as pool:
        list(pool.map(write, payloads))
    assert any_store.get("same") in payloads
    assert keys_of(any_store) == ["same"]


# -- list -----------------------------------------------------------------------------------

# Shaped like cpv's own keys: fixed folders, names that are not prefixes of siblings.
LISTED = [
    "a/b",
    "a/c/d",
    "a0",
    "b",
    "config",
    "index/0f",
    "index/1a",
    "packs/ab/1",
    "packs/ab/2",
    "packs/ac/1",
    "packsx",
]

# "a-c" < "a/b" in byte order because "-" < "/": a store that walks folders yields "a/b" first.
ACROSS_FOLDERS = ["a-c", "a.b", "a/b", "a0", "packs-1", "packs/ab/1", "packsx", "z!", "z/a"]


def test_list_prefix_order_exactly_once(any_store: ObjectStore) -> None:
    for key in reversed(LISTED):
        any_store.put(key, key.encode())
    assert keys_of(any_store) == sorted(LISTED)
    assert keys_of(any_store, "a") == ["a/b", "a/c/d", "a0"]
    assert keys_of(any_store, "a/") == ["a/b", "a/c/d"]
    assert keys_of(any_store, "packs/a") == ["packs/ab/1", "packs/ab/2", "packs/ac/1"]
    assert keys_of(any_store, "packs") == ["packs/ab/1", "packs/ab/2", "packs/ac/1", "packsx"]
    assert keys_of(any_store, "packs/ab/1") == ["packs/ab/1"]
    assert keys_of(any_store, "index/") == ["index/0f", "index/1a"]
    assert keys_of(any_store, "nothing") == []
    assert keys_of(any_store, "a/c/d/e") == []
    sizes = {info.key: info.size for info in any_store.list()}
    assert sizes == {key: len(key) for key in LISTED}


def test_list_order_across_folder_boundaries(any_store: ObjectStore) -> None:
    if isinstance(any_store, S3Store) and main_server_name() == "seaweedfs":
        pytest.xfail(
            "SeaweedFS lists folder by folder ('a/b' before 'a-c'); AWS S3 sorts by bytes. "
            "cpv's key scheme never produces such siblings (docs/store-contract.md)"
        )
    for key in reversed(ACROSS_FOLDERS):
        any_store.put(key, b"x")
    assert keys_of(any_store) == sorted(ACROSS_FOLDERS)
    assert keys_of(any_store, "a") == ["a-c", "a.b", "a/b", "a0"]
    assert keys_of(any_store, "packs") == ["packs-1", "packs/ab/1", "packsx"]


@pytest.mark.integration
def test_s3_test_server_lists_folder_by_folder(s3_store: S3Store) -> None:
    # Pins the SeaweedFS quirk the xfail above describes, so a SeaweedFS upgrade that fixes
    # it shows up here (then drop the xfail). Each key still comes exactly once.
    if main_server_name() != "seaweedfs":
        pytest.skip("a SeaweedFS quirk; the fallback server sorts as AWS does")
    for key in ACROSS_FOLDERS:
        s3_store.put(key, b"x")
    listed = keys_of(s3_store)
    assert sorted(listed) == sorted(ACROSS_FOLDERS)
    assert listed.index("a/b") < listed.index("a-c")


def test_list_and_delete_many_past_one_page(any_store: ObjectStore) -> None:
    # 1100 keys: more than one ListObjectsV2 page and one DeleteObjects batch on S3.
    keys = [f"many/{i:05d}" for i in range(1100)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda key: any_store.put(key, b"."), keys))
    listed = keys_of(any_store, "many/")
    assert listed == keys
    any_store.delete_many(keys[:-1])
    assert keys_of(any_store, "many/") == keys[-1:]


# -- delete ---------------------------------------------------------------------------------


def test_delete_is_idempotent(any_store: ObjectStore) -> None:
    any_store.put("d/x", b"1")
    any_store.delete("d/x")
    any_store.delete("d/x")
    any_store.delete("d/never-existed")
    assert not any_store.exists("d/x")
    with pytest.raises(ObjectNotFoundError):
        any_store.get("d/x")
    assert keys_of(any_store, "d/") == []


def test_delete_many_skips_missing_keys(any_store: ObjectStore) -> None:
    for i in range(5):
        any_store.put(f"dm/{i}", b"x")
    any_store.delete_many(["dm/1", "dm/3", "dm/never"])
    assert keys_of(any_store, "dm/") == ["dm/0", "dm/2", "dm/4"]
    any_store.delete_many([])


# -- conditional put ------------------------------------------------------------------------


def test_put_if_absent(any_store: ObjectStore) -> None:
    assert any_store.caps.conditional_put
    any_store.put("lock", b"mine", if_absent=True)
    with pytest.raises(PreconditionFailedError) as info:
        any_store.put("lock", b"theirs", if_absent=True)
    assert info.value.key == "lock"
    assert any_store.get("lock") == b"mine"


def test_put_if_absent_race_has_exactly_one_winner(any_store: ObjectStore) -> None:
    for round_ in range(5):
        key = f"race/{round_}"
        barrier = threading.Barrier(2)

        def contend(name: str, key: str = key, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            try:
                any_store.put(key, name.encode() * 1000, if_absent=True)
            except PreconditionFailedError:
                return "lost"
            return name

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(contend, ["alice", "bob"]))
        winners = [o for o in outcomes if o != "lost"]
        assert len(winners) == 1, outcomes
        assert any_store.get(key) == winners[0].encode() * 1000


# -- multipart ------------------------------------------------------------------------------


def test_multipart_parts_from_threads_out_of_order(any_store: ObjectStore) -> None:
    size = part_size(any_store)
    parts = [os.urandom(size), os.urandom(size), os.urandom(size), os.urandom(1000)]
    bodies = [parts[0], bytearray(parts[1]), memoryview(parts[2]), parts[3]]
    upload = any_store.start_multipart("big/obj")
    upload.upload_part(2, b"garbage to be replaced by the second upload of part 2")
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda n: upload.upload_part(n, bodies[n - 1]), [4, 2, 3, 1]))

    # Nothing is visible before complete(), but the upload is findable.
    assert not any_store.exists("big/obj")
    assert keys_of(any_store, "big/") == []
    pending = [(p.key, p.upload_id) for p in any_store.list_multipart("big/")]
    assert pending == [("big/obj", upload.upload_id)]
    assert [p.key for p in any_store.list_multipart("other/")] == []

    upload.complete()
    assert any_store.get("big/obj") == b"".join(parts)
    assert keys_of(any_store, "big/") == ["big/obj"]
    assert list(any_store.list_multipart("big/")) == []


def test_multipart_abort_removes_the_upload(any_store: ObjectStore) -> None:
    upload = any_store.start_multipart("ab/obj")
    upload.upload_part(1, b"some bytes")
    before = time.time()
    found = [p for p in any_store.list_multipart() if p.upload_id == upload.upload_id]
    assert len(found) == 1
    assert found[0].key == "ab/obj"
    assert found[0].initiated <= before + 2
    upload.abort()
    assert list(any_store.list_multipart("ab/")) == []
    assert not any_store.exists("ab/obj")
    upload.abort()  # idempotent
    any_store.abort_multipart("ab/obj", upload.upload_id)
    with pytest.raises(StoreError):
        upload.upload_part(2, b"too late")


def test_leftover_upload_found_and_aborted_by_id(any_store: ObjectStore) -> None:
    # What cleanup after a crash does: it only has the store, not the upload object.
    upload = any_store.start_multipart("crash/obj")
    upload.upload_part(1, b"half")
    pending = list(any_store.list_multipart("crash/"))
    assert [(p.key, p.upload_id) for p in pending] == [("crash/obj", upload.upload_id)]
    for p in pending:
        any_store.abort_multipart(p.key, p.upload_id)
    assert list(any_store.list_multipart("crash/")) == []
    assert not any_store.exists("crash/obj")


def test_multipart_refuses_bad_part_numbers(any_store: ObjectStore) -> None:
    upload = any_store.start_multipart("parts/obj")
    for number in (0, -1, any_store.caps.max_parts + 1):
        with pytest.raises(StoreError):
            upload.upload_part(number, b"x")
    with pytest.raises(StoreError, match="no parts"):
        upload.complete()
    upload.upload_part(1, bytes(part_size(any_store)))
    upload.upload_part(3, b"tail")
    with pytest.raises(StoreError, match="missing"):
        upload.complete()
    assert not any_store.exists("parts/obj")
    upload.abort()


# -- keys -----------------------------------------------------------------------------------


@pytest.mark.parametrize("key", INVALID_KEYS)
def test_invalid_keys_are_refused(any_store: ObjectStore, key: str) -> None:
    calls: list[Callable[[], object]] = [
        lambda: any_store.put(key, b"x"),
        lambda: any_store.get(key),
        lambda: any_store.get_range(key, 0, 1),
        lambda: any_store.stat(key),
        lambda: any_store.exists(key),
        lambda: any_store.delete(key),
        lambda: any_store.delete_many([key]),
        lambda: any_store.start_multipart(key),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="invalid object key"):
            call()
    assert keys_of(any_store) == []


# -- adapter-specific details ---------------------------------------------------------------


@pytest.mark.integration
def test_s3_prefixes_isolate_stores(
    s3_store: S3Store, make_s3_store: Callable[..., S3Store]
) -> None:
    sibling = make_s3_store(prefix=s3_store.prefix + "x")
    child = make_s3_store(prefix=s3_store.prefix + "/sub")
    s3_store.put("k", b"outer")
    sibling.put("k", b"sibling")
    child.put("k", b"inner")
    assert keys_of(s3_store) == ["k", "sub/k"]
    assert keys_of(sibling) == ["k"]
    assert keys_of(child) == ["k"]
    assert s3_store.get("sub/k") == b"inner"
    assert s3_store.url == f"s3://{s3_store.bucket}/{s3_store.prefix}"


@pytest.mark.integration
def test_s3_refuses_small_parts(s3_store: S3Store) -> None:
    upload = s3_store.start_multipart("small")
    upload.upload_part(1, b"too small for a non-last S3 part")
    upload.upload_part(2, b"tail")
    with pytest.raises(StoreError, match="at least"):
        upload.complete()
    upload.abort()


def test_local_layout_and_no_leftovers(local_store: LocalStore) -> None:
    root = local_store.root
    assert not root.exists()  # opening a store creates nothing
    assert keys_of(local_store) == []
    assert list(local_store.list_multipart()) == []

    local_store.put("packs/ab/1", b"data")
    assert (root / "packs" / "ab" / "1").read_bytes() == b"data"
    assert local_store.url == str(root)
    with pytest.raises(PreconditionFailedError):
        local_store.put("packs/ab/1", b"other", if_absent=True)
    done = local_store.start_multipart("packs/ab/2")
    done.upload_part(1, b"x")
    done.complete()
    dropped = local_store.start_multipart("packs/ab/3")
    dropped.upload_part(1, b"y")
    dropped.abort()
    pending = local_store.start_multipart("packs/ab/4")
    pending.upload_part(1, b"z")

    # A crashed writer's temp file is neither listed nor counted.
    (root / "packs" / "ab" / ".cpv-tmp-999-dead").write_bytes(b"partial")
    assert keys_of(local_store) == ["packs/ab/1", "packs/ab/2"]
    leftovers = sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.name.startswith(".cpv-tmp-")
    )
    assert leftovers == ["packs/ab/.cpv-tmp-999-dead"]
    assert [p.upload_id for p in local_store.list_multipart()] == [pending.upload_id]
    # A "folder" is not an object.
    with pytest.raises(ObjectNotFoundError):
        local_store.get("packs/ab")
    assert not local_store.exists("packs")
    local_store.delete("packs")


@pytest.mark.parametrize("key", [".multipart/x", "a/.cpv-tmp-1", ".cpv-tmp-x", ".cpv-local-store"])
def test_local_reserved_keys_are_refused(local_store: LocalStore, key: str) -> None:
    with pytest.raises(StoreError, match="reserved"):
        local_store.put(key, b"x")


def test_local_store_is_created_only_in_a_new_or_empty_folder(tmp_path: Path) -> None:
    """``cpv init --store file:///etc`` wrote /etc/config: a busy folder is never made a store."""
    busy = tmp_path / "etc"
    busy.mkdir()
    (busy / "hostname").write_text("box\n")
    (busy / "ssh").mkdir()
    with pytest.raises(StoreAccessError, match="not empty and is not a cpv store") as info:
        LocalStore(busy).put("config", b"{}", if_absent=True)
    assert "new or empty folder" in info.value.one_line()
    with pytest.raises(StoreAccessError, match="not empty and is not a cpv store"):
        LocalStore(busy).start_multipart("packs/ab/1")
    assert sorted(p.name for p in busy.iterdir()) == ["hostname", "ssh"]
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StoreAccessError, match="is a file"):
        LocalStore(a_file).put("config", b"{}")

    empty = tmp_path / "empty"
    empty.mkdir()
    LocalStore(empty).put("config", b"{}")
    LocalStore(tmp_path / "new" / "deep").put("config", b"{}")
    # Once a store, always a store: more objects, a second client, user notes beside them.
    (empty / "NOTES.txt").write_text("ours")
    LocalStore(empty).put("packs/ab/1", b"data")
    assert keys_of(LocalStore(empty)) == ["NOTES.txt", "config", "packs/ab/1"]
    # A store made before the marker: config and folders only.
    legacy = tmp_path / "legacy"
    (legacy / "packs" / "ab").mkdir(parents=True)
    (legacy / "config").write_bytes(b"{}")
    LocalStore(legacy).put("packs/ab/2", b"data")
    # A Git folder has a config too, but also other files: refused.
    git_dir = tmp_path / "dotgit"
    git_dir.mkdir()
    (git_dir / "config").write_text("[core]\n")
    (git_dir / "HEAD").write_text("ref: refs/heads/main\n")
    with pytest.raises(StoreAccessError):
        LocalStore(git_dir).put("packs/ab/1", b"x")


def test_local_refuses_foreign_upload_ids(local_store: LocalStore) -> None:
    with pytest.raises(StoreError, match="invalid multipart upload id"):
        local_store.abort_multipart("k", "../../etc")
    local_store.abort_multipart("k", "0" * 32)  # well-formed but unknown: nothing to do


def test_local_two_instances_share_one_folder(tmp_path: Path) -> None:
    writer = LocalStore(tmp_path / "shared")
    reader = LocalStore(tmp_path / "shared")
    upload = writer.start_multipart("m")
    upload.upload_part(1, b"abc")
    writer.put("k", b"v")
    assert reader.get("k") == b"v"
    assert [p.upload_id for p in reader.list_multipart()] == [upload.upload_id]
    reader.abort_multipart("m", upload.upload_id)
    with pytest.raises(StoreError):
        upload.complete()


@pytest.mark.parametrize(
    ("code", "expected", "hint"),
    [
        (errno.ENOSPC, LocalIOError, "free disk space"),
        (errno.EDQUOT, LocalIOError, "free disk space"),
        (errno.EACCES, StoreAccessError, "permissions"),
        (errno.EROFS, StoreAccessError, "permissions"),
        (errno.EIO, LocalIOError, ""),
    ],
)
def test_local_oserror_translation(code: int, expected: type[Exception], hint: str) -> None:
    # Unit test of the one translation point: a full disk or a read-only mount cannot be made
    # on demand here (and root ignores permission bits).
    from cpv.store.local import _translate

    err = _translate(OSError(code, os.strerror(code)), path="/x/packs/1", action="write")
    assert type(err) is expected
    assert "/x/packs/1" in str(err)
    assert hint in err.hint
    missing = _translate(OSError(errno.ENOENT, "gone"), path="/x/k", action="read", key="k")
    assert isinstance(missing, ObjectNotFoundError)
    assert missing.key == "k"


def test_memory_stores_are_independent() -> None:
    from cpv.store.memory import MemoryStore

    first, second = MemoryStore(), MemoryStore()
    first.put("k", b"1")
    assert not second.exists("k")
    assert first.url != second.url
