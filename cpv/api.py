"""The Python API users expect from the seed design, as a thin facade over engine + versioning.

Each method validates its inputs, asks the engine to move bytes, asks versioning to record or
read history, and returns a typed result. It contains no loops over files, no S3 calls, no Git
calls and no printing (STYLE §7). Options are explicit keyword-only parameters: a misspelt one
(``dryrun=True``) is a ``TypeError``, not silently ignored as the seed's ``**kwargs`` were.

Meaning of the seed's flags here:

- ``dry_run``: compute and return what would happen (bytes to upload, next tag); touch nothing.
- ``verbose``: log progress at INFO to stderr for the duration of the call.
- ``force``: upload → re-hash every file (ignore the stat cache) and move an existing tag;
  tag → move an existing tag; revert/download → overwrite local changes.
  It never means "upload everything again": content addressing makes that pointless.
- ``notify``: POST a JSON event to ``notify.webhook_url`` (Slack/Teams); a failed notification
  is logged, never fatal, since the version is already recorded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from typing_extensions import Self

from cpv.config import CPVConfig as _BaseConfig
from cpv.engine import PullResult, PushResult, pull, push
from cpv.engine.hashing import Hasher
from cpv.engine.statcache import FileStamp
from cpv.errors import (
    ConfigError,
    CPVError,
    DirtyWorkspaceError,
    GitRemoteError,
    LocalIOError,
    NotAWorkspaceError,
    VersioningError,
)
from cpv.notify import NotifyError, post_event
from cpv.progress import NULL_PROGRESS, Progress
from cpv.versioning import (
    GitRepo,
    Manifest,
    MetricDelta,
    VersionInfo,
    compare,
    manifest_for_files,
    resolve_metrics,
)
from cpv.workspace import (
    DATA_SPLITS,
    TRACKED,
    WORKSPACE_ID_FILE,
    Kind,
    Workspace,
    exclude_internal,
)

log = logging.getLogger(__name__)

MB = 1024 * 1024


# -- configuration -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """One line of :meth:`CPVConfig.validate_credentials`."""

    name: str
    ok: bool
    detail: str


class CPVConfig(_BaseConfig):
    """cpv's configuration (see :mod:`cpv.config`), plus the seed's ``validate_credentials``."""

    def validate_credentials(self, *, workspace: str | Path | None = None) -> list[CredentialCheck]:
        """Really check that the store and the Git remote can be reached with these settings.

        Returns one :class:`CredentialCheck` per thing checked; never raises for a failed check.
        """
        from cpv.engine.format import read_store_config
        from cpv.store import open_store

        checks = []
        url = self.store_url(workspace=workspace)
        try:
            store = open_store(
                url,
                profile=self.aws.profile,
                region=self.aws.region,
                endpoint_url=self.aws.endpoint_url,
            )
            try:
                cfg = read_store_config(store)
                checks.append(
                    CredentialCheck("store", True, f"{url}: cpv store format {cfg.version}")
                )
            finally:
                store.close()
        except CPVError as exc:
            checks.append(CredentialCheck("store", False, f"{url}: {exc.one_line()}"))
        if self.git.remote_url:
            try:
                GitRepo.check_remote(self.git.remote_url, ssh_command=self.git_ssh_command)
                checks.append(CredentialCheck("git remote", True, self.git.remote_url))
            except CPVError as exc:
                checks.append(CredentialCheck("git remote", False, exc.one_line()))
        return checks


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelArtifacts:
    """A model version on disk (seed type, with the snapshot id added)."""

    model_path: str
    metrics: dict[str, float]
    timestamp: str
    tag: str
    size_mb: float
    snapshot_id: str = ""
    files: int = 0


@dataclass(frozen=True, slots=True)
class DataArtifacts:
    """A data version on disk (seed type). ``sample_count`` is the number of files."""

    data_path: str
    version: str
    timestamp: str
    tag: str
    size_mb: float
    sample_count: int | None = None
    splits: dict[str, int] = field(default_factory=dict)
    snapshot_id: str = ""


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What an upload did (or, with ``dry_run``, would do)."""

    kind: Kind
    snapshot_id: str
    commit: str | None
    files: int
    total_bytes: int
    uploaded_bytes: int
    new_bytes: int
    chunks_new: int
    chunks_reused: int
    seconds: float
    dry_run: bool
    changed: bool
    next_tag: str | None = None
    pushed_to: str | None = None

    @property
    def size_mb(self) -> float:
        return self.total_bytes / MB


@dataclass(frozen=True, slots=True)
class RevertResult:
    tag: str
    kinds: tuple[Kind, ...]
    commit: str | None
    files_written: int
    downloaded_bytes: int


@dataclass(frozen=True, slots=True)
class InitResult:
    workspace: Path
    store_url: str
    created: bool
    remote: str | None


# -- helpers shared by the facades -----------------------------------------------------------


@contextlib.contextmanager
def _verbose_logging(enabled: bool) -> Iterator[None]:
    """INFO logs of the ``cpv`` logger on stderr for one call, unless the app set up logging."""
    logger = logging.getLogger("cpv")
    if not enabled or logger.handlers or logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("cpv: %(message)s"))
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


def _default_workspace(model_name: str | None, workspace: str | Path | None) -> Path:
    if workspace is not None:
        return Path(workspace).expanduser().absolute()
    if model_name:
        return (Path.cwd() / model_name).absolute()
    return Path.cwd().absolute()


def _local_changes(ws: Workspace, kind: Kind) -> list[str]:
    """Files of the tracked folder that differ from its current manifest (cheap via stat cache).

    These would be lost by a revert or a download over them, so callers refuse unless forced.
    """
    manifest = ws.history.current_manifest(kind, TRACKED[kind])
    folder = ws.tracked_dir(kind)
    recorded = {f.path: f for f in manifest.files} if manifest else {}
    if not folder.exists():
        return []
    cache = ws.repository().stat_cache if manifest else None
    changed = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        rel = path.relative_to(folder).as_posix()
        if exclude_internal(rel):
            continue
        entry = recorded.get(rel)
        if entry is None:
            changed.append(f"{TRACKED[kind]}/{rel}")
            continue
        st = path.stat()
        if st.st_size != entry.size:
            changed.append(f"{TRACKED[kind]}/{rel}")
            continue
        hit = cache.lookup(path.absolute(), FileStamp.of(st)) if cache else None
        digest = hit.blake3 if hit else _hash_path(path)
        if digest != entry.blake3:
            changed.append(f"{TRACKED[kind]}/{rel}")
    return changed


def _hash_path(path: Path) -> str:
    h = Hasher()
    with open(path, "rb") as fh:
        while block := fh.read(8 * MB):
            h.update(block)
    return h.hexdigest()


def _remove_extra_files(folder: Path, keep: set[str]) -> None:
    """Delete files under ``folder`` that the restored version does not have."""
    for path in sorted(folder.rglob("*"), reverse=True):
        rel = path.relative_to(folder).as_posix()
        if path.is_dir() and not path.is_symlink():
            with contextlib.suppress(OSError):
                path.rmdir()  # only succeeds when empty
        elif rel not in keep and not exclude_internal(rel):
            path.unlink()


