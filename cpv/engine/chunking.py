"""Content-defined chunking: where a file is cut into the chunks the store deduplicates.

Cut points come from FastCDC 2020 (a gear rolling hash with normalised chunking, level 1), as
implemented by ``pyfastcdc``, whose cut loop is compiled and releases the GIL, so several threads
can chunk several files at once. A cut point depends only on the bytes since the previous cut
(never on how the file was read), so an edit in the middle of a file moves at most the chunks
around the edit and every other chunk keeps its id: that is deduplication below file level
(DESIGN invariant 3).

**The parameters are part of the store format.** They are written into the store's ``config``
object (:meth:`ChunkerParams.to_dict`) and read back from it (:meth:`ChunkerParams.from_dict`);
two clients that chunked the same bytes differently would stop deduplicating against each other.
Changing :data:`DEFAULT_CHUNKER` only affects stores created afterwards. The golden vectors in
``tests/unit/test_chunking.py`` pin the exact cut points; if they change, the format changed.

Why :data:`DEFAULT_CHUNKER` is min/avg/max = 256 KiB / 768 KiB / 4 MiB (mean chunk ~1.1 MiB):
overwriting 10 % of a checkpoint's tensors re-uploads about 1-2 mean chunks per changed region on
top of the changed bytes, so larger chunks pushed that upload past 13 % of the file in the
measurements; see ``docs/chunking.md`` and ``benchmarks/chunk_params.py``.

Reading: :func:`iter_file_chunks` reads with ``preadv`` into one reusable, page-aligned buffer of
a few times ``max_size`` (never the whole file) and cuts it with ``cut_buf``. It does not ``mmap``
the file, although pyfastcdc's ``cut_file`` is up to ~25 % faster on a warm file (no copy): a
mapped file that is truncated while it is read (a training job rewriting its checkpoint in place)
kills the process with SIGBUS, where a read just comes up short and the engine can report it. With
the page cache dropped behind the reader it was the fastest on cold files (``docs/chunking.md``).
"""

from __future__ import annotations

import logging
import mmap
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol, Union

from pyfastcdc import FastCDC

from cpv import osio
from cpv.engine.tensorcuts import plan_cuts
from cpv.errors import ConfigError, FormatError, LocalIOError
from cpv.store import KiB, MiB

if TYPE_CHECKING:
    from cpv.engine.hashing import Buffer

__all__ = [
    "ALGORITHM",
    "DEFAULT_CHUNKER",
    "ChunkerParams",
    "SupportsFileno",
    "iter_buffer_chunks",
    "iter_file_chunks",
    "min_read_buffer_size",
    "new_read_buffer",
    "read_buffer_size",
]

log = logging.getLogger(__name__)

ALGORITHM: Final = "fastcdc2020"
"""FastCDC 2020 as in pyfastcdc 0.3.1 / fastcdc-rs: normalisation level 1, the paper's gear table
XOR ``seed``, a cut at the first gear-hash match after ``min_size``, forced at ``max_size``."""

# pyfastcdc's own limits; outside them its constructor raises.
_MIN_SIZE_RANGE: Final = (64, 1 * MiB)
_AVG_SIZE_RANGE: Final = (256, 4 * MiB)
_MAX_SIZE_RANGE: Final = (1 * KiB, 16 * MiB)
_SEED_LIMIT: Final = 1 << 63  # pyfastcdc shifts the seed left by one into a uint64

_KEYS: Final = ("algorithm", "min_size", "avg_size", "max_size", "seed")

_PAGE: Final = mmap.PAGESIZE
_READ_SIZE_FLOOR: Final = 16 * MiB
"""Smallest refill of the default read buffer: large reads keep syscalls and tail copies rare."""
_DROP_STEP: Final = 16 * MiB
"""drop_cache advises the kernel once per this many bytes read; smaller files keep their cache."""


class _InvalidParamsError(Exception):
    """What is wrong; re-raised as ConfigError (from code) or FormatError (from a store)."""


