"""Pack objects: many chunks concatenated, ending in a footer that describes them.

A pack is self-describing so that an index can always be rebuilt from the packs alone (after a
crash between writing packs and writing the index, or if index objects are lost)::

    pack    := chunk_0 | chunk_1 | ... | footer | trailer
    footer  := b"CPVPACK1" | u32 count | count * entry | blake3(footer up to here) (32 B)
    entry   := chunk id (32 B) | u64 offset | u32 length
    trailer := u32 len(footer) | b"CPVPEND1"

All integers are little-endian. Chunks are stored as-is (no compression, no encryption): the
chunk id is the blake3 of exactly the bytes stored, so any reader can verify any byte range.
Pack ids are random (the key must be known before a multipart upload starts, and a pack's
content hash is only known at its end); content addressing lives at the chunk level.
"""

from __future__ import annotations

import secrets
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cpv.engine.hashing import DIGEST_SIZE, chunk_id
from cpv.errors import FormatError

FOOTER_MAGIC = b"CPVPACK1"
TRAILER_MAGIC = b"CPVPEND1"
_ENTRY = struct.Struct("<32sQI")
_COUNT = struct.Struct("<I")
TRAILER = struct.Struct("<I8s")
TRAILER_SIZE = TRAILER.size
MAX_FOOTER_ENTRIES = 4_000_000


@dataclass(frozen=True, slots=True)
class PackEntry:
    """Where one chunk sits inside a pack."""

    chunk_id: bytes
    offset: int
    length: int


def new_pack_id() -> str:
    return secrets.token_hex(32)


def pack_key(pack_id: str) -> str:
    return f"packs/{pack_id[:2]}/{pack_id}"


def pack_id_from_key(key: str) -> str | None:
    """The pack id of a ``packs/xx/<id>`` key, or None for anything else."""
    parts = key.split("/")
    if len(parts) != 3 or parts[0] != "packs" or len(parts[2]) != 64:
        return None
    pid = parts[2]
    if parts[1] != pid[:2] or any(c not in "0123456789abcdef" for c in pid):
        return None
    return pid


ENTRY_SIZE = _ENTRY.size
pack_entry = _ENTRY.pack
"""One footer entry, packed: (chunk id, offset, length) -> 44 bytes.

A pack of 1 KiB chunks holds ~65,000; kept packed (``bytearray``, :class:`PackRecord`) they
cost 44 B each instead of ~190 B as objects (10^6 files: 150 MB less for a first push)."""


def unpack_entries(packed: bytes) -> tuple[PackEntry, ...]:
    return tuple(PackEntry(cid, offset, length) for cid, offset, length in
                 _ENTRY.iter_unpack(packed))


def iter_packed(packed: bytes) -> Iterator[tuple[bytes, int, int]]:
    """(chunk id, offset, length) of each packed entry, no object kept."""
    return _ENTRY.iter_unpack(packed)


def encode_footer(entries: list[PackEntry]) -> bytes:
    """The footer and trailer that close a pack holding ``entries``."""
    return close_pack(b"".join(pack_entry(e.chunk_id, e.offset, e.length) for e in entries))


def close_pack(packed: bytes) -> bytes:
    """The footer and trailer that close a pack holding the ``packed`` entries."""
    body = FOOTER_MAGIC + _COUNT.pack(len(packed) // ENTRY_SIZE) + packed
    footer = body + chunk_id(body)
    return footer + TRAILER.pack(len(footer), TRAILER_MAGIC)


def parse_trailer(trailer: bytes, *, pack_size: int, where: str) -> int:
    """The footer length announced by a pack's last bytes."""
    if len(trailer) != TRAILER_SIZE:
        raise FormatError(f"pack {where} is too short to hold a trailer")
    footer_len, magic = TRAILER.unpack(trailer)
    if magic != TRAILER_MAGIC:
        raise FormatError(f"pack {where} has no cpv trailer (damaged or not a pack)")
    if (
        footer_len < len(FOOTER_MAGIC) + _COUNT.size + DIGEST_SIZE
        or footer_len > pack_size - TRAILER_SIZE
    ):
        raise FormatError(f"pack {where} announces an impossible footer length {footer_len}")
    return int(footer_len)


def decode_footer(footer: bytes, *, data_size: int, where: str) -> list[PackEntry]:
    """Parse and check a footer; ``data_size`` is the pack size minus footer and trailer.

    Every entry must lie inside the data area: a hostile or damaged footer must not make a
    reader fetch outside the pack or allocate without bound.
    """
    head = len(FOOTER_MAGIC) + _COUNT.size
    if len(footer) < head + DIGEST_SIZE or not footer.startswith(FOOTER_MAGIC):
        raise FormatError(f"pack {where} has a damaged footer header")
    body, digest = footer[:-DIGEST_SIZE], footer[-DIGEST_SIZE:]
    if chunk_id(body) != digest:
        raise FormatError(f"pack {where} footer fails its checksum (damaged)")
    (count,) = _COUNT.unpack_from(body, len(FOOTER_MAGIC))
    if count > MAX_FOOTER_ENTRIES or len(body) != head + count * _ENTRY.size:
        raise FormatError(f"pack {where} footer length does not match its {count} entries")
    entries = []
    for cid, offset, length in _ENTRY.iter_unpack(body[head:]):
        if offset + length > data_size:
            raise FormatError(f"pack {where} footer points outside the pack")
        entries.append(PackEntry(cid, offset, length))
    return entries
