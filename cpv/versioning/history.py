"""Versions of a workspace's tracked paths, kept as manifests, commits and tags in Git.

:class:`History` is what the API layer calls after the engine has pushed bytes to the store:
it records the new manifest (a commit that touches only cpv's files), tags versions
(``v1.2`` / ``data-v1.2``, numerically auto-incremented), lists and compares them, reverts
manifests to an older version, and pushes/fetches commits and tags. It never touches the bytes of
tracked paths: restoring them is the engine's job, from the ``snapshot_id`` of the manifests
this module hands back. The model is written down in ``docs/versioning.md``.

Every operation that changes more than one thing (a commit and a tag, two tags, tags and a push)
runs in a :class:`_Transaction`: if any step fails, the tags it created are deleted, tags it
moved are put back, the branch returns to its commit, and cpv's files in the working tree and
index return to what they were. Nothing else in the working tree is touched, ever.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Final, Literal

from cpv.errors import (
    CPVError,
    DirtyWorkspaceError,
    FormatError,
    GitRemoteError,
    TagExistsError,
    VersioningError,
)
from cpv.versioning.gitrepo import GitRepo, IndexEntry
from cpv.versioning.manifest import (
    MANIFEST_DIR,
    Manifest,
    check_manifest_name,
    manifest_relpath,
)
from cpv.versioning.metrics import (
    MetricDelta,
    compare,
    format_metrics_trailer,
    merge_metrics,
    parse_metrics_trailer,
    resolve_metrics,
    strip_metrics_trailer,
)
from cpv.versioning.tags import (
    KINDS,
    Kind,
    Version,
    check_kind,
    coerce_line_version,
    coerce_version,
    line_tag,
    next_version,
    parse_line_tag,
    tag_name,
    try_parse_tag,
    versions_of_kind,
    versions_of_line,
)

log = logging.getLogger(__name__)

GITIGNORE: Final = ".gitignore"
BLOCK_START: Final = "# >>> cpv managed"
BLOCK_END: Final = "# <<< cpv managed"
_BLOCK_NOTE: Final = "# tracked paths: their bytes live in the cpv store, not in Git"
_GITIGNORE_SPECIAL: Final = frozenset("\\*?[]! #")

ChangeState = Literal["added", "modified", "deleted"]


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionRecord:
    """A manifest written to the workspace, and the commit that recorded it.

    ``commit`` is ``None`` when ``record_version(..., commit=False)`` or when the manifest was
    already recorded byte for byte (then ``changed`` is False).
    """

    commit: str | None
    manifest: Manifest
    path: str
    changed: bool


@dataclass(frozen=True, slots=True)
class TagRecord:
    """A version tag that was created (and pushed, when ``pushed_to`` is set)."""

    tag: str
    kind: Kind
    version: Version
    commit: str
    metrics: Mapping[str, float]
    manifests: tuple[Manifest, ...]
    pushed_to: str | None = None


@dataclass(frozen=True, slots=True)
class CombinedTagRecord:
    """``v{X.Y}`` and ``data-v{X.Y}``, created together at one commit."""

    version: Version
    model: TagRecord
    data: TagRecord


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One listed version.

    ``date``/``author``/``message`` come from the annotated tag; ``metrics``, ``total_size``
    and ``file_count`` from the manifests of that kind at the tagged commit (summed over data
    splits; metrics merged by manifest name). If those manifests cannot be read, ``problem``
    says why and the numbers are empty, so one damaged old version does not hide the others.
    """

    tag: str
    kind: Kind
    version: Version
    commit: str
    date: datetime
    author: str
    message: str
    metrics: Mapping[str, float]
    total_size: int
    file_count: int
    manifests: tuple[Manifest, ...] = ()
    problem: str | None = None
    tag_message: str = ""


@dataclass(frozen=True, slots=True)
class RevertRecord:
    """Manifests restored from ``ref`` and the commit that recorded the revert.

    ``commit`` is ``None`` if the manifests were already as in ``ref``. ``manifests`` are the
    restored ones (hand their snapshot ids to the engine to restore bytes); ``untracked`` lists
    tracked paths that ``ref`` did not have and that are therefore no longer tracked.
    """

    ref: str
    commit: str | None
    manifests: tuple[Manifest, ...]
    untracked: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ManifestChange:
    """A manifest that differs from HEAD in the working tree or index."""

    kind: str
    name: str
    path: str
    state: ChangeState


@dataclass(frozen=True, slots=True)
class WorkspaceStatus:
    """Where the workspace stands: branch (``None`` if detached), HEAD, changed manifests."""

    branch: str | None
    head: str | None
    changes: tuple[ManifestChange, ...] = field(default=())

    @property
    def clean(self) -> bool:
        """True if no manifest differs from HEAD."""
        return not self.changes


# -- the transaction -----------------------------------------------------------------------------


