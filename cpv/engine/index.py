"""Index objects: which chunk lives in which pack, at which offset.

Each push that writes packs writes one index object naming them, *after* the packs are durable
and *before* the snapshot (invariant 1). Index objects are content-addressed and never change;
a client merges all of them into an in-memory map and keeps a local copy of each, so a later
open fetches only the index objects it has not seen (one LIST, then GETs of the new ones)::

    index   := b"CPVIDX01" | u32 npacks | npacks * pack id (32 B)
               | u32 nentries | nentries * entry | blake3(everything before) (32 B)
    entry   := chunk id (32 B) | u32 pack number | u64 offset | u32 length
    key     := index/<blake3 hex of the whole object>
"""

from __future__ import annotations

import json
import logging
import secrets
import struct
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.engine.hashing import DIGEST_SIZE, chunk_id
from cpv.engine.objcache import read_cached, write_cached
from cpv.engine.packs import PackEntry
from cpv.errors import FormatError, ObjectNotFoundError

if TYPE_CHECKING:
    from cpv.store import ObjectStore

log = logging.getLogger(__name__)

INDEX_MAGIC = b"CPVIDX01"
INDEX_PREFIX = "index/"
_U32 = struct.Struct("<I")
_ENTRY = struct.Struct("<32sIQI")
MAX_INDEX_ENTRIES = 50_000_000


@dataclass(frozen=True, slots=True)
class Location:
    """Where a chunk can be read: pack id, byte offset and length."""

    pack_id: str
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class PackRecord:
    """One pack a push wrote, with the chunks it holds."""

    pack_id: str
    size: int
    entries: tuple[PackEntry, ...]


def encode_index(packs: Iterable[PackRecord]) -> tuple[str, bytes]:
    """Serialise ``packs``; returns (index id, bytes)."""
    packs = list(packs)
    parts = [INDEX_MAGIC, _U32.pack(len(packs))]
    parts.extend(bytes.fromhex(p.pack_id) for p in packs)
    entries = [(i, e) for i, p in enumerate(packs) for e in p.entries]
    parts.append(_U32.pack(len(entries)))
    parts.extend(_ENTRY.pack(e.chunk_id, i, e.offset, e.length) for i, e in entries)
    body = b"".join(parts)
    raw = body + chunk_id(body)
    return chunk_id(raw).hex(), raw


def decode_index(raw: bytes, *, where: str) -> Iterator[tuple[bytes, Location]]:
    """Parse an index object, checking its checksum and bounds."""
    if len(raw) < len(INDEX_MAGIC) + 2 * _U32.size + DIGEST_SIZE or not raw.startswith(INDEX_MAGIC):
        raise FormatError(f"index {where} is not a cpv index (damaged or unknown version)")
    body, digest = raw[:-DIGEST_SIZE], raw[-DIGEST_SIZE:]
    if chunk_id(body) != digest:
        raise FormatError(f"index {where} fails its checksum (damaged)")
    pos = len(INDEX_MAGIC)
    (npacks,) = _U32.unpack_from(body, pos)
    pos += _U32.size
    if pos + npacks * 32 + _U32.size > len(body):
        raise FormatError(f"index {where} is truncated")
    pack_ids = [body[pos + 32 * i : pos + 32 * (i + 1)].hex() for i in range(npacks)]
    pos += 32 * npacks
    (nentries,) = _U32.unpack_from(body, pos)
    pos += _U32.size
    if nentries > MAX_INDEX_ENTRIES or pos + nentries * _ENTRY.size != len(body):
        raise FormatError(f"index {where} entry count does not match its size")
    for cid, pnum, offset, length in _ENTRY.iter_unpack(body[pos:]):
        if pnum >= npacks:
            raise FormatError(f"index {where} names a pack number out of range")
        yield cid, Location(pack_ids[pnum], offset, length)


