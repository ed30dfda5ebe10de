"""A push whose sub-trees forked walker processes scan and encode (issue 11: 1 % of 10^6 files
changed in every folder): the version must be exactly the one a single process encodes from
scratch (``rehash``), pulled back byte for byte, with every new chunk uploaded once.

Sub-trees a walker must leave to the push's process (a symlink, which is judged with the whole
tree's; more to hash than it may send) are encoded there; when a gc rewrote the index between
the walkers' judgement and the push's lease (or the store lost a pack), the whole tree is
encoded again (invariant 9).

The pushes run in a fresh ``python`` (one thread, as ``cpv push`` is): a pytest-xdist worker has
threads of its own and rightly never forks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

SCRIPT = """
import importlib, json, shutil, sys
from pathlib import Path
from cpv.engine import pull, push
from cpv.store.local import LocalStore
from tests.engine.conftest import LIMITS, make_repo, tree_digest

src, work, step = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
engine = importlib.import_module("cpv.engine.push")
engine._UNIT_HASH_BYTES = 20_000  # a sub-tree with more to hash is left to the push's process
units, scans = [], []
real_units, real_scan = engine._push_units, engine._scan

def spy_units(*args):
    got = real_units(*args)
    units.append(sorted(got))
    if step == "gc-race":
        # The store loses what the walkers found held (a gc, a repair after damage): every
        # pack. Trusted as the walkers judged, the version would name chunks that are gone.
        for pack in (work / "store" / "packs").glob("*/*"):
            pack.unlink()
    return got

def spy_scan(*args, **kwargs):
    scans.append(sorted(kwargs.get("done") or ()))
    return real_scan(*args, **kwargs)

class Scanned:  # the push's "scan" phase, as a progress bar would show it
    count, phases = 0, []
    def begin(self, phase, *, total, unit="B"): self.phases.append(phase)
    def advance(self, phase, amount): self.count += amount if phase == "scan" else 0
    def set_total(self, phase, total): pass
    def end(self, phase): pass

engine._push_units, engine._scan = spy_units, spy_scan
repo = make_repo(LocalStore(work / "store"), work / "cache")
skip = lambda rel: rel.endswith(".tmp")
scanned = Scanned()
got = push(repo, src, limits=LIMITS, walkers=2, exclude=skip, progress=scanned)
pushed_scans = list(scans)  # (not the check's below)
out = work / ("pulled-" + step)
shutil.rmtree(out, ignore_errors=True)
pull(repo, got.snapshot_id, out, limits=LIMITS)
pulled = tree_digest(out) == {k: v for k, v in tree_digest(src).items() if not k.endswith(".tmp")}
again = push(repo, src, limits=LIMITS, rehash=True, exclude=skip)
print(json.dumps({"units": units[0] if units else None, "scans": pushed_scans,
                  "same": again.snapshot_id == got.snapshot_id, "pulled": pulled,
                  "hashed": got.hashed_bytes, "reused": got.folders_reused,
                  "files": got.files, "new_chunks": got.chunks_new,
                  "uploaded_again": again.uploaded_bytes, "scanned": scanned.count,
                  "phases": scanned.phases}))
