"""Odd trees (issue 12): each round-trips, or is refused with one line before anything is uploaded.

All on the real S3 path (SeaweedFS over HTTP). "Before anything is uploaded" is checked on the
store itself: no pack, no snapshot.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from cpv.engine import Repository, pull, push
from cpv.engine.push import scan_tree
from cpv.errors import LocalIOError, UnsafePathError, UnsupportedPathError
from cpv.store.memory import MemoryStore
from cpv.store.s3 import S3Store

from .conftest import LIMITS, SMALL_CHUNKER, SMALL_PACK, as_nobody, make_repo, tree_digest

HOSTILE_HINT = "malformed or hostile"


def _nothing_uploaded(store: S3Store) -> bool:
    return not list(store.list("packs/")) and not list(store.list("snapshots/"))


def _tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def test_nested_git_repository_is_refused_early_and_plainly(
    s3_store: S3Store, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "model", {
        "weights.bin": os.urandom(100_000),
        "tokenizer/vocab.json": b"{}",
        "tokenizer/.git/HEAD": b"ref: refs/heads/main\n",
    })
    repo = make_repo(s3_store, tmp_path / "cache")
    with pytest.raises(UnsafePathError, match=r"'tokenizer/\.git'.*nested Git repository") as info:
        push(repo, src, limits=LIMITS)
    assert "exclude rule" in info.value.hint and HOSTILE_HINT not in info.value.hint
    assert isinstance(info.value, UnsupportedPathError)
    assert str(info.value).startswith("cannot push 'tokenizer/.git': is a nested Git repository")
    assert _nothing_uploaded(s3_store)
    # The way out the hint offers: an exclude rule.
    result = push(repo, src, limits=LIMITS, exclude=lambda rel: rel == "tokenizer/.git")
    assert [f.path for f in result.snapshot.files] == ["tokenizer/vocab.json", "weights.bin"]


def test_non_utf8_name_is_refused_before_upload_naming_it(
    s3_store: S3Store, tmp_path: Path
) -> None:
    src = tmp_path / "model"
    src.mkdir()
    (src / "ok.bin").write_bytes(os.urandom(50_000))
    with open(os.path.join(os.fsencode(src), b"caf\xe9.bin"), "wb") as fh:
        fh.write(b"latin-1 name")
    repo = make_repo(s3_store, tmp_path / "cache")
    with pytest.raises(UnsafePathError, match=r"'caf\\udce9\.bin'.*not valid UTF-8") as info:
        push(repo, src, limits=LIMITS)
    assert "rename it" in info.value.hint and HOSTILE_HINT not in info.value.hint
    assert "\n" not in info.value.one_line()
    assert _nothing_uploaded(s3_store)


def test_backslash_name_is_the_users_file_not_a_hostile_manifest(
    s3_store: S3Store, tmp_path: Path
) -> None:
    src = _tree(tmp_path / "model", {"a\\b.txt": b"windows habit"})
    repo = make_repo(s3_store, tmp_path / "cache")
    with pytest.raises(UnsafePathError, match="backslash") as info:
        push(repo, src, limits=LIMITS)
    assert HOSTILE_HINT not in info.value.hint
    assert _nothing_uploaded(s3_store)


def test_absolute_symlink_can_be_refused_skipped_or_followed(
    s3_store: S3Store, tmp_path: Path
) -> None:
    """A venv's bin/python3 -> /usr/... no longer fails the whole push with a 'hostile' hint."""
    outside = tmp_path / "usr" / "python3.11"
    outside.parent.mkdir()
    outside.write_bytes(b"\x7fELF interpreter")
    src = _tree(tmp_path / "venv", {"pyvenv.cfg": b"home = /usr/bin\n"})
    (src / "bin").mkdir()
    os.symlink(outside, src / "bin" / "python3")
    os.symlink("python3", src / "bin" / "python")  # inside the tree: always kept as a link
    repo = make_repo(s3_store, tmp_path / "cache")
    with pytest.raises(UnsafePathError, match="points outside the pushed tree") as info:
        push(repo, src, limits=LIMITS)
    assert "symlinks='skip'" in info.value.hint and "symlinks='follow'" in info.value.hint
    assert _nothing_uploaded(s3_store)

    skipped = push(repo, src, limits=LIMITS, symlinks="skip")
    assert skipped.skipped_links == ("bin/python3",)
    assert {f.path: f.link for f in skipped.snapshot.files} == {
        "bin/python": "python3", "pyvenv.cfg": None,
    }

    followed = push(repo, src, limits=LIMITS, symlinks="follow")
    assert followed.skipped_links == ()
    out = tmp_path / "out"
    pull(repo, followed.snapshot_id, out, limits=LIMITS)
    assert not (out / "bin" / "python3").is_symlink()
    assert (out / "bin" / "python3").read_bytes() == b"\x7fELF interpreter"
    assert os.readlink(out / "bin" / "python") == "python3"


def test_symlinked_root_and_followed_folder(s3_store: S3Store, tmp_path: Path) -> None:
    """``model -> /mnt/ckpt`` is a common layout: the named root is followed."""
    real = _tree(tmp_path / "mnt" / "ckpt", {"w.bin": os.urandom(70_000), "cfg/a.json": b"{}"})
    model = tmp_path / "model"
    os.symlink(real, model)
    repo = make_repo(s3_store, tmp_path / "cache")
    result = push(repo, model, limits=LIMITS)
    assert sorted(f.path for f in result.snapshot.files) == ["cfg/a.json", "w.bin"]
    out = tmp_path / "out"
    pull(repo, result.snapshot_id, out, limits=LIMITS)
    assert tree_digest(out) == tree_digest(real)
    # A folder reached through a link that leaves the tree is pushed with symlinks="follow";
    # a link that leads back to a folder already pushed is a loop, refused.
    shared = _tree(tmp_path / "shared", {"vocab.txt": b"a b c"})
    os.symlink(shared, real / "tok")
    followed = push(repo, model, limits=LIMITS, symlinks="follow")
    assert "tok/vocab.txt" in {f.path for f in followed.snapshot.files}
    os.symlink(real, shared / "back")
    with pytest.raises(UnsafePathError, match="loop"):
        push(repo, model, limits=LIMITS, symlinks="follow")


