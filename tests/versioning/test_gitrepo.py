"""The GitPython adapter against real repositories: errors translated, identity, scoped commits."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv.errors import (
    FormatError,
    GitRemoteError,
    NotAWorkspaceError,
    TagNotFoundError,
    VersioningError,
)
from cpv.secrets import redact, url_credential
from cpv.versioning.gitrepo import GitRepo
from tests.versioning.conftest import AUTHOR, AUTHOR_EMAIL, git


def test_init_makes_a_branch_with_one_commit(repo: GitRepo) -> None:
    assert repo.current_branch() == "main"
    assert not repo.is_detached()
    head = repo.head_commit()
    assert head is not None
    assert git(repo.root, "log", "--format=%H %an <%ae> %s").strip() == (
        f"{head} {AUTHOR} <{AUTHOR_EMAIL}> cpv: initialize workspace")


def test_open_refuses_what_is_not_a_workspace(tmp_path: Path, repo: GitRepo) -> None:
    with pytest.raises(NotAWorkspaceError, match="does not exist"):
        GitRepo.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotAWorkspaceError, match="not a Git repository") as info:
        GitRepo.open(tmp_path / "plain")
    assert "cpv init" in info.value.hint
    (repo.root / "sub").mkdir()
    with pytest.raises(NotAWorkspaceError, match="not its root"):
        GitRepo.open(repo.root / "sub")
    git(tmp_path, "init", "-q", "--bare", "bare.git")
    with pytest.raises(NotAWorkspaceError, match="bare"):
        GitRepo.open(tmp_path / "bare.git")
    with pytest.raises(VersioningError, match="already a Git repository"):
        GitRepo.init(repo.root)
    with GitRepo.open(repo.root) as again:
        assert again.head_commit() == repo.head_commit()


def test_identity_falls_back_only_when_git_has_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL"):
        monkeypatch.delenv(var)
    with GitRepo.init(tmp_path / "ws") as repo:
        assert git(repo.root, "log", "-1", "--format=%an <%ae>|%cn <%ce>").strip() == (
            "cpv <cpv@localhost>|cpv <cpv@localhost>")
        assert repo.author() == "cpv <cpv@localhost>"
        # Once git has an identity (here: repository config), cpv uses it.
        git(repo.root, "config", "user.name", "Repo User")
        git(repo.root, "config", "user.email", "repo@example.test")
        assert repo.author() == "Repo User <repo@example.test>"
        (repo.root / "f.txt").write_text("x")
        repo.commit_paths(["f.txt"], "add f")
        assert git(repo.root, "log", "-1", "--format=%an <%ae>").strip() == (
            "Repo User <repo@example.test>")
    # cpv wrote no global configuration.
    assert Path(git(tmp_path, "config", "--global", "--list", check=False).strip() or "") == Path()
    assert not (Path.home() / ".gitconfig").exists()


def test_commit_paths_commits_only_those_paths(repo: GitRepo) -> None:
    root = repo.root
    (root / "user_staged.txt").write_text("staged by the user")
    git(root, "add", "user_staged.txt")
    (root / "user_untracked.txt").write_text("not staged")
    (root / ".cpv").mkdir()
    (root / ".cpv" / "m.json").write_text("{}")
    before = repo.head_commit()
    sha = repo.commit_paths([".cpv/m.json"], "cpv: record")
    assert sha is not None
    assert sha != before
    assert git(root, "show", "--name-only", "--format=", sha).split() == [".cpv/m.json"]
    status = git(root, "status", "--porcelain").splitlines()
    assert "A  user_staged.txt" in status
    assert "?? user_untracked.txt" in status
    # Nothing to commit -> None, no empty commit.
    assert repo.commit_paths([".cpv/m.json"], "again") is None
    assert repo.head_commit() == sha
    # Deleting is committed too.
    (root / ".cpv" / "m.json").unlink()
    sha2 = repo.commit_paths([".cpv/m.json"], "cpv: drop")
    assert git(root, "show", "--name-status", "--format=", str(sha2)).split() == ["D",
                                                                                  ".cpv/m.json"]


def test_dirty_ignores_gitignored_bytes(repo: GitRepo) -> None:
    root = repo.root
    (root / ".gitignore").write_text("/model/\n")
    repo.commit_paths([".gitignore"], "ignore model")
    (root / "model").mkdir()
    (root / "model" / "weights.bin").write_bytes(b"\0" * 100)
    assert not repo.is_dirty()
    assert repo.is_ignored("model/weights.bin")
    (root / "notes.txt").write_text("x")
    assert repo.is_dirty()
    assert not repo.is_dirty(["model"])
    assert [c.path for c in repo.changed_paths()] == ["notes.txt"]
    assert not repo.is_dirty(["notes.txt"], untracked=False)


def test_detached_head_is_detected(repo: GitRepo) -> None:
    git(repo.root, "checkout", "-q", "--detach")
    assert repo.is_detached()
    assert repo.current_branch() is None


def test_show_and_resolve(repo: GitRepo) -> None:
    (repo.root / "a.txt").write_text("one")
    first = repo.commit_paths(["a.txt"], "one")
    (repo.root / "a.txt").write_text("two")
    repo.commit_paths(["a.txt"], "two")
    assert repo.show("HEAD", "a.txt") == "two"
    assert repo.show(str(first), "a.txt") == "one"
    assert repo.show("HEAD~1", "a.txt") == "one"
    assert repo.show("HEAD", "missing.txt") is None
    assert repo.list_dir("HEAD", "") == [] or "a.txt" in repo.list_dir("HEAD", ".")
    for bad in ("v9.9", "--output=/tmp/x", "nosuchbranch", ""):
        with pytest.raises(TagNotFoundError):
            repo.show(bad, "a.txt")
    (repo.root / "bin.dat").write_bytes(b"\xff\xfe")
    repo.commit_paths(["bin.dat"], "binary")
    with pytest.raises(FormatError, match="UTF-8"):
        repo.show("HEAD", "bin.dat")


def test_tags_create_list_delete_restore(repo: GitRepo) -> None:
    head = repo.head_commit()
    object_id = repo.create_tag("v0.1", message="first\n\ncpv-metrics: {}\n")
    git(repo.root, "tag", "lightweight")
    tags = {t.name: t for t in repo.list_tags()}
    assert set(tags) == {"v0.1", "lightweight"}
    assert tags["v0.1"].annotated
    assert tags["v0.1"].object_id == object_id
    assert tags["v0.1"].commit == head == tags["lightweight"].commit
    assert tags["v0.1"].tagger == f"{AUTHOR} <{AUTHOR_EMAIL}>"
    assert tags["v0.1"].message == "first\n\ncpv-metrics: {}"
    assert tags["v0.1"].date.tzinfo is not None
    with pytest.raises(VersioningError, match="already exists"):
        repo.create_tag("v0.1", message="again")
    moved = repo.create_tag("v0.1", message="moved", force=True)
    assert moved != object_id
    repo.restore_tag("v0.1", object_id)
    assert repo.tag_targets()["v0.1"] == object_id
    repo.delete_tag("v0.1")
    assert "v0.1" not in repo.tag_targets()
    with pytest.raises(VersioningError, match="invalid tag"):
        repo.create_tag("bad..name", message="x")


def test_remote_urls_with_passwords_are_refused(repo: GitRepo) -> None:
    assert url_credential("https://user:s3cret@example.com/r.git") == "a password"
    assert url_credential("git@bitbucket.org:team/model.git") is None
    assert url_credential("https://user@example.com/r.git") is None
    assert redact("fatal: https://u:s3cret@h/x") == "fatal: https://u:***@h/x"
    with pytest.raises(VersioningError, match="carries a password") as info:
        repo.set_remote("origin", "https://user:s3cret@example.com/r.git")
    assert "s3cret" not in str(info.value)
    assert repo.remote_url("origin") is None
    repo.set_remote("origin", "git@bitbucket.org:team/model.git")
    repo.set_remote("origin", "git@bitbucket.org:team/other.git")
    assert repo.remote_url("origin") == "git@bitbucket.org:team/other.git"
    with pytest.raises(VersioningError, match="remote name"):
        repo.set_remote("--upload-pack=evil", "x")


def test_unreachable_remote_is_a_git_remote_error(tmp_path: Path, repo: GitRepo) -> None:
    repo.set_remote("origin", (tmp_path / "nowhere.git").as_uri())
    with pytest.raises(GitRemoteError) as info:
        repo.push("origin", branch="main")
    assert "\n" not in str(info.value)
    assert info.value.hint
    with pytest.raises(GitRemoteError, match="cannot clone"):
        GitRepo.clone((tmp_path / "nowhere.git").as_uri(), tmp_path / "clone")
    with pytest.raises(VersioningError, match="not empty"):
        GitRepo.clone((tmp_path / "nowhere.git").as_uri(), repo.root)


def test_missing_git_executable(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "")
    with pytest.raises(VersioningError, match="git executable was not found") as info:
        repo.head_commit()
    assert "install git" in info.value.hint
