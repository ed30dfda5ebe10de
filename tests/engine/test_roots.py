"""Roots: the store alone knows its versions; forget retires, gc keeps what live roots name.

Git plays no part here on purpose: whatever a clone's history looks like (shallow, stale,
forked, merged or gone), gc is given nothing but the store, and every tagged version survives.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull, push
from cpv.engine.gc import collect_garbage
from cpv.engine.roots import (
    ROOTS_MARKER_KEY,
    ROOTS_PREFIX,
    ForgetPolicy,
    RootInfo,
    TagTarget,
    adopt_snapshots,
    forget,
    list_roots,
    record_tags,
    record_untag,
)
from cpv.engine.snapshot import SNAPSHOT_PREFIX
from cpv.errors import ForgetPolicyError, FormatError, MigrationNeededError
from cpv.store import KiB
from tests.engine.conftest import LIMITS, make_repo, rand_bytes, tree_digest


def _tree(root: Path, seed: int) -> Path:
    root.mkdir(parents=True)
    (root / "weights.bin").write_bytes(rand_bytes(300 * KiB, seed))
    (root / "config.json").write_bytes(b'{"seed": %d}' % seed)
    return root


def _snapshots(store: Any) -> set[str]:
    return {o.key[len(SNAPSHOT_PREFIX) :] for o in store.list(SNAPSHOT_PREFIX)}


def _push_versions(repo: Repository, tmp_path: Path, n: int, *, workspace: str = "ws"
                   ) -> list[tuple[str, Path]]:
    out = []
    for i in range(n):
        tree = _tree(tmp_path / f"{workspace}-v{i}", seed=100 * len(workspace) + i)
        info = RootInfo(kind="model", name="model", message=f"v{i}", workspace=workspace,
                        metrics={"acc": 0.5 + i / 100})
        res = push(repo, tree, limits=LIMITS, record_root=info)
        assert res.root_id is not None
        out.append((res.snapshot_id, tree))
    return out


def test_gc_from_roots_alone_keeps_every_tagged_version(s3_store: Any, tmp_path: Path) -> None:
    """A clone that sees no history (shallow, stale, or no Git at all) can no longer cause a
    deletion: gc gets no live set from Git, and what the store's roots name survives."""
    repo = make_repo(s3_store, tmp_path / "cache")
    versions = _push_versions(repo, tmp_path, 4)
    record_tags(repo, [TagTarget("v0.1", versions[0][0], "model", "model")])
    record_tags(repo, [TagTarget("v0.2", versions[1][0], "model", "model")])
    report = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert report.snapshots_deleted == []
    assert {s for s, _ in versions} <= _snapshots(s3_store)
    # Another machine (fresh cache, no Git) restores each version byte for byte.
    other = Repository.open(s3_store, cache_dir=tmp_path / "other-cache")
    for n, (sid, tree) in enumerate(versions):
        pull(other, sid, tmp_path / f"restore{n}", limits=LIMITS)
        assert tree_digest(tmp_path / f"restore{n}") == tree_digest(tree)


def test_an_empty_root_record_is_ignored_and_a_damaged_one_stops_gc(
        s3_store: Any, tmp_path: Path) -> None:
    """A push killed while uploading its root record can leave the record empty (SeaweedFS
    keeps the empty object of such a PUT): gc ignores it instead of refusing for ever. A record
    with bytes that do not match its id is still damage, and gc still refuses."""
    repo = make_repo(s3_store, tmp_path / "cache")
    versions = _push_versions(repo, tmp_path, 2)
    s3_store.put(ROOTS_PREFIX + "e" * 64, b"")
    report = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert report.snapshots_deleted == [] and {s for s, _ in versions} <= _snapshots(s3_store)
    s3_store.put(ROOTS_PREFIX + "d" * 64, b'{"format": 1}')
    with pytest.raises(FormatError, match="is damaged"):
        collect_garbage(repo, grace_period_s=0, limits=LIMITS)


