"""Status, the no-op push and a push's summary judged folder by folder (issue 11): a folder
whose fingerprint is the one its baseline recorded is not read at all, the others are compared
file by file, and a push counts what changed from the tree diff, not from its whole list.

Real workspace, real Git, the embedded local store. That an unchanged folder's entries are never
read is shown the hard way: its block in the baseline file is overwritten with garbage, and
status still answers (and fails loudly once that folder does change)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from cpv.api import CPVConfig
from cpv.errors import LocalIOError
from cpv.service import WorkspaceService
from cpv.service.create import init_workspace
from cpv.service.filelist import CACHE_DIR

FOLDERS, PER_FOLDER = 8, 20
BASELINE = Path(".cpv/local/baseline/model.json")


def _settle(root: Path) -> None:
    """Date every file a minute back: files this fresh are never vouched for by their stamp
    (a save within the clock tick could hide), so neither the stat cache nor a fingerprint
    would be recorded for them."""
    past = time.time() - 60
    for folder, _, names in os.walk(root / "model"):
        for name in names:
            os.utime(os.path.join(folder, name), (past, past))


@pytest.fixture
def config(tmp_path: Path, local_config: CPVConfig) -> CPVConfig:
    return local_config.replace(store={"url": str(tmp_path / "store")})


@pytest.fixture
def root(tmp_path: Path, config: CPVConfig) -> Path:
    """A pushed version of 8 folders of 20 files, settled: the baseline knows every folder."""
    store = tmp_path / "store"
    root = tmp_path / "ws"
    init_workspace(root, config=config, store_url=str(store))
    for d in range(FOLDERS):
        folder = root / "model" / f"d{d:02d}"
        folder.mkdir(parents=True)
        for i in range(PER_FOLDER):
            (folder / f"f{i:03d}.bin").write_bytes(f"{d}:{i}:".encode() * (i + 1))
    _settle(root)
    with _open(root, config) as service:
        service.push(["model"], message="one")
    return root


def _open(root: Path, config: CPVConfig) -> WorkspaceService:
    return WorkspaceService.open(root, config=config, search_parents=False)


def _changed(root: Path, config: CPVConfig) -> list[str]:
    with _open(root, config) as service:
        (model,) = [k for k in service.status().kinds if k.kind == "model"]
        return list(model.changed)


def _spoil_block(root: Path, prefix: str) -> None:
    """Overwrite one folder's entries in the baseline file (same length, not JSON)."""
    path = root / BASELINE
    raw = path.read_bytes()
    head_end = raw.index(b"\n", raw.index(b"\n") + 1) + 1
    header = json.loads(raw[raw.index(b"\n") + 1:head_end])
    offset = head_end
    for name, fingerprint, _count, _size, length in header["folders"]:
        if name == prefix:
            assert fingerprint is not None, "the push recorded no fingerprint for it"
            path.write_bytes(raw[:offset] + b"#" * length + raw[offset + length:])
            return
        offset += length
    raise AssertionError(f"no folder {prefix!r} in the baseline")


def test_status_reads_only_the_changed_folder(root: Path, config: CPVConfig) -> None:
    _spoil_block(root, "d05/")
    assert _changed(root, config) == []
    (root / "model" / "d03" / "f007.bin").write_bytes(b"edited")
    (root / "model" / "d03" / "new.bin").write_bytes(b"added")
    assert _changed(root, config) == ["model/d03/f007.bin", "model/d03/new.bin"]
    # The spoiled folder was never read; once it changes, its record is needed and the
    # damage is said, never taken for "unchanged".
    (root / "model" / "d05" / "f001.bin").write_bytes(b"edited too")
    with pytest.raises(LocalIOError, match="damaged"):
        _changed(root, config)


def test_a_deleted_file_in_an_otherwise_unchanged_folder_is_reported(
        root: Path, config: CPVConfig) -> None:
    (root / "model" / "d02" / "f004.bin").unlink()
    assert _changed(root, config) == ["model/d02/f004.bin"]
    (root / "model" / "d06").rename(root / "elsewhere")  # a whole folder gone
    changed = _changed(root, config)
    assert len(changed) == 1 + PER_FOLDER
    assert "model/d06/f019.bin" in changed