class _Transaction:
    """Undo log for one History operation (see the module docstring).

    It snapshots, before anything changes, the branch and its commit, the working-tree bytes and
    index entries of the cpv files the operation may touch, and every tag's target. On failure
    it puts back exactly those, in reverse order: tags, branch, files, index.
    """

    def __init__(self, repo: GitRepo, paths: Iterable[str]) -> None:
        self._repo = repo
        self._paths = sorted(set(paths))
        self._branch = repo.current_branch()
        self._head = repo.head_commit()
        self._files = {p: _read_bytes(repo.root / p) for p in self._paths}
        self._index: dict[str, IndexEntry] = repo.index_entries(self._paths)
        self._tags_before = repo.tag_targets()
        self._touched_tags: list[str] = []

    def touch_tag(self, name: str) -> None:
        """Call before creating or moving tag ``name``."""
        self._touched_tags.append(name)

    def __enter__(self) -> _Transaction:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None:
            log.info("rolling back after %s: %s", type(exc).__name__, exc)
            self.rollback()

    def rollback(self) -> None:
        """Put everything this transaction may have changed back; log (not raise) failures."""
        repo = self._repo
        try:
            now: dict[str, str] | None = repo.tag_targets()
        except CPVError:
            now = None
        for name in reversed(self._touched_tags):
            previous = self._tags_before.get(name)
            if now is not None and now.get(name) == previous:
                continue  # never created or moved (the step failed before git changed it)
            if previous is None:
                _best_effort(f"delete tag {name}", partial(repo.delete_tag, name))
            else:
                _best_effort(f"restore tag {name}", partial(repo.restore_tag, name, previous))
        current = repo.head_commit()
        if self._branch is not None and current != self._head:
            _best_effort(f"move {self._branch} back", partial(
                repo.set_branch_head, self._branch, self._head, expected=current))
        for path, data in self._files.items():
            _best_effort(f"restore {path}", partial(_restore_file, repo.root / path, data))
        _best_effort("restore the index", partial(repo.restore_index, self._paths, self._index))


def _best_effort(what: str, action: Callable[[], object]) -> None:
    try:
        action()
    except (CPVError, OSError) as exc:
        log.error("rollback: could not %s: %s", what, exc)


# -- History -------------------------------------------------------------------------------------


