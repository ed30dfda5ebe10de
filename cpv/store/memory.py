"""A dict-backed :class:`~cpv.store.ObjectStore` for unit tests (ours and users').

State lives in the instance, never in the class or the module, so two stores never share objects
and tests need no global reset. Every operation takes one lock: the store is as strict as the
contract and as simple as possible, not fast. Part numbers, ranges and keys are checked exactly as
the real adapters check them, so an engine bug shows up here first.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

from cpv.errors import ObjectNotFoundError, PreconditionFailedError, StoreError
from cpv.store import Buffer, ObjectInfo, PendingUpload, StoreCaps, check_key

# The three check_* helpers are shared with the local and S3 adapters so that all three refuse the
# same things with the same words.
__all__ = ["MemoryStore", "check_part_number", "check_part_sequence", "check_range"]

_instance_numbers = itertools.count(1)


class MemoryStore:
    """Objects in a dict, per instance; thread-safe; multipart supported.

    Args:
        max_connections: what ``caps.max_connections`` reports (the store itself has no limit).
    """

    def __init__(self, *, max_connections: int = 16) -> None:
        self.url = f"memory://{next(_instance_numbers)}"
        self.caps = StoreCaps(
            max_connections=max_connections, conditional_put=True, min_part_size=0
        )
        self._lock = threading.Lock()
        self._objects: dict[str, tuple[bytes, float]] = {}
        self._uploads: dict[str, _MemoryUpload] = {}

    def __repr__(self) -> str:
        return f"MemoryStore({self.url!r})"

    # -- objects -----------------------------------------------------------------------------

    def put(self, key: str, data: Buffer, *, if_absent: bool = False) -> None:
        check_key(key)
        body = bytes(data)
        with self._lock:
            if if_absent and key in self._objects:
                raise PreconditionFailedError(key)
            self._objects[key] = (body, time.time())

    def get(self, key: str) -> bytes:
        return self._body(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        body = self._body(key)
        check_range(key, start, length, size=len(body))
        return body[start : start + length]

    def get_range_into(self, key: str, start: int, buf: memoryview) -> None:
        view = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
        body = self._body(key)
        length = len(view)
        check_range(key, start, length, size=len(body))
        view[:] = memoryview(body)[start : start + length]

    def stat(self, key: str) -> ObjectInfo:
        check_key(key)
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise ObjectNotFoundError(key)
        return ObjectInfo(key=key, size=len(entry[0]), mtime=entry[1])

    def exists(self, key: str) -> bool:
        check_key(key)
        with self._lock:
            return key in self._objects

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        # Snapshot under the lock, yield outside it: a caller may delete while iterating.
        with self._lock:
            items = sorted(
                (key, len(body), mtime)
                for key, (body, mtime) in self._objects.items()
                if key.startswith(prefix)
            )
        for key, size, mtime in items:
            yield ObjectInfo(key=key, size=size, mtime=mtime)

    def delete(self, key: str) -> None:
        check_key(key)
        with self._lock:
            self._objects.pop(key, None)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key (missing ones are fine); the fast path GC uses on S3."""
        wanted = [check_key(key) for key in keys]
        with self._lock:
            for key in wanted:
                self._objects.pop(key, None)

    # -- multipart ---------------------------------------------------------------------------

    def start_multipart(self, key: str) -> _MemoryUpload:
        check_key(key)
        upload = _MemoryUpload(self, key, uuid.uuid4().hex)
        with self._lock:
            self._uploads[upload.upload_id] = upload
        return upload

    def list_multipart(self, prefix: str = "") -> Iterator[PendingUpload]:
        with self._lock:
            pending = sorted(
                (up.key, up.initiated, up.upload_id)
                for up in self._uploads.values()
                if up.key.startswith(prefix)
            )
        for key, initiated, upload_id in pending:
            yield PendingUpload(key=key, upload_id=upload_id, initiated=initiated)

    def abort_multipart(self, key: str, upload_id: str) -> None:
        check_key(key)
        with self._lock:
            upload = self._uploads.get(upload_id)
            if upload is not None and upload.key == key:
                del self._uploads[upload_id]

    def close(self) -> None:
        pass

    # -- internals ---------------------------------------------------------------------------

    def _body(self, key: str) -> bytes:
        check_key(key)
        with self._lock:
            entry = self._objects.get(key)
        if entry is None:
            raise ObjectNotFoundError(key)
        return entry[0]

    def _finish(self, upload: _MemoryUpload, body: bytes) -> None:
        with self._lock:
            if self._uploads.pop(upload.upload_id, None) is None:
                raise _gone(upload.key, upload.upload_id)
            self._objects[upload.key] = (body, time.time())

    def _is_pending(self, upload: _MemoryUpload) -> bool:
        with self._lock:
            return upload.upload_id in self._uploads


class _MemoryUpload:
    """Parts held in a dict until ``complete`` joins them under the store's lock."""

    def __init__(self, store: MemoryStore, key: str, upload_id: str) -> None:
        self.key = key
        self.upload_id = upload_id
        self.initiated = time.time()
        self._store = store
        self._lock = threading.Lock()
        self._parts: dict[int, bytes] = {}

    def upload_part(self, part_number: int, data: Buffer) -> None:
        check_part_number(self.key, part_number, self._store.caps.max_parts)
        body = bytes(data)
        if not self._store._is_pending(self):
            raise _gone(self.key, self.upload_id)
        with self._lock:
            self._parts[part_number] = body

    def complete(self) -> None:
        with self._lock:
            numbers = sorted(self._parts)
            check_part_sequence(self.key, numbers)
            body = b"".join(self._parts[n] for n in numbers)
        self._store._finish(self, body)

    def abort(self) -> None:
        self._store.abort_multipart(self.key, self.upload_id)


def check_range(key: str, start: int, length: int, *, size: int | None) -> None:
    """Refuse a negative range, and one that runs past the end (the contract's short read).

    ``size=None`` checks only the arguments (before the object's size is known).
    """
    if start < 0 or length < 0:
        raise StoreError(f"invalid range of {key}: start {start}, length {length}")
    if size is not None and start + length > size:
        raise StoreError(
            f"short read of {key}: asked bytes {start}..{start + length} of a {size}-byte object"
        )


def _gone(key: str, upload_id: str) -> StoreError:
    return StoreError(
        f"multipart upload {upload_id} of {key} does not exist (completed or aborted)",
        hint="start a new multipart upload",
    )


def check_part_number(key: str, part_number: int, max_parts: int) -> None:
    """Refuse a part number outside ``1..max_parts`` (shared by the adapters)."""
    if not 1 <= part_number <= max_parts:
        raise StoreError(f"invalid part number {part_number} for {key}: must be 1..{max_parts}")


def check_part_sequence(key: str, numbers: list[int]) -> None:
    """Refuse to complete unless the sorted part numbers are exactly 1..N (the contract)."""
    if not numbers:
        raise StoreError(f"cannot complete multipart upload of {key}: no parts were uploaded")
    if numbers[-1] != len(numbers):
        missing = sorted(set(range(1, numbers[-1] + 1)) - set(numbers))
        raise StoreError(
            f"cannot complete multipart upload of {key}: parts {missing[:5]} are missing",
            hint="upload every part 1..N before complete()",
        )