def test_unreadable_file_and_folder_are_refused_before_upload() -> None:
    """As an unprivileged user (root reads everything): one line, no traceback."""
    if os.geteuid() != 0:
        pytest.skip("needs root to scan as another user")
    # pytest's own tmp_path sits in a root-only folder that nobody could not even enter.
    base = Path(tempfile.mkdtemp(prefix="cpv-unreadable-"))
    try:
        base.chmod(0o755)
        src = _tree(base / "model", {"ok.bin": b"x" * 10, "secret.bin": b"y" * 10})
        src.chmod(0o755)
        (src / "ok.bin").chmod(0o644)
        (src / "secret.bin").chmod(0o600)
        first = as_nobody(lambda: scan_tree(src))
        assert first.startswith("cannot read") and "secret.bin" in first, first
        assert "permission denied" in first and "exclude rule" in first
        (src / "secret.bin").chmod(0o644)
        (src / "locked").mkdir(mode=0o700)
        second = as_nobody(lambda: scan_tree(src))
        assert second.startswith("cannot list") and "locked" in second, second
        (src / "locked").chmod(0o755)
        assert as_nobody(lambda: [s.relpath for s in scan_tree(src)]) == "['ok.bin', 'secret.bin']"
    finally:
        shutil.rmtree(base)


def test_scan_tree_rejects_an_unknown_symlink_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="symlinks"):
        scan_tree(tmp_path, symlinks="copy")  # type: ignore[arg-type]


def test_missing_root_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(LocalIOError, match="does not exist"):
        scan_tree(tmp_path / "nope")


def test_file_becomes_folder_and_back(s3_store: S3Store, tmp_path: Path) -> None:
    """Pull replaces the old version's file by a folder and back; never the user's files."""
    repo = make_repo(s3_store, tmp_path / "cache")
    v1 = push(repo, _tree(tmp_path / "v1", {"a": b"a file", "keep.txt": b"k"}), limits=LIMITS)
    v2 = push(repo, _tree(tmp_path / "v2", {"a/b": b"now a folder", "keep.txt": b"k"}),
              limits=LIMITS)
    v1_paths = {f.path for f in v1.snapshot.files}
    v2_paths = {f.path for f in v2.snapshot.files}
    out = tmp_path / "out"
    pull(repo, v1.snapshot_id, out, limits=LIMITS)
    before = tree_digest(out)
    # Without being told what the old version was, the file in the way is the user's.
    with pytest.raises(LocalIOError, match="a is a file that is not part of the version"):
        pull(repo, v2.snapshot_id, out, limits=LIMITS)
    assert tree_digest(out) == before
    pull(repo, v2.snapshot_id, out, limits=LIMITS, replace=v1_paths)
    assert tree_digest(out) == tree_digest(tmp_path / "v2")
    pull(repo, v1.snapshot_id, out, limits=LIMITS, replace=v2_paths)
    assert tree_digest(out) == tree_digest(tmp_path / "v1")
    # A user's file inside the folder that must become a file stops the pull, untouched.
    pull(repo, v2.snapshot_id, out, limits=LIMITS, replace=v1_paths)
    (out / "a" / "mine.txt").write_bytes(b"my notes")
    with pytest.raises(LocalIOError, match=r"a folder holding a/mine\.txt"):
        pull(repo, v1.snapshot_id, out, limits=LIMITS, replace=v2_paths)
    assert (out / "a" / "mine.txt").read_bytes() == b"my notes"
    assert (out / "a" / "b").read_bytes() == b"now a folder"


def test_pull_as_an_ordinary_user_restores_read_only_and_narrow_modes_exactly() -> None:
    """Files are created with their mode (no fchmod per file), yet a 0o444 file of several
    ranges must still be reopened for each range, and a umask must not narrow any mode."""
    if os.geteuid() != 0:
        pytest.skip("needs root to pull as another user")
    base = Path(tempfile.mkdtemp(prefix="cpv-modes-"))
    try:
        base.chmod(0o777)
        src = _tree(base / "model", {"big.bin": os.urandom(1024 * 1024), "small.txt": b"s" * 100,
                                     "run.sh": b"#!/bin/sh\n"})
        modes = {"big.bin": 0o444, "small.txt": 0o664, "run.sh": 0o755}
        for name, mode in modes.items():
            (src / name).chmod(mode)
        repo = Repository.init(MemoryStore(), chunker=SMALL_CHUNKER, pack_size=SMALL_PACK)
        sid = push(repo, src, limits=LIMITS).snapshot_id
        dest = base / "out"

        def pull_as_user() -> dict[str, int]:
            os.umask(0o077)  # only in the forked child
            result = pull(repo, sid, dest, limits=LIMITS)
            assert result.files_written == 3
            return {n: stat.S_IMODE(os.stat(dest / n).st_mode) for n in sorted(modes)}

        assert as_nobody(pull_as_user) == repr(dict(sorted(modes.items())))
        for name in modes:
            assert (dest / name).read_bytes() == (src / name).read_bytes()
    finally:
        shutil.rmtree(base)
