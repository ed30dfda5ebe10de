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
import re
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.engine import worktree
from cpv.engine.hashing import hash_file
from cpv.engine.snapshot import FileEntry
from cpv.engine.statcache import FileStamp, StatCache, cache_key
from cpv.errors import LocalIOError
from cpv.localmemo import file_stamp, keep_out_of_git, key_of, recall, record
from cpv.workspace import exclude_internal

if TYPE_CHECKING:
    import pathspec

log = logging.getLogger(__name__)

__all__ = ["exclude_internal"]  # the file rule tree scans and pushes share

LOCAL_DIR = ".cpv/local"
#: The ignore rules' prefilter, remembered for the same rules (:class:`IgnoreRules`).
PREFILTER_FILE = f"{LOCAL_DIR}/ignore-prefilter.json"

#: path -> (size, blake3 hex); a symlink's "blake3" is ``"->" + target``.
FileTable = dict[str, tuple[int, str]]


IGNORE_FILE = ".cpvignore"
#: Never worth versioning; a .cpvignore line '!pattern' brings one back.
DEFAULT_IGNORES = ("__pycache__/", ".ipynb_checkpoints/", "*.pyc", "*.swp", "*~", ".DS_Store")


class PathFilter:
    """One command's ``--exclude`` / ``--include`` patterns (gitignore syntax, workspace paths).

    ``--exclude`` leaves matching files out; ``--include`` (when given) keeps only matching
    files, as in rclone, restic and huggingface_hub's allow patterns; an exclude wins over an
    include. Matched by the same maintained ``pathspec`` matcher as ``.cpvignore``, so a pattern
    means the same in both places. Empty filters select everything.
    """

    def __init__(self, exclude: Sequence[str] = (), include: Sequence[str] = ()) -> None:
        self.exclude_patterns = tuple(exclude)
        self.include_patterns = tuple(include)
        self._exclude: pathspec.GitIgnoreSpec | None = None
        self._include: pathspec.GitIgnoreSpec | None = None
        if exclude or include:  # else no pathspec import: most commands give no patterns
            import pathspec

            self._exclude = pathspec.GitIgnoreSpec.from_lines(exclude) if exclude else None
            self._include = pathspec.GitIgnoreSpec.from_lines(include) if include else None

    def __bool__(self) -> bool:
        return self._exclude is not None or self._include is not None

    def drops(self, path: str, *, is_dir: bool = False) -> bool:
        """True if the workspace path ``path`` is left out. A folder is never dropped by an
        include pattern (its files are judged one by one), only by an exclude."""
        if self._exclude is not None and (self._exclude.match_file(path)
                                          or self._exclude.match_file(path + "/")):
            return True
        return self._include is not None and not is_dir and not self._include.match_file(path)