"""


def _tree(root: Path) -> None:
    """24 folders two levels down (the sub-trees the walkers take), files at every level, a
    link in one sub-tree, an ignored file, and one sub-tree with more to hash than a walker
    may send; all dated a minute back (settled)."""
    for a in range(6):
        for b in range(4):
            folder = root / f"a{a}" / f"b{b}"
            folder.mkdir(parents=True)
            for i in range(6):
                (folder / f"f{i}.bin").write_bytes(f"{a}.{b}.{i};".encode() * (40 + 9 * i))
            (folder / "skip.tmp").write_bytes(b"left out")
        (root / f"a{a}" / "own.bin").write_bytes(f"own {a}".encode())
    (root / "top.bin").write_bytes(b"top")
    (root / "a3" / "b1" / "big.bin").write_bytes(os.urandom(30_000))
    os.symlink("f0.bin", root / "a1" / "b2" / "link")
    _age(root)


def _age(root: Path, since: float = 0.0) -> None:
    """Date the files (modified after ``since``) a minute back, so the stat cache trusts them."""
    past = time.time() - 60
    for where, _, names in os.walk(root):
        for name in names:
            full = Path(where, name)
            if not full.is_symlink() and full.stat().st_mtime >= since:
                os.utime(full, (past, past))


def _push(src: Path, work: Path, step: str) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(src), str(work), step],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    assert result["same"] and result["pulled"], result
    return result


@pytest.mark.skipif(sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2,
                    reason="walkers fork on Linux with two cores or more")
def test_walkers_encode_exactly_what_one_process_encodes(tmp_path: Path) -> None:
    src, work = tmp_path / "src", tmp_path / "work"
    _tree(src)
    subtrees = {f"a{a}/b{b}/" for a in range(6) for b in range(4)}
    left = {"a1/b2/", "a3/b1/"}  # the link's, the one with too much to hash

    first = _push(src, work, "first")
    assert set(first["units"]) == subtrees - left
    assert first["scans"] == [sorted(subtrees - left)]
    assert first["uploaded_again"] == 0  # every new chunk was uploaded by the parallel push
    # Shown before any byte is hashed: every file, from the walkers and the push's own scan.
    assert first["phases"][0] == "scan" and first["scanned"] >= first["files"], first

    since = time.time() - 5  # (a file's mtime comes from a coarser clock)
    # Changed in every sub-tree (what 1 % of every folder is), a file added and one
    # deleted, a new sub-tree and a new folder below a sub-tree, a link re-pointed.
    for a in range(6):
        for b in range(4):
            (src / f"a{a}" / f"b{b}" / "f3.bin").write_bytes(f"v2 {a}.{b}".encode())
    (src / "a0" / "b0" / "added.bin").write_bytes(b"added")
    (src / "a5" / "b3" / "f1.bin").unlink()
    (src / "a4" / "b9").mkdir()
    (src / "a4" / "b9" / "fresh.bin").write_bytes(b"fresh")
    (src / "a2" / "b2" / "deeper").mkdir()
    (src / "a2" / "b2" / "deeper" / "x.bin").write_bytes(b"deeper")
    (src / "a1" / "b2" / "link").unlink()
    os.symlink("f1.bin", src / "a1" / "b2" / "link")
    _age(src, since)
    second = _push(src, work, "second")
    # The big file is vouched for by the stat cache now: only the link's sub-tree is left.
    assert set(second["units"]) == (subtrees | {"a4/b9/"}) - {"a1/b2/"}
    assert second["uploaded_again"] == 0 and second["files"] == first["files"] + 3 - 1
    assert second["hashed"] == 24 * 6 + 5 + 5 + 6  # what changed; the rest vouched for

    # Nothing changed: every folder's node is reused, nothing is read.
    third = _push(src, work, "third")
    assert third["hashed"] == 0 and third["new_chunks"] == 0

    # One file touched, its bytes unchanged: the files the walkers hashed before are
    # vouched for by the stat cache entries the push recorded for them.
    touched = src / "a0" / "b0" / "f3.bin"
    since = time.time() - 5  # (a file's mtime comes from a coarser clock)
    touched.write_bytes(touched.read_bytes())
    _age(src, since)
    fourth = _push(src, work, "fourth")
    assert fourth["hashed"] == touched.stat().st_size


@pytest.mark.skipif(sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2,
                    reason="walkers fork on Linux with two cores or more")
def test_a_loss_between_the_walkers_and_the_lease_has_the_tree_encoded_again(
        tmp_path: Path) -> None:
    src, work = tmp_path / "src", tmp_path / "work"
    _tree(src)
    _push(src, work, "first")
    since = time.time() - 5  # (a file's mtime comes from a coarser clock)
    for a in range(6):
        (src / f"a{a}" / "b0" / "f2.bin").write_bytes(f"v2 {a}".encode())
    _age(src, since)
    raced = _push(src, work, "gc-race")
    assert raced["units"], raced
    scans = raced["scans"]
    assert len(scans) == 2 and scans[0] and scans[1] == []


@pytest.mark.skipif(sys.platform != "linux", reason="walkers fork on Linux only")
def test_a_progress_bar_leaves_no_thread_that_forbids_the_walkers() -> None:
    """`cpv push` pushes data, then the model: the first push's bars must not leave a thread
    behind (tqdm's monitor), or the model's push would run in one process."""
    script = ("import io, sys\n"
              "from cpv.cli.progress import _bar_class\n"
              "from cpv.engine.worktree import forkable\n"
              "bar = _bar_class()(total=10, file=io.StringIO())\n"
              "bar.update(10)\n"
              "bar.close()\n"
              "print(forkable())\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.stdout.strip() == "True"
