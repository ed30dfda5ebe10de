"""End to end on the embedded local store: push a generated checkpoint, change a tenth of it,
push again, pull both versions back and verify them. No cloud account needed.

    python examples/quickstart.py [--size-mib 256] [--dir ./cpv-quickstart]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import sys
from pathlib import Path

from cpv.engine import Repository, pull, push, verify
from cpv.engine.hashing import hash_file
from cpv.store.local import LocalStore

MiB = 1024 * 1024


def write_checkpoint(path: Path, size: int, *, seed: int = 0) -> list[tuple[int, int]]:
    """A safetensors-shaped file of random float32 tensors; returns the tensors' byte ranges."""
    rng = __import__("random").Random(seed)
    tensors, remaining = [], size
    while remaining > 0:
        n = min(remaining, rng.choice([1, 2, 4, 8, 16]) * MiB)
        tensors.append(n)
        remaining -= n
    header: dict[str, object] = {}
    offset = 0
    for i, n in enumerate(tensors):
        header[f"layer.{i}.weight"] = {
            "dtype": "F32",
            "shape": [n // 4],
            "data_offsets": [offset, offset + n],
        }
        offset += n
    raw_header = json.dumps(header).encode()
    ranges = []
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw_header)) + raw_header)
        base = f.tell()
        for n in tensors:
            ranges.append((base, n))
            f.write(os.urandom(n))
            base += n
    return ranges


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size-mib", type=int, default=256)
    ap.add_argument("--dir", type=Path, default=Path("cpv-quickstart"))
    args = ap.parse_args()
    work: Path = args.dir
    shutil.rmtree(work, ignore_errors=True)
    ckpt_dir = work / "checkpoint"
    ckpt_dir.mkdir(parents=True)
    ckpt = ckpt_dir / "model.safetensors"
    ranges = write_checkpoint(ckpt, args.size_mib * MiB)
    (ckpt_dir / "config.json").write_text(json.dumps({"hidden": 4096, "layers": len(ranges)}))

    repo = Repository.init(LocalStore(work / "store"), cache_dir=work / "cache")

    def show(label: str, r: object) -> None:
        print(f"{label:<28} " + ", ".join(f"{k}={v}" for k, v in r.items()))  # type: ignore[attr-defined]

    v1 = push(repo, ckpt_dir)
    show(
        "push v1",
        {
            "snapshot": v1.snapshot_id[:12],
            "files": v1.files,
            "MiB": v1.total_bytes // MiB,
            "uploaded_MiB": round(v1.uploaded_bytes / MiB, 1),
            "packs": v1.packs_written,
            "requests": v1.requests,
            "s": round(v1.seconds, 2),
        },
    )
    again = push(repo, ckpt_dir)
    show(
        "push unchanged",
        {
            "same_snapshot": again.snapshot_id == v1.snapshot_id,
            "uploaded_bytes": again.uploaded_bytes,
            "s": round(again.seconds, 3),
        },
    )

    # Fine-tune: overwrite about a tenth of the tensors in place.
    changed = 0
    with open(ckpt, "r+b") as f:
        for start, n in ranges[:: max(1, len(ranges) // max(1, len(ranges) // 10))]:
            if changed >= ckpt.stat().st_size // 10:
                break
            f.seek(start)
            f.write(os.urandom(n))
            changed += n
    v2 = push(repo, ckpt_dir)
    show(
        "push v2 (~10% changed)",
        {
            "changed_MiB": changed // MiB,
            "uploaded_MiB": round(v2.uploaded_bytes / MiB, 1),
            "share": f"{v2.uploaded_bytes / v2.total_bytes:.1%}",
            "reused_chunks": v2.chunks_reused,
            "s": round(v2.seconds, 2),
        },
    )

    out = work / "restore"
    p1 = pull(repo, v1.snapshot_id, out)
    show(
        "pull v1",
        {
            "files": p1.files_written,
            "downloaded_MiB": round(p1.downloaded_bytes / MiB, 1),
            "requests": p1.requests,
            "s": round(p1.seconds, 2),
        },
    )
    p2 = pull(repo, v2.snapshot_id, out)
    show(
        "pull v2 over v1",
        {
            "downloaded_MiB": round(p2.downloaded_bytes / MiB, 1),
            "reused_local_MiB": round(p2.local_bytes / MiB, 1),
            "s": round(p2.seconds, 2),
        },
    )
    identical = hash_file(out / "model.safetensors") == hash_file(ckpt)
    report = verify(repo, deep=True)
    show("verify --deep", {"result": report.summary()})
    print("restored v2 is byte-identical:", identical)
    return 0 if identical and report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
