"""The manifest codec: canonical JSON, strict validation, hostile input refused (invariant 7)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cpv.errors import FormatError, UnsafePathError
from cpv.versioning.manifest import (
    ChangeCounts,
    FileEntry,
    Manifest,
    check_tracked_path,
    manifest_name,
    manifest_relpath,
    pointer_manifest,
)
from tests.versioning.conftest import digest, make_manifest


def _doc(**overrides: Any) -> dict[str, Any]:
    """A valid manifest as JSON data, with some keys replaced."""
    # A fixed moment: these documents become test ids, which every xdist worker must
    # collect alike, and a clock read would differ between workers a second apart.
    moment = datetime(2026, 1, 10, 15, 30, 5, tzinfo=timezone.utc)
    data: dict[str, Any] = json.loads(make_manifest().replace(created_at=moment).to_json())
    data.update(overrides)
    return data


def _with_files(*files: dict[str, Any]) -> str:
    entries = list(files)
    return json.dumps(_doc(files=entries, file_count=len(entries),
                           total_size=sum(f["size"] for f in entries)))


def _file(path: str, size: int = 1) -> dict[str, Any]:
    return {"path": path, "size": size, "blake3": digest(path)}


def test_round_trip_is_identity_and_canonical() -> None:
    manifest = make_manifest(metrics={"loss": 0.25, "accuracy": 0.967}, message="baseline\nrun 3")
    text = manifest.to_json()
    parsed = Manifest.from_json(text)
    assert parsed == manifest
    assert parsed.to_json() == text
    assert text.endswith("}\n")
    assert list(json.loads(text)) == sorted(json.loads(text))
    # One file per line: a diff between versions shows exactly the files that changed.
    file_lines = [ln for ln in text.splitlines() if '"blake3"' in ln]
    assert len(file_lines) == manifest.file_count == 2
    assert parsed.total_size == 1010
    assert parsed.schema_version == json.loads(text)["schema_version"] == 1


def test_files_are_sorted_and_totals_derived() -> None:
    manifest = make_manifest(files={"b/x": 5, "a": 7, "b/a": 1})
    assert manifest.files is not None
    assert [f.path for f in manifest.files] == ["a", "b/a", "b/x"]
    assert (manifest.total_size, manifest.file_count) == (13, 3)
    assert manifest.replace(files=manifest.files[:1]).total_size == 7


def test_size_does_not_grow_with_file_size() -> None:
    small = make_manifest(files={"weights.safetensors": 1})
    huge = make_manifest(files={"weights.safetensors": 10**12})
    # Only the digits of the size and of total_size differ: 1 B vs 1 TB adds 2 x 12 characters.
    assert len(huge.to_json()) - len(small.to_json()) == 2 * (len(str(10**12)) - 1)


def test_created_at_is_utc_whole_seconds() -> None:
    moment = datetime(2026, 1, 10, 16, 30, 5, 123456, tzinfo=timezone(timedelta(hours=1)))
    manifest = make_manifest().replace(created_at=moment)
    assert manifest.created_at == datetime(2026, 1, 10, 15, 30, 5, tzinfo=timezone.utc)
    assert '"created_at": "2026-01-10T15:30:05Z"' in manifest.to_json()
    with pytest.raises(FormatError):
        make_manifest().replace(created_at=datetime(2026, 1, 1))  # naive


def test_single_file_tracked_path() -> None:
    manifest = make_manifest(path="checkpoints/model.safetensors",
                             files={"model.safetensors": 5}).replace(is_dir=False)
    assert Manifest.from_json(manifest.to_json()).is_dir is False
    with pytest.raises(FormatError, match="exactly one entry"):
        make_manifest(path="model.bin", files={"other.bin": 5}).replace(is_dir=False)


def test_metrics_and_extra_are_read_only_and_validated() -> None:
    manifest = make_manifest(metrics={"acc": 1}).replace(extra={"sample_count": 120_000})
    assert manifest.metrics == {"acc": 1.0}
    assert isinstance(manifest.metrics["acc"], float)
    with pytest.raises(TypeError):
        manifest.metrics["acc"] = 2.0  # type: ignore[index]
    assert Manifest.from_json(manifest.to_json()).extra == {"sample_count": 120_000}
    bad_metrics: list[dict[str, Any]] = [
        {"acc": float("nan")}, {"acc": "high"}, {"acc": True}, {"": 1.0}
    ]
    for bad in bad_metrics:
        with pytest.raises(FormatError):
            make_manifest(metrics=bad)
    with pytest.raises(FormatError):
        make_manifest().replace(extra={"nested": {"a": 1}})


@pytest.mark.parametrize(
    ("path", "reason"),
    [("../x", "'..'"), ("a/../../x", "'..'"), ("/etc/passwd", "absolute"), ("a//b", "empty"),
     ("a/", "empty"), ("./a", "'.'"), ("a\\..\\b", "backslash"), ("a\x00b", "NUL"),
     ("C:/Windows/x", "drive"), ("sub/.git/config", ".git"), (".GIT/hooks/x", ".git"),
     ("", "empty")],
)
def test_hostile_file_paths_are_refused(path: str, reason: str) -> None:
    with pytest.raises(UnsafePathError, match=reason) as info:
        Manifest.from_json(_with_files(_file("ok.bin"), _file(path)), source="v0.3:m.json")
    assert info.value.path == path
    assert "v0.3:m.json" in str(info.value)
    assert info.value.hint


def test_duplicate_and_file_folder_clash_are_refused() -> None:
    with pytest.raises(UnsafePathError, match="listed twice"):
        Manifest.from_json(_with_files(_file("a.bin"), _file("a.bin")))
    with pytest.raises(UnsafePathError, match="folder of"):
        Manifest.from_json(_with_files(_file("a"), _file("a/b")))


@pytest.mark.parametrize("tracked", ["../model", "/abs/model", ".git", ".cpv/x", "a//b", ".Git/x"])
def test_hostile_tracked_paths_are_refused(tracked: str) -> None:
    with pytest.raises(UnsafePathError):
        Manifest.from_json(json.dumps(_doc(path=tracked)))
    with pytest.raises(UnsafePathError):
        check_tracked_path(tracked)


_MALFORMED: list[tuple[str, str]] = [
    ("", "not valid JSON"), ("{", "not valid JSON"), ("[]", "JSON object"),
    ('{"schema_version": 1, "schema_version": 1}', "duplicate key"),
    (json.dumps(_doc(schema_version=3)), "schema_version 3 was written by a newer cpv"),
    (json.dumps(_doc(schema_version=2)), "missing field"),
    (json.dumps(_doc(schema_version="1")), "schema_version"),
    (json.dumps({k: v for k, v in _doc().items() if k != "snapshot_id"}), "missing field"),
    (json.dumps(_doc(surprise=1)), "unknown field"),
    (json.dumps(_doc(snapshot_id="abc")), "snapshot_id"),
    (json.dumps(_doc(kind="weights")), "kind"),
    (json.dumps(_doc(total_size=1)), "total_size"),
    (json.dumps(_doc(file_count=7)), "file_count"),
    (json.dumps(_doc(files={"a": 1})), "files must be a list"),
    (json.dumps(_doc(files=[{"path": "a", "size": 1}], file_count=1, total_size=1)),
     "exactly"),
    (json.dumps(_doc(files=[{"path": "a", "size": -1, "blake3": digest("a")}],
                     file_count=1, total_size=-1)), "size"),
    (json.dumps(_doc(metrics={"loss": "low"})), "not a number"),
    (json.dumps(_doc(created_at="yesterday")), "created_at"),
    (json.dumps(_doc(is_dir="yes")), "is_dir"),
    (json.dumps(_doc()).replace("1010", "NaN"), "NaN"),
    ("[" * 100_000, "not valid JSON"),
]


@pytest.mark.parametrize(
    ("text", "match"), _MALFORMED,
    # Ids from the expected message, numbered: the documents themselves are long.
    ids=[f"{number}-{match}" for number, (_, match) in enumerate(_MALFORMED)],
)
def test_malformed_manifests_are_format_errors(text: str, match: str) -> None:
    with pytest.raises(FormatError, match=match) as info:
        Manifest.from_json(text, source="HEAD:.cpv/manifests/model/model.json")
    assert str(info.value).startswith("HEAD:.cpv/manifests/model/model.json: ")
    assert info.value.hint


def test_non_utf8_bytes_are_a_format_error() -> None:
    with pytest.raises(FormatError, match="UTF-8"):
        Manifest.from_json(b"\xff\xfe{}")


def test_file_entry_validation() -> None:
    with pytest.raises(FormatError, match="blake3"):
        FileEntry(path="a", size=1, blake3="A" * 64)
    with pytest.raises(FormatError, match="size"):
        FileEntry(path="a", size=True, blake3=digest("a"))


def test_manifest_name_slug() -> None:
    assert manifest_name("model") == "model"
    assert manifest_name("data") == "data"
    assert manifest_name("data/train") == "data-train"
    assert manifest_name("Data/Val Set") == "data-val_set"
    assert manifest_name(".hidden") == "_hidden"
    deep = "/".join(["x" * 60] * 5)  # one segment may not exceed 255 bytes (the path rule)
    long = manifest_name(deep)
    assert len(long) == 100
    assert long != manifest_name(deep + "x")
    assert manifest_relpath("data", "data-train") == ".cpv/manifests/data/data-train.json"
    with pytest.raises(UnsafePathError):
        manifest_relpath("model", "../evil")


safe_segment = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\\\x00:"),
    min_size=1, max_size=12,
).filter(lambda s: s not in (".", "..") and s.lower() != ".git")


@settings(max_examples=60, deadline=None)
@given(
    paths=st.sets(st.lists(safe_segment, min_size=1, max_size=3).map("/".join), max_size=8),
    sizes=st.integers(min_value=0, max_value=2**50),
    metrics=st.dictionaries(st.text(min_size=1, max_size=10).filter(str.isprintable),
                            st.floats(allow_nan=False, allow_infinity=False), max_size=4),
    message=st.text(max_size=40),
)
def test_encode_decode_is_identity(paths: set[str], sizes: int, metrics: dict[str, float],
                                   message: str) -> None:
    # Drop paths that are folders of other paths: a tree cannot hold both.
    files = {p: sizes for p in paths if not any(q.startswith(p + "/") for q in paths)}
    manifest = make_manifest(files=files, metrics=metrics, message=message)
    text = manifest.to_json()
    assert Manifest.from_json(text) == manifest
    assert Manifest.from_json(text).to_json() == text


# -- schema 2: pointer manifests -----------------------------------------------------------------


def _pointer(file_count: int = 2, total_size: int = 1010, **overrides: Any) -> Manifest:
    base: dict[str, Any] = {
        "kind": "model", "path": "model", "snapshot_id": digest("snap"), "store_url": "s3://bucket/team/m",
        "file_count": file_count, "total_size": total_size, "changes": ChangeCounts(1, 2, 3),
        "message": "run 7", "metrics": {"loss": 0.25}, "author": "Ada <ada@example.test>"}
    base.update(overrides)
    return pointer_manifest(**base)


def test_pointer_manifest_round_trip_has_a_summary_and_no_files() -> None:
    manifest = _pointer()
    text = manifest.to_json()
    doc = json.loads(text)
    assert doc["schema_version"] == manifest.schema_version == 2
    assert "files" not in doc
    assert doc["summary"] == {"file_count": 2, "total_size": 1010, "added": 1, "changed": 2,
                              "removed": 3}
    parsed = Manifest.from_json(text)
    assert parsed == manifest and parsed.to_json() == text
    assert parsed.files is None and parsed.changes == ChangeCounts(1, 2, 3)
    unknown = _pointer(changes=None)
    assert json.loads(unknown.to_json())["summary"]["added"] is None
    assert Manifest.from_json(unknown.to_json()).changes is None


def test_pointer_manifest_size_does_not_depend_on_the_file_count() -> None:
    small = _pointer(file_count=1, total_size=10)
    huge = _pointer(file_count=10**7, total_size=10**13)
    # Only the digits of the two numbers differ.
    assert len(huge.to_json()) - len(small.to_json()) == (8 - 1) + (14 - 2)
    assert len(huge.to_json().encode()) < 4096


def test_schema_one_manifest_becomes_a_pointer_to_the_same_version() -> None:
    old = make_manifest(metrics={"loss": 0.5}, message="old")
    new = old.as_pointer()
    assert old.schema_version == 1 and new.schema_version == 2
    assert (new.snapshot_id, new.file_count, new.total_size, dict(new.metrics), new.message) == (
        old.snapshot_id, old.file_count, old.total_size, dict(old.metrics), old.message)
    assert Manifest.from_json(new.to_json()) == new
    assert Manifest.from_json(old.to_json()).files == old.files  # schema 1 is still read


@pytest.mark.parametrize(
    ("summary", "match"),
    [({"file_count": 1, "total_size": 1}, "summary must be an object with exactly"),
     ({"file_count": -1, "total_size": 1, "added": None, "changed": None, "removed": None},
      "file_count"),
     ({"file_count": 1, "total_size": True, "added": None, "changed": None, "removed": None},
      "total_size"),
     ({"file_count": 1, "total_size": 1, "added": 1, "changed": None, "removed": None},
      "all numbers or all null"),
     ({"file_count": 1, "total_size": 1, "added": -1, "changed": 0, "removed": 0}, "added"),
     ([], "summary must be an object")],
)
def test_bad_summaries_are_refused(summary: Any, match: str) -> None:
    doc = json.loads(_pointer().to_json())
    doc["summary"] = summary
    with pytest.raises(FormatError, match=match):
        Manifest.from_json(json.dumps(doc), source="x.json")


def test_pointer_manifest_refuses_a_file_list_and_a_single_file_with_many() -> None:
    doc = json.loads(_pointer().to_json())
    doc["files"] = []
    with pytest.raises(FormatError, match="unknown field"):
        Manifest.from_json(json.dumps(doc))
    with pytest.raises(FormatError, match="exactly one file"):
        _pointer(path="model/w.bin", is_dir=False, file_count=2)


def test_a_newer_schema_says_upgrade_cpv_in_one_line() -> None:
    doc = json.loads(_pointer().to_json())
    doc["schema_version"] = 3
    with pytest.raises(FormatError) as info:
        Manifest.from_json(json.dumps(doc), source="v0.9:.cpv/manifests/model/model.json")
    assert "upgrade cpv" in info.value.message and "\n" not in info.value.message


def test_a_chosen_line_name_names_the_manifest_file_and_round_trips() -> None:
    """``--name`` is kept in the manifest as ``line`` (only when it differs from the slug), is
    the manifest's file name, and obeys the one line-name rule."""
    named = _pointer(path="runs/exp1/model.safetensors", is_dir=False, file_count=1,
                     total_size=10, line="exp1")
    assert named.name == "exp1" and named.relpath == ".cpv/manifests/model/exp1.json"
    text = named.to_json()
    assert json.loads(text)["line"] == "exp1"
    assert Manifest.from_json(text) == named and Manifest.from_json(text).line == "exp1"
    slug = _pointer(path="outputs/ck", line="outputs-ck")
    assert slug.line is None and "line" not in json.loads(slug.to_json())
    for bad in ("model", "data", "Exp 1", "-x", ".x", "x" * 129):
        with pytest.raises(FormatError, match="manifest line"):
            _pointer(path="outputs/ck", line=bad)
    doc = json.loads(slug.to_json())
    doc["line"] = 7
    with pytest.raises(FormatError, match="line must be a string"):
        Manifest.from_json(json.dumps(doc))
