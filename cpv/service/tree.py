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
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from cpv.engine import worktree
from cpv.engine.hashing import hash_file
from cpv.engine.snapshot import FileEntry
from cpv.engine.statcache import FileStamp, StatCache, cache_key
from cpv.errors import LocalIOError
from cpv.localmemo import file_stamp, keep_out_of_git, key_of, recall, record
from cpv.pathrules import in_scope
from cpv.service.filelist import table_entry
from cpv.versioning import ChangeCounts
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
        self.digest = hashlib.sha256(json.dumps(
            [lines, self.options.exclude_patterns, self.options.include_patterns]
        ).encode()).hexdigest()[:32]
        """Names these rules (the lines and the command's patterns): a baseline recorded by
        a push under the same rules holds no file they leave out."""

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
        maybe = self._maybe
        head = f"{folder}/" if folder else ""

        def excluded(rel: str) -> bool:
            # ignored(), inlined: a walk of 10^6 entries asks this once per entry. The rules
            # are compiled (pathspec imported) only when the prefilter lets a path through.
            path = head + rel
            if exclude_internal(rel) or (maybe is not None and maybe.search(path + "/") and (
                    self._spec.match_file(path) or self._spec.match_file(path + "/"))):
                return True
            return options is not None and options.drops(path, is_dir=_is_dir(root / path))

        return excluded

    def hidden_tracked(self, folder: Path, name: str,
                       tracked: Iterable[str]) -> tuple[list[str], list[str]]:
        """Files of the current version still in ``folder`` that the rules now leave out:
        (hidden by the defaults or ``.cpvignore``, left out by this command's options)."""
        by_file: list[str] = []
        by_option: list[str] = []
        for rel in tracked:
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
        return sorted(by_file), sorted(by_option)


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
    doubtful: tuple[str, ...] = ()
    """Folders (prefixes) where a recorded file was not seen: where a rule may hide one."""
    learned: Mapping[str, bytes] = field(default_factory=dict)
    """Fingerprints of folders found equal file by file (see :meth:`Baseline.learned`)."""

    def all(self) -> list[str]:
        return sorted({*self.edited, *self.added, *self.deleted})


_BASELINE_MAGIC = b"CPVBASE2\n"
"""Then one JSON line (snapshot id, the push's rules digest, and per folder: prefix,
fingerprint, entries, bytes, block length), then each folder's block (a JSON line of
``[name, size, blake3 or ->target]`` rows) in the header's order: a command reads the header
and only the blocks it needs."""


@dataclass(frozen=True, slots=True)
class _FolderRecord:
    fingerprint: bytes | None
    count: int
    size: int
    span: tuple[int, int] | None = None
    """(offset, length) of its block in the file it was read from; None: held in memory."""


def _folder_of(path: str) -> tuple[str, str]:
    """(folder prefix, name) of a path relative to the tracked folder."""
    cut = path.rfind("/")
    return (path[:cut + 1], path[cut + 1:]) if cut >= 0 else ("", path)


def _record(table: Mapping[str, tuple[int, str]], fingerprint: bytes | None) -> _FolderRecord:
    return _FolderRecord(fingerprint, len(table), sum(v[0] for v in table.values()))


def _block(table: Mapping[str, tuple[int, str]]) -> bytes:
    """A folder's entries as a baseline file keeps them: one JSON line, by name."""
    rows = [[name, v[0], v[1]] for name, v in sorted(table.items())]
    return json.dumps(rows, separators=(",", ":")).encode() + b"\n" if rows else b""


def _regular(value: tuple[int, str]) -> bool:
    """Whether a baseline entry is a regular file (a link's digest is ``"->" + target``,
    :func:`~cpv.service.filelist.table_entry`)."""
    return not value[1].startswith("->")


@dataclass(frozen=True, slots=True)
class FolderNote:
    """One folder a push encoded, against the baseline it replaces: its entries as the new
    baseline keeps them, and how its regular files changed (what a manifest counts).

    Made where the folder is encoded (:data:`cpv.engine.push.NoteFolder`), in a walker
    process for a big tree, so that a push of 1 % of 10^6 files changed in every folder
    neither reads both versions' trees back nor decodes and encodes the whole baseline in
    one process (7-9 s of a 20 s push).
    """

    block: bytes
    count: int
    size: int
    added: int
    changed: int
    removed: int
    regular: int
    """Regular files now minus before."""


@dataclass(frozen=True, slots=True)
class PushedChanges:
    """What a push changed against the baseline (regular files), from its folder notes."""

    counts: ChangeCounts
    regular: dict[str, int]
    """Regular files gained (lost: negative) under each top-level folder name."""


