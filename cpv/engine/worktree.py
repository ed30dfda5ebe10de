"""A pulled folder on the disk compared with, and tidied after, the snapshot it holds.

The service asks two things of a tracked folder: which local files a checkout would lose
(``status``, the dirty check), and which files of the version being replaced to delete after
pulling another one. Both must treat the tree the way push and pull do: symlinks are links
(compared by target, never followed), an unreadable file or folder is an error and never
"clean", and nothing that is not part of the replaced version is deleted, empty folders
included (empty folders are not versioned; cpv leaves the user's alone, docs/format.md).
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import stat
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from cpv.engine.fingerprint import dir_part, file_part, folder_fingerprint, link_part
from cpv.engine.hashing import Hasher
from cpv.engine.snapshot import FileEntry
from cpv.engine.statcache import FileStamp, StatCache, cache_key, settled
from cpv.errors import LocalIOError
from cpv.pathrules import check_relpath

if TYPE_CHECKING:
    import multiprocessing.pool

_BLOCK = 8 * 1024 * 1024

PARALLEL_WALK_FILES = 50_000
"""From about this many files a tree's fingerprints are taken by several processes: below,
forking them costs more than the walk (a 10^5-file status takes ~1.5 CPU-s, 70% of it
``lstat`` calls and per-entry Python that a second core halves; docs/benchmarks.md)."""


def local_changes(
    root: Path,
    files: Iterable[FileEntry],
    *,
    cache: StatCache | None = None,
    exclude: Callable[[str], bool] | None = None,
    first: bool = False,
) -> list[str]:
    """Paths under ``root`` whose content is not what ``files`` (the version there) holds.

    ``first`` stops at the first such path ("does the folder hold anything new?" needs one,
    and listing 100,000 files to find it cost every push a whole scan).

    Reported: files and links that are new or differ (a link by its target, a file by size
    and blake3, through the stat cache when it knows the file). Not reported: files of the
    version that are missing locally (pulling again restores them, nothing is lost). A missing
    ``root`` has no changes.

    Raises:
        LocalIOError: a file or folder under ``root`` cannot be read; naming it.
    """
    return _changed(root, {f.path: f for f in files}, cache, exclude, first)


def _changed(
    root: Path,
    expected: dict[str, FileEntry],
    cache: StatCache | None,
    exclude: Callable[[str], bool] | None,
    first: bool,
) -> list[str]:
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise _unreadable(str(root), exc) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise LocalIOError(f"{root} is not a folder", path=str(root))
    tree_key = os.path.abspath(root)
    if cache is not None:
        cache.load_folder(tree_key)
    changed: list[str] = []
    try:
        _compare(str(root), "", expected, cache, tree_key, exclude, changed, first)
    except _FoundOneError:
        pass
    return sorted(changed)


class _FoundOneError(Exception):
    """The first changed path was found and only the first was asked for."""


def _compare(
    folder: str,
    prefix: str,
    expected: dict[str, FileEntry],
    cache: StatCache | None,
    tree_key: str,
    exclude: Callable[[str], bool] | None,
    changed: list[str],
    first: bool,
) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError as exc:
        raise _unreadable(folder, exc) from exc
    for entry in entries:
        rel = prefix + entry.name
        if exclude is not None and exclude(rel):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise _unreadable(entry.path, exc) from exc
        want = expected.get(rel)
        if stat.S_ISDIR(st.st_mode):
            _compare(entry.path, rel + "/", expected, cache, tree_key, exclude, changed, first)
        elif stat.S_ISLNK(st.st_mode):
            try:
                target = os.readlink(entry.path)
            except OSError as exc:
                raise _unreadable(entry.path, exc) from exc
            if want is None or want.link != target:
                changed.append(rel)
                if first:
                    raise _FoundOneError
        elif stat.S_ISREG(st.st_mode):
            same = (
                want is not None
                and not want.is_symlink
                and want.size == st.st_size
                and _digest(entry.path, st, cache, cache_key(tree_key, rel)) == want.blake3
            )
            if not same:
                changed.append(rel)
                if first:
                    raise _FoundOneError


def _digest(path: str, st: os.stat_result, cache: StatCache | None, key: str) -> str:
    known = cache.digest(key, FileStamp.of(st)) if cache is not None else None
    if known is not None:
        return known
    hasher = Hasher()
    try:
        with open(path, "rb") as fh:
            while block := fh.read(_BLOCK):
                hasher.update(block)
    except OSError as exc:
        raise _unreadable(path, exc) from exc
    return hasher.hexdigest()


class Recorded(Protocol):
    """What a folder last held, folder by folder (the workspace's baseline).

    A folder is named by its prefix (``""`` for the top, ``"a/b/"`` below, as a push names
    it); its own entries by name, as ``(size, blake3)`` for a file or ``(0, "->" + target)``
    for a symlink.
    """

    def prefixes(self) -> Iterable[str]:
        """Every folder that holds recorded entries or has a recorded fingerprint."""
        ...

    def fingerprint(self, prefix: str) -> bytes | None:
        """The folder's fingerprint when it last held exactly what is recorded, if known."""
        ...

    def names(self, prefix: str) -> Mapping[str, tuple[int, str]]:
        """The folder's own recorded entries (not its sub-folders'), by name."""
        ...


@dataclass(frozen=True, slots=True)
class FolderComparison:
    """How a folder differs from what was recorded there, judged folder by folder."""

    edited: list[str]
    added: list[str]
    deleted: list[str]
    doubtful: list[str]
    """Prefixes of the folders where a recorded file was not met by the walk (deleted, or
    present but left out by a rule): the only ones a "hidden by a rule" check needs to read
    (a folder whose fingerprint matched shows every recorded file of it)."""
    learned: dict[str, bytes]
    """Fingerprints of folders found to hold exactly what is recorded, file by file, with
    every file settled: recording them lets the next comparison skip those folders."""


class _DoubtError(Exception):
    """A stamps-only comparison met something it cannot vouch for (or a first change)."""


@dataclass(slots=True)
class _Walk:
    recorded: Recorded
    cache: StatCache | None
    exclude: Callable[[str], bool] | None
    stamps_only: bool
    first: bool
    edited: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    doubtful: list[str] = field(default_factory=list)
    learned: dict[str, bytes] = field(default_factory=dict)
    visited: dict[str, bytes] = field(default_factory=dict)
    """Every folder walked (or fingerprinted by a walker process) -> its fingerprint."""
    known: dict[str, bytes] = field(default_factory=dict)
    """Fingerprints the walker processes took: a folder whose fingerprint is the recorded one
    is not walked again here."""
    judged: dict[str, tuple[bytes, bool]] = field(default_factory=dict)
    """Sub-trees a walker process walked and judged whole: prefix -> (fingerprint, whether
    it and everything below hold exactly what is recorded, settled). Not walked again here."""
    only_fingerprints: bool = False
    """A walker process's walk for ``stamps_only`` or ``first``: fingerprints only, nothing
    judged, stopping at the first folder that is not as recorded (the question is then
    answered by one folder, and the rest of the tree need not be walked)."""


def compare_folders(
    root: Path,
    recorded: Recorded,
    *,
    cache: StatCache | None = None,
    exclude: Callable[[str], bool] | None = None,
    stamps_only: bool = False,
    first: bool = False,
    walkers: int = 1,
) -> FolderComparison | None:
    """How ``root`` differs from ``recorded``: per folder, not per file, where it can.

    Every folder is listed (one ``lstat`` per entry) and fingerprinted with the push's own
    fingerprint (:mod:`cpv.engine.fingerprint`); a folder whose fingerprint is the recorded
    one holds exactly its recorded files and costs nothing more. Any other folder is judged
    file by file against its own recorded entries (a file by size, then by the stat cache's
    blake3 for its stamp, else by hashing it); memory follows the biggest folder, never the
    tree. A recorded folder that is gone has its files deleted (an excluded file that is
    still there is not deleted).

    ``stamps_only`` (the no-op push's question) hashes nothing and returns None at the first
    change or doubt; ``first`` stops at the first change found. ``walkers`` above 1 lets
    that many forked processes fingerprint the sub-trees first (see :func:`walkers_for`), so
    this process walks again only the folders that changed.

    Raises:
        LocalIOError: a file or folder cannot be read (never reported as unchanged).
    """
    walk = _Walk(recorded, cache, exclude, stamps_only, first)
    try:
        try:
            st = os.stat(root)
        except FileNotFoundError:
            st = None
        except OSError as exc:
            raise _unreadable(str(root), exc) from exc
        if st is not None:
            if not stat.S_ISDIR(st.st_mode):
                raise LocalIOError(f"{root} is not a folder", path=str(root))
            if walkers > 1:
                walk.known = _fingerprints_in_parallel(walk, str(root), walkers)
                walk.visited.update(walk.known)
            _visit(walk, str(root), "")
        base = str(root)
        for prefix in sorted(set(recorded.prefixes()) - walk.visited.keys()):
            names = recorded.names(prefix)
            if not names:
                continue
            walk.doubtful.append(prefix)
            for name in sorted(names):
                if not os.path.lexists(os.path.join(base, prefix + name)):
                    _found(walk, walk.deleted, prefix + name)
                elif stamps_only:
                    raise _DoubtError  # left out by a rule now, or a folder became a file
    except _DoubtError:
        if stamps_only:
            return None
    return FolderComparison(sorted(walk.edited), sorted(walk.added), sorted(walk.deleted),
                            walk.doubtful, walk.learned)


def _found(walk: _Walk, into: list[str], rel: str) -> None:
    if walk.stamps_only:
        raise _DoubtError
    into.append(rel)
    if walk.first:
        raise _DoubtError


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def _visit(walk: _Walk, folder: str, prefix: str) -> tuple[bytes, bool]:
    """Fingerprint ``folder`` (its sub-folders first) and judge it; returns its fingerprint
    and whether it and everything below hold exactly what is recorded, settled."""
    try:
        with os.scandir(folder) as it:
            entries = list(it)
    except OSError as exc:
        raise _unreadable(folder, exc) from exc
    entries.sort(key=_name)
    exclude = walk.exclude
    parts: list[bytes] = []
    own: list[tuple[str, str, os.stat_result, str | None]] = []
    clean_below = True
    for entry in entries:
        name = entry.name
        if exclude is not None and exclude(prefix + name):
            continue
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError as exc:
            raise _unreadable(entry.path, exc) from exc
        mode = st.st_mode
        if stat.S_ISREG(mode):
            parts.append(file_part(name, mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                   st.st_ino))
            own.append((name, entry.path, st, None))
        elif stat.S_ISDIR(mode):
            sub = f"{prefix}{name}/"
            judged = walk.judged.get(sub)
            child = walk.known.get(sub)
            if judged is not None:
                child, clean = judged
                clean_below = clean_below and clean
            elif child is None or walk.recorded.fingerprint(sub) != child:
                child, clean = _visit(walk, entry.path, sub)
                clean_below = clean_below and clean
            parts.append(dir_part(name, child))
        elif stat.S_ISLNK(mode):
            try:
                target = os.readlink(entry.path)
            except OSError as exc:
                raise _unreadable(entry.path, exc) from exc
            parts.append(link_part(name, target))
            own.append((name, entry.path, st, target))
    fingerprint = folder_fingerprint(parts)
    walk.visited[prefix] = fingerprint
    if walk.only_fingerprints:
        if (walk.stamps_only or walk.first) and walk.recorded.fingerprint(prefix) != fingerprint:
            raise _DoubtError
        return fingerprint, True
    if walk.recorded.fingerprint(prefix) == fingerprint:
        return fingerprint, True
    clean = _judge(walk, folder, prefix, own)
    if clean and clean_below:
        walk.learned[prefix] = fingerprint
        return fingerprint, True
    return fingerprint, False


def walkers_for(files: int) -> int:
    """How many processes should fingerprint a tree of about ``files`` files: the usable
    cores (at most 4) for a big tree, when this process may fork; else 1.

    Only a process with one OS thread forks (Linux, where ``/proc/self/task`` tells): a fork
    copies the calling thread alone, so a lock another thread held (a training loop's, a
    progress bar's) would stay held in the child for ever.
    """
    if files < PARALLEL_WALK_FILES or not forkable():
        return 1
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 4))
    except OSError:
        return 1


