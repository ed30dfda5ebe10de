"""Choose cpv's FastCDC parameters, and how to read files for chunking, by measuring.

Run: ``python benchmarks/chunk_params.py --size-mib 512`` (about 2-4 minutes on 2 cores).
Prints Markdown tables; the results and the decision are in ``docs/chunking.md``.

Part 1, per candidate (min / pyfastcdc avg / max), on an in-memory "safetensors-like" file (an
8-byte header length, a JSON header, then float32 tensors of log-uniform sizes 1-64 MiB):

  (a) chunk + blake3 throughput: one thread on one buffer, and two threads on two buffers (if the
      GIL were held, two threads would be no faster than one);
  (b) dedup: bytes of new chunks / file size after overwriting ~10 % of the tensors in place with
      new values (several trials with different tensors), and after the JSON header grew by
      100 bytes (which shifts every tensor: safetensors offsets are relative to the data start);
  (c) chunk count per GiB and mean chunk size (index and snapshot size).

Part 2, with the chosen parameters, on real files in ``--tmp`` (deleted afterwards), warm (just
read) and cold (evicted with ``posix_fadvise(DONTNEED)``): cpv's ``iter_file_chunks`` (preadv
into a reused page-aligned buffer + ``cut_buf``) against pyfastcdc's ``cut_stream`` and
``cut_file`` (mmap), each with blake3 per chunk, one file on one thread and two files on two
threads; plus whole-file ``hash_file`` (blake3 mmap, all threads) against a 1-thread read loop.

Numbers are MB/s = 10**6 bytes/s, median of ``--runs`` runs (individual runs in brackets).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from pyfastcdc import FastCDC

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cpv.engine.chunking import (
    DEFAULT_CHUNKER,
    ChunkerParams,
    iter_buffer_chunks,
    iter_file_chunks,
    new_read_buffer,
)
from cpv.engine.hashing import Hasher, chunk_id, hash_file

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# How a strategy reads a file: (path, read buffer) -> (offset, chunk) pairs.
Strategy = Callable[[Path, memoryview], Iterator[tuple[int, memoryview]]]

CANDIDATES: dict[str, ChunkerParams] = {
    "256K/768K/4M": ChunkerParams(min_size=256 * KiB, avg_size=768 * KiB, max_size=4 * MiB),
    "256K/1M/4M": ChunkerParams(min_size=256 * KiB, avg_size=1 * MiB, max_size=4 * MiB),
    "512K/1.5M/8M": ChunkerParams(min_size=512 * KiB, avg_size=1536 * KiB, max_size=8 * MiB),
    "512K/2M/8M": ChunkerParams(min_size=512 * KiB, avg_size=2 * MiB, max_size=8 * MiB),
    "1M/3M/16M": ChunkerParams(min_size=1 * MiB, avg_size=3 * MiB, max_size=16 * MiB),
    "1M/4M/16M": ChunkerParams(min_size=1 * MiB, avg_size=4 * MiB, max_size=16 * MiB),
}


# ----------------------------------------------------------------------------------- helpers


def mbps(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e6


def measure(fn: Callable[[], int], runs: int, before: Callable[[], None] | None = None) -> str:
    """Median MB/s of ``runs`` calls of fn (which returns the bytes it processed)."""
    rates = []
    for _ in range(runs):
        if before is not None:
            before()
        t0 = time.perf_counter()
        n = fn()
        rates.append(mbps(n, time.perf_counter() - t0))
    runs_s = " / ".join(f"{r:,.0f}" for r in rates)
    return f"**{statistics.median(rates):,.0f}** ({runs_s})"


def in_threads(*fns: Callable[[], int]) -> int:
    """Run each fn on its own thread at once; total bytes processed."""
    results = [0] * len(fns)

    def run(i: int) -> None:
        results[i] = fns[i]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(results)


def chunk_buffer(mv: memoryview, params: ChunkerParams) -> int:
    """Chunk and hash one in-memory buffer; bytes seen."""
    return consume(iter_buffer_chunks(mv, params))


def chunk_file(strategy: Strategy, path: Path, buf: memoryview) -> int:
    """Chunk and hash one file with ``strategy``; bytes seen."""
    return consume(strategy(path, buf))


def consume(chunks: Iterable[tuple[int, memoryview]]) -> int:
    """Hash every chunk like the engine does; bytes seen."""
    n = 0
    for _offset, data in chunks:
        chunk_id(data)
        n += len(data)
    return n


def chunk_table(buf: memoryview, params: ChunkerParams) -> dict[bytes, int]:
    return {chunk_id(d): len(d) for _o, d in iter_buffer_chunks(buf, params)}


def random_bytes(n: int, rng: random.Random) -> bytearray:
    """Weights-like bytes: float32 N(0, 0.02) if numpy is there, else uniform random bytes."""
    try:
        import numpy as np
    except ImportError:
        return bytearray(os.urandom(n))
    gen = np.random.default_rng(rng.getrandbits(64))
    return bytearray((gen.standard_normal(n // 4, dtype=np.float32) * 0.02).tobytes())


# ----------------------------------------------------------------------- safetensors-like file


@dataclass
class Tensor:
    name: str
    offset: int  # relative to the start of the data section
    size: int


def make_tensors(total: int, rng: random.Random, sizes: str) -> list[Tensor]:
    tensors: list[Tensor] = []
    offset = 0
    while offset < total:
        if sizes == "loguniform":  # many small tensors, a few large: mean ~15 MiB
            size = int(math.exp(rng.uniform(math.log(1 * MiB), math.log(64 * MiB))))
        else:  # uniform: mean ~32 MiB
            size = rng.randint(1 * MiB, 64 * MiB)
        size = size // 4 * 4
        size = min(size, total - offset)
        tensors.append(Tensor(f"model.layers.{len(tensors)}.weight", offset, size))
        offset += size
    return tensors


def header_bytes(tensors: list[Tensor], extra: int = 0) -> bytes:
    meta = {
        t.name: {
            "dtype": "F32",
            "shape": [t.size // 4],
            "data_offsets": [t.offset, t.offset + t.size],
        }
        for t in tensors
    }
    meta["__metadata__"] = {"format": "pt", "note": "x" * extra}
    raw = json.dumps(meta, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


@dataclass
class Checkpoint:
    tensors: list[Tensor]
    header: bytes
    data: bytearray  # header + tensor data


def make_checkpoint(size: int, rng: random.Random, sizes: str) -> Checkpoint:
    tensors = make_tensors(size, rng, sizes)
    header = header_bytes(tensors)
    data = bytearray(header)
    data += random_bytes(size, rng)
    return Checkpoint(tensors, header, data)


def overwrite_tensors(
    ck: Checkpoint, fraction: float, rng: random.Random
) -> tuple[bytearray, int, int]:
    """A copy with whole tensors (about ``fraction`` of the bytes) replaced.

    Returns the copy, the bytes changed and the number of changed regions (runs of adjacent
    changed tensors: each region costs about the same extra upload, whatever its length).
    """
    new = bytearray(ck.data)
    target = fraction * (len(ck.data) - len(ck.header))
    changed = 0
    chosen: set[int] = set()
    order = list(range(len(ck.tensors)))
    rng.shuffle(order)
    for i in order:
        t = ck.tensors[i]
        if changed >= target:
            break
        if changed + t.size > target * 1.25:  # keep close to the target
            continue
        start = len(ck.header) + t.offset
        new[start : start + t.size] = random_bytes(t.size, rng)
        changed += t.size
        chosen.add(i)
    regions = sum(1 for i in chosen if i - 1 not in chosen)
    return new, changed, regions


def grow_header(ck: Checkpoint, extra: int) -> bytearray:
    header = header_bytes(ck.tensors, extra=extra)
    return bytearray(header) + ck.data[len(ck.header) :]


# ---------------------------------------------------------------------------------- part 1


def part1(size: int, trials: int, runs: int, seed: int, sizes: str) -> None:
    rng = random.Random(seed)
    t0 = time.perf_counter()
    base = make_checkpoint(size, rng, sizes)
    base_mv = memoryview(base.data)
    mean_tensor = statistics.mean(t.size for t in base.tensors)
    print(
        f"data: {len(base.data) / MiB:,.0f} MiB, {len(base.tensors)} tensors ({sizes} 1-64 MiB, "
        f"mean {mean_tensor / MiB:.1f} MiB), header {len(base.header)} B; "
        f"generated in {time.perf_counter() - t0:.1f} s\n"
    )
    old = {name: chunk_table(base_mv, params) for name, params in CANDIDATES.items()}
    # uploaded[name] = list of (changed fraction, uploaded fraction, extra bytes per region)
    uploaded: dict[str, list[tuple[float, float, float]]] = {name: [] for name in CANDIDATES}
    for _ in range(trials):  # one variant in memory at a time
        new_data, changed, regions = overwrite_tensors(base, 0.10, rng)
        new_mv = memoryview(new_data)
        for name, params in CANDIDATES.items():
            new = chunk_table(new_mv, params)
            up = sum(n for cid, n in new.items() if cid not in old[name])
            uploaded[name].append(
                (changed / len(new_data), up / len(new_data), (up - changed) / max(regions, 1))
            )
        del new_mv, new_data
    grown = grow_header(base, 100)
    grown_up = {}
    for name, params in CANDIDATES.items():
        new = chunk_table(memoryview(grown), params)
        grown_up[name] = sum(n for cid, n in new.items() if cid not in old[name])
    del grown
    other = make_checkpoint(size, rng, sizes)  # second buffer for the two-thread runs
    other_mv = memoryview(other.data)
    print(
        f"| params min/avg/max | mean chunk | chunks per GiB | chunk+hash 1 thread MB/s "
        f"| 2 buffers / 2 threads MB/s | 10 % overwrite ({trials} trials): changed -> uploaded, "
        f"mean (min-max) | extra per changed region | header +100 B: uploaded |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for name, params in CANDIDATES.items():
        one = measure(partial(chunk_buffer, base_mv, params), runs)
        two = measure(
            partial(
                in_threads,
                partial(chunk_buffer, base_mv, params),
                partial(chunk_buffer, other_mv, params),
            ),
            runs,
        )
        mean = len(base.data) / len(old[name])
        res = uploaded[name]
        ups = [u for _c, u, _e in res]
        extra_chunks = statistics.mean(e for _c, _u, e in res) / mean
        print(
            f"| {name} | {mean / MiB:.2f} MiB | {GiB / mean:,.0f} | {one} | {two} "
            f"| {statistics.mean(c for c, _u, _e in res):.1%} -> **{statistics.mean(ups):.1%}** "
            f"({min(ups):.1%}-{max(ups):.1%}) "
            f"| {extra_chunks * mean / MiB:.1f} MiB = {extra_chunks:.1f} mean chunks "
            f"| {grown_up[name] / MiB:.1f} MiB ({grown_up[name] / len(base.data):.2%}) |"
        )
    print()


# ---------------------------------------------------------------------------------- part 2


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def warm(path: Path) -> None:
    with open(path, "rb", buffering=0) as f:
        buf = bytearray(8 * MiB)
        while f.readinto(buf):
            pass


def write_file(path: Path, size: int, rng: random.Random) -> None:
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 64 * MiB)
            f.write(random_bytes(n, rng))
            left -= n
        f.flush()
        os.fsync(f.fileno())


def strategy_cpv(
    params: ChunkerParams, *, drop_cache: bool = True
) -> Callable[[Path, memoryview], Iterator[tuple[int, memoryview]]]:
    return lambda path, buf: iter_file_chunks(path, params, buffer=buf, drop_cache=drop_cache)


def strategy_stream(
    params: ChunkerParams,
) -> Callable[[Path, memoryview], Iterator[tuple[int, memoryview]]]:
    def run(path: Path, _buf: memoryview) -> Iterator[tuple[int, memoryview]]:
        cdc = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size)
        with open(path, "rb", buffering=0) as f:
            for c in cdc.cut_stream(f):
                yield c.offset, c.data

    return run


def strategy_mmap(
    params: ChunkerParams,
) -> Callable[[Path, memoryview], Iterator[tuple[int, memoryview]]]:
    def run(path: Path, _buf: memoryview) -> Iterator[tuple[int, memoryview]]:
        cdc = FastCDC(params.avg_size, min_size=params.min_size, max_size=params.max_size)
        for c in cdc.cut_file(path):
            yield c.offset, c.data

    return run


def hash_read_loop(path: Path, buf: memoryview) -> int:
    h = Hasher()
    fd = os.open(path, os.O_RDONLY)
    n = 0
    try:
        while True:
            got = os.preadv(fd, (buf,), n)
            if not got:
                return n
            h.update(buf[:got])
            n += got
    finally:
        os.close(fd)


def part2(size: int, runs: int, seed: int, tmp: Path, params: ChunkerParams, idle_s: float) -> None:
    rng = random.Random(seed)
    a, b = tmp / "cpv-bench-a", tmp / "cpv-bench-b"
    t0 = time.perf_counter()
    write_file(a, size, rng)
    write_file(b, size, rng)
    print(
        f"files: 2 x {size / MiB:,.0f} MiB in {tmp}, written in {time.perf_counter() - t0:.1f} s; "
        f"params {params.min_size // KiB}K/{params.avg_size // KiB}K/{params.max_size // KiB}K\n"
    )
    bufs = [new_read_buffer(params), new_read_buffer(params)]
    strategies = {
        "cpv iter_file_chunks (preadv + cut_buf), drop_cache=True": strategy_cpv(params),
        "cpv iter_file_chunks, drop_cache=False": strategy_cpv(params, drop_cache=False),
        "pyfastcdc cut_stream (FileIO.readinto)": strategy_stream(params),
        "pyfastcdc cut_file (mmap)": strategy_mmap(params),
    }
    # All three must agree on the cut points, or the comparison is meaningless.
    ref = [(o, len(d)) for o, d in strategy_cpv(params)(a, bufs[0])]
    for name, strat in strategies.items():
        got = [(o, len(d)) for o, d in strat(a, bufs[0])]
        assert got == ref, f"{name} cuts differently"

    def cold() -> None:
        evict(a)
        evict(b)

    def hot() -> None:
        warm(a)
        warm(b)

    print(
        "| strategy (chunk + blake3 per chunk) | warm, 1 file | warm, 2 files / 2 threads "
        "| cold, 1 file | cold, 2 files / 2 threads |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, strat in strategies.items():
        cells = []
        for prep in (hot, cold):
            cells.append(measure(partial(chunk_file, strat, a, bufs[0]), runs, prep))
            cells.append(
                measure(
                    partial(
                        in_threads,
                        partial(chunk_file, strat, a, bufs[0]),
                        partial(chunk_file, strat, b, bufs[1]),
                    ),
                    runs,
                    prep,
                )
            )
        print(f"| {name} | {cells[0]} | {cells[1]} | {cells[2]} | {cells[3]} |")
    print()
    if idle_s:

        def cold_idle() -> None:
            evict(a)
            time.sleep(idle_s)

        print(f"| strategy | cold + {idle_s:.0f} s idle (fresh page-cache memory), 1 file |")
        print("|---|---:|")
        for name, strat in strategies.items():
            cell = measure(partial(chunk_file, strat, a, bufs[0]), 2, cold_idle)
            print(f"| {name} | {cell} |")
        print()
    hbuf = new_read_buffer(params, size=8 * MiB + params.max_size + 4096)[: 8 * MiB]
    print("| whole-file hash | warm | cold |")
    print("|---|---:|---:|")
    for name, fn in {
        "hash_file (blake3 update_mmap, max_threads=AUTO)": lambda: (hash_file(a), size)[1],
        "Hasher + preadv 8 MiB loop (1 thread)": lambda: hash_read_loop(a, hbuf),
    }.items():
        print(f"| {name} | {measure(fn, runs, hot)} | {measure(fn, runs, cold)} |")
    print()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=512, help="part 1 checkpoint size")
    ap.add_argument("--io-mib", type=int, default=1024, help="part 2 file size (two files)")
    ap.add_argument("--trials", type=int, default=10, help="10 %% overwrite trials")
    ap.add_argument(
        "--sizes",
        nargs="+",
        choices=["loguniform", "uniform"],
        default=["loguniform", "uniform"],
        help="tensor size distribution(s) between 1 and 64 MiB",
    )
    ap.add_argument("--runs", type=int, default=3, help="timed runs per cell (median)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument(
        "--idle-s", type=float, default=0.0, help="if > 0, also cold runs after this idle time"
    )
    ap.add_argument("--skip-part1", action="store_true")
    ap.add_argument("--skip-part2", action="store_true")
    args = ap.parse_args()
    print(
        f"# chunk_params.py  (python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f})\n"
    )
    if not args.skip_part1:
        for sizes in args.sizes:
            part1(args.size_mib * MiB, args.trials, args.runs, args.seed, sizes)
    if not args.skip_part2:
        with tempfile.TemporaryDirectory(prefix="cpv-chunkbench-", dir=args.tmp) as tmp:
            part2(args.io_mib * MiB, args.runs, args.seed, Path(tmp), DEFAULT_CHUNKER, args.idle_s)
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