def _check_params(values: Mapping[str, object]) -> tuple[int, int, int, int]:
    """Validate parameter values from either way in; returns (min, avg, max, seed)."""
    algorithm = values["algorithm"]
    if algorithm != ALGORITHM:
        raise _InvalidParamsError(
            f"unknown chunking algorithm {algorithm!r} (known: {ALGORITHM!r})"
        )
    ints: list[int] = []
    for name in ("min_size", "avg_size", "max_size", "seed"):
        value = values[name]
        if not isinstance(value, int) or isinstance(value, bool):
            raise _InvalidParamsError(f"{name} must be an int, got {value!r}")
        ints.append(value)
    min_size, avg_size, max_size, seed = ints
    checks = (
        ("min_size", min_size, _MIN_SIZE_RANGE),
        ("avg_size", avg_size, _AVG_SIZE_RANGE),
        ("max_size", max_size, _MAX_SIZE_RANGE),
    )
    for name, value, (low, high) in checks:
        if not low <= value <= high:
            raise _InvalidParamsError(f"{name}={value} is outside [{low}, {high}]")
    if not min_size <= avg_size <= max_size:
        raise _InvalidParamsError(
            f"need min_size <= avg_size <= max_size, got {min_size} / {avg_size} / {max_size}"
        )
    # The cut loop steps two bytes at a time from min_size rounded down to even, so an odd
    # min_size would let chunks one byte shorter than promised through.
    if min_size % 2:
        raise _InvalidParamsError(f"min_size={min_size} must be even")
    if not 0 <= seed < _SEED_LIMIT:
        raise _InvalidParamsError(f"seed={seed} is outside [0, 2**63)")
    return min_size, avg_size, max_size, seed


@dataclass(frozen=True, slots=True)
class ChunkerParams:
    """How files are cut into chunks; fixed for the life of a store (it is in its ``config``).

    Attributes:
        min_size: no chunk is shorter, except the last chunk of a file. Even, 64 B .. 1 MiB.
        avg_size: pyfastcdc's ``avg_size``: where the cut condition loosens (normalised
            chunking). The real mean chunk is about ``min_size + avg_size``. 256 B .. 4 MiB.
        max_size: a cut is forced here. 1 KiB .. 16 MiB.
        seed: XORed into the gear table; another seed gives other cut points (0 = the paper's
            table). Lets a store make its cut points unguessable, as restic's per-repo polynomial.
        algorithm: only :data:`ALGORITHM` exists.
        tensor_boundaries: cut safetensors and zip (``torch.save``) files at their tensors
            first, FastCDC inside each (:mod:`cpv.engine.tensorcuts`). A store *feature*, not a
            key of :meth:`to_dict`: the store's ``config`` lists it so that a cpv that does not
            know it refuses to push (:mod:`cpv.engine.format`).

    Raises:
        ConfigError: a value is out of range or of the wrong type.
    """

    min_size: int
    avg_size: int
    max_size: int
    seed: int = 0
    algorithm: str = ALGORITHM
    tensor_boundaries: bool = False

    def __post_init__(self) -> None:
        values = {name: getattr(self, name) for name in _KEYS}
        try:
            _check_params(values)
            if not isinstance(self.tensor_boundaries, bool):
                raise _InvalidParamsError(
                    f"tensor_boundaries must be a bool, got {self.tensor_boundaries!r}"
                )
        except _InvalidParamsError as exc:
            raise ConfigError(
                f"invalid chunker parameters: {exc}",
                hint="use DEFAULT_CHUNKER, or sizes with 64 B <= min <= avg <= max <= 16 MiB",
            ) from None

    def to_dict(self) -> dict[str, int | str]:
        """The form stored in the store's ``config`` object (JSON-ready)."""
        return {
            "algorithm": self.algorithm,
            "min_size": self.min_size,
            "avg_size": self.avg_size,
            "max_size": self.max_size,
            "seed": self.seed,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, object], *, tensor_boundaries: bool = False
    ) -> ChunkerParams:
        """Parse what :meth:`to_dict` wrote, as read back from a store.

        ``tensor_boundaries`` comes from the store's feature list, not from ``data``.

        Unknown keys are refused: a newer cpv may have added a parameter that changes cut points,
        and ignoring it would silently break deduplication.

        Raises:
            FormatError: missing or unknown keys, an unknown algorithm, or invalid values.
        """
        hint = "the store's config object is damaged or was written by an incompatible cpv"
        if not isinstance(data, Mapping):
            raise FormatError(f"stored chunker parameters are not an object: {data!r}", hint=hint)
        if set(data) != set(_KEYS):
            missing = ", ".join(sorted(set(_KEYS) - set(data))) or "-"
            unknown = ", ".join(sorted(map(str, set(data) - set(_KEYS)))) or "-"
            raise FormatError(
                f"stored chunker parameters have missing keys: {missing}; unknown keys: {unknown}",
                hint=hint,
            )
        try:
            min_size, avg_size, max_size, seed = _check_params(data)
        except _InvalidParamsError as exc:
            raise FormatError(f"stored chunker parameters are invalid: {exc}", hint=hint) from None
        return cls(
            min_size=min_size,
            avg_size=avg_size,
            max_size=max_size,
            seed=seed,
            tensor_boundaries=tensor_boundaries,
        )


