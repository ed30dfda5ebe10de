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
from cpv.workspace import DATA_SPLITS, TRACKED, Kind, Workspace, exclude_internal

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
                    hint="fix the remote and run 'cpv sync' (or git push) to publish it",
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
            result = self._upload(
                path, metrics=metrics, message=message, dry_run=dry_run, force=force
            )
            log.info(
                "model: %d files, %.1f MB, %.1f MB uploaded",
                result.files,
                result.size_mb,
                result.uploaded_bytes / MB,
            )
            if not dry_run:
                self._notify(
                    notify,
                    {
                        "event": "upload",
                        "kind": "model",
                        "snapshot_id": result.snapshot_id,
                        "commit": result.commit,
                    },
                )
            return result

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
            tag = self._tag(
                version_tag, message=message, metrics=metrics, force=force, dry_run=dry_run
            )
            if not dry_run:
                self._notify(notify, {"event": "tag", "kind": "model", "tag": tag})
            return tag

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
            result = self._upload(
                path, metrics=metrics, message=message, dry_run=dry_run, force=force
            )
            if not dry_run:
                self._notify(
                    notify,
                    {
                        "event": "upload",
                        "kind": "data",
                        "snapshot_id": result.snapshot_id,
                        "commit": result.commit,
                    },
                )
            return result

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
            tag = self._tag(
                version_tag, message=message, metrics=metrics, force=force, dry_run=dry_run
            )
            if not dry_run:
                self._notify(notify, {"event": "tag", "kind": "data", "tag": tag})
            return tag

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
        store = open_store(
            url, profile=cfg.aws.profile, region=cfg.aws.region, endpoint_url=cfg.aws.endpoint_url
        )
        try:
            Repository.init(store, pack_size=cfg.transfer.pack_size).close()
        finally:
            store.close()
        git.commit_paths(
            [".cpv/config.json", ".gitignore", "train.py", "README.md"], "cpv: initialize workspace"
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
