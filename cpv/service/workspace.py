"""The workspace service: every operation of one workspace, opened once per command.

The CLI and the seed facades call this and nothing below it. One :class:`WorkspaceService`
holds one :class:`~cpv.workspace.Workspace` (config, Git, history), whose store and repository
are opened once, on first use. The service decides what a command means in versions (which
tags, which files, whether local work is in the way) and asks the engine to move bytes and
versioning to record history.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpv.engine import worktree
from cpv.engine.snapshot import SNAPSHOT_PREFIX, Snapshot
from cpv.errors import (
    ConfigError,
    CPVError,
    DirtyWorkspaceError,
    GitRemoteError,
    IntegrityError,
    InvalidAliasError,
    LocalIOError,
    MigrationNeededError,
    NoStoreError,
    NotAWorkspaceError,
    NothingMatchedError,
    ObjectNotFoundError,
    PathNotFoundError,
    TagNotFoundError,
    TrackedPathError,
    UnknownVersionError,
    UnsafePathError,
    UnsupportedPathError,
    VersioningError,
)
from cpv.notify import NotifyError, post_event
from cpv.pathrules import in_scope
from cpv.progress import NULL_PROGRESS, Progress
from cpv.secrets import redact
from cpv.service.filelist import (
    FileLists,
    ListedFile,
    count_changes,
    expected_files,
    regular,
    snapshot_listing,
    table_entry,
    table_of,
)
from cpv.service.results import (
    DamagedVersion,
    FileChange,
    GCOutcome,
    KindStatus,
    PullSummary,
    PushOutcome,
    RevertResult,
    StatusReport,
    UploadResult,
    VerifyOutcome,
    VersionDiff,
)
from cpv.service.tree import (
    IGNORE_FILE,
    Baseline,
    BaselineStore,
    FileTable,
    IgnoreRules,
    LocalChanges,
    PathFilter,
    PushedChanges,
    conflicts,
    has_files,
    local_changes,
    unchanged_since,
)
from cpv.versioning import (
    ChangeCounts,
    Lineage,
    Manifest,
    MetricDelta,
    VersionInfo,
    compare,
    pointer_manifest,
)
from cpv.versioning.aliases import Alias, AliasBook, check_alias_name
from cpv.versioning.manifest import check_tracked_path, manifest_name
from cpv.versioning.metrics import merge_metrics, normalize_metrics, resolve_metrics
from cpv.versioning.tags import (
    KINDS,
    Version,
    line_name_problem,
    parse_line_tag,
    tag_name,
    try_parse_tag,
)
from cpv.workspace import (
    DATA_SPLITS,
    DEFAULT_TRACKS,
    INTERNAL_DIRS,
    TRACKED,
    WORKSPACE_ID_FILE,
    Kind,
    Track,
    Workspace,
)

if TYPE_CHECKING:
    # The config's schema (pydantic), the store's version records (roots) and the engine's
    # transfer side (push, pull, verify, gc, repair) are imported where needed: a no-op push
    # and status decide without them (docs/benchmarks.md).
    from cpv.config import CPVConfig
    from cpv.engine.pull import PullResult
    from cpv.engine.push import PushResult, SymlinkPolicy
    from cpv.engine.repair import RepairReport
    from cpv.engine.roots import AdoptReport, ForgetPolicy, ForgetReport, RootInfo, TagTarget
    from cpv.engine.statcache import StatCache
    from cpv.engine.tree import Change
    from cpv.service.sessions import SessionCommit

log = logging.getLogger(__name__)

_VERSION_ONLY = re.compile(r"^\d+\.\d+$")
_MAX_LISTED = 5


def find_workspace(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder at or above ``start`` (default: cwd) holding ``.cpv/`` and ``.git``.

    Like git, so that every command works from any sub-folder of a workspace.

    Raises:
        NotAWorkspaceError: no such folder up to the file system root.
    """
    here = Path(start if start is not None else Path.cwd()).absolute()
    for folder in (here, *here.parents):
        if (folder / ".cpv").is_dir() and (folder / ".git").exists():
            return folder
    raise NotAWorkspaceError(
        f"not a cpv workspace (or any of its parent folders): {here}",
        hint="run 'cpv init' to make this folder one, or cd into a workspace (or use -C DIR)",
    )


def load_metric_inputs(
    file: str | Path | None, values: Mapping[str, float] | None = None
) -> dict[str, float]:
    """Metrics from a JSON file and ``name=value`` pairs; the pairs win per name.

    Raises:
        LocalIOError / FormatError: the file cannot be read or holds non-numbers.
    """
    from_file = resolve_metrics(file) if file is not None else {}
    given = normalize_metrics(dict(values or {}), source="--metric")
    return merge_metrics(from_file, given)


def snapshot_table(snapshot: Snapshot, scope: Sequence[str] | None = None) -> FileTable:
    """A snapshot's files (those in ``scope``, :func:`in_scope`) as ``path -> (size, blake3
    or ->target)``, as baselines keep them."""
    if scope is None:  # no test per file
        return {f.path: table_entry(f) for f in snapshot.files}
    inside = in_scope(scope)
    return {f.path: table_entry(f) for f in snapshot.files if inside(f.path)}