def _new_cdc(params: ChunkerParams) -> FastCDC:
    """A fresh pyfastcdc chunker: cheap, and pyfastcdc objects are not meant to be shared."""
    return FastCDC(
        params.avg_size,
        min_size=params.min_size,
        max_size=params.max_size,
        normalized_chunking=1,
        seed=params.seed,
    )


DEFAULT_CHUNKER: Final = ChunkerParams(
    min_size=256 * KiB, avg_size=768 * KiB, max_size=4 * MiB, tensor_boundaries=True
)
"""The parameters of new stores: mean chunk ~1.1 MiB, ~940 chunks per GiB, cut at tensor
boundaries first. See docs/chunking.md."""


class SupportsFileno(Protocol):
    """An open file object (only its descriptor is used)."""

    def fileno(self) -> int: ...


FileSource = Union[int, SupportsFileno, str, "os.PathLike[str]"]


def _round_up(n: int, to: int) -> int:
    return -(-n // to) * to


def _head_size(params: ChunkerParams) -> int:
    # Room in front of the read position for the unconsumed tail (< max_size) of the previous
    # read, so every read lands page-aligned (an unaligned destination halves copy speed here).
    return _round_up(params.max_size, _PAGE)


def min_read_buffer_size(params: ChunkerParams) -> int:
    """The smallest ``buffer`` :func:`iter_file_chunks` accepts for ``params``."""
    return _head_size(params) + params.max_size


def read_buffer_size(params: ChunkerParams) -> int:
    """The size :func:`new_read_buffer` uses by default (20 MiB for :data:`DEFAULT_CHUNKER`)."""
    return _head_size(params) + max(_READ_SIZE_FLOOR, _round_up(3 * params.max_size, _PAGE))


def new_read_buffer(params: ChunkerParams, *, size: int | None = None) -> memoryview:
    """A page-aligned, zero-filled read buffer for :func:`iter_file_chunks`; keep one per thread.

    It is anonymous memory (``mmap``), so pages cost nothing until first used, and reusing one
    buffer for many files avoids paying first-touch again for each (slow on some VMs).
    """
    size = read_buffer_size(params) if size is None else size
    if size < min_read_buffer_size(params):
        raise ConfigError(
            f"read buffer of {size} bytes is too small for max_size={params.max_size}",
            hint=f"use at least {min_read_buffer_size(params)} bytes, or the default",
        )
    return memoryview(mmap.mmap(-1, size))




def read_small(fd: int, view: memoryview, expected: int) -> int:
    """Read a file of at most ``min_size`` bytes (one chunk) into ``view``: usually one syscall.

    For a 20,000-file data set the per-file overhead of the streaming chunker (readahead
    advice, a FastCDC object, a second read to see EOF) was a visible part of the push. A read
    that returns exactly the ``expected`` size (from ``fstat``) is taken as the whole file; if
    the file grew, up to one byte more is read, so the caller's size check sees the change.
    """
    limit = min(expected + 1, len(view))
    got = 0
    while got < limit:
        n = osio.pread_into(fd, view[got:limit], got)
        if n == 0:
            break
        got += n
        if got == expected:
            break
    return got


def _describe(source: FileSource) -> str:
    if isinstance(source, int):
        return f"file descriptor {source}"
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source)
    return str(getattr(source, "name", source))


