"""How forget and gc scale with the number of versions: a store of 1,000 roots on real S3.

Prints the request counts and times quoted in docs/gc.md; the asserts bound them so a
regression to "one request per version per run" for a warm forget fails.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, push
from cpv.engine.gc import collect_garbage
from cpv.engine.roots import ForgetPolicy, RootInfo, TagTarget, forget, record_push, record_tags
from cpv.engine.snapshot import Snapshot
from cpv.store import KiB
from tests.engine.conftest import LIMITS, make_repo, rand_bytes

pytestmark = [pytest.mark.slow]

VERSIONS = 1000


def test_forget_and_gc_on_a_store_of_1000_versions(s3_store: Any, tmp_path: Path) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(rand_bytes(64 * KiB, 1))
    base = push(repo, src, limits=LIMITS).snapshot
    info = RootInfo(kind="model", name="model", workspace="ws")
    sids = []
    for i in range(VERSIONS):  # 1,000 distinct snapshots sharing one file, each a root
        sid, _ = repo.save_snapshot(Snapshot(files=base.files, meta={"i": str(i)}))
        record_push(repo, sid, info)
        sids.append(sid)
    record_tags(repo, [TagTarget(f"v0.{n}", sids[n * 100], "model", "model")
                       for n in range(10)])
    policy = ForgetPolicy(keep_last=100)

    cold = Repository.open(s3_store, cache_dir=tmp_path / "cold-cache")
    t0 = time.monotonic()
    first = forget(cold, policy, dry_run=True)
    cold_s = time.monotonic() - t0
    t0 = time.monotonic()
    warm = forget(cold, policy, dry_run=True)
    warm_s = time.monotonic() - t0
    assert len(warm.forgotten) == VERSIONS - 100 - 10 and len(warm.kept) == 110
    assert warm.requests <= 3  # one LIST of roots (and the marker): records come from cache

    done = forget(repo, policy)
    gc_started = time.monotonic()
    report = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    gc_s = time.monotonic() - gc_started
    assert len(report.snapshots_deleted) == VERSIONS - 110 + 1  # + the rootless base push
    print(f"\n{VERSIONS} versions: forget --dry-run cold {first.requests} requests "
          f"{cold_s:.2f} s, warm {warm.requests} requests {warm_s:.3f} s; forget "
          f"{done.requests} requests {done.seconds:.2f} s; gc {report.requests} requests "
          f"{gc_s:.2f} s ({len(report.snapshots_deleted)} snapshots deleted)")
