"""Moving bytes in parallel with bounded memory: the pack uploader and its helpers.

One :class:`PackUploader` per push owns every upload thread (STYLE rule 6). Producers (the
threads that chunk and hash files) hand it new chunks; it copies them into fixed-size part
buffers taken from a :class:`BufferPool` and ships each full part as one part of a multipart
upload while the producers go on chunking. Memory is bounded by the pool: when every buffer is
in flight, ``add`` blocks, which is the backpressure that keeps a 1 TB push inside a few hundred
MiB (invariant 4). The first failure stops everything: producers get the error at their next
``add``, open multipart uploads are aborted, and no index or snapshot is written (invariant 1).
"""

from __future__ import annotations

import logging
import mmap
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from cpv.engine.index import PackRecord
from cpv.engine.packs import PackEntry, encode_footer, new_pack_id, pack_key
from cpv.errors import CPVError, TransferError
from cpv.progress import NULL_PROGRESS, Progress
from cpv.store import MiB

if TYPE_CHECKING:
    from types import TracebackType

    from cpv.store import Buffer, MultipartUpload, ObjectInfo, ObjectStore, PendingUpload

log = logging.getLogger(__name__)


#: The bounds of the transfer knobs, declared once: the configuration validates against them.
WORKERS_RANGE = (1, 256)
PART_SIZE_RANGE = (5 * MiB, 512 * MiB)  # 5 MiB: S3's multipart minimum


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """Concurrency and memory knobs for push and pull.

    Peak buffer memory is about ``(workers + 2) * part_size`` on push and
    ``(workers + 2) * max_range`` on pull.
    """

    workers: int = 8
    hash_workers: int = 2
    part_size: int = 16 * MiB
    max_range: int = 16 * MiB
    range_gap: int = 1 * MiB

    def __post_init__(self) -> None:
        if not WORKERS_RANGE[0] <= self.workers <= WORKERS_RANGE[1] or not (
                1 <= self.hash_workers <= 64):
            raise ValueError("workers must be 1..256 and hash_workers 1..64")
        if not PART_SIZE_RANGE[0] <= self.part_size <= PART_SIZE_RANGE[1]:
            raise ValueError("part_size must be between 5 MiB and 512 MiB")
        if not 1 * MiB <= self.max_range <= 512 * MiB:
            raise ValueError("max_range must be between 1 MiB and 512 MiB")


class BufferPool:
    """A fixed set of page-aligned buffers, reused so fresh memory is touched only once."""

    def __init__(self, count: int, size: int) -> None:
        self.size = size
        self._maps = [mmap.mmap(-1, size) for _ in range(count)]
        self._free: queue.Queue[memoryview] = queue.Queue()
        for m in self._maps:
            self._free.put(memoryview(m))

    def acquire(self, cancelled: Callable[[], bool]) -> memoryview:
        while True:
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
        for m in self._maps:
            try:
                m.close()
            except BufferError:
                # A worker that was cancelled mid-request may still hold a view.
                log.debug("buffer still referenced at close; left to the GC")


@dataclass
class _OpenPack:
    pack_id: str
    entries: list[PackEntry] = field(default_factory=list)
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
        self._pool = ThreadPoolExecutor(limits.workers, thread_name_prefix="cpv-upload")
        # Completion waits on part futures of the main pool, so it runs on its own threads:
        # waiting inside the main pool could deadlock once every worker is a waiter.
        self._finisher = ThreadPoolExecutor(2, thread_name_prefix="cpv-complete")
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
            pack.entries.append(PackEntry(chunk_id, pack.size, len(data)))
            pack.size += len(data)
            self.bytes_added += len(data)
            self.chunks_added += 1
            if self._dry_run:
                if pack.size >= self._pack_size:
                    self._records.append(PackRecord(pack.pack_id, pack.size, tuple(pack.entries)))
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
                    self._records.append(PackRecord(p.pack_id, p.size, tuple(p.entries)))
                else:
                    self._seal(self._current)
            self._current = None
        wait(self._pack_futures)
        with self._lock:
            self._raise_if_failed()
            return list(self._records)

    # -- internals -----------------------------------------------------------------------

    def _has_failed(self) -> bool:
        return bool(self._failures) or self._closed

    def _raise_if_failed(self) -> None:
        if self._failures:
            key, exc = self._failures[0]
            if isinstance(exc, CPVError):
                raise exc
            raise TransferError(f"upload of {key} failed: {exc}", failures=self._failures) from exc
        if self._closed:
            raise TransferError("transfer cancelled")

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
        except BaseException as exc:
            self._fail(upload.key, exc)
            raise
        finally:
            self._buffers.release(buf)

    def _seal(self, pack: _OpenPack) -> None:
        """Close ``pack``: its last part carries the footer; complete once all parts are in."""
        footer = encode_footer(pack.entries)
        tail: bytes = bytes(pack.buf[: pack.fill]) + footer if pack.buf is not None else footer
        if pack.buf is not None:
            assert self._buffers is not None
            self._buffers.release(pack.buf)
            pack.buf = None
        record = PackRecord(pack.pack_id, pack.size + len(footer), tuple(pack.entries))
        self._pack_futures.append(self._finisher.submit(self._finish_pack, pack, tail, record))

    def _finish_pack(self, pack: _OpenPack, tail: bytes, record: PackRecord) -> None:
        key = pack_key(pack.pack_id)
        try:
            if pack.upload is None:
                # Small pack (a few small files): one PUT, no multipart round trips.
                self._store.put(key, tail)
            else:
                done, _ = wait(pack.parts)
                if any(f.exception() is not None for f in done) or self._has_failed():
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

    def close(self, *, cancel: bool) -> None:
        if cancel:
            # No lock: a producer may hold _lock while it waits for a buffer, and this flag
            # is what makes it give up.
            self._closed = True
        self._pool.shutdown(wait=True, cancel_futures=cancel)
        self._finisher.shutdown(wait=True, cancel_futures=cancel)
        with self._state_lock:
            pending = list(self._open_uploads.values())
        for upload in pending:
            try:
                upload.abort()
            except CPVError as exc:
                log.warning("could not abort upload of %s: %s", upload.key, exc)
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
        self.close(cancel=exc_type is not None)


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
