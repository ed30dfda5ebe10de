"""Tree snapshots (store format 2): a snapshot root naming a tree of content-addressed nodes.

A format-1 snapshot lists every file of the tree, so a version that changes 1% of 10^6 files
still writes the whole 70 MB listing. A format-2 snapshot is a small *root* object
(``snapshots/<id>``) naming the id of the top folder's *node*; a node lists one folder's entries
(files and symlinks in full, sub-folders by their node id), so a new version writes new nodes only
along the changed paths and two versions are diffed by skipping every sub-tree whose id is equal.

Nodes are stored as chunks, inside packs, under their blake3 id, exactly like file data (see
docs/format.md, "Tree nodes", for the request counts that decided this): the push deduplicates
them against the index, readers fetch them with coalesced ranged GETs and verify every byte, and
gc keeps them alive, condemns, repacks and rescues them with the protocol it already has for
chunks.

Node bytes are ``b"CPVTREE1" + zlib(canonical JSON)``; the JSON is one of::

    {"e": [{"n": "a.bin", "s": 10, "m": 420, "h": "<blake3>", "c": null},   # a file
           {"n": "ln", "s": 0, "m": 511, "h": "<blake3 of target>", "c": null, "l": "a.bin"},
           {"n": "sub", "d": "<node id>"}]}                                 # a sub-folder
    {"p": ["<node id>", ...]}                                               # a split folder

A folder with more than :data:`SINGLE_NODE_MAX` entries is split into *parts* by content-defined
boundaries on entry names (a cut after an entry whose name hash is 0 modulo 256, and a parts
node above every 64 parts on average, cut where the hash is 0 modulo 256*64^level), so adding one
file to a folder of 10^6 entries rewrites one part of ~256 entries and the two parts nodes above
it, not the folder. Entries are sorted by name, folders as if their name ended in ``/`` (Git's
rule), which makes a depth-first walk yield paths in the same order as sorting the full paths.

The root (``snapshots/<id>``, id = blake3 of the bytes) is ``b"CPVSNAP2" + zlib(canonical
JSON)``::

    {"version": 2, "meta": {}, "tree": "<node id>", "files": 100000, "size": 102400000}

Readers trust nothing: every node is verified against its id when read, a name must be one valid
path segment (no ``..``, ``.git``, ``/``), names must be strictly increasing within a folder and
across its parts (no duplicates), a node may not name one of its ancestors (a cycle cannot be
built from honest hashes, but the check costs nothing), and depth and node size are bounded.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

from cpv.engine.hashing import DIGEST_SIZE, chunk_id
from cpv.engine.snapshot import FileEntry, decode_file_doc, file_doc
from cpv.errors import FormatError, UnsafePathError
from cpv.pathrules import all_plain_names, path_problem

TREE_MAGIC = b"CPVTREE1"
ROOT_MAGIC = b"CPVSNAP2"
ROOT_VERSION = 2
SINGLE_NODE_MAX = 1024
"""A folder with at most this many entries is one node; a bigger one is split into parts."""
LEAF_AVG = 256
LEAF_MAX = 4096
PARTS_AVG = 64
PARTS_MAX = 1024
MAX_NODE_JSON = 64 * 1024 * 1024
"""A node expands to at most this many bytes (a decompression bomb stops here)."""
MAX_DEPTH = 1024
"""Folder nesting plus parts levels; deeper is refused as hostile."""
PREFETCH = 32
"""Sub-folder nodes fetched per request batch while walking: fewer round trips, bounded RAM."""

ReadNodes = Callable[[Sequence[bytes]], Mapping[bytes, bytes]]
"""Fetches nodes by id, every one verified against its id; raises if one is missing."""


class Entry(NamedTuple):
    """One decoded entry of a folder node: a file (``doc``) or a sub-folder (``child``).

    A named tuple: a walk makes one per file, and a tuple is built several times faster than
    a frozen dataclass instance."""

    name: str
    doc: Mapping[str, Any] | None
    child: bytes | None

    @property
    def sort_key(self) -> str:
        return self.name + "/" if self.child is not None else self.name


class Node:
    """A decoded node: either folder entries or the ids of the parts of a split folder.

    The entries are kept as their decoded JSON rows (``docs``, names already checked) and
    turned into :class:`Entry` tuples only when asked for: a diff compares most rows as
    they are and never builds them."""

    __slots__ = ("_entries", "docs", "parts", "where")

    def __init__(self, docs: Sequence[Mapping[str, Any]] = (), parts: tuple[bytes, ...] = (),
                 *, where: str = "") -> None:
        self.docs = docs
        self.parts = parts
        self.where = where
        self._entries: tuple[Entry, ...] | None = None

    @property
    def is_parts(self) -> bool:
        return bool(self.parts)

    @property
    def entries(self) -> tuple[Entry, ...]:
        if self._entries is None:
            try:
                self._entries = tuple(Entry(e["n"], None, _node_id(e["d"])) if "d" in e
                                      else Entry(e["n"], e, None) for e in self.docs)
            except (KeyError, TypeError, ValueError) as exc:
                raise FormatError(f"tree node {self.where} is malformed: {exc!r}") from exc
        return self._entries


@dataclass(frozen=True, slots=True)
class Root:
    """A decoded format-2 snapshot root."""

    tree: bytes
    files: int
    size: int
    meta: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Change:
    """One path that differs between two snapshots: ``old`` or ``new`` is None if absent."""

    path: str
    old: FileEntry | None
    new: FileEntry | None


# -- encoding -------------------------------------------------------------------------------


def _rank(name: str) -> int:
    return int.from_bytes(chunk_id(name.encode("utf-8", "surrogateescape"))[:8], "little")


def _encode(doc: Mapping[str, Any]) -> tuple[bytes, bytes]:
    """A node's bytes and id. Canonical JSON has sorted keys: :func:`encode_folder` builds
    every dict with its keys in order, so they are not sorted again here (per entry, a
    tenth of a folder's encoding at 10^6 files)."""
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    raw = TREE_MAGIC + zlib.compress(text.encode("utf-8", "surrogateescape"), 6)
    return chunk_id(raw), raw


def encode_root(
    tree: bytes, *, files: int, size: int, meta: Mapping[str, str]
) -> tuple[str, bytes]:
    """Canonical root bytes and the snapshot id they hash to."""
    doc = {"version": ROOT_VERSION, "meta": dict(meta), "tree": tree.hex(), "files": files,
           "size": size}
    text = json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw = ROOT_MAGIC + zlib.compress(text.encode("utf-8"), 6)
    return chunk_id(raw).hex(), raw


def build_tree(files: Iterable[FileEntry], emit: Callable[[bytes, bytes], None]) -> bytes:
    """Encode ``files`` as nodes, children before parents; returns the top node's id.

    ``emit(node_id, raw)`` gets every node once per distinct id, in the order a crash-safe
    writer needs (a node after every node it names). The caller decides what is new.
    """
    top: dict[str, Any] = {}
    for f in files:
        parts = f.path.split("/")
        folder = top
        for seg in parts[:-1]:
            sub = folder.setdefault(seg, {})
            if not isinstance(sub, dict):
                raise UnsafePathError(f.path, "is both a file and a directory")
            folder = sub
        if parts[-1] in folder:
            raise UnsafePathError(f.path, "appears twice in the snapshot")
        folder[parts[-1]] = f
    seen: set[bytes] = set()

    def put(nid: bytes, raw: bytes) -> None:
        if nid not in seen:
            seen.add(nid)
            emit(nid, raw)

    def folder_node(folder: Mapping[str, Any]) -> bytes:
        entries = [(name, folder_node(value) if isinstance(value, dict) else value)
                   for name, value in folder.items()]
        return encode_folder(entries, put)

    return folder_node(top)


def encode_folder(
    entries: Iterable[tuple[str, FileEntry | bytes]], emit: Callable[[bytes, bytes], None]
) -> bytes:
    """Encode one folder, given its entries (name, file or the sub-folder's node id).

    ``emit`` gets the folder's nodes, the parts of a split folder before the parts node that
    names them; returns the folder's id. A push encodes a folder at a time with it (its
    sub-folders first), so it never holds a whole tree's entries.
    """
    items: list[tuple[str, str, dict[str, Any]]] = []
    for name, value in entries:
        # Keys in sorted order, as canonical JSON has them (_encode does not sort them).
        if isinstance(value, bytes):
            items.append((name + "/", name, {"d": value.hex(), "n": name}))
        else:
            items.append((name, name, file_doc(value, name)))
    items.sort(key=lambda t: t[0])

    def put(doc: Mapping[str, Any]) -> bytes:
        nid, raw = _encode(doc)
        emit(nid, raw)
        return nid

    docs = [d for _, _, d in items]
    if len(docs) <= SINGLE_NODE_MAX:
        return put({"e": docs})
    ranks = [_rank(name) for _, name, _ in items]
    groups = _cut(list(range(len(docs))), ranks, LEAF_AVG, LEAF_MAX)
    ids = [put({"e": [docs[i] for i in g]}) for g in groups]
    last = [ranks[g[-1]] for g in groups]
    modulus = LEAF_AVG
    while len(ids) > PARTS_MAX:
        modulus *= PARTS_AVG
        groups = _cut(list(range(len(ids))), last, modulus, PARTS_MAX)
        last = [last[g[-1]] for g in groups]
        ids = [put({"p": [ids[i].hex() for i in g]}) for g in groups]
    return put({"p": [i.hex() for i in ids]})


def _cut(items: list[int], ranks: Sequence[int], modulus: int, limit: int) -> list[list[int]]:
    """Split after every item whose rank is 0 modulo ``modulus`` (or ``limit`` items in a row)."""
    groups: list[list[int]] = []
    group: list[int] = []
    for i in items:
        group.append(i)
        if ranks[i] % modulus == 0 or len(group) >= limit:
            groups.append(group)
            group = []
    if group:
        groups.append(group)
    return groups


# -- decoding -------------------------------------------------------------------------------


def is_root(raw: bytes) -> bool:
    return raw.startswith(ROOT_MAGIC)


def decode_root(raw: bytes, *, where: str) -> Root:
    """Parse a root; the caller has checked its id."""
    doc = _inflate(raw, ROOT_MAGIC, f"snapshot {where}", 1024 * 1024)
    if doc.get("version") != ROOT_VERSION:
        raise FormatError(
            f"snapshot {where} has version {doc.get('version')!r}; this cpv reads versions 1 "
            f"and {ROOT_VERSION}", hint="upgrade cpv")
    try:
        tree = _node_id(doc["tree"])
        files, size = doc["files"], doc["size"]
        if not isinstance(files, int) or not isinstance(size, int) or files < 0 or size < 0:
            raise ValueError("bad file count or size")
        meta = {str(k): str(v) for k, v in dict(doc.get("meta", {})).items()}
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"snapshot {where} is malformed: {exc!r}") from exc
    return Root(tree=tree, files=files, size=size, meta=meta)


