"""Fixtures for the versioning tests: real git repositories in tmp_path, never the user's config.

Every test runs as on a fresh CI machine: HOME points at an empty folder, git reads no global or
system config, and the identity comes from GIT_AUTHOR_*/GIT_COMMITTER_* set per test (tests of
the identity fallback delete them).
"""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpv.versioning.gitrepo import GitRepo
from cpv.versioning.history import History
from cpv.versioning.manifest import Manifest, manifest_for_files
from cpv.versioning.tags import Kind

AUTHOR = "Test Author"
AUTHOR_EMAIL = "author@example.test"


@pytest.fixture(autouse=True)
def isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """Isolate git from the machine: no global/system config, a known identity."""
    home = tmp_path_factory.mktemp("home")
    empty = home / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var in ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
                "GIT_SSH_COMMAND", "GIT_LITERAL_PATHSPECS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("GIT_AUTHOR_NAME", AUTHOR)
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", AUTHOR_EMAIL)
    monkeypatch.setenv("GIT_COMMITTER_NAME", AUTHOR)
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", AUTHOR_EMAIL)


def git(cwd: Path, *args: str, check: bool = True) -> str:
    """Run git directly (not through the adapter) to set up or inspect a repository."""
    result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {result.stderr}")
    return result.stdout


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[GitRepo]:
    """A fresh workspace repository with its initial commit on 'main'."""
    with GitRepo.init(tmp_path / "ws") as gitrepo:
        yield gitrepo


@pytest.fixture
def history(repo: GitRepo) -> History:
    return History(repo)


@pytest.fixture
def bare_remote(tmp_path: Path) -> tuple[Path, str]:
    """A real bare repository and its file:// URL."""
    path = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(path))
    # Like a hosted remote after the first push: HEAD names the branch cpv pushes.
    git(path, "symbolic-ref", "HEAD", "refs/heads/main")
    return path, path.as_uri()


def digest(text: str) -> str:
    """A deterministic 64-hex stand-in for a blake3/snapshot id."""
    return hashlib.sha256(text.encode()).hexdigest()


def make_manifest(
    kind: Kind = "model",
    path: str = "model",
    *,
    version: int = 1,
    files: dict[str, int] | None = None,
    metrics: dict[str, float] | None = None,
    message: str = "",
) -> Manifest:
    """A valid manifest whose snapshot/file hashes depend on ``version``."""
    files = files if files is not None else {"weights.bin": 1000 * version, "config.json": 10}
    return manifest_for_files(
        kind=kind, path=path, snapshot_id=digest(f"snap-{path}-{version}"),
        store_url="s3://bucket/team/model",
        files=[(name, size, digest(f"{name}-{version}")) for name, size in files.items()],
        metrics=metrics or {}, message=message, author=f"{AUTHOR} <{AUTHOR_EMAIL}>",
    )
