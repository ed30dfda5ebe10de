"""Run one cpv push or pull through the engine API against S3 and print the result as JSON.

The benchmark runs every tool, cpv included, as a child process, so wall time, peak RSS and CPU
seconds (``os.wait4``) are measured the same way for all of them; interpreter start-up and imports
are part of cpv's time, as they are part of ``aws``'s or ``dvc``'s.

    python benchmarks/cpv_driver.py push --endpoint URL --bucket B --prefix P --cache-dir C SRC
    python benchmarks/cpv_driver.py pull --endpoint URL --bucket B --prefix P --cache-dir C \
        --snapshot ID DEST
    python benchmarks/cpv_driver.py verify --endpoint URL --bucket B --prefix P --cache-dir C \
        --snapshot ID .          # deep verify of one snapshot (the path is ignored)

Credentials come from the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
AWS_DEFAULT_REGION), as for any user of ``cpv``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from cpv.engine import Repository, pull, push, verify  # noqa: E402
from cpv.store import open_store  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("op", choices=("push", "pull", "verify"))
    parser.add_argument("path", type=Path, help="tree to push, or folder to pull into")
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--cache-dir", type=Path, required=True)
    parser.add_argument("--snapshot", help="snapshot id to pull")
    args = parser.parse_args(argv)

    started = time.monotonic()
    store = open_store(f"s3://{args.bucket}/{args.prefix}", endpoint_url=args.endpoint)
    try:
        repo = Repository.init(store, cache_dir=args.cache_dir)
        if args.op == "push":
            r = push(repo, args.path)
            out: dict[str, object] = {
                "snapshot_id": r.snapshot_id,
                "files": r.files,
                "total_bytes": r.total_bytes,
                "hashed_bytes": r.hashed_bytes,
                "new_bytes": r.new_bytes,
                "uploaded_bytes": r.uploaded_bytes,
                "chunks_new": r.chunks_new,
                "chunks_reused": r.chunks_reused,
                "packs_written": r.packs_written,
                "requests": r.requests,
                "seconds": r.seconds,
                "dedup_ratio": r.dedup_ratio,
            }
        elif args.op == "verify":
            if not args.snapshot:
                parser.error("verify needs --snapshot")
            v = verify(repo, snapshot_ids=[args.snapshot], deep=True)
            out = {
                "ok": v.ok,
                "chunks_checked": v.chunks_checked,
                "bytes_read": v.bytes_read,
                "requests": repo.store.request_count,
                "seconds": v.seconds,
            }
            if not v.ok:
                sys.stderr.write(v.summary() + "\n")
                return 1
        else:
            if not args.snapshot:
                parser.error("pull needs --snapshot")
            p = pull(repo, args.snapshot, args.path)
            out = {
                "snapshot_id": p.snapshot_id,
                "files": p.files,
                "files_written": p.files_written,
                "total_bytes": p.total_bytes,
                "downloaded_bytes": p.downloaded_bytes,
                "local_bytes": p.local_bytes,
                "chunks_fetched": p.chunks_fetched,
                "requests": p.requests,
                "seconds": p.seconds,
            }
    finally:
        store.close()
    out["driver_seconds"] = time.monotonic() - started
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
