"""Hostile versions on the real path: a snapshot in S3 (SeaweedFS over HTTP) pulled to disk.

Issue 12: a one-file manifest whose snapshot plants ``tok/.git/config``; links that escape
through other links; setuid bits from a stranger's snapshot. Each attack is built from real
packs a real push uploaded, with only the snapshot forged, so nothing but the checks under test
stands between the attacker and the puller's disk.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull, push
from cpv.engine.snapshot import Snapshot, check_snapshot_matches, snapshot_key
from cpv.errors import IntegrityError, UnsafePathError
from cpv.pathrules import check_link_graph, resolve_in_tree
from cpv.service.filelist import FileLists, check_snapshot
from cpv.store.s3 import S3Store
from cpv.versioning import ChangeCounts, Manifest, pointer_manifest
from tests.engine.conftest import LIMITS, make_repo

FSMONITOR_CONFIG = b"[core]\n\tfsmonitor = touch /tmp/cpv-pwned\n"


def _forge(repo: Repository, store: S3Store, snapshot: Snapshot, renames: dict[str, str]) -> str:
    """Store ``snapshot`` with some paths renamed (and links retargeted); return its id."""
    files = []
    for f in snapshot.files:
        new = renames.get(f.path, f.path)
        files.append(f._replace(path=new))
    forged = Snapshot(files=tuple(sorted(files, key=lambda f: f.path)))
    sid, raw = forged.encode()
    store.put(snapshot_key(sid), raw)
    return sid


def _pushed(repo: Repository, root: Path) -> Snapshot:
    return push(repo, root, limits=LIMITS).snapshot


def test_snapshot_planting_git_config_is_refused_before_any_write(
    s3_store: S3Store, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "tok" / "dotgit").mkdir(parents=True)
    (src / "tok" / "vocab.json").write_bytes(b"{}")
    (src / "tok" / "dotgit" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    (src / "tok" / "dotgit" / "config").write_bytes(FSMONITOR_CONFIG)
    repo = make_repo(s3_store, tmp_path / "cache")
    snapshot = _pushed(repo, src)
    sid = _forge(repo, s3_store, snapshot, {
        "tok/dotgit/HEAD": "tok/.git/HEAD", "tok/dotgit/config": "tok/.git/config",
    })
    out = tmp_path / "out"
    with pytest.raises(UnsafePathError, match=r"\.git"):
        pull(repo, sid, out, limits=LIMITS)
    assert not out.exists() or not any(out.rglob("*")), "nothing may be written"
    # The same rule in any case and with the trailing dots Windows strips.
    for spelling in ("tok/.GIT/config", "tok/.git./config"):
        sid = _forge(repo, s3_store, snapshot, {"tok/dotgit/config": spelling})
        with pytest.raises(UnsafePathError):
            pull(repo, sid, out, limits=LIMITS)
    assert not out.exists() or not any(out.rglob("*"))


def test_snapshot_that_does_not_match_its_manifest_is_refused(
    s3_store: S3Store, tmp_path: Path
) -> None:
    """What the service checks before pulling: the snapshot holds exactly the manifest's files."""
    src = tmp_path / "src"
    (src / "tok").mkdir(parents=True)
    (src / "tok" / "vocab.json").write_bytes(b"{}")
    (src / "tok" / "extra.bin").write_bytes(b"planted")
    os.symlink("vocab.json", src / "tok" / "alias")
    repo = make_repo(s3_store, tmp_path / "cache")
    snapshot = Repository.open(s3_store).load_snapshot(push(repo, src, limits=LIMITS).snapshot_id)
    vocab = next(f for f in snapshot.files if f.path == "tok/vocab.json")
    one_file = {"tok/vocab.json": (vocab.size, vocab.blake3)}
    with pytest.raises(IntegrityError, match=r"'tok/extra\.bin' is in the snapshot but not in the"):
        check_snapshot_matches(snapshot, one_file, snapshot_id="ab" * 32)
    every = {f.path: (f.size, f.blake3) for f in snapshot.files if not f.is_symlink}
    check_snapshot_matches(snapshot, every)  # format-1 manifests leave links out
    with pytest.raises(IntegrityError, match="alias"):
        check_snapshot_matches(snapshot, every, unlisted_links=False)
    with pytest.raises(IntegrityError, match="differs"):
        check_snapshot_matches(snapshot, {**every, "tok/vocab.json": (2, "0" * 64)})
    with pytest.raises(IntegrityError, match="in the manifest but not in the snapshot"):
        check_snapshot_matches(snapshot, {**every, "tok/gone.bin": (1, "0" * 64)})
    # pull(expected=...) runs the same check before anything is written.
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="extra"):
        pull(repo, push(repo, src, limits=LIMITS).snapshot_id, out, expected=one_file)
    assert not out.exists()
    pull(repo, push(repo, src, limits=LIMITS).snapshot_id, out, expected=every)
    assert (out / "tok" / "extra.bin").read_bytes() == b"planted"