class IgnoreRules:
    """What a workspace does not version: cpv's own files, defaults, ``.cpvignore``, and the
    command's ``--exclude`` / ``--include`` (:class:`PathFilter`).

    ``.cpvignore`` (gitignore syntax, matched by the maintained ``pathspec`` library) sits at
    the workspace root; its patterns match workspace paths (``model/optimizer.pt``,
    ``*.tmp``, ``data/**/cache/``). The one rule push, status, pull and checkout use, so a
    checkout never deletes an ignored file and status never reports one.
    """

    def __init__(self, workspace_root: Path, options: PathFilter | None = None) -> None:
        lines = list(DEFAULT_IGNORES)
        path = workspace_root / IGNORE_FILE
        try:
            lines += path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            pass
        except (OSError, UnicodeDecodeError) as exc:
            raise LocalIOError(f"cannot read {path}: {exc}", path=str(path)) from exc
        self._lines = lines
        self._compiled: pathspec.GitIgnoreSpec | None = None
        self._maybe = self._prefilter(workspace_root / PREFILTER_FILE)
        self._root = workspace_root
        self.options = options or PathFilter()

    @property
    def _spec(self) -> pathspec.GitIgnoreSpec:
        """The rules compiled by pathspec, on first use: most commands never need them (the
        prefilter clears every path of a tree that no rule touches)."""
        if self._compiled is None:
            import pathspec

            self._compiled = pathspec.GitIgnoreSpec.from_lines(self._lines)
        return self._compiled

    def _prefilter(self, memo: Path) -> re.Pattern[str] | None:
        """:func:`_any_positive` of the rules, remembered for the same lines and pathspec
        (building it means importing pathspec, a sixth of a no-op push, docs/benchmarks.md)."""
        import importlib.util

        found = importlib.util.find_spec("pathspec")
        code = file_stamp(found.origin if found is not None else None)
        key = key_of("ignore prefilter", self._lines, code)
        known = recall(memo, key)
        if known is not None and "regex" in known:
            text = known["regex"]
            if text is None:
                return None  # no rule ignores anything (every line a negation or comment)
            with contextlib.suppress(TypeError, re.error):  # a damaged record: build it again
                return re.compile(text)
        maybe = _any_positive(self._spec)
        record(memo, key, {"regex": maybe.pattern if maybe is not None else None})
        return maybe

    def ignored(self, path: str) -> bool:
        """True if the defaults or ``.cpvignore`` hide the workspace path ``path``.

        Most paths match no pattern at all: one combined regex says so in one pass, and only
        the rest go through pathspec's ordered, negation-aware match (6x faster on a walk of
        100,000 files, where every push and status asks this of every entry)."""
        maybe = self._maybe
        if maybe is None or not maybe.search(f"{path}/"):  # also finds whatever ``path`` would
            return False
        return self._spec.match_file(path) or self._spec.match_file(f"{path}/")

    def for_folder(self, folder: str) -> Callable[[str], bool]:
        """The exclude test for paths relative to the tracked folder ``folder`` ("" = the
        workspace root, where a tracked single file may live)."""
        options = self.options if self.options else None
        root = self._root
        ignored = self.ignored

        def excluded(rel: str) -> bool:
            path = f"{folder}/{rel}" if folder else rel
            if exclude_internal(rel) or ignored(path):
                return True
            return options is not None and options.drops(path, is_dir=_is_dir(root / path))

        return excluded

    def hidden_tracked(self, folder: Path, name: str,
                       tracked: Iterable[str]) -> tuple[list[str], list[str]]:
        """Files of the current version still in ``folder`` that the rules now leave out:
        (hidden by the defaults or ``.cpvignore``, left out by this command's options)."""
        by_file: list[str] = []
        by_option: list[str] = []
        for rel in sorted(tracked):
            path = f"{name}/{rel}" if name else rel
            if exclude_internal(rel):
                continue
            if self.options and self.options.drops(path):
                found = by_option  # said on purpose, whatever .cpvignore says
            elif self.ignored(path):
                found = by_file
            else:
                continue
            if os.path.lexists(folder / rel):  # a deleted file is a deletion, not hidden
                found.append(path)
        return by_file, by_option


_FLOATING = "^(?:.+/)?"  # how pathspec starts a pattern that may match at any depth


#: How pathspec ends a gitignore pattern: "then a ``/`` (more path) or the end", or "then a
#: ``/``" (a folder-only pattern).
_ENDINGS = ("(?:(?P<ps_d>/)|$)", "(?P<ps_d>/)")


def _any_positive(spec: pathspec.GitIgnoreSpec) -> re.Pattern[str] | None:
    """One regex, for ``search`` in ``path + "/"``, that finds wherever any ignoring
    (non-``!``) pattern of ``spec`` would match ``path`` or ``path/``: a pattern that may match
    at any depth becomes ``(?:^|/)...``, which a scan finds without backtracking over every
    ``/`` as ``^(?:.+/)?`` makes it do. One search serves both forms because each pattern
    ends with "``/`` or the end" (a match ending at the end of ``path`` also matches at the
    ``/`` after it) or with "``/``"; a pattern ending otherwise is searched as "anywhere", a
    looser test, which only costs the exact match that follows."""
    floating: list[str] = []
    anchored: list[str] = []
    for pattern in spec.patterns:
        regex = getattr(pattern, "regex", None)
        if not getattr(pattern, "include", None) or regex is None:
            continue
        raw = str(regex.pattern)
        if not raw.endswith(_ENDINGS):
            raw = "(?:.*)"
        text = re.sub(r"\(\?P<[^>]+>", "(?:", raw)
        if text.startswith(_FLOATING):
            floating.append(text[len(_FLOATING):])
        else:
            anchored.append(f"(?:{text})")
    parts = ([f"(?:^|/)(?:{'|'.join(floating)})"] if floating else []) + anchored
    return re.compile("|".join(parts)) if parts else None