def iter_file_chunks(
    source: FileSource,
    params: ChunkerParams,
    *,
    buffer: memoryview | None = None,
    drop_cache: bool = True,
) -> Iterator[tuple[int, memoryview]]:
    """Cut a file into chunks, streaming, in order: yields ``(offset, chunk_bytes)``.

    The memoryview points into the read buffer and is **valid only until the next iteration**:
    hash it, copy it or send it before asking for the next chunk. An empty file yields nothing; a
    file of at most ``min_size`` bytes yields one chunk. Cut points are a pure function of the
    file's bytes and ``params`` (identical to :func:`iter_buffer_chunks` on the same bytes),
    whatever the buffer size.

    The file is read from offset 0 to EOF with ``preadv`` (its file position is neither used nor
    moved), hinting sequential access to the kernel. Memory is bounded by the buffer.
    Thread-safe when each thread uses its own ``buffer``; ``cut_buf`` and ``preadv`` release the
    GIL, so threads chunking different files run in parallel.

    Args:
        source: a path (opened and closed here), an open file descriptor or an object with
            ``fileno()`` (both left open). Must be a seekable regular file.
        params: the store's chunker parameters.
        buffer: a writable buffer of at least :func:`min_read_buffer_size` bytes to reuse
            across files (see :func:`new_read_buffer`); by default a new one per call. It must not
            be used by anything else until the iteration is over.
        drop_cache: tell the kernel to drop the file's pages from the page cache behind the
            reader (``POSIX_FADV_DONTNEED``, as borg does), for files larger than 16 MiB. Pushing
            a large checkpoint then does not evict everything else, and on VMs where fresh page
            cache memory is slow to fault in, cold reads ran 1.7-2.5x faster (docs/chunking.md).
            Pages other processes have mapped are never dropped.

    Raises:
        LocalIOError: the file cannot be opened or read.
        ConfigError: ``buffer`` is read-only, not bytes-shaped, or too small.
    """
    if buffer is None:
        view = new_read_buffer(params)
    else:
        view = buffer if buffer.format == "B" and buffer.ndim == 1 else buffer.cast("B")
        if view.readonly:
            raise ConfigError("the read buffer is read-only", hint="pass a writable buffer")
        if len(view) < min_read_buffer_size(params):
            raise ConfigError(
                f"read buffer of {len(view)} bytes is too small for max_size={params.max_size}",
                hint=f"use at least {min_read_buffer_size(params)} bytes (new_read_buffer)",
            )
    return _iter_file_chunks(source, params, view, drop_cache=drop_cache)


def _iter_file_chunks(
    source: FileSource, params: ChunkerParams, view: memoryview, *, drop_cache: bool
) -> Iterator[tuple[int, memoryview]]:
    close_fd = isinstance(source, (str, os.PathLike))
    try:
        if isinstance(source, (str, os.PathLike)):
            fd = os.open(source, os.O_RDONLY | osio.O_BINARY | osio.O_CLOEXEC)
        elif isinstance(source, int):
            fd = source
        else:
            fd = source.fileno()
    except OSError as exc:
        raise LocalIOError(
            f"cannot open {_describe(source)}: {exc.strerror or exc}", path=_describe(source)
        ) from exc
    try:
        if hasattr(os, "posix_fadvise"):
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)
            except OSError:  # not a regular file, or the filesystem has no readahead
                log.debug("posix_fadvise(SEQUENTIAL) refused for %s", _describe(source))
        cuts = _plan_file_cuts(fd, params, source) if params.tensor_boundaries else []
        yield from _cut_fd(fd, params, view, source, drop_cache=drop_cache, cuts=cuts)
    finally:
        if close_fd:
            os.close(fd)


