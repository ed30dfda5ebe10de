"""Several real processes pushing overlapping data into one S3 store at once (invariant 5),
with a gc consolidating the index underneath them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.store import KiB, MiB
from tests.engine.conftest import LIMITS, make_repo, rand_bytes, tree_digest

from .conftest import Driver, assert_store_consistent, finish

pytestmark = pytest.mark.integration


def test_overlapping_pushes_from_four_processes_all_succeed(
    s3_store: Any, run_driver: Driver, tmp_path: Path
) -> None:
    shared_big = rand_bytes(6 * MiB, 100)
    shared_small = {f"data/s{i:03d}.txt": rand_bytes(700 + 31 * i, 200 + i) for i in range(40)}
    trees = []
    for n in range(4):
        root = tmp_path / f"tree{n}"
        for rel, data in shared_small.items():
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(data)
        (root / "base.bin").write_bytes(shared_big)
        (root / f"own{n}.bin").write_bytes(rand_bytes(2 * MiB + n * 100 * KiB, 300 + n))
        trees.append(root)
    make_repo(s3_store, tmp_path / "init")
    url = str(s3_store.url)
    pushes = [run_driver("push", url, str(t), str(tmp_path / f"cache{n}")) for n, t in enumerate(trees)]
    # A gc in a fifth process rewrites the index while they run (grace 1 h: it may consolidate
    # index objects, it may not condemn anything this young).
    gcs = [run_driver("gc", url, "", "3600") for _ in range(2)]
    results = [finish(p) for p in pushes]
    # Two gcs at once: the lock lets one in; the other, if they overlapped, is refused clearly.
    outcomes = []
    for p in gcs:
        _out, err = p.communicate(timeout=120)
        outcomes.append(p.returncode)
        if p.returncode != 0:
            assert b"StoreLockedError: store is locked by gc" in err, err.decode()[-1500:]
    assert 0 in outcomes
    assert len({r["snapshot_id"] for r in results}) == 4
    assert_store_consistent(s3_store)
    assert verify(Repository.open(s3_store), deep=True).ok
    for n, (tree, res) in enumerate(zip(trees, results, strict=True)):
        out = tmp_path / f"out{n}"
        pull(Repository.open(s3_store), res["snapshot_id"], out, limits=LIMITS)
        assert tree_digest(out) == tree_digest(tree)
    # Content addressing. Four writers that start at the same instant cannot see each other's
    # in-flight chunks, so the worst case is one copy of the shared bytes per writer (plus pack
    # framing) -- never more: nothing is stored twice by one writer.
    packs = list(s3_store.list("packs/"))
    stored = sum(o.size for o in packs)
    shared = 6 * MiB + sum(map(len, shared_small.values()))
    own = 4 * 2 * MiB + 600 * KiB
    assert stored <= own + 4 * shared + len(packs) * 64 * KiB
    # Once they are done, the shared bytes are in the store: a fifth writer uploads only its own.
    fifth = tmp_path / "tree4"
    for rel, data in shared_small.items():
        (fifth / rel).parent.mkdir(parents=True, exist_ok=True)
        (fifth / rel).write_bytes(data)
    (fifth / "base.bin").write_bytes(shared_big)
    (fifth / "own4.bin").write_bytes(rand_bytes(1 * MiB, 777))
    res5 = push(Repository.open(s3_store, cache_dir=tmp_path / "cache4"), fifth, limits=LIMITS)
    assert res5.new_bytes == 1 * MiB
