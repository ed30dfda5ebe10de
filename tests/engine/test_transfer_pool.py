"""The engine's one task pool and the range fetcher that pull and deep verify share.

Real threads, a real S3 server for the fetcher; no sleeps stand in for synchronisation except
where the assertion is "this did not happen within a while".
"""

from __future__ import annotations

import dataclasses
import threading
import time
from pathlib import Path

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.engine.transfer import INTERRUPT_GRACE_S, BufferPool, FetchConcurrency, TaskPool
from cpv.errors import TransferError
from cpv.store import MiB
from cpv.store.memory import MemoryStore
from cpv.store.s3 import S3Store

from .conftest import LIMITS, make_repo, make_tree, tree_digest


def test_submit_blocks_while_workers_and_backlog_are_busy() -> None:
    gate = threading.Event()
    with TaskPool(1, name="t", backlog=1) as pool:
        pool.submit(gate.wait)
        pool.submit(lambda: None)  # queued: the backlog's one slot
        third_in = threading.Event()

        def third() -> None:
            pool.submit(lambda: None)
            third_in.set()

        t = threading.Thread(target=third)
        t.start()
        assert not third_in.wait(0.3), "a third task was accepted beyond workers + backlog"
        gate.set()
        assert third_in.wait(5)
        t.join()
        pool.join()


def test_first_failure_cancels_queued_tasks_and_is_what_the_operation_raises() -> None:
    ran: list[int] = []
    gate = threading.Event()

    def fail() -> None:
        gate.wait(5)
        raise ValueError("boom")

    def queue_behind_failure() -> None:
        with TaskPool(1, name="t", backlog=20) as pool:
            pool.submit(fail)
            for i in range(10):
                pool.submit(ran.append, i)
            gate.set()
            pool.join()

    def submit_after_failure() -> None:
        with TaskPool(1, name="t") as pool:
            pool.submit(fail)
            deadline = time.monotonic() + 5
            while not pool.cancelled and time.monotonic() < deadline:
                time.sleep(0.01)
            pool.submit(ran.append, 99)

    with pytest.raises(ValueError, match="boom"):
        queue_behind_failure()
    assert ran == []
    # A producer that submits after the failure is stopped; the pool still reports the cause.
    with pytest.raises(ValueError, match="boom"):
        submit_after_failure()
    assert ran == []


def test_serial_mode_runs_tasks_in_order_on_the_caller() -> None:
    seen: list[tuple[int, int]] = []
    def note(i: int) -> None:
        seen.append((i, threading.get_ident()))

    with TaskPool(4, name="t", serial=True) as pool:
        lane = pool.lane(3, name="u")
        for i in range(5):
            (lane if i % 2 else pool).submit(note, i)
        pool.join()
        lane.join()
    assert [i for i, _ in seen] == [0, 1, 2, 3, 4]
    assert {ident for _, ident in seen} == {threading.get_ident()}


def test_a_failure_in_one_lane_cancels_the_others() -> None:
    started = threading.Event()
    stopped = threading.Event()

    def long_task(pool: TaskPool) -> None:
        started.set()
        while not pool.cancelled:
            time.sleep(0.01)
        stopped.set()

    def fail() -> None:
        started.wait(5)
        raise RuntimeError("upload broke")

    def run() -> None:
        with TaskPool(1, name="hash") as pool:
            pool.submit(long_task, pool)
            pool.lane(1, name="upload").submit(fail)
            pool.join()

    with pytest.raises(RuntimeError, match="upload broke"):
        run()
    assert stopped.is_set()


def test_interrupt_leaves_within_the_grace_period_even_if_a_task_does_not_stop() -> None:
    stuck = threading.Event()
    started = threading.Event()

    def deaf() -> None:  # a request that takes long, and never looks at the pool
        started.set()
        stuck.wait(10)

    interrupted_at: list[float] = []

    def run() -> None:
        with TaskPool(2, name="t", backlog=50) as pool:
            for _ in range(50):
                pool.submit(deaf)
            started.wait(5)
            interrupted_at.append(time.monotonic())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run()
    took = time.monotonic() - interrupted_at[0]
    stuck.set()
    assert took < INTERRUPT_GRACE_S + 0.5, f"leaving took {took:.2f} s"


def test_cancelled_pool_refuses_new_work() -> None:
    with TaskPool(2, name="t") as pool:
        pool.cancel()
        with pytest.raises(TransferError, match="cancelled"):
            pool.submit(print)