class _Facade:
    """Shared plumbing of the model and data facades (one workspace, one kind)."""

    kind: Kind

    def __init__(
        self,
        team_name: str | None = None,
        model_name: str | None = None,
        *,
        workspace: str | Path | None = None,
        config: _BaseConfig | None = None,
        progress: Progress | None = None,
        verbose: bool = False,
    ) -> None:
        self.workspace_dir = _default_workspace(model_name, workspace)
        if config is None:
            config = CPVConfig.load(workspace=self.workspace_dir)
        changes: dict[str, Any] = {}
        if team_name is not None:
            changes["team"] = team_name
        if model_name is not None:
            changes["model"] = model_name
        self.config = config.replace(**changes) if changes else config
        self.team_name = self.config.team
        self.model_name = self.config.model
        self.progress = progress or NULL_PROGRESS
        self.verbose = verbose
        self._ws: Workspace | None = None

    # The workspace is opened lazily: import_*_init creates it first.
    @property
    def ws(self) -> Workspace:
        if self._ws is None:
            self._ws = Workspace.open(
                self.workspace_dir, config=self.config, progress=self.progress
            )
        return self._ws

    def close(self) -> None:
        if self._ws is not None:
            self._ws.close()
            self._ws = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _notify(self, enabled: bool, event: Mapping[str, object]) -> None:
        if not enabled:
            return
        url = self.config.notify.webhook_url
        if not url:
            log.warning("notify requested but notify.webhook_url is not configured")
            return
        try:
            post_event(url, {"team": self.team_name, "model": self.model_name, **event})
        except NotifyError as exc:
            log.warning("notification failed (the version is recorded): %s", exc)

    def _init(
        self,
        *,
        data_path: str | Path | None,
        store_url: str | None,
        remote_url: str | None,
        dry_run: bool,
    ) -> InitResult:
        return init_workspace(
            self.workspace_dir,
            config=self.config,
            data_path=data_path,
            store_url=store_url,
            remote_url=remote_url,
            dry_run=dry_run,
        )

    def _upload(
        self,
        path: str | Path | None,
        *,
        metrics: Mapping[str, float] | str | Path | None,
        message: str,
        dry_run: bool,
        force: bool,
        notify: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> UploadResult:
        result = self._upload_unnotified(
            path, metrics=metrics, message=message, dry_run=dry_run, force=force, extra=extra
        )
        log.info("%s: %d files, %.1f MB, %.1f MB uploaded", self.kind, result.files,
                 result.size_mb, result.uploaded_bytes / MB)
        if not dry_run:
            self._notify(notify, {"event": "upload", "kind": self.kind,
                                  "snapshot_id": result.snapshot_id, "commit": result.commit})
        return result

    def _upload_unnotified(
        self,
        path: str | Path | None,
        *,
        metrics: Mapping[str, float] | str | Path | None,
        message: str,
        dry_run: bool,
        force: bool,
        extra: Mapping[str, Any] | None = None,
    ) -> UploadResult:
        ws = self.ws
        source = Path(path).absolute() if path is not None else ws.tracked_dir(self.kind)
        if not source.exists():
            raise LocalIOError(
                f"nothing to upload: {source} does not exist",
                path=str(source),
                hint=f"put the {self.kind} files in {ws.tracked_dir(self.kind)} or pass a path",
            )
        repo = ws.repository(create=not dry_run)
        result: PushResult = push(
            repo,
            source,
            exclude=exclude_internal,
            progress=self.progress,
            limits=ws.limits,
            dry_run=dry_run,
            rehash=force,
            meta={"workspace": ws.workspace_id} if ws.workspace_id else None,
        )
        resolved = resolve_metrics(metrics) if metrics is not None else {}
        files = [(f.path, f.size, f.blake3) for f in result.snapshot.files if not f.is_symlink]
        split_counts = _split_counts(files) if self.kind == "data" else {}
        manifest = manifest_for_files(
            kind=self.kind,
            path=TRACKED[self.kind],
            snapshot_id=result.snapshot_id,
            store_url=ws.store_url,
            files=files,
            is_dir=source.is_dir(),
            message=message,
            author=ws.history.default_author(),
            metrics=resolved,
            extra={**{f"samples.{k}": v for k, v in split_counts.items()}, **(extra or {})},
        )
        if dry_run:
            return UploadResult(
                kind=self.kind,
                snapshot_id=result.snapshot_id,
                commit=None,
                files=result.files,
                total_bytes=result.total_bytes,
                uploaded_bytes=0,
                new_bytes=result.new_bytes,
                chunks_new=result.chunks_new,
                chunks_reused=result.chunks_reused,
                seconds=result.seconds,
                dry_run=True,
                changed=True,
                next_tag=ws.history.next_tag(self.kind),
            )
        current = ws.history.current_manifest(self.kind, TRACKED[self.kind])
        if (
            current is not None
            and current.snapshot_id == result.snapshot_id
            and (not resolved or dict(current.metrics) == resolved)
            and (not message or current.message == message)
            and not ws.history.status().changes
        ):
            # Same bytes, nothing new to say: no new version, no empty commit.
            return UploadResult(
                kind=self.kind, snapshot_id=result.snapshot_id, commit=None, files=result.files,
                total_bytes=result.total_bytes, uploaded_bytes=result.uploaded_bytes,
                new_bytes=result.new_bytes, chunks_new=result.chunks_new,
                chunks_reused=result.chunks_reused, seconds=result.seconds, dry_run=False,
                changed=False,
            )
        # Invariant 1: the snapshot is durable in the store; only now does Git reference it.
        record = ws.history.record_version(manifest, message=message or None)
        pushed_to = None
        if ws.remote and record.changed:
            try:
                ws.history.push(ws.remote)
                pushed_to = ws.remote
            except GitRemoteError as exc:
                raise GitRemoteError(
                    f"uploaded and committed {record.commit}, but pushing to the Git remote "
                    f"failed: {exc}",
                    hint="the data is uploaded; fix the remote, then 'git pull --rebase' if it "
                    "moved on, and 'git push --follow-tags' in the workspace",
                ) from exc
        return UploadResult(
            kind=self.kind,
            snapshot_id=result.snapshot_id,
            commit=record.commit,
            files=result.files,
            total_bytes=result.total_bytes,
            uploaded_bytes=result.uploaded_bytes,
            new_bytes=result.new_bytes,
            chunks_new=result.chunks_new,
            chunks_reused=result.chunks_reused,
            seconds=result.seconds,
            dry_run=False,
            changed=record.changed,
            pushed_to=pushed_to,
        )

    def _tag(
        self,
        version_tag: str | None,
        *,
        message: str | None,
        metrics: Mapping[str, float] | str | Path | None,
        force: bool,
        dry_run: bool,
        notify: bool = False,
    ) -> str:
        tag = self._tag_unnotified(
            version_tag, message=message, metrics=metrics, force=force, dry_run=dry_run
        )
        if not dry_run:
            self._notify(notify, {"event": "tag", "kind": self.kind, "tag": tag})
        return tag

    def _tag_unnotified(
        self,
        version_tag: str | None,
        *,
        message: str | None,
        metrics: Mapping[str, float] | str | Path | None,
        force: bool,
        dry_run: bool,
    ) -> str:
        ws = self.ws
        if ws.history.current_manifest(self.kind, TRACKED[self.kind]) is None:
            raise VersioningError(
                f"no {self.kind} version to tag yet",
                hint=f"upload one first (upload_{self.kind}_checkpoint / cpv push)",
            )
        if dry_run:
            from cpv.versioning.tags import coerce_version, tag_name

            if version_tag is None:
                return ws.history.next_tag(self.kind)
            return tag_name(self.kind, coerce_version(self.kind, version_tag))
        record = ws.history.create_tag(
            self.kind,
            version_tag,
            message=message or "",
            metrics=metrics,
            overwrite=force,
            remote=ws.remote,
        )
        return record.tag

    def _versions(self) -> list[VersionInfo]:
        return self.ws.history.list_versions(self.kind)

    def _manifest_at(self, tag: str | None) -> tuple[Manifest, str]:
        """The manifest of this kind at ``tag`` (None: the current one) and the ref's label."""
        ws = self.ws
        name = TRACKED[self.kind]
        if tag is None:
            manifest = ws.history.current_manifest(self.kind, name)
            if manifest is None:
                raise VersioningError(
                    f"no {self.kind} version recorded yet",
                    hint=f"upload one first (upload_{self.kind}_checkpoint / cpv push)",
                )
            return manifest, "HEAD"
        if ws.remote and not ws.git.tag_targets().get(tag):
            # A version another machine pushed: fetch before giving up.
            with contextlib.suppress(GitRemoteError):
                ws.history.fetch(ws.remote)
        return ws.history.read_manifest(tag, self.kind, name), tag

    def _download(
        self, tag: str | None, *, dest: str | Path | None, paths: Sequence[str] | None, force: bool
    ) -> tuple[Manifest, str, Path, PullResult]:
        ws = self.ws
        manifest, label = self._manifest_at(tag)
        target = Path(dest).absolute() if dest is not None else ws.tracked_dir(self.kind)
        if dest is None and not force:
            changed = _local_changes(ws, self.kind)
            if changed:
                raise DirtyWorkspaceError(
                    f"{len(changed)} file(s) in {TRACKED[self.kind]}/ have changes that are not "
                    f"uploaded (e.g. {changed[0]}); downloading {label} would overwrite them",
                    paths=changed,
                    hint="upload them first, download to another folder (dest=...), or force=True",
                )
        result = pull(
            ws.repository(),
            manifest.snapshot_id,
            target,
            paths=paths,
            progress=self.progress,
            limits=ws.limits,
        )
        return manifest, label, target, result

    def _revert(self, tag: str, *, force: bool, dry_run: bool) -> RevertResult:
        ws = self.ws
        manifest = ws.history.read_manifest(tag, self.kind, TRACKED[self.kind])
        changed = _local_changes(ws, self.kind)
        if changed and not force:
            raise DirtyWorkspaceError(
                f"cannot revert to {tag}: {len(changed)} file(s) in {TRACKED[self.kind]}/ are not "
                f"uploaded (e.g. {changed[0]})",
                paths=changed,
                hint="upload them first, or pass force=True / --force to discard them",
            )
        if dry_run:
            return RevertResult(tag, (self.kind,), None, 0, 0)
        folder = ws.tracked_dir(self.kind)
        # Bytes first, then the manifest commit: if the pull fails, Git still says where we were.
        pulled = pull(
            ws.repository(), manifest.snapshot_id, folder, progress=self.progress, limits=ws.limits
        )
        _remove_extra_files(folder, {f.path for f in manifest.files})
        record = ws.history.revert(tag, kinds=[self.kind], discard_local_changes=force)
        return RevertResult(
            tag, (self.kind,), record.commit, pulled.files_written, pulled.downloaded_bytes
        )

    def _metadata(self, tag: str | None) -> dict[str, Any]:
        manifest, label = self._manifest_at(tag)
        return {
            "tag": label,
            "kind": self.kind,
            "team_name": self.team_name,
            "model_name": self.model_name,
            "snapshot_id": manifest.snapshot_id,
            "store_url": manifest.store_url,
            "files": manifest.file_count,
            "size_bytes": manifest.total_size,
            f"{self.kind}_size_mb": round(manifest.total_size / MB, 3),
            "metrics": dict(manifest.metrics),
            "message": manifest.message,
            "author": manifest.author,
            "timestamp": manifest.created_at.isoformat(),
            "extra": dict(manifest.extra),
        }


def _split_counts(files: Sequence[tuple[str, int, str]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path, _, _ in files:
        head = path.split("/", 1)[0] if "/" in path else ""
        if head in DATA_SPLITS:
            counts[head] = counts.get(head, 0) + 1
    return counts


# -- the public facades ------------------------------------------------------------------------


class ModelsCheckpointsManage(_Facade):
    """Version the model checkpoints of one workspace (one Git repository per model).

    Example::

        mcm = ModelsCheckpointsManage("AI-Convo", "faster-whisper")
        mcm.import_model_init(data_path="./data")
        mcm.upload_model_checkpoint(metrics={"loss": 0.25})
        tag = mcm.tag_model_checkpoint()            # "v0.1"
        art = mcm.download_model_checkpoint(tag="v0.1")
    """

    kind: Kind = "model"

    def import_model_init(
        self,
        data_path: str | Path | None = None,
        *,
        store_url: str | None = None,
        remote_url: str | None = None,
        dry_run: bool = False,
        verbose: bool = False,
    ) -> InitResult:
        """Create the workspace: Git repository, store, folders, templates (idempotent)."""
        with _verbose_logging(verbose or self.verbose):
            return self._init(
                data_path=data_path, store_url=store_url, remote_url=remote_url, dry_run=dry_run
            )

    def upload_model_checkpoint(
        self,
        path: str | Path | None = None,
        *,
        metrics: Mapping[str, float] | str | Path | None = None,
        message: str = "",
        dry_run: bool = False,
        force: bool = False,
        verbose: bool = False,
        notify: bool = False,
    ) -> UploadResult:
        """Push the model files (default ``<workspace>/model``) and record them as a version.

        Raises:
            LocalIOError, SourceChangedError, UnsafePathError, StoreError, TransferError,
            GitRemoteError (uploaded and committed, but the Git push failed).
        """
        with _verbose_logging(verbose or self.verbose):
            return self._upload(
                path, metrics=metrics, message=message, dry_run=dry_run, force=force,
                notify=notify,
            )

    def tag_model_checkpoint(
        self,
        version_tag: str | None = None,
        message: str | None = None,
        *,
        metrics: Mapping[str, float] | str | Path | None = None,
        force: bool = False,
        dry_run: bool = False,
        verbose: bool = False,
        notify: bool = False,
    ) -> str:
        """Tag the current model version: ``v{major}.{minor}``, auto-incremented numerically.

        Raises:
            TagExistsError (unless force), InvalidTagError, VersioningError, GitRemoteError.
        """
        with _verbose_logging(verbose or self.verbose):
            return self._tag(
                version_tag, message=message, metrics=metrics, force=force, dry_run=dry_run,
                notify=notify,
            )

    def read_checkpoint_tag(self) -> list[VersionInfo]:
        """Model versions, oldest first, with dates, authors, messages and metrics."""
        return self._versions()

    def download_model_checkpoint(
        self,
        tag: str | None = None,
        *,
        dest: str | Path | None = None,
        force: bool = False,
        verbose: bool = False,
    ) -> ModelArtifacts:
        """Bring the model files of ``tag`` (default: the current version) to disk."""
        with _verbose_logging(verbose or self.verbose):
            manifest, label, target, _ = self._download(tag, dest=dest, paths=None, force=force)
            return ModelArtifacts(
                model_path=str(target),
                metrics=dict(manifest.metrics),
                timestamp=manifest.created_at.isoformat(),
                tag=label,
                size_mb=round(manifest.total_size / MB, 3),
                snapshot_id=manifest.snapshot_id,
                files=manifest.file_count,
            )

    def revert_model_checkpoint(
        self, tag: str, *, force: bool = False, dry_run: bool = False, verbose: bool = False
    ) -> RevertResult:
        """Put the workspace's model files and manifest back to ``tag`` (a new commit)."""
        with _verbose_logging(verbose or self.verbose):
            return self._revert(tag, force=force, dry_run=dry_run)

    def get_model_metadata(self, tag: str | None = None) -> dict[str, Any]:
        """Size, metrics, snapshot, author and time of ``tag`` (default: current version)."""
        return self._metadata(tag)

    def compare_model_checkpoints(self, tag_a: str, tag_b: str) -> list[MetricDelta]:
        """Per-metric values of two versions and their difference."""
        return self.ws.history.compare_metrics(tag_a, tag_b, kind="model")


class DataCheckpointsManage(_Facade):
    """Version the training data (``data/{train,validation,test}``) of a workspace."""

    kind: Kind = "data"

    def import_data_init(
        self,
        data_path: str | Path | None = None,
        *,
        store_url: str | None = None,
        remote_url: str | None = None,
        dry_run: bool = False,
        verbose: bool = False,
    ) -> InitResult:
        """Create the workspace (as :meth:`ModelsCheckpointsManage.import_model_init`)."""
        with _verbose_logging(verbose or self.verbose):
            return self._init(
                data_path=data_path, store_url=store_url, remote_url=remote_url, dry_run=dry_run
            )

    def upload_data_checkpoint(
        self,
        path: str | Path | None = None,
        *,
        metrics: Mapping[str, float] | str | Path | None = None,
        message: str = "",
        dry_run: bool = False,
        force: bool = False,
        verbose: bool = False,
        notify: bool = False,
    ) -> UploadResult:
        """Push the data folder (default ``<workspace>/data``) and record it as a version."""
        with _verbose_logging(verbose or self.verbose):
            return self._upload(
                path, metrics=metrics, message=message, dry_run=dry_run, force=force,
                notify=notify,
            )

    def tag_data_checkpoint(
        self,
        version_tag: str | None = None,
        message: str | None = None,
        *,
        metrics: Mapping[str, float] | str | Path | None = None,
        force: bool = False,
        dry_run: bool = False,
        verbose: bool = False,
        notify: bool = False,
    ) -> str:
        """Tag the current data version: ``data-v{major}.{minor}``."""
        with _verbose_logging(verbose or self.verbose):
            return self._tag(
                version_tag, message=message, metrics=metrics, force=force, dry_run=dry_run,
                notify=notify,
            )

    def read_data_checkpoint_tag(self) -> list[VersionInfo]:
        """Data versions, oldest first."""
        return self._versions()

    def download_data_checkpoint(
        self,
        tag: str | None = None,
        *,
        dest: str | Path | None = None,
        splits: Sequence[str] | None = None,
        force: bool = False,
        verbose: bool = False,
    ) -> DataArtifacts:
        """Bring the data of ``tag`` to disk; ``splits`` limits it to e.g. ``["validation"]``."""
        if splits is not None:
            unknown = [s for s in splits if "/" in s or s in ("", ".", "..")]
            if unknown:
                raise ConfigError(f"invalid split name {unknown[0]!r}")
        with _verbose_logging(verbose or self.verbose):
            manifest, label, target, _ = self._download(tag, dest=dest, paths=splits, force=force)
            counts = {
                k.split(".", 1)[1]: v
                for k, v in manifest.extra.items()
                if k.startswith("samples.") and isinstance(v, int)
            }
            return DataArtifacts(
                data_path=str(target),
                version=label,
                timestamp=manifest.created_at.isoformat(),
                tag=label,
                size_mb=round(manifest.total_size / MB, 3),
                sample_count=manifest.file_count,
                splits=counts,
                snapshot_id=manifest.snapshot_id,
            )

    def revert_data_checkpoint(
        self, tag: str, *, force: bool = False, dry_run: bool = False, verbose: bool = False
    ) -> RevertResult:
        """Put the workspace's data files and manifest back to ``tag``."""
        with _verbose_logging(verbose or self.verbose):
            return self._revert(tag, force=force, dry_run=dry_run)

    def get_data_metadata(self, tag: str | None = None) -> dict[str, Any]:
        """Size, file counts per split, snapshot, author and time of ``tag``."""
        meta = self._metadata(tag)
        meta["sample_count"] = meta["files"]
        return meta


class CombinedCheckpointsManage:
    """Model and data of one workspace versioned together: one number for both, atomically."""

    def __init__(
        self,
        team_name: str | None = None,
        model_name: str | None = None,
        *,
        workspace: str | Path | None = None,
        config: _BaseConfig | None = None,
        progress: Progress | None = None,
        verbose: bool = False,
    ) -> None:
        self.models = ModelsCheckpointsManage(
            team_name,
            model_name,
            workspace=workspace,
            config=config,
            progress=progress,
            verbose=verbose,
        )
        self.data = DataCheckpointsManage(
            team_name,
            model_name,
            workspace=workspace,
            config=self.models.config,
            progress=progress,
            verbose=verbose,
        )
        self.verbose = verbose

    def close(self) -> None:
        self.models.close()
        self.data.close()

    def __enter__(self) -> CombinedCheckpointsManage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tag_model_and_data(
        self,
        version_tag: str | None = None,
        message: str | None = None,
        *,
        metrics: Mapping[str, float] | str | Path | None = None,
        force: bool = False,
        dry_run: bool = False,
        verbose: bool = False,
        notify: bool = False,
    ) -> tuple[str, str]:
        """Tag model and data with one version (``vX.Y`` + ``data-vX.Y``); all or nothing."""
        ws = self.models.ws
        with _verbose_logging(verbose or self.verbose):
            kinds: tuple[Kind, ...] = ("model", "data")
            for kind in kinds:
                if ws.history.current_manifest(kind, TRACKED[kind]) is None:
                    raise VersioningError(
                        f"no {kind} version to tag yet",
                        hint="upload both model and data before a combined tag",
                    )
            if dry_run:
                from cpv.versioning.tags import coerce_version, tag_name

                v = (
                    coerce_version("model", version_tag)
                    if version_tag
                    else max(ws.history.next_version("model"), ws.history.next_version("data"))
                )
                return tag_name("model", v), tag_name("data", v)
            record = ws.history.create_combined_tag(
                version_tag,
                message=message or "",
                metrics=metrics,
                overwrite=force,
                remote=ws.remote,
            )
            self.models._notify(
                notify, {"event": "tag", "kind": "combined", "tag": record.model.tag}
            )
            return record.model.tag, record.data.tag

    def revert_model_and_data(
        self, tag: str, *, force: bool = False, dry_run: bool = False, verbose: bool = False
    ) -> tuple[RevertResult, RevertResult]:
        """Revert both model and data to the version ``tag`` (``vX.Y``)."""
        from cpv.versioning.tags import parse_tag, tag_name

        _, version = parse_tag(tag)
        with _verbose_logging(verbose or self.verbose):
            model = self.models._revert(tag_name("model", version), force=force, dry_run=dry_run)
            data = self.data._revert(tag_name("data", version), force=force, dry_run=dry_run)
            return model, data

    def get_combined_metadata(self, tag: str | None = None) -> dict[str, Any]:
        """Model and data metadata of one version side by side."""
        from cpv.versioning.tags import parse_tag, tag_name

        if tag is None:
            return {
                "model": self.models.get_model_metadata(),
                "data": self.data.get_data_metadata(),
            }
        _, version = parse_tag(tag)
        return {
            "tag": tag_name("model", version),
            "model": self.models.get_model_metadata(tag_name("model", version)),
            "data": self.data.get_data_metadata(tag_name("data", version)),
        }


# -- workspace creation and batch operations ------------------------------------------------

_TRAIN_TEMPLATE = '''"""Training entry point for {model}.

Save checkpoints under model/, then version them:

    cpv push model -m "what changed" --metric loss=0.25
    cpv tag
"""

from pathlib import Path

DATA = Path(__file__).parent / "data"
MODEL = Path(__file__).parent / "model"


def main() -> None:
    MODEL.mkdir(exist_ok=True)
    # train on DATA / "train", evaluate on DATA / "validation", write weights to MODEL


if __name__ == "__main__":
    main()
'''

_README_TEMPLATE = """# {team} / {model}

Model checkpoints and training data versioned with cpv: Git holds the history
(`.cpv/manifests/`, tags `v0.1`, `v0.2`, ...), the store `{store}` holds the bytes.

- `model/` — checkpoints (`cpv push model`, `cpv tag`)
- `data/train`, `data/validation`, `data/test` — data splits (`cpv push data`)

Get a version on another machine: `git clone <this repo> && cd <repo> && cpv pull v0.1`.
"""


def init_workspace(
    root: str | Path,
    *,
    config: _BaseConfig,
    data_path: str | Path | None = None,
    store_url: str | None = None,
    remote_url: str | None = None,
    dry_run: bool = False,
) -> InitResult:
    """Create (or complete) a workspace at ``root``; idempotent.

    Raises:
        ConfigError: invalid team/model names or store URL. GitRemoteError: the remote refused.
    """
    from cpv.config import update_config_file, workspace_config_path
    from cpv.engine import Repository
    from cpv.store import open_store

    root = Path(root).absolute()
    cfg = config
    if store_url is not None:
        cfg = cfg.replace(store={"url": store_url})
    if remote_url is not None:
        cfg = cfg.replace(git={"remote_url": remote_url})
    url = cfg.store_url(workspace=root)
    if dry_run:
        return InitResult(root, url, not (root / ".cpv").exists(), cfg.git.remote_url)
    existed = (root / ".cpv").is_dir()
    # The store first: wrong credentials or a missing bucket fail before anything is created.
    store = open_store(
        url, profile=cfg.aws.profile, region=cfg.aws.region, endpoint_url=cfg.aws.endpoint_url,
        sse=cfg.aws.sse, sse_kms_key_id=cfg.aws.sse_kms_key_id,
    )
    try:
        Repository.init(store, pack_size=cfg.transfer.pack_size).close()
    finally:
        store.close()
    root.mkdir(parents=True, exist_ok=True)
    try:
        git = GitRepo.open(root, ssh_command=cfg.git_ssh_command)
    except NotAWorkspaceError:
        git = GitRepo.init(
            root,
            branch=cfg.git.branch,
            message="cpv: initialize repository",
            ssh_command=cfg.git_ssh_command,
        )
    try:
        settings: dict[str, Any] = {}
        if cfg.team:
            settings["team"] = cfg.team
        if cfg.model:
            settings["model"] = cfg.model
        if store_url is not None or not workspace_config_path(root).exists():
            settings["store"] = {"url": store_url} if store_url else {}
        if cfg.git.remote_url:
            settings["git"] = {"remote_url": cfg.git.remote_url}
        update_config_file(workspace_config_path(root), settings)
        for folder in ("model", *(f"data/{s}" for s in DATA_SPLITS)):
            (root / folder).mkdir(parents=True, exist_ok=True)
        if data_path is not None:
            _import_data(Path(data_path), root / "data")
        _write_once(root / "train.py", _TRAIN_TEMPLATE.format(model=cfg.model or root.name))
        _write_once(
            root / "README.md",
            _README_TEMPLATE.format(
                team=cfg.team or "team", model=cfg.model or root.name, store=url
            ),
        )
        _ensure_ignored(root / ".gitignore", ["/.cpv/store/", "/model/", "/data/"])
        _write_once(root / WORKSPACE_ID_FILE, secrets.token_hex(16) + "\n")
        git.commit_paths(
            [".cpv/config.json", WORKSPACE_ID_FILE, ".gitignore", "train.py", "README.md"],
            "cpv: initialize workspace",
        )
        if cfg.git.remote_url:
            git.set_remote("origin", cfg.git.remote_url)
            branch = git.current_branch()
            git.push("origin", branch=branch, tags=())
        return InitResult(root, url, not existed, cfg.git.remote_url)
    finally:
        git.close()


def clone_workspace(
    remote_url: str, root: str | Path, *, config: _BaseConfig | None = None
) -> Path:
    """Clone a workspace another machine pushed (then download any version from it)."""
    root = Path(root).absolute()
    cfg = config or CPVConfig.load(workspace=root)
    GitRepo.clone(remote_url, root, ssh_command=cfg.git_ssh_command).close()
    if not (root / ".cpv").is_dir():
        raise NotAWorkspaceError(f"{remote_url} is a Git repository but not a cpv workspace")
    return root


def _write_once(path: Path, text: str) -> None:
    if not path.exists():
        path.write_text(text)


def _ensure_ignored(gitignore: Path, lines: Sequence[str]) -> None:
    existing = gitignore.read_text().splitlines() if gitignore.exists() else []
    missing = [line for line in lines if line not in existing]
    if missing:
        with open(gitignore, "a") as fh:
            if existing and existing[-1].strip():
                fh.write("\n")
            fh.write("# cpv: bytes live in the store\n" + "\n".join(missing) + "\n")


def _import_data(source: Path, data_dir: Path) -> None:
    """Bring an existing data folder into the workspace (hard links where possible)."""
    source = source.expanduser().absolute()
    if not source.is_dir():
        raise LocalIOError(f"data_path {source} is not a folder", path=str(source))
    if source == data_dir.absolute():
        return

    def link_or_copy(src: str, dst: str) -> object:
        try:
            os.link(src, dst)
            return dst
        except OSError:
            return shutil.copy2(src, dst)

    try:
        shutil.copytree(source, data_dir, dirs_exist_ok=True, copy_function=link_or_copy)
    except (OSError, shutil.Error) as exc:
        raise LocalIOError(f"cannot import data from {source}: {exc}", path=str(source)) from exc


@dataclass(frozen=True, slots=True)
class ModelSummary:
    """One workspace of a team, as listed by :func:`list_team_models`."""

    model_name: str
    workspace: Path
    latest_tag: str | None
    latest_metrics: dict[str, float]
    versions: int


def list_team_models(team_root: str | Path) -> list[ModelSummary]:
    """Every cpv workspace directly under ``team_root`` with its latest model version."""
    out = []
    for child in sorted(Path(team_root).iterdir()):
        if not (child / ".cpv").is_dir() or not (child / ".git").exists():
            continue
        with ModelsCheckpointsManage(workspace=child) as mcm:
            versions = mcm.read_checkpoint_tag()
            last = versions[-1] if versions else None
            out.append(
                ModelSummary(
                    child.name,
                    child,
                    last.tag if last else None,
                    dict(last.metrics) if last else {},
                    len(versions),
                )
            )
    return out


def upload_team_models(
    team_root: str | Path,
    *,
    message: str = "",
    dry_run: bool = False,
    progress: Progress | None = None,
) -> dict[str, UploadResult | CPVError]:
    """Upload the model folder of every workspace under ``team_root``; one failure does not
    stop the others, and each outcome (result or error) is returned by model name."""
    results: dict[str, UploadResult | CPVError] = {}
    for child in sorted(Path(team_root).iterdir()):
        if not (child / ".cpv").is_dir():
            continue
        try:
            with ModelsCheckpointsManage(workspace=child, progress=progress) as mcm:
                results[child.name] = mcm.upload_model_checkpoint(message=message, dry_run=dry_run)
        except CPVError as exc:
            results[child.name] = exc
    return results


def compare_versions(a: Mapping[str, float], b: Mapping[str, float]) -> list[MetricDelta]:
    """Compare two metric mappings (e.g. from two ``get_model_metadata`` calls)."""
    return compare(a, b)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# =============================================================================================
# CLI support (added for `cpv` in cpv/cli/, issue 4).
#
# Small read-side and orchestration helpers the command line needs and the seed facades lack:
# finding the workspace, resolving a version name to the tags of each kind, checking tags
# before an upload, pull/checkout of model and data together, status, diff, verify and gc
# through the workspace, doctor. Each opens the workspace, asks the engine and versioning, and
# returns a typed result; none prints.
# Imports live here (not at the top) to keep this section separate from the facades above.
# =============================================================================================

import re  # noqa: E402
import subprocess  # noqa: E402
from typing import Literal  # noqa: E402

from cpv.engine import VerifyReport  # noqa: E402
from cpv.engine import verify as _engine_verify  # noqa: E402
from cpv.engine.gc import DEFAULT_GRACE_S, GCReport, collect_garbage  # noqa: E402
from cpv.engine.snapshot import SNAPSHOT_PREFIX  # noqa: E402
from cpv.errors import NoStoreError, ObjectNotFoundError, TagNotFoundError  # noqa: E402
from cpv.versioning import ManifestChange  # noqa: E402
from cpv.versioning.metrics import merge_metrics, normalize_metrics  # noqa: E402
from cpv.versioning.tags import KINDS, try_parse_tag  # noqa: E402

_VERSION_ONLY = re.compile(r"^\d+\.\d+$")


def find_workspace(start: str | Path | None = None) -> Path:
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


def kinds_with_files(root: str | Path) -> list[Kind]:
    """Tracked kinds whose folder exists and holds at least one file (what ``cpv push`` pushes).

    Raises:
        LocalIOError: neither ``model/`` nor ``data/`` holds a file.
    """
    root = Path(root)
    found: list[Kind] = []
    for kind in KINDS:
        folder = root / TRACKED[kind]
        if folder.is_dir() and any(
            (p.is_file() or p.is_symlink())
            and not exclude_internal(p.relative_to(folder).as_posix())
            for p in folder.rglob("*")
        ):
            found.append(kind)
    if not found:
        raise LocalIOError(
            f"nothing to push: {root / 'model'} and {root / 'data'} hold no files",
            path=str(root),
            hint="save checkpoint files under model/ (and data splits under data/train, ...)",
        )
    return found


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


def _open_ws(root: str | Path, config: _BaseConfig | None, progress: Progress | None) -> Workspace:
    return Workspace.open(Path(root), config=config, progress=progress or NULL_PROGRESS)


def _have_ref(ws: Workspace, tag: str) -> bool:
    """True if ``tag`` exists here, fetching from the remote first when it does not."""
    if tag in ws.git.tag_targets():
        return True
    if ws.remote:
        with contextlib.suppress(GitRemoteError):
            ws.history.fetch(ws.remote)
        return tag in ws.git.tag_targets()
    return False


def _resolve(
    ws: Workspace, rev: str | None, kinds: Sequence[Kind] | None, *, data_at_commit: bool = False
) -> dict[Kind, str | None]:
    wanted: tuple[Kind, ...] = tuple(kinds) if kinds else KINDS
    if rev is None:
        out: dict[Kind, str | None] = {
            k: None for k in wanted if ws.history.current_manifest(k, TRACKED[k]) is not None
        }
        if not out:
            raise VersioningError(
                f"no {' or '.join(wanted)} version recorded in this workspace yet",
                hint="push one first: cpv push",
            )
        return out
    if _VERSION_ONLY.match(rev):
        rev = f"v{rev}"
    parsed = try_parse_tag(rev)
    if parsed is None:
        # A branch, commit or HEAD: every wanted kind that has a manifest there.
        ws.git.resolve(rev)  # TagNotFoundError when it names nothing
        out = {k: rev for k in wanted if ws.history.read_manifests(rev, k)}
        if not out:
            raise VersioningError(f"{rev} records no {' or '.join(wanted)} version",
                                  hint="list versions with 'cpv versions'")
        return out
    kind, version = parsed
    if kind == "data":
        if "data" not in wanted:
            raise VersioningError(f"{rev} is a data version; it has no model files",
                                  hint=f"use the model version v{version.major}.{version.minor}")
        if not _have_ref(ws, rev):
            raise TagNotFoundError(rev, hint="list data versions with 'cpv versions --data'")
        return {"data": rev}
    out = {}
    if not _have_ref(ws, rev):
        raise TagNotFoundError(rev)
    if "model" in wanted:
        out["model"] = rev
    data_tag = f"data-{rev}"
    if "data" in wanted and data_tag in ws.git.tag_targets():
        out["data"] = data_tag
    elif "data" in wanted and data_at_commit and ws.history.read_manifests(rev, "data"):
        out["data"] = rev  # no data tag of that number: the data recorded at that commit
    if not out:
        raise VersioningError(f"{rev} has no data version ({data_tag} does not exist)",
                              hint="list data versions with 'cpv versions --data'")
    return out


def resolve_version(
    root: str | Path,
    rev: str | None,
    *,
    kinds: Sequence[Kind] | None = None,
    config: _BaseConfig | None = None,
    data_at_commit: bool = False,
) -> dict[Kind, str | None]:
    """Which ref to use for each kind when the user names ``rev``.

    ``None`` -> the current manifest (``None``) of every kind that has one; ``v0.3`` (or
    ``0.3``) -> ``v0.3`` for the model and ``data-v0.3`` for the data when that tag exists
    (else, with ``data_at_commit``, the data manifest recorded at the ``v0.3`` commit);
    ``data-v0.3`` -> the data only; a branch or commit -> every kind with a manifest there.
    Tags another machine pushed are fetched from the remote first.

    Raises:
        TagNotFoundError, VersioningError (nothing of the wanted kinds at ``rev``).
    """
    with _open_ws(root, config, None) as ws:
        return _resolve(ws, rev, kinds, data_at_commit=data_at_commit)


@dataclass(frozen=True, slots=True)
class PullSummary:
    """What ``cpv pull`` did for one kind: the version, where, and how many bytes moved."""

    kind: Kind
    ref: str
    path: str
    snapshot_id: str
    files: int
    total_bytes: int
    files_written: int
    files_unchanged: int
    downloaded_bytes: int
    local_bytes: int
    seconds: float


def _split_pull_paths(paths: Sequence[str]) -> dict[Kind, list[str]]:
    """``model``, ``data``, ``data/train`` ... -> kind -> sub-paths ([] = everything)."""
    out: dict[Kind, list[str]] = {}
    whole: set[Kind] = set()
    for raw in paths:
        text = raw.replace("\\", "/").strip("/")
        while text.startswith("./"):
            text = text[2:]
        head, _, rest = text.partition("/")
        kind = next((k for k in KINDS if TRACKED[k] == head), None)
        if kind is None or (rest and any(p in ("", ".", "..") for p in rest.split("/"))):
            raise ConfigError(
                f"cannot pull {raw!r}: paths start with 'model' or 'data'",
                hint="e.g. cpv pull v0.1 model, or cpv pull data-v0.1 data/validation",
            )
        if not rest:
            whole.add(kind)
            out[kind] = []
        elif kind not in whole:
            out.setdefault(kind, []).append(rest)
    return out


def pull_workspace(
    root: str | Path,
    rev: str | None = None,
    *,
    paths: Sequence[str] = (),
    dest: str | Path | None = None,
    force: bool = False,
    config: _BaseConfig | None = None,
    progress: Progress | None = None,
) -> list[PullSummary]:
    """Bring the workspace's tracked files to ``rev`` (see :func:`resolve_version`).

    Only missing or changed files are fetched, and only the chunks the store must supply.
    ``paths`` restricts the pull (``model``, ``data``, ``data/validation``). Manifests and
    history are not changed (``cpv checkout`` does that). A model version without a data tag
    of the same number brings the data recorded at its commit.

    Raises:
        DirtyWorkspaceError: local files differ from the current manifest (unless ``force``).
        NoStoreError: this workspace's store does not exist; the message names the store the
            version was pushed to. Plus what the facades' downloads raise.
    """
    restrict = _split_pull_paths(paths) if paths else {}
    if dest is not None and len(restrict) != 1:
        raise ConfigError("--to needs exactly one of 'model' or 'data'",
                          hint="e.g. cpv pull v0.1 model --to /tmp/v0.1")
    targets = resolve_version(root, rev, kinds=list(restrict) or None, config=config,
                              data_at_commit=True)
    if dest is None and not force:
        with _open_ws(root, config, None) as ws:
            for kind, ref in targets.items():
                changed = _local_changes(ws, kind)
                if changed:
                    raise DirtyWorkspaceError(
                        f"{len(changed)} file(s) in {TRACKED[kind]}/ have changes that were not "
                        f"pushed (e.g. {changed[0]}); pulling {ref or 'HEAD'} would overwrite "
                        "them",
                        paths=changed,
                        hint="push them first (cpv push), pull into another folder (--to DIR), "
                             "or pass --force to overwrite them",
                    )
    out: list[PullSummary] = []
    for kind, ref in targets.items():
        facade_cls = ModelsCheckpointsManage if kind == "model" else DataCheckpointsManage
        with facade_cls(workspace=root, config=config, progress=progress) as facade:
            subs = restrict.get(kind) or None
            try:
                manifest, label, target, result = facade._download(
                    ref, dest=dest, paths=subs, force=force)
            except (NoStoreError, ObjectNotFoundError) as exc:
                manifest, _ = facade._manifest_at(ref)
                explained = _store_mismatch(exc, facade.ws, manifest, f"{kind} {ref or 'HEAD'}")
                if explained is exc:
                    raise
                raise explained from exc
            out.append(PullSummary(
                kind=kind, ref=label, path=str(target), snapshot_id=manifest.snapshot_id,
                files=result.files, total_bytes=result.total_bytes,
                files_written=result.files_written, files_unchanged=result.files_unchanged,
                downloaded_bytes=result.downloaded_bytes, local_bytes=result.local_bytes,
                seconds=result.seconds,
            ))
    return out


def checkout_workspace(
    root: str | Path,
    rev: str,
    *,
    force: bool = False,
    dry_run: bool = False,
    config: _BaseConfig | None = None,
    progress: Progress | None = None,
) -> list[RevertResult]:
    """Make ``rev`` the current version: files and manifests of each kind it names.

    ``v0.3`` reverts the model, and the data too when ``data-v0.3`` exists. Every kind is
    checked for local changes before anything is touched, so a refusal changes nothing.

    Raises:
        DirtyWorkspaceError: local files are not uploaded (unless ``force``); plus what
        :meth:`ModelsCheckpointsManage.revert_model_checkpoint` raises.
    """
    targets = resolve_version(root, rev, config=config)
    with _open_ws(root, config, None) as ws:
        for kind in targets:
            changed = [] if force else _local_changes(ws, kind)
            if changed:
                raise DirtyWorkspaceError(
                    f"cannot check out {rev}: {len(changed)} file(s) in {TRACKED[kind]}/ are "
                    f"not uploaded (e.g. {changed[0]})",
                    paths=changed,
                    hint="push them first (cpv push), or pass --force to discard them",
                )
    results: list[RevertResult] = []
    for kind, ref in targets.items():
        facade_cls = ModelsCheckpointsManage if kind == "model" else DataCheckpointsManage
        with facade_cls(workspace=root, config=config, progress=progress) as facade:
            try:
                results.append(facade._revert(ref or rev, force=force, dry_run=dry_run))
            except (NoStoreError, ObjectNotFoundError) as exc:
                manifest = facade.ws.history.read_manifest(ref or rev, kind, TRACKED[kind])
                explained = _store_mismatch(exc, facade.ws, manifest, ref or rev)
                if explained is exc:
                    raise
                raise explained from exc
    return results


def _store_mismatch(
    exc: NoStoreError | ObjectNotFoundError, ws: Workspace, manifest: Manifest, what: str
) -> CPVError:
    """Say where a version's bytes went when this workspace's store does not have them.

    The usual cause: a clone of a workspace whose store was the embedded ``.cpv/store`` of the
    first machine, or a workspace switched to another store after the version was pushed.
    """
    here = ws.store_url
    if manifest.store_url == here:
        return exc
    hint = ("point this workspace at that store: cpv config set store.url URL (an S3 URL or a "
            "folder every machine can reach)")
    if isinstance(exc, NoStoreError):
        return NoStoreError(f"no cpv store at {here}; {what} was pushed to {manifest.store_url}",
                            hint=hint)
    return ObjectNotFoundError(
        exc.key, message=f"{what} was pushed to {manifest.store_url}, and the store of this "
        f"workspace ({here}) does not have it", hint=hint)


def local_changes(root: str | Path, kind: Kind, *, config: _BaseConfig | None = None) -> list[str]:
    """Files of ``kind``'s folder that differ from its current manifest (not yet pushed)."""
    with _open_ws(root, config, None) as ws:
        return _local_changes(ws, kind)


@dataclass(frozen=True, slots=True)
class KindStatus:
    """One tracked kind in ``cpv status``.

    ``version`` is the newest tag whose manifest is the current one (``None``: not tagged);
    ``changed`` lists files that differ from the current manifest.
    """

    kind: Kind
    path: str
    recorded: bool
    snapshot_id: str | None
    files: int
    total_bytes: int
    version: str | None
    changed: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Where a workspace stands; see :func:`workspace_status`."""

    root: Path
    branch: str | None
    head: str | None
    remote: str | None
    store_url: str
    kinds: tuple[KindStatus, ...]
    manifest_changes: tuple[ManifestChange, ...]

    @property
    def clean(self) -> bool:
        return not self.manifest_changes and not any(k.changed for k in self.kinds)


def workspace_status(root: str | Path, *, config: _BaseConfig | None = None) -> StatusReport:
    """Current version of each kind, files changed since the last push, uncommitted manifests."""
    with _open_ws(root, config, None) as ws:
        kinds: list[KindStatus] = []
        for kind in KINDS:
            manifest = ws.history.current_manifest(kind, TRACKED[kind])
            version = None
            if manifest is not None:
                for info in reversed(ws.history.list_versions(kind)):
                    if any(m.snapshot_id == manifest.snapshot_id and m.path == manifest.path
                           for m in info.manifests):
                        version = info.tag
                        break
            kinds.append(KindStatus(
                kind=kind, path=TRACKED[kind], recorded=manifest is not None,
                snapshot_id=manifest.snapshot_id if manifest else None,
                files=manifest.file_count if manifest else 0,
                total_bytes=manifest.total_size if manifest else 0,
                version=version, changed=tuple(_local_changes(ws, kind)),
            ))
        status = ws.history.status()
        return StatusReport(
            root=ws.root, branch=status.branch, head=status.head,
            remote=ws.git.remote_url(ws.remote) if ws.remote else None,
            store_url=ws.store_url, kinds=tuple(kinds), manifest_changes=status.changes,
        )


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file that differs between two versions (sizes are ``None`` on the absent side)."""

    path: str
    state: Literal["added", "removed", "changed"]
    size_a: int | None
    size_b: int | None


@dataclass(frozen=True, slots=True)
class VersionDiff:
    """Files and metrics that differ between two versions of one kind."""

    kind: Kind
    ref_a: str
    ref_b: str
    snapshot_a: str
    snapshot_b: str
    size_a: int
    size_b: int
    files: tuple[FileChange, ...]
    unchanged: int
    metrics: tuple[MetricDelta, ...]


def _as_kind_ref(ref: str, kind: Kind) -> str:
    """``v0.1`` means ``data-v0.1`` when comparing data; a bare ``0.1`` means either."""
    if _VERSION_ONLY.match(ref):
        ref = f"v{ref}"
    parsed = try_parse_tag(ref)
    if parsed is not None and parsed[0] == "model" and kind == "data":
        return f"data-{ref}"
    return ref


def diff_versions(
    root: str | Path,
    ref_a: str,
    ref_b: str = "HEAD",
    *,
    kind: Kind | None = None,
    config: _BaseConfig | None = None,
) -> VersionDiff:
    """Compare the ``kind`` manifests of two refs (tags, branches, commits).

    ``kind`` defaults to data when either ref is a ``data-`` tag, else model.

    Raises:
        TagNotFoundError, VersioningError (no such manifest at a ref), InvalidTagError.
    """
    if kind is None:
        parsed = [try_parse_tag(r) for r in (ref_a, ref_b)]
        kind = "data" if any(p is not None and p[0] == "data" for p in parsed) else "model"
    ref_a, ref_b = _as_kind_ref(ref_a, kind), _as_kind_ref(ref_b, kind)
    with _open_ws(root, config, None) as ws:
        for ref in (ref_a, ref_b):
            if try_parse_tag(ref) is not None and not _have_ref(ws, ref):
                raise TagNotFoundError(ref)
        a = ws.history.read_manifest(ref_a, kind, TRACKED[kind])
        b = ws.history.read_manifest(ref_b, kind, TRACKED[kind])
    files_a = {f.path: f for f in a.files}
    files_b = {f.path: f for f in b.files}
    changes: list[FileChange] = []
    unchanged = 0
    for path in sorted(set(files_a) | set(files_b)):
        fa, fb = files_a.get(path), files_b.get(path)
        if fa is None and fb is not None:
            changes.append(FileChange(path, "added", None, fb.size))
        elif fb is None and fa is not None:
            changes.append(FileChange(path, "removed", fa.size, None))
        elif fa is not None and fb is not None and fa.blake3 != fb.blake3:
            changes.append(FileChange(path, "changed", fa.size, fb.size))
        else:
            unchanged += 1
    return VersionDiff(
        kind=kind, ref_a=ref_a, ref_b=ref_b, snapshot_a=a.snapshot_id, snapshot_b=b.snapshot_id,
        size_a=a.total_size, size_b=b.total_size, files=tuple(changes), unchanged=unchanged,
        metrics=tuple(compare(a.metrics, b.metrics)),
    )


@dataclass(frozen=True, slots=True)
class DamagedVersion:
    """A version (or an unreferenced snapshot) that cannot be fully restored, and which files."""

    label: str
    kind: Kind | None
    snapshot_id: str
    files: tuple[str, ...]
    unreadable: bool = False


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """The engine's :class:`~cpv.engine.VerifyReport` plus what it means in version names."""

    report: VerifyReport
    checked: tuple[str, ...]
    damaged: tuple[DamagedVersion, ...]

    @property
    def ok(self) -> bool:
        return self.report.ok


def verify_workspace(
    root: str | Path,
    rev: str | None = None,
    *,
    all_snapshots: bool = False,
    deep: bool = False,
    config: _BaseConfig | None = None,
    progress: Progress | None = None,
) -> VerifyOutcome:
    """Check that the store holds every byte of the current versions, of ``rev``, or of every
    snapshot (``all_snapshots``); ``deep`` re-reads and re-hashes every needed chunk.

    Never raises for damage: the outcome says which versions and files are affected.
    """
    with _open_ws(root, config, progress) as ws:
        labels: dict[str, list[tuple[str, Kind]]] = {}
        for kind in KINDS:
            current = ws.history.current_manifest(kind, TRACKED[kind])
            if current is not None:
                labels.setdefault(current.snapshot_id, []).append(("HEAD", kind))
        if all_snapshots or rev is None:
            for kind in KINDS:
                for info in ws.history.list_versions(kind):
                    for m in info.manifests:
                        labels.setdefault(m.snapshot_id, []).append((info.tag, kind))
        snapshot_ids: list[str] = []
        if all_snapshots:
            # Every snapshot in the store, and every version's even if the store lacks it
            # (then it is reported unreadable: that version cannot be restored from here).
            stored = [o.key[len(SNAPSHOT_PREFIX):]
                      for o in ws.repository().store.list(SNAPSHOT_PREFIX)]
            snapshot_ids = sorted(set(stored) | set(labels))
        else:
            targets = _resolve(ws, rev, None)
            for kind, ref in targets.items():
                manifest = (ws.history.current_manifest(kind, TRACKED[kind]) if ref is None
                            else ws.history.read_manifest(ref, kind, TRACKED[kind]))
                if manifest is None:  # pragma: no cover - _resolve checked it
                    continue
                if ref is not None:
                    labels.setdefault(manifest.snapshot_id, []).insert(0, (ref, kind))
                if manifest.snapshot_id not in snapshot_ids:
                    snapshot_ids.append(manifest.snapshot_id)
        report = _engine_verify(ws.repository(), snapshot_ids=snapshot_ids, deep=deep,
                                progress=ws.progress, limits=ws.limits)
    checked = sorted({label for sid in snapshot_ids for label, _ in labels.get(sid, [])})
    damaged: list[DamagedVersion] = []
    for sid, files in sorted(report.affected.items()):
        names = list(dict.fromkeys(labels.get(sid, [])))
        unreadable = sid in report.unreadable_snapshots
        if not names:
            damaged.append(DamagedVersion(f"unreferenced snapshot {sid[:12]}", None, sid,
                                          tuple(sorted(files)), unreadable))
        for label, kind in names:
            damaged.append(DamagedVersion(label, kind, sid, tuple(sorted(files)), unreadable))
    return VerifyOutcome(report=report, checked=tuple(checked), damaged=tuple(damaged))


@dataclass(frozen=True, slots=True)
class DoctorCheck:
    """One line of ``cpv doctor``: what was checked, the finding, and how to fix a problem."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


_MIN_GIT = (2, 20)
_MIN_FREE_BYTES = 1024 * MB


def _git_version() -> DoctorCheck:
    exe = shutil.which("git")
    if exe is None:
        return DoctorCheck("git", False, "git is not installed",
                           "install git 2.20 or newer (e.g. apt-get install git)")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DoctorCheck("git", False, f"git does not run: {exc}", "reinstall git")
    numbers = re.findall(r"\d+", out)
    version = tuple(int(n) for n in numbers[:2]) if len(numbers) >= 2 else (0, 0)
    if version < _MIN_GIT:
        return DoctorCheck("git", False, f"{out} is too old", "install git 2.20 or newer")
    return DoctorCheck("git", True, out)


def _git_identity(root: Path | None) -> DoctorCheck:
    exe = shutil.which("git")
    if exe is None:
        return DoctorCheck("git identity", False, "git is not installed", "install git")
    done = subprocess.run([exe, "var", "GIT_AUTHOR_IDENT"], capture_output=True, text=True,
                          timeout=30, check=False, cwd=root)
    if done.returncode != 0:
        return DoctorCheck(
            "git identity", False, "git has no user name/email; versions are recorded as cpv",
            'git config --global user.name "Your Name" && '
            "git config --global user.email you@example.com",
        )
    return DoctorCheck("git identity", True, done.stdout.strip().rsplit(" ", 2)[0])


def doctor_checks(
    root: Path | None,
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> list[DoctorCheck]:
    """Check what cpv needs on this machine and say how to fix each problem.

    ``root`` is the workspace (``None`` outside one). Never raises for a failed check.
    """
    import platform

    from cpv import __version__

    checks = [
        DoctorCheck("python", sys.version_info >= (3, 10),
                    f"{platform.python_version()} ({sys.executable})",
                    "" if sys.version_info >= (3, 10) else "use Python 3.10 or newer"),
        DoctorCheck("cpv", True, __version__),
        _git_version(),
        _git_identity(root),
    ]
    try:
        cfg = CPVConfig.load(config_path, workspace=root, env=env)
    except ConfigError as exc:
        checks.append(DoctorCheck("config", False, exc.message,
                                  exc.hint or "fix the file named above (see docs/config.md)"))
        return checks
    sources = ", ".join(cfg.sources) or "defaults only"
    checks.append(DoctorCheck("config", True, sources))
    if root is None:
        checks.append(DoctorCheck("workspace", False, f"{Path.cwd()} is not in a cpv workspace",
                                  "cd into a workspace, or create one: cpv init"))
    else:
        checks.append(DoctorCheck("workspace", True, str(root)))
    try:
        store_url = cfg.store_url(workspace=root)
    except ConfigError as exc:
        store_url = None
        if root is not None:
            checks.append(DoctorCheck("store", False, exc.message, exc.hint))
    if store_url is not None:
        for check in cfg.validate_credentials(workspace=root):
            fix = ""
            if not check.ok and check.name == "store":
                fix = ("check the AWS profile/keys, bucket and endpoint (cpv config wizard); "
                       "for a new store run cpv init")
            elif not check.ok:
                fix = "check the remote URL and your SSH key (cpv config wizard)"
            checks.append(DoctorCheck(check.name, check.ok, check.detail, fix))
    if root is not None and not cfg.git.remote_url:
        checks.append(DoctorCheck("git remote", True,
                                  "none configured (versions stay on this machine)"))
    where = root if root is not None else Path.cwd()
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        checks.append(DoctorCheck("disk", False, f"cannot read free space of {where}: {exc}",
                                  "check the folder"))
    else:
        ok = usage.free >= _MIN_FREE_BYTES
        checks.append(DoctorCheck(
            "disk", ok, f"{usage.free / (1024 * MB):.1f} GiB free in {where}",
            "" if ok else "free some disk space: pulls write each file next to its target first",
        ))
    return checks


def planned_tags(
    root: str | Path,
    kinds: Sequence[Kind],
    version: str | None,
    *,
    force: bool = False,
    config: _BaseConfig | None = None,
) -> list[str]:
    """The tags ``cpv push --tag [VERSION]`` would create for ``kinds`` (both: one number).

    Called before uploading, so a taken or malformed tag fails before any byte moves.

    Raises:
        InvalidTagError: ``version`` is not a version of that kind.
        TagExistsError: a tag is taken (unless ``force``, which moves it).
    """
    from cpv.errors import TagExistsError
    from cpv.versioning.tags import coerce_version, tag_name

    ordered = [k for k in KINDS if k in kinds]
    with _open_ws(root, config, None) as ws:
        if version is None:
            chosen = max(ws.history.next_version(k) for k in ordered)
        else:
            chosen = coerce_version(ordered[0] if len(ordered) == 1 else "model", version)
        names = [tag_name(k, chosen) for k in ordered]
        if not force:
            existing = ws.git.tag_targets()
            for name in names:
                if name in existing:
                    raise TagExistsError(name)
    return names


@dataclass(frozen=True, slots=True)
class GCOutcome:
    """What ``cpv gc`` kept live and what the engine's collector did (or would do)."""

    report: GCReport
    live_versions: tuple[str, ...]
    live_snapshots: int


def gc_workspace(
    root: str | Path,
    *,
    dry_run: bool = False,
    grace_period_s: float | None = None,
    break_stale_lock: bool = False,
    config: _BaseConfig | None = None,
    progress: Progress | None = None,
) -> GCOutcome:
    """Delete store data that no version of this workspace needs (see ``cpv gc --help``).

    Live: every snapshot any manifest names in any commit of any branch or tag (tagged or not),
    the working-tree manifests, and every snapshot in the store that this workspace did not
    push (other workspaces sharing the store, or pushes made without a workspace): only this
    workspace's own unreferenced snapshots are ever collected. Anything younger than the
    grace period (default 24 h) survives too, which protects pushes running elsewhere.

    Raises:
        StoreLockedError: another gc runs (exit 11). StoreError: re-run to finish.
    """
    with _open_ws(root, config, progress) as ws:
        live: dict[str, list[str]] = {}
        for kind in KINDS:
            current = ws.history.current_manifest(kind, TRACKED[kind])
            if current is not None:
                live.setdefault(current.snapshot_id, []).append(f"{kind} (working tree)")
            for info in ws.history.list_versions(kind):
                if info.problem is not None:
                    raise VersioningError(
                        f"cannot read the manifests of {info.tag}: {info.problem}",
                        hint="gc needs every version's snapshot ids; repair the tag first",
                    )
                for m in info.manifests:
                    live.setdefault(m.snapshot_id, []).append(info.tag)
            head = ws.git.head_commit()
            if head is not None:
                for m in ws.history.read_manifests(head, kind).values():
                    live.setdefault(m.snapshot_id, []).append(f"{kind} (HEAD)")
        for sid in ws.history.snapshots_in_history():
            live.setdefault(sid, []).append("history")
        repo = ws.repository()
        mine = ws.workspace_id
        for obj in repo.store.list("snapshots/"):
            sid = obj.key.rsplit("/", 1)[-1]
            if sid in live:
                continue
            try:
                owner = repo.load_snapshot(sid).meta.get("workspace")
            except CPVError:
                # Never collect what cannot be read: its owner is unknown (gc reports it).
                live.setdefault(sid, []).append("unreadable")
                continue
            if mine is None or owner != mine:
                live.setdefault(sid, []).append("other workspace")
        report = collect_garbage(
            ws.repository(), live_snapshots=list(live), dry_run=dry_run,
            grace_period_s=DEFAULT_GRACE_S if grace_period_s is None else grace_period_s,
            break_stale_lock=break_stale_lock, progress=ws.progress, limits=ws.limits,
        )
    labels = sorted({label for names in live.values() for label in names})
    return GCOutcome(report=report, live_versions=tuple(labels), live_snapshots=len(live))
