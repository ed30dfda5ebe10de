"""Lazy reads: one tensor of a large safetensors checkpoint, from a version, on an empty cache.

Target (issue 13, item 4): reading one 4 MiB tensor from a 2 GiB safetensors checkpoint of a
version, with an empty cache, transfers at most 16 MiB from the store and takes well under a
second on loopback.

Run: ``python benchmarks/lazy_read.py`` (about 1-2 minutes on 2 cores, 2 GiB of scratch disk
twice: the checkpoint and the server's copy; both are deleted at the end).

Steps: start SeaweedFS (``benchmarks/server.py``, with its Prometheus counters); write a
safetensors file of ``--size-gib`` GiB made of float32 tensors of ``--tensor-mib`` MiB filled
with numpy random numbers (streamed tensor by tensor, so memory stays small); push it with the
engine (default chunker); then ``--repeat`` times, each with a new Repository and a new, empty
cache folder (as a fresh machine), ``cpv.lazy.load_tensors`` of one tensor chosen at random.
Each read is timed from opening the store (config, index, snapshot included) to the numpy array
in hand, and its transfer is measured twice: cpv's own byte counter and the server's
``sent_bytes`` counter for the bucket. The tensor is checked against safetensors' own reader of
the local file. A second read of the same tensor with the now warm cache is reported too.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import struct
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

import numpy as np  # noqa: E402
from server import BenchServer  # noqa: E402

from cpv.engine import Repository, push  # noqa: E402
from cpv.lazy import Mount, Resolver, load_tensors  # noqa: E402
from cpv.store import GiB, MiB  # noqa: E402
from cpv.store.s3 import S3Store  # noqa: E402


def write_safetensors(path: Path, *, size: int, tensor_bytes: int, seed: int) -> list[str]:
    """A safetensors file of about ``size`` bytes of float32 tensors; returns tensor names."""
    count = max(1, size // tensor_bytes)
    side = tensor_bytes // 4
    names = [f"layers.{i}.weight" for i in range(count)]
    header: dict[str, Any] = {"__metadata__": {"format": "np"}}
    for i, name in enumerate(names):
        header[name] = {"dtype": "F32", "shape": [side],
                        "data_offsets": [i * tensor_bytes, (i + 1) * tensor_bytes]}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned, as safetensors writes it
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        fh.write(struct.pack("<Q", len(raw)))
        fh.write(raw)
        for _ in names:
            fh.write(rng.standard_normal(side, dtype=np.float32).tobytes())
    return names


def fixed(mount: Mount) -> Resolver:
    """A resolver for one snapshot: the benchmark measures the store, not the Git lookup."""

    def resolve(version: str) -> list[Mount]:
        return [mount]

    return resolve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--tensor-mib", type=float, default=4.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: $TMPDIR)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="cpv-lazy-bench-", dir=args.tmp))
    try:
        return run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> int:
    from safetensors import safe_open

    server = BenchServer.start(scratch / "server")
    try:
        client = server.server.client()
        store = S3Store(client=client, bucket=server.server.bucket, prefix="lazy")
        src = scratch / "model"
        src.mkdir()
        weights = src / "model.safetensors"
        t0 = time.monotonic()
        names = write_safetensors(weights, size=int(args.size_gib * GiB),
                                  tensor_bytes=int(args.tensor_mib * MiB), seed=1)
        size = weights.stat().st_size
        print(f"wrote {size / GiB:.2f} GiB, {len(names)} tensors, in "
              f"{time.monotonic() - t0:.1f} s", file=sys.stderr)
        t0 = time.monotonic()
        with Repository.init(store, cache_dir=scratch / "push-cache") as repo:
            snapshot_id = push(repo, src).snapshot_id
        print(f"pushed in {time.monotonic() - t0:.1f} s", file=sys.stderr)

        rng = random.Random(7)
        cold: list[dict[str, float]] = []
        warm: list[dict[str, float]] = []
        for i in range(args.repeat):
            name = rng.choice(names)
            cache = scratch / f"cache-{i}"
            for phase, results in (("cold", cold), ("warm", warm)):
                before = server.counters()
                started = time.perf_counter()
                with Repository.open(store, cache_dir=cache) as repo:
                    mount = Mount("model", repo, snapshot_id)
                    got = load_tensors("bench", "model/model.safetensors", [name],
                                       resolver=fixed(mount))[name]
                    seconds = time.perf_counter() - started
                    cpv_bytes = repo.store.bytes_down
                    requests = repo.store.request_count
                after = server.counters().minus(before)
                with safe_open(str(weights), framework="np") as st:
                    assert np.array_equal(got, st.get_tensor(name)), name
                results.append({"seconds": seconds, "cpv_bytes": cpv_bytes,
                                "server_sent_bytes": after.sent_bytes, "requests": requests})
                print(f"{phase} {name}: {seconds * 1000:.0f} ms, {cpv_bytes / MiB:.2f} MiB "
                      f"(server sent {after.sent_bytes / MiB:.2f} MiB), {requests} requests",
                      file=sys.stderr)
        store.close()
    finally:
        server.stop()

    def summary(rows: list[dict[str, float]]) -> dict[str, float]:
        return {
            "median_seconds": statistics.median(r["seconds"] for r in rows),
            "max_seconds": max(r["seconds"] for r in rows),
            "max_cpv_mib": max(r["cpv_bytes"] for r in rows) / MiB,
            "max_server_sent_mib": max(r["server_sent_bytes"] for r in rows) / MiB,
            "max_requests": max(r["requests"] for r in rows),
        }

    report = {"file_gib": size / GiB, "tensors": len(names), "tensor_mib": args.tensor_mib,
              "repeat": args.repeat, "cold": summary(cold), "warm": summary(warm)}
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        for phase in ("cold", "warm"):
            s = report[phase]
            print(f"{phase}: median {s['median_seconds'] * 1000:.0f} ms, max "
                  f"{s['max_seconds'] * 1000:.0f} ms; at most {s['max_cpv_mib']:.2f} MiB "
                  f"(server: {s['max_server_sent_mib']:.2f} MiB) in {s['max_requests']:.0f} "
                  "requests")
    ok = report["cold"]["max_server_sent_mib"] <= 16 and report["cold"]["max_seconds"] < 1.0
    print("target met" if ok else "TARGET MISSED", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
