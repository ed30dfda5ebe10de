"""Store format 2 at scale: metadata per version, push times and RSS, gc dry run, fresh pull.

The store-side rows of issue 11 (the Git-side rows belong to ``benchmarks/scale.py``). Run::

    python benchmarks/scale_store.py metadata --files 100000 --versions 5
    python benchmarks/scale_store.py push --files 100000 --versions 10
    python benchmarks/scale_store.py gc --files 100000 --versions 100
    python benchmarks/scale_store.py index --chunks 8750000
    python benchmarks/scale_store.py fresh-pull --version-mib 2048 --simulated-tib 1

``metadata``: a synthetic tree of ``--files`` entries (names, sizes, blake3 ids; no file bytes)
in folders of 1,000, encoded as format-2 nodes; each further version changes 1% of the files,
either clustered (whole folders, a new shard) or scattered at random. Reports the full listing,
the bytes each version adds (new nodes, root, pack list) and the format-1 snapshot size.

``push``: real files of 1 KiB in folders of 1,000 on the local disk, pushed to a local store:
first push, no-op push, then versions with 1% (clustered) changed, each in a child process
(time and peak RSS of that process alone); then ``gc --dry-run`` over every version.

``gc``: ``--versions`` tree snapshots of ``--files`` files, 1% (one folder) changed per version,
made at the tree level (see :func:`_synthetic_versions`), then ``gc --dry-run`` in a child
process: wall and CPU seconds, peak RSS.

``index``: a local store whose index objects name ``--chunks`` chunks (8.75 M: 10 TB of
1.2 MB chunks); a child process loads the whole index as a push does, in RAM (``dict``, as
every store did before) or in the on-disk table, and reports RSS per chunk and membership tests
per second (half known chunks, half unknown), on a first open and on one with the table cached.

``fresh-pull``: a local store whose index simulates ``--simulated-tib`` of other versions (index
objects naming 768 KiB chunks in 64 MiB packs that do not exist), plus one real version of
``--version-mib``; a fresh machine (empty cache) pulls that version. Reports the metadata bytes
downloaded and the time until the first data byte moves, with the per-version pack list and
without it (the whole index, as format 1 does).

Timings are noisy on a shared machine: every figure is repeated (``--repeat``) and reported as
min and median.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from cpv.engine import Repository, pull, push  # noqa: E402
from cpv.engine.gc import collect_garbage  # noqa: E402
from cpv.engine.hashing import chunk_id  # noqa: E402
from cpv.engine.index import INDEX_PREFIX, PackRecord, encode_index  # noqa: E402
from cpv.engine.packs import PackEntry  # noqa: E402
from cpv.engine.roots import RootInfo, mark_roots_enabled, record_push  # noqa: E402
from cpv.engine.snapshot import FileEntry, Snapshot, snapshot_key  # noqa: E402
from cpv.engine.transfer import PackUploader, TaskPool, TransferLimits  # noqa: E402
from cpv.engine.tree import build_tree, encode_root  # noqa: E402
from cpv.progress import Phase, Unit  # noqa: E402
from cpv.store.local import LocalStore  # noqa: E402

FOLDER = 1000


def _stats(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3)}


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- metadata -------------------------------------------------------------------------------


def _entry(i: int, gen: int) -> FileEntry:
    h = chunk_id(f"{i}:{gen}".encode())
    return FileEntry(f"train/d{i // FOLDER:05d}/img{i:08d}.jpg", 1024, 0o644, h.hex(), (h,))


def metadata(args: argparse.Namespace) -> dict[str, Any]:
    n = args.files
    out: dict[str, Any] = {"files": n, "folder_size": FOLDER}
    for mode in args.modes.split(","):
        gens = [0] * n
        rng = random.Random(1)
        known: set[bytes] = set()
        rows = []
        for version in range(args.versions):
            if version:
                k = n // 100
                if mode == "clustered":
                    start = rng.randrange(0, n - k)
                    idx = range(start, start + k)
                else:
                    idx = rng.sample(range(n), k)  # type: ignore[assignment]
                for i in idx:
                    gens[i] += 1
            files = [_entry(i, gens[i]) for i in range(n)]
            files.sort(key=lambda f: f.path)
            nodes: dict[bytes, bytes] = {}
            started = time.perf_counter()
            top = build_tree(files, nodes.__setitem__)
            build_s = time.perf_counter() - started
            _, root = encode_root(top, files=n, size=n * 1024, meta={})
            sizes = {nid: len(raw) for nid, raw in nodes.items()}
            full = sum(sizes.values())
            new = sum(size for nid, size in sizes.items() if nid not in known)
            known.update(nodes)
            row = {"version": version, "nodes": len(nodes), "full_listing_bytes": full,
                   "new_node_bytes": new, "root_bytes": len(root),
                   "pack_list_bytes": 64 + 67,  # one pack id in JSON, the version's new pack
                   "added_share_of_full": round((new + len(root) + 131) / full, 4),
                   "build_s": round(build_s, 2)}
            if version == 0 and n <= 200_000:
                row["format1_snapshot_bytes"] = len(Snapshot(files=tuple(files)).encode()[1])
            rows.append(row)
        out[mode] = rows
    return out


# -- push -----------------------------------------------------------------------------------


def _write_tree(root: Path, n: int, changed: range | None = None, gen: int = 0) -> None:
    for i in changed if changed is not None else range(n):
        d = root / f"d{i // FOLDER:05d}"
        if changed is None and i % FOLDER == 0:
            d.mkdir(parents=True, exist_ok=True)
        data = chunk_id(f"{i}:{gen}".encode()) * 32  # 1 KiB, unique per file and generation
        (d / f"f{i:08d}.bin").write_bytes(data)


def _child(op: str, *argv: str) -> dict[str, Any]:
    """Run one operation in a fresh process: its own time and peak RSS."""
    proc = subprocess.run([sys.executable, __file__, "_child", op, *argv], capture_output=True,
                          text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{op} failed:\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    # Each step as it ends: deleting 10^6 files afterwards takes minutes, and a run stopped
    # then must not lose what it measured.
    print(json.dumps({"op": op, **result}), file=sys.stderr, flush=True)
    return result


def child(args: argparse.Namespace) -> None:
    op, argv = args.op, args.argv
    store = LocalStore(argv[0])
    started = time.perf_counter()
    cpu_before = os.times()
    out: dict[str, Any]
    if op == "push":
        repo = Repository.open(store, cache_dir=Path(argv[2]))
        r = push(repo, Path(argv[1]), record_root=RootInfo(kind="data", name="data"))
        out = {"snapshot_id": r.snapshot_id, "tree_nodes_new": r.tree_nodes_new,
               "tree_bytes_new": r.tree_bytes_new, "new_bytes": r.new_bytes,
               "requests": r.requests,
               "folders_reused": getattr(r, "folders_reused", None)}  # None before reuse
    elif op == "index":
        out = _index_child(store, Path(argv[1]), argv[2], int(argv[3]))
    elif op == "gc":
        report = collect_garbage(Repository.open(store), dry_run=True)
        out = {"snapshots": report.snapshots_total, "kept": report.snapshots_kept}
        usage = resource.getrusage(resource.RUSAGE_SELF)
        out["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    else:
        raise SystemExit(f"unknown op {op}")
    out["seconds"] = round(time.perf_counter() - started, 2)
    cpu = os.times()
    out["cpu_s"] = round(cpu.user + cpu.system - cpu_before.user - cpu_before.system, 2)
    out["rss_mib"] = round(_rss_mib(), 1)
    print(json.dumps(out))


def _store_bytes(store: Path, prefix: str) -> int:
    return sum(p.stat().st_size for p in (store / prefix).rglob("*") if p.is_file())


def push_bench(args: argparse.Namespace) -> dict[str, Any]:
    n = args.files
    work = Path(tempfile.mkdtemp(prefix="cpv-scale-", dir=args.scratch))
    try:
        src, store, cache = work / "src", work / "store", work / "cache"
        started = time.perf_counter()
        _write_tree(src, n)
        Repository.init(LocalStore(str(store)), version=args.store_format)
        out: dict[str, Any] = {"files": n, "store_format": args.store_format,
                               "write_tree_s": round(time.perf_counter() - started, 1)}
        first = _child("push", str(store), str(src), str(cache))
        out["first_push"] = first
        noop = [_child("push", str(store), str(src), str(cache)) for _ in range(args.repeat)]
        out["noop_push"] = {"seconds": _stats([r["seconds"] for r in noop]),
                            "cpu_s": _stats([r["cpu_s"] for r in noop]),
                            "rss_mib": max(r["rss_mib"] for r in noop),
                            "tree_nodes_new": noop[0]["tree_nodes_new"],
                            "folders_reused": [r.get("folders_reused") for r in noop]}
        rng = random.Random(2)
        changed = []
        for version in range(1, args.versions):
            k = n // 100
            start = rng.randrange(0, n - k)
            _write_tree(src, n, range(start, start + k), gen=version)
            before = {p: _store_bytes(store, p) for p in ("snapshots", "locations", "index")}
            r = _child("push", str(store), str(src), str(cache))
            r["metadata_bytes"] = r.get("tree_bytes_new", 0) + sum(
                _store_bytes(store, p) - before[p] for p in before)
            changed.append(r)
        out["one_percent_push"] = {
            "seconds": _stats([r["seconds"] for r in changed]),
            "cpu_s": _stats([r["cpu_s"] for r in changed]),
            "folders_reused": [r.get("folders_reused") for r in changed],
            "rss_mib": max(r["rss_mib"] for r in changed),
            "metadata_bytes_per_version": _stats([r["metadata_bytes"] for r in changed]),
            "full_listing_bytes": first["tree_bytes_new"]}
        if not args.skip_gc:
            gcs = [_child("gc", str(store)) for _ in range(args.repeat)]
            out["gc_dry_run"] = {"versions": gcs[0]["snapshots"],
                                 "seconds": _stats([r["seconds"] for r in gcs]),
                                 "rss_mib": max(r["rss_mib"] for r in gcs)}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


# -- gc over many versions ------------------------------------------------------------------


def _synthetic_versions(store_dir: Path, n: int, versions: int) -> dict[str, Any]:
    """``versions`` tree snapshots of ``n`` files, 1% (one whole folder) changed per version.

    Made at the tree level, not by pushes (100 real pushes of 10^5 files take over an hour
    here): each file is one small chunk whose bytes really hash to its id, written with the
    push's own ``PackUploader``; the new tree nodes go into the same packs; then the index, the
    root and a root record, in the push's order. What gc reads is what a push would have
    written; only the file bytes are tiny (gc never reads file data).
    """
    store = LocalStore(str(store_dir))
    repo = Repository.init(store)
    gens = [0] * n
    known: set[bytes] = set()
    rng = random.Random(5)
    for version in range(versions):
        if version:
            start = rng.randrange(0, n // FOLDER) * FOLDER
            for i in range(start, min(n, start + n // 100)):
                gens[i] += 1
        files = []
        with TaskPool(2, name="synth") as pool, PackUploader(
                store, pool=pool, pack_size=repo.config.pack_size,
                limits=TransferLimits()) as up:
            for i in range(n):
                data = f"{i}:{gens[i]}".encode()
                cid = chunk_id(data)
                if cid not in known:
                    known.add(cid)
                    up.add(cid, memoryview(data))
                files.append(FileEntry(f"train/d{i // FOLDER:05d}/img{i:08d}.jpg", len(data),
                                       0o644, cid.hex(), (cid,)))

            def put(nid: bytes, raw: bytes) -> None:
                if nid not in known:
                    known.add(nid)
                    up.add(nid, memoryview(raw))

            top = build_tree(files, put)
            repo.add_packs(up.finish())
        sid, raw = encode_root(top, files=n, size=sum(f.size for f in files), meta={})
        store.put(snapshot_key(sid), raw)
        record_push(repo, sid, RootInfo(kind="data", name="data"))
    mark_roots_enabled(store)
    return {"chunks_and_nodes": len(known)}


def gc_bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.keep) if args.keep else Path(
        tempfile.mkdtemp(prefix="cpv-gc-", dir=args.scratch))
    store = work / "store"
    try:
        out: dict[str, Any] = {"files": args.files, "versions": args.versions}
        if not (store / "config").exists():
            started = time.perf_counter()
            out.update(_synthetic_versions(store, args.files, args.versions))
            out["synthesize_s"] = round(time.perf_counter() - started, 1)
        runs = [_child("gc", str(store)) for _ in range(args.repeat)]
        out["gc_dry_run"] = {"snapshots": runs[0]["snapshots"],
                             "seconds": _stats([r["seconds"] for r in runs]),
                             "cpu_s": _stats([r["cpu_s"] for r in runs]),
                             "rss_mib": max(r["rss_mib"] for r in runs),
                             "load_average": os.getloadavg()[0]}
        return out
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


# -- index RAM --------------------------------------------------------------------------------


def _rss_now_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024**2


def _index_child(store: LocalStore, cache: Path, mode: str, lookups: int) -> dict[str, Any]:
    """Load the whole index as a push does, then time membership tests (a push's dedup)."""
    from cpv.engine import index as index_mod
    from cpv.engine.index import parse_index
    from cpv.engine.objcache import read_cached

    # "dict": what every store got before the table; "table": the table at any size (a store
    # above SPILL_ENTRIES gets it anyway).
    index_mod.SPILL_ENTRIES = 1 << 62 if mode == "dict" else 0
    base = _rss_now_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    repo = Repository.open(store, cache_dir=cache)
    index = repo.index
    assert repo.cache_dir is not None
    out: dict[str, Any] = {"mode": mode, "entries": len(index),
                           "load_s": round(time.perf_counter() - started, 2)}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["load_cpu_s"] = round(usage.ru_utime + usage.ru_stime - cpu0, 2)
    out["rss_after_load_mib"] = round(_rss_now_mib() - base, 1)
    out["bytes_per_chunk"] = round((_rss_now_mib() - base) * 1024**2 / max(1, len(index)), 1)
    # Half the probes are known chunks (from a few index objects), half unknown ones.
    rng = random.Random(6)
    known: list[bytes] = []
    for info in store.list("index/"):
        raw = read_cached(repo.cache_dir, "index", info.key[len("index/"):])
        assert raw is not None
        _, entries = parse_index(raw, where="bench")
        known += [bytes(entries[i:i + 32]) for i in range(0, len(entries), 48 * 7)]
        if len(known) >= lookups // 2:
            break
    probes = known[: lookups // 2] + [rng.randbytes(32) for _ in range(lookups // 2)]
    rng.shuffle(probes)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = usage.ru_utime + usage.ru_stime
    started = time.perf_counter()
    hits = sum(1 for c in probes if c in index)
    took = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    out["lookups"] = len(probes)
    out["hits"] = hits
    out["lookups_per_s"] = round(len(probes) / took)
    out["lookups_per_cpu_s"] = round(len(probes) / max(1e-6, usage.ru_utime + usage.ru_stime
                                                       - cpu0))
    out["rss_after_lookups_mib"] = round(_rss_now_mib() - base, 1)
    return out


def index_bench(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.keep) if args.keep else Path(
        tempfile.mkdtemp(prefix="cpv-index-", dir=args.scratch))
    store_dir = work / "store"
    try:
        out: dict[str, Any] = {"chunks": args.chunks}
        if not (store_dir / "config").exists():
            store = LocalStore(str(store_dir))
            Repository.init(store)
            started = time.perf_counter()
            objects, size = _simulate_index(store, 0, chunks=args.chunks,
                                            chunk=args.chunk_kib * 1024)
            out.update(index_objects=objects, index_bytes=size,
                       simulate_s=round(time.perf_counter() - started, 1))
        for mode in args.modes.split(","):
            cache = work / f"cache-{mode}"
            shutil.rmtree(cache, ignore_errors=True)
            first = _child("index", str(store_dir), str(cache), mode, str(args.lookups))
            again = _child("index", str(store_dir), str(cache), mode, str(args.lookups))
            out[mode] = {"first_open": first, "cached_open": again}
        out["load_average"] = os.getloadavg()[0]
        return out
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


# -- fresh pull -----------------------------------------------------------------------------


class _FirstByte:
    def __init__(self) -> None:
        self.at: float | None = None

    def begin(self, phase: Phase, *, total: int | None, unit: Unit = "B") -> None:
        pass

    def advance(self, phase: Phase, amount: int) -> None:
        if self.at is None and phase == "download" and amount:
            self.at = time.perf_counter()

    def set_total(self, phase: Phase, total: int) -> None:
        pass

    def end(self, phase: Phase) -> None:
        pass


def _simulate_index(store: LocalStore, tib: float, chunks: int | None = None,
                    chunk: int = 768 * 1024) -> tuple[int, int]:
    """Index objects for ``tib`` TiB (or ``chunks``) of ``chunk``-byte chunks in 64 MiB packs
    that do not exist."""
    pack = 64 * 1024 * 1024
    if chunks is None:
        chunks = int(tib * 1024**4 // chunk)
    per_pack = max(1, pack // chunk)
    rng = random.Random(3)
    total = 0
    objects = 0
    packs_per_object = 16  # one index object per push of ~1 GiB
    made = 0
    while made < chunks:
        records = []
        for _ in range(packs_per_object):
            pid = rng.randbytes(32).hex()
            entries = tuple(PackEntry(rng.randbytes(32), j * chunk, chunk)
                            for j in range(min(per_pack, chunks - made)))
            made += len(entries)
            records.append(PackRecord(pid, pack, entries))
            if made >= chunks:
                break
        index_id, raw = encode_index(records)
        store.put(INDEX_PREFIX + index_id, raw)
        total += len(raw)
        objects += 1
    return objects, total


def fresh_pull(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="cpv-fresh-", dir=args.scratch))
    try:
        store_dir = work / "store"
        store = LocalStore(str(store_dir))
        Repository.init(store)
        src = work / "src"
        src.mkdir()
        rng = random.Random(4)
        with open(src / "model.bin", "wb") as fh:
            for _ in range(args.version_mib):
                fh.write(rng.randbytes(1024 * 1024))
        sid = push(Repository.open(store, cache_dir=work / "c0"), src).snapshot_id
        started = time.perf_counter()
        objects, index_bytes = _simulate_index(store, args.simulated_tib)
        out: dict[str, Any] = {"version_mib": args.version_mib,
                               "simulated_tib": args.simulated_tib,
                               "simulated_index_objects": objects,
                               "simulated_index_bytes": index_bytes,
                               "simulate_s": round(time.perf_counter() - started, 1)}
        for mode in ("pack_list", "whole_index"):
            firsts, totals, metas = [], [], []
            for i in range(args.repeat):
                dest = work / f"out-{mode}-{i}"
                repo = Repository.open(LocalStore(str(store_dir)), cache_dir=work / f"c-{mode}{i}")
                hook = _FirstByte()
                t0 = time.perf_counter()
                if mode == "whole_index":
                    repo.refresh_index()  # what a pull does without a pack list
                pull(repo, sid, dest, progress=hook)
                totals.append(time.perf_counter() - t0)
                firsts.append((hook.at or time.perf_counter()) - t0)
                # Everything read that is not the version's own bytes: pack list, footers, index,
                # snapshot root and tree nodes.
                metas.append(repo.store.bytes_down
                             - args.version_mib * 1024 * 1024)
                shutil.rmtree(dest)
            out[mode] = {"first_byte_s": _stats(firsts), "total_s": _stats(totals),
                         "metadata_bytes": int(statistics.median(metas))}
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("metadata")
    m.add_argument("--files", type=int, default=100_000)
    m.add_argument("--versions", type=int, default=5)
    m.add_argument("--modes", default="clustered,scattered")
    p = sub.add_parser("push")
    p.add_argument("--files", type=int, default=100_000)
    p.add_argument("--versions", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--scratch", default=None)
    p.add_argument("--skip-gc", action="store_true", help="pushes only (gc is task D's row)")
    p.add_argument("--store-format", type=int, default=2, choices=(1, 2),
                   help="1: the format-1 baseline on the same machine")
    g = sub.add_parser("gc")
    g.add_argument("--files", type=int, default=100_000)
    g.add_argument("--versions", type=int, default=100)
    g.add_argument("--repeat", type=int, default=3)
    g.add_argument("--scratch", default=None)
    g.add_argument("--keep", default=None,
                   help="make (or reuse) the synthetic store in this folder and keep it")
    x = sub.add_parser("index")
    x.add_argument("--chunks", type=int, default=8_750_000)
    x.add_argument("--chunk-kib", type=int, default=1200, help="10 TB / 8.75 M chunks")
    x.add_argument("--lookups", type=int, default=200_000)
    x.add_argument("--modes", default="dict,table")
    x.add_argument("--scratch", default=None)
    x.add_argument("--keep", default=None,
                   help="make (or reuse) the simulated store in this folder and keep it")
    f = sub.add_parser("fresh-pull")
    f.add_argument("--version-mib", type=int, default=2048)
    f.add_argument("--simulated-tib", type=float, default=1.0)
    f.add_argument("--repeat", type=int, default=3)
    f.add_argument("--scratch", default=None)
    c = sub.add_parser("_child")
    c.add_argument("op")
    c.add_argument("argv", nargs="*")
    args = parser.parse_args()
    if args.cmd == "_child":
        child(args)
        return
    run = {"metadata": metadata, "push": push_bench, "gc": gc_bench, "index": index_bench,
           "fresh-pull": fresh_pull}[args.cmd]
    print(json.dumps(run(args), indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
