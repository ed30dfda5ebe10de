"""Snapshots: the content-addressed description of one pushed file tree.

Stored at ``snapshots/<id>`` as ``b"CPVSNAP1" + zlib(canonical JSON)``, where the id is the
blake3 of the stored bytes, so a snapshot cannot be altered without changing its id. JSON::

    {"version": 1, "meta": {...},
     "files": [{"p": "model/weights.safetensors", "s": 2147483648, "m": 420,
                "h": "<blake3 hex of the whole file>",
                "c": "<chunk ids, hex, concatenated>" | null,
                "l": "<symlink target>" (symlinks only)}]}

``"c": null`` means the file is a single chunk whose id is its blake3 (or no chunk when empty),
which keeps data sets of many small files compact. Paths are relative POSIX paths, sorted,
unique, and checked on decode against the shared path rule (:mod:`cpv.pathrules`), symlinks
against each other too (invariant 7).

A snapshot holds no timestamp or host name: the same tree always encodes to the same bytes and
so the same id, which is what makes pushing an unchanged tree upload nothing (invariant 3).
When and by whom a version was made is Git's business (the manifest and the commit).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from cpv.engine.hashing import DIGEST_SIZE, chunk_id, split_ids
from cpv.errors import FormatError, IntegrityError, UnsafePathError
from cpv.pathrules import check_link_graph, check_relpath, check_symlink_target

SNAPSHOT_MAGIC = b"CPVSNAP1"
SNAPSHOT_PREFIX = "snapshots/"
SNAPSHOT_VERSION = 1
MAX_SNAPSHOT_BYTES = 2 * 1024**3
_HEX = frozenset("0123456789abcdef")
_MODES: dict[int, int] = {}
"""One int object per permission set (at most 4096): each file's own was 28 bytes, 28 MB of a
10^6-file snapshot."""


class FileEntry(NamedTuple):
    """One file (or symlink) of a snapshot.

    A named tuple, not a frozen dataclass: a push, pull or listing of 10^6 files makes one per
    file, and a tuple is built three times faster (0.3 µs, not 0.9)."""

    path: str
    size: int
    mode: int
    blake3: str
    chunks: tuple[bytes, ...]
    link: str | None = None

    @property
    def is_symlink(self) -> bool:
        return self.link is not None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A pushed tree. ``files`` are sorted by path."""

    files: tuple[FileEntry, ...]
    meta: Mapping[str, str] = field(default_factory=dict)
    tree_id: bytes | None = None
    """Format 2: the id of the top tree node (``cpv/engine/tree.py``); None for format 1."""
    node_ids: frozenset[bytes] = frozenset()
    """Format 2, as loaded: every tree node id the snapshot references (live for gc)."""

    @property
    def total_size(self) -> int:
        return sum(f.size for f in self.files)

    def encode(self) -> tuple[str, bytes]:
        """Canonical bytes and the id they hash to (a format-2 root when ``tree_id`` is set)."""
        if self.tree_id is not None:
            from cpv.engine.tree import encode_root

            return encode_root(self.tree_id, files=len(self.files), size=self.total_size,
                               meta=self.meta)
        files = []
        for f in self.files:
            doc = file_doc(f)
            doc["p"] = f.path
            files.append(doc)
        body = {
            "version": SNAPSHOT_VERSION,
            "meta": dict(self.meta),
            "files": files,
        }
        text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        raw = SNAPSHOT_MAGIC + zlib.compress(text.encode("utf-8"), 6)
        return chunk_id(raw).hex(), raw

    @classmethod
    def decode(
        cls, raw: bytes, *, snapshot_id: str | None = None, check_paths: bool = True
    ) -> Snapshot:
        """Parse stored bytes, checking the id, the schema and (``check_paths``) every path.

        ``check_paths=False`` is for readers that need the chunk lists only (gc, verify): a
        snapshot that breaks the path rule (one an older cpv pushed with a nested ``.git``,
        before the rule covered it) still holds live chunks, and must never stop gc or verify.
        Nothing that writes files may skip the check.
        """
        where = snapshot_id or "(snapshot)"
        if snapshot_id is not None and chunk_id(raw).hex() != snapshot_id:
            raise FormatError(f"snapshot {snapshot_id} does not match its id (damaged)")
        if not raw.startswith(SNAPSHOT_MAGIC):
            raise FormatError(f"snapshot {where} is not a cpv snapshot (unknown format)")
        try:
            d = zlib.decompressobj()
            text = d.decompress(raw[len(SNAPSHOT_MAGIC) :], MAX_SNAPSHOT_BYTES)
            if d.unconsumed_tail:
                raise FormatError(f"snapshot {where} expands beyond {MAX_SNAPSHOT_BYTES} bytes")
            doc = json.loads(text)
        except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"snapshot {where} is malformed: {exc}") from exc
        if not isinstance(doc, dict):
            raise FormatError(f"snapshot {where} is malformed: not an object")
        if doc.get("version") != SNAPSHOT_VERSION:
            raise FormatError(
                f"snapshot {where} has version {doc.get('version')!r}; this cpv reads "
                f"version {SNAPSHOT_VERSION}",
                hint="upgrade cpv",
            )
        try:
            files = tuple(_decode_file(f, check_paths) for f in doc["files"])
            meta = {str(k): str(v) for k, v in dict(doc.get("meta", {})).items()}
        except UnsafePathError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"snapshot {where} is malformed: {exc!r}") from exc
        if check_paths:
            check_tree_paths(files)
        return cls(files=files, meta=meta)


