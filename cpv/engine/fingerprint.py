"""Folder fingerprints: what a folder's entries look like to ``lstat``, as one hash.

A push fingerprints every folder it scans and reuses the node of a folder whose fingerprint the
stat cache recorded; ``status`` and a no-op push compare the same fingerprints with the ones a
folder's baseline recorded, so an unchanged folder costs one comparison, not a lookup per file.
One owner: a second copy of these bytes would let the two disagree about "unchanged".

The fingerprint is a Merkle hash of a folder's entries in name order: each file's name, mode,
size, mtime, ctime and inode (what the stat cache trusts), each link's target, and each
sub-folder's own fingerprint. Equal fingerprints mean the same tree as far as the stat cache
can tell.
"""

from __future__ import annotations

import struct

from cpv.engine.hashing import chunk_id

FINGERPRINT_SEED = b"cpv folder 2\0"
"""Changes whenever the path rule, the node format or these parts do: a folder is then
encoded again (2: a file's stamp became fixed-size binary fields)."""

_pack_stamp = struct.Struct("<IQqqQ").pack


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def file_part(name: str, mode: int, size: int, mtime_ns: int, ctime_ns: int, ino: int) -> bytes:
    """A file's share of its folder's fingerprint: what the stat cache trusts, and the mode.

    Fixed-size binary fields after the name (one ``struct.pack``, no text formatting: this
    runs once per file of every push, status and no-op check).
    """
    return b"f%s\0%s" % (  # (_utf8 inlined: one call per file of a scan)
        name.encode("utf-8", "surrogateescape"),
        _pack_stamp(mode & 0o7777, size, mtime_ns, ctime_ns, ino))


def link_part(name: str, target: str) -> bytes:
    return b"l%s\0%s\0" % (_utf8(name), _utf8(target))


def dir_part(name: str, fingerprint: bytes) -> bytes:
    return b"d%s\0%s" % (_utf8(name), fingerprint)


def folder_fingerprint(parts: list[bytes]) -> bytes:
    """A folder's fingerprint from its entries' parts, given in name order."""
    return chunk_id(FINGERPRINT_SEED + b"".join(parts))