def _plan_file_cuts(fd: int, params: ChunkerParams, source: FileSource) -> list[int]:
    """The tensor-boundary segment starts of an open file (reads its header only)."""

    def read_at(offset: int, length: int) -> bytes:
        try:
            return os.pread(fd, length, offset)
        except OSError as exc:
            raise LocalIOError(
                f"cannot read {_describe(source)}: {exc.strerror or exc}", path=_describe(source)
            ) from exc

    try:
        size = os.fstat(fd).st_size
    except OSError as exc:
        raise LocalIOError(
            f"cannot stat {_describe(source)}: {exc.strerror or exc}", path=_describe(source)
        ) from exc
    return plan_cuts(read_at, size, min_size=params.min_size)


def _cut_fd(
    fd: int,
    params: ChunkerParams,
    view: memoryview,
    source: FileSource,
    *,
    drop_cache: bool,
    cuts: list[int],
) -> Iterator[tuple[int, memoryview]]:
    # The window view[start:end] holds file bytes [chunk_offset, chunk_offset + end - start).
    # A cut is only asked for when the window holds at least max_size bytes or reaches the end
    # of the file or of the segment (``cuts``: each segment is cut as a file of its own): the
    # cut looks at most max_size bytes ahead, so that is what makes cut points independent of
    # the buffer size.
    cdc = _new_cdc(params)
    segment_ends = iter(cuts)
    segment_end = next(segment_ends, None)
    max_size = params.max_size
    head = _head_size(params)
    capacity = len(view)
    start = end = head
    file_offset = chunk_offset = dropped = 0
    eof = False
    drop = drop_cache and hasattr(os, "posix_fadvise")
    while True:
        if not eof and end - start < max_size:
            tail = end - start
            # Never overlaps: start >= head here, since each refill leaves >= max_size bytes.
            view[head - tail : head] = view[start:end]
            start, end = head - tail, head
            while end < capacity:
                try:
                    n = osio.pread_into(fd, view[end:], file_offset)
                except OSError as exc:
                    raise LocalIOError(
                        f"cannot read {_describe(source)}: {exc.strerror or exc}",
                        path=_describe(source),
                    ) from exc
                if n == 0:
                    eof = True
                    break
                end += n
                file_offset += n
            # Everything read so far is in the buffer; the page cache copy is not needed again.
            if drop and file_offset - dropped >= _DROP_STEP:
                _drop_cache(fd, dropped, file_offset - dropped)
                dropped = file_offset
        if start == end:
            if drop and dropped:
                _drop_cache(fd, dropped, 0)
            return
        stop, final = end, eof
        if segment_end is not None and segment_end - chunk_offset <= end - start:
            stop, final = start + segment_end - chunk_offset, True
        for chunk in cdc.cut_buf(view[start:stop]):
            yield chunk_offset, chunk.data
            start += chunk.length
            chunk_offset += chunk.length
            if not final and end - start < max_size:
                break
        if chunk_offset == segment_end:
            segment_end = next(segment_ends, None)


def _drop_cache(fd: int, offset: int, length: int) -> None:
    try:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_DONTNEED)
    except OSError:  # advice only
        log.debug("posix_fadvise(DONTNEED) refused on fd %d", fd)


def iter_buffer_chunks(buf: Buffer, params: ChunkerParams) -> Iterator[tuple[int, memoryview]]:
    """Cut in-memory bytes into chunks: yields ``(offset, chunk_bytes)`` in order.

    Same cut points as :func:`iter_file_chunks` on a file with these bytes. The memoryviews are
    slices of ``buf`` (no copy) and stay valid as long as ``buf`` does.
    """
    view = memoryview(buf)
    if view.format != "B" or view.ndim != 1:
        view = view.cast("B")
    cuts: list[int] = []
    if params.tensor_boundaries:
        cuts = plan_cuts(
            lambda offset, length: bytes(view[offset : offset + length]),
            len(view),
            min_size=params.min_size,
        )
    cdc = _new_cdc(params)
    begin = 0
    for end in [*cuts, len(view)]:
        for chunk in cdc.cut_buf(view[begin:end]):
            yield begin + chunk.offset, chunk.data
        begin = end
