"""Lineage and params in the manifest (optional fields, old manifests unchanged), hyper-parameters
recorded by a tag, and the alias log committed in a real Git repository."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pathspec
import pytest

from cpv.errors import FormatError, InvalidAliasError, UnsafePathError, VersioningError
from cpv.service.tree import DEFAULT_IGNORES, IgnoreRules, PathFilter
from cpv.versioning.aliases import AliasBook, check_alias_name
from cpv.versioning.gitrepo import GitRepo
from cpv.versioning.history import History
from cpv.versioning.manifest import Lineage, Manifest
from tests.versioning.conftest import git, make_manifest

SID = "ab" * 32


def _doc(manifest: Manifest, **overrides: Any) -> str:
    data: dict[str, Any] = json.loads(manifest.to_json())
    data.update(overrides)
    return json.dumps(data)


def test_a_manifest_without_lineage_keeps_its_bytes_and_reads() -> None:
    old = make_manifest()
    text = old.to_json()
    assert "lineage" not in text and "params" not in text  # as written before the fields
    parsed = Manifest.from_json(text)
    assert parsed.lineage is None and dict(parsed.params) == {}
    assert parsed.to_json() == text


def test_lineage_and_params_round_trip() -> None:
    lineage = Lineage(data_path="data", data_snapshot_id=SID, data_tag="data-v0.2")
    manifest = make_manifest().replace(lineage=lineage, params={"lr": "3e-4", "opt": "adamw"})
    parsed = Manifest.from_json(manifest.to_json())
    assert parsed.lineage == lineage
    assert dict(parsed.params) == {"lr": "3e-4", "opt": "adamw"}
    assert parsed.to_json() == manifest.to_json()


@pytest.mark.parametrize(("lineage", "error"), [
    ({"data_path": "data", "data_snapshot_id": "nothex", "data_tag": None}, FormatError),
    ({"data_path": "../x", "data_snapshot_id": SID, "data_tag": None}, UnsafePathError),
    ({"data_path": "data", "data_snapshot_id": SID}, FormatError),
    ({"data_path": "data", "data_snapshot_id": SID, "data_tag": "a b"}, FormatError),
    ("data-v0.1", FormatError),
])
def test_hostile_lineage_is_refused(lineage: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        Manifest.from_json(_doc(make_manifest(), lineage=lineage))


@pytest.mark.parametrize("params", [{"lr": 0.1}, {"": "x"}, {"a=b": "x"}, {"x": "two\nlines"},
                                    ["lr"]])
def test_bad_params_are_refused(params: object) -> None:
    with pytest.raises(FormatError):
        Manifest.from_json(_doc(make_manifest(), params=params))


def test_tag_records_params_in_the_tagged_manifest(history: History) -> None:
    history.record_version(make_manifest(path="model"))
    record = history.create_tag("model", params={"lr": "1e-4"}, metrics={"loss": 0.5})
    (tagged,) = record.manifests
    assert dict(tagged.params) == {"lr": "1e-4"} and dict(tagged.metrics) == {"loss": 0.5}
    assert dict(history.read_manifest(record.tag, "model", "model").params) == {"lr": "1e-4"}


@pytest.mark.parametrize(("name", "words"), [
    ("v0.1", "shadow the version tag"), ("1.2", "shadow the version tag"),
    ("data-v3.4", "shadow the version tag"), ("main", "shadow the Git tag or branch"),
    ("Prod", "cannot be"), ("a/b", "cannot be"), ("head", "cannot be"), ("", "cannot be"),
])
def test_alias_names_that_cannot_be(name: str, words: str) -> None:
    with pytest.raises(InvalidAliasError, match=words):
        check_alias_name(name, taken={"main"})


def test_alias_moves_are_one_commit_each_with_a_log(repo: GitRepo) -> None:
    book = AliasBook(repo)
    at = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    book.move("production", "v0.1", author="A <a@x>", at=at, message="first")
    book.move("production", "v0.2", author="B <b@x>", at=at, message="better")
    alias = book.get("production")
    assert alias is not None and alias.target == "v0.2"
    assert [(m.target, m.author, m.message) for m in alias.moves] == [
        ("v0.1", "A <a@x>", "first"), ("v0.2", "B <b@x>", "better")]
    log = git(repo.root, "log", "--format=%s", "--", ".cpv/aliases/production.json")
    assert log.splitlines() == ["cpv: alias production -> v0.2", "cpv: alias production -> v0.1"]
    book.move("production", None, author="A <a@x>", at=at)
    assert book.all() == [] and book.get("production") is not None  # the log survives
    assert not repo.is_dirty()


def test_a_damaged_alias_file_is_a_format_error(repo: GitRepo) -> None:
    folder = repo.root / ".cpv" / "aliases"
    folder.mkdir(parents=True)
    (folder / "prod.json").write_text('{"name": "prod", "moves": [{"target": "../x"}]}')
    with pytest.raises(FormatError, match=r"prod\.json"):
        AliasBook(repo).get("prod")


def test_an_alias_move_on_a_detached_head_is_refused(repo: GitRepo) -> None:
    git(repo.root, "checkout", "-q", "--detach")
    with pytest.raises(VersioningError, match="detached"):
        AliasBook(repo).move("prod", "v0.1", author="A", at=datetime.now(timezone.utc))
    assert not (repo.root / ".cpv" / "aliases" / "prod.json").exists()


@pytest.mark.parametrize(("exclude", "include", "path", "dropped"), [
    (["*.pt"], [], "model/opt.pt", True),
    (["*.pt"], [], "model/w.bin", False),
    (["model/logs/"], [], "model/logs/a.txt", True),
    ([], ["*.safetensors"], "model/w.bin", True),
    ([], ["*.safetensors"], "model/sub/w.safetensors", False),
    (["*fp16*"], ["*.safetensors"], "model/w-fp16.safetensors", True),  # exclude wins
])
def test_path_filter_means_gitignore_syntax(exclude: list[str], include: list[str], path: str,
                                            dropped: bool) -> None:
    assert PathFilter(exclude, include).drops(path) is dropped


def test_an_include_filter_never_drops_a_folder() -> None:
    assert PathFilter([], ["*.safetensors"]).drops("model/sub", is_dir=True) is False
    assert PathFilter(["model/sub/"], []).drops("model/sub", is_dir=True) is True


def test_the_ignore_fast_path_agrees_with_pathspec(tmp_path: Path) -> None:
    import random

    (tmp_path / ".cpvignore").write_text(
        "*.tmp\nmodel/logs/\n!keep.pyc\ndata/**/cache/\n/top.bin\nfoo/*\n**/deep/x\n"
        "model/opt*.pt\n")
    rules = IgnoreRules(tmp_path)
    spec = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_IGNORES,
                                              *(tmp_path / ".cpvignore").read_text().split()])
    names = ["__pycache__", "x.pyc", "keep.pyc", "logs", "b.tmp", "cache", "q~", ".DS_Store",
             ".ipynb_checkpoints", "top.bin", "foo", "deep", "x", "opt1.pt", "a.swp", "f.txt",
             "model", "data"]
    rng = random.Random(7)
    for _ in range(5000):
        path = "/".join(rng.choice(names) for _ in range(rng.randint(1, 5)))
        assert rules.ignored(path) == bool(spec.match_file(path) or spec.match_file(path + "/"))
