"""Placing files on the disk safely (invariant 7).

Which paths a tree may hold is :mod:`cpv.pathrules`' business (shared with the manifests);
this module adds what only the disk can tell: no existing symlink or file on the way may
redirect a write elsewhere.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Collection
from pathlib import Path

from cpv.errors import LocalIOError, UnsafePathError
from cpv.pathrules import check_relpath


class Placement:
    """Where one pull writes, decided (and every obstacle judged) before anything is written.

    A version may turn a file into a folder (``a`` -> ``a/b``) or a folder into a file. The
    obstacle is cleared only when it belongs to the version being replaced (``replace``: the
    paths the service knows it wrote, relative to the destination); anything else in the way is
    the user's and the pull is refused before a byte is written.

    Any existing symlink among the parents could point outside ``root`` (a classic
    archive-extraction trick) and is refused unless it is itself an old-version path. Checked
    parent folders are memoised: without that 20,000 files in a few folders cost 40,000
    ``lstat`` calls.
    """

    def __init__(self, root: Path, replace: Collection[str] = ()) -> None:
        self.root = root
        self.replace = frozenset(replace)  # no copy of a frozenset (the service's)
        self.removals: list[str] = []
        self._verified: set[str] = set()
        self._cleared: set[str] = set()
        self._subdirs: dict[str, frozenset[str]] = {}

    def check(self, relpath: str) -> None:
        """Judge the way to ``relpath``; schedules the removal of old-version obstacles.

        Builds no path object: a pull asks this of every file first (10^6 of them), and makes
        the paths of a batch only when it writes it.

        Raises:
            UnsafePathError: a symlink of the user's own redirects the write.
            LocalIOError: a file or folder of the user's own is in the way.
        """
        check_relpath(relpath)
        parts = relpath.split("/")
        prefix = ""
        for part in parts[:-1]:
            prefix += part + "/"
            if prefix in self._verified:
                continue
            folder = prefix[:-1]
            if folder in self._cleared:
                return
            try:
                st = os.lstat(os.path.join(self.root, folder))
            except FileNotFoundError:
                return
            if stat.S_ISDIR(st.st_mode):
                self._verified.add(prefix)
                continue
            if folder in self.replace:
                # The old version's file or link stands where the new one has a folder.
                self._remove(folder)
                return
            if stat.S_ISLNK(st.st_mode):
                raise UnsafePathError(relpath, f"parent {folder} is a symlink")
            raise _in_the_way(folder, relpath, "a file")
        folder = relpath.rpartition("/")[0]
        if parts[-1] in self._folders_in(folder) and relpath not in self._cleared:
            # The old version's folder stands where the new one has a file.
            blocking = _foreign_entries(self.root, relpath, self.replace)
            if blocking:
                raise _in_the_way(relpath, relpath, f"a folder holding {blocking[0]}")
            self._remove(relpath)

    def _folders_in(self, folder: str) -> frozenset[str]:
        """Names of the real sub-folders of ``folder``: one listing per folder, not one
        ``lstat`` per file (the file type comes with the listing on Linux and macOS)."""
        names = self._subdirs.get(folder)
        if names is None:
            try:
                with os.scandir(os.path.join(self.root, folder)) as it:
                    names = frozenset(e.name for e in it if e.is_dir(follow_symlinks=False))
            except OSError:
                # Missing (created later) or unlistable: nothing known in the way. A folder
                # there after all makes the rename fail (EISDIR), which loses nothing.
                names = frozenset()
            self._subdirs[folder] = names
        return names

    def _remove(self, relpath: str) -> None:
        self.removals.append(relpath)
        self._cleared.add(relpath)

    def clear(self) -> None:
        """Remove the obstacles :meth:`check` scheduled (only old-version files and folders)."""
        for relpath in self.removals:
            path = os.path.join(self.root, relpath)
            try:
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise LocalIOError(
                    f"cannot replace {path}: {exc.strerror}", path=path,
                    hint="check the folder's permissions",
                ) from exc


def _foreign_entries(root: Path, relpath: str, replace: frozenset[str]) -> list[str]:
    """Files under folder ``relpath`` that are not in ``replace`` (the user's own); sorted."""
    foreign: list[str] = []
    for folder, dirnames, filenames in os.walk(os.path.join(root, relpath)):
        rel = os.path.relpath(folder, root).replace(os.sep, "/")
        links = [d for d in dirnames if os.path.islink(os.path.join(folder, d))]
        foreign.extend(p for name in filenames + links if (p := f"{rel}/{name}") not in replace)
    return sorted(foreign)


def _in_the_way(obstacle: str, relpath: str, what: str) -> LocalIOError:
    return LocalIOError(
        f"cannot write {relpath}: {obstacle} is {what} that is not part of the version being "
        "replaced",
        path=obstacle,
        hint="move it out of the way (or pull into another folder), then re-run",
    )
