"""Positional file I/O on every platform cpv runs on, with the fast calls where they exist.

Linux has ``pread``/``pwrite``/``preadv``, ``O_CLOEXEC``, ``fdatasync`` and ``fchmod``; macOS lacks
``fdatasync``; Windows lacks most of them. Each function here uses the fast call when the
platform has it and a portable one otherwise, so that no engine module calls a Unix-only
function directly. The portable versions move the file offset: every call site opens its own
descriptor per thread (pull opens the temp file per write, the chunker per file and worker), so
that is safe there.

``PORTABLE = True`` (or ``CPV_PORTABLE_IO=1`` in the environment) forces the portable versions,
so the test suite runs them on Linux (``tests/engine/test_portable_io.py``). A leaf module:
the store and the engine both use it, and it imports nothing of cpv.
"""

from __future__ import annotations

import io
import os

PORTABLE = os.environ.get("CPV_PORTABLE_IO", "") == "1"

#: Flags for ``os.open`` that only some platforms have: 0 where they do not exist.
O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
O_BINARY: int = getattr(os, "O_BINARY", 0)
O_NOFOLLOW: int = getattr(os, "O_NOFOLLOW", 0)


def _fast(name: str) -> bool:
    return not PORTABLE and hasattr(os, name)


def pread(fd: int, length: int, offset: int) -> bytes:
    """Up to ``length`` bytes of ``fd`` at ``offset``."""
    if _fast("pread"):
        return os.pread(fd, length, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.read(fd, length)


def pread_into(fd: int, buf: memoryview, offset: int) -> int:
    """Read at ``offset`` straight into ``buf`` (no intermediate bytes object)."""
    if _fast("preadv"):
        return os.preadv(fd, (buf,), offset)
    os.lseek(fd, offset, os.SEEK_SET)
    with io.FileIO(fd, "rb", closefd=False) as f:
        return f.readinto(buf) or 0


def pwrite(fd: int, data: memoryview | bytes, offset: int) -> int:
    """Write ``data`` at ``offset``; returns how many bytes were written."""
    if _fast("pwrite"):
        return os.pwrite(fd, data, offset)
    os.lseek(fd, offset, os.SEEK_SET)
    return os.write(fd, data)


def fchmod(fd: int, mode: int, path: str | os.PathLike[str]) -> None:
    """Set the mode of an open file (by ``path`` where the platform cannot by descriptor)."""
    if _fast("fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(path, mode)


def fdatasync(fd: int) -> None:
    """Flush a file's data to the disk (``fsync`` where ``fdatasync`` does not exist)."""
    if _fast("fdatasync"):
        os.fdatasync(fd)
    else:
        os.fsync(fd)
