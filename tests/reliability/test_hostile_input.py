"""Hostile and damaged input: snapshots, manifests, pack footers, index objects, gc records.

Property: whatever bytes arrive, a parser returns a valid value or raises FormatError /
UnsafePathError (both CPVError) with a message; never another exception, never a hang, never
an allocation driven by a count the input claims. Hypothesis explores random and mutated input;
explicit cases pin the classic attacks (invariant 7).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpv.engine.hashing import chunk_id
from cpv.engine.index import INDEX_MAGIC, PackRecord, decode_index, encode_index
from cpv.engine.locks import CondemnedRecord
from cpv.engine.packs import (
    FOOTER_MAGIC,
    TRAILER_SIZE,
    PackEntry,
    decode_footer,
    encode_footer,
    parse_trailer,
)
from cpv.engine.snapshot import SNAPSHOT_MAGIC, FileEntry, Snapshot
from cpv.errors import FormatError, UnsafePathError
from cpv.versioning.manifest import ChangeCounts, Manifest, manifest_for_files, pointer_manifest

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ALLOWED = (FormatError, UnsafePathError)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5),
    max_leaves=25,
)
paths = st.sampled_from([
    "a", "a/b", "../x", "/etc/passwd", "a/../../b", "a//b", "a\\b", "C:/x", "", ".", "a/./b",
    "x\x00y", ".git/config", "a" * 300, "ok/file.bin",
]) | st.text(max_size=12)


def _mutate(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    buf = bytearray(data)
    for pos, value in edits:
        if buf:
            buf[pos % len(buf)] = value
    return bytes(buf)


edits = st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), max_size=4)


# -- snapshots ------------------------------------------------------------------------------


def _snapshot_blob(doc: Any) -> bytes:
    return SNAPSHOT_MAGIC + zlib.compress(json.dumps(doc).encode())


def _check_snapshot(raw: bytes) -> None:
    try:
        snap = Snapshot.decode(raw)
    except ALLOWED as exc:
        message = str(exc)
        assert message, "errors carry a message"
        return
    assert isinstance(snap, Snapshot)
    for f in snap.files:
        assert not f.path.startswith("/") and ".." not in f.path.split("/")


@FUZZ
@given(st.binary(max_size=512))
def test_fuzz_snapshot_random_bytes(raw: bytes) -> None:
    _check_snapshot(raw)
    _check_snapshot(SNAPSHOT_MAGIC + raw)


@FUZZ
@given(json_values)
def test_fuzz_snapshot_any_json(doc: Any) -> None:
    _check_snapshot(_snapshot_blob(doc))
    _check_snapshot(_snapshot_blob({"version": 1, "files": doc}))


file_docs = st.fixed_dictionaries(
    {"p": paths, "s": st.integers(-5, 2**64), "m": st.integers(-1, 2**20),
     "h": st.sampled_from(["0" * 64, "z" * 64, "", "ab"]) | st.text(max_size=70)},
    optional={"c": st.none() | st.text(max_size=130) | st.just("00" * 32 * 3),
              "l": st.none() | paths},
)


@FUZZ
@given(st.lists(file_docs, max_size=6), st.dictionaries(st.text(max_size=5), json_values, max_size=3))
def test_fuzz_snapshot_file_entries(files: list[Any], meta: Any) -> None:
    _check_snapshot(_snapshot_blob({"version": 1, "meta": meta, "files": files}))


@FUZZ
@given(edits)
def test_fuzz_snapshot_mutations(changes: list[tuple[int, int]]) -> None:
    snap = Snapshot(files=(FileEntry("a/b.bin", 3, 0o644, "0" * 64, (b"\1" * 32, b"\2" * 32)),))
    _sid, raw = snap.encode()
    _check_snapshot(_mutate(raw, changes))


@pytest.mark.parametrize(
    ("files", "error"),
    [
        ([{"p": "../x", "s": 1, "m": 420, "h": "0" * 64, "c": None}], UnsafePathError),
        ([{"p": "/etc/cron.d/x", "s": 1, "m": 420, "h": "0" * 64, "c": None}], UnsafePathError),
        ([{"p": "a", "s": 1, "m": 420, "h": "0" * 64, "c": None}] * 2, UnsafePathError),
        ([{"p": "a", "s": 0, "m": 420, "h": "0" * 64, "c": None},
          {"p": "a/b", "s": 0, "m": 420, "h": "0" * 64, "c": None}], UnsafePathError),
        ([{"p": "l", "s": 0, "m": 511, "h": "0" * 64, "c": None, "l": "../../etc"}], UnsafePathError),
        ([{"p": "l", "s": 0, "m": 511, "h": "0" * 64, "c": None, "l": "/etc/passwd"}], UnsafePathError),
        # The one path rule (cpv/pathrules.py): .git in any spelling, in paths and link targets.
        ([{"p": "tok/.git/config", "s": 1, "m": 420, "h": "0" * 64, "c": None}], UnsafePathError),
        ([{"p": "tok/.GIT/hooks/x", "s": 1, "m": 420, "h": "0" * 64, "c": None}], UnsafePathError),
        ([{"p": "l", "s": 0, "m": 511, "h": "0" * 64, "c": None, "l": "x/.git"}], UnsafePathError),
        # Links escaping through other links, each fine alone.
        ([{"p": "l", "s": 0, "m": 511, "h": "0" * 64, "c": None, "l": "x/s/../etc/hostname"},
          {"p": "x/s", "s": 0, "m": 511, "h": "0" * 64, "c": None, "l": ".."}], UnsafePathError),
        ([{"p": "a", "s": -1, "m": 420, "h": "0" * 64, "c": None}], FormatError),
        ([{"p": "a", "s": 1, "m": 420, "h": "0" * 64, "c": "abc"}], FormatError),
    ],
)
def test_hostile_snapshots_are_refused(files: list[Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        Snapshot.decode(_snapshot_blob({"version": 1, "files": files}))


def test_unknown_snapshot_version_and_zip_bomb_are_refused() -> None:
    with pytest.raises(FormatError, match="version 2"):
        Snapshot.decode(_snapshot_blob({"version": 2, "files": []}))
    bomb = SNAPSHOT_MAGIC + zlib.compress(b" " * (64 * 1024 * 1024), 9)  # 64 MiB of spaces
    with pytest.raises(FormatError):
        Snapshot.decode(bomb)


# -- pack footers ---------------------------------------------------------------------------


def _check_footer(footer: bytes, data_size: int) -> None:
    try:
        entries = decode_footer(footer, data_size=data_size, where="fuzz")
    except FormatError:
        return
    assert all(e.offset + e.length <= data_size for e in entries)


@FUZZ
@given(st.binary(max_size=400), st.integers(0, 2**40))
def test_fuzz_footer_random(raw: bytes, data_size: int) -> None:
    _check_footer(raw, data_size)
    _check_footer(FOOTER_MAGIC + raw, data_size)
    try:
        parse_trailer(raw[:TRAILER_SIZE], pack_size=data_size, where="fuzz")
    except FormatError:
        pass


@FUZZ
@given(st.integers(0, 50), edits, st.integers(0, 2**20))
def test_fuzz_footer_mutations(n: int, changes: list[tuple[int, int]], data_size: int) -> None:
    entries = [PackEntry(bytes([i]) * 32, i * 100, 100) for i in range(n)]
    closed = encode_footer(entries)
    footer = closed[:-TRAILER_SIZE]
    _check_footer(_mutate(footer, changes), data_size)
    try:
        parse_trailer(_mutate(closed, changes)[-TRAILER_SIZE:], pack_size=data_size, where="f")
    except FormatError:
        pass


def test_footer_with_a_huge_count_is_refused_without_allocating() -> None:
    import struct

    body = FOOTER_MAGIC + struct.pack("<I", 2**32 - 1)
    with pytest.raises(FormatError, match="entries"):
        decode_footer(body + chunk_id(body), data_size=10**12, where="huge")


# -- index objects --------------------------------------------------------------------------


def _check_index(raw: bytes) -> None:
    try:
        items = list(decode_index(raw, where="fuzz"))
    except FormatError:
        return
    assert all(len(cid) == 32 for cid, _ in items)


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_index_random(raw: bytes) -> None:
    _check_index(raw)
    body = INDEX_MAGIC + raw
    _check_index(body + chunk_id(body))  # a valid checksum over garbage: the parser must cope


@FUZZ
@given(st.integers(0, 5), st.integers(0, 20), edits)
def test_fuzz_index_mutations(npacks: int, nentries: int, changes: list[tuple[int, int]]) -> None:
    packs = [
        PackRecord(f"{p:064x}", 10**6, tuple(PackEntry(bytes([p, e]) * 16, e * 10, 10)
                                             for e in range(nentries)))
        for p in range(npacks)
    ]
    _iid, raw = encode_index(packs)
    mutated = _mutate(raw, changes)
    _check_index(mutated)
    _check_index(mutated[:-32] + chunk_id(mutated[:-32]))


# -- manifests ------------------------------------------------------------------------------


def _check_manifest(text: str | bytes) -> None:
    try:
        manifest = Manifest.from_json(text, source="fuzz")
    except ALLOWED as exc:
        message = str(exc)
        assert message.startswith("fuzz: "), message
        return
    assert all(".." not in f.path.split("/") for f in manifest.files or ())
    assert manifest.file_count >= 0 and manifest.total_size >= 0


VALID_MANIFEST = manifest_for_files(
    kind="model", path="model", snapshot_id="a" * 64, store_url="s3://b/p",
    files=[("w.bin", 3, "b" * 64), ("sub/x.bin", 5, "c" * 64)], metrics={"loss": 0.5},
).to_json()


VALID_POINTER = pointer_manifest(
    kind="model", path="model", snapshot_id="a" * 64, store_url="s3://b/p", file_count=2,
    total_size=8, changes=ChangeCounts(1, 0, 0), metrics={"loss": 0.5},
).to_json()


@FUZZ
@given(st.sampled_from(sorted(json.loads(VALID_POINTER))), json_values)
def test_fuzz_pointer_manifest_one_field_replaced(key: str, value: Any) -> None:
    doc = json.loads(VALID_POINTER)
    doc[key] = value
    _check_manifest(json.dumps(doc))


@FUZZ
@given(st.sampled_from(["file_count", "total_size", "added", "changed", "removed"]),
       json_values)
def test_fuzz_pointer_manifest_summary(key: str, value: Any) -> None:
    doc = json.loads(VALID_POINTER)
    doc["summary"][key] = value
    _check_manifest(json.dumps(doc))


@FUZZ
@given(edits)
def test_fuzz_pointer_manifest_mutations(changes: list[tuple[int, int]]) -> None:
    _check_manifest(_mutate(VALID_POINTER.encode(), changes))


@FUZZ
@given(st.binary(max_size=300) | st.text(max_size=300))
def test_fuzz_manifest_random(raw: str | bytes) -> None:
    _check_manifest(raw)


@FUZZ
@given(json_values)
def test_fuzz_manifest_any_json(doc: Any) -> None:
    _check_manifest(json.dumps(doc))


@FUZZ
@given(st.sampled_from(sorted(json.loads(VALID_MANIFEST))), json_values)
def test_fuzz_manifest_one_field_replaced(key: str, value: Any) -> None:
    doc = json.loads(VALID_MANIFEST)
    doc[key] = value
    _check_manifest(json.dumps(doc))


@FUZZ
@given(st.lists(st.fixed_dictionaries({"path": paths, "size": st.integers(-1, 10),
                                       "blake3": st.just("b" * 64)}), max_size=4))
def test_fuzz_manifest_file_lists(files: list[Any]) -> None:
    doc = json.loads(VALID_MANIFEST)
    doc["files"] = files
    doc["file_count"] = len(files)
    doc["total_size"] = sum(f["size"] for f in files)
    _check_manifest(json.dumps(doc))


@FUZZ
@given(edits)
def test_fuzz_manifest_mutations(changes: list[tuple[int, int]]) -> None:
    _check_manifest(_mutate(VALID_MANIFEST.encode(), changes))


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("files", [{"path": "../x", "size": 1, "blake3": "b" * 64}], UnsafePathError),
        ("files", [{"path": "/abs", "size": 1, "blake3": "b" * 64}], UnsafePathError),
        ("files", [{"path": "a", "size": 1, "blake3": "b" * 64}] * 2, UnsafePathError),
        ("path", "../outside", UnsafePathError),
        ("files", [{"path": "tok/.Git/config", "size": 1, "blake3": "b" * 64}], UnsafePathError),
        ("files", [{"path": "a" * 256, "size": 1, "blake3": "b" * 64}], UnsafePathError),
        ("schema_version", 99, FormatError),
        ("total_size", 10**30, FormatError),
    ],
)
def test_hostile_manifests_are_refused(field: str, value: Any, error: type[Exception]) -> None:
    doc = json.loads(VALID_MANIFEST)
    doc[field] = value
    if field == "files":
        doc["file_count"], doc["total_size"] = len(value), sum(f["size"] for f in value)
    with pytest.raises(error):
        Manifest.from_json(json.dumps(doc), source="hostile.json")


def test_malformed_manifest_json_is_a_clear_error() -> None:
    with pytest.raises(FormatError, match=r"hostile\.json: not valid JSON"):
        Manifest.from_json('{"schema_version": 1,', source="hostile.json")


# -- gc records -----------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=200) | json_values.map(lambda d: json.dumps(d).encode()))
def test_fuzz_gc_record(raw: bytes) -> None:
    try:
        record = CondemnedRecord.from_json("r", raw, written_at=0.0)
    except FormatError:
        return
    assert all(len(p) == 64 for p in record.packs)


def test_hostile_snapshot_in_a_store_writes_nothing_outside(tmp_path: Path) -> None:
    from cpv.engine import pull
    from cpv.store.memory import MemoryStore
    from tests.engine.conftest import make_repo

    store = MemoryStore()
    repo = make_repo(store, tmp_path / "c")
    for bad in ("../escape", "/tmp/abs-escape", "ok/../../escape2"):
        raw = _snapshot_blob({"version": 1, "meta": {}, "files": [
            {"p": bad, "s": 1, "m": 420, "h": "0" * 64, "c": None}]})
        sid = chunk_id(raw).hex()
        store.put(f"snapshots/{sid}", raw)
        with pytest.raises(UnsafePathError):
            pull(repo, sid, tmp_path / "dest")
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert not Path("/tmp/abs-escape").exists()