def test_a_rule_that_hides_a_file_of_an_unchanged_folder_is_reported(
        root: Path, config: CPVConfig) -> None:
    (root / ".cpvignore").write_text("model/d04/f001.bin\n")
    with _open(root, config) as service:
        (model,) = [k for k in service.status().kinds if k.kind == "model"]
    assert model.hidden == ("model/d04/f001.bin",)
    assert model.changed == ()


def test_push_counts_changes_from_the_tree_diff_and_records_the_new_baseline(
        root: Path, config: CPVConfig) -> None:
    sizes = sum(os.path.getsize(root / "model" / p)
                for p in ("d01/f000.bin", "d01/f001.bin", "d02/f003.bin"))
    (root / "model" / "d01" / "f000.bin").write_bytes(b"new content")
    (root / "model" / "d01" / "f001.bin").write_bytes(b"other content")
    (root / "model" / "d06" / "extra.bin").write_bytes(b"x" * 10)
    (root / "model" / "d02" / "f003.bin").unlink()
    with _open(root, config) as service:
        before = service.manifest_at("model", None)[0]
        outcome = service.push(["model"], message="two")
        after = service.manifest_at("model", None)[0]
    assert after.changes is not None
    assert (after.changes.added, after.changes.changed, after.changes.removed) == (1, 2, 1)
    assert after.file_count == before.file_count
    assert after.total_size == before.total_size - sizes + len(b"new contentother content") + 10
    # Counted from the folders that differ: the pushed version's whole list was not read.
    assert not (root / CACHE_DIR / outcome.results[0].snapshot_id).exists()
    with _open(root, config) as service:  # and what the full list says agrees
        listing = service.files_of(after)
    assert len(listing) == after.file_count
    assert sum(f.size for f in listing) == after.total_size
    assert _changed(root, config) == []
    (root / "model" / "d01" / "f001.bin").write_bytes(b"edited after")
    assert _changed(root, config) == ["model/d01/f001.bin"]