class History:
    """Manifests, versions and tags of one workspace (one Git repository).

    Args:
        repo: the workspace's Git repository (the caller opens and closes it).
    """

    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo

    @property
    def repo(self) -> GitRepo:
        """The Git adapter this history works on."""
        return self._repo

    def default_author(self) -> str:
        """``Name <email>`` to put in new manifests: git's identity here, or cpv's fallback."""
        return self._repo.author()

    # -- reading manifests -------------------------------------------------------------------

    def current_manifests(self, kind: Kind | None = None) -> list[Manifest]:
        """Manifests in the working tree (all kinds if ``kind`` is None), by kind then name.

        Raises:
            FormatError / UnsafePathError: a manifest file is damaged or hostile.
        """
        result: list[Manifest] = []
        for each in (KINDS if kind is None else (check_kind(kind),)):
            folder = self._repo.root / MANIFEST_DIR / each
            if not folder.is_dir():
                continue
            for file in sorted(folder.iterdir()):
                if not file.name.endswith(".json"):
                    continue
                relpath = f"{MANIFEST_DIR}/{each}/{file.name}"
                try:
                    text = file.read_bytes()
                except OSError as exc:
                    raise VersioningError(f"cannot read {relpath}: {exc}") from exc
                result.append(_parse_named(text, each, file.name[:-5], source=relpath))
        return result

    def current_manifest(self, kind: Kind, name: str) -> Manifest | None:
        """The working-tree manifest ``<kind>/<name>.json``, or ``None`` if there is none."""
        relpath = manifest_relpath(check_kind(kind), name)
        try:
            text = (self._repo.root / relpath).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise VersioningError(f"cannot read {relpath}: {exc}") from exc
        return _parse_named(text, kind, name, source=relpath)

    def read_manifests(self, ref: str, kind: Kind) -> dict[str, Manifest]:
        """All manifests of ``kind`` at ``ref`` (a tag, branch or commit), by name.

        Raises:
            TagNotFoundError: ``ref`` names nothing.
            FormatError / UnsafePathError: a manifest there is damaged or hostile.
        """
        return {name: m for name, (_, m) in self._read_raw(ref, check_kind(kind)).items()}

    def _read_raw(self, ref: str, kind: Kind) -> dict[str, tuple[bytes, Manifest]]:
        """Bytes and parsed manifest of each ``kind`` manifest at ``ref``."""
        commit = self._repo.resolve(ref)
        folder = f"{MANIFEST_DIR}/{kind}"
        result: dict[str, tuple[bytes, Manifest]] = {}
        for filename in self._repo.list_dir(commit, folder):
            if not filename.endswith(".json"):
                log.debug("ignoring %s/%s at %s: not a manifest", folder, filename, ref)
                continue
            name = filename[:-5]
            check_manifest_name(name)
            data = self._repo.show_bytes(commit, f"{folder}/{filename}")
            if data is None:  # pragma: no cover - listed a moment ago
                continue
            result[name] = (data, _parse_named(data, kind, name,
                                               source=f"{ref}:{folder}/{filename}"))
        return result

    def read_manifest(self, ref: str, kind: Kind, name: str) -> Manifest:
        """The manifest ``<kind>/<name>.json`` at ``ref``.

        Raises:
            TagNotFoundError: ``ref`` names nothing.
            VersioningError: ``ref`` exists but has no such manifest.
            FormatError / UnsafePathError: the manifest is damaged or hostile.
        """
        relpath = manifest_relpath(check_kind(kind), name)
        commit = self._repo.resolve(ref)
        data = self._repo.show_bytes(commit, relpath)
        if data is None:
            raise VersioningError(f"{ref} has no {kind} manifest {name!r}",
                                  hint=f"list what it has with 'cpv versions'; expected {relpath}")
        return _parse_named(data, kind, name, source=f"{ref}:{relpath}")

    # -- recording ---------------------------------------------------------------------------

    def record_version(
        self, manifest: Manifest, *, message: str | None = None, commit: bool = True
    ) -> VersionRecord:
        """Write ``manifest`` into the workspace, git-ignore its tracked path, and commit.

        Only cpv's files are committed (the manifest and ``.gitignore``); anything else the user
        changed or staged stays as it was. Call this only after the engine has made the
        snapshot durable in the store (invariant 1).

        Args:
            message: the commit message; default names the tracked path and snapshot.
            commit: False writes the files without committing (``commit`` is then ``None``).

        Raises:
            VersioningError: HEAD is detached (a commit there would be lost), or the tracked
                path clashes with another tracked path.
        """
        if commit:
            self._require_branch("record a version")
        relpath = manifest.relpath
        others = self._other_manifests(manifest.kind, manifest.name)
        same_name = self._current_manifest_lenient(manifest.kind, manifest.name)
        if same_name is not None and same_name.path != manifest.path:
            raise VersioningError(
                f"tracked path {manifest.path!r} would share manifest {relpath} with "
                f"{same_name.path!r}",
                hint="rename one of the two paths so their names differ",
            )
        _check_no_overlap([*others, manifest], error=VersioningError)
        self._warn_if_bytes_in_git(manifest.path)
        text = manifest.to_json().encode("utf-8")
        if commit and _read_bytes(self._repo.root / relpath) == text and not self._repo.is_dirty(
                [relpath, GITIGNORE]):
            return VersionRecord(commit=None, manifest=manifest, path=relpath, changed=False)
        with _Transaction(self._repo, [relpath, GITIGNORE]):
            _write_atomic(self._repo.root / relpath, text)
            self._write_gitignore([*others, manifest])
            sha = None
            if commit:
                sha = self._repo.commit_paths(
                    [relpath, GITIGNORE], message or _record_message(manifest))
        return VersionRecord(commit=sha, manifest=manifest, path=relpath,
                             changed=sha is not None or not commit)

    def rewrite_manifests(self, manifests: Sequence[Manifest], *, message: str) -> str | None:
        """Write new contents of existing current manifests (same kind and path) in one commit.

        For format changes such as ``cpv migrate`` turning schema-1 manifests into pointer
        manifests: the version each names stays the same, old tags keep their bytes. All or
        nothing (the transaction puts every file back on failure). Returns the commit.

        Raises:
            VersioningError: HEAD is detached, or a manifest is not a current one.
        """
        if not manifests:
            return None
        self._require_branch("rewrite the manifests")
        for manifest in manifests:
            current = self._current_manifest_lenient(manifest.kind, manifest.name)
            if current is None or current.path != manifest.path:
                raise VersioningError(f"{manifest.relpath} is not a current manifest of "
                                      f"{manifest.path!r}; nothing was rewritten")
        paths = [m.relpath for m in manifests]
        with _Transaction(self._repo, paths):
            for manifest in manifests:
                _write_atomic(self._repo.root / manifest.relpath,
                              manifest.to_json().encode("utf-8"))
            return self._repo.commit_paths(paths, message)

    # -- tags --------------------------------------------------------------------------------

    def versions(self, kind: Kind) -> dict[Version, str]:
        """Existing versions of ``kind`` -> tag name (unordered; see :meth:`list_versions`)."""
        return versions_of_kind(self._repo.tag_targets(), check_kind(kind))

    def next_version(self, kind: Kind) -> Version:
        """What auto-increment would pick for ``kind``: greatest existing minor + 1, or v0.1."""
        return next_version(self.versions(kind))

    def next_tag(self, kind: Kind) -> str:
        """The tag name auto-increment would create for ``kind`` (``v0.4``, ``data-v0.2``)."""
        return tag_name(kind, self.next_version(kind))

    def create_tag(
        self,
        kind: Kind,
        version: Version | str | None = None,
        *,
        message: str = "",
        metrics: Mapping[str, object] | str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        remote: str | None = None,
        params: Mapping[str, str] | None = None,
        line: str | None = None,
    ) -> TagRecord:
        """Tag the committed ``kind`` manifests at HEAD as a version.

        With ``line`` (a manifest name), only that manifest is tagged, on its own version line
        (``line_tag``: ``v0.1`` for ``model``, ``data-v0.1`` for ``data``, else ``line@v0.1``).

        Args:
            version: ``None`` auto-increments (``v0.9`` -> ``v0.10``); else ``"v1.0"``,
                ``"1.0"``, ``Version(1, 0)`` or the full tag of this kind.
            message: the tag message; the metrics are appended as a ``cpv-metrics:`` line.
            metrics: merged into the ``kind`` manifests first (one commit), so the manifest at
                the tag stays the authoritative copy. A mapping or a JSON file path.
            overwrite: move an existing tag instead of refusing.
            remote: also push the branch and the tag there, atomically with the rest.
            params: hyper-parameters merged into the ``kind`` manifests in the same commit as
                ``metrics`` (a name given again replaces its value).

        Raises:
            InvalidTagError, TagExistsError, DirtyWorkspaceError (uncommitted ``kind``
            manifests), VersioningError (nothing to tag), GitRemoteError (push refused; the
            local tag and commit are undone).
        """
        kind = check_kind(kind)
        resolved_metrics = resolve_metrics(metrics)
        lines = {kind: line} if line is not None else None
        chosen = self.choose_version((kind,), version, overwrite=overwrite, lines=lines)
        with self._begin_tagging((kind,), resolved_metrics, params,
                                 lines=lines) as (txn, manifests):
            (record,) = self._tag_all(txn, [(kind, manifests[kind])], chosen, message=message,
                                      overwrite=overwrite, lines=lines)
            if remote is not None:
                self._push_tags(remote, [record.tag], overwrite=overwrite)
                record = _with_pushed(record, remote)
        return record

    def create_combined_tag(
        self,
        version: Version | str | None = None,
        *,
        message: str = "",
        metrics: Mapping[str, object] | str | os.PathLike[str] | None = None,
        overwrite: bool = False,
        remote: str | None = None,
        params: Mapping[str, str] | None = None,
        default_lines: bool = False,
    ) -> CombinedTagRecord:
        """Tag model and data at HEAD with one number: ``vX.Y`` and ``data-vX.Y``, atomically.

        Auto-increment takes the greater of the two kinds' next versions, so neither tag exists
        yet. If any step fails (a tag creation, the metrics commit, the push), every tag this
        call created is deleted, moved tags are put back and the branch is restored.

        Args:
            version: as for :meth:`create_tag`; a ``data-`` tag is refused, give the bare number.
            metrics, params: merged into the *model* manifests (see :meth:`create_tag`).
            default_lines: tag only the seed layout's manifests (``model`` and ``data``), not
                the other tracked paths of each kind, which have version lines of their own.

        Raises:
            As :meth:`create_tag`.
        """
        resolved_metrics = resolve_metrics(metrics)
        lines: dict[Kind, str] | None = {k: k for k in KINDS} if default_lines else None
        chosen = self.choose_version(KINDS, version, overwrite=overwrite)
        with self._begin_tagging(KINDS, resolved_metrics, params,
                                 lines=lines) as (txn, manifests):
            model, data = self._tag_all(
                txn, [("model", manifests["model"]), ("data", manifests["data"])], chosen,
                message=message, overwrite=overwrite,
            )
            if remote is not None:
                self._push_tags(remote, [model.tag, data.tag], overwrite=overwrite)
                model, data = _with_pushed(model, remote), _with_pushed(data, remote)
        return CombinedTagRecord(version=chosen, model=model, data=data)

    def choose_version(
        self, kinds: Sequence[Kind], version: Version | str | None, *, overwrite: bool,
        lines: Mapping[Kind, str] | None = None,
    ) -> Version:
        tags = self._repo.tag_targets()
        if lines is not None and len(kinds) == 1 and lines[kinds[0]] not in KINDS:
            line = lines[kinds[0]]
            if version is None:
                return next_version(versions_of_line(tags, line))
            chosen = coerce_line_version(line, version)
            if line_tag(line, chosen) in tags and not overwrite:
                raise TagExistsError(line_tag(line, chosen))
            return chosen
        if version is None:
            return max(next_version(versions_of_kind(tags, k)) for k in kinds)
        chosen = coerce_version("model", version) if len(kinds) > 1 else coerce_version(
            kinds[0], version)
        for kind in kinds:
            name = tag_name(kind, chosen)
            if name in tags and not overwrite:
                raise TagExistsError(name)
        return chosen

    def _begin_tagging(
        self, kinds: Sequence[Kind], metrics: Mapping[str, float],
        params: Mapping[str, str] | None = None, *,
        lines: Mapping[Kind, str] | None = None,
    ) -> _TaggingContext:
        head = self._repo.head_commit()
        if head is None:
            raise VersioningError("nothing to tag: the repository has no commit yet",
                                  hint="upload a checkpoint first")
        manifests = {k: self.read_manifests(head, k) for k in kinds}
        if lines is not None:
            manifests = {k: {n: m for n, m in found.items() if n == lines[k]}
                         for k, found in manifests.items()}
        for kind in kinds:
            if not manifests[kind]:
                raise VersioningError(f"nothing to tag: no {kind} manifest is committed",
                                      hint=f"upload a {kind} checkpoint first")
        dirty = self._repo.changed_paths(
            [f"{MANIFEST_DIR}/{k}" for k in kinds] if lines is None
            else [manifest_relpath(k, lines[k]) for k in kinds])
        if dirty:
            raise DirtyWorkspaceError(
                "manifests have uncommitted changes that the tag would not include",
                paths=[c.path for c in dirty],
                hint="record them (upload again) or revert them before tagging",
            )
        metrics_kind = kinds[0]
        paths = [m.relpath for k in kinds for m in manifests[k].values()]
        if metrics or params:
            self._require_branch("record metrics")
        return _TaggingContext(self, paths, manifests, metrics_kind, metrics, params or {})

    def _tag_all(
        self,
        txn: _Transaction,
        kinds: Sequence[tuple[Kind, Mapping[str, Manifest]]],
        version: Version,
        *,
        message: str,
        overwrite: bool,
        lines: Mapping[Kind, str] | None = None,
    ) -> list[TagRecord]:
        """Create the tags of ``kinds`` at HEAD in one Git reference transaction.

        One transaction, not one ``git tag`` per kind: a process killed between two commands
        would leave ``v0.2`` without ``data-v0.2`` for ever, which no rollback can undo.
        """
        commit = self._repo.resolve("HEAD")
        records: list[TagRecord] = []
        specs: list[tuple[str, str, str]] = []
        for kind, manifests in kinds:
            name = tag_name(kind, version) if lines is None else line_tag(lines[kind], version)
            metrics = merge_metrics(*(manifests[n].metrics for n in sorted(manifests)))
            body = message.strip() or f"{kind} version {name}"
            txn.touch_tag(name)
            specs.append((name, f"{body}\n\n{format_metrics_trailer(metrics)}\n", commit))
            records.append(TagRecord(tag=name, kind=kind, version=version, commit=commit,
                                     metrics=MappingProxyType(metrics),
                                     manifests=tuple(manifests[n] for n in sorted(manifests))))
        self._repo.create_tags(specs, force=overwrite)
        log.info("tagged %s at %s", ", ".join(r.tag for r in records), commit[:12])
        return records

    def _push_tags(self, remote: str, tags: Sequence[str], *, overwrite: bool) -> None:
        self._repo.push(remote, branch=self._repo.current_branch(), tags=tags,
                        force_tags=tags if overwrite else ())

    # -- listing -----------------------------------------------------------------------------

    def list_versions(self, kind: Kind, *, line: str | None = None) -> list[VersionInfo]:
        """Every ``kind`` version, oldest first (numeric order: v0.9 before v0.10).

        With ``line`` (a manifest name), the versions of that one tracked path: its tags
        (:func:`~cpv.versioning.tags.line_tag`) and its manifest alone at each.
        """
        kind = check_kind(kind)
        infos: list[VersionInfo] = []
        for tag in self._repo.list_tags():
            parsed: tuple[str, Version] | None
            if line is None:
                parsed = try_parse_tag(tag.name)
                if parsed is None or parsed[0] != kind:
                    continue
            else:
                parsed = parse_line_tag(tag.name)
                if parsed is None or parsed[0] != line:
                    continue
            problem: str | None = None
            manifests: tuple[Manifest, ...] = ()
            try:
                found = self.read_manifests(tag.commit, kind)
                manifests = tuple(found[n] for n in sorted(found) if line in (None, n))
            except CPVError as exc:
                problem = exc.one_line().replace(tag.commit, tag.name)
            metrics: dict[str, float] = {}
            if manifests:
                metrics = merge_metrics(*(m.metrics for m in manifests))
            elif problem is None:
                # A tag made outside cpv (or before any manifest): the message may still say.
                metrics = parse_metrics_trailer(tag.message) or {}
            infos.append(VersionInfo(
                tag=tag.name, kind=kind, version=parsed[1], commit=tag.commit, date=tag.date,
                author=tag.tagger,
                message=next((m.message for m in manifests if m.message), "")
                or strip_metrics_trailer(tag.message),
                tag_message=strip_metrics_trailer(tag.message),
                metrics=MappingProxyType(metrics),
                total_size=sum(m.total_size for m in manifests),
                file_count=sum(m.file_count for m in manifests),
                manifests=manifests, problem=problem,
            ))
        infos.sort(key=lambda info: info.version)
        return infos

    def compare_metrics(self, ref_a: str, ref_b: str, *, kind: Kind = "model") -> list[MetricDelta]:
        """Per-metric ``(a, b, b - a)`` rows between two versions' ``kind`` manifests."""
        def metrics_at(ref: str) -> dict[str, float]:
            found = self.read_manifests(ref, kind)
            return merge_metrics(*(found[n].metrics for n in sorted(found)))

        return compare(metrics_at(ref_a), metrics_at(ref_b))

    # -- revert ------------------------------------------------------------------------------

    def revert(
        self,
        ref: str,
        *,
        kinds: Sequence[Kind] = KINDS,
        discard_local_changes: bool = False,
        message: str | None = None,
        line: str | None = None,
    ) -> RevertRecord:
        """Make the ``kinds`` manifests what they were at ``ref``, as a new commit.

        History is kept (no reset, no detached checkout): the revert is a commit on the current
        branch, so it can be pushed, and reverted in turn. The ``.gitignore`` block follows the
        restored manifests; the rest of ``.gitignore`` is left as it is. The bytes are not
        touched: restore them from the returned manifests' snapshot ids.

        Args:
            ref: a version tag (``v1.0``, ``data-v1.0``), branch or commit.
            kinds: which manifests to restore.
            discard_local_changes: overwrite uncommitted manifest edits instead of refusing.
            line: restore only the manifest of that name (one tracked path's version line);
                the other tracked paths of the kind stay as they are.

        Raises:
            TagNotFoundError: ``ref`` names nothing.
            DirtyWorkspaceError: those manifests have uncommitted changes (nothing was changed).
            VersioningError: HEAD is detached.
            FormatError / UnsafePathError: a manifest at ``ref`` is damaged or hostile (nothing
                was written).
        """
        kinds = tuple(dict.fromkeys(check_kind(k) for k in kinds))
        if not kinds:
            raise ValueError("revert needs at least one kind")
        self._require_branch(f"revert to {ref}")
        commit = self._repo.resolve(ref)
        # Read and validate everything first: a hostile manifest stops us before any write.
        raw = {k: self._read_raw(commit, k) for k in kinds}
        if line is not None:
            raw = {k: {n: v for n, v in found.items() if n == line} for k, found in raw.items()}
        target = {k: {n: m for n, (_, m) in raw[k].items()} for k in kinds}
        dirs = ([f"{MANIFEST_DIR}/{k}" for k in kinds] if line is None
                else [manifest_relpath(k, line) for k in kinds])
        dirty = self._repo.changed_paths(dirs)
        if dirty and not discard_local_changes:
            raise DirtyWorkspaceError(
                f"cannot revert to {ref}: manifests have uncommitted changes",
                paths=[c.path for c in dirty],
                hint="commit or discard them first, or pass discard_local_changes=True / --force",
            )
        kept = [m for m in self._current_manifests_lenient()
                if m.kind not in kinds or line not in (None, m.name)]
        restored = [m for k in kinds for m in target[k].values()]
        _check_no_overlap([*kept, *restored], error=FormatError)
        before = {k: {p for p in self._manifest_paths_anywhere(k)
                      if line is None or p == manifest_relpath(k, line)} for k in kinds}
        touched = {p for k in kinds for p in before[k]}
        touched |= {manifest_relpath(k, n) for k in kinds for n in target[k]}
        touched.add(GITIGNORE)
        untracked: list[str] = []
        with _Transaction(self._repo, touched):
            for kind in kinds:
                wanted = {manifest_relpath(kind, n) for n in target[kind]}
                for relpath in before[kind] - wanted:
                    old = _read_bytes(self._repo.root / relpath)
                    if old is not None:
                        try:
                            untracked.append(Manifest.from_json(old, source=relpath).path)
                        except CPVError:
                            untracked.append(relpath)
                    _remove(self._repo.root / relpath)
                for name, (data, _) in raw[kind].items():
                    _write_atomic(self._repo.root / manifest_relpath(kind, name), data)
            self._write_gitignore([*kept, *restored])
            sha = self._repo.commit_paths(
                sorted(touched), message or f"cpv: revert {', '.join(kinds)} to {ref}")
        return RevertRecord(ref=ref, commit=sha, manifests=tuple(restored),
                            untracked=tuple(sorted(untracked)))

    def snapshots_in_history(self) -> dict[str, list[str]]:
        """Every snapshot id any manifest ever recorded on any branch or tag, with where.

        Never a liveness source for deleting: this clone's history may be shallow, stale,
        forked or merged. gc decides from the roots in the store (``cpv/engine/roots.py``);
        this list may only add protection, or tell a migration which snapshots Git knows.

        Raises:
            FormatError / UnsafePathError: a manifest in history is damaged; the caller must not
                guess what it referenced.
        """
        found: dict[str, list[str]] = {}
        for path, data in self._repo.history_blobs(MANIFEST_DIR):
            if not path.endswith(".json"):
                continue
            manifest = Manifest.from_json(data, source=f"history:{path}")
            found.setdefault(manifest.snapshot_id, []).append(path)
        return found

    # -- status, push, fetch -----------------------------------------------------------------

    def status(self) -> WorkspaceStatus:
        """Which manifests differ from HEAD (added, modified, deleted), and where HEAD is."""
        changes: list[ManifestChange] = []
        for change in self._repo.changed_paths([MANIFEST_DIR]):
            parts = change.path.split("/")
            if len(parts) != 4 or not parts[3].endswith(".json"):
                continue
            code = change.code
            state: ChangeState = (
                "deleted" if "D" in code else "added" if code in ("??", "A ", "AM") else "modified"
            )
            changes.append(ManifestChange(kind=parts[2], name=parts[3][:-5], path=change.path,
                                          state=state))
        return WorkspaceStatus(branch=self._repo.current_branch(),
                               head=self._repo.head_commit(), changes=tuple(changes))

    def push(self, remote: str = "origin", *, force_tags: Sequence[str] = ()) -> None:
        """Push the current branch and every version tag to ``remote``, atomically.

        A version tag the remote holds at another commit is refused unless listed in
        ``force_tags``. With a detached HEAD only the tags are pushed.

        Raises:
            GitRemoteError: the remote refused (nothing was updated there) or is unreachable.
        """
        tags = sorted(n for n in self._repo.tag_targets() if parse_line_tag(n) is not None)
        self._repo.push(remote, branch=self._repo.current_branch(), tags=tags,
                        force_tags=force_tags)

    def fetch(self, remote: str = "origin", *, force_tags: bool = False) -> None:
        """Fetch commits and tags from ``remote`` (then list or read the versions it holds)."""
        self._repo.fetch(remote, force_tags=force_tags)

    def unpublished(self, remote: str) -> tuple[int, list[str]]:
        """Commits of the current branch and version tags that ``remote`` does not have yet.

        Raises:
            GitRemoteError: the remote cannot be reached (tags are listed there).
        """
        branch = self._repo.current_branch()
        ahead = self._repo.commits_ahead(remote, branch) if branch else 0
        there = self._repo.remote_tags(remote)
        local = self._repo.tag_targets()
        lines = {n: parsed for n, oid in local.items()
                 if there.get(n) != oid and (parsed := parse_line_tag(n)) is not None}
        tags = sorted(lines, key=lambda n: (n.startswith("data-"), "@" in n, lines[n]))
        return ahead, tags

    def publish(self, remote: str, *, force_tags: Sequence[str] = ()) -> tuple[int, list[str]]:
        """Push what ``remote`` lacks: the branch's commits and version tags, in one atomic push.

        Anything an earlier command left unpublished (a Ctrl-C in its Git step, an unreachable
        remote) goes with it. Sets the branch's upstream the first time, and points an
        empty-headed bare remote on this machine at the branch (see
        :meth:`GitRepo.adopt_local_remote_head`).

        Returns:
            The number of commits and the tags that were published.

        Raises:
            GitRemoteError: the remote refused (nothing was updated there) or is unreachable.
        """
        ahead, tags = self.unpublished(remote)
        branch = self._repo.current_branch()
        if not ahead and not tags:
            return 0, []
        there = self._repo.remote_tags(remote)
        moved = [t for t in tags if t in there and t in force_tags]
        refused = [t for t in tags if t in there and t not in force_tags]
        if refused:
            raise GitRemoteError(
                f"the remote holds {refused[0]} at another version than this clone",
                hint="fetch it ('git fetch --tags --force') and look before moving it; "
                     "'cpv tag VERSION --force' moves a tag on purpose")
        self._repo.push(remote, branch=branch if ahead else None, tags=tags, force_tags=moved)
        if branch:
            self._repo.set_upstream(remote, branch)
            self._repo.adopt_local_remote_head(remote, branch)
        return ahead, tags

    # -- helpers -----------------------------------------------------------------------------

    def _require_branch(self, action: str) -> None:
        if self._repo.current_branch() is None:
            raise VersioningError(
                f"cannot {action}: HEAD is detached, a commit here would belong to no branch",
                hint="switch to a branch first, e.g. 'git switch main'",
            )

    def _other_manifests(self, kind: Kind, name: str) -> list[Manifest]:
        """Working-tree manifests except ``<kind>/<name>.json`` (which is being replaced)."""
        result: list[Manifest] = []
        for each in KINDS:
            folder = self._repo.root / MANIFEST_DIR / each
            if not folder.is_dir():
                continue
            for file in sorted(folder.glob("*.json")):
                if each == kind and file.name == f"{name}.json":
                    continue
                relpath = f"{MANIFEST_DIR}/{each}/{file.name}"
                data = _read_bytes(file)
                if data is not None:
                    result.append(_parse_named(data, each, file.name[:-5], source=relpath))
        return result

    def _current_manifest_lenient(self, kind: Kind, name: str) -> Manifest | None:
        try:
            return self.current_manifest(kind, name)
        except CPVError as exc:
            log.warning("replacing unreadable manifest %s: %s", manifest_relpath(kind, name), exc)
            return None

    def _current_manifests_lenient(self) -> list[Manifest]:
        """Working-tree manifests; a damaged one is skipped (it is about to be replaced)."""
        result: list[Manifest] = []
        for kind in KINDS:
            folder = self._repo.root / MANIFEST_DIR / kind
            if not folder.is_dir():
                continue
            for file in sorted(folder.glob("*.json")):
                try:
                    result.append(_parse_named(file.read_bytes(), kind, file.name[:-5],
                                               source=str(file)))
                except (CPVError, OSError) as exc:
                    log.warning("ignoring unreadable manifest %s: %s", file, exc)
        return result

    def _manifest_paths_anywhere(self, kind: Kind) -> set[str]:
        """Manifest files of ``kind`` in the working tree, the index or HEAD."""
        folder = f"{MANIFEST_DIR}/{kind}"
        found = {f"{folder}/{p.name}" for p in (self._repo.root / folder).glob("*.json")}
        found |= {p for p in self._repo.index_entries([folder]) if p.endswith(".json")}
        head = self._repo.head_commit()
        if head is not None:
            found |= {f"{folder}/{n}" for n in self._repo.list_dir(head, folder)
                      if n.endswith(".json")}
        return found

    def _write_gitignore(self, manifests: Sequence[Manifest]) -> None:
        path = self._repo.root / GITIGNORE
        current = _read_bytes(path)
        text = current.decode("utf-8", errors="surrogateescape") if current is not None else ""
        wanted = {_ignore_line(m) for m in manifests}
        # A path that is no longer tracked (after a revert) keeps its line while its bytes are
        # still on disk, so a later 'git add -A' cannot sweep gigabytes into Git.
        for line in managed_lines(text):
            on_disk = _unescape_ignore(line)
            if line not in wanted and on_disk and os.path.lexists(self._repo.root / on_disk):
                wanted.add(line)
        updated = render_gitignore(text, sorted(wanted))
        if current is None and not wanted:
            return
        encoded = updated.encode("utf-8", errors="surrogateescape")
        if encoded != current:
            _write_atomic(path, encoded)

    def _warn_if_bytes_in_git(self, tracked_path: str) -> None:
        if self._repo.index_entries([tracked_path]):
            log.warning(
                "%s has files committed in Git; cpv ignores the path from now on, but they stay "
                "in Git until you run: git rm -r --cached %s", tracked_path, tracked_path)


