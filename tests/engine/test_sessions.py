"""Many writers, one version, with the store alone (engine/sessions.py): parts, retries,
conflicts, the coordinator's all-or-nothing combine and its one-winner claim, and gc."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull
from cpv.engine.gc import collect_garbage
from cpv.engine.roots import RootInfo, list_roots, record_push
from cpv.engine.sessions import (
    PART_KIND,
    Claim,
    claim_session,
    combine_parts,
    list_parts,
    parts_of,
    push_part,
    release_parts,
)
from cpv.engine.snapshot import SNAPSHOT_PREFIX
from cpv.errors import (
    MissingPartsError,
    SessionCommittedError,
    SessionConflictError,
    SessionError,
)
from cpv.store import KiB
from tests.engine.conftest import LIMITS, make_repo, rand_bytes, tree_digest


def _rank_dir(root: Path, rank: int, *, seed: int = 0) -> Path:
    """What one rank of a sharded save writes: its own shard, plus a file every rank writes
    identically (the metadata), in the checkpoint's own layout."""
    folder = root / f"rank{rank}"
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / f"shard_{rank}.distcp").write_bytes(rand_bytes(200 * KiB, seed + rank))
    (folder / "ckpt" / ".metadata").write_bytes(b'{"world": 4}')
    return folder


def _push_all(repo: Repository, tmp_path: Path, session: str, ranks: range) -> None:
    for r in ranks:
        push_part(repo, session, str(r), _rank_dir(tmp_path, r), limits=LIMITS)


