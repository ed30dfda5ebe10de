"""Fingerprints taken by forked walker processes (issue 11: status and the no-op push of
10^6 files): the comparison must say exactly what the one-process walk says, whatever
changed, and a process with more than one thread must never fork.

The walks run in a fresh ``python`` (one thread, as ``cpv status`` is), since a pytest-xdist
worker has threads of its own and would rightly walk alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cpv.engine import worktree
from cpv.engine.hashing import hash_file

SCRIPT = """
import json, os, sys
from pathlib import Path
from cpv.engine import worktree
from cpv.engine.statcache import FileStamp, StatCache, cache_key
from cpv.service.tree import Baseline

root, state = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text())
worktree.PARALLEL_WALK_FILES = 1
# The stat cache vouches for every file by its stamp; for one unchanged file it holds another
# digest, so a walker that judged without the cache (by hashing) would disagree.
cache = StatCache(Path(sys.argv[3]), chunker_key="test")
for rel, (size, digest) in state["files"].items():
    if not str(digest).startswith("->") and os.path.exists(root / rel):
        lie = "0" * 64 if rel == "a2/b3/f1.bin" else digest
        cache.record(cache_key(os.path.abspath(root), rel), FileStamp.of(os.lstat(root / rel)),
                     lie, ())
cache.flush()
baseline = Baseline(None, {p: tuple(v) for p, v in state["files"].items()},
                    fingerprints={p: bytes.fromhex(f) for p, f in state["fps"].items()})
known = []
real = worktree._fingerprints_in_parallel
def spy(*args):
    found = real(*args)
    known.append(len(found))
    return found
worktree._fingerprints_in_parallel = spy
out = {}
for name, walkers in (("serial", 1), ("parallel", worktree.walkers_for(baseline.count))):
    found = worktree.compare_folders(root, baseline, exclude=lambda rel: rel.endswith(".tmp"),
                                     cache=cache, walkers=walkers)
    out[name] = [found.edited, found.added, found.deleted, sorted(found.doubtful),
                 {p: f.hex() for p, f in found.learned.items()}]
    noop = worktree.compare_folders(root, baseline, stamps_only=True, cache=cache,
                                    exclude=lambda rel: rel.endswith(".tmp"), walkers=walkers)
    out[name + " no-op"] = noop is not None
