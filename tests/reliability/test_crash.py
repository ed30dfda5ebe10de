"""kill -9 at many points of a push, a pull and a gc, on the real S3 server, in real processes.

The driver SIGKILLs itself at its N-th store operation (N drawn at random over the whole run,
with a fixed seed so a failure reproduces), and some runs are killed from outside after a random
delay, which lands in the middle of requests. After every kill the store must hold no snapshot or
index entry that references missing data (invariant 1) and the workspace no torn file
(invariant 2); a final run must complete, upload only what is missing and restore every byte.
"""

from __future__ import annotations

import hashlib
import random
import re
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.engine.index import locations_key, read_locations
from cpv.engine.packs import pack_id_from_key
from cpv.engine.snapshot import snapshot_key
from cpv.errors import FormatError, NoStoreError
from cpv.store import MiB
from cpv.store.memory import MemoryStore
from tests.engine.conftest import LIMITS, make_repo, make_tree, rand_bytes, tree_digest

from .conftest import Driver, assert_store_consistent, finish

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEMP_NAME = re.compile(r"\..+\.cpv-\d+-[0-9a-f]{8}\.(tmp|lnk)")
RUNS = 8


def _kill_plan(total_ops: int, seed: int) -> list[tuple[str, int | float]]:
    """RUNS kill points: most at an exact store operation, two after a random delay."""
    rng = random.Random(seed)
    points: list[tuple[str, int | float]] = [
        ("op", rng.randint(1, max(1, total_ops - 1))) for _ in range(RUNS - 2)
    ]
    points += [("delay", rng.uniform(0.0, 0.6)) for _ in range(2)]
    return points


def _run_killed(run_driver: Driver, how: str, at: int | float, *args: str) -> bool:
    """Run the driver with one kill; True if it died (False: it finished first)."""
    if how == "op":
        proc = run_driver(*args, CPV_TEST_KILL_AT=str(at),
                          CPV_TEST_KILL_WHEN="before" if int(at) % 2 else "after")
        proc.communicate(timeout=120)
    else:
        proc = run_driver(*args)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"started"
        time.sleep(float(at))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=120)
    return proc.returncode == -signal.SIGKILL


def _durable_chunks(store: Any) -> dict[bytes, int]:
    """Every chunk held by a complete pack in the store, read from the packs' own footers.

    An upload killed in the middle can leave an object that is no pack at all: SeaweedFS listed
    a 0-byte ``packs/`` object after a kill mid-PUT. Nothing names it (the consistency check
    verifies every snapshot); a push's orphan recovery skips it the same way."""
    repo = Repository.open(store)
    found: dict[bytes, int] = {}
    for obj in store.list("packs/"):
        pid = pack_id_from_key(obj.key)
        if pid:
            try:
                entries = repo.read_pack_entries(pid, size=obj.size).entries
            except FormatError:
                continue
            for e in entries:
                found[e.chunk_id] = e.length
    return found


def _tree_chunks(src: Path, tmp: Path) -> tuple[set[bytes], int]:
    """The tree's chunk ids and unique bytes, from a dry run against an empty store."""
    planned = push(make_repo(MemoryStore(), tmp), src, dry_run=True, limits=LIMITS)
    return {c for f in planned.snapshot.files for c in f.chunks}, planned.new_bytes


def test_push_killed_anywhere_leaves_a_consistent_store_and_resumes(
    s3_store: Any, run_driver: Driver, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src", seed=5, big=14 * MiB, small=30)
    (src / "second.bin").write_bytes(rand_bytes(5 * MiB, 6))
    # Packs of 6 MiB: each is a multipart upload (a 5 MiB part and a tail), several per push.
    make_repo(s3_store, tmp_path / "init", pack_size=6 * MiB)
    url = str(s3_store.url)
    # Count the store operations of a whole push, on another prefix of the same server.
    probe = _sibling(s3_store, "probe")
    make_repo(probe, tmp_path / "probe-init", pack_size=6 * MiB)
    calib = int(finish(run_driver("push", probe.url, str(src), str(tmp_path / "pc")))["ops"])
    killed = 0
    for i, (how, at) in enumerate(_kill_plan(calib, seed=1)):
        died = _run_killed(run_driver, how, at, "push", url, str(src), str(tmp_path / f"cache{i}"))
        killed += died
        assert_store_consistent(s3_store)
    assert killed >= RUNS - 3, f"only {killed} of {RUNS} runs were killed mid-way"

    tree_chunks, unique = _tree_chunks(src, tmp_path / "dry")
    durable = _durable_chunks(s3_store)
    already = sum(n for c, n in durable.items() if c in tree_chunks)
    final = finish(run_driver("push", url, str(src), str(tmp_path / "cache-final")))
    # Only the remainder went up: exactly the tree's chunks that no complete pack held.
    assert final["new_bytes"] == unique - already
    assert_store_consistent(s3_store)
    out = tmp_path / "out"
    finish(run_driver("pull", url, final["snapshot_id"], str(out), str(tmp_path / "cache-pull")))
    assert tree_digest(out) == tree_digest(src)


def _sibling(s3_store: Any, name: str) -> Any:
    """Another prefix on the same server and client, for calibration runs."""
    from cpv.store.s3 import S3Store

    return S3Store(client=s3_store._client, bucket=s3_store.bucket, prefix=f"{s3_store.prefix}-{name}")


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    }