def test_parts_combine_into_one_snapshot_without_uploading_again(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    _push_all(repo, tmp_path, "run1-step10", range(4))
    up_before = repo.store.bytes_up
    combined = combine_parts(repo, "run1-step10", ["0", "1", "2", "3"])
    # Only the small snapshot object is written: no chunk goes up again.
    assert repo.store.bytes_up - up_before < 4 * KiB
    paths = [f.path for f in combined.snapshot.files]
    assert paths == ["ckpt/.metadata", *[f"ckpt/shard_{r}.distcp" for r in range(4)]]
    assert parts_of(combined.snapshot)["2"] == ["ckpt/.metadata", "ckpt/shard_2.distcp"]
    # Another machine pulls the whole checkpoint, or one writer's files.
    other = Repository.open(s3_store, cache_dir=tmp_path / "other")
    pull(other, combined.snapshot_id, tmp_path / "whole", limits=LIMITS)
    for r in range(4):
        assert (tmp_path / "whole" / "ckpt" / f"shard_{r}.distcp").read_bytes() == (
            tmp_path / f"rank{r}" / "ckpt" / f"shard_{r}.distcp").read_bytes()
    pull(other, combined.snapshot_id, tmp_path / "one", limits=LIMITS,
         paths=parts_of(combined.snapshot)["1"])
    assert tree_digest(tmp_path / "one") == tree_digest(tmp_path / "rank1")


def test_a_retried_writer_is_harmless_and_other_content_is_refused(
    memory_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    folder = _rank_dir(tmp_path, 0)
    first, _ = push_part(repo, "s", "0", folder, limits=LIMITS)
    again, result = push_part(repo, "s", "0", folder, limits=LIMITS)
    assert again.snapshot_id == first.snapshot_id
    assert result.uploaded_bytes < 4 * KiB  # nothing but the root record went up again
    # The session id reused for another checkpoint: refused, the first part kept.
    (folder / "ckpt" / "shard_0.distcp").write_bytes(rand_bytes(200 * KiB, 99))
    with pytest.raises(SessionConflictError, match="part 0 of session s was already pushed"):
        push_part(repo, "s", "0", folder, limits=LIMITS)
    assert list_parts(repo, "s")["0"].snapshot_id == first.snapshot_id
    # The refused push's own root does not keep its data alive.
    parts_alive = [v for v in list_roots(repo).versions if v.kind == PART_KIND]
    assert [v.snapshot_id for v in parts_alive] == [first.snapshot_id]


def test_a_missing_writer_is_named_and_nothing_is_written(
    memory_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    _push_all(repo, tmp_path, "s", range(0, 4, 2))  # ranks 1 and 3 never finished
    snapshots_before = {o.key for o in memory_store.list(SNAPSHOT_PREFIX)}
    with pytest.raises(MissingPartsError,
                       match=r"session s: 2 of 4 writers have not pushed their part: 1, 3") as e:
        combine_parts(repo, "s", ["0", "1", "2", "3"])
    assert e.value.missing == ["1", "3"]
    assert {o.key for o in memory_store.list(SNAPSHOT_PREFIX)} == snapshots_before
    with pytest.raises(SessionConflictError, match="no writer was expected for: 2"):
        combine_parts(repo, "s", ["0"])


def test_two_parts_disagreeing_about_a_file_are_refused(
    memory_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    a = _rank_dir(tmp_path, 0)
    b = _rank_dir(tmp_path, 1)
    (b / "ckpt" / ".metadata").write_bytes(b'{"world": 5}')
    push_part(repo, "s", "0", a, limits=LIMITS)
    push_part(repo, "s", "1", b, limits=LIMITS)
    with pytest.raises(SessionConflictError, match=r"parts 0 and 1 both hold 'ckpt/\.metadata'"):
        combine_parts(repo, "s", ["0", "1"])


def test_two_coordinators_one_wins_the_other_is_told(s3_store: Any, tmp_path: Path) -> None:
    """Both race for the claim at once on the real S3 server (conditional write)."""
    repo = make_repo(s3_store, tmp_path / "cache")
    _push_all(repo, tmp_path, "s", range(2))
    combined = combine_parts(repo, "s", ["0", "1"])
    outcomes: dict[str, Claim | SessionCommittedError] = {}
    start = threading.Barrier(2)

    def coordinate(name: str) -> None:
        own = Repository.open(s3_store, cache_dir=tmp_path / name)
        start.wait()
        try:
            outcomes[name] = claim_session(own, combined, name)
        except SessionCommittedError as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=coordinate, args=(n,)) for n in ("alice", "bob")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    won = [n for n, o in outcomes.items() if isinstance(o, Claim)]
    lost = [o for o in outcomes.values() if isinstance(o, SessionCommittedError)]
    assert len(won) == 1
    assert len(lost) == 1
    assert str(lost[0]) == f"session s was already committed by {won[0]}"
    # The winner may claim again (a re-run after a crash); a late writer may not join.
    assert claim_session(repo, combined, won[0]).coordinator == won[0]
    with pytest.raises(SessionCommittedError, match="part 5 cannot join it"):
        push_part(repo, "s", "5", _rank_dir(tmp_path / "late", 5), limits=LIMITS)


def test_gc_keeps_parts_until_committed_then_the_version_keeps_the_data(
    s3_store: Any, tmp_path: Path
) -> None:
    repo = make_repo(s3_store, tmp_path / "cache")
    _push_all(repo, tmp_path, "s", range(3))
    report = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert report.snapshots_deleted == []  # pending parts are roots: nothing collected
    combined = combine_parts(repo, "s", ["0", "1", "2"])
    record_push(repo, combined.snapshot_id, RootInfo(kind="model", name="model"))
    release_parts(repo, combined.parts, reason="committed")
    assert not [v for v in list_roots(repo).versions if v.kind == PART_KIND]
    report = collect_garbage(repo, grace_period_s=0, limits=LIMITS)
    assert sorted(report.snapshots_deleted) == sorted(p.snapshot_id
                                                      for p in combined.parts.values())
    pull(Repository.open(s3_store, cache_dir=tmp_path / "o"), combined.snapshot_id,
         tmp_path / "restored", limits=LIMITS)
    assert len(list((tmp_path / "restored" / "ckpt").iterdir())) == 4


@pytest.mark.parametrize("bad", ["", "../x", "a/b", "-x", "x" * 200],
                         ids=["empty", "dotdot", "slash", "dash", "200-chars"])
def test_session_ids_and_part_names_are_key_segments(
    memory_store: Any, tmp_path: Path, bad: str
) -> None:
    repo = make_repo(memory_store, tmp_path / "cache")
    with pytest.raises(SessionError, match="invalid session id"):
        push_part(repo, bad, "0", _rank_dir(tmp_path, 0), limits=LIMITS)
    with pytest.raises(SessionError, match="invalid part name"):
        push_part(repo, "ok", bad, _rank_dir(tmp_path / "b", 0), limits=LIMITS)