def decode_node(raw: bytes, *, where: str, check_names: bool = True) -> Node:
    """Parse one node (its id already verified by the reader), checking its own entries."""
    doc = _inflate(raw, TREE_MAGIC, f"tree node {where}", MAX_NODE_JSON)
    try:
        if set(doc) == {"p"}:
            parts = tuple(_node_id(p) for p in doc["p"])
            if not parts:
                raise ValueError("a split folder with no parts")
            return Node(parts=parts)
        docs = doc["e"]
        if set(doc) != {"e"} or not isinstance(docs, list):
            raise ValueError("neither entries nor parts")
        names = [e["n"] for e in docs]
        # Most nodes hold plain names only: one regex pass says so for the whole node.
        if not all_plain_names(names):
            for name in names:
                if not isinstance(name, str):
                    raise ValueError(f"name {name!r} is not a string")
                if check_names:
                    problem = path_problem(name)
                    if problem is None and "/" in name:
                        problem = "is not a single path segment"
                    if problem is not None:
                        raise UnsafePathError(name, f"name in tree node {where} {problem}")
    except UnsafePathError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FormatError(f"tree node {where} is malformed: {exc!r}") from exc
    return Node(docs, where=where)


def _inflate(raw: bytes, magic: bytes, where: str, limit: int) -> dict[str, Any]:
    if not raw.startswith(magic):
        raise FormatError(f"{where} is not a cpv {magic[:-1].decode()} object (unknown format)")
    try:
        d = zlib.decompressobj()
        text = d.decompress(raw[len(magic):], limit)
        if d.unconsumed_tail:
            raise FormatError(f"{where} expands beyond {limit} bytes (refused as hostile)")
        doc = json.loads(text)
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{where} is malformed: {exc}") from exc
    if not isinstance(doc, dict):
        raise FormatError(f"{where} is malformed: not an object")
    return doc


