"""Index objects: which chunk lives in which pack, at which offset.

Each push that writes packs writes one index object naming them, *after* the packs are durable
and *before* the snapshot (invariant 1). Index objects are content-addressed and never change;
a client merges all of them into one map (in RAM, or for a large store in a sorted table on
disk: :class:`IndexTable`) and keeps a local copy of each, so a later open fetches only the
index objects it has not seen (one LIST, then GETs of the new ones)::

    index   := b"CPVIDX01" | u32 npacks | npacks * pack id (32 B)
               | u32 nentries | nentries * entry | blake3(everything before) (32 B)
    entry   := chunk id (32 B) | u32 pack number | u64 offset | u32 length
    key     := index/<blake3 hex of the whole object>
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import struct
import sys
import threading
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.engine.hashing import DIGEST_SIZE, chunk_id
from cpv.engine.objcache import read_cached, write_cached
from cpv.engine.packs import ENTRY_SIZE, PackEntry, iter_packed, pack_entry, unpack_entries
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


class PackRecord:
    """One pack a push wrote (or a footer describes), with the chunks it holds.

    The entries are kept packed (:data:`~cpv.engine.packs.pack_entry`, 44 B each) and made
    into :class:`PackEntry` objects only when asked for: a push keeps every record it wrote
    until its index object is written.
    """

    __slots__ = ("pack_id", "packed", "size")

    def __init__(self, pack_id: str, size: int, entries: Iterable[PackEntry] = (), *,
                 packed: bytes | None = None) -> None:
        self.pack_id = pack_id
        self.size = size
        self.packed = packed if packed is not None else b"".join(
            pack_entry(e.chunk_id, e.offset, e.length) for e in entries)

    @property
    def entries(self) -> tuple[PackEntry, ...]:
        return unpack_entries(self.packed)

    def __len__(self) -> int:
        return len(self.packed) // ENTRY_SIZE

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PackRecord) and (self.pack_id, self.size, self.packed) == (
            other.pack_id, other.size, other.packed)

    def __hash__(self) -> int:
        return hash((self.pack_id, self.size, self.packed))

    def __repr__(self) -> str:
        return f"PackRecord({self.pack_id!r}, {self.size}, {len(self)} entries)"


def encode_index(packs: Iterable[PackRecord]) -> tuple[str, bytes]:
    """Serialise ``packs``; returns (index id, bytes)."""
    packs = list(packs)
    parts = [INDEX_MAGIC, _U32.pack(len(packs))]
    parts.extend(bytes.fromhex(p.pack_id) for p in packs)
    parts.append(_U32.pack(sum(len(p) for p in packs)))
    pack = _ENTRY.pack
    parts.extend(pack(cid, i, offset, length) for i, p in enumerate(packs)
                 for cid, offset, length in iter_packed(p.packed))
    body = b"".join(parts)
    raw = body + chunk_id(body)
    return chunk_id(raw).hex(), raw


def parse_index(raw: bytes, *, where: str) -> tuple[list[bytes], memoryview]:
    """Check an index object's checksum and bounds; returns its pack ids and raw entries.

    The entries are :data:`_ENTRY` records whose pack numbers are not checked yet (each
    reader checks them as it reads: :func:`decode_index`, :meth:`IndexTable.build`).
    """
    if len(raw) < len(INDEX_MAGIC) + 2 * _U32.size + DIGEST_SIZE or not raw.startswith(INDEX_MAGIC):
        raise FormatError(f"index {where} is not a cpv index (damaged or unknown version)")
    body, digest = memoryview(raw)[:-DIGEST_SIZE], raw[-DIGEST_SIZE:]
    if chunk_id(body) != digest:
        raise FormatError(f"index {where} fails its checksum (damaged)")
    pos = len(INDEX_MAGIC)
    (npacks,) = _U32.unpack_from(body, pos)
    pos += _U32.size
    if pos + npacks * 32 + _U32.size > len(body):
        raise FormatError(f"index {where} is truncated")
    pack_ids = [bytes(body[pos + 32 * i : pos + 32 * (i + 1)]) for i in range(npacks)]
    pos += 32 * npacks
    (nentries,) = _U32.unpack_from(body, pos)
    pos += _U32.size
    if nentries > MAX_INDEX_ENTRIES or pos + nentries * _ENTRY.size != len(body):
        raise FormatError(f"index {where} entry count does not match its size")
    return pack_ids, body[pos:]


def decode_index(raw: bytes, *, where: str) -> Iterator[tuple[bytes, Location]]:
    """Parse an index object, checking its checksum and bounds."""
    packs, entries = parse_index(raw, where=where)
    pack_ids = [p.hex() for p in packs]
    npacks = len(pack_ids)
    for cid, pnum, offset, length in _ENTRY.iter_unpack(entries):
        if pnum >= npacks:
            raise FormatError(f"index {where} names a pack number out of range")
        yield cid, Location(pack_ids[pnum], offset, length)


class DamagedIndexError(FormatError):
    """An index object found damaged while a table was built from it (see sync_index)."""

    def __init__(self, index_id: str, message: str) -> None:
        super().__init__(message)
        self.index_id = index_id


# -- the on-disk table of a large index ------------------------------------------------------

SPILL_ENTRIES = 1_000_000
"""Above this many index entries, :func:`sync_index` keeps them in an :class:`IndexTable`.

