"""Moving bytes in parallel with bounded memory: the one task pool, the uploader, the range fetcher.

:class:`TaskPool` is the only way the engine runs work on threads (STYLE rule 6). Each operation
(push, pull, verify, gc) opens one, as a context manager; parts that must not wait on each other
(hashing, part uploads, pack completion) get lanes of it. Submission blocks while a lane's
workers and backlog are busy, the first failure cancels everything queued, and running tasks see
the cancellation at their next :meth:`TaskPool.check` or buffer wait, so Ctrl-C or an error stops
a multi-GB transfer within a fraction of a second instead of after every queued job ran.

:class:`PackUploader` (push, gc) copies new chunks into fixed-size part buffers taken from a
:class:`BufferPool` and ships each full part as one part of a multipart upload while producers go
on chunking. Memory is bounded by the pool: when every buffer is in flight, ``add`` blocks, which
is the backpressure that keeps a 1 TB push inside a few hundred MiB (invariant 4). The first
failure stops everything: producers get the error at their next ``add``, open multipart uploads
are aborted, and no index or snapshot is written (invariant 1).

:func:`plan_ranges` and :func:`fetch_ranges` (pull, deep verify) coalesce wanted chunks into
ranged GETs, fetch them in parallel into reused buffers and check every chunk against its blake3
id before anyone sees it (invariant 2).
"""

from __future__ import annotations

import logging
import mmap
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec, TypeVar

from cpv.engine.hashing import chunk_id
from cpv.engine.index import Location, PackRecord
from cpv.engine.limits import PART_SIZE_RANGE as PART_SIZE_RANGE  # re-exported
from cpv.engine.limits import WORKERS_RANGE as WORKERS_RANGE
from cpv.engine.limits import TransferLimits as TransferLimits
from cpv.engine.packs import close_pack, new_pack_id, pack_entry, pack_key
from cpv.errors import CPVError, StoreError, TransferError
from cpv.progress import NULL_PROGRESS, Phase, Progress

if TYPE_CHECKING:
    from types import TracebackType

    from cpv.store import Buffer, MultipartUpload, ObjectInfo, ObjectStore, PendingUpload

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")


class BufferPool:
    """At most ``count`` page-aligned buffers, made on first need and then reused.

    Fresh memory is the dearest thing a transfer touches (a never-touched page costs more than
    the bytes copied into it: ``docs/benchmarks.md``, "Pull vs s5cmd and restic"), so a buffer
    is mapped only when every existing one is in use: a pull that settles on four ranges in
    flight touches five buffers, not the ``workers + 2`` it may use.
    """

    def __init__(self, count: int, size: int) -> None:
        if count < 1:
            raise ValueError("a buffer pool needs at least one buffer")
        self.size = size
        self._count = count
        self._maps: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self._free: queue.Queue[memoryview] = queue.Queue()

    @property
    def made(self) -> int:
        """How many buffers were mapped so far (never more than ``count``)."""
        return len(self._maps)

    def acquire(self, cancelled: Callable[[], bool]) -> memoryview:
        while True:
            try:
                return self._free.get_nowait()
            except queue.Empty:
                pass
            with self._lock:
                if len(self._maps) < self._count:
                    m = mmap.mmap(-1, self.size)
                    self._maps.append(m)
                    return memoryview(m)
            try:
                return self._free.get(timeout=0.2)
            except queue.Empty:
                if cancelled():
                    raise TransferError("transfer cancelled") from None

    def release(self, buf: memoryview) -> None:
        self._free.put(buf)

    def close(self) -> None:
        while True:
            try:
                self._free.get_nowait().release()
            except queue.Empty:
                break
        with self._lock:
            maps = list(self._maps)
        for m in maps:
            try:
                m.close()
            except BufferError:
                # A worker that was cancelled mid-request may still hold a view.
                log.debug("buffer still referenced at close; left to the GC")


INTERRUPT_GRACE_S: Final = 0.5
"""How long an interrupted operation waits for requests already on the wire before leaving
them to finish on their own: Ctrl-C must end a transfer within 2 s even when a slow server takes
seconds to answer the parts in flight."""


