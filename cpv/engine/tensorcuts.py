"""Format-aware chunk boundaries: cut a checkpoint at its tensors before FastCDC cuts inside them.

Why: with content-defined cuts alone, a small tensor lives inside a ~1 MiB chunk shared with
its neighbours, so changing it re-uploads the whole chunk. Real fine-tunes that save LoRA
adapters in the same state dict (0.6 % of the bytes changed, in 32 small tensors) uploaded
24-30x the changed bytes. Cutting at tensor boundaries first makes a changed small tensor cost
about its own bytes, and FastCDC still runs inside each large tensor, so a partly changed large
tensor keeps every unchanged chunk (docs/chunking.md, "Tensor boundaries").

This is a store format feature (``tensor-boundaries`` in the store's ``config``): the cut points
below are part of the format, pinned by the golden vectors in ``tests/unit/test_tensorcuts.py``;
so are the limits, because a client with another limit would cut some files differently.

The rule, a pure function of the file's bytes and ``min_size``:

1. A file of at most ``min_size`` bytes is one chunk (as without the feature). Otherwise:
2. **safetensors**: u64 little-endian header length ``n`` (2 <= n <= 1 MiB), then ``n`` bytes
   of JSON object; each entry but ``__metadata__`` has ``data_offsets: [begin, end]`` (ints,
   ``0 <= begin <= end``) relative to ``8 + n``. Marks: ``8 + n`` and every ``8 + n + begin``,
   ``8 + n + end``.
3. otherwise a **zip archive** (``torch.save``'s format: each tensor is a member
   ``<name>/data/<key>``), located as :mod:`zipfile` locates it (end record at the end of the
   file, else the last one in the final 64 KiB + 22 bytes; zip64 end record through its
   locator), whose central directory is at most 4 MiB and parses. Marks: the start of the
   central directory and, per member the directory places inside the file, its local header
   offset and, if the local header is intact (signature, data inside the file) and the data
   is at least :func:`group_floor` bytes, its data start (after local header, name, extra).
4. Anything else, or an inconsistent safetensors header (an offset past the end of the file,
   invalid JSON ...) means no marks: plain FastCDC over the whole file. Never an error, and a
   hostile header costs at most the bounded reads above.
5. The marks split the file into pieces. A piece of at least :func:`group_floor` bytes, and
   a smaller piece right before such a piece (a zip member's local header), is a segment of
   its own; other consecutive smaller pieces (small tensors) are grouped into one segment while
   the group stays within the floor, so a checkpoint of tiny tensors does not turn into
   thousands of tiny chunks, and a changed small tensor costs at most the floor.
6. Each segment is cut by FastCDC as if it were a file of its own.
"""

from __future__ import annotations

import json
import struct
import zipfile
from collections.abc import Callable
from typing import Final

from cpv.store import MiB

__all__ = [
    "FEATURE",
    "SAFETENSORS_HEADER_LIMIT",
    "ZIP_DIRECTORY_LIMIT",
    "ReadAt",
    "group_floor",
    "plan_cuts",
]

FEATURE: Final = "tensor-boundaries"
"""The name of the rule in the store's ``config`` (``features.write``)."""
SAFETENSORS_HEADER_LIMIT: Final = 1 * MiB
"""Longer headers are not parsed: bounds the memory a hostile header costs (json objects)."""
ZIP_DIRECTORY_LIMIT: Final = 4 * MiB
"""Larger central directories are not parsed (~50,000 members): bounds memory likewise."""
_GROUP_DIVISOR: Final = 256

ReadAt = Callable[[int, int], bytes]
"""``read_at(offset, length)``: the file's bytes there (shorter only at the end of the file)."""

_EOCD = struct.Struct("<4s4H2LH")
_EOCD_SIG: Final = b"PK\x05\x06"
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64_LOCATOR_SIG: Final = b"PK\x06\x07"
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
_EOCD64_SIG: Final = b"PK\x06\x06"
_LOCAL = struct.Struct("<4s2B4HL2L2H")
_LOCAL_SIG: Final = b"PK\x03\x04"
_MAX_COMMENT: Final = 65535


