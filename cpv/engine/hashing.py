"""blake3, the one hash of cpv: chunk ids, whole-file digests, and content ids of metadata.

This is the only module that imports :mod:`blake3` (an import-linter rule), so switching or
pinning the hash is a one-file change plus a store format bump: chunk ids are the store's keys.

Why blake3: ~4 GB/s on one core here (SHA-256 with SHA-NI: ~1.8 GB/s), it releases the GIL, and a
1-thread hasher per chunk scales across worker threads (``docs/chunking.md``,
``/work/shared/notes/perf-limits.md`` row 2c). :func:`chunk_id` is deliberately single-threaded;
the engine parallelises across chunks. :func:`hash_file` hashes one file with every core, for
tests and ``verify``. Inputs are byte buffers (``bytes``, ``bytearray``, ``mmap``, memoryviews of
format ``B``); blake3 refuses buffers of other item types, e.g. ``array('f')``.
"""

from __future__ import annotations

import os
import sys
from typing import Final

from blake3 import blake3

if sys.version_info >= (3, 12):
    from collections.abc import Buffer
else:
    from typing_extensions import Buffer

__all__ = ["DIGEST_SIZE", "Buffer", "Hasher", "chunk_id", "hash_bytes_hex", "hash_file"]

DIGEST_SIZE: Final = 32
"""Bytes in every digest cpv stores (blake3's default output length)."""


def split_ids(blob: bytes) -> tuple[bytes, ...]:
    """The ids concatenated in ``blob``, :data:`DIGEST_SIZE` bytes each (chunk lists, node
    lists, cache rows). A lone id, what most files have, skips the slicing loop: a push that
    encodes 10^6 files' folders again splits 10^6 of these."""
    if len(blob) == DIGEST_SIZE:
        return (bytes(blob),)
    return tuple(blob[i : i + DIGEST_SIZE] for i in range(0, len(blob), DIGEST_SIZE))


def chunk_id(data: Buffer) -> bytes:
    """The 32-byte id of a chunk: blake3 of its bytes, computed on the calling thread only."""
    return blake3(data).digest()


def hash_bytes_hex(data: Buffer) -> str:
    """blake3 of ``data`` as 64 lowercase hex characters."""
    return blake3(data).hexdigest()


class Hasher:
    """Streaming blake3 of a byte sequence fed piece by piece (e.g. a whole file, chunk by chunk).

    Not thread-safe: one hasher belongs to one thread at a time.
    """

    __slots__ = ("_h",)

    def __init__(self, data: Buffer = b"") -> None:
        self._h = blake3(data)

    def update(self, data: Buffer) -> None:
        """Append ``data`` to what has been hashed so far."""
        self._h.update(data)

    def digest(self) -> bytes:
        """The 32-byte digest of everything fed so far; the hasher stays usable."""
        return self._h.digest()

    def hexdigest(self) -> str:
        """:meth:`digest` as 64 lowercase hex characters."""
        return self._h.hexdigest()


def hash_file(path: str | os.PathLike[str]) -> str:
    """blake3 of a whole file as hex, on every core (blake3's memory-mapped multi-threaded path).

    The file must not be truncated while it is hashed (a mapped page that vanishes kills the process
    with SIGBUS), so this is for files cpv controls: tests and ``verify`` of pulled files. Pushes
    hash chunk by chunk from a read buffer instead.

    Raises:
        OSError: the file cannot be opened or read (callers translate it; they know the context).
    """
    return blake3(max_threads=blake3.AUTO).update_mmap(path).hexdigest()