def forkable() -> bool:
    """Whether this process may fork walker processes now: Linux, one OS thread (asked again
    right before forking: a thread started since :func:`walkers_for` answered forbids it)."""
    if sys.platform != "linux":
        return False
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def units_of(root: str, exclude: Callable[[str], bool] | None,
           want: int) -> list[tuple[str, str]]:
    """Sub-trees to hand out: the folders of the shallowest level (up to 3 down) that has at
    least ``want`` of them, as (path, prefix); none when the tree does not split."""
    level = [(root, "")]
    for _ in range(3):
        below: list[tuple[str, str]] = []
        for folder, prefix in level:
            try:
                with os.scandir(folder) as it:
                    for entry in it:
                        sub = prefix + entry.name
                        if entry.is_dir(follow_symlinks=False) and not (
                                exclude is not None and exclude(sub)):
                            below.append((entry.path, sub + "/"))
            except OSError:
                continue  # walked here, where the error is reported
        if len(below) >= want or not below:
            break
        level = below
    return below if len(below) >= 2 else []


_FORKED_WALK: _Walk | None = None
"""The walk a forked walker process serves (inherited through ``fork``, never pickled: its
exclude test is a closure)."""


def _walker_started() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle


@contextlib.contextmanager
def walker_pool(walkers: int) -> Iterator[multiprocessing.pool.Pool]:
    """``walkers`` processes forked from this one (status and push hand them sub-trees).

    What this process holds is frozen out of the garbage collector first: a walker's
    collections would otherwise go through every inherited object, writing to (and so
    copying) its pages, ~10 % of a walker's time at 10^6 files. Ctrl-C is this process's to
    handle; leaving the block ends the walkers.
    """
    import multiprocessing

    gc.freeze()
    try:
        with multiprocessing.get_context("fork").Pool(walkers, _walker_started) as pool:
            yield pool
    finally:
        gc.unfreeze()