out["known"] = known
print(json.dumps(out))
"""


def _tree(root: Path) -> dict[str, list[object]]:
    """Three levels of folders with files, a link and an ignored file; all dated a minute
    back (settled); returns what a baseline records of them."""
    for a in range(3):
        for b in range(4):
            folder = root / f"a{a}" / f"b{b}"
            folder.mkdir(parents=True)
            for i in range(5):
                (folder / f"f{i}.bin").write_bytes(f"{a}{b}{i}".encode() * (i + 1))
            (folder / "skip.tmp").write_bytes(b"ignored")
    (root / "top.bin").write_bytes(b"top")
    os.symlink("top.bin", root / "a0" / "link")
    past = time.time() - 60
    files: dict[str, list[object]] = {}
    for where, _, names in os.walk(root):
        for name in names:
            full = Path(where, name)
            rel = full.relative_to(root).as_posix()
            if full.is_symlink():
                files[rel] = [0, "->" + os.readlink(full)]
                continue
            os.utime(full, (past, past))
            if not rel.endswith(".tmp"):
                files[rel] = [full.stat().st_size, hash_file(full)]
    return files


def _compare(root: Path, tmp_path: Path, files: dict[str, list[object]],
             fps: dict[str, bytes]) -> dict[str, object]:
    state = tmp_path / "state.json"
    state.write_text(json.dumps({"files": files, "fps": {p: f.hex() for p, f in fps.items()}}))
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(root), str(state),
                           str(tmp_path / "stat.db")],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    result: dict[str, object] = json.loads(done.stdout)
    return result


@pytest.mark.skipif(sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2,
                    reason="walkers fork on Linux with two cores or more")
def test_walkers_say_exactly_what_one_walk_says(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    files = _tree(root)
    learned = worktree.compare_folders(
        root, _Recorded(files, {}), exclude=lambda rel: rel.endswith(".tmp"))
    assert learned is not None and "a1/b2/" in learned.learned
    fps = learned.learned

    unchanged = _compare(root, tmp_path, files, fps)
    assert unchanged["serial"] == unchanged["parallel"]
    assert unchanged["serial no-op"] is True and unchanged["parallel no-op"] is True
    assert unchanged["known"] and all(n >= 12 for n in unchanged["known"])  # type: ignore

    (root / "a1" / "b2" / "f3.bin").write_bytes(b"edited")
    (root / "a2" / "b0" / "new.bin").write_bytes(b"added")
    (root / "a2" / "b0" / "new.tmp").write_bytes(b"ignored")
    (root / "a0" / "b3" / "f0.bin").unlink()
    (root / "a0" / "b1").rename(tmp_path / "gone")
    (root / "a2" / "b9").mkdir()
    (root / "a2" / "b9" / "fresh.bin").write_bytes(b"fresh")
    (root / "a0" / "link").unlink()
    os.symlink("a0", root / "a0" / "link")
    (root / "a2" / "b3" / "more.bin").write_bytes(b"more")  # a2/b3 is judged, f1 by the cache
    changed = _compare(root, tmp_path, files, fps)
    assert changed["serial"] == changed["parallel"]
    parallel: list[list[str]] = changed["parallel"]  # type: ignore[assignment]
    edited, added, deleted = parallel[:3]
    assert edited == ["a0/link", "a1/b2/f3.bin", "a2/b3/f1.bin"]  # f1: the cache's digest
    assert added == ["a2/b0/new.bin", "a2/b3/more.bin", "a2/b9/fresh.bin"]
    assert "a0/b3/f0.bin" in deleted and "a0/b1/f4.bin" in deleted and len(deleted) == 6
    assert changed["serial no-op"] is False and changed["parallel no-op"] is False


def test_a_process_with_threads_or_a_small_tree_walks_alone() -> None:
    assert worktree.walkers_for(10) == 1
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait)
    thread.start()
    try:
        assert worktree.walkers_for(10**7) == 1  # never fork beside another thread
    finally:
        stop.set()
        thread.join()


class _Recorded:
    """A baseline as plain data (what the first, serial walk learns fingerprints from)."""

    def __init__(self, files: dict[str, list[object]], fps: dict[str, bytes]) -> None:
        self._tables: dict[str, dict[str, tuple[int, str]]] = {}
        for path, (size, digest) in files.items():
            cut = path.rfind("/") + 1
            self._tables.setdefault(path[:cut], {})[path[cut:]] = (int(size), str(digest))  # type: ignore
        self._fps = fps

    def prefixes(self) -> list[str]:
        return list(self._tables)

    def fingerprint(self, prefix: str) -> bytes | None:
        return self._fps.get(prefix)

    def names(self, prefix: str) -> dict[str, tuple[int, str]]:
        return self._tables.get(prefix, {})


FORKED_READS = """
import multiprocessing, sys
from pathlib import Path
from cpv.service.tree import Baseline, BaselineStore

root = Path(sys.argv[1])
files = {f"d{d:03d}/f{i:03d}.bin": (i, f"{d:03d}{i:03d}" + "0" * 58)
         for d in range(64) for i in range(40)}
store = BaselineStore(root)
store.save(root / "model", Baseline(None, files))
baseline = store.load(root / "model")
prefixes = [f"d{d:03d}/" for d in range(64)]

def reads(seed):
    for round in range(60):
        for prefix in prefixes[seed::3] + prefixes[:seed:-1]:
            names = baseline.names(prefix)
            if sorted(names) != [f"f{i:03d}.bin" for i in range(40)] or any(
                    v[1][:3] != prefix[1:4] for v in names.values()):
                return f"{prefix} read another folder's entries"
    return "ok"

with multiprocessing.get_context("fork").Pool(2) as pool:
    print(sorted(set(pool.map(reads, range(6)))))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="walkers fork on Linux only")
def test_a_baseline_read_from_its_file_serves_forked_walkers_at_once(tmp_path: Path) -> None:
    """Walker processes forked from one that opened the baseline share its file's offset:
    each folder's entries must still be its own (a seek, then a read, from two processes at
    once judged a folder against another's entries: every file added and deleted)."""
    done = subprocess.run([sys.executable, "-c", FORKED_READS, str(tmp_path)],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert done.stdout.split() == ["['ok']"]
