"""Push, fetch and clone against a real bare remote (file:// URL), including refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from cpv.errors import GitRemoteError
from cpv.versioning.gitrepo import GitRepo
from cpv.versioning.history import History
from tests.versioning.conftest import git, make_manifest


def _record_both(history: History, version: int, **metrics: float) -> None:
    history.record_version(make_manifest("model", "model", version=version, metrics=metrics))
    history.record_version(make_manifest("data", "data", version=version, files={"a": version}))


def _remote_tags(bare: Path) -> dict[str, str]:
    out = git(bare, "for-each-ref", "refs/tags", "--format=%(refname:strip=2) %(objectname)")
    return dict(line.split(" ") for line in out.splitlines())


def _state(repo: GitRepo) -> tuple[str | None, dict[str, str], str]:
    return repo.head_commit(), repo.tag_targets(), git(repo.root, "status", "--porcelain")


def _install_hook(bare: Path, script: str) -> None:
    hook = bare / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\n" + script)
    hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


@pytest.fixture
def published(history: History, bare_remote: tuple[Path, str]) -> History:
    """A workspace with one combined version, pushed to the bare remote as 'origin'."""
    _record_both(history, 1, loss=0.5)
    history.repo.set_remote("origin", bare_remote[1])
    history.create_combined_tag(message="first", remote="origin")
    return history


def test_a_second_clone_reads_what_the_first_pushed(
    published: History, bare_remote: tuple[Path, str], tmp_path: Path
) -> None:
    bare, url = bare_remote
    assert set(_remote_tags(bare)) == {"v0.1", "data-v0.1"}
    with GitRepo.clone(url, tmp_path / "second") as clone:
        second = History(clone)
        assert [v.tag for v in second.list_versions("model")] == ["v0.1"]
        assert second.read_manifest("v0.1", "model", "model") == published.read_manifest(
            "v0.1", "model", "model")
        # The first workspace moves on; the second fetches and sees it.
        _record_both(published, 2, loss=0.25)
        published.create_combined_tag(message="second")
        published.push("origin")
        second.fetch("origin")
        versions = second.list_versions("model")
        assert [(v.tag, dict(v.metrics)) for v in versions] == [
            ("v0.1", {"loss": 0.5}), ("v0.2", {"loss": 0.25})]
        assert second.next_tag("model") == "v0.3"
        assert second.read_manifest("data-v0.2", "data", "data").total_size == 2


def test_remote_rejecting_the_push_undoes_the_combined_tag(
    published: History, bare_remote: tuple[Path, str]
) -> None:
    bare, _ = bare_remote
    _install_hook(bare, 'echo "policy: tags are frozen this week" >&2\nexit 1\n')
    _record_both(published, 2)
    before = _state(published.repo)
    remote_before = _remote_tags(bare)
    with pytest.raises(GitRemoteError) as info:
        published.create_combined_tag(message="blocked", metrics={"acc": 0.9}, remote="origin")
    message = str(info.value)
    assert "\n" not in message
    assert "policy: tags are frozen this week" in message
    assert "hook declined" in message
    assert "hooks refused" in info.value.hint
    # Local state intact: no v0.2/data-v0.2, no metrics commit, clean tree; remote unchanged.
    assert _state(published.repo) == before
    assert _remote_tags(bare) == remote_before


def test_non_fast_forward_push_is_refused_with_a_fetch_hint(
    published: History, bare_remote: tuple[Path, str], tmp_path: Path
) -> None:
    with GitRepo.clone(bare_remote[1], tmp_path / "other") as other_repo:
        other = History(other_repo)
        _record_both(other, 5)
        other.push("origin")
    _record_both(published, 2)
    with pytest.raises(GitRemoteError) as info:
        published.push("origin")
    assert "fetch" in info.value.hint
    assert "\n" not in str(info.value)


def test_fetch_does_not_clobber_a_local_tag_unless_forced(
    published: History, bare_remote: tuple[Path, str], tmp_path: Path
) -> None:
    with GitRepo.clone(bare_remote[1], tmp_path / "other") as other_repo:
        other = History(other_repo)
        _record_both(other, 7)
        other.create_combined_tag("v0.1", overwrite=True)
        other.push("origin", force_tags=["v0.1", "data-v0.1"])
        moved = other_repo.tag_targets()["v0.1"]
    local = published.repo.tag_targets()["v0.1"]
    with pytest.raises(GitRemoteError, match="clobber"):
        published.fetch("origin")
    assert published.repo.tag_targets()["v0.1"] == local
    published.fetch("origin", force_tags=True)
    assert published.repo.tag_targets()["v0.1"] == moved


def test_overwrite_with_remote_moves_the_remote_tag(
    published: History, bare_remote: tuple[Path, str]
) -> None:
    _record_both(published, 2)
    record = published.create_tag("model", "v0.1", overwrite=True, remote="origin")
    assert record.pushed_to == "origin"
    assert _remote_tags(bare_remote[0])["v0.1"] == published.repo.tag_targets()["v0.1"]


def test_remote_without_atomic_support(
    history: History, bare_remote: tuple[Path, str], tmp_path: Path
) -> None:
    """Servers that cannot push atomically still never keep half of a combined tag."""
    bare, url = bare_remote
    git(bare, "config", "receive.advertiseAtomic", "false")
    _record_both(history, 1)
    history.repo.set_remote("origin", url)
    history.create_combined_tag(remote="origin")  # falls back to a plain push
    assert set(_remote_tags(bare)) == {"v0.1", "data-v0.1"}
    # Someone else publishes data-v0.2 first; our v0.2 + data-v0.2 push is partly refused.
    with GitRepo.clone(url, tmp_path / "other") as other_repo:
        other = History(other_repo)
        _record_both(other, 9)
        other.create_tag("data", "data-v0.2")
        other.push("origin")
    git(history.repo.root, "pull", "-q", "--ff-only", "--no-tags", "origin", "main")
    _record_both(history, 3)
    before = _state(history.repo)
    with pytest.raises(GitRemoteError, match="already exists"):
        history.create_combined_tag("v0.2", remote="origin")
    assert "v0.2" not in _remote_tags(bare)  # the half that got through was taken back
    assert _state(history.repo) == before