@dataclass(slots=True)
class _UnitResult:
    """What a walker process found in one sub-tree (sent back whole, by pickling)."""

    prefix: str
    visited: dict[str, bytes]
    different: bool
    """Not as recorded: with ``first`` or ``stamps_only``, the answer; else only counted."""
    judged: tuple[bytes, bool] | None = None
    """The sub-tree's fingerprint and cleanliness when it was judged whole there."""
    edited: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    doubtful: list[str] = field(default_factory=list)
    learned: dict[str, bytes] = field(default_factory=dict)


def _walk_unit(unit: tuple[str, str]) -> _UnitResult:
    """In a walker process: one sub-tree. For ``first`` or ``stamps_only``, the fingerprint
    of each folder until one is not as recorded (:attr:`_Walk.only_fingerprints`); for a
    whole comparison, each folder judged as this process would (a status after 1 % of the
    files changed in every folder judges them all: alone, the parent took 14 s at 10^6)."""
    parent = _FORKED_WALK
    assert parent is not None
    quick = parent.stamps_only or parent.first
    # A connection of its own: one inherited through fork must not be used (sqlite's rule).
    cache = parent.cache.reader() if parent.cache is not None and not quick else None
    walk = _Walk(parent.recorded, cache, parent.exclude, parent.stamps_only, parent.first,
                 only_fingerprints=quick)
    try:
        found, clean = _visit(walk, unit[0], unit[1])
    except _DoubtError:
        return _UnitResult(unit[1], walk.visited, True)
    except LocalIOError:
        return _UnitResult(unit[1], {}, True)  # walked again by the parent, which names what failed
    finally:
        if cache is not None:
            cache.close()
    different = parent.recorded.fingerprint(unit[1]) != found
    if quick:
        return _UnitResult(unit[1], walk.visited, different)
    return _UnitResult(unit[1], walk.visited, different, (found, clean), walk.edited, walk.added,
                       walk.deleted, walk.doubtful, walk.learned)


