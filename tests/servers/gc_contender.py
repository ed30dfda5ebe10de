"""One gc contender process for ``test_gc_lock.py``: take the gc lock in a loop, record when held.

``python -m tests.servers.gc_contender ENDPOINT KEY SECRET BUCKET PREFIX OUT ROUNDS HOLD_S``
appends one line per round to OUT: ``held <start> <end>`` (wall clock, same machine as the other
contenders) or ``refused``.
"""

from __future__ import annotations

import random
import sys
import time

import boto3

from cpv.engine.locks import GCLock
from cpv.errors import StoreLockedError
from cpv.store.s3 import S3Store, client_config


def main(argv: list[str]) -> int:
    endpoint, key, secret, bucket, prefix, out, rounds, hold_s = argv[1:9]
    client = boto3.session.Session(
        aws_access_key_id=key, aws_secret_access_key=secret, region_name="us-east-1"
    ).client("s3", endpoint_url=endpoint, config=client_config(path_style=True))
    store = S3Store(client=client, bucket=bucket, prefix=prefix)
    with open(out, "a", encoding="utf-8") as log:
        for _ in range(int(rounds)):
            try:
                with GCLock(store, settle_s=0.3, refresh_s=5.0) as lock:
                    start = time.time()
                    time.sleep(float(hold_s))
                    lock.check_held()
                    end = time.time()
                log.write(f"held {start} {end}\n")
            except StoreLockedError:
                log.write("refused\n")
            log.flush()
            time.sleep(random.uniform(0.0, 0.3))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
