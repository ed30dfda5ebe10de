"""The portable I/O paths of cpv.engine.osio, forced on Linux: a push and a pull whose every
positional read and write, mode change and sync goes through the fallback, byte for byte.

The fast calls are replaced by ones that fail, so the test proves the fallbacks ran."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from cpv import osio
from cpv.engine import pull, push
from cpv.store.local import LocalStore
from tests.engine.conftest import LIMITS, make_repo, make_tree


def _digests(root: Path) -> dict[str, tuple[str, int]]:
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                              p.stat().st_mode & 0o777)
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def portable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osio, "PORTABLE", True)

    def unavailable(*_args: object) -> None:
        raise AssertionError("a Unix-only call was used while the portable path is forced")

    for name in ("pread", "preadv", "pwrite", "fchmod", "fdatasync"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, unavailable)


@pytest.mark.usefixtures("portable")
def test_push_and_pull_through_the_portable_calls(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", big=3 * 1024 * 1024, small=30)
    (src / "tool.sh").write_bytes(b"#!/bin/sh\n")
    (src / "tool.sh").chmod(0o755)
    repo = make_repo(LocalStore(tmp_path / "store"), tmp_path / "cache")
    result = push(repo, src, limits=LIMITS)
    dest = tmp_path / "dest"
    pull(repo, result.snapshot_id, dest, limits=LIMITS, fsync=True)
    assert _digests(dest) == _digests(src)
    # A second version over the first: chunks reused from the local files (positional reads).
    with open(src / "model.bin", "r+b") as fh:
        fh.seek(1024 * 1024)
        fh.write(os.urandom(100_000))
    second = push(repo, src, limits=LIMITS)
    done = pull(repo, second.snapshot_id, dest, limits=LIMITS)
    assert done.local_bytes > 0 and _digests(dest) == _digests(src)