class Baseline:
    """What this machine last wrote, pulled or pushed in one folder, kept folder by folder.

    Each sub-folder (a prefix, ``""`` or ``"a/b/"``) has its own entries and, when a push
    or a status saw it settled and equal, the fingerprint it had then
    (:mod:`cpv.engine.fingerprint`): a folder with that fingerprint now needs no look at its
    entries. Read from disk, only the header is loaded; a folder's entries are read when
    asked for (:meth:`names`), so an unchanged 10^6-file tree costs no per-file memory.
    """

    def __init__(self, snapshot_id: str | None, files: Mapping[str, tuple[int, str]] | None = None,
                 *, fingerprints: Mapping[str, bytes] | None = None,
                 rules: str | None = None) -> None:
        self.snapshot_id = snapshot_id
        self.rules = rules
        """The :attr:`IgnoreRules.digest` of the push that recorded it (every file passed
        them), if a push did."""
        files = files or {}
        tables: dict[str, dict[str, tuple[int, str]]] = {}
        for path, value in files.items():
            prefix, name = _folder_of(path)
            tables.setdefault(prefix, {})[name] = value
        fps = dict(fingerprints or {})
        self._tables = tables
        self._folders = {p: _record(tables.get(p, {}), fps.get(p))
                         for p in sorted(set(tables) | set(fps))}
        self._read_block: Callable[[int, int], bytes] | None = None
        self._raw: dict[str, bytes] = {}  # blocks already encoded (a push's notes)
        self._all: dict[str, tuple[int, str]] | None = None

    @classmethod
    def _from_file(cls, snapshot_id: str | None, folders: dict[str, _FolderRecord],
                   read_block: Callable[[int, int], bytes], rules: str | None) -> Baseline:
        baseline = cls(snapshot_id, rules=rules)
        baseline._folders = folders
        baseline._read_block = read_block
        return baseline

    def prefixes(self) -> list[str]:
        return list(self._folders)

    def fingerprint(self, prefix: str) -> bytes | None:
        record = self._folders.get(prefix)
        return None if record is None else record.fingerprint

    def names(self, prefix: str) -> dict[str, tuple[int, str]]:
        """The folder's own entries by name (the caller must not change them)."""
        table = self._tables.get(prefix)
        if table is not None:
            return table
        record = self._folders.get(prefix)
        raw = self._raw.get(prefix)
        if raw is None:
            if record is None or record.span is None or not record.count:
                return {}
            assert self._read_block is not None
            raw = self._read_block(*record.span)
        try:
            return {str(r[0]): (int(r[1]), str(r[2])) for r in json.loads(raw)}
        except (ValueError, TypeError, IndexError) as exc:
            raise LocalIOError(f"the record of what was last written here is damaged: {exc}",
                               hint=f"delete {LOCAL_DIR}/baseline (status then compares with "
                                    "the current version)") from exc

    def __bool__(self) -> bool:
        return self.count > 0

    @property
    def count(self) -> int:
        """Entries recorded (files and links)."""
        return sum(r.count for r in self._folders.values())

    @property
    def total_size(self) -> int:
        return sum(r.size for r in self._folders.values())

    def paths(self, prefixes: Iterable[str] | None = None) -> Iterator[str]:
        """The recorded paths, folder by folder (only ``prefixes``' when given)."""
        for prefix in self._folders if prefixes is None else prefixes:
            for name in self.names(prefix):
                yield prefix + name

    @property
    def files(self) -> dict[str, tuple[int, str]]:
        """Every recorded entry, ``path -> (size, blake3 or ->target)``, held whole: for
        a pull's plan, which needs the whole version anyway; status and push stream."""
        if self._all is None:
            self._all = {prefix + name: value for prefix in self._folders
                         for name, value in self.names(prefix).items()}
        return self._all

    def updated(self, snapshot_id: str | None,
                changes: Iterable[tuple[str, tuple[int, str] | None]],
                fingerprints: Mapping[str, bytes], rules: str | None) -> Baseline:
        """This baseline with ``changes`` applied (path -> new entry, None: removed),
        ``fingerprints`` as the new set, and pushed under ``rules`` (None: not a push's):
        only the changed folders' entries are read."""
        touched: dict[str, dict[str, tuple[int, str]]] = {}
        for path, value in changes:
            prefix, name = _folder_of(path)
            table = touched.get(prefix)
            if table is None:
                table = touched[prefix] = dict(self.names(prefix))
            if value is None:
                table.pop(name, None)
            else:
                table[name] = value
        out = Baseline(snapshot_id, rules=rules)
        out._read_block = self._read_block
        out._tables = {p: t for p, t in self._tables.items() if p not in touched}
        out._raw = {p: r for p, r in self._raw.items() if p not in touched}
        folders: dict[str, _FolderRecord] = {}
        for prefix in sorted(set(self._folders) | set(touched) | set(fingerprints)):
            fp = fingerprints.get(prefix)
            if prefix in touched:
                out._tables[prefix] = touched[prefix]
                folders[prefix] = _record(touched[prefix], fp)
            elif prefix in self._folders:
                old = self._folders[prefix]
                folders[prefix] = _FolderRecord(fp, old.count, old.size, old.span)
            else:
                folders[prefix] = _FolderRecord(fp, 0, 0)
        out._folders = {p: r for p, r in folders.items() if r.count or r.fingerprint}
        return out

    def note_folder(self, prefix: str,
                    entries: Iterable[tuple[str, FileEntry | bytes]]) -> FolderNote:
        """What a push encoding the folder at ``prefix`` changed in it (sub-folders, given
        as node ids, are noted on their own)."""
        table = {name: table_entry(e) for name, e in entries if isinstance(e, FileEntry)}
        now = {n: v for n, v in table.items() if _regular(v)}
        old = self.names(prefix)
        before = {n: v for n, v in old.items() if _regular(v)}
        # A file that became a link (or a link a file) is removed (added) as a regular file.
        changed = sum(1 for n, v in now.items() if (was := before.get(n)) is not None
                      and was != v)
        record = _record(table, None)
        return FolderNote(_block(table), record.count, record.size,
                          len(now.keys() - before.keys()), changed,
                          len(before.keys() - now.keys()), len(now) - len(before))

    def after_push(self, snapshot_id: str, notes: Mapping[str, object],
                   reused: Iterable[tuple[str, bytes]], fingerprints: Mapping[str, bytes],
                   rules: str | None) -> tuple[Baseline, PushedChanges] | None:
        """The baseline a push leaves (its ``notes`` made by :meth:`note_folder` of this
        one, for the folders it encoded; the others ``reused``), and what it changed; None
        when a reused folder is not known to hold this baseline's entries (the caller then
        compares the versions themselves)."""
        folders: dict[str, _FolderRecord] = {}
        out = Baseline(snapshot_id, rules=rules)
        out._read_block = self._read_block
        for prefix, fingerprint in reused:
            old = self._folders.get(prefix)
            if old is None or old.fingerprint != fingerprint:
                return None  # reused from an older push than the baseline's version
            folders[prefix] = _FolderRecord(fingerprints.get(prefix), old.count, old.size,
                                            old.span)
            if prefix in self._tables:
                out._tables[prefix] = self._tables[prefix]
            if prefix in self._raw:
                out._raw[prefix] = self._raw[prefix]
        added = changed = removed = 0
        regular: dict[str, int] = {}
        for prefix, note in notes.items():
            if not isinstance(note, FolderNote):
                return None
            folders[prefix] = _FolderRecord(fingerprints.get(prefix), note.count, note.size)
            out._raw[prefix] = note.block
            added, changed, removed = (added + note.added, changed + note.changed,
                                       removed + note.removed)
            head = prefix.split("/", 1)[0]
            regular[head] = regular.get(head, 0) + note.regular
        for prefix in self._folders.keys() - folders.keys():  # gone with all it held
            gone = sum(1 for v in self.names(prefix).values() if _regular(v))
            removed += gone
            head = prefix.split("/", 1)[0]
            regular[head] = regular.get(head, 0) - gone
        out._folders = {p: folders[p] for p in sorted(folders)
                        if folders[p].count or folders[p].fingerprint}
        return out, PushedChanges(ChangeCounts(added=added, changed=changed, removed=removed),
                                  regular)

    def learned(self, fingerprints: Mapping[str, bytes]) -> Baseline:
        """The same entries, with more folders' fingerprints known."""
        return self.updated(self.snapshot_id, (), {
            **{p: r.fingerprint for p, r in self._folders.items() if r.fingerprint},
            **fingerprints}, self.rules)

    def _blocks(self) -> Iterator[tuple[str, _FolderRecord, bytes]]:
        for prefix, folder in self._folders.items():
            table = self._tables.get(prefix)
            if table is not None:
                raw = _block(table)
            elif prefix in self._raw:
                raw = self._raw[prefix]
            elif folder.span is not None and folder.count:
                assert self._read_block is not None
                raw = self._read_block(*folder.span)  # unchanged: copied, not decoded
            else:
                raw = b""
            yield prefix, folder, raw