def test_link_escaping_through_another_link_is_refused_on_pull_and_push(
    s3_store: S3Store, tmp_path: Path
) -> None:
    outside = tmp_path / "hostname"
    outside.write_text("secret host\n")
    src = tmp_path / "src"
    (src / "x").mkdir(parents=True)
    os.symlink("..", src / "x" / "s")
    os.symlink("x/s/../hostname", src / "l")
    # Each link alone stays inside the tree; together they leave it.
    assert os.path.realpath(src / "l") == str(outside)
    repo = make_repo(s3_store, tmp_path / "cache")
    with pytest.raises(UnsafePathError, match="symlink"):
        push(repo, src, limits=LIMITS)
    assert not list(s3_store.list("packs/")), "refused before any upload"
    # A forged snapshot with the same two links is refused before anything is written.
    os.unlink(src / "l")
    (src / "l").write_text("placeholder")
    snapshot = _pushed(repo, src)
    files = tuple(
        f._replace(size=0, chunks=(), link="x/s/../hostname") if f.path == "l" else f
        for f in snapshot.files
    )
    sid, raw = Snapshot(files=files).encode()
    s3_store.put(snapshot_key(sid), raw)
    out = tmp_path / "deep" / "out"
    with pytest.raises(UnsafePathError, match="leaves the tree through another symlink"):
        pull(repo, sid, out, limits=LIMITS)
    assert not out.exists() or not any(out.rglob("*"))


def test_link_graph_rule() -> None:
    check_link_graph({"x/s": "..", "a": "x/s/b", "b/c": "../a"})
    assert resolve_in_tree("a", {"x/s": "..", "a": "x/s/b"}) == "b"
    with pytest.raises(UnsafePathError, match="leaves the tree"):
        check_link_graph({"x/s": "..", "l": "x/s/../etc/hostname"})
    with pytest.raises(UnsafePathError, match="loop"):
        check_link_graph({"a": "b", "b": "a"})
    with pytest.raises(UnsafePathError, match=r"\.git"):
        check_link_graph({"a": "sub/.git/config"})