def _split_counts(paths: Sequence[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        head = path.split("/", 1)[0] if "/" in path else ""
        if head in DATA_SPLITS:
            counts[head] = counts.get(head, 0) + 1
    return counts


@dataclass(frozen=True, slots=True)
class _Summary:
    """What a pointer manifest says of its version's files (see ``pointer_manifest``)."""

    file_count: int
    total_size: int
    changes: ChangeCounts | None
    splits: dict[str, int]

    @classmethod
    def since(cls, current: Manifest, changes: Iterable[Change], total_size: int
              ) -> tuple[_Summary, list[tuple[str, tuple[int, str] | None]]] | None:
        """The new version's summary from ``current``'s and what changed since (regular
        files, as :func:`count_changes` counts them), with the changes as baseline entries;
        None when ``current`` does not say enough (then the whole list is read)."""
        added = changed = removed = 0
        regular: dict[str, int] = {}
        entries: list[tuple[str, tuple[int, str] | None]] = []
        for c in changes:
            old = c.old is not None and c.old.link is None
            new = c.new is not None and c.new.link is None
            if new and not old:
                added += 1
            elif old and not new:
                removed += 1
            elif old and new and (c.old.size, c.old.blake3) != (  # type: ignore[union-attr]
                    c.new.size, c.new.blake3):  # type: ignore[union-attr]
                changed += 1
            if old != new:
                head = c.path.split("/", 1)[0] if "/" in c.path else ""
                regular[head] = regular.get(head, 0) + (1 if new else -1)
            entries.append((c.path, None if c.new is None else table_entry(c.new)))
        summary = cls.of_changes(current, PushedChanges(
            ChangeCounts(added=added, changed=changed, removed=removed), regular), total_size)
        return None if summary is None else (summary, entries)

    @classmethod
    def of_changes(cls, current: Manifest, changes: PushedChanges,
                   total_size: int) -> _Summary | None:
        """The new version's summary from ``current``'s and its regular files' changes;
        None when ``current``'s counts do not add up (then the whole list is read)."""
        given = {k[len("samples."):]: v for k, v in current.extra.items()
                 if k.startswith("samples.")}
        if not all(isinstance(v, int) for v in given.values()):
            return None
        splits = {k: int(v) for k, v in given.items() if isinstance(v, int)}
        if current.kind == "data":
            for head, gained in changes.regular.items():
                if head in DATA_SPLITS:
                    splits[head] = splits.get(head, 0) + gained
        count = current.file_count + changes.counts.added - changes.counts.removed
        if count < 0 or any(v < 0 for v in splits.values()):
            return None
        return cls(count, total_size, changes.counts,
                   {k: v for k, v in splits.items() if v} if current.kind == "data" else {})


def _listed(paths: Sequence[str]) -> str:
    shown = ", ".join(paths[:_MAX_LISTED])
    return shown + (f" and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else "")


class WorkspaceService:
    """One open workspace and every operation on it. Use as a context manager."""

    def __init__(self, ws: Workspace, *, interface: str = "cli") -> None:
        self.ws = ws
        self._interface = interface
        self._baselines = BaselineStore(ws.root)
        self._ignore: IgnoreRules | None = None
        self._filter = PathFilter()
        self._tracks: list[Track] | None = None
        self._lists = FileLists(ws.root, ws.repository)

    def exclude(self, kind: Kind | Track) -> Callable[[str], bool]:
        """The one "not versioned" test for a tracked path's files (``kind``: its default
        folder): cpv's own, defaults, .cpvignore, and the running command's ``--exclude`` /
        ``--include``."""
        if not isinstance(kind, Track):
            return self._rules().for_folder(TRACKED[kind])
        rules = self._rules().for_folder(kind.folder)
        if kind.is_dir:
            return rules
        name = posixpath.basename(kind.path)  # a single file: nothing else of its folder
        return lambda rel: rel != name or rules(rel)

    def _place(self, track: Track) -> Path:
        """Where ``track``'s version is written and compared in the workspace: its folder, or
        a single file's parent (whose other files are not the track's)."""
        return self.root / track.folder

    @staticmethod
    def _at(track: Track, folder: Path) -> Path:
        """``track`` when its version is written to ``folder``: the folder, or a single file's
        own path in it. Baselines are kept under it (two tracked files may share a folder)."""
        return folder if track.is_dir else folder / posixpath.basename(track.path)

    def _rules(self) -> IgnoreRules:
        if self._ignore is None:
            self._ignore = IgnoreRules(self.ws.root, self._filter)
        return self._ignore

    @contextlib.contextmanager
    def _filtered(self, exclude: Sequence[str], include: Sequence[str]) -> Iterator[None]:
        """Apply one command's ``--exclude`` / ``--include`` to every rule it consults."""
        if not exclude and not include:
            yield
            return
        saved = self._filter, self._ignore
        self._filter, self._ignore = PathFilter(exclude, include), None
        try:
            yield
        finally:
            self._filter, self._ignore = saved

    @classmethod
    def open(
        cls,
        start: str | Path | None = None,
        *,
        config: CPVConfig | None = None,
        progress: Progress = NULL_PROGRESS,
        search_parents: bool = True,
        interface: str = "cli",
    ) -> WorkspaceService:
        """Open the workspace at (or, with ``search_parents``, above) ``start``.

        ``interface`` (``cli`` or ``python``) picks how hints name options: ``--force`` or
        ``force=True``.

        Raises:
            NotAWorkspaceError: no workspace there.
        """
        root = find_workspace(start) if search_parents else Path(start or ".").absolute()
        ws = Workspace.open(root, config=config, progress=progress)
        return cls(ws, interface=interface)

    def close(self) -> None:
        self.ws.close()

    def __enter__(self) -> WorkspaceService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> Path:
        return self.ws.root

    @property
    def config(self) -> CPVConfig:
        return self.ws.config

    def _opt(self, cli: str, python: str) -> str:
        return cli if self._interface == "cli" else python

    # -- names of versions -------------------------------------------------------------------

    def have_ref(self, tag: str) -> bool:
        """True if ``tag`` exists here, fetching from the remote first when it does not."""
        if tag in self.ws.git.tag_targets():
            return True
        if self.ws.remote:
            with contextlib.suppress(GitRemoteError):
                self.ws.history.fetch(self.ws.remote)
            return tag in self.ws.git.tag_targets()
        return False

    def kind_ref(self, ref: str, kind: Kind) -> str:
        """``v0.1`` means ``data-v0.1`` for the data (when that tag exists); ``0.1`` means v0.1.

        The one rule by which a version name is read for one kind, in the CLI and the API.
        An alias (``production``) means the tag it points to.
        """
        ref = self.dealias(ref)
        if _VERSION_ONLY.match(ref):
            ref = f"v{ref}"
        parsed = try_parse_tag(ref)
        if parsed is not None and parsed[0] == "model" and kind == "data":
            data_tag = f"data-{ref}"
            if self.have_ref(data_tag) or not self.have_ref(ref):
                return data_tag
        return ref

    def dealias(self, rev: str) -> str:
        """The version tag an alias points to; any other name unchanged. Every name a user
        gives passes here first (:meth:`resolve`, :meth:`kind_ref`), so ``cpv pull production``,
        ``cpv ls production`` and ``cpv://production/...`` mean the same version."""
        if _VERSION_ONLY.match(rev) or parse_line_tag(rev) is not None:
            return rev
        alias = AliasBook(self.ws.git).get(rev)
        return alias.target if alias is not None and alias.target is not None else rev

    def resolve(
        self, rev: str | None, kinds: Sequence[Kind] | None = None, *,
        data_at_commit: bool = False,
    ) -> dict[Kind, str | None]:
        """Which ref to use for each kind when the user names ``rev``.

        ``None`` -> the current manifest (``None``) of every kind that has one; ``v0.3`` (or
        ``0.3``) -> ``v0.3`` for the model and ``data-v0.3`` for the data when that tag exists
        (else, with ``data_at_commit``, the data manifest recorded at the ``v0.3`` commit);
        ``data-v0.3`` -> the data only; a branch or commit -> every kind with a manifest there.

        Raises:
            TagNotFoundError, VersioningError (nothing of the wanted kinds at ``rev``).
        """
        history = self.ws.history
        wanted: tuple[Kind, ...] = tuple(kinds) if kinds else KINDS
        if rev is not None:
            rev = self.dealias(rev)
        if rev is None:
            out: dict[Kind, str | None] = {
                k: None for k in wanted if history.current_manifest(k, TRACKED[k]) is not None}
            if not out:
                raise VersioningError(
                    f"no {' or '.join(wanted)} version recorded in this workspace yet",
                    hint=self._opt("push one first: cpv push",
                                   "upload one first (upload_model_checkpoint)"))
            return out
        if _VERSION_ONLY.match(rev):
            rev = f"v{rev}"
        parsed = try_parse_tag(rev)
        if parsed is None:
            self.ws.git.resolve(rev)  # TagNotFoundError when it names nothing
            out = {k: rev for k in wanted if TRACKED[k] in history.read_manifests(rev, k)}
            if not out:
                raise VersioningError(f"{rev} records no {' or '.join(wanted)} version",
                                      hint="list versions with 'cpv versions'")
            return out
        kind, version = parsed
        if kind == "data":
            if "data" not in wanted:
                raise VersioningError(
                    f"{rev} is a data version; it has no model files",
                    hint=f"use the model version v{version.major}.{version.minor}")
            if not self.have_ref(rev):
                raise TagNotFoundError(rev, hint="list data versions with 'cpv versions --data'")
            return {"data": rev}
        out = {}
        if not self.have_ref(rev):
            raise TagNotFoundError(rev)
        if "model" in wanted:
            out["model"] = rev
        data_tag = f"data-{rev}"
        if "data" in wanted and data_tag in self.ws.git.tag_targets():
            out["data"] = data_tag
        elif "data" in wanted and data_at_commit and history.read_manifests(rev, "data"):
            out["data"] = rev  # no data tag of that number: the data recorded at that commit
        if not out:
            raise VersioningError(f"{rev} has no data version ({data_tag} does not exist)",
                                  hint="list data versions with 'cpv versions --data'")
        return out

    def manifest_at(self, kind: Kind, ref: str | None) -> tuple[Manifest, str]:
        """The ``kind`` manifest at ``ref`` (None: the current one) and the ref's label."""
        history = self.ws.history
        name = TRACKED[kind]
        if ref is None:
            manifest = history.current_manifest(kind, name)
            if manifest is None:
                raise VersioningError(
                    f"no {kind} version recorded yet",
                    hint=self._opt("push one first: cpv push",
                                   f"upload one first (upload_{kind}_checkpoint)"))
            return manifest, "HEAD"
        ref = self.kind_ref(ref, kind)
        if try_parse_tag(ref) is not None and not self.have_ref(ref):
            raise TagNotFoundError(ref)
        return history.read_manifest(ref, kind, name), ref

    def versions(self, kind: Kind) -> list[VersionInfo]:
        """Versions of ``kind``, oldest first, with dates, authors, messages and metrics."""
        return self.ws.history.list_versions(kind, line=kind)

    def line_versions(self, track: Track) -> list[VersionInfo]:
        """Versions of one tracked path (``name@v0.1`` ...; ``v0.1`` for ``model``)."""
        return self.ws.history.list_versions(track.kind, line=track.name)

    def picked_versions(
        self, kind: Kind, revs: Sequence[str] = (), *, track: Track | None = None,
    ) -> list[VersionInfo]:
        """The versions ``revs`` name on one line (``cpv metrics``), in the order given; every
        version of the line when ``revs`` is empty. The line is ``track``'s, else that of the
        first ``name@v0.3`` among ``revs``, else ``kind``'s folder. A bare ``v0.3`` (or
        ``0.3``) is the line's own v0.3; an alias is its target.

        Raises:
            UnknownVersionError: a rev that is no version of that line (a question about a
                version that does not exist: exit 2, as ``cpv lineage``).
        """
        if track is None:
            try:
                track = next((t for r in revs if (t := self._named_ref(r)) is not None),
                             DEFAULT_TRACKS[kind])
            except TagNotFoundError as exc:
                raise UnknownVersionError(exc.tag, hint=exc.hint) from exc
        infos = self.line_versions(track)
        if not revs:
            return infos
        by_tag = {v.tag: v for v in infos}
        picked = []
        for rev in revs:
            target = self.dealias(rev)
            parsed = parse_line_tag(f"v{target}" if _VERSION_ONLY.match(target) else target)
            if parsed is not None and parsed[0] == "model" and "@" not in target:
                target = track.tag(parsed[1])  # bare: this line's number
            if target not in by_tag:
                where = (f" --path {track.path}" if not track.is_default
                         else " --data" if track.kind == "data" else "")
                raise UnknownVersionError(rev, hint=f"{rev} is no version of {track.path}; list "
                                       f"them with 'cpv versions{where}'")
            picked.append(by_tag[target])
        return picked

    def compare(
        self, kind: Kind, ref_a: str, ref_b: str, *, track: Track | None = None
    ) -> list[MetricDelta]:
        """Per-metric values of two versions (of ``track``, default ``kind``'s folder) and
        their difference."""
        a, _ = self._line_manifest(track or DEFAULT_TRACKS[kind], ref_a)
        b, _ = self._line_manifest(track or DEFAULT_TRACKS[kind], ref_b)
        return compare(a.metrics, b.metrics)

    def kinds_with_files(self) -> list[Kind]:
        """Tracked kinds whose folder holds at least one file (what ``cpv push`` pushes).

        Raises:
            LocalIOError: neither ``model/`` nor ``data/`` holds a file.
        """
        found = [k for k in KINDS if has_files(self.ws.tracked_dir(k), self.exclude(k))]
        if not found:
            raise LocalIOError(
                f"nothing to push: {self.root / 'model'} and {self.root / 'data'} hold no files",
                path=str(self.root),
                hint="save checkpoint files under model/ (and data splits under data/train, ...)")
        return found

    # -- tracked paths -----------------------------------------------------------------------

    def tracked_paths(self) -> list[Track]:
        """The seed layout's ``model``/``data`` folders, then every other path a manifest here
        tracks (each with its own version line), by path."""
        if self._tracks is None:
            # Read once per command (a 100,000-file manifest takes a while to check); a push
            # or checkout that changes the manifests forgets it.
            named = {m.path: Track.of(m) for m in self.ws.history.current_manifests()}
            self._tracks = [*DEFAULT_TRACKS.values(),
                            *(named[p] for p in sorted(named) if not named[p].is_default)]
        return list(self._tracks)

    def track_for(
        self, path: str | os.PathLike[str], kind: Kind | None = None, *, name: str | None = None,
    ) -> Track:
        """The tracked path a push of ``path`` (workspace-relative, or absolute) means: one
        tracked already, or a new one on a version line of its own (``kind``, default model),
        named ``name`` (default: the path's slug). A path may be a folder or a single file.

        Checked before any byte moves, so a refusal changes nothing.

        Raises:
            TrackedPathError: outside the workspace, inside ``.git``/``.cpv``, neither a folder
                nor a regular file, nested in (or holding) another tracked path, its line name
                taken or malformed, or tracked already as the other kind or under another name.
        """
        raw = os.fspath(path)
        full = Path(os.path.normpath(self.root / raw))
        try:
            rel = full.relative_to(self.root).as_posix()
        except ValueError:
            raise TrackedPathError(
                f"{raw} is outside the workspace {self.root}",
                hint="move or copy it into the workspace, or run cpv in the workspace that "
                     "holds it (-C DIR)") from None
        if rel == ".":
            raise TrackedPathError(
                "the workspace root itself cannot be one tracked path",
                hint="push the folders inside it: cpv push model data outputs/run-1")
        if rel.split("/", 1)[0].lower() in INTERNAL_DIRS:
            raise TrackedPathError(f"{rel} is inside {rel.split('/', 1)[0]}, which Git and cpv "
                                   "own", hint="push a folder of your own files")
        try:
            check_tracked_path(rel)
        except UnsafePathError as exc:
            raise TrackedPathError(f"cannot track {rel!r}: {exc.one_line()}",
                                   hint="rename it to a plain relative path") from exc
        for default_kind, default in DEFAULT_TRACKS.items():
            if rel == default.path:
                if kind not in (None, default_kind):
                    raise TrackedPathError(
                        f"{rel}/ is the workspace's {default_kind} folder; it cannot hold {kind}",
                        hint=f"put the {kind} files in another folder, e.g. {kind}-extra/")
                if name not in (None, default.name):
                    raise TrackedPathError(
                        f"{rel}/ keeps its seed line {default.name!r} (tags "
                        f"{default.tag(Version(0, 1))}, ...); it cannot be renamed",
                        hint=f"push it without {self._opt('--name', 'name=')}")
                return default
        existing = self.tracked_paths()
        for track in existing:
            if track.path == rel:
                if kind not in (None, track.kind):
                    raise TrackedPathError(
                        f"{rel} is tracked as {track.kind}, not {kind}",
                        hint=f"push it without --kind, or as --kind {track.kind}")
                if name not in (None, track.name):
                    raise TrackedPathError(
                        f"{rel} is tracked already, on the line {track.name!r}; a line keeps "
                        "the name its first push gave it",
                        hint=f"push it without {self._opt('--name', 'name=')}, or with "
                             f"{self._opt('--name', 'name=')} {track.name}")
                return track
        for track in existing:
            if rel.startswith(track.path + "/"):
                raise TrackedPathError(
                    f"{rel} is inside {track.path}, which is tracked: tracked paths cannot nest",
                    hint=f"push {track.path} (it holds {rel})")
            if track.path.startswith(rel + "/"):
                raise TrackedPathError(
                    f"{rel} holds {track.path}, which is tracked: tracked paths cannot nest",
                    hint=f"push {track.path} itself, or folders beside it")
        if not full.exists():
            raise TrackedPathError(
                f"{rel} does not exist", hint="save the files there first, or check the path "
                "(relative to the current folder, or to the workspace)")
        if full.is_symlink() or not (full.is_dir() or full.is_file()):
            raise TrackedPathError(
                f"{rel} is {'a symlink' if full.is_symlink() else 'neither a folder nor a file'}"
                "; cpv tracks folders and regular files",
                hint="push the folder or file it points to")
        if name is not None and (problem := line_name_problem(name)) is not None:
            raise TrackedPathError(f"cannot name the line of {rel} {name!r}: {problem}",
                                   hint=f"e.g. {self._opt('--name', 'name=')} "
                                        f"{manifest_name(rel)[:40]}")
        new = Track(kind or "model", rel, full.is_dir(), name)
        for track in existing:
            if track.name == new.name:
                raise TrackedPathError(
                    f"{rel} and {track.path} would share the version line {new.name!r} "
                    f"(tags {new.name}@v0.1, ...)",
                    hint=self._opt(f"give this path a line of its own: cpv push {rel} "
                                   "--name NAME", "pass name='...' for this path"))
        return new

    def _named_ref(self, rev: str | None) -> Track | None:
        """The tracked path whose version ``rev`` is, for a ``name@v0.1`` tag; else None.

        Raises:
            TagNotFoundError: no such tag (after fetching from the remote).
        """
        rev = self.dealias(rev) if rev is not None else None
        parsed = parse_line_tag(rev) if rev is not None else None
        if rev is None or parsed is None or parsed[0] in KINDS:
            return None
        if not self.have_ref(rev):
            raise TagNotFoundError(rev, hint="list the versions of a path with "
                                   "'cpv versions --path PATH'")
        for kind in KINDS:
            found = self.ws.history.read_manifests(rev, kind).get(parsed[0])
            if found is not None:
                return Track.of(found)
        raise VersioningError(f"{rev} records no manifest {parsed[0]!r}",
                              hint="the tag was not made by cpv; list versions with cpv versions")

    def _is_commit_ref(self, rev: str) -> bool:
        """True when ``rev`` (after its alias) names a branch or commit, not a version."""
        rev = self.dealias(rev)
        return not _VERSION_ONLY.match(rev) and parse_line_tag(rev) is None

    def _line_manifest(self, track: Track, ref: str | None) -> tuple[Manifest, str]:
        """``track``'s manifest at ``ref`` (None: the current one) and the ref's label."""
        if track.is_default:
            return self.manifest_at(track.kind, ref)
        if ref is None:
            manifest = self.ws.history.current_manifest(track.kind, track.name)
            if manifest is None:
                raise VersioningError(f"no version of {track.path} recorded yet",
                                      hint=self._opt(f"push one first: cpv push {track.path}",
                                                     "upload one first"))
            return manifest, "HEAD"
        ref = self.dealias(ref)
        if _VERSION_ONLY.match(ref.removeprefix("v")):
            ref = track.tag(Version.parse(ref))  # v0.2 of this path's own line
        if parse_line_tag(ref) is not None and not self.have_ref(ref):
            raise TagNotFoundError(ref)
        return self.ws.history.read_manifest(ref, track.kind, track.name), ref

    def version_manifests(self, rev: str) -> list[tuple[Track, Manifest]]:
        """Each tracked path's manifest of the version ``rev`` names, read as ``cpv ls REV``
        reads it (``name@v0.3``: that path; ``v0.3``: model/, and data/ when ``data-v0.3``
        exists; an alias: its version; a branch or commit: every path recorded there)."""
        return [(track, self._line_manifest(track, ref)[0])
                for track, ref in self._targets(rev, Selection([]))]

    def _targets(
        self, rev: str | None, selection: Selection, *, data_at_commit: bool = False,
    ) -> list[tuple[Track, str | None]]:
        """Which tracked paths ``rev`` and the selection mean, each with its ref: a
        ``name@v0.1`` tag means that path; ``None`` the current version of every tracked path
        (or those selected); anything else reads as :meth:`resolve` says."""
        named = self._named_ref(rev)
        if named is not None:
            if selection.tracks is not None and named not in selection.tracks:
                raise ConfigError(f"{rev} is a version of {named.path}; the paths given are not "
                                  "under it", hint=f"e.g. cpv pull {rev} {named.path}")
            return [(named, self.dealias(rev) if rev is not None else None)]
        at_commit = rev is not None and self._is_commit_ref(rev)
        if rev is None:
            others = [t for t in self.tracked_paths() if not t.is_default]
        elif at_commit:
            # A branch or commit holds a version of every path it records, as for model/.
            others = [Track.of(m) for k in KINDS
                      for m in self.ws.history.read_manifests(rev, k).values()]
            others = [t for t in others if not t.is_default]
        else:
            others = []
        if selection.tracks is not None:
            chosen = {t.path for t in selection.tracks}
            others = [t for t in others if t.path in chosen]
        out: list[tuple[Track, str | None]] = []
        if selection.kinds is None or selection.kinds:
            try:
                resolved = self.resolve(rev, selection.kinds, data_at_commit=data_at_commit)
            except VersioningError:
                if not (rev is None or at_commit) or not others:
                    raise
                resolved = {}
            out = [(DEFAULT_TRACKS[k], ref) for k, ref in resolved.items()]
        if rev is None or at_commit:
            out += [(t, rev) for t in others]
        if not out:
            raise VersioningError(
                f"{rev} is not a version of {', '.join(t.path for t in others) or 'those paths'}",
                hint="each tracked path has its own versions (name@v0.1); list them with "
                     "'cpv versions --path PATH'")
        return out

    # -- what this machine has ---------------------------------------------------------------

    def _baseline(self, track: Track, folder: Path) -> Baseline:
        """What this machine last wrote to ``folder``. A workspace folder that holds files but
        no record (made before baselines existed) takes its current manifest once; an empty
        one (a fresh clone) holds nothing yet."""
        found = self._baselines.load(self._at(track, folder))
        if found is not None:
            return found
        if folder == self._place(track) and has_files(folder, self.exclude(track)):
            current = self.ws.history.current_manifest(track.kind, track.name)
            if current is not None:
                return Baseline(current.snapshot_id, table_of(self.files_of(current, "HEAD")))
        return Baseline(None, {})

    def _changes(
        self, track: Track, folder: Path
    ) -> tuple[LocalChanges, Baseline, StatCache | None]:
        baseline = self._baseline(track, folder)
        cache = self.ws.stat_digests()
        return local_changes(folder, baseline, cache, self.exclude(track)), baseline, cache

    def _learn(self, track: Track, folder: Path, baseline: Baseline,
               changes: LocalChanges) -> None:
        """Record the fingerprints of folders a no-op push just found equal to the baseline
        file by file (after a pull, or a push whose files were too fresh to vouch for), so
        the next status or no-op push judges them by one comparison each. Best effort: only
        a cache. (``status`` writes nothing: it may run where nothing may be written.)"""
        if not changes.learned or not track.is_dir or baseline.snapshot_id is None:
            return
        if self._baselines.load(self._at(track, folder)) is not baseline:
            return  # not this machine's record (a fallback), or replaced meanwhile
        try:
            self._baselines.save(self._at(track, folder), baseline.learned(changes.learned))
        except LocalIOError as exc:
            log.debug("not recording folder fingerprints: %s", exc)

    def local_changes(self, kind: Kind) -> list[str]:
        """Files of ``kind``'s folder edited, added or deleted here since the last push/pull."""
        changes, _, _ = self._changes(DEFAULT_TRACKS[kind], self.ws.tracked_dir(kind))
        return [f"{TRACKED[kind]}/{p}" for p in changes.all()]

    # -- push --------------------------------------------------------------------------------

    def upload(
        self,
        kind: Kind,
        *,
        path: str | Path | None = None,
        metrics: Mapping[str, float] | str | Path | None = None,
        message: str = "",
        dry_run: bool = False,
        force: bool = False,
        extra: Mapping[str, Any] | None = None,
        publish: bool = True,
        symlinks: SymlinkPolicy = "keep",
        params: Mapping[str, str] | None = None,
        exclude: Sequence[str] = (),
        include: Sequence[str] = (),
        track: Track | None = None,
    ) -> UploadResult:
        """Push ``kind``'s folder (or ``path``) and record it as the current version.

        ``track`` (see :meth:`track_for`) pushes another tracked path of the workspace onto
        its own version line instead of ``kind``'s default folder. A model version records its
        lineage (the data in the workspace now) and ``params``. ``exclude`` / ``include`` leave
        files out of this version (see :class:`PathFilter`); files of the current version they
        leave out are listed in ``left_out``.

        Raises:
            LocalIOError (nothing to push), ConfigError (``.cpvignore`` hides files of the
            current version), plus what the engine and versioning raise.
        """
        with self._filtered(exclude, include):
            return self._upload(kind, path=path, metrics=metrics, message=message,
                                dry_run=dry_run, force=force, extra=extra, publish=publish,
                                symlinks=symlinks, params=params, track=track)

    def _upload(
        self,
        kind: Kind,
        *,
        path: str | Path | None,
        metrics: Mapping[str, float] | str | Path | None,
        message: str,
        dry_run: bool,
        force: bool,
        extra: Mapping[str, Any] | None,
        publish: bool,
        symlinks: SymlinkPolicy,
        params: Mapping[str, str] | None,
        track: Track | None,
    ) -> UploadResult:
        ws = self.ws
        track = track or DEFAULT_TRACKS[kind]
        kind = track.kind
        folder = self._place(track)
        source = Path(path).absolute() if path is not None else folder
        if not source.exists():
            raise LocalIOError(
                f"nothing to upload: {source} does not exist", path=str(source),
                hint=f"put the {kind} files in {folder} or pass a path")
        current = ws.history.current_manifest(kind, track.name)
        params = dict(params or {})
        resolved = resolve_metrics(metrics) if metrics is not None else {}
        if not (dry_run or force or extra) and source == folder and current is not None:
            # Before _left_out: a no-op found every baseline file present and not excluded,
            # so no rule hides a file of the current version, and the per-file check is spared.
            unchanged = self._unchanged_upload(track, current, resolved, message, params,
                                               publish=publish)
            if unchanged is not None:
                return unchanged
        left_out = self._left_out(track, source, current) if source == folder else []
        if not track.is_dir and source == folder and not has_files(source, self.exclude(track)):
            gone = not (self.root / track.path).is_file()
            raise LocalIOError(
                f"nothing to upload: {track.path} "
                + ("is not a file here" if gone else "is left out by .cpvignore or --exclude"),
                path=str(self.root / track.path),
                hint="save the file there first" if gone else
                f"remove the rule that hides it, or add '!{track.path}' to {IGNORE_FILE}")
        if not has_files(source, self.exclude(track)):
            raise LocalIOError(
                f"nothing to upload: {source} holds no files", path=str(source),
                hint=f"save the {kind} files there first; an empty folder records no version")
        lineage = self.lineage_now() if kind == "model" else None
        repo = ws.repository(create=not dry_run)
        # The store records the version itself (a root), so what is live never depends on one
        # clone's Git history (docs/gc.md).
        from cpv.engine.roots import RootInfo
        root = RootInfo(kind=kind, name=track.path, message=message,
                        author=ws.history.default_author(), metrics=resolved,
                        workspace=ws.workspace_id or "",
                        parents=(current.snapshot_id,) if current is not None else ())
        from cpv.engine.push import push

        # What this machine last wrote there says how big the tree is: a big one is scanned
        # and encoded by several processes (the stat cache must know it for that to pay).
        # When it is the current version, the push notes how each folder it encodes differs
        # from it, so the new baseline and the manifest's counts need no look at the version.
        known = self._baselines.load(self._at(track, folder)) if source == folder else None
        noted = (known if track.is_dir and not dry_run and self._of_current(known, current)
                 else None)
        try:
            result: PushResult = push(
                repo, source, exclude=self.exclude(track), progress=ws.progress,
                limits=ws.limits, dry_run=dry_run, rehash=force,
                meta={"workspace": ws.workspace_id} if ws.workspace_id else None,
                record_root=root, symlinks=symlinks,
                walkers=worktree.walkers_for(known.count) if known is not None else 1,
                note_folder=noted.note_folder if noted is not None else None)
        except (UnsupportedPathError, LocalIOError) as exc:
            exc.hint = self._push_hint(exc.hint, track)
            raise
        outcome = partial(
            UploadResult, kind=kind, path=track.path, is_dir=track.is_dir,
            snapshot_id=result.snapshot_id,
            files=result.files,
            skipped_links=result.skipped_links,
            total_bytes=result.total_bytes, new_bytes=result.new_bytes,
            chunks_new=result.chunks_new, chunks_reused=result.chunks_reused,
            seconds=result.seconds, left_out=tuple(left_out))
        if dry_run:
            return outcome(commit=None, uploaded_bytes=0, dry_run=True, changed=True,
                           next_tag=ws.history.next_tag(kind) if track.is_default
                           else self.planned_line_tag(track, None))
        summary = self._summary(track, current, result, record=source == folder, noted=noted)
        if (current is not None and current.snapshot_id == result.snapshot_id
                and (not resolved or dict(current.metrics) == resolved)
                and (not message or current.message == message)
                and (not params or dict(current.params) == params)
                and not ws.history.status().changes):
            # Same bytes, nothing new to say: no new version, no empty commit; but publish
            # what an interrupted earlier command may have left behind.
            pushed_to = self.publish() if publish else None
            return outcome(commit=None, uploaded_bytes=result.uploaded_bytes, dry_run=False,
                           changed=False, pushed_to=pushed_to)
        manifest = pointer_manifest(
            kind=kind, path=track.path, snapshot_id=result.snapshot_id,
            store_url=ws.store_url, file_count=summary.file_count,
            total_size=summary.total_size, changes=summary.changes,
            is_dir=track.is_dir if source == folder else source.is_dir(), message=message,
            author=ws.history.default_author(), metrics=resolved,
            extra={**{f"samples.{k}": v for k, v in summary.splits.items()}, **(extra or {})},
            lineage=lineage, params=params, line=track.line,
        )
        # Invariant 1: the snapshot is durable in the store; only now does Git reference it.
        record = ws.history.record_version(manifest, message=message or None)
        self._tracks = None
        pushed_to = self.publish() if publish else None
        return outcome(commit=record.commit, uploaded_bytes=result.uploaded_bytes,
                       dry_run=False, changed=record.changed, pushed_to=pushed_to)

    def _of_current(self, base: Baseline | None, current: Manifest | None) -> bool:
        """Whether ``base`` is this machine's baseline of the ``current`` version, a tree in this
        store: then what a push changes can be told against it (its notes, or a tree diff)
        instead of from the pushed version's whole list."""
        return (base is not None and current is not None and current.files is None
                and base.snapshot_id == current.snapshot_id
                and current.store_url == self.ws.store_url)

    def _summary(self, track: Track, current: Manifest | None, result: PushResult, *,
                 record: bool, noted: Baseline | None = None) -> _Summary:
        """What the new version's pointer manifest says (file count, size, changes, data
        splits), and the folder's new baseline recorded when ``record``.

        Taken from the push's notes of the folders it encoded when ``noted``, this machine's
        baseline of the current version, made them (:meth:`Baseline.note_folder`); else from
        what differs since the current version (a tree diff: equal sub-trees are not read)
        when the baseline is that version; else from the pushed version's whole list.
        """
        folder = self._place(track)
        fingerprints = dict(result.folder_fingerprints) if track.is_dir else {}
        rules = self._rules().digest if track.is_dir else None
        if noted is not None and current is not None and result.folder_notes is not None:
            after = noted.after_push(result.snapshot_id, result.folder_notes,
                                     result.reused_folders, fingerprints, rules)
            summary = (_Summary.of_changes(current, after[1], result.total_bytes)
                       if after is not None else None)
            if after is not None and summary is not None:
                if record:
                    self._baselines.save(self._at(track, folder), after[0])
                return summary
        base = self._baselines.load(self._at(track, folder)) if record else None
        streamed = None
        if (current is not None and current.files is None and result.tree_nodes
                and current.store_url == self.ws.store_url
                and (not record or self._of_current(base, current))):
            try:
                streamed = _Summary.since(current, self.ws.repository().diff(
                    current.snapshot_id, result.snapshot_id), result.total_bytes)
            except CPVError as exc:  # (the current version gone from the store: a full read)
                log.info("reading the pushed list: no diff since %s: %s",
                         current.snapshot_id[:12], exc)
        if streamed is not None:
            summary, changed = streamed
            if record:
                assert base is not None
                self._baselines.save(self._at(track, folder), base.updated(
                    result.snapshot_id, changed, fingerprints, rules))
            return summary
        listing = self.remember_listing(result.snapshot_id, result.snapshot)
        if record:
            self._baselines.save(self._at(track, folder), Baseline(
                result.snapshot_id, table_of(listing), fingerprints=fingerprints, rules=rules))
        files = regular(listing)
        return _Summary(len(files), sum(f.size for f in files),
                        self.changes_since(current, listing),
                        _split_counts([f.path for f in files]) if track.kind == "data" else {})

    def _left_out(self, track: Track, folder: Path, current: Manifest | None) -> list[str]:
        """Files of the current version that this push's rules leave out: refused when
        ``.cpvignore`` (or a default) hides them, which would drop them from the new version
        unnoticed; returned when the command's ``--exclude`` / ``--include`` does, on purpose.
        """
        if current is None:
            return []
        baseline = self._baselines.load(self._at(track, folder))
        if (baseline is not None and baseline.snapshot_id == current.snapshot_id
                and baseline.rules is not None and baseline.rules == self._rules().digest):
            return []  # pushed under these very rules: none of its files is left out
        by_file, by_option = self._rules().hidden_tracked(
            folder, track.folder, self._version_paths(current, baseline))
        if by_file and not track.is_dir:
            raise ConfigError(
                f"{IGNORE_FILE} (or a default rule) hides the tracked file {track.path}; a push "
                "would record nothing",
                hint=f"add a line '!{track.path}' to {IGNORE_FILE}, or change the rule that "
                     "matches it")
        if by_file:
            raise ConfigError(
                f"{IGNORE_FILE} (or a default rule) hides {len(by_file)} file(s) of the current "
                f"{track.path} version that are still here ({_listed(by_file)}); this push would "
                "drop them from the new version",
                hint=self._opt(
                    f"keep them with a line '!{by_file[0]}' in {IGNORE_FILE}, or leave them out "
                    f"on purpose with --exclude '{by_file[0]}'",
                    f"keep them with a line '!{by_file[0]}' in {IGNORE_FILE}, or pass "
                    f"exclude=['{by_file[0]}'] to leave them out on purpose"))
        return by_option

    def _version_paths(self, manifest: Manifest, baseline: Baseline | None,
                       folders: Iterable[str] | None = None) -> Iterable[str]:
        """The paths of ``manifest``'s version, streamed: from this machine's baseline when it
        holds that version (no store, no cache; only ``folders``' when given), else from its
        file list."""
        if baseline is not None and baseline.snapshot_id == manifest.snapshot_id:
            return baseline.paths(folders)
        return (f.path for f in self._stream(self._lists.iter_files(manifest, "HEAD"),
                                             manifest, "HEAD"))

    def lineage_now(self) -> Lineage | None:
        """The data in this workspace now, as a model version records it: what this machine
        last pushed or pulled in the data folder (else the current data manifest), and its
        data tag if it has one."""
        current = self.ws.history.current_manifest("data", TRACKED["data"])
        if current is None:
            return None
        here = self._baselines.load(self.ws.tracked_dir("data"))
        sid = here.snapshot_id if here is not None and here.snapshot_id else current.snapshot_id
        tags = self._data_tags(sid)
        return Lineage(data_path=current.path, data_snapshot_id=sid,
                       data_tag=tags[-1] if tags else None)

    def _data_tags(self, snapshot_id: str) -> list[str]:
        """Data tags whose version holds ``snapshot_id``, oldest first."""
        return [info.tag for info in self.versions("data")
                if any(m.snapshot_id == snapshot_id for m in info.manifests)]

    def _unchanged_upload(
        self, track: Track, current: Manifest, metrics: Mapping[str, float], message: str,
        params: Mapping[str, str], *, publish: bool,
    ) -> UploadResult | None:
        """The no-op push, decided without the store (no request, no boto3 import), or None.

        Only when nothing could differ: the folder's baseline (what this machine last pushed
        or pulled there) is the current manifest's snapshot, in this workspace's store; the
        stat cache vouches for every file (:func:`unchanged_since`: any new, missing, touched,
        replaced or racy file sends the push down the full path); no new message or metrics;
        no manifest edit waiting to be committed. No root record is written: the version's
        record from the push that made it stands (docs/gc.md).
        """
        started = time.monotonic()
        ws = self.ws
        folder = self._place(track)
        if (current.store_url != ws.store_url
                or (metrics and dict(current.metrics) != dict(metrics))
                or (message and current.message != message)
                or (params and dict(current.params) != dict(params))):
            return None
        baseline = self._baselines.load(self._at(track, folder))
        if baseline is None or not baseline or baseline.snapshot_id != current.snapshot_id:
            return None  # (no files: the full path says "nothing to upload")
        same = unchanged_since(folder, baseline, ws.stat_digests(), self.exclude(track))
        if same is None:
            return None
        if ws.history.status().changes:
            return None
        self._learn(track, folder, baseline, same)
        return UploadResult(
            kind=track.kind, path=track.path, is_dir=track.is_dir,
            snapshot_id=current.snapshot_id, commit=None,
            files=baseline.count, total_bytes=baseline.total_size,
            uploaded_bytes=0, new_bytes=0, chunks_new=0, chunks_reused=0,
            seconds=time.monotonic() - started, dry_run=False, changed=False,
            pushed_to=self.publish() if publish else None)

    def remember_listing(self, snapshot_id: str, snapshot: Snapshot) -> tuple[ListedFile, ...]:
        """Keep a snapshot this machine just wrote in the local file-list cache, so ls, diff
        and status of its version need no store round trip; returns its listing."""
        return self._lists.remember(snapshot_id, snapshot)

    def changes_since(
        self, previous: Manifest | None, listing: Sequence[ListedFile]
    ) -> ChangeCounts | None:
        """Files added/changed/removed since ``previous``; None when its list is out of reach
        (a push never fails for want of a count)."""
        if previous is None:
            return count_changes(None, listing)
        try:
            return count_changes(self._lists.files(previous, "HEAD"), listing)
        except CPVError as exc:
            log.info("not counting changes since %s: %s", previous.snapshot_id[:12], exc)
            return None

    def push(
        self,
        kinds: Sequence[Kind] | None = None,
        *,
        message: str = "",
        metrics: Mapping[str, float] | None = None,
        tag: bool = False,
        version: str | None = None,
        force: bool = False,
        dry_run: bool = False,
        notify: bool = False,
        symlinks: SymlinkPolicy = "keep",
        params: Mapping[str, str] | None = None,
        exclude: Sequence[str] = (),
        include: Sequence[str] = (),
        tracks: Sequence[Track] = (),
    ) -> PushOutcome:
        """``cpv push``: upload each kind (default: those holding files), then tag and publish.

        ``tracks`` (from :meth:`track_for`) are pushed too, each tagged on its own version
        line. Metrics and ``params`` go to the model folder's version, else to the first path
        pushed. A taken or malformed tag fails before any byte is uploaded. Data goes first, so
        a model version's lineage names the data pushed with it; ``exclude`` / ``include``
        leave files out of the versions.
        """
        with self._filtered(exclude, include):
            return self._push(kinds, message=message, metrics=metrics, tag=tag,
                              version=version, force=force, dry_run=dry_run, notify=notify,
                              symlinks=symlinks, params=params, tracks=tracks)

    def _push(
        self,
        kinds: Sequence[Kind] | None,
        *,
        message: str,
        metrics: Mapping[str, float] | None,
        tag: bool,
        version: str | None,
        force: bool,
        dry_run: bool,
        notify: bool,
        symlinks: SymlinkPolicy,
        params: Mapping[str, str] | None,
        tracks: Sequence[Track],
    ) -> PushOutcome:
        named = [t for t in dict.fromkeys(tracks) if not t.is_default]
        given = [*(kinds or ()), *(t.kind for t in tracks if t.is_default)]
        if not given and not named:
            # Plain `cpv push`: model/ and data/, and every other tracked path changed here.
            named = [t for t in self.tracked_paths() if not t.is_default
                     and (self.root / t.path).exists()
                     and self._changes(t, self._place(t))[0].all()]
            try:
                given = self.kinds_with_files()
            except LocalIOError:
                if not named:
                    raise
        chosen = given
        ordered = [k for k in KINDS if k in chosen]
        plan = self.planned_tags(ordered, version, force=force) if tag and ordered else []
        plan += [self.planned_line_tag(t, version, force=force) for t in named] if tag else []
        pushed = [DEFAULT_TRACKS[k] for k in ordered] + named
        results = []
        for track in sorted(pushed, key=lambda t: t.kind != "data"):
            first = track == pushed[0]
            results.append(self._upload(
                track.kind, path=None, metrics=metrics if first else None, message=message,
                dry_run=dry_run, force=force, extra=None, publish=False, symlinks=symlinks,
                params=params if first else None, track=track))
            if not dry_run:
                self.notify(notify, {"event": "upload", "kind": track.kind,
                                     "path": track.path,
                                     "snapshot_id": results[-1].snapshot_id,
                                     "commit": results[-1].commit})
        order = [t.path for t in pushed]
        results.sort(key=lambda r: order.index(r.path))
        tags = plan if dry_run else []
        if tag and not dry_run:
            tags = self.tag(ordered, version, message=message or None, force=force,
                            notify=notify, publish=False) if ordered else []
            for track in named:
                tags += self.tag_line(track, version, message=message or None, force=force,
                                      notify=notify, publish=False)
        pushed_to = None if dry_run else self.publish(force_tags=tags if force else ())
        return PushOutcome(results=tuple(results), tags=tuple(tags), pushed_to=pushed_to)

    # -- tags --------------------------------------------------------------------------------

    def planned_tags(
        self, kinds: Sequence[Kind], version: str | None, *, force: bool = False
    ) -> list[str]:
        """The tags ``tag(kinds, version)`` would create (both kinds: one number).

        Raises:
            InvalidTagError, TagExistsError (unless ``force``).
        """
        ordered = tuple(k for k in KINDS if k in kinds)
        chosen = self.ws.history.choose_version(ordered, version, overwrite=force)
        return [tag_name(k, chosen) for k in ordered]

    def planned_line_tag(self, track: Track, version: str | None, *, force: bool = False) -> str:
        """The tag :meth:`tag_line` would create for ``track`` (``name@v0.3``).

        Raises:
            InvalidTagError, TagExistsError (unless ``force``).
        """
        chosen = self.ws.history.choose_version((track.kind,), version, overwrite=force,
                                                lines={track.kind: track.name})
        return track.tag(chosen)

    def tag_line(
        self,
        track: Track,
        version: str | None = None,
        *,
        message: str | None = None,
        metrics: Mapping[str, float] | str | Path | None = None,
        force: bool = False,
        dry_run: bool = False,
        notify: bool = False,
        publish: bool = True,
        params: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Tag the current version of one tracked path on its own line (``name@v0.3``; the
        seed folders keep ``v0.3`` / ``data-v0.3``).

        Raises:
            VersioningError (nothing to tag, already tagged), TagExistsError, InvalidTagError,
            GitRemoteError.
        """
        if track.is_default:
            return self.tag([track.kind], version, message=message, metrics=metrics,
                            force=force, dry_run=dry_run, notify=notify, publish=publish,
                            params=params)
        history = self.ws.history
        manifest = history.current_manifest(track.kind, track.name)
        if manifest is None:
            raise VersioningError(f"no version of {track.path} to tag yet",
                                  hint=self._opt(f"push one first: cpv push {track.path}",
                                                 "upload one first"))
        tagged = self._tag_of(track.kind, manifest, track)
        if version is None and not force and tagged is not None:
            raise VersioningError(
                f"the current version of {track.path} is already tagged {tagged}",
                hint=self._opt("push a new version first, or give a VERSION to add another "
                               "name", "upload a new version first, or pass a version"))
        planned = self.planned_line_tag(track, version, force=force)
        if dry_run:
            return [planned]
        def make() -> list[str]:
            return [history.create_tag(track.kind, version, message=message or "",
                                       metrics=metrics, params=params,
                                       overwrite=force, line=track.name,
                                       remote=self.ws.remote if publish else None).tag]

        from cpv.engine.roots import TagTarget
        return self._record_then_tag(
            [TagTarget(planned, manifest.snapshot_id, track.kind, track.path)], make,
            message=message, force=force, notify=notify, publish=publish,
            event={"event": "tag", "kind": track.kind, "path": track.path})

    def tag(
        self,
        kinds: Sequence[Kind] | None = None,
        version: str | None = None,
        *,
        message: str | None = None,
        metrics: Mapping[str, float] | str | Path | None = None,
        force: bool = False,
        dry_run: bool = False,
        notify: bool = False,
        publish: bool = True,
        params: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Tag the current version of ``kinds`` (default: every kind that has one).

        ``params`` (hyper-parameters) are recorded with ``metrics`` in the tagged manifests.

        Auto-numbered tags are refused for a version that already has one (nothing new to
        name); an explicit ``version`` adds a second name on purpose.

        Raises:
            VersioningError (nothing to tag, already tagged), TagExistsError, InvalidTagError,
            GitRemoteError.
        """
        history = self.ws.history
        ordered = [k for k in KINDS if k in (kinds or list(self.resolve(None)))]
        for kind in ordered:
            if history.current_manifest(kind, TRACKED[kind]) is None:
                raise VersioningError(
                    f"no {kind} version to tag yet",
                    hint=self._opt("push one first: cpv push",
                                   f"upload one first (upload_{kind}_checkpoint)"))
        if version is None and not force:
            self._refuse_if_tagged(ordered)
        planned = self.planned_tags(ordered, version, force=force)
        if dry_run:
            return planned
        from cpv.engine.roots import TagTarget
        remote = self.ws.remote if publish else None
        targets = []
        for kind, name in zip(ordered, planned, strict=True):
            manifest = history.current_manifest(kind, TRACKED[kind])
            assert manifest is not None  # checked above
            targets.append(TagTarget(name, manifest.snapshot_id, kind, TRACKED[kind]))

        def make() -> list[str]:
            if len(ordered) == 2:
                combined = history.create_combined_tag(
                    version, message=message or "", metrics=metrics, overwrite=force,
                    remote=remote, params=params, default_lines=True)
                return [combined.model.tag, combined.data.tag]
            return [history.create_tag(ordered[0], version, message=message or "",
                                       metrics=metrics, overwrite=force, remote=remote,
                                       params=params, line=ordered[0]).tag]

        return self._record_then_tag(targets, make, message=message, force=force,
                                     notify=notify, publish=publish,
                                     event={"event": "tag", "kind": "+".join(ordered)})

    def _record_then_tag(
        self, targets: list[TagTarget], make: Callable[[], list[str]], *,
        message: str | None, force: bool, notify: bool, publish: bool, event: dict[str, str],
    ) -> list[str]:
        """The store's tag record first (one record for a combined tag: all or nothing), then
        the Git tags ``make`` creates; if Git refuses, the store's record is retired again, so
        the store never names a tag that Git does not have. Then notify and publish (what an
        earlier command left unpublished goes along)."""
        from cpv.engine.roots import record_tags, record_untag
        repo = self.ws.repository()
        record_tags(repo, targets, message=message or "", move=force)
        try:
            tags = make()
        except BaseException:
            record_untag(repo, [t.tag for t in targets], reason="the Git tag was not made")
            raise
        self.notify(notify, {**event, "tag": tags[0]})
        if publish:
            self.publish()
        return tags

    def _push_hint(self, hint: str, track: Track) -> str:
        """The engine's ways out of a refused push, in the words of this interface: its
        exclude rule is a .cpvignore line here, its ``symlinks=`` a CLI option."""
        hint = hint.replace("an exclude rule", f"a line in {IGNORE_FILE} (e.g. {track.path}/"
                            "path/to/it/)")
        if self._interface == "cli":
            hint = re.sub(r"symlinks='(\w+)'", r"--symlinks \1", hint)
        return hint

    def _refuse_if_tagged(self, kinds: Sequence[Kind]) -> None:
        history = self.ws.history
        names: list[str] = []
        for kind in kinds:
            current = history.current_manifest(kind, TRACKED[kind])
            tagged = self._tag_of(kind, current)
            if tagged is None:
                return
            names.append(tagged)
        raise VersioningError(
            f"the current version is already tagged {' and '.join(names)}",
            hint=self._opt("push a new version first, or give a VERSION to add another name "
                           "(cpv tag v1.0)", "upload a new version first, or pass version_tag "
                           "to add another name"))

    def _tag_of(
        self, kind: Kind, manifest: Manifest | None, track: Track | None = None
    ) -> str | None:
        if manifest is None:
            return None
        infos = self.versions(kind) if track is None or track.is_default else (
            self.line_versions(track))
        for info in reversed(infos):
            if any(m.snapshot_id == manifest.snapshot_id and m.path == manifest.path
                   for m in info.manifests):
                return info.tag
        return None

    # -- publishing --------------------------------------------------------------------------

    def publish(self, *, force_tags: Sequence[str] = ()) -> str | None:
        """Push every commit and version tag the Git remote lacks; the remote's name, or None.

        Raises:
            GitRemoteError: with a hint saying the data is safe and what to run.
        """
        remote = self.ws.remote
        if remote is None:
            return None
        try:
            commits, tags = self.ws.history.publish(remote, force_tags=force_tags)
        except GitRemoteError as exc:
            raise GitRemoteError(
                f"the version is recorded here, but publishing it to the Git remote failed: "
                f"{exc.message}",
                # The remote's own hint first: it says what to fix (ssh key, host key, login).
                hint=f"{exc.hint}; nothing is lost: the next cpv command publishes it once the "
                     "remote answers ('cpv status' shows what is unpublished)") from exc
        return remote if commits or tags else None

    # -- pull, checkout ----------------------------------------------------------------------

    def _checked_snapshot(self, manifest: Manifest, label: str) -> Snapshot:
        """The manifest's snapshot, refused unless it holds exactly the manifest's files.

        Versions come from other people's repositories: a one-file manifest must not smuggle
        ``.git/config`` or anything else in through its snapshot.
        """
        try:
            return self._lists.snapshot(manifest, label, progress=self.ws.progress)
        except (NoStoreError, ObjectNotFoundError) as exc:
            raise self._store_mismatch(exc, manifest, label) from exc

    def files_of(self, manifest: Manifest, label: str = "HEAD") -> tuple[ListedFile, ...]:
        """The version's files (checked, from the local cache when this machine has seen
        them), whole: for what needs the list at once (a baseline, the paths of a version)."""
        try:
            return self._lists.files(manifest, label)
        except (NoStoreError, ObjectNotFoundError) as exc:
            raise self._store_mismatch(exc, manifest, label) from exc

    def _stream(self, rows: Iterable[ListedFile], manifest: Manifest,
                label: str) -> Iterator[ListedFile]:
        """A streamed list, its store errors said as :meth:`files_of` says them."""
        try:
            yield from rows
        except (NoStoreError, ObjectNotFoundError) as exc:
            raise self._store_mismatch(exc, manifest, label) from exc

    def _store_mismatch(
        self, exc: NoStoreError | ObjectNotFoundError, manifest: Manifest, what: str
    ) -> CPVError:
        """Say where a version's bytes went when this workspace's store does not have them,
        and call data the version needs that its own store lost what it is: damage (exit 4)."""
        here = self.ws.store_url
        if isinstance(exc, ObjectNotFoundError) and exc.key.startswith("packs/"):
            # The snapshot was read from this store: the version is here, and damaged.
            return IntegrityError(
                f"{what}: the store lost data this version needs ({exc.key} is missing); "
                "nothing was overwritten",
                object_id=exc.key, hint=self._opt(
                    "cpv verify --all lists every affected version; cpv repair re-uploads "
                    "what this machine's files still hold",
                    "verify(all_snapshots=True) lists what is affected; repair() heals it"))
        if manifest.store_url == here:
            return exc
        hint = ("point this workspace at that store: cpv config set store.url URL (an S3 URL "
                "or a folder every machine can reach)")
        if isinstance(exc, NoStoreError):
            return NoStoreError(
                f"no cpv store at {here}; {what} was pushed to {manifest.store_url}", hint=hint)
        return ObjectNotFoundError(
            exc.key, message=f"{what} was pushed to {manifest.store_url}, and the store of this "
            f"workspace ({here}) does not have it", hint=hint)

    def _write_version(
        self,
        track: Track,
        manifest: Manifest,
        label: str,
        target: Path,
        *,
        subs: Sequence[str] | None,
        force: bool,
        action: str,
        keep_special_bits: bool = False,
        prepared: tuple[Snapshot, LocalChanges, Baseline] | None = None,
    ) -> tuple[PullResult, int]:
        """Bring ``target`` to ``manifest``'s files: refuse if that would lose local work,
        write what differs, remove what the version no longer holds, record the baseline.

        ``prepared``: what :meth:`_prepare_write` gave for this very write, when the caller
        checked every path before writing any (at 10^6 files, judging the folder again
        cost 16 s).
        """
        snapshot, changes, baseline = prepared or self._prepare_write(
            track, manifest, label, target, subs, action, force=force)
        inside = in_scope(subs)
        # Files of the replaced version (what this machine put there) may be deleted, or
        # turned into a folder, by this pull; the user's own files never.
        # Paths only, folder by folder: the baseline's whole table (10^6 tuples) is not
        # needed, and a frozenset is what the pull's placement and the removal look into.
        replaced = frozenset(
            p for p in baseline.paths() if inside(p)
            and (force or (p not in changes.edited and p not in changes.added)))
        from cpv.engine.pull import pull
        from cpv.engine.worktree import remove_replaced

        try:
            result = pull(self.ws.repository(), manifest.snapshot_id, target, paths=subs,
                          progress=self.ws.progress, limits=self.ws.limits,
                          keep_special_bits=keep_special_bits, replace=replaced,
                          expected=expected_files(manifest), snapshot=snapshot)
        except (NoStoreError, ObjectNotFoundError) as exc:
            raise self._store_mismatch(exc, manifest, label) from exc
        # Made now, not held while the pull runs; only what the pull was to write.
        table = snapshot_table(snapshot, subs)
        removed = len([p for p in remove_replaced(target, replaced, table) if p in replaced])
        del replaced  # not held while the new baseline is made
        if subs is None:
            new = Baseline(manifest.snapshot_id, table)
        else:  # the rest as it was: only the folders the selection touched are read
            new = baseline.updated(None, [
                *((p, None) for p in baseline.paths() if inside(p) and p not in table),
                *table.items()], {}, None)
        self._baselines.save(self._at(track, target), new)
        return result, removed

    def pull(
        self,
        rev: str | None = None,
        *,
        paths: Sequence[str] = (),
        dest: str | Path | None = None,
        force: bool = False,
        exclude: Sequence[str] = (),
        include: Sequence[str] = (),
        parts: Sequence[str] = (),
    ) -> list[PullSummary]:
        """Bring the tracked folders (or ``dest``) to ``rev``; see :meth:`resolve`.

        Only files that differ are written, only chunks the store must supply are fetched,
        and files the version no longer holds are removed (those this machine received; the
        user's own files are left alone). The recorded version does not change
        (:meth:`checkout` does that).

        ``exclude`` / ``include`` (gitignore patterns, see :class:`PathFilter`) make it a
        partial pull: files they leave out are neither written nor removed.

        Raises:
            DirtyWorkspaceError: local changes would be overwritten (unless ``force``);
            NothingMatchedError: the paths, patterns or filters select no file;
            IntegrityError (a snapshot that does not match its manifest), NoStoreError, ...

        ``parts`` keeps the files that those writers pushed into a version committed from a
        many-writers session (``cpv pull --part RANK``), for a resume on the same layout.
        """
        with self._filtered(exclude, include):
            return self._pull(
                rev, Selection(paths, self.tracked_paths() if paths else (), self._filter, parts),
                dest=dest, force=force)

    def _pull(
        self, rev: str | None, selection: Selection, *, dest: str | Path | None, force: bool,
    ) -> list[PullSummary]:
        if dest is not None and len(selection.tracks or KINDS) != 1 and (
                self._named_ref(rev) is None):
            raise ConfigError("--to needs exactly one tracked path ('model', 'data', ...)",
                              hint="e.g. cpv pull v0.1 model --to /tmp/v0.1")
        from cpv.engine.sessions import parts_of

        targets = self._targets(rev, selection, data_at_commit=True)
        # Check every tracked path before writing any: a refusal changes nothing.
        plans = []
        for track, ref in targets:
            manifest, label = self._line_manifest(track, ref)
            folder = Path(dest).absolute() if dest is not None else self._place(track)
            snapshot = self._checked_snapshot(manifest, label)
            subs = selection.files(track, [f.path for f in snapshot.files],
                                   parts_of(snapshot) if selection.wants_parts else None)
            plans.append((track, manifest, label, folder, subs))
        selection.check_matched([p for *_, p in plans], rev)
        plans = [plan for plan in plans if plan[4] != []]  # a kind the patterns left out
        prepared = [None if force else
                    self._prepare_write(track, manifest, label, folder, subs, f"pull {label}")
                    for track, manifest, label, folder, subs in plans]
        out = []
        for (track, manifest, label, folder, subs), ready in zip(plans, prepared, strict=True):
            result, removed = self._write_version(track, manifest, label, folder, subs=subs,
                                                  force=force, action=f"pull {label}",
                                                  prepared=ready)
            out.append(PullSummary(
                kind=track.kind, ref=label, path=str(self._at(track, folder)),
                snapshot_id=manifest.snapshot_id,
                files=result.files, total_bytes=result.total_bytes,
                files_written=result.files_written, files_unchanged=result.files_unchanged,
                downloaded_bytes=result.downloaded_bytes, local_bytes=result.local_bytes,
                seconds=result.seconds, files_removed=removed))
        return out

    def _prepare_write(
        self, track: Track, manifest: Manifest, label: str, folder: Path,
        subs: Sequence[str] | None, action: str, *, force: bool = False,
    ) -> tuple[Snapshot, LocalChanges, Baseline]:
        """The checked snapshot and the folder's state; refuses (unless ``force``) when
        writing the version would overwrite or remove a local change."""
        snapshot = self._checked_snapshot(manifest, label)
        changes, baseline, cache = self._changes(track, folder)
        lost = conflicts(folder, changes, snapshot_table(snapshot), cache, scope=subs)
        if lost and not force:
            in_workspace = folder == self._place(track)
            shown = [track.workspace_path(p) if in_workspace else str(folder / p) for p in lost]
            raise DirtyWorkspaceError(
                f"cannot {action}: {len(lost)} file(s) have local changes that were not "
                f"pushed ({_listed(shown)}); it would overwrite or remove them",
                paths=shown,
                hint=self._opt(
                    "push them first (cpv push), pull into another folder (cpv pull REV "
                    "model --to DIR), or pass --force to discard them",
                    "upload them first, use dest=..., or pass force=True to discard them"))
        return snapshot, changes, baseline

    def download(
        self,
        kind: Kind,
        ref: str | None,
        *,
        dest: str | Path | None = None,
        paths: Sequence[str] | None = None,
        force: bool = False,
        track: Track | None = None,
    ) -> tuple[Manifest, str, Path, PullResult]:
        """One kind's (or ``track``'s) version into its folder or ``dest`` (relative to the
        current folder); returns where it is (a single file's own path)."""
        track = track or DEFAULT_TRACKS[kind]
        manifest, label = self._line_manifest(track, ref)
        target = Path(dest).absolute() if dest is not None else self._place(track)
        result, _ = self._write_version(track, manifest, label, target,
                                        subs=paths, force=force,
                                        action=f"download {label}")
        return manifest, label, self._at(track, target), result

    def checkout(self, rev: str, *, force: bool = False, dry_run: bool = False,
                 kinds: Sequence[Kind] | None = None) -> list[RevertResult]:
        """Make ``rev`` the current version: files, then manifests (a new commit), published.

        Every kind is checked before anything is touched, so a refusal changes nothing.
        """
        targets = (self._targets(rev, Selection([]))
                   if not kinds or self._named_ref(rev) is not None else
                   [(DEFAULT_TRACKS[k], ref) for k, ref in self.resolve(rev, kinds).items()])
        plans = []
        for track, ref in targets:
            manifest, label = self._line_manifest(track, ref or rev)
            plans.append((track, manifest, label))
        prepared = [None if force else
                    self._prepare_write(track, manifest, label, self._place(track), None,
                                        f"check out {label}")
                    for track, manifest, label in plans]
        if dry_run:
            return [RevertResult(label, (t.kind,), None, 0, 0) for t, _, label in plans]
        results = []
        for (track, manifest, label), ready in zip(plans, prepared, strict=True):
            pulled, removed = self._write_version(
                track, manifest, label, self._place(track), subs=None, force=force,
                action=f"check out {label}", prepared=ready)
            # Only this path's manifest: the kind's other tracked paths keep their versions.
            record = self.ws.history.revert(label, kinds=[track.kind], line=track.name,
                                            discard_local_changes=force)
            self._tracks = None
            results.append(RevertResult(label, (track.kind,), record.commit, pulled.files_written,
                                        pulled.downloaded_bytes, removed))
        self.publish()
        return results

    # -- listing -----------------------------------------------------------------------------

    def ls(self, rev: str | None = None, paths: Sequence[str] = (), *,
           parts: Sequence[str] = ()) -> list[tuple[str, int]]:
        """:meth:`iter_ls` as a list."""
        return list(self.iter_ls(rev, paths, parts=parts))

    def iter_ls(self, rev: str | None = None, paths: Sequence[str] = (), *,
                parts: Sequence[str] = ()) -> Iterator[tuple[str, int]]:
        """The files of ``rev`` (default: the current version) at or under ``paths``
        (workspace paths such as ``model`` or ``data/train``), with their sizes, in path
        order, one at a time (a 10^6-file version is never held whole).

        Read from the local cache or the store's snapshot (a plain path walks only its
        sub-tree), checked against its manifest; nothing is downloaded but the snapshot.

        Raises:
            ConfigError: a path outside the tracked folders. PathNotFoundError: nothing there.
        """
        selection = Selection(paths, self.tracked_paths() if paths else (), parts=parts)
        targets = self._targets(rev, selection, data_at_commit=True)
        found = False
        for track, ref in sorted(targets, key=lambda t: t[0].path + "/"):
            manifest, label = self._line_manifest(track, ref)
            for f in self._selected(track, manifest, label, selection):
                found = True
                yield track.workspace_path(f.path), f.size
        if not found and paths:
            raise PathNotFoundError(", ".join(paths), where=rev or "the current version",
                                    hint=self._opt("list the whole version: cpv ls REV",
                                                   "call ls() without paths"))

    def _selected(self, track: Track, manifest: Manifest, label: str,
                  selection: Selection) -> Iterator[ListedFile]:
        """The entries of a version that ``selection`` chooses in ``track``, streamed."""
        if selection.wants_parts:  # which writer pushed what: the whole snapshot says
            from cpv.engine.sessions import parts_of

            snapshot = self._checked_snapshot(manifest, label)
            listing = snapshot_listing(snapshot)
            chosen = selection.files(track, [f.path for f in listing], parts_of(snapshot))
            wanted = None if chosen is None else set(chosen)
            yield from (f for f in listing if wanted is None or f.path in wanted)
            return
        keep = selection.keeps(track)
        for sub in selection.subtrees(track):
            rows = self._stream(self._lists.iter_files(manifest, label, under=sub),
                                manifest, label)
            yield from (rows if keep is None else (f for f in rows if keep(f.path)))

    # -- status, diff ------------------------------------------------------------------------

    def status(self, *, exclude: Sequence[str] = (),
               include: Sequence[str] = ()) -> StatusReport:
        """Current version of each kind, local changes (those the rules and ``exclude`` /
        ``include`` keep in view), and what the remote has not got."""
        with self._filtered(exclude, include):
            return self._status()

    def _status(self) -> StatusReport:
        history = self.ws.history
        kinds: list[KindStatus] = []
        for track in self.tracked_paths():
            kind = track.kind
            manifest = history.current_manifest(kind, track.name)
            folder = self._place(track)
            changes, baseline, _ = self._changes(track, folder)
            behind = manifest is not None and baseline.snapshot_id != manifest.snapshot_id
            hidden: list[str] = []
            if manifest is not None:
                # Only where a recorded file was not seen can a rule hide one.
                hidden, _ = self._rules().hidden_tracked(
                    folder, track.folder,
                    self._version_paths(manifest, baseline, changes.doubtful))
            kinds.append(KindStatus(
                kind=kind, path=track.path, is_dir=track.is_dir, recorded=manifest is not None,
                snapshot_id=manifest.snapshot_id if manifest else None,
                files=manifest.file_count if manifest else 0,
                total_bytes=manifest.total_size if manifest else 0,
                version=self._tag_of(kind, manifest, track),
                changed=tuple(track.workspace_path(p) for p in changes.all()), behind=behind,
                hidden=tuple(hidden)))
        state = history.status()
        remote = self.ws.remote
        commits, tags, problem = 0, list[str](), None
        if remote is not None:
            try:
                commits, tags = history.unpublished(remote)
            except GitRemoteError as exc:
                problem = exc.message
        # A URL the user gave git directly may carry a token: status shows it redacted.
        url = self.ws.git.remote_url(remote) if remote else None
        return StatusReport(
            root=self.root, branch=state.branch, head=state.head,
            remote=redact(url) if url else None,
            store_url=self.ws.store_url, kinds=tuple(kinds), manifest_changes=state.changes,
            unpublished_commits=commits, unpublished_tags=tuple(tags), remote_problem=problem)

    def diff(self, ref_a: str, ref_b: str = "HEAD", *, kind: Kind | None = None) -> VersionDiff:
        """Files and metrics that differ between the ``kind`` manifests of two refs."""
        named_a, named_b = self._named_ref(ref_a), self._named_ref(ref_b)
        if named_a is not None and named_b is not None and named_a != named_b:
            raise ConfigError(
                f"{ref_a} and {ref_b} are versions of two tracked paths ({named_a.path}, "
                f"{named_b.path}); diff compares two versions of one path",
                hint=f"e.g. cpv diff {ref_a} HEAD (its current version); cpv ls REV lists the "
                     "files of any version")
        named = named_a or named_b
        if named is not None:
            kind = named.kind
            a, ref_a = self._line_manifest(named, None if ref_a == "HEAD" else ref_a)
            b, ref_b = self._line_manifest(named, None if ref_b == "HEAD" else ref_b)
        if kind is None:
            parsed = [try_parse_tag(r) for r in (ref_a, ref_b)]
            kind = "data" if any(p is not None and p[0] == "data" for p in parsed) else "model"
        if named is None:
            a, ref_a = self.manifest_at(kind, ref_a)
            b, ref_b = self.manifest_at(kind, ref_b)
        try:
            pairs, unchanged = self._lists.changes(a, b, (ref_a, ref_b))
        except (NoStoreError, ObjectNotFoundError) as exc:
            raise self._store_mismatch(exc, a, f"{ref_a}..{ref_b}") from exc
        changes: list[FileChange] = []
        for fa, fb in pairs:
            if fa is None and fb is not None:
                changes.append(FileChange(fb.path, "added", None, fb.size))
            elif fb is None and fa is not None:
                changes.append(FileChange(fa.path, "removed", fa.size, None))
            elif fa is not None and fb is not None:
                changes.append(FileChange(fa.path, "changed", fa.size, fb.size))
        return VersionDiff(
            kind=kind, ref_a=ref_a, ref_b=ref_b, snapshot_a=a.snapshot_id,
            snapshot_b=b.snapshot_id, size_a=a.total_size, size_b=b.total_size,
            files=tuple(changes), unchanged=unchanged, metrics=tuple(compare(a.metrics,
                                                                             b.metrics)))

    # -- verify, gc --------------------------------------------------------------------------

    def verify(
        self, rev: str | None = None, *, all_snapshots: bool = False, deep: bool = False
    ) -> VerifyOutcome:
        """Check that the store holds every byte of the current versions, of ``rev``, or of
        every snapshot; ``deep`` re-reads and re-hashes every needed chunk.

        A version pushed to another store is reported as living there, not as damaged.
        Never raises for damage: the outcome says which versions and files are affected.
        """
        history = self.ws.history
        here = self.ws.store_url
        labels: dict[str, list[tuple[str, Kind]]] = {}
        elsewhere: dict[str, str] = {}

        def note(manifest: Manifest, label: str, kind: Kind, *, first: bool = False) -> None:
            if manifest.store_url != here:
                elsewhere[manifest.snapshot_id] = manifest.store_url
            entry = labels.setdefault(manifest.snapshot_id, [])
            entry.insert(0, (label, kind)) if first else entry.append((label, kind))

        for track in self.tracked_paths():
            current = history.current_manifest(track.kind, track.name)
            if current is not None:
                note(current, "HEAD", track.kind)
        if all_snapshots or rev is None:
            for track in self.tracked_paths():
                for info in self.line_versions(track):
                    for m in info.manifests:
                        note(m, info.tag, track.kind)
        selected: list[str] = []
        if all_snapshots:
            stored = [o.key[len(SNAPSHOT_PREFIX):]
                      for o in self.ws.repository().store.list(SNAPSHOT_PREFIX)]
            selected = sorted(set(stored) | set(labels))
        else:
            for track, ref in self._targets(rev, Selection([])):
                manifest, label = self._line_manifest(track, ref)
                if ref is not None:
                    note(manifest, label, track.kind, first=True)
                if manifest.snapshot_id not in selected:
                    selected.append(manifest.snapshot_id)
        snapshot_ids = selected
        from cpv.engine.verify import verify as engine_verify

        report = engine_verify(self.ws.repository(), snapshot_ids=snapshot_ids, deep=deep,
                               progress=self.ws.progress, limits=self.ws.limits)
        checked = sorted({label for sid in snapshot_ids for label, _ in labels.get(sid, [])})
        damaged: list[DamagedVersion] = []
        for sid, files in sorted(report.affected.items()):
            names = list(dict.fromkeys(labels.get(sid, [])))
            unreadable = sid in report.unreadable_snapshots
            # Not in this store at all, and pushed to another one: it lives there. (A format-2
            # snapshot whose tree lost its pack is here, and damaged.)
            moved = elsewhere.get(sid) if unreadable and not self.ws.repository().store.exists(
                SNAPSHOT_PREFIX + sid) else None
            if not names:
                damaged.append(DamagedVersion(f"unreferenced snapshot {sid[:12]}", None, sid,
                                              tuple(sorted(files)), unreadable))
            for label, kind in names:
                damaged.append(DamagedVersion(label, kind, sid, tuple(sorted(files)),
                                              unreadable, elsewhere=moved))
        return VerifyOutcome(report=report, checked=tuple(checked), damaged=tuple(damaged))

    def gc(
        self,
        *,
        dry_run: bool = False,
        grace_period_s: float | None = None,
        break_stale_lock: bool = False,
    ) -> GCOutcome:
        """Delete store data that no version recorded in the store needs.

        What is live comes from the store's roots, never from this clone's Git history (which
        may be shallow, stale or merged): a version leaves only through :meth:`forget`.

        Raises:
            MigrationNeededError: a store written before roots (run ``cpv migrate`` once).
            StoreLockedError: another gc runs (exit 11). StoreError: re-run to finish.
        """
        from cpv.engine.gc import DEFAULT_GRACE_S, collect_garbage
        from cpv.engine.roots import list_roots

        repo = self.ws.repository()
        with self._migration_hint():
            report = collect_garbage(
                repo, dry_run=dry_run,
                grace_period_s=DEFAULT_GRACE_S if grace_period_s is None else grace_period_s,
                break_stale_lock=break_stale_lock, progress=self.ws.progress,
                limits=self.ws.limits)
        roots = list_roots(repo)
        return GCOutcome(report=report, live_versions=tuple(sorted(roots.tags)),
                         live_snapshots=len(roots.live_snapshots))

    def forget(self, policy: ForgetPolicy, *, dry_run: bool = False) -> ForgetReport:
        """Retire the versions ``policy`` does not keep (every tagged version is kept); the
        data goes at the next gc. Nothing is rewritten: one retire record in the store.

        The versions this workspace's manifests name now are kept too (a clone's view may
        add protection, never remove it).

        Raises:
            ForgetPolicyError: the policy keeps nothing. MigrationNeededError (see :meth:`gc`).
        """
        from cpv.engine.roots import forget, live_for_gc

        repo = self.ws.repository()
        with self._migration_hint():
            live_for_gc(repo)  # refuses on a store that needs migrating, before anything
        current = frozenset(m.snapshot_id for m in self.ws.history.current_manifests())
        return forget(repo, replace(policy, keep_snapshots=policy.keep_snapshots | current),
                      dry_run=dry_run)

    @contextlib.contextmanager
    def _migration_hint(self) -> Iterator[None]:
        try:
            yield
        except MigrationNeededError as exc:
            raise MigrationNeededError(exc.message, hint=self._opt(
                "record the store's versions once with 'cpv migrate', then run this again",
                "call WorkspaceService.migrate() once, then again")) from exc

    def migrate(self) -> AdoptReport:
        """Record the versions of a store written before roots, once (safe to re-run).

        Every snapshot in the store becomes a kept version; what this clone's Git knows of
        them (kind, message, metrics, tags) is recorded with them.
        """
        from cpv.engine.roots import RootInfo, TagTarget, adopt_snapshots

        history = self.ws.history
        known: dict[str, RootInfo] = {}
        tags: list[TagTarget] = []
        for kind in KINDS:
            current = history.current_manifest(kind, TRACKED[kind])
            manifests = [current] if current is not None else []
            for info in history.list_versions(kind):
                manifests += info.manifests
                tags += [TagTarget(info.tag, m.snapshot_id, kind, m.path)
                         for m in info.manifests]
            for m in manifests:
                known.setdefault(m.snapshot_id, RootInfo(
                    kind=kind, name=m.path, message=m.message, author=m.author,
                    metrics=dict(m.metrics), workspace=self.ws.workspace_id or ""))
        return adopt_snapshots(self.ws.repository(), known=known, tags=tags)

    def upgrade_store_format(self) -> tuple[int, int]:
        """Move the store to the newest format (2: tree snapshots); (before, after) versions.

        Old snapshots stay readable; cpv releases that predate the format refuse the store
        from then on, with "upgrade cpv". Idempotent.
        """
        return self.ws.repository().upgrade_format()

    def migrate_manifests(self) -> list[str]:
        """Rewrite the current schema-1 manifests as pointer manifests (schema 2), one commit.

        Each names the same snapshot; its file list stays in the store (checked against the
        old list first, so nothing is lost if the store does not hold it) and in the Git history
        of the old manifest. Tags keep their schema-1 manifests, which stay readable. Returns
        the manifest paths rewritten (none: nothing to do; safe to re-run).

        Raises:
            IntegrityError / ObjectNotFoundError / NoStoreError: a snapshot the store does not
                hold as listed; nothing was rewritten.
        """
        old = [m for m in self.ws.history.current_manifests() if m.files is not None]
        for manifest in old:
            self._checked_snapshot(manifest, manifest.relpath)
        new = [m.as_pointer() for m in old]
        commit = self.ws.history.rewrite_manifests(
            new, message=f"cpv: migrate {len(new)} manifest(s) to schema 2 (file lists live in "
                         "the store)")
        if commit is not None:
            self.publish()
        return [m.relpath for m in new]

    def rebuild(self, *, workspace_id: str | None = None) -> list[str]:
        """Write back into Git what the store records, for a lost or rewritten repository.

        Every tagged version the store records and this repository lacks gets its manifest
        committed and its tag made (oldest first); then each tracked path's newest version
        becomes the current manifest. Tags Git already has are left as they are. Returns the
        tags made. Versions come from one workspace's line (``workspace_id``; needed only when
        several workspaces share the store).

        Raises:
            VersioningError: several workspaces share the store and none was chosen.
        """
        from cpv.engine.roots import list_roots

        history = self.ws.history
        repo = self.ws.repository()
        roots = list_roots(repo)
        lines = sorted({v.workspace for v in roots.versions if v.workspace})
        if workspace_id is None and len(lines) > 1:
            raise VersioningError(
                f"the store holds the versions of {len(lines)} workspaces: "
                f"{', '.join(lines)}; say which to rebuild",
                hint=self._opt("cpv rebuild --workspace-id ID",
                               "pass workspace_id=... to rebuild()"))
        chosen = workspace_id or (lines[0] if lines else "")
        mine = [v for v in roots.versions
                if v.workspace in (chosen, "") and v.kind in KINDS
                and v.name == TRACKED[v.kind]]
        by_snapshot = {(v.kind, v.snapshot_id): v for v in mine}
        existing = self.ws.git.tag_targets()
        made: list[str] = []

        def manifest_of(kind: Kind, sid: str) -> Manifest:
            v = by_snapshot.get((kind, sid))
            snapshot = repo.load_snapshot(sid)
            files = regular(self._lists.remember(sid, snapshot))
            counts = _split_counts([f.path for f in files]) if kind == "data" else {}
            return pointer_manifest(
                kind=kind, path=TRACKED[kind], snapshot_id=sid, store_url=self.ws.store_url,
                file_count=len(files), total_size=sum(f.size for f in files), changes=None,
                message=v.message if v else "", author=v.author if v else "",
                metrics=v.metrics if v else {},
                extra={f"samples.{k}": n for k, n in counts.items()})

        tagged = sorted(
            (parsed[1], tag, parsed[0], sid) for tag, sid in roots.tags.items()
            if (parsed := try_parse_tag(tag)) is not None and (parsed[0], sid) in by_snapshot)
        for _version, tag, kind, sid in tagged:
            if tag in existing:
                continue
            history.record_version(manifest_of(kind, sid),
                                   message=f"cpv: rebuild {tag} from the store")
            history.create_tag(kind, tag, message=f"{tag} (rebuilt from the store)")
            made.append(tag)
        for kind in KINDS:
            newest = max((v for v in mine if v.kind == kind),
                         key=lambda v: (v.stored_at, v.created_at), default=None)
            current = history.current_manifest(kind, TRACKED[kind])
            if newest is not None and (current is None
                                       or current.snapshot_id != newest.snapshot_id):
                history.record_version(manifest_of(kind, newest.snapshot_id),
                                       message=f"cpv: rebuild the current {kind} from the store")
        if chosen and self.ws.workspace_id != chosen:
            (self.root / WORKSPACE_ID_FILE).write_text(chosen + "\n")
            self.ws.git.commit_paths([WORKSPACE_ID_FILE], "cpv: continue the store's line")
        self.publish()
        return made

    def repair(self) -> RepairReport:
        """Heal the store: rebuild damaged index objects from pack footers and re-upload
        damaged or missing chunks from the files in this workspace's tracked folders."""
        from cpv.engine.repair import repair

        sources = [self.root / t.path for t in self.tracked_paths()
                   if (self.root / t.path).exists()]
        return repair(self.ws.repository(), sources=sources, limits=self.ws.limits,
                      progress=self.ws.progress)

    # -- notifications -----------------------------------------------------------------------

    def notify(self, enabled: bool, event: Mapping[str, object]) -> None:
        """POST an event to ``notify.webhook_url``; a failure only logs (the version exists)."""
        if not enabled:
            return
        url = self.config.notify.webhook_url
        if not url:
            log.warning("notify requested but notify.webhook_url is not configured")
            return
        try:
            post_event(url, {"team": self.config.team, "model": self.config.model, **event})
        except NotifyError as exc:
            log.warning("notification failed (the version is recorded): %s", exc)

    # -- aliases -----------------------------------------------------------------------------

    def aliases(self) -> list[Alias]:
        """Every alias that points to a version now, by name, each with its log of moves."""
        return AliasBook(self.ws.git).all()

    def aliases_by_tag(self) -> dict[str, list[str]]:
        """Tag -> the aliases pointing to it (for ``cpv versions``)."""
        out: dict[str, list[str]] = {}
        for alias in self.aliases():
            assert alias.target is not None  # all() lists only aliases that point somewhere
            out.setdefault(alias.target, []).append(alias.name)
        return out

    def set_alias(self, name: str, rev: str, *, message: str = "") -> Alias:
        """Point the alias ``name`` at the version ``rev`` (made or moved), recorded with who,
        when and why in one commit, published with the versions.

        Raises:
            InvalidAliasError: a bad name, one that shadows a version tag or branch, or a
                ``rev`` that is not a version tag here.
        """
        git = self.ws.git
        book = AliasBook(git)
        taken = set(git.tag_targets()) | set(git.branch_names())
        check_alias_name(name, taken=frozenset(taken))
        target = self.dealias(rev)
        if _VERSION_ONLY.match(target):
            target = f"v{target}"
        if parse_line_tag(target) is None or not self.have_ref(target):
            raise InvalidAliasError(
                f"cannot point alias {name!r} at {rev!r}: it is not a version here",
                hint=self._opt("an alias names a version tag such as v0.3, data-v0.2 or "
                               "name@v0.1; list them with cpv versions (--path PATH)",
                               "pass a version tag such as 'v0.3' or 'name@v0.1'"))
        alias = book.move(name, target, author=self.ws.history.default_author(),
                          at=datetime.now(timezone.utc), message=message)
        self.publish()
        return alias

    def delete_alias(self, name: str, *, message: str = "") -> Alias:
        """Delete the alias ``name``; its log (and this deletion) stays in Git.

        Raises:
            InvalidAliasError: no such alias.
        """
        book = AliasBook(self.ws.git)
        found = book.get(name)
        if found is None or found.target is None:
            raise InvalidAliasError(f"no alias {name!r}", hint=self._opt(
                "list the aliases with cpv alias", "list them with aliases()"))
        alias = book.move(name, None, author=self.ws.history.default_author(),
                          at=datetime.now(timezone.utc), message=message)
        self.publish()
        return alias

    def read_alias(self, name: str) -> Alias:
        """The alias ``name`` and its log.

        Raises:
            InvalidAliasError: no such alias (or it was deleted).
        """
        found = AliasBook(self.ws.git).get(name)
        if found is None or found.target is None:
            raise InvalidAliasError(f"no alias {name!r}", hint=self._opt(
                "list the aliases with cpv alias", "list them with aliases()"))
        return found

    # -- lineage -----------------------------------------------------------------------------

    def lineage(self, rev: str | None = None, *, track: Track | None = None) -> dict[str, Any]:
        """Which data trained the model version ``rev`` (default: the current one), and its
        hyper-parameters: the data snapshot recorded at push time and every data tag that
        holds it now (a combined ``push --tag`` makes the data tag after the model's push).
        ``name@v0.3`` (or ``track``) reads another tracked model path's line.

        Raises:
            UnknownVersionError: ``rev`` names no model version.
        """
        try:
            track = track or self._named_ref(rev) or DEFAULT_TRACKS["model"]
        except TagNotFoundError as exc:
            raise UnknownVersionError(exc.tag, hint=exc.hint) from exc
        if track.kind != "model":
            raise UnknownVersionError(rev or track.path, hint=(
                f"{track.path} holds data; lineage is recorded with model versions"))
        try:
            manifest, label = self._line_manifest(track, rev)
        except TagNotFoundError as exc:
            raise UnknownVersionError(exc.tag, hint=self._opt(
                "list model versions with cpv versions", "see read_checkpoint_tag()")) from exc
        lineage = manifest.lineage
        tags = self._data_tags(lineage.data_snapshot_id) if lineage is not None else []
        if lineage is not None and lineage.data_tag and lineage.data_tag not in tags:
            tags.insert(0, lineage.data_tag)
        return {
            "tag": label, "snapshot_id": manifest.snapshot_id,
            "recorded": lineage is not None,
            "data_path": lineage.data_path if lineage else None,
            "data_snapshot_id": lineage.data_snapshot_id if lineage else None,
            "data_tags": tags, "params": dict(manifest.params),
        }

    # -- metadata ----------------------------------------------------------------------------

    def metadata(
        self, kind: Kind, tag: str | None, *, track: Track | None = None
    ) -> dict[str, Any]:
        """Size, metrics, snapshot, author and time of ``tag`` (default: current version)."""
        track = track or DEFAULT_TRACKS[kind]
        manifest, label = self._line_manifest(track, tag)
        return {
            "path": track.path,
            "tag": label, "kind": kind, "team_name": self.config.team,
            "model_name": self.config.model, "snapshot_id": manifest.snapshot_id,
            "store_url": manifest.store_url, "files": manifest.file_count,
            "size_bytes": manifest.total_size,
            f"{kind}_size_mb": round(manifest.total_size / (1024 * 1024), 3),
            "metrics": dict(manifest.metrics), "message": manifest.message,
            "author": manifest.author, "timestamp": manifest.created_at.isoformat(),
            "extra": dict(manifest.extra),
            "lineage": manifest.lineage.to_dict() if manifest.lineage else None,
            "params": dict(manifest.params),
        }

    # -- many writers ------------------------------------------------------------------------

    def commit_session(self, session: str, **options: Any) -> SessionCommit:
        """Record every writer's part of ``session`` as one version (one commit, one tag);
        see :func:`cpv.service.sessions.commit_session` for the options and errors."""
        from cpv.service.sessions import commit_session

        return commit_session(self, session, **options)


_GLOB = re.compile(r"[*?\[]")


class Selection:
    """Which files of a version ``pull`` and ``ls`` mean: folders (``model``, ``data/train``)
    and patterns in gitignore syntax (``model/*.safetensors``, ``*fp16*``), matched against
    workspace paths by the same maintained matcher as ``.cpvignore``. One owner, so pull and
    ls select alike."""

    def __init__(
        self, paths: Sequence[str], tracks: Sequence[Track] = (),
        options: PathFilter | None = None, parts: Sequence[str] = (),
    ) -> None:
        import pathspec

        self._options = options or PathFilter()
        self._parts = [str(p) for p in parts]
        self._patterns = [p for p in paths if _GLOB.search(p)]
        plain = [p for p in paths if not _GLOB.search(p)]
        named = [t for t in tracks if not t.is_default]
        # Plain paths in a tracked path other than model/ and data/: that path, or under it.
        self._named: dict[Track, list[str]] = {}
        rest: list[str] = []
        for raw in plain:
            text = _clean_path(raw)
            track = next((t for t in named
                          if text == t.path or text.startswith(t.path + "/")), None)
            if track is None:
                rest.append(raw)
            elif text == track.path:
                self._named[track] = []
            elif self._named.get(track) != []:
                self._named.setdefault(track, []).append(text[len(track.path) + 1:])
        self._restrict = _split_pull_paths(rest, named) if rest else {}
        self._spec = pathspec.GitIgnoreSpec.from_lines(self._patterns) if self._patterns else None
        every = [*DEFAULT_TRACKS.values(), *named]
        wanted: set[Track] = {DEFAULT_TRACKS[k] for k in self._restrict} | set(self._named)
        for pattern in self._patterns:
            head = pattern.lstrip("/")
            wanted |= {t for t in every if head.startswith(t.path + "/")} or set(every)
        self.tracks: list[Track] | None = [t for t in every if t in wanted] if paths else None
        self.kinds: list[Kind] | None = [
            k for k in KINDS if DEFAULT_TRACKS[k] in wanted] if paths else None

    @property
    def wants_parts(self) -> bool:
        """Whether :meth:`files` needs the version's parts list (``--part``)."""
        return bool(self._parts)

    def files(
        self, track: Track | Kind, paths: Sequence[str],
        parts: Mapping[str, Sequence[str]] | None = None,
    ) -> list[str] | None:
        """Which of a version's ``paths`` (relative to the tracked folder) are selected, or
        None for the whole folder.

        ``parts`` (the version's writer -> paths, see :attr:`wants_parts`) keep only what the
        chosen writers pushed; ``--exclude`` / ``--include`` narrow whatever the paths chose."""
        if not isinstance(track, Track):
            track = DEFAULT_TRACKS[track]
        chosen = self._chosen(track, paths)
        if self._parts:
            chosen = _part_files(parts or {}, self._parts, chosen)
        if not self._options:
            return chosen
        drops = self._options.drops
        return [p for p in (chosen if chosen is not None else paths)
                if not drops(track.workspace_path(p))]

    def keeps(self, track: Track) -> Callable[[str], bool] | None:
        """:meth:`files` as a test of one path at a time, for lists that stream (None: the
        whole folder). Not for ``--part``, which needs the version's parts list."""
        chosen = self._test(track)
        if not self._options:
            return chosen
        drops = self._options.drops
        return lambda p: (chosen is None or chosen(p)) and not drops(track.workspace_path(p))

    def subtrees(self, track: Track) -> list[str]:
        """The sub-trees of ``track`` that hold every selected file (``[""]``: the whole
        folder): the plain paths given, unless a pattern may choose files anywhere. In the
        order of their files, so that walking them one after the other keeps path order."""
        restrict = self._restrict_of(track)
        if self.tracks is None or self._spec is not None or not restrict:
            return [""]
        out: list[str] = []
        for sub in sorted({s.strip("/") for s in restrict}, key=lambda s: s + "/"):
            if not any(sub.startswith(o + "/") for o in out) and sub not in out:
                out.append(sub)
        return out

    def _restrict_of(self, track: Track) -> list[str] | None:
        return self._restrict.get(track.kind) if track.is_default else self._named.get(track)

    def _test(self, track: Track) -> Callable[[str], bool] | None:
        restrict = self._restrict_of(track)
        if self.tracks is None or restrict == []:
            return None
        inside = in_scope(restrict) if restrict else None
        spec = self._spec
        return lambda p: ((inside is not None and inside(p))
                          or (spec is not None and spec.match_file(track.workspace_path(p))))

    def _chosen(self, track: Track, paths: Sequence[str]) -> list[str] | None:
        chosen = self._test(track)
        return None if chosen is None else [p for p in paths if chosen(p)]

    def check_matched(self, chosen: Sequence[list[str] | None], rev: str | None) -> None:
        """A pattern that selects nothing is a mistake to say at once, with nothing changed."""
        if self._parts and all(c is not None and not c for c in chosen):
            raise NothingMatchedError(
                f"part {', '.join(self._parts)} wrote no file of {rev or 'the current version'}"
                + (" selected by the paths" if self.tracks is not None else ""),
                hint="--part names a writer of a version committed from a session (cpv session "
                     "commit); cpv ls lists the files")
        if self._patterns and all(c is not None and not c for c in chosen):
            raise NothingMatchedError(
                f"{', '.join(self._patterns)} matches no file of {rev or 'the current version'}",
                hint="patterns match workspace paths in gitignore syntax, e.g. "
                     "'model/*.safetensors' or '*fp16*'; list the files with cpv ls")
        if self._options and all(c is not None and not c for c in chosen):
            given = [*(f"--exclude {p}" for p in self._options.exclude_patterns),
                     *(f"--include {p}" for p in self._options.include_patterns)]
            raise NothingMatchedError(
                f"{' '.join(given)} leaves no file of {rev or 'the current version'}",
                hint="patterns match workspace paths in gitignore syntax, e.g. "
                     "'model/*.safetensors'; list the files with cpv ls")


def _part_files(
    written: Mapping[str, Sequence[str]], parts: Sequence[str], within: list[str] | None,
) -> list[str]:
    """The files the writers ``parts`` pushed into a session's version (``written``: its
    writer -> paths, engine/sessions.py), narrowed to ``within`` when paths were given too;
    [] when the version has no such part."""
    chosen = {p for part in parts for p in written.get(part, ())}
    if within is not None:
        chosen &= set(within)
    return sorted(chosen)


def _clean_path(raw: str) -> str:
    text = raw.replace("\\", "/").strip("/")
    while text.startswith("./"):
        text = text[2:]
    return text


def _split_pull_paths(
    paths: Sequence[str], named: Sequence[Track] = ()
) -> dict[Kind, list[str]]:
    """``model``, ``data``, ``data/train`` ... -> kind -> sub-paths ([] = everything)."""
    out: dict[Kind, list[str]] = {}
    whole: set[Kind] = set()
    for raw in paths:
        text = _clean_path(raw)
        head, _, rest = text.partition("/")
        kind = next((k for k in KINDS if TRACKED[k] == head), None)
        if kind is None or (rest and any(p in ("", ".", "..") for p in rest.split("/"))):
            others = "".join(f", {t.path!r}" for t in named)
            raise ConfigError(
                f"cannot pull {raw!r}: paths start with a tracked path ('model', 'data'"
                f"{others})",
                hint="e.g. cpv pull v0.1 model, or cpv pull data-v0.1 data/validation")
        if not rest:
            whole.add(kind)
            out[kind] = []
        elif kind not in whole:
            out.setdefault(kind, []).append(rest)
    return out


__all__ = ["WorkspaceService", "find_workspace", "load_metric_inputs", "snapshot_table"]
