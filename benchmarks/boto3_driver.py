"""The "plain boto3" peer: what a team writes itself instead of adopting a tool.

    python benchmarks/boto3_driver.py push SRC --endpoint URL --bucket B --prefix P \
        [--part-mib 16] [--concurrency 16] [--threads 16]
    python benchmarks/boto3_driver.py pull DEST --endpoint URL --bucket B --prefix P ...

Files of at least ``--part-mib`` go through ``upload_file``/``download_file`` (s3transfer,
multipart, ``--concurrency`` threads per file, ``io_chunksize`` 8 MiB, which
/work/shared/notes/perf-limits.md measured 2.4x faster than the 256 KiB default on download).
Smaller files get one ``put_object``/``get_object`` each on a pool of ``--threads`` threads.
There is no "skip what is already there": every push uploads every file, as ``upload_file`` does.
The client uses boto3's default checksum settings (what a user gets). Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

MiB = 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("op", choices=("push", "pull"))
    parser.add_argument("path", type=Path)
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--bucket", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--part-mib", type=int, default=16)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)

    started = time.monotonic()
    part = args.part_mib * MiB
    pool = max(args.concurrency, args.threads) + 4
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=args.endpoint,
        config=Config(max_pool_connections=pool, s3={"addressing_style": "path"}),
    )
    transfer = TransferConfig(
        multipart_threshold=part,
        multipart_chunksize=part,
        max_concurrency=args.concurrency,
        io_chunksize=8 * MiB,
    )
    prefix = args.prefix.strip("/") + "/"
    files = 0
    total = 0
    if args.op == "push":
        root: Path = args.path
        paths = sorted(p for p in root.rglob("*") if p.is_file())
        big = [p for p in paths if p.stat().st_size >= part]
        small = [p for p in paths if p.stat().st_size < part]
        for p in big:
            client.upload_file(
                str(p), args.bucket, prefix + p.relative_to(root).as_posix(), Config=transfer
            )

        def put(p: Path) -> None:
            client.put_object(
                Bucket=args.bucket, Key=prefix + p.relative_to(root).as_posix(), Body=p.read_bytes()
            )

        with ThreadPoolExecutor(args.threads) as ex:
            list(ex.map(put, small))
        files = len(paths)
        total = sum(p.stat().st_size for p in paths)
    else:
        dest: Path = args.path
        objects: list[tuple[str, int]] = []
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=args.bucket, Prefix=prefix
        ):
            objects.extend((o["Key"], o["Size"]) for o in page.get("Contents", []))

        def target(key: str) -> Path:
            t = dest / key[len(prefix) :]
            t.parent.mkdir(parents=True, exist_ok=True)
            return t

        for key, size in objects:
            if size >= part:
                client.download_file(args.bucket, key, str(target(key)), Config=transfer)

        def get(key: str) -> None:
            body = client.get_object(Bucket=args.bucket, Key=key)["Body"].read()
            with open(target(key), "wb") as fh:
                fh.write(body)

        with ThreadPoolExecutor(args.threads) as ex:
            list(ex.map(get, [k for k, s in objects if s < part]))
        files = len(objects)
        total = sum(s for _, s in objects)
    client.close()
    out = {
        "files": files,
        "total_bytes": total,
        "driver_seconds": time.monotonic() - started,
        "pid": os.getpid(),
    }
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
