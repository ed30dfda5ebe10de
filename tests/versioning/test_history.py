"""History against real repositories: record, tag (atomic), list, read, revert, status."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cpv.errors import (
    DirtyWorkspaceError,
    FormatError,
    InvalidTagError,
    TagExistsError,
    TagNotFoundError,
    UnsafePathError,
    VersioningError,
)
from cpv.versioning.gitrepo import GitRepo
from cpv.versioning.history import BLOCK_END, BLOCK_START, History, render_gitignore
from cpv.versioning.manifest import Manifest
from cpv.versioning.tags import Version
from tests.versioning.conftest import AUTHOR, AUTHOR_EMAIL, digest, git, make_manifest

MODEL_JSON = ".cpv/manifests/model/model.json"
DATA_JSON = ".cpv/manifests/data/data.json"


def _record_both(history: History, version: int, **metrics: float) -> tuple[Manifest, Manifest]:
    model = make_manifest("model", "model", version=version, metrics=metrics)
    data = make_manifest("data", "data", version=version, files={"train/a.wav": version})
    history.record_version(model)
    history.record_version(data)
    return model, data


def _state(repo: GitRepo) -> tuple[str | None, dict[str, str], str]:
    """Everything a failed operation must leave as it found it."""
    return repo.head_commit(), repo.tag_targets(), git(repo.root, "status", "--porcelain")


def _ignored_block(root: Path) -> list[str]:
    lines = (root / ".gitignore").read_text().splitlines()
    return lines[lines.index(BLOCK_START) + 2: lines.index(BLOCK_END)]


# -- record_version ------------------------------------------------------------------------------


def test_record_version_commits_only_cpv_files(history: History) -> None:
    root = history.repo.root
    (root / "train.py").write_text("print('hi')\n")
    git(root, "add", "train.py")
    (root / ".gitignore").write_text("*.pyc\n")
    (root / "model").mkdir()
    (root / "model" / "weights.bin").write_bytes(b"\1" * 64)
    manifest = make_manifest(message="baseline")
    record = history.record_version(manifest)
    assert record.commit == history.repo.head_commit()
    assert record.changed
    assert record.path == MODEL_JSON
    assert sorted(git(root, "show", "--name-only", "--format=", str(record.commit)).split()) == [
        MODEL_JSON, ".gitignore"]
    assert Manifest.from_json((root / MODEL_JSON).read_text()) == manifest
    # User content is kept; the bytes are ignored; the user's staged file is still staged only.
    gitignore = (root / ".gitignore").read_text()
    assert gitignore.startswith("*.pyc\n")
    assert _ignored_block(root) == ["/model/"]
    assert git(root, "status", "--porcelain").splitlines() == ["A  train.py"]
    assert "baseline" in git(root, "log", "-1", "--format=%B")
    assert history.current_manifest("model", "model") == manifest


def test_record_data_splits_and_single_files(history: History) -> None:
    for split in ("train", "validation", "test"):
        history.record_version(make_manifest("data", f"data/{split}", files={"a.txt": 1}))
    single = make_manifest("model", "ckpt/model.safetensors",
                           files={"model.safetensors": 9}).replace(is_dir=False)
    history.record_version(single)
    root = history.repo.root
    assert sorted(p.name for p in (root / ".cpv/manifests/data").iterdir()) == [
        "data-test.json", "data-train.json", "data-validation.json"]
    assert _ignored_block(root) == ["/ckpt/model.safetensors", "/data/test/", "/data/train/",
                                    "/data/validation/"]
    assert [m.path for m in history.current_manifests("data")] == [
        "data/test", "data/train", "data/validation"]


def test_record_refuses_clashing_or_overlapping_paths(history: History) -> None:
    history.record_version(make_manifest("data", "data/train"))
    head = history.repo.head_commit()
    with pytest.raises(VersioningError, match="share manifest"):
        history.record_version(make_manifest("data", "data-train"))
    with pytest.raises(VersioningError, match="overlap"):
        history.record_version(make_manifest("data", "data"))
    with pytest.raises(VersioningError, match="overlap"):
        history.record_version(make_manifest("model", "data/train/model"))
    assert history.repo.head_commit() == head
    assert git(history.repo.root, "status", "--porcelain") == ""


def test_record_without_commit_and_on_detached_head(history: History) -> None:
    record = history.record_version(make_manifest(), commit=False)
    assert record.commit is None
    assert [c.state for c in history.status().changes] == ["added"]
    history.repo.commit_paths([MODEL_JSON, ".gitignore"], "by hand")
    git(history.repo.root, "checkout", "-q", "--detach")
    before = _state(history.repo)
    with pytest.raises(VersioningError, match="detached") as info:
        history.record_version(make_manifest(version=2))
    assert "git switch" in info.value.hint
    assert _state(history.repo) == before


def test_render_gitignore_keeps_user_lines_and_line_endings() -> None:
    text = "*.pyc\r\n# >>> cpv managed\r\n/old/\r\n# <<< cpv managed\r\nbuild/\r\n"
    out = render_gitignore(text, ["/new/"])
    assert out.startswith("*.pyc\r\n# >>> cpv managed\r\n")
    assert "/new/\r\n# <<< cpv managed\r\nbuild/\r\n" in out
    assert "/old/" not in out
    assert render_gitignore("", ["/m/"]).splitlines()[0] == BLOCK_START
    with pytest.raises(VersioningError, match="damaged cpv block"):
        render_gitignore("# >>> cpv managed\n/x/\n", [])


def test_gitignore_lines_escape_glob_characters(history: History) -> None:
    history.record_version(make_manifest(path="we ird*[x]"))
    assert _ignored_block(history.repo.root) == ["/we\\ ird\\*\\[x\\]/"]
    assert history.repo.is_ignored("we ird*[x]/weights.bin")
    assert not history.repo.is_ignored("we irdzzx/weights.bin")  # unescaped, the glob would match


# -- tags ----------------------------------------------------------------------------------------


def test_next_tag_is_numeric_v0_9_to_v0_10(history: History) -> None:
    _record_both(history, 1)
    assert history.next_tag("model") == "v0.1"
    assert history.next_tag("data") == "data-v0.1"
    history.create_tag("model", "v0.9")
    history.create_tag("model", "v0.2")
    assert history.next_tag("model") == "v0.10"
    record = history.create_tag("model")
    assert (record.tag, record.version) == ("v0.10", Version(0, 10))
    assert history.next_tag("model") == "v0.11"
    assert history.next_tag("data") == "data-v0.1"
    assert [v.tag for v in history.list_versions("model")] == ["v0.2", "v0.9", "v0.10"]


def test_explicit_existing_invalid_and_overwrite(history: History) -> None:
    _record_both(history, 1)
    first = history.create_tag("model", "v1.0", message="release")
    assert first.tag == "v1.0"  # the seed returns "v1.0"
    with pytest.raises(TagExistsError) as info:
        history.create_tag("model", "v1.0")
    assert info.value.tag == "v1.0"
    assert "force" in info.value.hint
    for bad in ("1.0.0", "v1", "data-v1.1", "latest"):
        with pytest.raises(InvalidTagError):
            history.create_tag("model", bad)
    _record_both(history, 2)
    moved = history.create_tag("model", "v1.0", overwrite=True, message="re-release")
    assert moved.commit == history.repo.head_commit() != first.commit
    assert history.repo.resolve("v1.0") == moved.commit
    data = history.create_tag("data", "data-v1.0")
    assert data.tag == "data-v1.0"


def test_tag_message_repeats_metrics_for_git_show(history: History) -> None:
    _record_both(history, 1, loss=0.5)
    record = history.create_tag("model", message="baseline", metrics={"accuracy": 0.967})
    assert dict(record.metrics) == {"accuracy": 0.967, "loss": 0.5}
    # The manifest at the tag is the authoritative copy (one extra commit was recorded).
    at_tag = history.read_manifest("v0.1", "model", "model")
    assert dict(at_tag.metrics) == {"accuracy": 0.967, "loss": 0.5}
    shown = git(history.repo.root, "show", "-s", "--format=%B", "v0.1")
    assert 'cpv-metrics: {"accuracy": 0.967, "loss": 0.5}' in shown
    assert shown.startswith("tag v0.1") or "baseline" in shown
    assert git(history.repo.root, "status", "--porcelain") == ""


def test_metrics_from_a_json_file(history: History, tmp_path: Path) -> None:
    _record_both(history, 1)
    file = tmp_path / "metrics.json"
    file.write_text(json.dumps({"f1": 0.8}))
    assert dict(history.create_tag("model", metrics=file).metrics) == {"f1": 0.8}


def test_tag_needs_committed_clean_manifests(history: History) -> None:
    with pytest.raises(VersioningError, match="no model manifest"):
        history.create_tag("model")
    history.record_version(make_manifest(), commit=False)
    with pytest.raises(VersioningError, match="no model manifest"):
        history.create_tag("model")
    history.repo.commit_paths([MODEL_JSON, ".gitignore"], "record")
    history.record_version(make_manifest(version=2), commit=False)
    with pytest.raises(DirtyWorkspaceError) as info:
        history.create_tag("model")
    assert info.value.paths == [MODEL_JSON]
    assert history.repo.tag_targets() == {}


def test_combined_tag_uses_the_greater_next_version(history: History) -> None:
    _record_both(history, 1)
    history.create_tag("model", "v0.4")
    history.create_tag("data", "data-v0.1")
    combined = history.create_combined_tag(message="paired")
    assert combined.version == Version(0, 5)
    assert (combined.model.tag, combined.data.tag) == ("v0.5", "data-v0.5")
    assert combined.model.commit == combined.data.commit == history.repo.head_commit()
    with pytest.raises(TagExistsError):
        history.create_combined_tag("v0.5")
    with pytest.raises(InvalidTagError):
        history.create_combined_tag("data-v0.6")
    history.create_tag("data", "data-v0.6")
    with pytest.raises(TagExistsError, match=re.escape("data-v0.6")):
        history.create_combined_tag("v0.6")
    assert "v0.6" not in history.repo.tag_targets()


def _lock_tag(repo: GitRepo, name: str) -> Path:
    """Make git fail to create tag ``name``, as a concurrent git process holding its lock would."""
    lock = repo.root / ".git" / "refs" / "tags" / f"{name}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("held by another process\n")
    return lock


def test_combined_tag_rolls_back_when_the_second_tag_fails(history: History) -> None:
    _record_both(history, 1)
    history.create_combined_tag()  # v0.1 + data-v0.1
    before = _state(history.repo)
    manifest_before = (history.repo.root / MODEL_JSON).read_bytes()
    _lock_tag(history.repo, "data-v0.2")
    with pytest.raises(VersioningError, match=re.escape("data-v0.2")):
        history.create_combined_tag(message="second", metrics={"acc": 0.9})
    # The model tag that was created, and the metrics commit, are gone again.
    assert _state(history.repo) == before
    assert (history.repo.root / MODEL_JSON).read_bytes() == manifest_before
    assert "v0.2" not in history.repo.tag_targets()


def test_combined_overwrite_rolls_back_moved_tags(history: History) -> None:
    _record_both(history, 1)
    history.create_combined_tag("v1.0")
    _record_both(history, 2)
    before = _state(history.repo)
    _lock_tag(history.repo, "data-v1.0")
    with pytest.raises(VersioningError):
        history.create_combined_tag("v1.0", overwrite=True)
    assert _state(history.repo) == before  # v1.0 points at its old tag object again


def test_combined_tag_rolls_back_on_an_injected_failure(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection right after the tag transaction, for any error type."""
    _record_both(history, 1)
    before = _state(history.repo)
    real_create = GitRepo.create_tags
    calls: list[list[str]] = []

    def interrupted(self: GitRepo, tags: Any, **kwargs: Any) -> dict[str, str]:
        calls.append([t[0] for t in tags])
        real_create(self, tags, **kwargs)
        raise KeyboardInterrupt  # even an interrupt must not leave half a version

    monkeypatch.setattr(GitRepo, "create_tags", interrupted)
    with pytest.raises(KeyboardInterrupt):
        history.create_combined_tag()
    assert calls == [["v0.1", "data-v0.1"]]  # one transaction for both tags
    assert _state(history.repo) == before


