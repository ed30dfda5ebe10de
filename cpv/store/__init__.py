"""Bytes under keys: the only thing cpv asks of a storage backend.

A store knows nothing of chunks, packs or Git. Keys are relative, '/'-separated paths
(``packs/ab/abcdef…``); an adapter maps them under its own root (an S3 bucket + prefix, or a
local folder). Objects are written once and never modified in place: the engine names them by
content (or by a random id for packs), so re-writing the same key with the same bytes is harmless.

Contract every adapter meets (``tests/store/test_contract.py`` runs the same suite on each):

- ``put`` is atomic: a reader sees the whole object or none. ``if_absent=True`` creates only if the
  key does not exist and otherwise raises :class:`~cpv.errors.PreconditionFailedError`
  (S3 ``If-None-Match: *``; local ``O_EXCL``-style link).
- ``get``/``get_range``/``get_range_into`` raise :class:`~cpv.errors.ObjectNotFoundError` for a
  missing key and :class:`~cpv.errors.StoreError` when fewer bytes than asked come back.
- ``list(prefix)`` yields every object under the prefix exactly once, in key order.
- ``delete`` is idempotent (deleting a missing key is not an error).
- Multipart: ``start_multipart(key)`` returns an upload whose ``upload_part`` may be called from
  several threads at once, with part numbers 1..N; all parts but the last are at least
  ``caps.min_part_size`` bytes. Nothing is visible under ``key`` until ``complete()``.
  ``list_multipart``/``abort_multipart`` find and remove uploads a crashed process left behind;
  this is housekeeping, so a server that refuses the listing yields nothing rather than failing.
- What an S3-compatible server really supports (conditional writes, multipart listing,
  multi-object delete, ranged reads) is probed, not assumed: :mod:`cpv.store.capabilities`.
- Foreign errors are translated to :mod:`cpv.errors` at the adapter; anything unexpected
  propagates unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from pathlib import Path

Buffer = bytes | bytearray | memoryview

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """One stored object. ``key`` is relative to the store's root; ``mtime`` is epoch seconds."""

    key: str
    size: int
    mtime: float


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str
    initiated: float


@dataclass(frozen=True, slots=True)
class StoreCaps:
    """What an adapter can do, declared so callers need not guess.

    Attributes:
        max_connections: how many requests the adapter can usefully run at once.
        conditional_put: the adapter sends ``put(if_absent=True)`` as an atomic create; whether
            an S3-compatible server honours it is probed
            (:func:`cpv.store.capabilities.store_features`).
        min_part_size: smallest allowed size of a multipart part other than the last.
        max_parts: most parts one multipart upload may have.
    """

    max_connections: int
    conditional_put: bool
    min_part_size: int
    max_parts: int = 10_000


class MultipartUpload(Protocol):
    """An upload of one object in numbered parts; see the module contract."""

    key: str
    upload_id: str

    def upload_part(self, part_number: int, data: Buffer) -> None: ...

    def complete(self) -> None: ...

    def abort(self) -> None: ...


class ObjectStore(Protocol):
    """A flat, write-once key/value store for large immutable blobs."""

    url: str
    caps: StoreCaps

    def put(self, key: str, data: Buffer, *, if_absent: bool = False) -> None: ...

    def get(self, key: str) -> bytes: ...

    def get_range(self, key: str, start: int, length: int) -> bytes: ...

    def get_range_into(self, key: str, start: int, buf: memoryview) -> None:
        """Fill ``buf`` with ``len(buf)`` bytes of ``key`` from ``start`` (no extra copy)."""

    def stat(self, key: str) -> ObjectInfo: ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]: ...

    def delete(self, key: str) -> None: ...

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete several keys (batched where the backend can); idempotent like ``delete``."""

    def start_multipart(self, key: str) -> MultipartUpload: ...

    def list_multipart(self, prefix: str = "") -> Iterator[PendingUpload]: ...

    def abort_multipart(self, key: str, upload_id: str) -> None: ...

    def close(self) -> None: ...


def check_key(key: str) -> str:
    """Refuse keys that could escape an adapter's root; returns the key unchanged."""
    from cpv.errors import StoreError

    if (
        not key
        or key.startswith("/")
        or "\\" in key
        or "\x00" in key
        or any(part in ("", ".", "..") for part in key.split("/"))
    ):
        raise StoreError(f"invalid object key {key!r}")
    return key


def open_store(
    url: str | Path,
    *,
    profile: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    max_connections: int = 16,
    sse: str | None = None,
    sse_kms_key_id: str | None = None,
) -> ObjectStore:
    """Open the store at ``url``: ``s3://bucket/prefix``, ``file:///path`` or a local path.

    S3 honours the standard AWS configuration (profile, ``AWS_ENDPOINT_URL(_S3)``, environment
    credentials); the explicit arguments here win over it.
    """
    text = str(url)
    if text.startswith("s3://"):
        from cpv.store.s3 import S3Store

        return S3Store.from_url(
            text,
            profile=profile,
            region=region,
            endpoint_url=endpoint_url,
            max_connections=max_connections,
            sse=sse,
            sse_kms_key_id=sse_kms_key_id,
        )
    from cpv.store.local import LocalStore

    if text.startswith("file://"):
        text = text[len("file://") :]
    return LocalStore(text)


__all__ = [
    "Buffer",
    "GiB",
    "KiB",
    "MiB",
    "MultipartUpload",
    "ObjectInfo",
    "ObjectStore",
    "PendingUpload",
    "StoreCaps",
    "check_key",
    "open_store",
]