class _TaggingContext:
    """Opens the transaction of a tagging call and commits metrics first, if any were given."""

    def __init__(
        self,
        history: History,
        paths: list[str],
        manifests: dict[Kind, dict[str, Manifest]],
        metrics_kind: Kind,
        metrics: Mapping[str, float],
        params: Mapping[str, str],
    ) -> None:
        self._history = history
        self._params = params
        self._manifests = manifests
        self._metrics_kind = metrics_kind
        self._metrics = metrics
        self._txn = _Transaction(history.repo, [*paths, GITIGNORE])

    def __enter__(self) -> tuple[_Transaction, dict[Kind, dict[str, Manifest]]]:
        self._txn.__enter__()
        try:
            if self._metrics or self._params:
                self._commit_metrics()
        except BaseException as exc:
            self._txn.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return self._txn, self._manifests

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._txn.__exit__(exc_type, exc, tb)

    def _commit_metrics(self) -> None:
        repo = self._history.repo
        kind = self._metrics_kind
        updated: dict[str, Manifest] = {}
        for name, manifest in self._manifests[kind].items():
            updated[name] = manifest.replace(
                metrics=merge_metrics(manifest.metrics, self._metrics),
                params={**manifest.params, **self._params})
            _write_atomic(repo.root / manifest.relpath, updated[name].to_json().encode("utf-8"))
        names = ", ".join(sorted({*self._metrics, *self._params}))
        repo.commit_paths([m.relpath for m in updated.values()], f"cpv: {kind} metrics ({names})")
        self._manifests[kind] = updated