class _Workers:
    """Daemon worker threads fed from a queue: like ``ThreadPoolExecutor``, but abandonable.

    ``ThreadPoolExecutor`` threads are joined at interpreter exit, so a Ctrl-C could not end the
    process before every request in flight was answered. These are daemon threads: an interrupted
    operation waits :data:`INTERRUPT_GRACE_S` for them and then leaves; each finishes its one
    request, sees the cancellation and stops (or dies with the process).
    """

    def __init__(self, count: int, name: str) -> None:
        self._count = count
        self._name = name
        self._queue: queue.SimpleQueue[
            tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None
        ] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        fut: Future[T] = Future()
        with self._lock:
            if len(self._threads) < self._count:
                t = threading.Thread(
                    target=self._run, name=f"cpv-{self._name}-{len(self._threads)}", daemon=True
                )
                t.start()
                self._threads.append(t)
        self._queue.put((fut, fn, args, kwargs))
        return fut

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            fut, fn, args, kwargs = item
            del item
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the future, as an executor does
                fut.set_exception(exc)
            else:
                fut.set_result(result)
            del fut, fn, args, kwargs

    def shutdown(self, *, deadline: float | None) -> None:
        """Stop the threads once idle; wait for them until ``deadline`` (monotonic), or forever."""
        with self._lock:
            threads = list(self._threads)
            self._threads.clear()
            self._count = 0  # no new threads after shutdown
        for _ in threads:
            self._queue.put(None)
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                log.debug("%s still busy after the interrupt; left to finish on its own", t.name)


class _CancelledError(TransferError):
    """Raised inside an operation whose pool was cancelled; the pool reports the real cause."""

    def __init__(self) -> None:
        super().__init__("transfer cancelled")