def _node_id(value: object) -> bytes:
    if not isinstance(value, str) or len(value) != 2 * DIGEST_SIZE:
        raise ValueError(f"bad node id {value!r}")
    return bytes.fromhex(value)


# -- walking --------------------------------------------------------------------------------


class TreeWalker:
    """Reads a tree through ``read``; records every node id it read (gc marks them live)."""

    def __init__(self, read: ReadNodes, *, check_paths: bool = True, where: str = "",
                 walked: set[bytes] | None = None) -> None:
        self._read = read
        self.check_paths = check_paths
        self.where = where
        self.node_ids: set[bytes] = set()
        self.walked = walked
        """Nodes whose sub-trees :meth:`chunk_ids` already yielded (shared across snapshots).

        A node id names its bytes and so its whole sub-tree: once walked, every chunk under it
        has been yielded, and gc over 100 versions that share 99 % of their nodes reads one
        full tree plus the changed nodes. A walk that fails raises, so a node is never left in
        the set with part of its sub-tree unread by a walk that went on.
        """

    def fetch(self, ids: Sequence[bytes]) -> dict[bytes, Node]:
        wanted = list(dict.fromkeys(ids))
        if not wanted:
            return {}
        raws = self._read(wanted)
        out = {}
        for nid in wanted:
            out[nid] = decode_node(raws[nid], where=f"{nid.hex()[:16]} of snapshot {self.where}",
                                   check_names=self.check_paths)
            self.node_ids.add(nid)
        return out

    def files(self, top: bytes) -> Iterator[FileEntry]:
        """Every file and link under ``top``, in path order, one folder's batch at a time."""
        node = self.fetch([top])[top]
        yield from self._folder(node, "", (top,))

    def files_under(self, top: bytes, path: str) -> Iterator[FileEntry]:
        """The file ``path``, or every file under the folder ``path``, in path order.

        Reads the nodes on the way down and the sub-tree only (``cpv ls data/train`` of a
        10^6-file version costs that folder, not the version). Nothing there: nothing yielded.
        """
        node = self.fetch([top])[top]
        ancestors: tuple[bytes, ...] = (top,)
        prefix = ""
        segments = path.strip("/").split("/")
        for depth, name in enumerate(segments):
            found = None
            for e in self.folder_entries(node, ancestors):
                if e.name == name:
                    found = e
                    break
                if e.sort_key > name + "/":  # sorted: it is not in this folder
                    break
            if found is None:
                return
            if found.child is None:
                if depth == len(segments) - 1:
                    yield self.file(prefix + name, found)
                return
            node = self.fetch([found.child])[found.child]
            ancestors = (*ancestors, found.child)
            prefix += name + "/"
        yield from self._folder(node, prefix, ancestors)

    def folder_entries(self, node: Node, ancestors: tuple[bytes, ...],
                       skip: set[bytes] | None = None,
                       parts_read: list[bytes] | None = None) -> Iterator[Entry]:
        """A folder's entries in order, reading the parts of a split folder in batches.

        Parts in ``skip`` (walked already, see :attr:`walked`) are left out, and the parts
        read are added to it. ``parts_read`` receives the id of every part read: they are
        chunks a snapshot needs as much as its folders' nodes.
        """
        last: list[str] = []
        # Files that a later folder of the same name could still follow ("a" < "a.b" < "a/"):
        # a sorted window, so the check costs no set of every name of a huge folder.
        files: deque[str] = deque()
        for e in self._entries(node, ancestors, 0, skip, parts_read):
            key = e.sort_key
            while files and files[0] + "/" < key:
                files.popleft()
            if (last and key <= last[0]) or (e.child is not None and e.name in files):
                raise FormatError(
                    f"tree node in snapshot {self.where} lists {e.name!r} out of order or "
                    "twice (duplicate names are refused)")
            last[:] = [key]
            if e.child is None:
                files.append(e.name)
            if e.child is not None and e.child in ancestors:
                raise FormatError(f"tree of snapshot {self.where} has a cycle at {e.name!r}")
            yield e

    def _entries(self, node: Node, ancestors: tuple[bytes, ...], level: int,
                 skip: set[bytes] | None = None,
                 parts_read: list[bytes] | None = None) -> Iterator[Entry]:
        if not node.is_parts:
            yield from node.entries
            return
        if level > 16 or len(ancestors) + level > MAX_DEPTH:
            raise FormatError(f"tree of snapshot {self.where} nests split folders too deep")
        for start in range(0, len(node.parts), PREFETCH):
            batch = node.parts[start:start + PREFETCH]
            if any(p in ancestors for p in batch):
                raise FormatError(f"tree of snapshot {self.where} has a cycle")
            if skip is not None:
                batch = tuple(dict.fromkeys(p for p in batch if p not in skip))
                skip.update(batch)
            got = self.fetch(batch)
            if parts_read is not None:
                parts_read.extend(batch)
            for pid in batch:
                yield from self._entries(got[pid], (*ancestors, pid), level + 1, skip,
                                         parts_read)

    def _folder(self, node: Node, prefix: str, ancestors: tuple[bytes, ...]) -> Iterator[FileEntry]:
        if len(ancestors) > MAX_DEPTH:
            raise FormatError(f"tree of snapshot {self.where} is deeper than {MAX_DEPTH}")
        # Entries wait in a short buffer so that the sub-folders met in it are fetched in one
        # batch (one round trip, coalesced ranges) while RAM stays bounded.
        buf: list[Entry] = []
        dirs = 0
        for e in self.folder_entries(node, ancestors):
            buf.append(e)
            dirs += e.child is not None
            if dirs >= PREFETCH or len(buf) >= SINGLE_NODE_MAX:
                yield from self._flush(buf, prefix, ancestors)
                buf, dirs = [], 0
        yield from self._flush(buf, prefix, ancestors)

    def _flush(self, buf: list[Entry], prefix: str,
               ancestors: tuple[bytes, ...]) -> Iterator[FileEntry]:
        got = self.fetch([e.child for e in buf if e.child is not None])
        for e in buf:
            if e.child is None:
                yield self.file(prefix + e.name, e)
            else:
                yield from self._folder(got[e.child], prefix + e.name + "/",
                                        (*ancestors, e.child))

    def chunk_ids(self, top: bytes) -> Iterator[bytes]:
        """Every node id and file chunk id under ``top``, without building file entries.

        What gc and the sweep need, at a fraction of the cost of :meth:`files`: the same
        structural checks (order, duplicates, cycles, depth), no per-file objects.
        """
        walked = self.walked
        if walked is not None and top in walked:
            return
        node = self.fetch([top])[top]
        yield top
        if walked is not None:
            walked.add(top)
        yield from self._chunks(node, (top,))

    def _chunks(self, node: Node, ancestors: tuple[bytes, ...]) -> Iterator[bytes]:
        if len(ancestors) > MAX_DEPTH:
            raise FormatError(f"tree of snapshot {self.where} is deeper than {MAX_DEPTH}")
        walked = self.walked
        dirs: list[bytes] = []
        parts: list[bytes] = []
        # The cycle check (folder_entries) runs before a walked sub-tree is skipped.
        for e in self.folder_entries(node, ancestors, skip=walked, parts_read=parts):
            if e.child is not None:
                if walked is None or e.child not in walked:
                    dirs.append(e.child)
                    if walked is not None:
                        walked.add(e.child)
                continue
            yield from _doc_chunks(e, self.where)
        yield from parts  # the leaves and inner parts of a split folder are chunks too
        for start in range(0, len(dirs), PREFETCH):
            batch = dirs[start:start + PREFETCH]
            got = self.fetch(batch)
            for child in batch:
                yield child
                yield from self._chunks(got[child], (*ancestors, child))

    def file(self, path: str, e: Entry) -> FileEntry:
        assert e.doc is not None
        try:
            # decode_node checked every name of the path as one segment already.
            return decode_file_doc(e.doc, path, self.check_paths, segments_checked=True)
        except UnsafePathError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise FormatError(f"snapshot {self.where} is malformed: {exc!r}") from exc

    # -- diff ---------------------------------------------------------------------------------

    def diff(self, a: bytes, b: bytes, prefix: str = "", ancestors: tuple[bytes, ...] = (),
             known: Mapping[bytes, Node] | None = None) -> Iterator[Change]:
        """What differs between the folders ``a`` and ``b``; equal sub-trees are never read.

        Two folders that differ are compared row against row as decoded (one ``json.loads``
        per node, names checked in one pass): an equal row costs one comparison, and only
        the rows that differ become entries."""
        if a == b:
            return
        if len(ancestors) > MAX_DEPTH:
            raise FormatError(f"tree of snapshot {self.where} is deeper than {MAX_DEPTH}")
        old, new = self._unshared(a, b, ancestors, known)
        # By sort key, so that changes come in path order ("a.b" before the folder "a/").
        # A name that is a file on one side and a folder on the other has two keys, one each.
        pairs = _differing(old, self._keys(old), new, self._keys(new))
        # Sub-folders that differ on both sides are read PREFETCH pairs per request batch
        # (one round trip, coalesced ranges), not one pair per request.
        subdirs = [i for i, (da, db) in enumerate(pairs)
                   if da is not None and db is not None and "d" in da]
        batches = {subdirs[i]: subdirs[i:i + PREFETCH] for i in range(0, len(subdirs), PREFETCH)}
        nodes: dict[bytes, Node] = {}
        for i, (da, db) in enumerate(pairs):
            ea = self._entry(da) if da is not None else None
            eb = self._entry(db) if db is not None else None
            path = prefix + (ea or eb).name  # type: ignore[union-attr]
            if ea is not None and eb is not None and ea.child is not None:
                assert eb.child is not None  # same sort key: both are folders
                if i in batches:
                    nodes = self.fetch([c for j in batches[i] for c in (
                        self._entry(pairs[j][0]).child, self._entry(pairs[j][1]).child)
                        if c is not None])
                yield from self.diff(ea.child, eb.child, path + "/", (*ancestors, ea.child),
                                     nodes)
                continue
            if ea is not None and eb is not None:
                fa, fb = self.file(path, ea), self.file(path, eb)
                if fa != fb:
                    yield Change(path, fa, fb)
                continue
            yield from self._side(ea, path, ancestors, old=True)
            yield from self._side(eb, path, ancestors, old=False)

    def _entry(self, doc: Mapping[str, Any] | None) -> Entry:
        assert doc is not None
        try:
            return (Entry(doc["n"], None, _node_id(doc["d"])) if "d" in doc
                    else Entry(doc["n"], doc, None))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"snapshot {self.where} is malformed: {exc!r}") from exc

    def _keys(self, docs: Sequence[Mapping[str, Any]]) -> list[str]:
        """The rows' sort keys, refused unless strictly increasing and every name once."""
        keys = [d["n"] + "/" if "d" in d else d["n"] for d in docs]
        # Sorted (timsort: one C pass over sorted keys) and no name twice: strictly increasing.
        if keys != sorted(keys) or len({d["n"] for d in docs}) != len(docs):
            raise FormatError(f"tree node in snapshot {self.where} lists a name out of order "
                              "or twice (duplicate names are refused)")
        return keys

    def _side(self, e: Entry | None, path: str, ancestors: tuple[bytes, ...],
              *, old: bool) -> Iterator[Change]:
        if e is None:
            return
        if e.child is None:
            f = self.file(path, e)
            yield Change(path, f, None) if old else Change(path, None, f)
            return
        node = self.fetch([e.child])[e.child]
        for f in self._folder(node, path + "/", (*ancestors, e.child)):
            yield Change(f.path, f, None) if old else Change(f.path, None, f)

    def _unshared(self, a: bytes, b: bytes, ancestors: tuple[bytes, ...],
                  known: Mapping[bytes, Node] | None = None,
                  ) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
        """Rows of the two folders that are not in a part both share, in order.

        A part (or leaf) id present on both sides holds the same entries on both sides, and an
        entry is in exactly one part per side, so dropping shared parts drops only equal entries.
        """
        front_a, front_b = [a], [b]
        nodes: dict[bytes, Node] = {n: known[n] for n in (a, b) if known and n in known}
        for _ in range(18):
            common = set(front_a) & set(front_b)
            front_a = [n for n in front_a if n not in common]
            front_b = [n for n in front_b if n not in common]
            nodes.update(self.fetch([n for n in front_a + front_b if n not in nodes]))
            if not any(nodes[n].is_parts for n in front_a + front_b):
                break
            front_a = [p for n in front_a for p in (nodes[n].parts or (n,))]
            front_b = [p for n in front_b for p in (nodes[n].parts or (n,))]
            if set(front_a + front_b) & {*ancestors, a, b}:
                raise FormatError(f"tree of snapshot {self.where} has a cycle")
        else:
            raise FormatError(f"tree of snapshot {self.where} nests split folders too deep")
        return ([d for n in front_a for d in nodes[n].docs],
                [d for n in front_b for d in nodes[n].docs])