def _fingerprints_in_parallel(walk: _Walk, root: str, walkers: int) -> dict[str, bytes]:
    """Fingerprints of the sub-trees of ``root``, taken by ``walkers`` forked processes; for a
    whole comparison, the sub-trees are judged there too (:attr:`_Walk.judged`)."""
    units = units_of(root, walk.exclude, 4 * walkers)
    if not units:
        return {}
    global _FORKED_WALK
    _FORKED_WALK = walk
    known: dict[str, bytes] = {}
    quick = walk.stamps_only or walk.first
    try:
        with walker_pool(walkers) as pool:
            for got in pool.imap_unordered(_walk_unit, units):
                known.update(got.visited)
                if got.judged is not None:
                    walk.judged[got.prefix] = got.judged
                    walk.edited += got.edited
                    walk.added += got.added
                    walk.deleted += got.deleted
                    walk.doubtful += got.doubtful
                    walk.learned.update(got.learned)
                if quick and got.different:
                    break  # one folder answers the question
    finally:
        _FORKED_WALK = None
    return known


def _judge(walk: _Walk, folder: str, prefix: str,
           own: list[tuple[str, str, os.stat_result, str | None]]) -> bool:
    """Compare a folder's own entries with its recorded ones; True if all equal and settled."""
    names = walk.recorded.names(prefix)
    stamps = (walk.cache.stamps_in(os.path.abspath(folder))
              if walk.cache is not None and any(t is None for *_, t in own) else {})
    clean = True
    met = 0
    for name, path, st, target in own:
        want = names.get(name)
        if want is not None:
            met += 1
        if target is not None:
            same = want is not None and want[1] == "->" + target
        elif want is None or want[0] != st.st_size or want[1].startswith("->"):
            same = False
        else:
            known = stamps.get(name)
            if (known is not None and known[0] == st.st_size and known[1] == st.st_mtime_ns
                    and known[2] == st.st_ctime_ns and known[3] == st.st_ino):
                same = known[4] == want[1]
            elif walk.stamps_only:
                raise _DoubtError
            else:
                same = _digest(path, st, None, "") == want[1]
            if same and not settled(FileStamp.of(st)):
                clean = False
        if not same:
            clean = False
            _found(walk, walk.edited if want is not None else walk.added, prefix + name)
    if met < len(names):
        clean = False
        walk.doubtful.append(prefix)
        seen = {name for name, *_ in own}
        for name in sorted(names):
            if name not in seen:
                if not os.path.lexists(os.path.join(folder, name)):
                    _found(walk, walk.deleted, prefix + name)
                elif walk.stamps_only:
                    raise _DoubtError
    return clean