@pytest.mark.integration
def test_deep_verify_reads_coalesced_ranges_not_one_get_per_chunk(
    s3_store: S3Store, tmp_path: Path
) -> None:
    src = make_tree(tmp_path / "src", big=4 * MiB, small=60)
    repo = make_repo(s3_store, tmp_path / "c")
    push(repo, src, limits=LIMITS)
    chunks = len(repo.index)
    assert chunks > 60

    checker = Repository.open(s3_store)
    before = checker.store.requests.get("get", 0)
    shallow = verify(checker, limits=LIMITS)
    shallow_gets = checker.store.requests.get("get", 0) - before
    before = checker.store.requests.get("get", 0)
    deep = verify(checker, deep=True, limits=LIMITS)
    deep_gets = checker.store.requests.get("get", 0) - before

    assert shallow.ok and deep.ok
    assert deep.bytes_read >= 4 * MiB
    data_gets = deep_gets - shallow_gets
    # LIMITS.max_range is 1 MiB: a few ranges per pack, not one GET per chunk.
    assert data_gets <= deep.bytes_read // LIMITS.max_range + 2 * len(list(s3_store.list("packs/")))
    assert data_gets * 5 < chunks


def test_serial_mode_pushes_pulls_and_verifies_on_one_thread(
    memory_store: MemoryStore, tmp_path: Path
) -> None:
    serial = dataclasses.replace(LIMITS, serial=True)
    src = make_tree(tmp_path / "src")
    repo = make_repo(memory_store, tmp_path / "c")
    before = threading.active_count()
    sid = push(repo, src, limits=serial).snapshot_id
    pull(repo, sid, tmp_path / "out", limits=serial)
    assert verify(repo, deep=True, limits=serial).ok
    assert threading.active_count() == before  # no worker thread was started
    assert tree_digest(tmp_path / "out") == tree_digest(src)


class _Clock:
    """A clock the test moves by hand: the throughput a window sees is exactly what we say."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _window(c: FetchConcurrency, clock: _Clock, *, seconds: float, nbytes: int) -> None:
    """Finish one measuring window (2 x level ranges of ``nbytes``) in ``seconds``."""
    n = 2 * c.level
    for _ in range(n):
        c.acquire(lambda: False)
        clock.now += seconds / n
        c.release(nbytes)


def test_fetch_concurrency_doubles_while_throughput_grows_then_keeps_the_best() -> None:
    clock = _Clock()
    c = FetchConcurrency(4, 32, clock=clock)
    _window(c, clock, seconds=1.0, nbytes=100)  # 800 B/s at 4
    assert (c.level, c.settled) == (8, False)
    _window(c, clock, seconds=1.0, nbytes=100)  # 1600 B/s at 8: doubling paid, try 16
    assert (c.level, c.settled) == (16, False)
    _window(c, clock, seconds=1.0, nbytes=55)  # 1760 B/s at 16: +10 %, not worth the threads
    assert (c.level, c.settled) == (8, True)
    _window(c, clock, seconds=10.0, nbytes=1)  # once settled, noise changes nothing
    assert c.level == 8
    assert [lvl for lvl, _ in c.levels_tried] == [4, 8, 16]


def test_fetch_concurrency_stays_at_the_pool_size_and_never_exceeds_its_level() -> None:
    clock = _Clock()
    c = FetchConcurrency(4, 2, clock=clock)  # a pool of 2 workers caps the start
    assert (c.level, c.settled) == (2, True)
    c.acquire(lambda: False)
    c.acquire(lambda: False)
    third_in = threading.Event()
    stop = threading.Event()

    def third() -> None:
        try:
            c.acquire(stop.is_set)
        except TransferError:
            return
        third_in.set()

    t = threading.Thread(target=third)
    t.start()
    assert not third_in.wait(0.3), "a third range went on the wire at level 2"
    c.release(1)
    assert third_in.wait(5)
    t.join()


def test_buffer_pool_maps_a_buffer_only_when_all_mapped_ones_are_in_use() -> None:
    pool = BufferPool(8, 1 * MiB)
    try:
        for _ in range(20):  # one at a time: one buffer serves every use
            pool.release(pool.acquire(lambda: False))
        assert pool.made == 1
        held = [pool.acquire(lambda: False) for _ in range(3)]
        assert pool.made == 3
        for b in held:
            pool.release(b)
    finally:
        pool.close()