def _is_dir(path: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _entries(table: FileTable) -> list[FileEntry]:
    """A baseline as the engine's file entries, so the engine's comparison serves both."""
    return [FileEntry(p, size, 0, "" if digest.startswith("->") else digest, (),
                      link=digest[2:] if digest.startswith("->") else None)
            for p, (size, digest) in table.items()]


def has_files(folder: Path, exclude: Callable[[str], bool] = exclude_internal) -> bool:
    """True if ``folder`` holds at least one file or symlink cpv would version.

    The engine's comparison against an empty version lists every such file without reading
    any, so "what counts" is the one rule push and status use.
    """
    try:
        return bool(worktree.local_changes(folder, [], exclude=exclude, first=True))
    except LocalIOError:
        return True  # unreadable: let the push say so


@dataclass(frozen=True, slots=True)
class LocalChanges:
    """How a folder differs from its baseline: files edited, added and deleted here."""

    edited: tuple[str, ...]
    added: tuple[str, ...]
    deleted: tuple[str, ...]

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
        # file -> (its stamp when read, what it held): a command asks for the same folder's
        # baseline several times (push: left-out check, no-op check, lineage), and 20,000
        # entries cost a JSON decode each time.
        self._read: dict[Path, tuple[tuple[int, int, int], Baseline]] = {}

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
        """The baseline of ``folder``; the caller must not change the returned table."""
        path = self._file(folder)
        try:
            with open(path, "rb") as fh:
                st = os.fstat(fh.fileno())
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                known = self._read.get(path)
                if known is not None and known[0] == stamp:
                    return known[1]
                doc = json.loads(fh.read())
            files = {str(p): (int(v[0]), str(v[1])) for p, v in doc["files"].items()}
            sid = doc.get("snapshot_id")
            baseline = Baseline(str(sid) if sid else None, files)
            self._read[path] = (stamp, baseline)
            return baseline
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            log.warning("ignoring unreadable baseline %s: %s", path, exc)
            return None

    def save(self, folder: Path, baseline: Baseline) -> None:
        path = self._file(folder)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            keep_out_of_git(self._dir.parent)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"snapshot_id": baseline.snapshot_id,
                                       "files": {p: list(v) for p, v in baseline.files.items()}},
                                      separators=(",", ":")), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:
            raise LocalIOError(f"cannot record what was written to {folder}: {exc.strerror}",
                               path=str(path)) from exc


def file_digest(folder: Path, rel: str, cache: StatCache | None) -> str | None:
    """The blake3 (or ``->target`` of a symlink) of one file now; None when it is gone."""
    full = folder / rel
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise LocalIOError(f"cannot read {full}: {exc.strerror}", path=str(full)) from exc
    if stat.S_ISLNK(st.st_mode):
        return "->" + os.readlink(full)
    if cache is not None:
        known = cache.digest(cache_key(os.path.abspath(folder), rel), FileStamp.of(st))
        if known is not None:
            return known
    try:
        return hash_file(full)
    except OSError as exc:
        raise LocalIOError(f"cannot read {full}: {exc.strerror}", path=str(full),
                           hint="check the file's permissions") from exc


def local_changes(
    folder: Path, baseline: FileTable, cache: StatCache | None,
    exclude: Callable[[str], bool] = exclude_internal,
) -> LocalChanges:
    """How ``folder`` differs from its baseline (the engine compares; this sorts the result).

    Raises:
        LocalIOError: a file or folder cannot be read: never reported as unchanged.
    """
    found = worktree.compare(folder, _entries(baseline), cache=cache, exclude=exclude)
    edited = tuple(p for p in found.changed if p in baseline)
    added = tuple(p for p in found.changed if p not in baseline)
    return LocalChanges(edited, added, tuple(found.missing))


def unchanged_since(
    folder: Path, baseline: FileTable, cache: StatCache,
    exclude: Callable[[str], bool] = exclude_internal,
) -> bool:
    """True only if ``folder`` holds exactly ``baseline``'s files, by stat calls alone (no
    file is read; any doubt is False). What lets a no-op push skip the store."""
    return worktree.unchanged_by_stat(folder, baseline, cache, exclude=exclude)


def conflicts(
    folder: Path,
    changes: LocalChanges,
    target: Mapping[str, tuple[int, str]],
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
        if want is None or want[1] != file_digest(folder, rel, cache):
            out.append(rel)
    for rel in changes.added:
        want = target.get(rel)
        if inside(rel) and want is not None and want[1] != file_digest(folder, rel, cache):
            out.append(rel)
    return sorted(out)


def in_scope(scope: Iterable[str] | None) -> Callable[[str], bool]:
    """A test for "this path is one of, or under one of, ``scope``" (None: everything).

    A set lookup of the path and each of its parent folders, so a scope of 100,000 chosen
    files (a filtered pull) costs per path its depth, not the scope's length.
    """
    if scope is None:
        return lambda _rel: True
    prefixes = frozenset(s.strip("/") for s in scope)

    def inside(rel: str) -> bool:
        if rel in prefixes:
            return True
        while "/" in rel:
            rel = rel.rsplit("/", 1)[0]
            if rel in prefixes:
                return True
        return False

    return inside