def test_pull_killed_anywhere_leaves_old_or_new_files_never_torn(
    s3_store: Any, run_driver: Driver, tmp_path: Path
) -> None:
    v1 = make_tree(tmp_path / "v1", seed=7, big=12 * MiB, small=20)
    v2 = make_tree(tmp_path / "v2", seed=8, big=12 * MiB, small=20)
    # v2's big file is v1's with a changed middle, so a pull also copies local chunks.
    big = bytearray((v1 / "model.bin").read_bytes())
    big[5 * MiB : 6 * MiB] = rand_bytes(MiB, 9)
    (v2 / "model.bin").write_bytes(bytes(big))
    repo = make_repo(s3_store, tmp_path / "cache")
    sid1 = push(repo, v1, limits=LIMITS).snapshot_id
    sid2 = push(repo, v2, limits=LIMITS).snapshot_id
    url = str(s3_store.url)
    old, new = _hashes(v1), _hashes(v2)

    # Every run pulls v2 over the same v1 folder, and the calibration does exactly that, so each
    # kill point lies inside the run it is meant to interrupt.
    pristine = tmp_path / "pristine"
    finish(run_driver("pull", url, sid1, str(pristine), str(tmp_path / "pc")))
    calib_dir = tmp_path / "calib"
    shutil.copytree(pristine, calib_dir, symlinks=True)
    calib = finish(run_driver("pull", url, sid2, str(calib_dir), str(tmp_path / "pc2")))
    dest = tmp_path / "dest"
    killed = 0
    for i, (how, at) in enumerate(_kill_plan(int(calib["ops"]), seed=2)):
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(pristine, dest, symlinks=True)
        died = _run_killed(run_driver, how, at, "pull", url, sid2, str(dest), str(tmp_path / f"c{i}"))
        killed += died
        for p in dest.rglob("*"):
            rel = p.relative_to(dest).as_posix()
            if TEMP_NAME.fullmatch(p.name):
                continue
            if p.is_symlink() or p.is_dir():
                continue
            digest = hashlib.sha256(p.read_bytes()).hexdigest()
            assert digest in (old.get(rel), new.get(rel)), f"run {i}: {rel} is torn"
    assert killed >= RUNS - 3, f"only {killed} of {RUNS} runs were killed mid-way"
    finish(run_driver("pull", url, sid2, str(dest), str(tmp_path / "c-final")))
    assert tree_digest(dest) == tree_digest(v2)
    leftovers = [p.name for p in dest.rglob("*") if ".cpv-" in p.name]
    assert leftovers == [], "the next pull must remove what killed pulls left"


