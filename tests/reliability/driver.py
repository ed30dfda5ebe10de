"""A tiny cpv process for tests that kill, race or inspect a real process.

``python -m tests.reliability.driver <command> <store url> ...`` with the S3 endpoint in
``CPV_TEST_ENDPOINT`` and credentials in the standard ``AWS_*`` environment variables (the same
path a user's shell takes). Prints one JSON line with the result on success.

Commands::

    push STORE SRC CACHE [--root WORKSPACE] -> {"snapshot_id", "new_bytes", "uploaded_bytes"}
    pull STORE SNAPSHOT DEST CACHE  -> {"files_written"}
    gc   STORE LIVE_IDS(comma) GRACE_S [--break] -> {"packs_deleted", ...}
    forget STORE KEEP_LAST          -> {"forgotten"}
    repair STORE SRC                -> {"ok", "chunks_repaired"}

``--root`` records the pushed snapshot as a root of the store (``engine/roots.py``).

``CPV_TEST_LOG=<file>`` sends cpv's logging at DEBUG to that file.
``CPV_TEST_DEFAULTS=1`` runs push and pull with the default ``TransferLimits`` (as a user would)
instead of the suite's small ones, and prints the line ``moving`` (flushed) when the first bytes
are uploaded or downloaded, for tests that interrupt a transfer in mid-flight. A
``KeyboardInterrupt`` (SIGINT) ends the driver with exit code 130, as it ends ``cpv``.
``CPV_TEST_KILL_AT=N`` makes the process SIGKILL itself at its N-th store operation (before it
is sent when ``CPV_TEST_KILL_WHEN=before``, after it returned otherwise): a kill -9 at an exact,
reproducible point. Every result carries ``ops``, the number of store operations made.
``CPV_TEST_KILL_KEY=<prefix>`` SIGKILLs it before its first operation on a key starting with
``<prefix>`` (``snapshots/``: after every pack, index and node is durable, before the root).
The line ``started`` is printed (flushed) once the store is open, for time-based kills.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cpv.engine import Repository, TransferLimits, pull, push
from cpv.engine.gc import collect_garbage
from cpv.engine.repair import repair
from cpv.engine.roots import ForgetPolicy, RootInfo, forget
from cpv.progress import NULL_PROGRESS, Phase, Progress, Unit
from cpv.store import ObjectStore, open_store
from tests.engine.conftest import LIMITS


def open_test_store(url: str) -> ObjectStore:
    endpoint = os.environ.get("CPV_TEST_ENDPOINT")
    return open_store(url, endpoint_url=endpoint if url.startswith("s3://") else None)


class KillingStore:
    """Counts store operations and kills this process at the chosen one."""

    def __init__(self, inner: ObjectStore, kill_at: int, before: bool) -> None:
        self._inner = inner
        self.url, self.caps = inner.url, inner.caps
        self.kill_at = kill_at
        self.before = before
        self.ops = 0
        self._lock = threading.Lock()
        self.kill_key = os.environ.get("CPV_TEST_KILL_KEY", "")

    def _call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        with self._lock:
            self.ops += 1
            n = self.ops
        if self.kill_key and args and isinstance(args[0], str) and args[0].startswith(
                self.kill_key):
            os.kill(os.getpid(), signal.SIGKILL)
        if n == self.kill_at and self.before:
            os.kill(os.getpid(), signal.SIGKILL)
        result = fn(*args, **kw)
        if n == self.kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return result

    def put(self, key: str, data: Any, *, if_absent: bool = False) -> None:
        self._call(self._inner.put, key, data, if_absent=if_absent)

    def get(self, key: str) -> bytes:
        return bytes(self._call(self._inner.get, key))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return bytes(self._call(self._inner.get_range, key, start, length))

    def get_range_into(self, key: str, start: int, buf: memoryview) -> None:
        self._call(self._inner.get_range_into, key, start, buf)

    def stat(self, key: str) -> Any:
        return self._call(self._inner.stat, key)

    def exists(self, key: str) -> bool:
        return bool(self._call(self._inner.exists, key))

    def list(self, prefix: str = "") -> Any:
        return iter(self._call(lambda: list(self._inner.list(prefix))))

    def delete(self, key: str) -> None:
        self._call(self._inner.delete, key)

    def start_multipart(self, key: str) -> Any:
        upload = self._call(self._inner.start_multipart, key)
        outer = self

        class Upload:
            def __init__(self) -> None:
                self.key, self.upload_id = upload.key, upload.upload_id

            def upload_part(self, n: int, data: Any) -> None:
                outer._call(upload.upload_part, n, data)

            def complete(self) -> None:
                outer._call(upload.complete)

            def abort(self) -> None:
                outer._call(upload.abort)

        return Upload()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class FirstBytes:
    """A progress sink that prints ``moving`` once, when the first bytes go over the wire."""

    def __init__(self) -> None:
        self._said = False

    def begin(self, phase: Phase, *, total: int | None, unit: Unit = "B") -> None:
        pass

    def advance(self, phase: Phase, amount: int) -> None:
        if phase in ("upload", "download") and amount and not self._said:
            self._said = True
            sys.stdout.write("moving\n")
            sys.stdout.flush()

    def set_total(self, phase: Phase, total: int) -> None:
        pass

    def end(self, phase: Phase) -> None:
        pass


def main(argv: list[str]) -> int:
    try:
        return run(argv)
    except KeyboardInterrupt:
        # As a CLI should: the engine has cleaned up, so skip the interpreter's teardown (a
        # full GC of botocore's objects took up to 1.5 s on a loaded machine).
        sys.stderr.write("interrupted\n")
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(130)


def run(argv: list[str]) -> int:
    log_file = os.environ.get("CPV_TEST_LOG")
    if log_file:
        logging.basicConfig(filename=log_file, level=logging.DEBUG)
    command, url = argv[0], argv[1]
    base = open_test_store(url)
    kill_at = int(os.environ.get("CPV_TEST_KILL_AT", "0"))
    killing = KillingStore(base, kill_at, os.environ.get("CPV_TEST_KILL_WHEN") == "before")
    store: Any = killing
    sys.stdout.write("started\n")
    sys.stdout.flush()
    defaults = os.environ.get("CPV_TEST_DEFAULTS") == "1"
    limits = TransferLimits() if defaults else LIMITS
    progress: Progress = FirstBytes() if defaults else NULL_PROGRESS
    out: dict[str, object]
    if command == "push":
        repo = Repository.open(store, cache_dir=Path(argv[3]))
        root = None
        if "--root" in argv:
            workspace = argv[argv.index("--root") + 1]
            root = RootInfo(kind="model", name="model", workspace=workspace)
        result = push(repo, Path(argv[2]), limits=limits, progress=progress, record_root=root)
        out = {
            "snapshot_id": result.snapshot_id,
            "new_bytes": result.new_bytes,
            "uploaded_bytes": result.uploaded_bytes,
            "tree_nodes_new": result.tree_nodes_new,
        }
    elif command == "pull":
        repo = Repository.open(store, cache_dir=Path(argv[4]))
        pulled = pull(repo, argv[2], Path(argv[3]), limits=limits, progress=progress)
        out = {"files_written": pulled.files_written}
    elif command == "gc":
        repo = Repository.open(store)
        live = [s for s in argv[2].split(",") if s]
        report = collect_garbage(
            repo, live_snapshots=live, grace_period_s=float(argv[3]),
            break_stale_lock="--break" in argv, lock_stale_s=0.0, lock_refresh_s=1.0,
            limits=LIMITS,
        )
        out = {"packs_deleted": len(report.packs_deleted), "freed": report.bytes_freed}
    elif command == "forget":
        forgot = forget(Repository.open(store), ForgetPolicy(keep_last=int(argv[2])))
        out = {"forgotten": len(forgot.forgotten)}
    elif command == "repair":
        fixed = repair(Repository.open(store), sources=[Path(argv[2])], limits=LIMITS)
        out = {"ok": fixed.ok, "chunks_repaired": fixed.chunks_repaired}
    else:
        raise SystemExit(f"unknown command {command}")
    out["ops"] = killing.ops
    sys.stdout.write(json.dumps(out) + "\n")
    base.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