def test_forget_policy_then_gc_deletes_only_what_was_forgotten(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    versions = _push_versions(repo, tmp_path, 5)
    record_tags(repo, [TagTarget("v0.1", versions[0][0], "model", "model")])
    objects_before = sorted(o.key for o in s3_store.list(ROOTS_PREFIX))

    dry = forget(repo, ForgetPolicy(keep_last=2), dry_run=True)
    assert sorted(o.key for o in s3_store.list(ROOTS_PREFIX)) == objects_before  # wrote nothing
    assert {v.snapshot_id for v, _ in dry.forgotten} == {versions[1][0], versions[2][0]}
    reasons = {v.snapshot_id: r for v, r in dry.kept}
    assert reasons[versions[0][0]] == ["tagged v0.1"]
    assert "among the last 2 untagged (#1)" in reasons[versions[4][0]]
    assert all("not among the last 2" in why for _, why in dry.forgotten)

    done = forget(repo, ForgetPolicy(keep_last=2))
    assert done.record_id is not None
    assert {v.snapshot_id for v, _ in done.forgotten} == {versions[1][0], versions[2][0]}
    live = list_roots(repo).live_snapshots
    assert live == {versions[0][0], versions[3][0], versions[4][0]}
    report = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert sorted(report.snapshots_deleted) == sorted([versions[1][0], versions[2][0]])
    for n in (0, 3, 4):
        pull(repo, versions[n][0], tmp_path / f"r{n}", limits=LIMITS)
        assert tree_digest(tmp_path / f"r{n}") == tree_digest(versions[n][1])
    # Forget is idempotent: a second run finds nothing more to retire.
    again = forget(repo, ForgetPolicy(keep_last=2))
    assert again.forgotten == [] and again.record_id is None


def test_keep_best_and_keep_within(s3_store: Any, tmp_path: Path) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    versions = _push_versions(repo, tmp_path, 4)  # acc 0.50 .. 0.53
    best = forget(repo, ForgetPolicy(keep_best=1, metric="acc"), dry_run=True)
    assert [v.snapshot_id for v, _ in best.kept] == [versions[3][0]]
    low = forget(repo, ForgetPolicy(keep_best=1, metric="acc", higher_is_better=False),
                 dry_run=True)
    assert [v.snapshot_id for v, _ in low.kept] == [versions[0][0]]
    within = forget(repo, ForgetPolicy(keep_within_s=3600), dry_run=True)
    assert within.forgotten == [] and len(within.kept) == 4
    aged = forget(repo, ForgetPolicy(keep_within_s=3600), dry_run=True,
                  now=list_roots(repo).versions[-1].stored_at + 7200)
    assert len(aged.forgotten) == 4
    with pytest.raises(ForgetPolicyError):
        forget(repo, ForgetPolicy())
    with pytest.raises(ForgetPolicyError):
        forget(repo, ForgetPolicy(keep_best=2))


def test_fork_sharing_the_store_keeps_its_versions(s3_store: Any, tmp_path: Path) -> None:
    """Two workspaces (a fork) share one store: gc deletes nothing of either on its own, and
    keep-last counts each workspace's versions separately."""
    repo = make_repo(s3_store, tmp_path / "cache")
    mine = _push_versions(repo, tmp_path, 3, workspace="a")
    fork = _push_versions(repo, tmp_path, 2, workspace="forkb")
    assert collect_garbage(repo, grace_period_s=0, limits=LIMITS).snapshots_deleted == []
    report = forget(repo, ForgetPolicy(keep_last=1))
    assert {v.snapshot_id for v, _ in report.forgotten} == {mine[0][0], mine[1][0], fork[0][0]}
    gc = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert set(gc.snapshots_deleted) == {mine[0][0], mine[1][0], fork[0][0]}
    assert {mine[2][0], fork[1][0]} <= _snapshots(s3_store)


def test_push_during_forget_is_not_retired(s3_store: Any, tmp_path: Path) -> None:
    """A forget names records, not snapshots: a re-push of a forgotten tree while it runs
    writes a record the forget could not name, so the version stays."""
    repo = make_repo(s3_store, tmp_path / "cache")
    versions = _push_versions(repo, tmp_path, 2)
    plan = forget(repo, ForgetPolicy(keep_last=1), dry_run=True)
    assert [v.snapshot_id for v, _ in plan.forgotten] == [versions[0][0]]
    # Interleave by hand: the push lands between the forget's listing and its write.
    again = push(repo, versions[0][1], limits=LIMITS,
                 record_root=RootInfo(kind="model", name="model", workspace="ws"))
    forgotten = plan.forgotten[0][0]
    from cpv.engine.roots import _write

    _write(repo, {"op": "retire", "retires": forgotten.push_records, "reason": "forget"})
    assert versions[0][0] in list_roots(repo).live_snapshots
    collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    pull(repo, again.snapshot_id, tmp_path / "back", limits=LIMITS)
    assert tree_digest(tmp_path / "back") == tree_digest(versions[0][1])


def test_combined_tag_is_one_record_and_untag_and_move(s3_store: Any, tmp_path: Path) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    (m1, _), (m2, _) = _push_versions(repo, tmp_path, 2)
    before = len(list(s3_store.list(ROOTS_PREFIX)))
    record_tags(repo, [TagTarget("v0.1", m1, "model", "model"),
                       TagTarget("data-v0.1", m2, "data", "data")])
    assert len(list(s3_store.list(ROOTS_PREFIX))) == before + 1
    roots = list_roots(repo)
    assert roots.tags == {"v0.1": m1, "data-v0.1": m2}
    record_tags(repo, [TagTarget("v0.1", m2, "model", "model")], move=True)
    roots = list_roots(repo)
    assert roots.tags["v0.1"] == m2 and len(roots.tag_records["v0.1"]) == 1
    assert record_untag(repo, ["data-v0.1"]) is not None
    roots = list_roots(repo)
    assert "data-v0.1" not in roots.tags and roots.tags["v0.1"] == m2


def test_format1_store_needs_migration_then_keeps_everything(
    s3_store: Any, tmp_path: Path
) -> None:
    """A store written before roots: gc refuses (nothing deleted) until adopt_snapshots runs;
    then every old snapshot is a kept root."""
    repo = make_repo(s3_store, tmp_path / "cache")
    old = [push(repo, _tree(tmp_path / f"old{i}", i), limits=LIMITS).snapshot_id
           for i in range(3)]
    s3_store.delete(ROOTS_MARKER_KEY)  # as today's format wrote it: no marker, no roots
    with pytest.raises(MigrationNeededError) as err:
        collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert err.value.hint and "\n" not in str(err.value)
    assert set(old) <= _snapshots(s3_store)
    report = adopt_snapshots(repo, tags=[TagTarget("v0.1", old[0], "model", "model")])
    assert sorted(report.adopted) == sorted(old) and report.tags_recorded == 1
    assert adopt_snapshots(repo).adopted == []  # idempotent
    gc = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert gc.snapshots_deleted == []
    kept = forget(repo, ForgetPolicy(keep_last=0), dry_run=True)
    assert kept.forgotten == []
    assert all(any("adopted" in r or "tagged" in r for r in why) for _, why in kept.kept)