def _four_versions(store: Any, tmp: Path) -> list[str]:
    """Four pushes sharing a growing prefix of one file, each with 1 MiB of its own."""
    repo = make_repo(store, tmp / "cache")
    base = rand_bytes(2 * MiB, 50)
    sids = []
    for v in range(4):
        src = tmp / f"v{v}"
        src.mkdir(parents=True, exist_ok=True)
        (src / "base.bin").write_bytes(base[: (v + 1) * MiB // 2])
        (src / "own.bin").write_bytes(rand_bytes(MiB, 51 + v))
        sids.append(push(repo, src, limits=LIMITS).snapshot_id)
    return sids


def test_gc_killed_anywhere_leaves_every_snapshot_verifiable(
    s3_store: Any, run_driver: Driver, tmp_path: Path
) -> None:
    sids = _four_versions(s3_store, tmp_path / "t")
    keep = sids[-1]
    url = str(s3_store.url)
    probe = _sibling(s3_store, "probe")
    probe_keep = _four_versions(probe, tmp_path / "p")[-1]
    calib = finish(run_driver("gc", probe.url, probe_keep, "0"))
    assert calib["packs_deleted"] >= 3
    before = sum(o.size for o in s3_store.list("packs/"))
    killed = 0
    repo = Repository.open(s3_store, cache_dir=tmp_path / "t" / "cache")
    # Later gc runs find other leftovers (condemned records, swept packs) than the calibration
    # run, so their op counts vary; kill only within the part every run reaches.
    for i, (how, at) in enumerate(_kill_plan(max(2, int(calib["ops"]) * 6 // 10), seed=3)):
        # Fresh garbage for every run, so each kill lands somewhere in a full gc. The killed
        # gc's lock is removed first, as the next gc would (waiting out a dead lock is tested
        # in test_gc.py).
        s3_store.delete("locks/gc")
        extra = tmp_path / f"extra{i}"
        extra.mkdir()
        (extra / "own.bin").write_bytes(rand_bytes(MiB, 70 + i))
        push(repo, extra, limits=LIMITS)
        died = _run_killed(run_driver, how, at, "gc", url, keep, "0", "--break")
        killed += died
        assert_store_consistent(s3_store)
        assert s3_store.exists(f"snapshots/{keep}"), f"run {i} lost the live snapshot"
    assert killed >= RUNS - 3, f"only {killed} of {RUNS} runs were killed mid-way"
    finish(run_driver("gc", url, keep, "0", "--break"))
    assert [o.key for o in s3_store.list("snapshots/")] == [f"snapshots/{keep}"]
    assert list(s3_store.list("gc/")) == []
    assert not s3_store.exists("locks/gc")
    assert verify(Repository.open(s3_store), deep=True).ok
    out = tmp_path / "out"
    finish(run_driver("pull", url, keep, str(out), str(tmp_path / "pc")))
    assert tree_digest(out) == tree_digest(tmp_path / "t" / "v3")
    # What is left is the live tree's 3 MiB (and pack footers); the rest was freed.
    held = sum(o.size for o in s3_store.list("packs/"))
    assert held <= 3 * MiB + 256 * 1024 < before


def test_push_killed_between_tree_nodes_and_root_publishes_nothing(
    s3_store: Any, run_driver: Driver, tmp_path: Path
) -> None:
    """Format 2: kill -9 once every pack (data and tree nodes) and the index are durable, just
    before the snapshot root. Nothing may reference what is missing; the re-run writes no node
    again (they are indexed) and publishes the root."""
    src = make_tree(tmp_path / "src", seed=11, big=2 * MiB, small=30)
    make_repo(s3_store, tmp_path / "init")
    url = str(s3_store.url)
    proc = run_driver("push", url, str(src), str(tmp_path / "c1"), CPV_TEST_KILL_KEY="snapshots/")
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert list(s3_store.list("snapshots/")) == []  # the root was never written
    assert list(s3_store.list("index/"))  # the nodes are indexed and durable
    assert_store_consistent(s3_store)
    final = finish(run_driver("push", url, str(src), str(tmp_path / "c2")))
    assert final["tree_nodes_new"] == 0 and final["new_bytes"] == 0
    assert_store_consistent(s3_store)
    out = tmp_path / "out"
    finish(run_driver("pull", url, final["snapshot_id"], str(out), str(tmp_path / "c3")))
    assert tree_digest(out) == tree_digest(src)


def test_empty_objects_a_killed_upload_left_are_written_again(
    s3_store: Any, tmp_path: Path
) -> None:
    """SeaweedFS keeps an empty object under the key of a PUT killed before its body arrived
    (docs/store-contract.md). A push that took its snapshot or its pack list for "already
    there" would record a version nothing can restore, or send fresh machines to the whole
    index."""
    src = make_tree(tmp_path / "src", seed=9, big=2 * MiB, small=5)
    make_repo(s3_store, tmp_path / "init")
    sid = push(Repository.open(s3_store, cache_dir=tmp_path / "c1"), src,
               limits=LIMITS).snapshot_id
    for key in (snapshot_key(sid), locations_key(sid)):
        s3_store.put(key, b"")  # what the killed uploads left
    again = push(Repository.open(s3_store, cache_dir=tmp_path / "c2"), src, limits=LIMITS)
    assert again.snapshot_id == sid
    assert s3_store.stat(snapshot_key(sid)).size > 0
    assert read_locations(s3_store, sid)
    assert verify(Repository.open(s3_store), deep=True).ok
    out = tmp_path / "out"
    pull(Repository.open(s3_store), sid, out, limits=LIMITS)  # a fresh machine
    assert tree_digest(out) == tree_digest(src)


def test_an_empty_config_is_an_interrupted_init_unless_the_store_holds_data(
    s3_store: Any, tmp_path: Path
) -> None:
    """The config object can be left empty by a killed init (or upgrade). Init makes the store
    then; a store that holds data is refused in one line, never given a config guessed anew."""
    s3_store.put("config", b"")
    with pytest.raises(NoStoreError, match="init was interrupted"):
        Repository.open(s3_store)
    src = make_tree(tmp_path / "src", seed=10, big=MiB, small=3)
    repo = make_repo(s3_store, tmp_path / "c")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    before = s3_store.get("config")
    s3_store.put("config", b"")
    with pytest.raises(FormatError, match="holds data") as info:
        make_repo(s3_store, tmp_path / "c2")
    assert "restore" in info.value.hint
    assert s3_store.get("config") == b""  # nothing guessed
    s3_store.put("config", before)
    assert verify(Repository.open(s3_store), snapshot_ids=[sid], deep=True).ok