class ChunkIndex:
    """The merged, in-memory view of every index object in a store.

    A chunk may be named by several index entries (a repair or a re-push wrote a second copy).
    The first one is used unless damage records (:func:`read_damage`) or a missing pack say it
    is bad; then a good copy is preferred. A chunk whose every copy is bad is *suspect*: it is
    not ``in`` the index (a push uploads it again, which is how a push of the original files
    repairs a damaged version), but :meth:`get` still returns its location as a last resort.

    Not thread-safe for writers: the push pipeline adds entries under its own lock.
    """

    def __init__(self) -> None:
        self._chunks: dict[bytes, Location] = {}
        self._alts: dict[bytes, list[Location]] = {}
        self._suspect: set[bytes] = set()
        self._bad: dict[str, frozenset[bytes] | None] = {}
        self.index_ids: set[str] = set()
        self.damaged_ids: set[str] = set()
        self.unpersisted: set[str] = set()
        self.partial = False
        """True for one snapshot's locations only (:func:`load_locations`): never for writers."""

    def __len__(self) -> int:
        return len(self._chunks)

    def __contains__(self, cid: object) -> bool:
        return cid in self._chunks and not (self._suspect and cid in self._suspect)

    def get(self, cid: bytes) -> Location | None:
        return self._chunks.get(cid)

    def is_suspect(self, cid: bytes) -> bool:
        return cid in self._suspect

    def add_pack(self, record: PackRecord) -> None:
        for e in record.entries:
            loc = Location(record.pack_id, e.offset, e.length)
            if e.chunk_id in self._suspect and not self._is_bad(e.chunk_id, loc):
                self._alts.setdefault(e.chunk_id, []).append(self._chunks[e.chunk_id])
                self._chunks[e.chunk_id] = loc
                self._suspect.discard(e.chunk_id)
            else:
                self.add_entries(((e.chunk_id, loc),))

    def add_entries(self, entries: Iterable[tuple[bytes, Location]]) -> None:
        chunks = self._chunks
        for cid, loc in entries:
            if cid not in chunks:
                chunks[cid] = loc
            elif chunks[cid].pack_id != loc.pack_id:
                self._alts.setdefault(cid, []).append(loc)

    def _is_bad(self, cid: bytes, loc: Location) -> bool:
        if loc.pack_id not in self._bad:
            return False
        chunks = self._bad[loc.pack_id]
        return chunks is None or cid in chunks

    def exclude(self, bad: Mapping[str, frozenset[bytes] | None]) -> None:
        """Stop trusting damaged copies: ``bad`` maps a pack to its damaged chunks (None: all)."""
        for pid, chunks in bad.items():
            prev = self._bad.get(pid, frozenset())
            self._bad[pid] = None if chunks is None or prev is None else prev | chunks
        if not bad:
            return
        for cid, loc in self._chunks.items():
            if not self._is_bad(cid, loc):
                continue
            good = [a for a in self._alts.get(cid, ()) if not self._is_bad(cid, a)]
            if good:
                self._alts[cid] = [a for a in self._alts[cid] if a != good[0]] + [loc]
                self._chunks[cid] = good[0]
            else:
                self._suspect.add(cid)

    def pack_ids(self) -> set[str]:
        found = {loc.pack_id for loc in self._chunks.values()}
        found.update(loc.pack_id for alts in self._alts.values() for loc in alts)
        return found

    def items(self) -> Iterator[tuple[bytes, Location]]:
        return iter(self._chunks.items())


def sync_index(store: ObjectStore, cache_dir: Path | None) -> ChunkIndex:
    """Load every index object of ``store``, fetching only those not cached locally.

    A damaged index object is skipped with a warning and listed in ``damaged_ids``: it must
    never block the versions it does not concern. The caller rebuilds what it described from
    pack footers (:meth:`~cpv.engine.repository.Repository.index`). Damage records are applied
    last, so a good copy of a chunk wins over a damaged one.
    """
    index = ChunkIndex()
    listed = [info.key[len(INDEX_PREFIX) :] for info in store.list(INDEX_PREFIX)]
    for index_id in listed:
        raw = read_cached(cache_dir, "index", index_id)
        try:
            if raw is None:
                try:
                    raw = store.get(INDEX_PREFIX + index_id)
                except ObjectNotFoundError:
                    log.debug("index %s vanished while listing (gc?)", index_id)
                    continue
                if chunk_id(raw).hex() != index_id:
                    raise FormatError(f"index object {index_id} does not match its id (damaged)")
                write_cached(cache_dir, "index", index_id, raw)
            # Streamed: the checksum is checked before the first entry comes out.
            index.add_entries(decode_index(raw, where=index_id))
        except FormatError as exc:
            log.warning("skipping %s; its packs are read from their footers instead "
                        "(cpv repair rewrites it)", exc)
            index.damaged_ids.add(index_id)
            continue
        index.index_ids.add(index_id)
    index.exclude(read_damage(store))
    return index


