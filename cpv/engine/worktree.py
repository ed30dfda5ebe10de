"""A pulled folder on the disk compared with, and tidied after, the snapshot it holds.

The service asks two things of a tracked folder: which local files a checkout would lose
(``status``, the dirty check), and which files of the version being replaced to delete after
pulling another one. Both must treat the tree the way push and pull do: symlinks are links
(compared by target, never followed), an unreadable file or folder is an error and never
"clean", and nothing that is not part of the replaced version is deleted, empty folders
included (empty folders are not versioned; cpv leaves the user's alone, docs/format.md).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cpv.engine.hashing import Hasher
from cpv.engine.snapshot import FileEntry
from cpv.engine.statcache import FileStamp, StatCache, cache_key
from cpv.errors import LocalIOError
from cpv.pathrules import check_relpath

_BLOCK = 8 * 1024 * 1024


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
    return compare(root, files, cache=cache, exclude=exclude, first=first).changed


@dataclass(frozen=True, slots=True)
class Comparison:
    """How a folder differs from the version it holds: paths new or changed here, and the
    version's paths that are gone from the disk."""

    changed: list[str]
    missing: list[str]


def compare(
    root: Path,
    files: Iterable[FileEntry],
    *,
    cache: StatCache | None = None,
    exclude: Callable[[str], bool] | None = None,
    first: bool = False,
) -> Comparison:
    """:func:`local_changes`, plus the paths of ``files`` that are not on the disk any more.

    The walk counts the version's paths it meets: when it met them all (the usual case), none
    is missing and no path is looked up again; otherwise each path it did not meet is (an
    excluded file that is still there is not missing).
    """
    expected = {f.path: f for f in files}
    met = [0]
    changed = _changed(root, expected, cache, exclude, first, met)
    if met[0] == len(expected):
        return Comparison(changed, [])
    base = str(root)
    return Comparison(changed, sorted(p for p in expected
                                      if not os.path.lexists(os.path.join(base, p))))


def _changed(
    root: Path,
    expected: dict[str, FileEntry],
    cache: StatCache | None,
    exclude: Callable[[str], bool] | None,
    first: bool,
    met: list[int],
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
        _compare(str(root), "", expected, cache, tree_key, exclude, changed, first, met)
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
    met: list[int],
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
        if want is not None:
            met[0] += 1  # on the disk (as a file, a link or a folder)
        if stat.S_ISDIR(st.st_mode):
            _compare(entry.path, rel + "/", expected, cache, tree_key, exclude, changed, first,
                     met)
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


def unchanged_by_stat(
    root: Path,
    table: Mapping[str, tuple[int, str]],
    cache: StatCache,
    *,
    exclude: Callable[[str], bool] | None = None,
) -> bool:
    """True only if ``root`` holds exactly the files of ``table``, judged from stat calls alone.

    ``table`` is a version as the service's baselines keep it: ``path -> (size, blake3 hex)``,
    a symlink's "blake3" being ``"->" + target``. Taken as it is, because building a
    :class:`FileEntry` per file cost more than the stat calls (20,000 files, docs/benchmarks.md).

    The no-op push asks this before it opens the store: it reads no file and stops at the
    first doubt. Every regular file needs a stat-cache entry with its exact size, mtime, ctime
    and inode whose blake3 is the one ``table`` names (the cache skips files hashed within
    two seconds of their mtime, so a racy file is a doubt, never "unchanged"); every link
    needs the same target; nothing may be missing or added. An unreadable file or folder is a
    doubt too: the full push then says what is wrong with it.
    """
    stamps = cache.stamps_under(os.path.abspath(root))
    try:
        seen = _all_known(str(root), "", table, stamps, exclude)
    except OSError:
        return False
    return seen == len(table)


def _all_known(
    folder: str,
    prefix: str,
    expected: Mapping[str, tuple[int, str]],
    stamps: dict[str, tuple[int, int, int, int, str]],
    exclude: Callable[[str], bool] | None,
) -> int:
    """How many entries of ``expected`` were found unchanged under ``folder``; -1 (and no
    further look) at the first file that is new, changed or not vouched for by the cache."""
    seen = 0
    with os.scandir(folder) as it:
        entries = list(it)
    for entry in entries:
        rel = prefix + entry.name
        if exclude is not None and exclude(rel):
            continue
        st = entry.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            found = _all_known(entry.path, rel + "/", expected, stamps, exclude)
            if found < 0:
                return -1
            seen += found
            continue
        want = expected.get(rel)
        if want is None:
            return -1
        digest = want[1]
        if stat.S_ISLNK(st.st_mode):
            if not digest.startswith("->") or os.readlink(entry.path) != digest[2:]:
                return -1
        elif not stat.S_ISREG(st.st_mode) or digest.startswith("->"):
            return -1
        else:
            known = stamps.get(rel)
            if (known is None or known[4] != digest or known[0] != st.st_size
                    or known[1] != st.st_mtime_ns or known[2] != st.st_ctime_ns
                    or known[3] != st.st_ino):
                return -1
        seen += 1
    return seen


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
    keep = set(new)
    removed: list[str] = []
    emptied: set[str] = set()
    for rel in sorted(set(old) - keep):
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