def check_tree_paths(files: Iterable[FileEntry]) -> None:
    """The checks that need the whole tree: unique paths, no file that is also a folder, links
    that stay inside the tree through each other (invariant 7)."""
    seen: set[str] = set()
    dirs: set[str] = set()
    for f in files:
        if f.path in seen:
            raise UnsafePathError(f.path, "appears twice in the snapshot")
        seen.add(f.path)
        parent = f.path
        # Folders in order: once one is known, so are all above it (100,000 files of a few
        # folders cost one set lookup each, not a join per level).
        while (cut := parent.rfind("/")) > 0:
            parent = parent[:cut]
            if parent in dirs:
                break
            dirs.add(parent)
    clash = seen & dirs
    if clash:
        raise UnsafePathError(sorted(clash)[0], "is both a file and a directory")
    # A link may climb out of the tree through another link (x/s -> .., l -> x/s/../..).
    check_link_graph({f.path: f.link for f in files if f.link is not None})


def file_doc(f: FileEntry, name: str | None = None) -> dict[str, Any]:
    """A file's stored fields, with its ``name`` as a tree node keeps it (``n``; format 1 adds
    its path, ``p``).

    The keys are made in sorted order, as canonical JSON has them: tree nodes are encoded
    without sorting them again (:func:`cpv.engine.tree.encode_folder`, once per file).
    """
    if f.link is None:
        doc: dict[str, Any] = {"c": chunks_field(f), "h": f.blake3, "m": f.mode}
    else:
        doc = {"c": chunks_field(f), "h": f.blake3, "l": f.link, "m": f.mode}
    if name is not None:
        doc["n"] = name
    doc["s"] = f.size
    return doc


def chunks_field(f: FileEntry) -> str | None:
    """A file's stored ``c``: its chunk ids in hex, or None when its one chunk (or none, for
    an empty file) is what its blake3 already names."""
    chunks = f.chunks
    if (not chunks and f.size == 0) or (len(chunks) == 1 and chunks[0].hex() == f.blake3):
        return None
    return b"".join(chunks).hex()


def _decode_file(doc: Mapping[str, Any], check_paths: bool) -> FileEntry:
    return decode_file_doc(doc, doc["p"], check_paths)


