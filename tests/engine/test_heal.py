"""A store that heals, and local state that cannot be poisoned.

Damage is made for real on the S3 server (a pack deleted, a byte flipped in a pack or an index
object), then the engine's ordinary push/pull/verify/repair are run against it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from cpv.engine import Repository, pull, push
from cpv.progress import Phase, Unit
from cpv.store import KiB
from tests.engine.conftest import LIMITS, make_repo, rand_bytes


class _SwapAfterDownload:
    """A progress sink that, when the download phase ends, replaces one pulled file the way
    ``cp -p`` or ``rsync -a`` would: new inode, same size, the source's old mtime."""

    def __init__(self, path: Path, data: bytes) -> None:
        self.path, self.data, self.swapped = path, data, False

    def begin(self, phase: Phase, *, total: int | None, unit: Unit = "B") -> None:
        pass

    def advance(self, phase: Phase, amount: int) -> None:
        pass

    def set_total(self, phase: Phase, total: int) -> None:
        pass

    def end(self, phase: Phase) -> None:
        if phase != "download" or self.swapped or not self.path.exists():
            return
        tmp = self.path.with_name("swap.tmp")
        tmp.write_bytes(self.data)
        old = time.time() - 3600
        os.utime(tmp, (old, old))
        os.replace(tmp, self.path)
        self.swapped = True


def test_file_swapped_during_pull_is_not_cached_with_the_pulled_hash(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    src = tmp_path / "src"
    src.mkdir()
    original = rand_bytes(200 * KiB, 1)
    (src / "weights.bin").write_bytes(original)
    pushed = push(repo, src, limits=LIMITS)
    dest = tmp_path / "dest"
    other = rand_bytes(200 * KiB, 2)  # same size: only inode (and content) differ
    sink = _SwapAfterDownload(dest / "weights.bin", other)
    pull(repo, pushed.snapshot_id, dest, limits=LIMITS, progress=sink)
    assert sink.swapped
    # The next push must see the swapped content, not trust a poisoned stat-cache entry.
    again = push(repo, dest, limits=LIMITS)
    assert again.snapshot_id != pushed.snapshot_id
    back = tmp_path / "back"
    pull(Repository.open(s3_store), again.snapshot_id, back, limits=LIMITS)
    assert (back / "weights.bin").read_bytes() == other