def test_setuid_and_setgid_bits_are_stripped_unless_asked_for(
    s3_store: S3Store, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    tool = src / "tool"
    tool.write_bytes(b"#!/bin/sh\n")
    os.chmod(tool, 0o6755)  # noqa: S103 - the attack under test
    if stat.S_IMODE(tool.stat().st_mode) != 0o6755:
        pytest.skip("this file system does not keep setuid bits")
    repo = make_repo(s3_store, tmp_path / "cache")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    out = tmp_path / "out"
    pull(repo, sid, out, limits=LIMITS)
    assert stat.S_IMODE((out / "tool").stat().st_mode) == 0o755
    # An existing file with the right content gets its special bits stripped too.
    os.chmod(out / "tool", 0o4755)  # noqa: S103 - the attack under test
    pull(repo, sid, out, limits=LIMITS)
    assert stat.S_IMODE((out / "tool").stat().st_mode) == 0o755
    kept = tmp_path / "kept"
    pull(repo, sid, kept, limits=LIMITS, keep_special_bits=True)
    assert stat.S_IMODE((kept / "tool").stat().st_mode) == 0o6755


def test_snapshot_breaking_the_path_rule_still_counts_for_gc_and_verify(
    s3_store: S3Store, tmp_path: Path
) -> None:
    """An older cpv pushed nested .git folders into snapshots; their chunks are still live.

    Pull refuses such a snapshot, but gc must keep (and verify must check) what it references:
    a path problem is no reason to lose or ignore data.
    """
    from cpv.engine import verify
    from cpv.engine.gc import collect_garbage

    src = tmp_path / "src"
    (src / "tok" / "dotgit").mkdir(parents=True)
    (src / "tok" / "dotgit" / "config").write_bytes(FSMONITOR_CONFIG + b"x" * 70_000)
    repo = make_repo(s3_store, tmp_path / "cache")
    snapshot = _pushed(repo, src)
    sid = _forge(repo, s3_store, snapshot, {"tok/dotgit/config": "tok/.git/config"})
    assert verify(Repository.open(s3_store), deep=True).ok
    assert sid in {s.snapshot_id for s in repo.list_snapshots()}
    report = collect_garbage(repo, live_snapshots=[sid], grace_period_s=0, limits=LIMITS)
    assert not report.packs_deleted
    assert verify(Repository.open(s3_store), deep=True).ok
    with pytest.raises(UnsafePathError):
        pull(repo, sid, tmp_path / "out", limits=LIMITS)


def test_pointer_manifest_checks_what_its_snapshot_holds(s3_store: S3Store, tmp_path: Path) -> None:
    """Schema 2 lists no files: the snapshot id pins them, the path rule guards each entry, and
    the summary and the single-file rule are checked before a list is used or a byte written."""
    src = tmp_path / "src"
    (src / "tok" / "dotgit").mkdir(parents=True)
    (src / "tok" / "vocab.json").write_bytes(b"{}")
    (src / "tok" / "dotgit" / "config").write_bytes(FSMONITOR_CONFIG)
    repo = make_repo(s3_store, tmp_path / "cache")
    snapshot = _pushed(repo, src)

    def manifest(sid: str, **kw: Any) -> Manifest:
        base: dict[str, Any] = {"kind": "model", "path": "tok", "snapshot_id": sid, "store_url": "s3://x",
                                    "file_count": 2, "total_size": 2 + len(FSMONITOR_CONFIG),
                                    "changes": ChangeCounts(2, 0, 0)}
        base.update(kw)
        return pointer_manifest(**base)

    lists = FileLists(tmp_path / "ws", lambda: repo)
    planted = _forge(repo, s3_store, snapshot, {"tok/dotgit/config": "tok/.git/config"})
    with pytest.raises(UnsafePathError, match=r"\.git"):
        lists.files(manifest(planted), "v0.1")
    climbing = _forge(repo, s3_store, snapshot, {"tok/dotgit/config": "../x"})
    with pytest.raises(UnsafePathError):
        lists.files(manifest(climbing), "v0.1")
    assert not (tmp_path / "ws").exists(), "nothing hostile is cached"

    honest = repo.save_snapshot(snapshot)[0]
    assert len(lists.files(manifest(honest), "v0.1")) == 2
    with pytest.raises(IntegrityError, match="the manifest says 3 of"):
        lists.files(manifest(honest, file_count=3), "v0.1")
    # A single-file tracked path whose snapshot also holds another file never reaches disk.
    one = manifest(honest, path="tok/vocab.json", is_dir=False, file_count=1, total_size=2)
    with pytest.raises(IntegrityError, match="only entry"):
        check_snapshot(one, repo.load_snapshot(honest), "v0.1")