def _differing(old: Sequence[Mapping[str, Any]], ka: Sequence[str],
               new: Sequence[Mapping[str, Any]], kb: Sequence[str],
               ) -> list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]]:
    """The rows of two sorted folders that differ, paired by sort key, in order."""
    if ka == kb:  # the same names (the usual case): one comparison per row
        return [(x, y) for x, y in zip(old, new, strict=True) if x != y]
    out: list[tuple[Mapping[str, Any] | None, Mapping[str, Any] | None]] = []
    i = j = 0
    while i < len(old) or j < len(new):
        if j >= len(new) or (i < len(old) and ka[i] < kb[j]):
            out.append((old[i], None))
            i += 1
        elif i >= len(old) or kb[j] < ka[i]:
            out.append((None, new[j]))
            j += 1
        else:
            if old[i] != new[j]:
                out.append((old[i], new[j]))
            i += 1
            j += 1
    return out


class _HasPath(Protocol):
    @property
    def path(self) -> str: ...


P = TypeVar("P", bound=_HasPath)


def merge_by_path(
    old: Iterable[P], new: Iterable[P], *, where: str
) -> Iterator[tuple[P | None, P | None]]:
    """The entries of two path-ordered streams paired by path (None where a side lacks one).

    What compares two versions that are not both trees (format 1, a schema-1 manifest, lists
    from the local cache) without holding either: one entry per side at a time. A stream out
    of order would pair wrongly, so it is refused (FormatError naming ``where``).
    """
    a_it, b_it = iter(old), iter(new)
    a, b = next(a_it, None), next(b_it, None)
    last = ""
    while a is not None or b is not None:
        if b is None or (a is not None and a.path < b.path):
            pair: tuple[P | None, P | None] = (a, None)
        elif a is None or b.path < a.path:
            pair = (None, b)
        else:
            pair = (a, b)
        path = (pair[0] or pair[1]).path  # type: ignore[union-attr]
        if path <= last and last:
            raise FormatError(f"the file list of {where} is not in path order at {path!r}")
        last = path
        if pair[0] is not None:
            a = next(a_it, None)
        if pair[1] is not None:
            b = next(b_it, None)
        yield pair


def _doc_chunks(e: Entry, where: str) -> Iterator[bytes]:
    """A file entry's chunk ids, checked as strictly as :func:`decode_file_doc` checks them."""
    doc = e.doc
    assert doc is not None
    try:
        packed, digest, size = doc.get("c"), doc["h"], doc["s"]
        if packed is None:
            if size != 0 and doc.get("l") is None:
                if not isinstance(digest, str) or len(digest) != 2 * DIGEST_SIZE:
                    raise ValueError(f"bad blake3 for {e.name!r}")
                yield bytes.fromhex(digest)
            return
        if not isinstance(packed, str) or len(packed) % (2 * DIGEST_SIZE):
            raise ValueError(f"bad chunk list for {e.name!r}")
        blob = bytes.fromhex(packed)
        for i in range(0, len(blob), DIGEST_SIZE):
            yield blob[i:i + DIGEST_SIZE]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise FormatError(f"snapshot {where} is malformed: {exc!r}") from exc