# -- module helpers ------------------------------------------------------------------------------


def _parse_named(data: bytes | str, kind: Kind, name: str, *, source: str) -> Manifest:
    """Parse a manifest found at ``<kind>/<name>.json`` and check it belongs there."""
    check_manifest_name(name)
    manifest = Manifest.from_json(data, source=source)
    if manifest.kind != kind or manifest.name != name:
        raise FormatError(
            f"{source}: holds a {manifest.kind} manifest of {manifest.path!r}, which belongs "
            f"at {manifest.relpath}",
            hint="the manifest was moved or edited by hand; restore it from Git history",
        )
    return manifest


def _check_no_overlap(manifests: Sequence[Manifest], *, error: type[CPVError]) -> None:
    """Refuse two tracked paths where one is, or is inside, the other."""
    paths = sorted((m.path, m.relpath) for m in manifests)
    for (a, rel_a), (b, rel_b) in itertools.pairwise(paths):
        if a == b or b.startswith(a + "/"):
            raise error(
                f"tracked paths overlap: {a!r} ({rel_a}) and {b!r} ({rel_b})",
                hint="track sibling folders (data/train, data/test), not one inside another",
            )


def _ignore_line(manifest: Manifest) -> str:
    escaped = "".join("\\" + ch if ch in _GITIGNORE_SPECIAL else ch for ch in manifest.path)
    return f"/{escaped}/" if manifest.is_dir else f"/{escaped}"


