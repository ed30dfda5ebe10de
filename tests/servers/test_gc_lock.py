"""The gc lock holds on servers that ignore conditional writes (invariant 6).

rclone ``serve s3``, the JuiceFS gateway and s3rver answer a ``PUT If-None-Match: *`` with 200 and
overwrite: a lock taken with a conditional write alone let two gcs hold it at once. GCLock now
asks the probe and uses lock files with a re-check there.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpv.engine.locks import (
    GC_LOCK_KEY,
    GC_LOCKFILE_PREFIX,
    GCLock,
    live_gc_lock,
    wait_while_gc_runs,
)
from cpv.errors import StoreLockedError
from cpv.store.memory import MemoryStore
from cpv.store.s3 import S3Store
from tests.servers.compat import CompatServer

ROOT = Path(__file__).resolve().parents[2]


def _store(server: CompatServer, prefix: str | None = None) -> S3Store:
    return S3Store(client=server.client(), bucket=server.bucket,
                   prefix=prefix or f"l-{uuid.uuid4().hex[:12]}", owns_client=True)


@pytest.fixture(params=["rclone", "juicefs"])
def ignoring_server(request: pytest.FixtureRequest) -> CompatServer:
    """A server that silently ignores If-None-Match."""
    server: CompatServer = request.getfixturevalue(f"{request.param}_server")
    return server


@pytest.fixture
def two_stores(ignoring_server: CompatServer) -> Iterator[tuple[S3Store, S3Store]]:
    """Two adapters (two processes' worth of clients) on one prefix."""
    prefix = f"l-{uuid.uuid4().hex[:12]}"
    first, second = _store(ignoring_server, prefix), _store(ignoring_server, prefix)
    yield first, second
    first.close()
    second.close()


@pytest.mark.integration
def test_the_server_really_ignores_conditional_writes(
    two_stores: tuple[S3Store, S3Store],
) -> None:
    """What made the old lock unsafe: the conditional protocol lets both in here."""
    first, second = two_stores
    a = GCLock(first, conditional_writes=True, settle_s=0)
    b = GCLock(second, conditional_writes=True, settle_s=0)  # no 412: both "hold" locks/gc
    b.release()
    a.release()


@pytest.mark.integration
def test_second_gc_is_refused_on_a_server_that_ignores_if_none_match(
    two_stores: tuple[S3Store, S3Store],
) -> None:
    first, second = two_stores
    with GCLock(first, settle_s=0.1) as held:
        assert not held.conditional and held.key.startswith(GC_LOCKFILE_PREFIX)
        with pytest.raises(StoreLockedError, match=r"locked by gc .* pid \d+") as info:
            GCLock(second, settle_s=0.1)
        assert "wait for that gc" in info.value.hint
        # The refused gc left nothing behind, and the holder still holds.
        assert [o.key for o in first.list("locks/")] == [held.key]
        held.check_held()
        assert live_gc_lock(second) is not None
    assert list(first.list("locks/")) == []
    with GCLock(second, settle_s=0.1):
        pass


@pytest.mark.integration
@pytest.mark.slow
def test_gc_processes_never_hold_the_lock_together(
    ignoring_server: CompatServer, tmp_path: Path
) -> None:
    """Three gc processes contend for the lock in loops; their holding times never overlap."""
    prefix = f"l-{uuid.uuid4().hex[:12]}"
    out = tmp_path / "held.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"AWS_CONFIG_FILE": str(tmp_path / "none"),
                "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
                "AWS_EC2_METADATA_DISABLED": "true", "PYTHONPATH": str(ROOT)})
    args = [sys.executable, "-m", "tests.servers.gc_contender", ignoring_server.endpoint_url,
            ignoring_server.access_key, ignoring_server.secret_key, ignoring_server.bucket,
            prefix, str(out), "6", "0.3"]
    procs = [subprocess.Popen(args, env=env, cwd=ROOT) for _ in range(3)]
    for proc in procs:
        assert proc.wait(timeout=240) == 0
    lines = out.read_text().splitlines()
    held = sorted((float(a), float(b)) for _, a, b in (ln.split() for ln in lines
                                                      if ln.startswith("held")))
    assert len(lines) == 18
    assert held, "no contender ever got the lock"
    assert len(held) < 18, "no contention happened; the test proves nothing"
    for (_, end), (start, _) in itertools.pairwise(held):
        assert start >= end, f"two gcs held the lock at once: {held}"


# -- the lock-file protocol on its own (memory store, no server) --------------------------------


def test_lock_file_protocol_refuses_breaks_only_stale_and_releases() -> None:
    store = MemoryStore()
    # A gc that stopped refreshing (suspended); with stale_s=0 its lock is abandoned at once.
    dead = GCLock(store, conditional_writes=False, settle_s=0, refresh_s=3600)
    with pytest.raises(StoreLockedError, match="locked by gc") as info:
        GCLock(store, conditional_writes=False, settle_s=0, stale_s=0)
    assert "break-stale-lock" in info.value.hint
    taker = GCLock(store, conditional_writes=False, settle_s=0, stale_s=0, break_stale=True)
    assert [o.key for o in store.list("locks/")] == [taker.key]
    # The dead gc comes back: its refresher must not take the lock back behind the breaker.
    dead._refresher.refresh_once()
    assert dead._refresher.lost
    with pytest.raises(StoreLockedError, match="lost its lock"):
        dead.check_held()
    taker.check_held()
    taker.release()
    dead.release()
    assert list(store.list("locks/")) == []


def test_the_two_protocols_exclude_each_other() -> None:
    store = MemoryStore()
    with GCLock(store, conditional_writes=True), pytest.raises(StoreLockedError):
        GCLock(store, conditional_writes=False, settle_s=0)
    with GCLock(store, conditional_writes=False, settle_s=0):
        with pytest.raises(StoreLockedError):
            GCLock(store, conditional_writes=True)
        assert not store.exists(GC_LOCK_KEY)  # the refused one cleaned up after itself


def test_pushes_wait_for_a_lock_file_gc_too() -> None:
    store: Any = MemoryStore()
    with (
        GCLock(store, conditional_writes=False, settle_s=0),
        pytest.raises(StoreLockedError, match="held the store for too long"),
    ):
        wait_while_gc_runs(store, timeout_s=0.2, poll_s=0.05)
    wait_while_gc_runs(store, timeout_s=0.2, poll_s=0.05)