def decode_file_doc(doc: Mapping[str, Any], path: object, check_paths: bool, *,
                    segments_checked: bool = False) -> FileEntry:
    """A file's stored fields under ``path``, checked (raises ValueError-family when malformed).

    ``segments_checked``: every segment of ``path`` already passed the path rule (a tree
    walker checks each node's names once), so only a link's target is left to check."""
    if not isinstance(path, str):
        raise ValueError(f"path {path!r} is not a string")
    if check_paths and not segments_checked:
        check_relpath(path)
    size, mode, digest = doc["s"], doc["m"], doc["h"]
    if not isinstance(size, int) or size < 0 or not isinstance(mode, int):
        raise ValueError(f"bad size or mode for {path!r}")
    # fromhex and back: 64 lowercase hex digits exactly, several times cheaper than a regex.
    try:
        ok_text = isinstance(digest, str) and len(digest) == 2 * DIGEST_SIZE
        whole = bytes.fromhex(digest) if ok_text else b""
    except ValueError:
        whole = b""
    if len(whole) != DIGEST_SIZE or whole.hex() != digest:
        raise ValueError(f"bad blake3 for {path!r}")
    link = doc.get("l")
    if link is not None and check_paths:
        check_symlink_target(path, str(link))
    packed = doc.get("c")
    chunks: tuple[bytes, ...]
    if packed is None:
        chunks = () if size == 0 or link is not None else (whole,)
    else:
        if not isinstance(packed, str) or len(packed) % (2 * DIGEST_SIZE):
            raise ValueError(f"bad chunk list for {path!r}")
        chunks = split_ids(bytes.fromhex(packed))
    return FileEntry(
        path=path,
        size=size,
        mode=_MODES.setdefault(mode & 0o7777, mode & 0o7777),
        blake3=digest,
        chunks=chunks,
        link=None if link is None else str(link),
    )


def snapshot_key(snapshot_id: str) -> str:
    return SNAPSHOT_PREFIX + snapshot_id


def check_snapshot_id(snapshot_id: str) -> str:
    if len(snapshot_id) != 2 * DIGEST_SIZE or not set(snapshot_id) <= _HEX:
        raise FormatError(
            f"invalid snapshot id {snapshot_id!r}", hint="a snapshot id is 64 lowercase hex digits"
        )
    return snapshot_id


def check_snapshot_matches(
    snapshot: Snapshot,
    expected: Mapping[str, tuple[int, str]],
    *,
    snapshot_id: str = "",
    unlisted_links: bool = True,
) -> None:
    """Refuse a snapshot that holds anything its (separately trusted) manifest does not list.

    The manifest is what the user reviews in Git; the snapshot is what a pull writes. A
    one-file manifest naming a snapshot that also holds ``tok/.git/config`` must never be
    applied, so every regular file must appear in ``expected`` (path -> (size, blake3)) with
    the same size and hash, and nothing listed may be missing. Symlinks listed in
    ``expected`` must match (size 0, blake3 of the target); ``unlisted_links`` accepts symlinks
    the manifest leaves out, as format-1 manifests written before symlinks were listed do
    (those links have still passed the link graph check of :meth:`Snapshot.decode`).

    Raises:
        IntegrityError: naming the first difference; nothing has been written.
    """
    remaining = dict(expected)
    for f in snapshot.files:
        want = remaining.pop(f.path, None)
        if want is None:
            if f.is_symlink and unlisted_links:
                continue
            _mismatch(snapshot_id, f.path, "is in the snapshot but not in the manifest")
        elif want != (f.size, f.blake3):
            _mismatch(snapshot_id, f.path, "differs between the snapshot and the manifest")
    if remaining:
        _mismatch(snapshot_id, sorted(remaining)[0], "is in the manifest but not in the snapshot")


def _mismatch(snapshot_id: str, path: str, reason: str) -> None:
    where = f"snapshot {snapshot_id[:12]}" if snapshot_id else "the snapshot"
    raise IntegrityError(
        f"{where} does not match its manifest: {path!r} {reason}",
        object_id=snapshot_id,
        hint="the version was tampered with or its manifest names another snapshot; "
        "nothing was written",
    )