def group_floor(min_size: int) -> int:
    """Pieces smaller than this are grouped (1 KiB for the default ``min_size`` of 256 KiB).

    Measured (``benchmarks/finetune_real.py --floor-study``, docs/chunking.md): grouping up to
    4 KiB or more made a ``torch.save`` LoRA fine-tune cost 1.24-1.32x what changed instead of
    1.05x, because every zip member's local header names the archive (the file name it was
    saved under), so headers change with every save and drag the small tensors grouped with
    them; 64 KiB also cost safetensors LoRA 1.06x instead of 1.02x. No grouping at all would
    give a file of tiny tensors (optimizer step counters, hostile input) a chunk per tensor.
    """
    return max(1, min_size // _GROUP_DIVISOR)


def plan_cuts(
    read_at: ReadAt, size: int, *, min_size: int, floor: int | None = None
) -> list[int]:
    """The segment starts (ascending, each in ``(0, size)``) for a file of ``size`` bytes.

    An empty list means one segment: the whole file, cut by plain FastCDC. ``floor`` overrides
    :func:`group_floor` for measurements only (``benchmarks/finetune_real.py --floor-study``):
    the format is the default.
    """
    if size <= min_size:
        return []
    floor = group_floor(min_size) if floor is None else max(1, floor)
    marks = _safetensors_marks(read_at, size)
    if marks is None:
        marks = _zip_marks(read_at, size, floor)
    if not marks:
        return []
    return _group(sorted(m for m in marks if 0 < m < size), size, floor)


def _group(points: list[int], size: int, floor: int) -> list[int]:
    # A small piece right before a large one stands alone: it is usually what describes the
    # large one (a zip member's local header, with its CRC), so it changes with it and must
    # not drag a group of unrelated small neighbours along.
    bounds = [0, *points, size]
    starts: list[int] = []
    group = 0  # length of the open group of small pieces; 0 = none open
    for i in range(len(bounds) - 1):
        begin, length = bounds[i], bounds[i + 1] - bounds[i]
        next_large = i + 2 < len(bounds) and bounds[i + 2] - bounds[i + 1] >= floor
        if length >= floor or next_large:
            starts.append(begin)
            group = 0
        elif group == 0 or group + length > floor:
            starts.append(begin)
            group = length
        else:
            group += length
    return starts[1:]


def _safetensors_marks(read_at: ReadAt, size: int) -> set[int] | None:
    head = read_at(0, 8)
    if len(head) < 8:
        return None
    n = int.from_bytes(head, "little")
    if not 2 <= n <= SAFETENSORS_HEADER_LIMIT or 8 + n > size:
        return None
    raw = read_at(8, n)
    if len(raw) != n or raw[:1] != b"{":
        return None
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON or UTF-8, absurd ints, deep nesting
        return None
    if not isinstance(doc, dict):
        return None
    base = 8 + n
    marks = {base}
    for name, info in doc.items():
        if name == "__metadata__":
            continue
        if not isinstance(info, dict):
            return None
        offsets = info.get("data_offsets")
        if not isinstance(offsets, list) or len(offsets) != 2:
            return None
        begin, end = offsets
        if type(begin) is not int or type(end) is not int:  # bool is an int: refuse it
            return None
        if not 0 <= begin <= end or base + end > size:
            return None
        marks.add(base + begin)
        marks.add(base + end)
    return marks


class _ReadAtFile:
    """The minimal file object :class:`zipfile.ZipFile` needs, over ``read_at``."""

    def __init__(self, read_at: ReadAt, size: int) -> None:
        self._read_at = read_at
        self._size = size
        self._pos = 0

    def seek(self, offset: int, whence: int = 0) -> int:
        base = (0, self._pos, self._size)[whence]
        if base + offset < 0:
            raise ValueError("negative seek position")
        self._pos = base + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        if n < 0:
            n = self._size - self._pos
        n = max(0, min(n, self._size - self._pos))
        data = self._read_at(self._pos, n) if n else b""
        self._pos += len(data)
        return data

    def seekable(self) -> bool:
        return True


def _directory_size(read_at: ReadAt, size: int) -> int | None:
    """The central directory's size, found as zipfile finds it; None if not a zip."""
    if size < _EOCD.size:
        return None
    record = read_at(size - _EOCD.size, _EOCD.size)
    end = size - _EOCD.size
    if not (record[:4] == _EOCD_SIG and record[-2:] == b"\0\0"):
        start = max(0, size - _MAX_COMMENT - _EOCD.size)
        tail = read_at(start, size - start)
        i = tail.rfind(_EOCD_SIG)
        if i < 0 or len(tail) - i < _EOCD.size:
            return None
        record = tail[i : i + _EOCD.size]
        end = start + i
    fields = _EOCD.unpack(record)
    directory = int(fields[5])
    if end < _EOCD64_LOCATOR.size:
        return directory
    locator = read_at(end - _EOCD64_LOCATOR.size, _EOCD64_LOCATOR.size)
    if len(locator) != _EOCD64_LOCATOR.size or locator[:4] != _EOCD64_LOCATOR_SIG:
        return directory
    at = end - _EOCD64_LOCATOR.size - _EOCD64.size
    if at < 0:
        return None
    record64 = read_at(at, _EOCD64.size)
    if len(record64) != _EOCD64.size or record64[:4] != _EOCD64_SIG:
        return None
    return int(_EOCD64.unpack(record64)[8])


def _zip_marks(read_at: ReadAt, size: int, floor: int) -> set[int] | None:
    # A member's local header and its data descriptor (after the data) carry its data's CRC,
    # so they change with the data: a member is one piece from its local header to the next
    # member's, never split among groups of small neighbours (in torch.save's zip, storages
    # are in the string order of their keys, so a changed adapter's neighbours are unrelated
    # tensors). Only a large member gets a mark at its data start, so that a partial change of
    # its data does not drag the chunk holding its header and first bytes along. A member
    # whose local header is damaged keeps only its header-offset mark: one bad spot (a
    # scattered edit) must not throw away the boundaries of every other tensor.
    directory = _directory_size(read_at, size)
    if directory is None or directory > ZIP_DIRECTORY_LIMIT:
        return None
    marks: set[int] = set()
    try:
        with zipfile.ZipFile(_ReadAtFile(read_at, size)) as archive:
            marks.add(archive.start_dir)  # where the central directory begins
            for info in archive.infolist():
                offset = info.header_offset
                if not 0 <= offset < size:
                    continue
                marks.add(offset)
                local = read_at(offset, _LOCAL.size)
                if len(local) != _LOCAL.size:
                    continue
                fields = _LOCAL.unpack(local)
                if fields[0] != _LOCAL_SIG:
                    continue
                start = offset + _LOCAL.size + int(fields[10]) + int(fields[11])
                end = start + info.compress_size
                if end > size or info.compress_size < 0:
                    continue
                if info.compress_size >= floor:
                    marks.add(start)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, struct.error, EOFError,
            NotImplementedError, OverflowError, IndexError, KeyError, TypeError):
        return None
    return marks