A Python dict costs ~195 B of RAM per chunk (key, location object, two ints, the slot), so a
10 TB store of 8.75 M chunks needed 2.1 GB before a push could start. Below the threshold the
dict is kept: it is faster to build, and 1 M entries cost ~200 MB at most.
"""

TABLE_FILE = "index-table"
TABLE_MAGIC = b"CPVITAB1"
_U64 = struct.Struct("<Q")
_FANOUT = 1 << 16  # first two bytes of a chunk id -> first record with that prefix
_BUCKET_FLUSH = 2048  # records buffered per first byte while building (~25 MB for 256)


class IndexTable:
    """Index entries in a file of the local cache, sorted by chunk id, read with pread.

    Layout (little-endian; one file, replaced atomically, so readers never see half)::

        b"CPVITAB1" | u32 nsources | nsources * index id (32 B)
                    | u32 npacks | npacks * pack id (32 B)
                    | u64 nrecords | (65536 + 1) * u64 fan-out
                    | nrecords * entry (same 48 B as an index object's, pack numbers global)

    RAM per chunk is ~0: a lookup reads and searches the records that share the id's first two
    bytes (~130 at 8.75 M chunks, 6 KB the kernel caches and may drop). Only the pack ids (32 B
    per pack) and the fan-out (512 KB) are kept in RAM. The file is derived data: it is rebuilt
    from the cached index objects whenever an index object it was built from is gone (a gc
    rewrote the index), and deleting it is always safe.
    """

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
        try:
            size = os.fstat(self._fd).st_size

            def read(at: int, n: int) -> bytes:
                if at + n > size:
                    raise ValueError("truncated")
                return os.pread(self._fd, n, at)

            if read(0, len(TABLE_MAGIC)) != TABLE_MAGIC:
                raise ValueError("not an index table")
            pos = len(TABLE_MAGIC)
            (nsources,) = _U32.unpack(read(pos, _U32.size))
            pos += _U32.size
            raw = read(pos, 32 * nsources)
            self.sources = frozenset(raw[32 * i : 32 * (i + 1)].hex() for i in range(nsources))
            pos += 32 * nsources
            (npacks,) = _U32.unpack(read(pos, _U32.size))
            pos += _U32.size
            self._packs = read(pos, 32 * npacks)
            self.npacks = npacks
            pos += 32 * npacks
            (self.count,) = _U64.unpack(read(pos, _U64.size))
            pos += _U64.size
            self._fanout = array("Q", read(pos, 8 * (_FANOUT + 1)))
            pos += 8 * (_FANOUT + 1)
            self._base = pos
            if pos + self.count * _ENTRY.size != size or self._fanout[_FANOUT] != self.count:
                raise ValueError("size does not match its counts")
            if self._fanout[0] != 0 or any(a > b for a, b in pairwise(self._fanout)):
                raise ValueError("fan-out is not sorted")
        except (ValueError, struct.error, OSError) as exc:
            self.close()
            raise FormatError(f"local index table {path} is damaged ({exc})") from exc

    def pack_id(self, number: int) -> str:
        return self._packs[32 * number : 32 * (number + 1)].hex()

    def pack_ids(self) -> set[str]:
        return {self.pack_id(i) for i in range(self.npacks)}

    def _block(self, cid: bytes, lo: int, hi: int) -> tuple[bytes, int]:
        """The records from ``lo`` to ``hi`` and where ``cid``'s first one starts (-1: none).

        One pread (~6 KB at 8.75 M chunks: nothing mapped, so nothing stays resident but the
        kernel's page cache), searched by bytes.find in C, a few times faster than a bisect in
        Python. A match must start a record.
        """
        size = _ENTRY.size
        block = os.pread(self._fd, (hi - lo) * size, self._base + lo * size)
        at = block.find(cid)
        while at > 0 and at % size:
            at = block.find(cid, at + 1)
        return block, at

    def __contains__(self, cid: bytes) -> bool:
        if len(cid) != DIGEST_SIZE:
            return False
        prefix = cid[0] << 8 | cid[1]
        lo, hi = self._fanout[prefix], self._fanout[prefix + 1]
        return lo != hi and self._block(cid, lo, hi)[1] >= 0

    def find(self, cid: bytes) -> list[Location]:
        """Every location recorded for ``cid`` (several after a repair or a re-push)."""
        if len(cid) != DIGEST_SIZE:
            return []
        prefix = cid[0] << 8 | cid[1]
        lo, hi = self._fanout[prefix], self._fanout[prefix + 1]
        if lo == hi:
            return []
        block, at = self._block(cid, lo, hi)
        size = _ENTRY.size
        found: list[Location] = []
        while at >= 0 and at < len(block) and block[at : at + DIGEST_SIZE] == cid:
            _, pnum, offset, length = _ENTRY.unpack_from(block, at)
            loc = Location(self.pack_id(pnum), offset, length)
            if loc not in found and pnum < self.npacks:
                found.append(loc)
            at += size
        return found

    def first_pack(self, cid: bytes) -> str | None:
        """The pack of ``cid``'s first record (:meth:`find`'s first location's), building no
        location: a version's pack list asks this of every chunk (10^6 for a first push)."""
        if len(cid) != DIGEST_SIZE:
            return None
        prefix = cid[0] << 8 | cid[1]
        lo, hi = self._fanout[prefix], self._fanout[prefix + 1]
        if lo == hi:
            return None
        block, at = self._block(cid, lo, hi)
        while at >= 0 and at < len(block) and block[at : at + DIGEST_SIZE] == cid:
            (pnum,) = _U32.unpack_from(block, at + DIGEST_SIZE)
            if pnum < self.npacks:
                return self.pack_id(pnum)
            at += _ENTRY.size
        return None

    def records(self) -> Iterator[tuple[bytes, Location]]:
        """Every record in chunk-id order (a full scan: for tools, never a push's hot path)."""
        step = 20_000 * _ENTRY.size
        end = self._base + self.count * _ENTRY.size
        for at in range(self._base, end, step):
            block = os.pread(self._fd, min(step, end - at), at)
            for cid, pnum, offset, length in _ENTRY.iter_unpack(block):
                if pnum < self.npacks:
                    yield cid, Location(self.pack_id(pnum), offset, length)

    @classmethod
    def build(cls, path: Path, sources: Iterable[tuple[str, bytes]]) -> IndexTable:
        """Write the table of ``sources`` (index id, verified bytes) to ``path`` and open it.

        Memory stays bounded by one index object plus one 256th of the entries: the records
        are spread over 256 files by their first byte, then each is sorted alone.
        """
        import shutil
        import tempfile
        import time

        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob(".index-table-*"):
            # A build killed half-way (kill -9 skips the clean-up) left this; a day-old one is
            # no other process's build in progress.
            with contextlib.suppress(OSError):
                if time.time() - old.stat().st_mtime > 24 * 3600:
                    if old.is_dir():
                        shutil.rmtree(old, ignore_errors=True)
                    else:  # a version's own table (index_of_packs) its process could not unlink
                        old.unlink()
        with tempfile.TemporaryDirectory(prefix=".index-table-", dir=path.parent) as tmp:
            spill = [open(Path(tmp) / f"{b:02x}", "wb") for b in range(256)]  # noqa: SIM115
            try:
                buffers: list[list[bytes]] = [[] for _ in range(256)]
                packs: dict[bytes, int] = {}
                ids: list[str] = []
                for index_id, raw in sources:
                    local, entries = parse_index(raw, where=index_id)
                    remap = [packs.setdefault(p, len(packs)) for p in local]
                    pack = _ENTRY.pack
                    for cid, pnum, offset, length in _ENTRY.iter_unpack(entries):
                        if pnum >= len(remap):
                            raise DamagedIndexError(
                                index_id, f"index {index_id} names a pack number out of range")
                        buf = buffers[cid[0]]
                        buf.append(pack(cid, remap[pnum], offset, length))
                        if len(buf) >= _BUCKET_FLUSH:
                            spill[cid[0]].write(b"".join(buf))
                            buf.clear()
                    ids.append(index_id)
                for b, buf in enumerate(buffers):
                    spill[b].write(b"".join(buf))
                    buf.clear()
            finally:
                for fh in spill:
                    fh.close()
            fanout = array("Q", bytes(8 * (_FANOUT + 1)))
            out = Path(tmp) / "table"
            total = 0
            with open(out, "wb") as fh:
                fh.write(TABLE_MAGIC + _U32.pack(len(ids)))
                fh.write(b"".join(bytes.fromhex(i) for i in ids))
                fh.write(_U32.pack(len(packs)) + b"".join(packs))
                header = fh.tell()
                fh.write(bytes(_U64.size + len(fanout) * 8))  # counts, written below
                size = _ENTRY.size
                for b in range(256):
                    data = (Path(tmp) / f"{b:02x}").read_bytes()
                    records = sorted(data[i : i + size] for i in range(0, len(data), size))
                    del data
                    # First record of each two-byte prefix: 256 bisects per bucket, no scan.
                    for second in range(256):
                        key = bytes((b, second))
                        fanout[b << 8 | second] = total + bisect_left(records, key)
                    fh.write(b"".join(records))
                    total += len(records)
                fanout[_FANOUT] = total
                fh.seek(header)
                fh.write(_U64.pack(total) + fanout.tobytes())
            os.replace(out, path)
        return cls(path)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __del__(self) -> None:
        self.close()


class ChunkIndex:
    """The merged view of every index object in a store: in RAM, or on disk when large.

    A chunk may be named by several index entries (a repair or a re-push wrote a second copy).
    The first one is used unless damage records (:func:`read_damage`) or a missing pack say it
    is bad; then a good copy is preferred. A chunk whose every copy is bad is *suspect*: it is
    not ``in`` the index (a push uploads it again, which is how a push of the original files
    repairs a damaged version), but :meth:`get` still returns its location as a last resort.

    A large store's entries live in an :class:`IndexTable` (``table``) instead of the dict;
    the dict then holds only what was added since (new index objects, a push's packs) and is
    consulted first. Damage applies to both: the table's copies are judged at lookup.

    Not thread-safe for writers: the push pipeline adds entries under its own lock.
    """

    def __init__(self, table: IndexTable | None = None) -> None:
        self.table = table
        self._chunks: dict[bytes, Location] = {}
        self._alts: dict[bytes, list[Location]] = {}
        self._suspect: set[bytes] = set()
        # Index objects checked but not decoded yet (a no-op push never looks a chunk up):
        # (id, bytes), their entry count and pack ids. Decoded whole, in order, on first need.
        self._lazy: list[tuple[str, bytes]] = []
        self._lazy_entries = 0
        self._lazy_packs: set[str] = set()
        self._load_lock = threading.Lock()
        self._bad: dict[str, frozenset[bytes] | None] = {}
        self.index_ids: set[str] = set()
        self.damaged_ids: set[str] = set()
        self.unpersisted: set[str] = set()
        self.partial = False
        """True for one snapshot's locations only (:func:`load_locations`): never for writers."""

    def still_holds(self, index_ids: AbstractSet[str]) -> bool:
        """Whether every chunk the index objects ``index_ids`` named is still here, intact.

        Index objects never change, and a chunk leaves a store only through a gc or a repair
        that first deletes the index objects naming it, or through damage, which is recorded
        (damage records, a missing pack, a damaged index object). So while those objects are
        all still listed and no damage is known, all their chunks are still in their packs: a
        push trusts what it recorded then without looking up a chunk (docs/format.md).
        """
        return (not self._bad and not self.damaged_ids and not self.unpersisted
                and not self.partial and index_ids <= self.index_ids)

    def would_spill(self, added: int) -> bool:
        """Whether ``added`` more entries would take the ones held in RAM past
        :data:`SPILL_ENTRIES`: :func:`sync_index` would then keep them in the on-disk table."""
        return len(self._chunks) + self._lazy_entries + added > SPILL_ENTRIES

    def __len__(self) -> int:
        """Entries (a chunk the table and the dict both name counts twice: a size, not a set)."""
        return (len(self._chunks) + self._lazy_entries
                + (self.table.count if self.table is not None else 0))

    def defer(self, index_id: str, raw: bytes) -> None:
        """Add an index object whose entries are decoded on the first lookup, not now.

        Its checksum, size and pack numbers are checked here (FormatError), so that a damaged
        object is known at once, as when it was decoded whole; what is left for later is
        building a location per entry (~2 µs each: 10^5 chunks cost a no-op push 0.25 s).
        """
        packs, entries = parse_index(raw, where=index_id)
        if entries and _max_pack_number(entries) >= len(packs):
            raise FormatError(f"index {index_id} names a pack number out of range")
        with self._load_lock:
            self._lazy.append((index_id, raw))
            self._lazy_entries += len(entries) // _ENTRY.size
            self._lazy_packs.update(p.hex() for p in packs)
        self.index_ids.add(index_id)

    def preload(self) -> None:
        """Decode the index objects held back until the first lookup: what processes forked
        from this one would each decode again."""
        if self._lazy:
            self._load()

    def _load(self) -> None:
        with self._load_lock:
            for index_id, raw in self._lazy:
                self._add_entries(decode_index(raw, where=index_id))
            # Emptied last: a thread that finds it empty finds every entry in place.
            self._lazy, self._lazy_entries, self._lazy_packs = [], 0, set()

    def __contains__(self, cid: object) -> bool:
        if self._lazy:
            self._load()
        if self.table is None or not isinstance(cid, bytes):
            return cid in self._chunks and not (self._suspect and cid in self._suspect)
        if not self._bad:  # no damage known (so nothing suspect): any entry will do
            return cid in self._chunks or cid in self.table
        loc, suspect = self._lookup(cid)
        return loc is not None and not suspect

    def get(self, cid: bytes) -> Location | None:
        if self._lazy:
            self._load()
        if self.table is None:
            return self._chunks.get(cid)
        return self._lookup(cid)[0]

    def pack_of(self, cid: bytes) -> str | None:
        """The pack :meth:`get` locates ``cid`` in (None: not indexed), cheaper with a table."""
        if self.table is None or self._bad:
            loc = self.get(cid)
            return None if loc is None else loc.pack_id
        if self._lazy:
            self._load()
        loc = self._chunks.get(cid)
        return loc.pack_id if loc is not None else self.table.first_pack(cid)

    def is_suspect(self, cid: bytes) -> bool:
        if self._lazy:
            self._load()
        if self.table is None:
            return cid in self._suspect
        return self._lookup(cid)[1]

    def _lookup(self, cid: bytes) -> tuple[Location | None, bool]:
        """The location to use and whether every copy is known bad (dict first, then table)."""
        assert self.table is not None
        loc = self._chunks.get(cid)
        if loc is not None and not (self._suspect and cid in self._suspect):
            return loc, False
        found = self.table.find(cid)
        if not self._bad:
            return (found[0], False) if found else (loc, loc is not None)
        for candidate in found:
            if not self._is_bad(cid, candidate):
                return candidate, False
        if loc is not None:
            return loc, True
        return (found[0], True) if found else (None, False)

    def add_pack(self, record: PackRecord) -> None:
        if self._lazy:
            self._load()
        for cid, offset, length in iter_packed(record.packed):
            loc = Location(record.pack_id, offset, length)
            if cid in self._suspect and not self._is_bad(cid, loc):
                self._alts.setdefault(cid, []).append(self._chunks[cid])
                self._chunks[cid] = loc
                self._suspect.discard(cid)
            else:
                self.add_entries(((cid, loc),))

    def add_entries(self, entries: Iterable[tuple[bytes, Location]]) -> None:
        if self._lazy:
            self._load()
        self._add_entries(entries)

    def _add_entries(self, entries: Iterable[tuple[bytes, Location]]) -> None:
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
        if self._lazy:
            self._load()
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
        found = {loc.pack_id for loc in self._chunks.values()} | self._lazy_packs
        found.update(loc.pack_id for alts in self._alts.values() for loc in alts)
        if self.table is not None:
            found |= self.table.pack_ids()
        return found

    def items(self) -> Iterator[tuple[bytes, Location]]:
        """Every chunk once, with the location :meth:`get` gives (the table: a full scan)."""
        if self._lazy:
            self._load()
        yield from self._chunks.items()
        if self.table is not None:
            last = b""
            for cid, _loc in self.table.records():
                if cid != last and cid not in self._chunks:
                    loc = self.get(cid)
                    if loc is not None:
                        yield cid, loc
                last = cid


def sync_index(store: ObjectStore, cache_dir: Path | None) -> ChunkIndex:
    """Load every index object of ``store``, fetching only those not cached locally.

    Above :data:`SPILL_ENTRIES` entries (with a cache to spill to) they go into an
    :class:`IndexTable` on disk instead of RAM; the table stays valid while every index object
    it was built from is listed, and objects added since are held in RAM on top of it.

    A damaged index object is skipped with a warning and listed in ``damaged_ids``: it must
    never block the versions it does not concern. The caller rebuilds what it described from
    pack footers (:meth:`~cpv.engine.repository.Repository.index`). Damage records are applied
    last, so a good copy of a chunk wins over a damaged one.
    """
    listed = [info.key[len(INDEX_PREFIX) :] for info in store.list(INDEX_PREFIX)]
    table = _usable_table(cache_dir, listed) if cache_dir is not None else None
    index = ChunkIndex(table)
    covered = table.sources if table is not None else frozenset()
    index.index_ids.update(covered)
    # Fetch and check what the table does not cover, counting its entries; the bytes are kept
    # only while the total is small. A large total goes into a new table instead of the dict
    # (the objects are read once more, from the cache), so RAM never holds a large index.
    kept: dict[str, bytes] = {}
    entries = 0
    for index_id in listed:
        if index_id in covered:
            continue
        raw = _fetch_index(store, cache_dir, index, index_id)
        if raw is None:
            continue
        if cache_dir is None:  # nowhere to spill: the dict, one object at a time
            _add_index_object(index, index_id, raw)
            continue
        entries += (len(raw) - DIGEST_SIZE) // _ENTRY.size
        if entries <= SPILL_ENTRIES:
            kept[index_id] = raw
        else:
            kept.clear()
    if cache_dir is not None and entries > SPILL_ENTRIES:
        if table is not None:
            table.close()
        damaged = set(index.damaged_ids)
        while True:
            try:
                table = IndexTable.build(cache_dir / TABLE_FILE, (
                    (i, raw) for i in listed if i not in damaged
                    and (raw := _fetch_index(store, cache_dir, index, i)) is not None))
                break
            except DamagedIndexError as exc:  # found only once its entries are read
                _skip_damaged(index, exc.index_id, exc)
                damaged.add(exc.index_id)
        damaged |= index.damaged_ids
        index = ChunkIndex(table)
        index.damaged_ids = damaged
        index.index_ids.update(table.sources)
    for index_id, raw in kept.items():
        _add_index_object(index, index_id, raw)
    index.exclude(read_damage(store))
    return index


def still_current(store: ObjectStore, index: ChunkIndex) -> bool:
    """Whether ``index`` is what :func:`sync_index` would load from ``store`` now.

    Index objects never change, so while the store lists exactly those ``index`` was loaded
    from and no damage is recorded there or in it, loading them again gives the same index: a
    push that loaded it before its lease (to fork walkers) keeps it under the lease instead of
    decoding every object again (~0.5 s at 10^6 files and 37 versions). Costs the two listings
    :func:`sync_index` starts with.
    """
    if not index.still_holds(index.index_ids):  # damage known, packs not yet indexed, partial
        return False
    listed = {info.key[len(INDEX_PREFIX) :] for info in store.list(INDEX_PREFIX)}
    return listed == index.index_ids and not read_damage(store)


def index_of_packs(records: list[PackRecord], cache_dir: Path | None) -> ChunkIndex:
    """An index of ``records`` alone (one version's packs, :meth:`Repository.use_snapshot_
    locations`), in the records' order (the first copy wins, as in the whole index).

    Above :data:`SPILL_ENTRIES` entries, with a cache to spill to, they go into an
    :class:`IndexTable` of their own, as :func:`sync_index` does for the whole index: the
    version of 10^6 files a fresh machine pulls held 0.8 GB of index in a dict. The table's
    file is unlinked once open (it serves this process only); where that is refused, it is
    left for the next build's clean-up of old tables beside it.
    """
    entries = sum(len(r) for r in records)
    if cache_dir is None or entries <= SPILL_ENTRIES:
        index = ChunkIndex()
        for record in records:
            index.add_pack(record)
        return index
    path = cache_dir / f".index-table-{os.getpid()}-{secrets.token_hex(4)}"
    table = IndexTable.build(path, (encode_index([r]) for r in records))
    with contextlib.suppress(OSError):
        path.unlink()
    return ChunkIndex(table)


def _add_index_object(index: ChunkIndex, index_id: str, raw: bytes) -> None:
    try:
        # Checked whole, decoded when first needed: a damaged object contributes nothing
        # (objects reaching here are small, or there is no cache to spill to).
        index.defer(index_id, raw)
    except FormatError as exc:
        _skip_damaged(index, index_id, exc)


def _max_pack_number(entries: memoryview) -> int:
    """The largest pack number among packed :data:`_ENTRY` records, at C speed."""
    words = array("I")
    words.frombytes(entries)
    if sys.byteorder != "little":
        words.byteswap()
    return max(words[8 :: _ENTRY.size // 4])  # word 8 of each 12-word record


def _fetch_index(store: ObjectStore, cache_dir: Path | None, index: ChunkIndex,
                 index_id: str) -> bytes | None:
    """One index object, from the cache or the store, its id and checksum checked; None if
    it vanished (a gc) or is damaged (then it is recorded in ``index.damaged_ids``)."""
    raw = read_cached(cache_dir, "index", index_id)
    try:
        if raw is None:
            try:
                raw = store.get(INDEX_PREFIX + index_id)
            except ObjectNotFoundError:
                log.debug("index %s vanished while listing (gc?)", index_id)
                return None
            if chunk_id(raw).hex() != index_id:
                raise FormatError(f"index object {index_id} does not match its id (damaged)")
            write_cached(cache_dir, "index", index_id, raw)
        parse_index(raw, where=index_id)  # checksum and bounds (pack numbers: as it is read)
    except FormatError as exc:
        _skip_damaged(index, index_id, exc)
        return None
    return raw


def _skip_damaged(index: ChunkIndex, index_id: str, exc: FormatError) -> None:
    log.warning("skipping %s; its packs are read from their footers instead "
                "(cpv repair rewrites it)", exc)
    index.damaged_ids.add(index_id)


def _usable_table(cache_dir: Path, listed: list[str]) -> IndexTable | None:
    """The cached table if every index object it was built from is still listed.

    An object that is gone was rewritten by a gc, and its entries may name condemned packs:
    then the table is stale and rebuilt (invariant 9: an entry whose pack is gone is not reused).
    """
    path = cache_dir / TABLE_FILE
    if not path.exists():
        return None
    try:
        table = IndexTable(path)
    except (OSError, FormatError) as exc:
        log.info("rebuilding the local index table: %s", exc)
        return None
    if table.sources - set(listed):
        table.close()
        return None
    return table


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


def write_locations(store: ObjectStore, snapshot_id: str, packs: Iterable[str]) -> bool:
    """Store ``packs`` as the pack list of ``snapshot_id`` unless a readable one is there
    (an upload killed before its body can leave an empty object under the key)."""
    key = locations_key(snapshot_id)
    if read_locations(store, snapshot_id) is not None:
        return False
    doc = {"version": 1, "packs": sorted(set(packs))}
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
        # (A pull then reads the whole index; a push writes the list again.)
        log.warning("ignoring unreadable %s (%s)", locations_key(snapshot_id), exc)
        return None
    return packs