def remove_replaced(root: Path, old: Iterable[str], new: Iterable[str]) -> list[str]:
    """Delete the files and links of the replaced version that the new version does not have.

    Only paths in ``old`` (what this machine last wrote, pulled or pushed there) are deleted,
    and only the folders that deleting them emptied; the user's own files and empty folders
    stay. Call it after the new version was pulled (``pull(..., replace=old)``).

    Returns:
        The deleted paths (files and folders), relative to ``root``, sorted.

    Raises:
        LocalIOError: a file cannot be deleted.
    """
    # No copy of what is already a set, and none of ``new`` (a set's difference looks into
    # a dict or set directly): at 10^6 files each copy is tens of megabytes.
    olds = old if isinstance(old, (set, frozenset)) else set(old)
    gone = olds.difference(new if isinstance(new, (set, frozenset, dict)) else set(new))
    removed: list[str] = []
    emptied: set[str] = set()
    for rel in sorted(gone):
        check_relpath(rel)
        path = root.joinpath(*rel.split("/"))
        try:
            if path.is_dir() and not path.is_symlink():
                continue  # a folder now (the new version's, or the user's): not ours to delete
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LocalIOError(
                f"cannot delete {path}: {exc.strerror}", path=str(path),
                hint="check the folder's permissions",
            ) from exc
        removed.append(rel)
        parts = rel.split("/")
        emptied.update("/".join(parts[:i]) for i in range(1, len(parts)))
    for folder in sorted(emptied, key=lambda f: -f.count("/")):
        try:
            root.joinpath(*folder.split("/")).rmdir()
        except OSError:
            continue  # not empty (the user's files, the new version's) or already gone
        removed.append(folder)
    return sorted(removed)


def _unreadable(path: str, exc: OSError) -> LocalIOError:
    return LocalIOError(
        f"cannot read {path}: {exc.strerror}", path=path,
        hint="check its permissions; cpv cannot tell whether it changed",
    )