_TAG_LOOP = """
import sys
from cpv.versioning.gitrepo import GitRepo
from cpv.versioning.history import History
with GitRepo.open(sys.argv[1]) as repo:
    history = History(repo)
    print("ready", flush=True)
    while True:
        history.create_combined_tag()
"""


@pytest.mark.slow
def test_combined_tag_killed_at_any_instant_leaves_both_tags_or_neither(
    history: History,
) -> None:
    """kill -9 a process creating combined tags, at random instants, many times."""
    _record_both(history, 1)
    root = history.repo.root
    rng = random.Random(7)
    kills = 0
    for _ in range(12):
        proc = subprocess.Popen([sys.executable, "-c", _TAG_LOOP, str(root)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Kill instants count from the loop's start, not the interpreter's: on a loaded machine
        # start-up alone can outlast any fixed delay, and then no kill would land in a tag.
        assert proc.stdout is not None and proc.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        _, err = proc.communicate()
        assert proc.returncode == -9, err.decode()[-2000:]
        # A killed git leaves its lock files, as after any crash; remove them as a user would.
        for lock in (root / ".git").rglob("*.lock"):
            lock.unlink()
        tags = set(history.repo.tag_targets())
        models = {t for t in tags if t.startswith("v")}
        datas = {t[len("data-"):] for t in tags if t.startswith("data-")}
        assert models == datas, f"half a combined tag after kill {kills}: {models ^ datas}"
    assert kills == 12 and len(models) > 0
    print(f"combined tag survived {kills} kills; {len(models)} complete versions")


# -- listing and reading -------------------------------------------------------------------------


def test_list_versions_with_metrics_sizes_and_authors(history: History) -> None:
    _record_both(history, 1, loss=0.5)
    history.create_combined_tag(message="first")
    _record_both(history, 2, loss=0.25)
    history.create_combined_tag(message="second")
    models = history.list_versions("model")
    assert [(v.tag, v.message, dict(v.metrics)) for v in models] == [
        ("v0.1", "first", {"loss": 0.5}), ("v0.2", "second", {"loss": 0.25})]
    assert models[1].total_size == 2010
    assert models[1].file_count == 2
    assert models[1].author == f"{AUTHOR} <{AUTHOR_EMAIL}>"
    assert models[1].date.tzinfo is not None
    assert models[1].problem is None
    assert models[1].manifests[0].snapshot_id == digest("snap-model-2")
    data = history.list_versions("data")
    assert [(v.tag, v.total_size, v.file_count) for v in data] == [
        ("data-v0.1", 1, 1), ("data-v0.2", 2, 1)]
    rows = history.compare_metrics("v0.1", "v0.2")
    assert [(r.name, r.a, r.b, r.delta) for r in rows] == [("loss", 0.5, 0.25, -0.25)]


def test_read_manifest_errors(history: History) -> None:
    model, _ = _record_both(history, 1)
    history.create_tag("model")
    assert history.read_manifest("v0.1", "model", "model") == model
    with pytest.raises(TagNotFoundError) as info:
        history.read_manifest("v9.9", "model", "model")
    assert info.value.tag == "v9.9"
    with pytest.raises(VersioningError, match="no model manifest 'other'"):
        history.read_manifest("v0.1", "model", "other")
    with pytest.raises(UnsafePathError):
        history.read_manifest("v0.1", "model", "../../etc/passwd")


def _commit_raw_manifest(history: History, relpath: str, text: str, tag: str) -> None:
    """Commit a manifest file written by someone else (a hostile or broken repository)."""
    root = history.repo.root
    (root / relpath).parent.mkdir(parents=True, exist_ok=True)
    (root / relpath).write_text(text)
    git(root, "add", "-f", relpath)
    git(root, "commit", "-q", "-m", "foreign manifest")
    git(root, "tag", "-a", "-m", "foreign", tag)


@pytest.mark.parametrize(
    ("bad_path", "error"),
    [("../../outside.txt", UnsafePathError), ("/etc/cron.d/x", UnsafePathError),
     ("a/../../x", UnsafePathError), ("dup", UnsafePathError), ("x", FormatError)],
)
def test_hostile_manifest_at_a_tag_is_refused_and_nothing_is_written(
    history: History, bad_path: str, error: type[Exception]
) -> None:
    model, _ = _record_both(history, 1)
    history.create_combined_tag()
    doc = json.loads(model.to_json())
    entry = {"path": bad_path, "size": 1, "blake3": digest(bad_path)}
    doc["files"] = [entry, entry] if bad_path == "dup" else [entry]
    doc["file_count"], doc["total_size"] = len(doc["files"]), len(doc["files"])
    if bad_path == "x":
        doc["schema_version"] = 99
    _commit_raw_manifest(history, MODEL_JSON, json.dumps(doc), "v0.2")
    history.record_version(model.replace(message="restored"))  # HEAD is sane again
    before = _state(history.repo)
    manifest_before = (history.repo.root / MODEL_JSON).read_bytes()
    with pytest.raises(error) as info:
        history.read_manifest("v0.2", "model", "model")
    assert "v0.2:" in str(info.value)
    with pytest.raises(error):
        history.revert("v0.2")
    assert _state(history.repo) == before
    assert (history.repo.root / MODEL_JSON).read_bytes() == manifest_before
    assert not (history.repo.root.parent / "outside.txt").exists()
    listed = {v.tag: v for v in history.list_versions("model")}
    assert listed["v0.1"].problem is None
    assert listed["v0.2"].problem is not None
    assert listed["v0.2"].file_count == 0


def test_manifest_in_the_wrong_place_is_refused(history: History) -> None:
    model, _ = _record_both(history, 1)
    _commit_raw_manifest(history, ".cpv/manifests/model/other.json", model.to_json(), "v0.1")
    with pytest.raises(FormatError, match=re.escape("belongs at .cpv/manifests/model/model.json")):
        history.read_manifests("v0.1", "model")


# -- revert --------------------------------------------------------------------------------------


def test_revert_restores_manifests_as_a_new_commit(history: History) -> None:
    model1, data1 = _record_both(history, 1)
    history.create_combined_tag()
    _record_both(history, 2)
    history.record_version(make_manifest("data", "extra", files={"x": 1}))
    head_before = history.repo.head_commit()
    record = history.revert("v0.1")
    assert record.commit == history.repo.head_commit() != head_before
    assert set(record.manifests) == {model1, data1}
    assert record.untracked == ("extra",)
    assert history.current_manifests() == [model1, data1] or sorted(
        history.current_manifests(), key=lambda m: m.kind) == [data1, model1]
    assert _ignored_block(history.repo.root) == ["/data/", "/model/"]
    assert git(history.repo.root, "log", "-1", "--format=%s").strip() == (
        "cpv: revert model, data to v0.1")
    # History is kept: the reverted-away commit is still an ancestor.
    git(history.repo.root, "merge-base", "--is-ancestor", str(head_before), "HEAD")
    assert git(history.repo.root, "status", "--porcelain") == ""
    # Reverting again changes nothing and makes no commit.
    assert history.revert("v0.1").commit is None


def test_revert_one_kind_only(history: History) -> None:
    model1, _ = _record_both(history, 1)
    history.create_combined_tag()
    _, data2 = _record_both(history, 2)
    history.revert("v0.1", kinds=["model"])
    assert history.current_manifest("model", "model") == model1
    assert history.current_manifest("data", "data") == data2


def test_revert_with_local_changes_refuses_and_loses_nothing(history: History) -> None:
    _record_both(history, 1)
    history.create_combined_tag()
    _record_both(history, 2)
    local = make_manifest(version=3, message="not yet committed")
    history.record_version(local, commit=False)
    edited = (history.repo.root / MODEL_JSON).read_bytes()
    before = _state(history.repo)
    with pytest.raises(DirtyWorkspaceError) as info:
        history.revert("v0.1")
    assert info.value.paths == [MODEL_JSON]
    assert "discard_local_changes" in info.value.hint
    assert _state(history.repo) == before
    assert (history.repo.root / MODEL_JSON).read_bytes() == edited
    # Asked explicitly, the local edit is discarded.
    history.revert("v0.1", discard_local_changes=True)
    assert history.current_manifest("model", "model") == history.read_manifest(
        "v0.1", "model", "model")
    assert git(history.repo.root, "status", "--porcelain") == ""


def test_revert_refuses_detached_head_and_missing_tag(history: History) -> None:
    _record_both(history, 1)
    history.create_combined_tag()
    with pytest.raises(TagNotFoundError):
        history.revert("v7.7")
    git(history.repo.root, "checkout", "-q", "v0.1")
    with pytest.raises(VersioningError, match="detached"):
        history.revert("v0.1")


def test_status_reports_manifest_changes(history: History) -> None:
    _record_both(history, 1)
    assert history.status().clean
    assert history.status().branch == "main"
    history.record_version(make_manifest(version=2), commit=False)
    history.record_version(make_manifest("data", "extra/new"), commit=False)
    (history.repo.root / DATA_JSON).unlink()
    changes = {(c.kind, c.name, c.state) for c in history.status().changes}
    assert changes == {("model", "model", "modified"), ("data", "extra-new", "added"),
                       ("data", "data", "deleted")}


def test_untracked_bytes_stay_ignored_while_they_exist(history: History) -> None:
    _record_both(history, 1)
    history.create_combined_tag()
    history.record_version(make_manifest("data", "extra", files={"x": 1}))
    root = history.repo.root
    (root / "extra").mkdir()
    (root / "extra" / "x").write_bytes(b"big")
    record = history.revert("v0.1")
    assert record.untracked == ("extra",)
    # No manifest tracks extra/ any more, but its bytes are still here: still ignored.
    assert _ignored_block(root) == ["/data/", "/extra/", "/model/"]
    assert git(root, "status", "--porcelain") == ""
    # Once the bytes are gone, the next update drops the line.
    (root / "extra" / "x").unlink()
    (root / "extra").rmdir()
    history.record_version(make_manifest(version=5))
    assert _ignored_block(root) == ["/data/", "/model/"]


def test_checkout_paths_and_reset(repo: GitRepo) -> None:
    (repo.root / "a.txt").write_text("one")
    first = repo.commit_paths(["a.txt"], "one")
    (repo.root / "a.txt").write_text("two")
    repo.commit_paths(["a.txt"], "two")
    repo.checkout_paths(str(first), ["a.txt"])
    assert (repo.root / "a.txt").read_text() == "one"
    assert git(repo.root, "status", "--porcelain").split() == ["M", "a.txt"]
    repo.reset(str(first), mode="hard")
    assert repo.head_commit() == first
    assert git(repo.root, "status", "--porcelain") == ""


def test_open_a_users_repository_without_commits(tmp_path: Path) -> None:
    git(tmp_path, "init", "-q", "plain")
    with GitRepo.open(tmp_path / "plain") as repo:
        assert repo.head_commit() is None
        history = History(repo)
        record = history.record_version(make_manifest())
        assert record.commit == repo.head_commit()
        assert git(repo.root, "rev-list", "--count", "HEAD").strip() == "1"