class TaskPool:
    """One operation's worker threads: bounded submission, cancel on first failure, serial mode.

    The root pool is the operation; :meth:`lane` adds a separately sized group of workers that
    shares its cancellation (a part upload must never wait behind the hashing that feeds it).
    Leaving the root's ``with`` block with an exception (a failure, or ``KeyboardInterrupt`` on
    the main thread) cancels every queued task at once and waits only for the tasks already
    running, which poll :attr:`cancelled` between steps.
    """

    def __init__(
        self,
        workers: int,
        *,
        name: str,
        serial: bool = False,
        backlog: int | None = None,
        _root: TaskPool | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError("a task pool needs at least one worker")
        self.name = name
        self.workers = workers
        self.serial = serial
        self._root = _root or self
        self._executor = None if serial else _Workers(workers, name)
        # Queued + running tasks; submit blocks beyond it (bounded memory for queued work).
        self._slots = threading.Semaphore(workers + (workers if backlog is None else backlog))
        self._outstanding: set[Future[object]] = set()
        if _root is None:
            self._cond = threading.Condition()
            self._cancel_event = threading.Event()
            self._failure: BaseException | None = None
            self._lanes: list[TaskPool] = []
            self._deadline: float | None = None

    def lane(self, workers: int, *, name: str, backlog: int | None = None) -> TaskPool:
        """Another group of workers in this operation, cancelled with it; closed by the root."""
        root = self._root
        lane = TaskPool(workers, name=name, serial=self.serial, backlog=backlog, _root=root)
        root._lanes.append(lane)
        return lane

    @property
    def cancelled(self) -> bool:
        """True once the operation failed or was cancelled: running tasks should stop."""
        return self._root._cancel_event.is_set()

    def check(self) -> None:
        """Raise if the operation was cancelled; long tasks call it between steps."""
        if self._root._cancel_event.is_set():
            raise _CancelledError()

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        """Run ``fn`` on a worker; blocks while the lane's workers and backlog are all taken."""
        while not self._slots.acquire(timeout=0.1):
            self.check()
        if self._root._cancel_event.is_set():
            self._slots.release()
            raise _CancelledError()
        if self._executor is None:
            fut: Future[T] = Future()
            try:
                fut.set_result(fn(*args, **kwargs))
            except Exception as exc:  # noqa: BLE001 - handed to the future, as an executor does
                fut.set_exception(exc)
            finally:
                self._slots.release()
            self._record(fut)
            return fut
        fut = self._executor.submit(fn, *args, **kwargs)
        with self._root._cond:
            self._outstanding.add(fut)  # type: ignore[arg-type]
        fut.add_done_callback(self._task_done)  # type: ignore[arg-type]
        return fut

    def join(self) -> None:
        """Wait for every task submitted to this lane; raise the operation's first failure.

        The wait wakes up regularly, so ``KeyboardInterrupt`` reaches the main thread at once.
        """
        root = self._root
        with root._cond:
            while self._outstanding and not root._cancel_event.is_set():
                root._cond.wait(0.25)
        self._raise_failure()

    def wait_until(self, done: Callable[[], bool]) -> None:
        """Wait until ``done()`` holds (asked again as tasks finish); raise the first failure.

        For a caller that consumes results in batches while later tasks still run (a push
        encodes a folder once its files are hashed, not after the whole tree).
        """
        root = self._root
        with root._cond:
            while not done() and not root._cancel_event.is_set():
                root._cond.wait(0.25)
        self._raise_failure()
        if not done():
            raise _CancelledError()

    def cancel(self) -> None:
        """Stop the operation: drop queued tasks of every lane; running ones see ``cancelled``."""
        root = self._root
        root._cancel_event.set()
        with root._cond:
            pending = [f for p in (root, *root._lanes) for f in p._outstanding]
            root._cond.notify_all()
        for f in pending:
            f.cancel()

    def close(self, *, cancel: bool, interrupted: bool = False) -> None:
        """Shut the workers down (the root: every lane too), after cancelling if asked.

        After a failure, running tasks are waited for, so nothing is still writing when the
        error reaches the caller. After an interrupt (Ctrl-C), they get
        :data:`INTERRUPT_GRACE_S` in all and are then left behind.
        """
        if cancel or interrupted:
            self.cancel()
        deadline = self.interrupt_deadline() if interrupted else None
        lanes = list(reversed(self._root._lanes)) if self is self._root else []
        for pool in (*lanes, self):
            if pool._executor is not None:
                pool._executor.shutdown(deadline=deadline)

    def interrupt_deadline(self) -> float:
        """When an interrupted operation stops waiting: one grace period for all its lanes."""
        root = self._root
        with root._cond:
            if root._deadline is None:
                root._deadline = time.monotonic() + INTERRUPT_GRACE_S
            return root._deadline

    def _task_done(self, fut: Future[object]) -> None:
        self._slots.release()
        self._record(fut)

    def _record(self, fut: Future[T]) -> None:
        root = self._root
        exc = None if fut.cancelled() else fut.exception()
        with root._cond:
            self._outstanding.discard(fut)
            if exc is not None and root._failure is None and not root._cancel_event.is_set():
                root._failure = exc
            root._cond.notify_all()
        if exc is not None:
            self.cancel()

    def _raise_failure(self) -> None:
        root = self._root
        if root._failure is not None:
            raise root._failure
        if root._cancel_event.is_set():
            raise _CancelledError()

    def __enter__(self) -> TaskPool:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(cancel=exc_type is not None, interrupted=_is_interrupt(exc))
        # A producer stopped by the cancellation reports it; the cause is the first failure.
        if isinstance(exc, _CancelledError) and self._root._failure is not None:
            raise self._root._failure from None


@dataclass
class _OpenPack:
    pack_id: str
    entries: bytearray = field(default_factory=bytearray)  # packed footer entries
    size: int = 0
    buf: memoryview | None = None
    fill: int = 0
    part_number: int = 0
    upload: _LazyUpload | None = None
    parts: list[Future[None]] = field(default_factory=list)


class _LazyUpload:
    """A pack's multipart upload, created by the first part worker that needs it.

    Creating it on the hashing thread would stall chunking for a round trip per pack.
    """

    def __init__(self, owner: PackUploader, pack_id: str) -> None:
        self._owner = owner
        self.pack_id = pack_id
        self.key = pack_key(pack_id)
        self._lock = threading.Lock()
        self._upload: MultipartUpload | None = None

    @property
    def started(self) -> MultipartUpload | None:
        return self._upload

    def get(self) -> MultipartUpload:
        with self._lock:
            if self._upload is None:
                self._upload = self._owner._store.start_multipart(self.key)
                with self._owner._state_lock:
                    self._owner._open_uploads[self.pack_id] = self._upload
            return self._upload


class PackUploader:
    """Packs new chunks and uploads them; see the module docstring.

    Use as a context manager: leaving the block with an exception aborts everything in flight.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        pool: TaskPool,
        pack_size: int,
        limits: TransferLimits,
        progress: Progress = NULL_PROGRESS,
        dry_run: bool = False,
    ) -> None:
        self._store = store
        self._pack_size = pack_size
        self._part_size = limits.part_size
        self._progress = progress
        self._dry_run = dry_run
        # _lock serialises producers (and is held while they wait for a free buffer); workers
        # never take it. _state_lock guards what workers share: failures, uploads, records.
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._tasks = pool
        # Buffers already bound the parts in flight; the backlog only lets producers run ahead.
        self._pool = pool.lane(limits.workers, name="upload", backlog=2)
        # Completion waits on part futures of the upload lane, so it has its own lane: waiting
        # inside the upload lane could deadlock once every worker is a waiter.
        self._finisher = pool.lane(2, name="complete", backlog=limits.workers)
        self._buffers = BufferPool(limits.workers + 2, limits.part_size) if not dry_run else None
        self._current: _OpenPack | None = None
        self._open_uploads: dict[str, MultipartUpload] = {}
        self._pack_futures: list[Future[None]] = []
        self._records: list[PackRecord] = []
        self._failures: list[tuple[str, BaseException]] = []
        self._closed = False
        self.bytes_added = 0
        self.chunks_added = 0

    # -- producer side -------------------------------------------------------------------

    def add(self, chunk_id: bytes, data: memoryview) -> None:
        """Append one new chunk; blocks while every buffer is in flight."""
        with self._lock:
            self._raise_if_failed()
            pack = self._current
            if pack is None:
                pack = self._current = _OpenPack(new_pack_id())
            pack.entries += pack_entry(chunk_id, pack.size, len(data))
            pack.size += len(data)
            self.bytes_added += len(data)
            self.chunks_added += 1
            if self._dry_run:
                if pack.size >= self._pack_size:
                    self._records.append(
                        PackRecord(pack.pack_id, pack.size, packed=bytes(pack.entries)))
                    self._current = None
                return
            pos = 0
            while pos < len(data):
                if pack.buf is None:
                    assert self._buffers is not None
                    pack.buf = self._buffers.acquire(self._has_failed)
                    pack.fill = 0
                n = min(len(data) - pos, self._part_size - pack.fill)
                pack.buf[pack.fill : pack.fill + n] = data[pos : pos + n]
                pack.fill += n
                pos += n
                if pack.fill == self._part_size:
                    self._ship_part(pack)
            if pack.size >= self._pack_size:
                self._seal(pack)
                self._current = None

    def finish(self) -> list[PackRecord]:
        """Seal the last pack, wait for every upload; raise if anything failed."""
        with self._lock:
            self._raise_if_failed()
            if self._current is not None and self._current.entries:
                if self._dry_run:
                    p = self._current
                    self._records.append(PackRecord(p.pack_id, p.size, packed=bytes(p.entries)))
                else:
                    self._seal(self._current)
            self._current = None
        wait(self._pack_futures)
        with self._lock:
            self._raise_if_failed()
            return list(self._records)

    # -- internals -----------------------------------------------------------------------

    def _has_failed(self) -> bool:
        return bool(self._failures) or self._closed or self._tasks.cancelled

    def _raise_if_failed(self) -> None:
        if self._failures:
            raise self._error()
        if self._closed:
            raise TransferError("transfer cancelled")
        self._tasks.check()

    def _error(self) -> CPVError:
        """What the push reports: the first failure, as a CPVError."""
        key, exc = self._failures[0]
        if isinstance(exc, CPVError):
            return exc
        err = TransferError(f"upload of {key} failed: {exc}", failures=self._failures)
        err.__cause__ = exc
        return err

    def _fail(self, key: str, exc: BaseException) -> None:
        with self._state_lock:
            self._failures.append((key, exc))

    def _ship_part(self, pack: _OpenPack) -> None:
        assert pack.buf is not None
        assert self._buffers is not None
        if pack.upload is None:
            pack.upload = _LazyUpload(self, pack.pack_id)
        pack.part_number += 1
        buf, fill = pack.buf, pack.fill
        pack.buf, pack.fill = None, 0
        pack.parts.append(
            self._pool.submit(self._upload_part, pack.upload, pack.part_number, buf, fill)
        )

    def _upload_part(self, upload: _LazyUpload, number: int, buf: memoryview, fill: int) -> None:
        assert self._buffers is not None
        try:
            if self._has_failed():
                return
            upload.get().upload_part(number, buf[:fill])
            self._progress.advance("upload", fill)
        except Exception as exc:  # noqa: BLE001 - recorded, then re-raised as the push's error
            self._fail(upload.key, exc)
            # The same error the producers raise, whichever reaches the operation's pool first.
            raise self._error()  # noqa: B904 - the recorded failure, chained as recorded
        finally:
            self._buffers.release(buf)

    def _seal(self, pack: _OpenPack) -> None:
        """Close ``pack``: its last part carries the footer; complete once all parts are in."""
        packed = bytes(pack.entries)
        pack.entries = bytearray()
        footer = close_pack(packed)
        # One copy of the last part (join), not two (bytes(), then +): 16 MiB less at a peak.
        tail: bytes = (b"".join((pack.buf[: pack.fill], footer)) if pack.buf is not None
                       else footer)
        if pack.buf is not None:
            assert self._buffers is not None
            self._buffers.release(pack.buf)
            pack.buf = None
        record = PackRecord(pack.pack_id, pack.size + len(footer), packed=packed)
        self._pack_futures.append(self._finisher.submit(self._finish_pack, pack, tail, record))

    def _finish_pack(self, pack: _OpenPack, tail: bytes, record: PackRecord) -> None:
        key = pack_key(pack.pack_id)
        try:
            if pack.upload is None:
                # Small pack (a few small files): one PUT, no multipart round trips.
                self._store.put(key, tail)
            else:
                done, _ = wait(pack.parts)
                broken = any(f.cancelled() or f.exception() is not None for f in done)
                if broken or self._has_failed():
                    raise TransferError(f"parts of {key} failed")
                upload = pack.upload.get()
                upload.upload_part(pack.part_number + 1, tail)
                upload.complete()
                with self._state_lock:
                    self._open_uploads.pop(pack.pack_id, None)
            self._progress.advance("upload", len(tail))
            with self._state_lock:
                self._records.append(record)
        except BaseException as exc:
            if not isinstance(exc, TransferError):
                self._fail(key, exc)
            self._abort_upload(pack)
            if self._failures and isinstance(exc, Exception):
                raise self._error()  # noqa: B904 - the recorded failure, chained as recorded
            raise

    def _abort_upload(self, pack: _OpenPack) -> None:
        upload = pack.upload.started if pack.upload is not None else None
        if upload is None:
            return
        try:
            upload.abort()
        except CPVError as exc:
            log.warning("could not abort upload of %s (%s); 'cpv gc' removes it later",
                        upload.key, exc)
        with self._state_lock:
            self._open_uploads.pop(pack.pack_id, None)

    def close(self, *, cancel: bool, interrupted: bool = False) -> None:
        if cancel or interrupted:
            # No lock: a producer may hold _lock while it waits for a buffer, and this flag
            # is what makes it give up.
            self._closed = True
        if interrupted:
            # The user pressed Ctrl-C: parts in flight get the grace period to land, then every
            # open upload is aborted at once, with one more grace period for the answers. A
            # part still on the wire may outlive its abort on some servers: such an upload is
            # invisible garbage (nothing references it) that 'cpv gc' removes.
            self._pool.close(cancel=cancel, interrupted=True)
            self._finisher.close(cancel=cancel, interrupted=True)
            with self._state_lock:
                pending = list(self._open_uploads.values())
            aborts = _start_aborts(pending)
            _wait_aborts(aborts, deadline=self._tasks.interrupt_deadline() + INTERRUPT_GRACE_S)
        else:
            self._pool.close(cancel=cancel)
            self._finisher.close(cancel=cancel)
            with self._state_lock:
                pending = list(self._open_uploads.values())
            for upload in pending:
                _abort_one(upload)
        self._open_uploads.clear()
        if self._buffers is not None:
            self._buffers.close()

    def __enter__(self) -> PackUploader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close(cancel=exc_type is not None, interrupted=_is_interrupt(exc))


def _abort_one(upload: MultipartUpload) -> None:
    try:
        upload.abort()
    except CPVError as exc:
        log.warning("could not abort upload of %s (%s); 'cpv gc' removes it later", upload.key, exc)


def _start_aborts(uploads: list[MultipartUpload]) -> list[tuple[threading.Thread, str]]:
    """Abort ``uploads`` at once, each on a daemon thread (a busy server answers slowly)."""
    started = []
    for u in uploads:
        t = threading.Thread(target=_abort_one, args=(u,), name="cpv-abort", daemon=True)
        t.start()
        started.append((t, u.key))
    return started


def _wait_aborts(aborts: list[tuple[threading.Thread, str]], *, deadline: float) -> None:
    for t, key in aborts:
        t.join(max(0.0, deadline - time.monotonic()))
        if t.is_alive():
            log.info("upload of %s is still being aborted; 'cpv gc' removes it if not", key)


def _is_interrupt(exc: BaseException | None) -> bool:
    """Ctrl-C or an exit request: the user waits, so running requests are not waited for."""
    return exc is not None and not isinstance(exc, Exception)


@dataclass(frozen=True, slots=True)
class ChunkWant(Generic[T]):
    """One chunk to read from a pack, and what the caller needs to know about it (``ref``)."""

    chunk_id: bytes
    offset: int
    length: int
    ref: T


@dataclass(frozen=True, slots=True)
class PackRange(Generic[T]):
    """One ranged GET: ``length`` bytes of a pack from ``start``, holding ``wants`` in order."""

    pack_id: str
    start: int
    length: int
    wants: tuple[ChunkWant[T], ...]


def plan_ranges(
    by_pack: Mapping[str, Iterable[ChunkWant[T]]], limits: TransferLimits
) -> list[PackRange[T]]:
    """Coalesce each pack's wanted chunks into ranges of at most ``limits.max_range`` bytes.

    Neighbours closer than ``limits.range_gap`` share a request (the gap is read and dropped):
    a round trip costs more than a few hundred KiB of unwanted bytes. But a range never drops
    more bytes than it delivers: a sparse selection (every hundredth small file of a data set)
    would otherwise read most of the gaps between its files, many times what it asked for.
    """
    ranges: list[PackRange[T]] = []
    for pack_id, wanted in by_pack.items():
        group: list[ChunkWant[T]] = []
        end = useful = dropped = 0
        for w in sorted(wanted, key=lambda w: w.offset):
            gap = max(w.offset - end, 0)
            if group and (
                gap > limits.range_gap
                or w.offset + w.length - group[0].offset > limits.max_range
                or dropped + gap > useful + w.length
            ):
                ranges.append(PackRange(pack_id, group[0].offset, end - group[0].offset,
                                        tuple(group)))
                group = []
            if not group:
                end = useful = dropped = 0
            else:
                dropped += gap
            group.append(w)
            useful += w.length
            end = max(end, w.offset + w.length)
        if group:
            ranges.append(PackRange(pack_id, group[0].offset, end - group[0].offset, tuple(group)))
    return ranges


FETCH_START_WORKERS: Final = 4
"""Ranges a fetch starts with in flight; it adds more only while that raises the throughput."""

FETCH_GAIN: Final = 1.15
"""The throughput gain (15 %) a doubling of the ranges in flight must bring to be kept."""


class FetchConcurrency:
    """How many ranges are on the wire at once: measured, not fixed.

    Against a server on loopback or in the same rack, four ranges in flight already saturate
    what two cores can write to the page cache; more threads only add lock contention and
    buffers, i.e. CPU (``docs/benchmarks.md``, "Pull vs s5cmd and restic"). Against a distant
    endpoint every range waits a round trip, and throughput keeps growing with requests in
    flight. So a fetch starts at :data:`FETCH_START_WORKERS` and, after each window of
    ``2 * level`` finished ranges, compares the window's bytes per second with the last one:
    it doubles the level (up to the pool's workers) while a doubling brings at least
    :data:`FETCH_GAIN`, and otherwise goes back to the best level seen and stays there.
    """

    def __init__(
        self, start: int, most: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.most = max(1, most)
        self.level = max(1, min(start, self.most))
        self.settled = self.level >= self.most
        self.levels_tried: list[tuple[int, float]] = []
        """(level, bytes per second) of every finished window, for logs and tests."""
        self._clock = clock
        self._cond = threading.Condition()
        self._active = 0
        self._best = (self.level, 0.0)
        self._window_start: float | None = None
        self._window_bytes = 0
        self._window_done = 0

    def acquire(self, cancelled: Callable[[], bool]) -> None:
        """Wait until one more range may go on the wire (or the operation was cancelled)."""
        with self._cond:
            while self._active >= self.level:
                self._cond.wait(0.2)
                if cancelled():
                    raise _CancelledError()
            self._active += 1
            if self._window_start is None:
                self._window_start = self._clock()

    def release(self, nbytes: int) -> None:
        """A range is done (``nbytes`` moved; 0 if it failed): count it, maybe change level."""
        with self._cond:
            self._active -= 1
            if not self.settled and self._window_start is not None:
                self._window_bytes += nbytes
                self._window_done += 1
                if self._window_done >= 2 * self.level:
                    self._end_window()
            self._cond.notify_all()

    def _end_window(self) -> None:
        assert self._window_start is not None
        now = self._clock()
        rate = self._window_bytes / max(now - self._window_start, 1e-6)
        self.levels_tried.append((self.level, rate))
        best_level, best_rate = self._best
        if rate >= best_rate * FETCH_GAIN or not best_rate:
            self._best = (self.level, rate)
            if self.level < self.most:
                self.level = min(self.level * 2, self.most)
            else:
                self.settled = True
        else:
            self.level = best_level
            self.settled = True
        log.debug("%d ranges in flight: %.0f MB/s; now %d%s", self.levels_tried[-1][0],
                  rate / 1e6, self.level, " (settled)" if self.settled else "")
        self._window_start = now
        self._window_bytes = 0
        self._window_done = 0


def fetch_ranges(
    store: CountingStore | ObjectStore,
    ranges: Sequence[PackRange[T]],
    *,
    pool: TaskPool,
    deliver: Callable[[PackRange[T], memoryview], None],
    on_damaged: Callable[[ChunkWant[T], PackRange[T], bytes], None],
    on_unreadable: Callable[[PackRange[T], StoreError], None] | None = None,
    progress: Progress = NULL_PROGRESS,
    phase: Phase = "download",
) -> None:
    """Fetch ``ranges`` on ``pool``'s workers, check every chunk, hand each range to ``deliver``.

    ``deliver`` gets the range's bytes (a view into a reused buffer, valid only during the
    call) once every chunk in it matched its id. A chunk that does not match is fetched once
    more on its own (a flipped bit in transit should not fail a multi-GB pull); if it still does
    not match, ``on_damaged(want, range, actual_id)`` decides: raise to fail, return to go on
    (``deliver`` then still gets the range). A store error on a range goes to ``on_unreadable``
    if given (the range is then skipped), else fails the operation. Returns when all ranges are
    done; raises the first failure.
    """
    if not ranges:
        return
    biggest = max(r.length for r in ranges)
    buffers = BufferPool(min(pool.workers + 2, len(ranges) + 1), biggest)
    concurrency = FetchConcurrency(FETCH_START_WORKERS, pool.workers)
    try:
        for r in ranges:
            pool.submit(_fetch_range, store, r, buffers, concurrency, pool, deliver, on_damaged,
                        on_unreadable, progress, phase)
        pool.join()
    finally:
        buffers.close()
    if concurrency.levels_tried:
        log.debug("fetched %d ranges, %d in flight at the end", len(ranges), concurrency.level)


def _fetch_range(
    store: CountingStore | ObjectStore,
    r: PackRange[T],
    buffers: BufferPool,
    concurrency: FetchConcurrency,
    pool: TaskPool,
    deliver: Callable[[PackRange[T], memoryview], None],
    on_damaged: Callable[[ChunkWant[T], PackRange[T], bytes], None],
    on_unreadable: Callable[[PackRange[T], StoreError], None] | None,
    progress: Progress,
    phase: Phase,
) -> None:
    concurrency.acquire(lambda: pool.cancelled)
    delivered = False
    try:
        delivered = _fetch_range_into(store, r, buffers, pool, deliver, on_damaged,
                                      on_unreadable)
    finally:
        concurrency.release(r.length if delivered else 0)
    if delivered:
        progress.advance(phase, r.length)


def _fetch_range_into(
    store: CountingStore | ObjectStore,
    r: PackRange[T],
    buffers: BufferPool,
    pool: TaskPool,
    deliver: Callable[[PackRange[T], memoryview], None],
    on_damaged: Callable[[ChunkWant[T], PackRange[T], bytes], None],
    on_unreadable: Callable[[PackRange[T], StoreError], None] | None,
) -> bool:
    """Fetch, check and deliver one range; False if ``on_unreadable`` took it instead."""
    buf = buffers.acquire(lambda: pool.cancelled)
    try:
        view = buf[: r.length]
        key = pack_key(r.pack_id)
        try:
            store.get_range_into(key, r.start, view)
        except StoreError as exc:
            if on_unreadable is None:
                raise
            on_unreadable(r, exc)
            return False
        for w in r.wants:
            data = view[w.offset - r.start : w.offset - r.start + w.length]
            if chunk_id(data) == w.chunk_id:
                continue
            log.debug("chunk %s of pack %s failed verification; fetching again",
                      w.chunk_id.hex(), r.pack_id)
            pool.check()
            try:
                store.get_range_into(key, w.offset, data)
            except StoreError as exc:
                if on_unreadable is None:
                    raise
                on_unreadable(r, exc)
                return False
            actual = chunk_id(data)
            if actual != w.chunk_id:
                on_damaged(w, r, actual)
        pool.check()
        deliver(r, view)
        return True
    finally:
        buffers.release(buf)


class CountingStore:
    """Wraps a store to count requests and bytes moved (for summaries and benchmarks)."""

    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.caps = inner.caps
        self._lock = threading.Lock()
        self.requests: dict[str, int] = {}
        self.bytes_up = 0
        self.bytes_down = 0

    def _count(self, op: str, up: int = 0, down: int = 0) -> None:
        with self._lock:
            self.requests[op] = self.requests.get(op, 0) + 1
            self.bytes_up += up
            self.bytes_down += down

    @property
    def request_count(self) -> int:
        with self._lock:
            return sum(self.requests.values())

    def put(self, key: str, data: Buffer, *, if_absent: bool = False) -> None:
        self._count("put", up=len(data))
        self.inner.put(key, data, if_absent=if_absent)

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        self._count("get", down=len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        self._count("get", down=len(data))
        return data

    def get_range_into(self, key: str, start: int, buf: memoryview) -> None:
        self.inner.get_range_into(key, start, buf)
        self._count("get", down=len(buf))

    def stat(self, key: str) -> ObjectInfo:
        self._count("head")
        return self.inner.stat(key)

    def exists(self, key: str) -> bool:
        self._count("head")
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        self._count("list")
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self._count("delete")
        self.inner.delete(key)

    def delete_many(self, keys: Iterable[str]) -> None:
        keys = list(keys)
        self._count("delete", up=0)
        self.inner.delete_many(keys)

    def start_multipart(self, key: str) -> MultipartUpload:
        self._count("create_multipart")
        return _CountingUpload(self, self.inner.start_multipart(key))

    def list_multipart(self, prefix: str = "") -> Iterator[PendingUpload]:
        self._count("list")
        return self.inner.list_multipart(prefix)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        self._count("abort_multipart")
        self.inner.abort_multipart(key, upload_id)

    def close(self) -> None:
        self.inner.close()


class _CountingUpload:
    def __init__(self, owner: CountingStore, inner: MultipartUpload) -> None:
        self._owner = owner
        self._inner = inner
        self.key = inner.key
        self.upload_id = inner.upload_id

    def upload_part(self, part_number: int, data: Buffer) -> None:
        self._owner._count("upload_part", up=len(data))
        self._inner.upload_part(part_number, data)

    def complete(self) -> None:
        self._owner._count("complete_multipart")
        self._inner.complete()

    def abort(self) -> None:
        self._owner._count("abort_multipart")
        self._inner.abort()


def fetch_chunks(
    store: CountingStore | ObjectStore,
    ids: Iterable[bytes],
    *,
    locate: Callable[[bytes], Location | None],
    limits: TransferLimits,
    missing: Callable[[bytes], Exception],
    damaged: Callable[[ChunkWant[None], PackRange[None], bytes], Exception],
    name: str,
) -> dict[bytes, bytes]:
    """Small chunks by id, in memory, each verified: the lazy reader's tensors and the tree
    walker's nodes, through the pull's own range planner and fetcher.

    ``missing(cid)`` is raised for an id ``locate`` cannot place, ``damaged(...)`` for a chunk
    whose bytes do not hash to its id; store errors propagate to the caller.
    """
    by_pack: dict[str, list[ChunkWant[None]]] = {}
    for cid in ids:
        loc = locate(cid)
        if loc is None:
            raise missing(cid)
        by_pack.setdefault(loc.pack_id, []).append(ChunkWant(cid, loc.offset, loc.length, None))
    ranges = plan_ranges(by_pack, limits)
    result: dict[bytes, bytes] = {}
    lock = threading.Lock()

    def deliver(r: PackRange[None], view: memoryview) -> None:
        part = {w.chunk_id: bytes(view[w.offset - r.start : w.offset - r.start + w.length])
                for w in r.wants}
        with lock:
            result.update(part)

    def on_damaged(w: ChunkWant[None], r: PackRange[None], actual: bytes) -> None:
        raise damaged(w, r, actual)

    workers = max(1, min(limits.workers, len(ranges)))
    with TaskPool(workers, name=name, serial=limits.serial) as pool:
        fetch_ranges(store, ranges, pool=pool, deliver=deliver, on_damaged=on_damaged)
    return result