def _unescape_ignore(line: str) -> str | None:
    """The workspace path of one of cpv's ignore lines (``/we\\ ird/`` -> ``we ird``).

    ``None`` for anything that is not a plain relative path (the file may be someone else's).
    """
    path = re.sub(r"\\(.)", r"\1", line.strip("/"))
    parts = path.split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "*" in line.replace("\\*", ""):
        return None
    return path


def managed_lines(text: str) -> list[str]:
    """The pattern lines inside cpv's block of a ``.gitignore`` (comments skipped)."""
    lines = text.splitlines()
    starts = [i for i, ln in enumerate(lines) if ln.strip() == BLOCK_START]
    ends = [i for i, ln in enumerate(lines) if ln.strip() == BLOCK_END]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        return []
    return [ln for ln in lines[starts[0] + 1: ends[0]]
            if ln.strip() and not ln.startswith("#") and ln.startswith("/")]


def render_gitignore(text: str, lines: Sequence[str]) -> str:
    """``text`` (a ``.gitignore``) with cpv's managed block set to ``lines``.

    The block sits between ``# >>> cpv managed`` and ``# <<< cpv managed``; everything outside
    it is kept byte for byte (line endings included). A missing block is appended.

    Raises:
        VersioningError: the block markers are unbalanced or repeated.
    """
    newline = "\r\n" if "\r\n" in text else "\n"
    source = text.splitlines()
    starts = [i for i, ln in enumerate(source) if ln.strip() == BLOCK_START]
    ends = [i for i, ln in enumerate(source) if ln.strip() == BLOCK_END]
    block = [BLOCK_START, _BLOCK_NOTE, *lines, BLOCK_END]
    if not starts and not ends:
        body = text
        if body and not body.endswith(("\n", "\r")):
            body += newline
        if body.strip():
            body += newline
        return body + newline.join(block) + newline
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise VersioningError(
            ".gitignore has a damaged cpv block",
            hint=f"keep exactly one '{BLOCK_START}' line followed by one '{BLOCK_END}' line",
        )
    result = [*source[: starts[0]], *block, *source[ends[0] + 1:]]
    return newline.join(result) + newline


def _record_message(manifest: Manifest) -> str:
    subject = (f"cpv: record {manifest.kind} {manifest.path} "
               f"(snapshot {manifest.snapshot_id[:12]}, {manifest.file_count} files, "
               f"{manifest.total_size} bytes)")
    return f"{subject}\n\n{manifest.message}\n" if manifest.message.strip() else subject + "\n"


def _with_pushed(record: TagRecord, remote: str) -> TagRecord:
    return TagRecord(tag=record.tag, kind=record.kind, version=record.version,
                     commit=record.commit, metrics=record.metrics, manifests=record.manifests,
                     pushed_to=remote)


def _read_bytes(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise VersioningError(f"cannot read {path}: {exc}") from exc


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a process-unique temporary file in the same folder, then rename over."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise VersioningError(f"cannot write {path}: {exc}") from exc


def _remove(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        raise VersioningError(f"cannot remove {path}: {exc}") from exc


def _restore_file(path: Path, data: bytes | None) -> None:
    if data is None:
        _remove(path)
    elif _read_bytes(path) != data:
        _write_atomic(path, data)
