"""The one owner of "which files make a tracked tree" and of what this machine last put there.

A tracked folder's files are judged against the **baseline**: what this machine last pushed,
pulled or checked out there (DESIGN invariant 10), never against the current manifest, which
another machine may have moved on. So following another machine never needs ``--force``, while
an edit made here is still refused by every command that would overwrite or remove it.

The baseline of a folder is a small git-ignored file under ``.cpv/local/baseline/`` holding
``path -> (size, blake3)`` and the snapshot it came from. Whether a file still has its baseline
content is decided by size, then by the stat cache (whose entries are stamped from the files cpv
wrote), then by hashing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cpv.engine.hashing import hash_file
from cpv.engine.statcache import FileStamp, StatCache, cache_key
from cpv.errors import LocalIOError
from cpv.workspace import exclude_internal

log = logging.getLogger(__name__)

__all__ = ["exclude_internal"]  # the file rule tree scans and pushes share

LOCAL_DIR = ".cpv/local"

#: path -> (size, blake3 hex); a symlink's "blake3" is ``"->" + target``.
FileTable = dict[str, tuple[int, str]]


def scan_files(folder: Path) -> dict[str, os.stat_result]:
    """Regular files and symlinks under ``folder`` (relative POSIX path -> lstat), unsorted.

    Unreadable sub-folders are an error, not "clean": a tree cpv cannot see is not known to be
    unchanged.

    Raises:
        LocalIOError: a folder cannot be listed.
    """
    out: dict[str, os.stat_result] = {}
    try:
        st = os.lstat(folder)
    except FileNotFoundError:
        return out
    except OSError as exc:
        raise LocalIOError(f"cannot read {folder}: {exc.strerror}", path=str(folder)) from exc
    if stat.S_ISREG(st.st_mode):
        return {folder.name: st}
    stack = [(str(folder), "")]
    while stack:
        here, prefix = stack.pop()
        try:
            entries = list(os.scandir(here))
        except OSError as exc:
            raise LocalIOError(f"cannot list {here}: {exc.strerror}", path=here,
                               hint="check the folder's permissions") from exc
        for entry in entries:
            rel = prefix + entry.name
            if exclude_internal(rel):
                continue
            try:
                est = entry.stat(follow_symlinks=False)
            except OSError as exc:
                raise LocalIOError(f"cannot stat {entry.path}: {exc.strerror}",
                                   path=entry.path) from exc
            if stat.S_ISDIR(est.st_mode):
                stack.append((entry.path, rel + "/"))
            elif stat.S_ISREG(est.st_mode) or stat.S_ISLNK(est.st_mode):
                out[rel] = est
    return out


def has_files(folder: Path) -> bool:
    """True if ``folder`` holds at least one file or symlink cpv would version."""
    with contextlib.suppress(LocalIOError):
        return bool(scan_files(folder))
    return True  # unreadable: let the push say so


@dataclass(frozen=True, slots=True)
class LocalChanges:
    """How a folder differs from its baseline: files edited, added and deleted here."""

    edited: tuple[str, ...]
    added: tuple[str, ...]
    deleted: tuple[str, ...]

    @property
    def any(self) -> bool:
        return bool(self.edited or self.added or self.deleted)

    def all(self) -> list[str]:
        return sorted({*self.edited, *self.added, *self.deleted})


@dataclass(frozen=True, slots=True)
class Baseline:
    """What this machine last wrote, pulled or pushed in one folder."""

    snapshot_id: str | None
    files: FileTable


class BaselineStore:
    """Baselines of one workspace, one small JSON file per target folder."""

    def __init__(self, workspace_root: Path) -> None:
        self._dir = workspace_root / LOCAL_DIR / "baseline"
        self._root = workspace_root

    def _file(self, folder: Path) -> Path:
        folder = Path(os.path.abspath(folder))
        try:
            rel = folder.relative_to(self._root).as_posix()
        except ValueError:
            rel = ""
        if rel and "/" not in rel:
            name = rel  # model, data: readable names for the workspace's own folders
        else:
            name = "x-" + hashlib.sha256(str(folder).encode()).hexdigest()[:32]
        return self._dir / f"{name}.json"

    def load(self, folder: Path) -> Baseline | None:
        path = self._file(folder)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            files = {str(p): (int(v[0]), str(v[1])) for p, v in doc["files"].items()}
            sid = doc.get("snapshot_id")
            return Baseline(str(sid) if sid else None, files)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignoring unreadable baseline %s: %s", path, exc)
            return None

    def save(self, folder: Path, baseline: Baseline) -> None:
        path = self._file(folder)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            ignore = self._dir.parent / ".gitignore"
            if not ignore.exists():
                ignore.write_text("*\n")
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"snapshot_id": baseline.snapshot_id,
                                       "files": {p: list(v) for p, v in baseline.files.items()}},
                                      separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise LocalIOError(f"cannot record what was written to {folder}: {exc.strerror}",
                               path=str(path)) from exc


def file_digest(folder: Path, rel: str, st: os.stat_result, cache: StatCache | None) -> str:
    """The blake3 (or ``->target`` of a symlink) of one file, from the stat cache if it can."""
    full = folder / rel
    if stat.S_ISLNK(st.st_mode):
        return "->" + os.readlink(full)
    if cache is not None:
        hit = cache.lookup(cache_key(os.path.abspath(folder), rel), FileStamp.of(st))
        if hit is not None:
            return hit.blake3
    try:
        return hash_file(full)
    except OSError as exc:
        raise LocalIOError(f"cannot read {full}: {exc.strerror}", path=str(full),
                           hint="check the file's permissions") from exc


def local_changes(
    folder: Path, baseline: FileTable, cache: StatCache | None
) -> tuple[LocalChanges, dict[str, os.stat_result]]:
    """Compare ``folder`` with its baseline; also return the scan for callers that go on."""
    if cache is not None:
        cache.load_folder(os.path.abspath(folder))
    found = scan_files(folder)
    edited, added = [], []
    for rel, st in found.items():
        base = baseline.get(rel)
        if base is None:
            added.append(rel)
        elif (not stat.S_ISLNK(st.st_mode) and st.st_size != base[0]) or (
                file_digest(folder, rel, st, cache) != base[1]):
            edited.append(rel)
    deleted = [p for p in baseline if p not in found]
    return LocalChanges(tuple(sorted(edited)), tuple(sorted(added)), tuple(sorted(deleted))), found


def conflicts(
    folder: Path,
    changes: LocalChanges,
    target: Mapping[str, tuple[int, str]],
    found: Mapping[str, os.stat_result],
    cache: StatCache | None,
    *,
    scope: Iterable[str] | None = None,
) -> list[str]:
    """Local changes that writing ``target`` into ``folder`` would overwrite or remove.

    An edited file conflicts unless the target holds exactly its current content; a file added
    here conflicts only if the target has a different file at its path (files this machine
    never received are never removed). ``scope`` limits the check to a partial pull's paths.
    """
    inside = in_scope(scope)
    out = []
    for rel in changes.edited:
        if not inside(rel):
            continue
        want = target.get(rel)
        if want is None or want[1] != file_digest(folder, rel, found[rel], cache):
            out.append(rel)
    for rel in changes.added:
        want = target.get(rel)
        if inside(rel) and want is not None and want[1] != file_digest(
                folder, rel, found[rel], cache):
            out.append(rel)
    return sorted(out)


def in_scope(scope: Iterable[str] | None) -> Callable[[str], bool]:
    """A test for "this path is one of, or under one of, ``scope``" (None: everything)."""
    if scope is None:
        return lambda _rel: True
    prefixes = [s.strip("/") for s in scope]
    return lambda rel: any(rel == p or rel.startswith(p + "/") for p in prefixes)


def remove_files(folder: Path, paths: Iterable[str]) -> int:
    """Delete files the new version no longer holds, and folders that this leaves empty.

    Only the named files' parent folders are pruned, so the user's own empty folders elsewhere
    stay.
    """
    removed = 0
    parents: set[Path] = set()
    for rel in paths:
        path = folder / rel
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise LocalIOError(f"cannot remove {path}: {exc.strerror}", path=str(path)) from exc
        parent = path.parent
        while parent != folder and folder in parent.parents:
            parents.add(parent)
            parent = parent.parent
    for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            parent.rmdir()  # only when empty
    return removed
