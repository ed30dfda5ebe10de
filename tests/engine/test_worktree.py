"""The pulled folder against its snapshot: status and tidying (issue 12), on SeaweedFS."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from cpv.engine import pull, push
from cpv.engine.worktree import local_changes, remove_replaced
from cpv.store.s3 import S3Store

from .conftest import LIMITS, as_nobody, make_repo


def _tree(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "w.bin").write_bytes(os.urandom(60_000))
    (root / "sub" / "a.txt").write_bytes(b"a")
    os.symlink("w.bin", root / "latest")
    os.symlink("../w.bin", root / "sub" / "up")
    return root


def test_symlinks_are_clean_and_changes_are_seen(s3_store: S3Store, tmp_path: Path) -> None:
    """Symlinks in a tracked folder were reported as changed for ever."""
    repo = make_repo(s3_store, tmp_path / "cache")
    result = push(repo, _tree(tmp_path / "src"), limits=LIMITS)
    out = tmp_path / "out"
    pull(repo, result.snapshot_id, out, limits=LIMITS)
    files = result.snapshot.files
    assert local_changes(out, files, cache=repo.stat_cache) == []
    assert local_changes(tmp_path / "missing", files) == []
    os.unlink(out / "latest")
    os.symlink("sub/a.txt", out / "latest")
    (out / "sub" / "a.txt").write_bytes(b"b")
    (out / "new.txt").write_bytes(b"n")
    (out / "empty-dir").mkdir()
    assert local_changes(out, files) == ["latest", "new.txt", "sub/a.txt"]
    assert local_changes(out, files, exclude=lambda rel: rel == "new.txt") == [
        "latest", "sub/a.txt",
    ]


def test_remove_replaced_keeps_user_files_links_and_empty_folders(
    s3_store: S3Store, tmp_path: Path
) -> None:
    """checkout removed every empty folder and (with --force) the user's symlinks."""
    repo = make_repo(s3_store, tmp_path / "cache")
    v1 = push(repo, _tree(tmp_path / "v1"), limits=LIMITS)
    v2_src = tmp_path / "v2"
    v2_src.mkdir()
    (v2_src / "w.bin").write_bytes(b"smaller model")
    v2 = push(repo, v2_src, limits=LIMITS)
    out = tmp_path / "out"
    pull(repo, v1.snapshot_id, out, limits=LIMITS)
    (out / "logs").mkdir()  # the user's empty folder
    (out / "sub" / "notes.txt").write_bytes(b"mine")
    os.symlink("/etc/hostname", out / "my-link")
    old = {f.path for f in v1.snapshot.files}
    new = {f.path for f in v2.snapshot.files}
    pull(repo, v2.snapshot_id, out, limits=LIMITS, replace=old)
    removed = remove_replaced(out, old, new)
    assert removed == ["latest", "sub/a.txt", "sub/up"]  # sub keeps the user's notes.txt
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        "logs", "my-link", "sub", "sub/notes.txt", "w.bin",
    ]
    (out / "sub" / "notes.txt").unlink()
    pull(repo, v1.snapshot_id, out, limits=LIMITS, replace=new)
    assert remove_replaced(out, new, old) == []
    pull(repo, v2.snapshot_id, out, limits=LIMITS, replace=old)
    assert remove_replaced(out, old, new) == ["latest", "sub", "sub/a.txt", "sub/up"]
    assert (out / "logs").is_dir()


def test_unreadable_file_or_folder_is_an_error_not_clean(s3_store: S3Store) -> None:
    """status gave tracebacks on an unreadable file and called an unreadable model/ clean."""
    if os.geteuid() != 0:
        pytest.skip("needs root to look as another user")
    base = Path(tempfile.mkdtemp(prefix="cpv-status-"))
    try:
        base.chmod(0o755)
        repo = make_repo(s3_store, base / "cache")
        src = _tree(base / "src")
        result = push(repo, src, limits=LIMITS)
        out = base / "out"
        pull(repo, result.snapshot_id, out, limits=LIMITS)
        for p in (out, out / "sub"):
            p.chmod(0o755)
        (out / "sub" / "a.txt").chmod(0o600)
        files = result.snapshot.files
        line = as_nobody(lambda: local_changes(out, files))
        assert line.startswith("cannot read") and "a.txt" in line, line
        (out / "sub" / "a.txt").chmod(0o644)
        assert as_nobody(lambda: local_changes(out, files)) == "[]"
        out.chmod(0o700)
        line = as_nobody(lambda: local_changes(out, files))
        assert line.startswith("cannot read") and str(out) in line, line
    finally:
        shutil.rmtree(base)
