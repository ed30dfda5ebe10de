"""Fixtures for lazy reads: a pushed tree in the real S3 test server, opened through the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest

from cpv.engine import Repository, push
from cpv.store import MiB
from cpv.store.s3 import S3Store
from tests.engine.conftest import LIMITS, SMALL_CHUNKER, make_repo, make_tree, rand_bytes


@dataclass
class Pushed:
    """A tree pushed to S3: where it came from, the store, and the snapshot id."""

    src: Path
    store: S3Store
    snapshot_id: str
    cache: Path

    def repo(self, cache: Path | Literal["pushed"] | None = "pushed") -> Repository:
        """A fresh Repository on the same store (its own index and counters).

        ``cache``: the pusher's cache dir by default, another folder, or None for no cache.
        """
        return Repository.open(self.store, cache_dir=self.cache if cache == "pushed" else cache)


@pytest.fixture
def pushed(s3_store: S3Store, tmp_path: Path) -> Pushed:
    """``make_tree`` plus an 8 MiB file of many small chunks, pushed with the small chunker."""
    src = make_tree(tmp_path / "src")
    (src / "big.bin").write_bytes(rand_bytes(8 * MiB, 99))
    cache = tmp_path / "cache"
    repo = make_repo(s3_store, cache)
    assert repo.config.chunker == SMALL_CHUNKER
    result = push(repo, src, limits=LIMITS)
    repo.close()
    return Pushed(src, s3_store, result.snapshot_id, cache)