# -- damage records -------------------------------------------------------------------------

DAMAGE_PREFIX = "damage/"
"""``damage/<pack id>.<random>``: chunks of a pack found damaged (or the whole pack missing).

Written by repair (and by a push that finds an indexed pack gone), read with every index sync,
so that readers prefer a good copy and pushes upload a new one. Immutable and additive: several
writers never conflict; gc deletes them together with their pack.
"""


def record_damage(store: ObjectStore, pack_id: str, chunks: Iterable[bytes] | None) -> None:
    """Record that ``chunks`` of ``pack_id`` are damaged (None: the whole pack is missing)."""
    doc = {"version": 1, "pack": pack_id, "missing": chunks is None,
           "chunks": sorted(c.hex() for c in chunks or ())}
    key = f"{DAMAGE_PREFIX}{pack_id}.{secrets.token_hex(8)}"
    store.put(key, json.dumps(doc, separators=(",", ":")).encode())


def read_damage(store: ObjectStore) -> dict[str, frozenset[bytes] | None]:
    """Every damage record, merged: pack id -> damaged chunks (None: whole pack)."""
    found: dict[str, frozenset[bytes] | None] = {}
    for obj in store.list(DAMAGE_PREFIX):
        try:
            doc = json.loads(store.get(obj.key))
            pid = str(doc["pack"])
            chunks = None if doc.get("missing") else frozenset(
                bytes.fromhex(c) for c in doc.get("chunks", [])
            )
        except ObjectNotFoundError:
            continue
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable damage record %s: %s", obj.key, exc)
            continue
        prev = found.get(pid, frozenset())
        found[pid] = None if chunks is None or prev is None else prev | chunks
    return found


def write_index(store: ObjectStore, packs: list[PackRecord], cache_dir: Path | None) -> str:
    """Store an index object for ``packs`` (which must already be durable); returns its id."""
    index_id, raw = encode_index(packs)
    store.put(INDEX_PREFIX + index_id, raw)
    write_cached(cache_dir, "index", index_id, raw)
    return index_id


# -- per-snapshot pack lists ----------------------------------------------------------------

LOCATIONS_PREFIX = "locations/"
"""``locations/<snapshot id>``: the packs that hold one snapshot's chunks and tree nodes.

``{"version": 1, "packs": ["<pack id>", ...]}``, written by the push after its index object and
before its snapshot. A fresh machine pulling one version reads this list and those packs' own
footers (:func:`~cpv.engine.repository.Repository.read_pack_entries`) instead of the whole
store's index: metadata in proportion to the version, and a list that costs 64 B per pack, so
a version of 10^6 small files in a few hundred packs adds a few KB, not a second file listing.
It is a hint, never the truth: every byte read through it is verified against its chunk id,
and a reader that finds it missing, stale (a gc repacked a chunk and swept the old pack) or
incomplete falls back to the full index.
"""


def locations_key(snapshot_id: str) -> str:
    return LOCATIONS_PREFIX + snapshot_id


def write_locations(
    store: ObjectStore, snapshot_id: str, index: ChunkIndex, chunk_ids: Iterable[bytes]
) -> bool:
    """Store the packs of ``snapshot_id`` unless listed already; False when a chunk is unindexed."""
    key = locations_key(snapshot_id)
    if store.exists(key):
        return False
    packs: set[str] = set()
    for cid in chunk_ids:
        loc = index.get(cid)
        if loc is None:
            return False
        packs.add(loc.pack_id)
    doc = {"version": 1, "packs": sorted(packs)}
    store.put(key, json.dumps(doc, separators=(",", ":")).encode())
    return True


def read_locations(store: ObjectStore, snapshot_id: str) -> list[str] | None:
    """The pack ids :func:`write_locations` recorded for ``snapshot_id``, or None."""
    try:
        raw = store.get(locations_key(snapshot_id))
    except ObjectNotFoundError:
        return None
    try:
        doc = json.loads(raw)
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise ValueError("unknown version")
        packs = [str(p) for p in doc["packs"]]
        if any(len(p) != 2 * DIGEST_SIZE or not all(c in "0123456789abcdef" for c in p)
               for p in packs):
            raise ValueError("bad pack id")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        log.warning("ignoring unreadable %s (%s); reading the whole index instead",
                    locations_key(snapshot_id), exc)
        return None
    return packs