class BaselineStore:
    """Baselines of one workspace, one small file per target folder."""

    def __init__(self, workspace_root: Path) -> None:
        self._dir = workspace_root / LOCAL_DIR / "baseline"
        self._root = workspace_root
        # file -> (its stamp when read, what it held): a command asks for the same folder's
        # baseline several times (push: left-out check, no-op check, lineage).
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
        """The baseline of ``folder``: its header only, entries read folder by folder."""
        path = self._file(folder)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - kept open: the blocks are read later
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("ignoring unreadable baseline %s: %s", path, exc)
            return None
        try:
            st = os.fstat(fh.fileno())
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
            known = self._read.get(path)
            if known is not None and known[0] == stamp:
                fh.close()
                return known[1]
            baseline = _parse_baseline(fh)
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            fh.close()
            log.warning("ignoring unreadable baseline %s: %s", path, exc)
            return None
        self._read[path] = (stamp, baseline)
        return baseline

    def save(self, folder: Path, baseline: Baseline) -> None:
        path = self._file(folder)
        tmp = path.with_suffix(".tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            keep_out_of_git(self._dir.parent)
            # The blocks go to a file of their own first, the header (their lengths) then
            # before a copy of them: a 10^6-file baseline's blocks held whole were 100 MB.
            folders = []
            with tempfile.TemporaryFile(dir=path.parent) as body:
                for p, r, raw in baseline._blocks():
                    body.write(raw)
                    folders.append([p, r.fingerprint.hex() if r.fingerprint else None,
                                    r.count, r.size, len(raw)])
                header = {"snapshot_id": baseline.snapshot_id, "rules": baseline.rules,
                          "folders": folders}
                body.seek(0)
                with open(tmp, "wb") as out:
                    out.write(_BASELINE_MAGIC)
                    out.write(json.dumps(header, separators=(",", ":")).encode() + b"\n")
                    shutil.copyfileobj(body, out, 1024 * 1024)
            os.replace(tmp, path)
        except OSError as exc:
            raise LocalIOError(f"cannot record what was written to {folder}: {exc.strerror}",
                               path=str(path)) from exc


def _parse_baseline(fh: BinaryIO) -> Baseline:
    """A baseline file: the header now, the blocks through ``fh`` later (kept open, so a
    baseline saved meanwhile, a new file renamed over it, does not change what it reads)."""
    first = fh.readline()
    if first != _BASELINE_MAGIC:
        # A baseline of an earlier cpv: one JSON document, every file. Read once; the next
        # save writes it folder by folder.
        doc = json.loads(first + fh.read())
        fh.close()
        files = {str(p): (int(v[0]), str(v[1])) for p, v in doc["files"].items()}
        sid = doc.get("snapshot_id")
        return Baseline(str(sid) if sid else None, files)
    header = json.loads(fh.readline())
    start = fh.tell()
    folders: dict[str, _FolderRecord] = {}
    offset = start
    for prefix, fp, count, size, length in header["folders"]:
        folders[str(prefix)] = _FolderRecord(bytes.fromhex(fp) if fp else None, int(count),
                                             int(size), (offset, int(length)))
        offset += int(length)
    sid = header.get("snapshot_id")

    def read_block(at: int, length: int) -> bytes:
        # A positional read: walker processes forked from this one share the file's offset,
        # and a seek then a read of one could land between another's (a folder judged
        # against another folder's entries: every file added and deleted).
        raw = os.pread(fh.fileno(), length, at)
        if len(raw) != length:
            raise LocalIOError(f"the record of what was last written here ({fh.name}) is "
                               "truncated", hint=f"delete {LOCAL_DIR}/baseline")
        return raw

    rules = header.get("rules")
    # read_block keeps ``fh`` open for as long as the baseline (or one derived from it) lives.
    return Baseline._from_file(str(sid) if sid else None, folders, read_block,
                               str(rules) if rules else None)


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
    folder: Path, baseline: Baseline, cache: StatCache | None,
    exclude: Callable[[str], bool] = exclude_internal, *, first: bool = False,
) -> LocalChanges:
    """How ``folder`` differs from its baseline, folder by folder (the engine compares:
    :func:`~cpv.engine.worktree.compare_folders`); ``first`` stops at the first change.

    Raises:
        LocalIOError: a file or folder cannot be read: never reported as unchanged.
    """
    found = worktree.compare_folders(folder, baseline, cache=cache, exclude=exclude,
                                     first=first, walkers=worktree.walkers_for(baseline.count))
    assert found is not None
    return LocalChanges(tuple(found.edited), tuple(found.added), tuple(found.deleted),
                        tuple(found.doubtful), found.learned)


def unchanged_since(
    folder: Path, baseline: Baseline, cache: StatCache,
    exclude: Callable[[str], bool] = exclude_internal,
) -> LocalChanges | None:
    """No change (what was learned on the way), only if ``folder`` holds exactly
    ``baseline``'s files, by stat calls alone: no file is read, any doubt is None. What lets
    a no-op push skip the store."""
    found = worktree.compare_folders(folder, baseline, cache=cache, exclude=exclude,
                                     stamps_only=True,
                                     walkers=worktree.walkers_for(baseline.count))
    return None if found is None else LocalChanges((), (), (), (), found.learned)


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