def test_push_counts_every_kind_of_change_from_its_folder_notes(
        root: Path, config: CPVConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    """The counts and the baseline a push leaves come from its notes of the folders it
    encoded, made against the baseline (not from a diff of the two versions): a file that
    became a link and back, a folder gone, new folders, sub-folders; each as the full lists
    say, data splits included."""
    model = root / "model"
    os.symlink("f000.bin", model / "d01" / "link")
    for split, count in (("train", 3), ("validation", 2)):
        (root / "data" / split).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            (root / "data" / split / f"s{i}.bin").write_bytes(f"{split}{i}".encode())
    _settle(root)
    with _open(root, config) as service:
        service.push(message="a link, and data")
    (model / "d01" / "link").unlink()
    (model / "d01" / "link").write_bytes(b"a file now")  # link -> file: added
    (model / "d00" / "f001.bin").unlink()
    os.symlink("f002.bin", model / "d00" / "f001.bin")  # file -> link: removed
    (model / "d00" / "f000.bin").write_bytes(b"changed")
    (model / "d05").rename(root / "gone")  # 20 removed
    (model / "d09").mkdir()
    for i in range(2):
        (model / "d09" / f"n{i}.bin").write_bytes(f"new {i}".encode())
    (model / "d02" / "sub").mkdir()
    (model / "d02" / "sub" / "x.bin").write_bytes(b"deeper")
    (root / "data" / "train" / "s3.bin").write_bytes(b"one more")
    (root / "data" / "validation" / "s0.bin").unlink()
    _settle(root)
    import cpv.service.workspace as workspace

    def no_diff(*args: object, **kwargs: object) -> None:
        raise AssertionError("the push's notes were not used")

    monkeypatch.setattr(workspace._Summary, "since", no_diff)
    with _open(root, config) as service:
        before = {k: service.manifest_at(k, None)[0] for k in ("model", "data")}
        service.push(message="every kind of change")
        after = {k: service.manifest_at(k, None)[0] for k in ("model", "data")}
        lists = {(k, i): service.files_of(m[k]) for i, m in enumerate((before, after))
                 for k in ("model", "data")}
    from cpv.service.filelist import count_changes, regular, table_of
    for kind in ("model", "data"):
        want = count_changes(lists[kind, 0], lists[kind, 1])
        assert after[kind].changes == want, kind
        assert after[kind].file_count == len(regular(lists[kind, 1]))
    assert after["model"].changes is not None
    assert (after["model"].changes.added, after["model"].changes.changed,
            after["model"].changes.removed) == (4, 1, 21)
    assert after["data"].extra["samples.train"] == 4
    assert after["data"].extra["samples.validation"] == 1
    with _open(root, config) as service:
        baseline = service._baselines.load(root / "model")
    assert baseline is not None and baseline.files == table_of(lists["model", 1])
    assert _changed(root, config) == []


def _as_legacy(root: Path) -> None:
    """Rewrite the baseline as an earlier cpv wrote it: one JSON document, every file, no
    folder fingerprints (what a workspace made before this change holds)."""
    path = root / BASELINE
    raw = path.read_bytes()
    _, header, blocks = raw.split(b"\n", 2)
    doc = json.loads(header)
    files: dict[str, list[object]] = {}
    offset = 0
    for prefix, _fp, _count, _size, length in doc["folders"]:
        for name, size, digest in json.loads(blocks[offset:offset + length] or b"[]"):
            files[prefix + name] = [size, digest]
        offset += length
    path.write_text(json.dumps({"snapshot_id": doc["snapshot_id"], "files": files}))


def test_a_no_op_push_learns_the_folders_of_an_older_baseline(
        root: Path, config: CPVConfig) -> None:
    """A baseline without fingerprints (an earlier cpv's, or a pull's) is judged file by file;
    a no-op push records the folders it found equal (status writes nothing), and the next
    look skips them."""
    _as_legacy(root)
    legacy = (root / BASELINE).read_bytes()
    (root / "model" / "d03" / "f002.bin").write_bytes(b"edited")
    assert _changed(root, config) == ["model/d03/f002.bin"]
    assert (root / BASELINE).read_bytes() == legacy
    (root / "model" / "d03" / "f002.bin").unlink()
    with _open(root, config) as service:
        service.pull(force=True)  # puts the file back; a pull records no fingerprints
    (root / BASELINE).write_bytes(legacy)
    _settle(root)  # (which also makes the stat cache's stamps of the pulled file stale)
    with _open(root, config) as service:
        (result,) = service.push(["model"]).results  # one file hashed again: a full push
    assert not result.changed
    _as_legacy(root)
    with _open(root, config) as service:
        (result,) = service.push(["model"]).results
    assert not result.changed and result.uploaded_bytes == 0  # the no-op, decided locally
    header = json.loads((root / BASELINE).read_bytes().split(b"\n")[1])
    assert all(fp for _, fp, *_ in header["folders"])
    _spoil_block(root, "d07/")
    assert _changed(root, config) == []


def test_a_partial_pull_records_its_own_folders_and_keeps_the_rest(
        root: Path, config: CPVConfig) -> None:
    """After ``pull v1 model/d01`` into a workspace at v2, the baseline holds v1's entries
    inside the selection and v2's outside (only the touched folders are read again): a
    full pull of v2 then goes through without --force, removes the file v1 put back, and
    leaves the user's own file alone."""
    model = root / "model"
    (model / "d01" / "f000.bin").write_bytes(b"v2 content")
    (model / "d03" / "f001.bin").write_bytes(b"v2 outside")
    (model / "d01" / "f019.bin").unlink()
    (model / "d01" / "new.bin").write_bytes(b"v2 only")
    with _open(root, config) as service:
        service.push(["model"], message="two")
    with _open(root, config) as service:
        service.pull("HEAD~1", paths=["model/d01"])
    assert (model / "d01" / "f019.bin").exists()  # v1's file, put back
    # Not v1's: the selection is v1's files under d01, so it is neither written nor removed.
    assert (model / "d01" / "new.bin").read_bytes() == b"v2 only"
    assert (model / "d01" / "f000.bin").read_bytes() != b"v2 content"
    assert (model / "d03" / "f001.bin").read_bytes() == b"v2 outside"  # outside: untouched
    assert _changed(root, config) == []  # every file is as the baseline says
    (model / "d05" / "mine.txt").write_text("the user's")
    with _open(root, config) as service:
        service.pull()
    assert not (model / "d01" / "f019.bin").exists()
    assert (model / "d01" / "f000.bin").read_bytes() == b"v2 content"
    assert (model / "d01" / "new.bin").read_bytes() == b"v2 only"
    assert (model / "d05" / "mine.txt").read_text() == "the user's"
