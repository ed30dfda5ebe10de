"""Network faults between cpv and the real S3 server: retried within budget, or a clear error and
nothing half-written that a later run cannot repair.

The proxy (``faultproxy.py``) sits on 127.0.0.1 in front of SeaweedFS; clients get small retry
budgets and timeouts so failures surface in seconds.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.engine.gc import collect_garbage
from cpv.errors import ObjectNotFoundError, StoreError, TransferError, TransientStoreError
from cpv.store import MiB
from tests.engine.conftest import LIMITS, make_repo, make_tree, rand_bytes, tree_digest
from tests.s3server import S3Server

from .faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.integration


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    with FaultProxy(s3_server.endpoint_url) as p:
        yield p


@pytest.fixture
def via_proxy(make_s3_store: Any, proxy: FaultProxy, s3_store: Any) -> Any:
    """An S3Store on the same bucket/prefix as ``s3_store``, but through the proxy."""
    return make_s3_store(
        endpoint_url=proxy.url, prefix=s3_store.prefix, max_attempts=3,
        connect_timeout=2.0, read_timeout=1.5,
    )


def test_throttling_and_server_errors_are_retried(
    via_proxy: Any, proxy: FaultProxy, s3_store: Any, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src", big=6 * MiB)
    repo = make_repo(via_proxy, tmp_path / "c")
    proxy.add(Fault("slowdown", method="PUT", path="/packs/", times=2))
    proxy.add(Fault("internal", method="PUT", path="/index/", times=1))
    proxy.add(Fault("unavailable", method="PUT", path="/snapshots/", times=1))
    sid = push(repo, src, limits=LIMITS).snapshot_id
    assert len(proxy.faults_applied()) == 4
    proxy.add(Fault("internal", method="GET", path="/packs/", times=2))
    proxy.add(Fault("slowdown", method="GET", path="/snapshots/", times=1))
    out = tmp_path / "out"
    pull(Repository.open(via_proxy), sid, out, limits=LIMITS)
    assert len(proxy.faults_applied()) == 7
    assert tree_digest(out) == tree_digest(src)
    assert verify(Repository.open(s3_store), deep=True).ok  # checked directly, not via proxy


def test_connection_reset_mid_body_resumes_the_read(
    via_proxy: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src", big=6 * MiB)
    repo = make_repo(via_proxy, tmp_path / "c")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    # Two: a read is tried BODY_ATTEMPTS (3) times, and the footer reads of a fresh machine run
    # in parallel, so with more, one read could take three in a row (a timing-dependent test).
    proxy.add(Fault("reset_mid_body", method="GET", path="/packs/", times=2))
    proxy.add(Fault("reset_mid_body", method="GET", path="/snapshots/", times=1))
    proxy.add(Fault("reset_before", method="GET", path="/index/", times=1))
    out = tmp_path / "out"
    pull(Repository.open(via_proxy, cache_dir=tmp_path / "fresh"), sid, out, limits=LIMITS)
    assert len(proxy.faults_applied("reset_mid_body")) == 3
    assert tree_digest(out) == tree_digest(src)


def test_stalled_requests_time_out_and_are_retried(
    via_proxy: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src", big=2 * MiB, small=5)
    repo = make_repo(via_proxy, tmp_path / "c")
    proxy.add(Fault("stall", method="PUT", path="/packs/", times=1, stall_s=3.0))
    sid = push(repo, src, limits=LIMITS).snapshot_id
    proxy.add(Fault("stall", method="GET", path="/packs/", times=1, stall_s=3.0))
    out = tmp_path / "out"
    pull(Repository.open(via_proxy), sid, out, limits=LIMITS)
    assert len(proxy.faults_applied("stall")) == 2
    assert tree_digest(out) == tree_digest(src)


def test_lost_answers_to_executed_writes_are_harmless(
    via_proxy: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    """The server did the write but the answer never came: the retry must not turn success
    into an error, even for create-if-absent writes (config, the gc lock)."""
    proxy.add(Fault("drop_response", method="PUT", path="/config", times=1))
    repo = Repository.init(via_proxy, cache_dir=tmp_path / "c")
    proxy.add(Fault("drop_response", method="PUT", path="/index/", times=1))
    proxy.add(Fault("drop_response", method="PUT", path="/snapshots/", times=1))
    src = make_tree(tmp_path / "src", big=MiB, small=3)
    sid = push(repo, src, limits=LIMITS).snapshot_id
    proxy.add(Fault("drop_response", method="PUT", path="/locks/gc", times=1))
    report = collect_garbage(repo, live_snapshots=[sid], grace_period_s=0, limits=LIMITS)
    assert report.snapshots_deleted == []
    assert len(proxy.faults_applied("drop_response")) == 4
    assert verify(Repository.open(via_proxy), deep=True).ok


def test_persistent_write_failure_is_clear_and_a_rerun_repairs(
    via_proxy: Any, proxy: FaultProxy, s3_store: Any, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(rand_bytes(9 * MiB, 3))
    repo = make_repo(via_proxy, tmp_path / "c", pack_size=4 * MiB)
    # The first pack gets through, then the store starts throttling every pack write for good.
    proxy.add(Fault("slowdown", method="PUT", path="/packs/", times=None))
    with pytest.raises((TransientStoreError, TransferError)) as info:
        push(repo, src, limits=LIMITS)
    assert "SlowDown" in str(info.value) or "failed" in str(info.value)
    assert isinstance(info.value, StoreError) or info.value.hint
    # Invariant 1: nothing references what did not make it.
    assert list(s3_store.list("snapshots/")) == []
    assert list(s3_store.list("index/")) == []
    assert list(s3_store.list_multipart("packs/")) == []
    proxy.clear()
    result = push(Repository.open(via_proxy, cache_dir=tmp_path / "c"), src, limits=LIMITS)
    assert verify(Repository.open(s3_store), deep=True).ok
    out = tmp_path / "out"
    pull(Repository.open(s3_store), result.snapshot_id, out, limits=LIMITS)
    assert (out / "a.bin").read_bytes() == (src / "a.bin").read_bytes()


def test_persistent_read_failure_is_clear_and_keeps_the_old_file(
    via_proxy: Any, proxy: FaultProxy, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "w.bin").write_bytes(rand_bytes(3 * MiB, 4))
    repo = make_repo(via_proxy, tmp_path / "c")
    sid = push(repo, src, limits=LIMITS).snapshot_id
    out = tmp_path / "out"
    out.mkdir()
    (out / "w.bin").write_bytes(b"previous version")
    proxy.add(Fault("reset_mid_body", method="GET", path="/packs/", times=None))
    with pytest.raises(TransientStoreError, match="failed 3 times") as info:
        pull(Repository.open(via_proxy), sid, out, limits=LIMITS)
    assert "re-run" in info.value.hint
    assert (out / "w.bin").read_bytes() == b"previous version"
    assert [p.name for p in out.iterdir()] == ["w.bin"]
    proxy.clear()
    pull(Repository.open(via_proxy), sid, out, limits=LIMITS)
    assert (out / "w.bin").read_bytes() == (src / "w.bin").read_bytes()


def test_an_error_answer_cut_in_its_body_is_asked_again_then_a_store_error(
    via_proxy: Any, proxy: FaultProxy, s3_store: Any
) -> None:
    """botocore reads an error's body whole, after its retry loop, and lets a reset there through
    unwrapped and unretried (rclone does it to a gc lock deleted while a contender reads it): the
    store asks again, and only a cut that persists reaches the caller, as a store error."""
    s3_store.put("locks/there", b"{}")
    proxy.add(Fault("reset_mid_body", method="GET", path="/locks/", times=2))
    with pytest.raises(ObjectNotFoundError):
        via_proxy.get("locks/nothing-here")
    assert len(proxy.faults_applied("reset_mid_body")) == 2
    proxy.add(Fault("reset_mid_body", method="GET", path="/locks/", times=1))
    assert via_proxy.get("locks/there") == b"{}"
    proxy.add(Fault("reset_mid_body", method="GET", path="/locks/", times=None))
    with pytest.raises(TransientStoreError, match="connection broke"):
        via_proxy.get("locks/nothing-here")
