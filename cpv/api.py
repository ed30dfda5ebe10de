"""The Python API users expect from the seed design: thin adapters over the workspace service.

Each method opens (once) the :class:`~cpv.service.WorkspaceService` of its workspace and
delegates; results are the service's typed results. Options are explicit keyword-only
parameters: a misspelt one (``dryrun=True``) is a ``TypeError``, not silently ignored as the
seed's ``**kwargs`` were.

Meaning of the seed's flags here:

- ``dry_run``: compute and return what would happen (bytes to upload, next tag); touch nothing.
- ``verbose``: log progress at INFO to stderr for the duration of the call.
- ``force``: upload -> re-hash every file (ignore the stat cache), and record the tree even over
  a newer version; tag -> move an existing tag; revert/download -> overwrite local changes.
  It never means "upload everything again": content addressing makes that pointless.
- ``notify``: POST a JSON event to ``notify.webhook_url`` (Slack/Teams); a failed notification
  is logged, never fatal, since the version is already recorded.

Paths: ``dest`` and ``data_path`` are relative to the current folder, as on the command line
(``cpv pull ... --to DIR``); the workspace is found as the CLI finds it (see
:func:`locate_workspace`).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from typing_extensions import Self

from cpv.config import CPVConfig
from cpv.errors import ConfigError, CPVError, NotAWorkspaceError
from cpv.progress import NULL_PROGRESS, Progress
from cpv.service import (
    DataArtifacts,
    InitResult,
    ModelArtifacts,
    RevertResult,
    UploadResult,
    WorkspaceService,
    clone_workspace,
    find_workspace,
    init_workspace,
)
from cpv.service.results import CredentialCheck
from cpv.versioning import MetricDelta, VersionInfo, compare
from cpv.versioning.tags import Version, parse_tag, tag_name
from cpv.workspace import DEFAULT_TRACKS, Kind, Track

__all__ = [
    "CPVConfig",
    "CombinedCheckpointsManage",
    "CredentialCheck",
    "DataArtifacts",
    "DataCheckpointsManage",
    "InitResult",
    "ModelArtifacts",
    "ModelsCheckpointsManage",
    "RevertResult",
    "UploadResult",
    "clone_workspace",
    "compare_versions",
    "list_team_models",
    "locate_workspace",
    "upload_team_models",
]

log = logging.getLogger(__name__)

MB = 1024 * 1024


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


def locate_workspace(model_name: str | None, workspace: str | Path | None) -> Path:
    """Where a facade's workspace is (or will be, for ``import_*_init``).

    ``workspace`` wins. Otherwise the workspace around the current folder (found upwards, as
    the CLI does) when it is that model's (its folder or configured model name matches, or no
    model is named); else ``./<model_name>``; else the current folder.
    """
    if workspace is not None:
        return Path(workspace).expanduser().absolute()
    try:
        found = find_workspace(Path.cwd())
    except NotAWorkspaceError:
        found = None
    if found is not None and (model_name is None or found.name == model_name
                              or CPVConfig.load(workspace=found).model == model_name):
        return found
    if model_name:
        return (Path.cwd() / model_name).absolute()
    return Path.cwd().absolute()


class _Facade:
    """Shared plumbing of the model and data facades (one workspace, one kind)."""

    kind: Kind

    def __init__(
        self,
        team_name: str | None = None,
        model_name: str | None = None,
        *,
        workspace: str | Path | None = None,
        config: CPVConfig | None = None,
        progress: Progress | None = None,
        verbose: bool = False,
        path: str | Path | None = None,
        name: str | None = None,
    ) -> None:
        self.workspace_dir = locate_workspace(model_name, workspace)
        # Any folder or file of the workspace (``outputs/checkpoint-500``), versioned on its
        # own line (``name@v0.1``, ``name`` chosen by the first upload, else the path's slug);
        # default: the seed layout's model/ or data/ folder.
        self.tracked_path = path
        self.line_name = name
        if config is None:
            is_ws = (self.workspace_dir / ".cpv").is_dir()
            config = CPVConfig.load(workspace=self.workspace_dir if is_ws else None)
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
        self._service: WorkspaceService | None = None

    @property
    def service(self) -> WorkspaceService:
        """The workspace service, opened on first use (``import_*_init`` creates it first)."""
        if self._service is None:
            self._service = WorkspaceService.open(
                self.workspace_dir, config=self.config, progress=self.progress,
                search_parents=False, interface="python")
        return self._service

    @property
    def track(self) -> Track:
        """The tracked path this facade versions (checked as ``cpv push PATH`` checks it)."""
        if self.tracked_path is None:
            return DEFAULT_TRACKS[self.kind]
        path = Path(self.tracked_path)
        return self.service.track_for(path if path.is_absolute() else self.workspace_dir / path,
                                      self.kind, name=self.line_name)

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
            self._service = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _init(self, data_path: str | Path | None, store_url: str | None,
              remote_url: str | None, dry_run: bool, verbose: bool) -> InitResult:
        with _verbose_logging(verbose or self.verbose):
            return init_workspace(self.workspace_dir, config=self.config, data_path=data_path,
                                  store_url=store_url, remote_url=remote_url, dry_run=dry_run)

    def _upload(self, path: str | Path | None, metrics: Mapping[str, float] | str | Path | None,
                message: str, dry_run: bool, force: bool, verbose: bool,
                notify: bool, params: Mapping[str, str] | None = None) -> UploadResult:
        with _verbose_logging(verbose or self.verbose):
            result = self.service.upload(self.kind, path=path, metrics=metrics,
                                         message=message, dry_run=dry_run, force=force,
                                         params=params, track=self.track)
            log.info("%s: %d files, %.1f MB, %.1f MB uploaded", self.kind, result.files,
                     result.size_mb, result.uploaded_bytes / MB)
            if not dry_run:
                self.service.notify(notify, {"event": "upload", "kind": self.kind,
                                             "snapshot_id": result.snapshot_id,
                                             "commit": result.commit})
            return result

    def _tag(self, version_tag: str | None, message: str | None,
             metrics: Mapping[str, float] | str | Path | None, force: bool, dry_run: bool,
             verbose: bool, notify: bool) -> str:
        with _verbose_logging(verbose or self.verbose):
            return self.service.tag_line(self.track, version_tag, message=message,
                                         metrics=metrics, force=force, dry_run=dry_run,
                                         notify=notify)[0]

    def _revert(self, tag: str, force: bool, dry_run: bool, verbose: bool) -> RevertResult:
        track = self.track
        if not track.is_default and "@" not in tag:
            tag = track.tag(Version.parse(tag))  # "v0.1" of this facade's own line
        with _verbose_logging(verbose or self.verbose):
            return self.service.checkout(tag, force=force, dry_run=dry_run, kinds=[self.kind])[0]

    def _compare(self, tag_a: str, tag_b: str) -> list[MetricDelta]:
        return self.service.compare(self.kind, tag_a, tag_b, track=self.track)


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
        self, data_path: str | Path | None = None, *, store_url: str | None = None,
        remote_url: str | None = None, dry_run: bool = False, verbose: bool = False,
    ) -> InitResult:
        """Create the workspace: Git repository, store, folders, templates (safe to re-run)."""
        return self._init(data_path, store_url, remote_url, dry_run, verbose)

    def upload_model_checkpoint(
        self, path: str | Path | None = None, *,
        metrics: Mapping[str, float] | str | Path | None = None, message: str = "",
        dry_run: bool = False, force: bool = False, verbose: bool = False, notify: bool = False,
        params: Mapping[str, str] | None = None,
    ) -> UploadResult:
        """Push the model files (default ``<workspace>/model``) and record them as a version.

        The version records the data in the workspace now (its lineage) and ``params``
        (hyper-parameters, kept as strings); :meth:`get_model_metadata` returns both.

        Raises:
            LocalIOError (nothing to upload), DirtyWorkspaceError, SourceChangedError,
            UnsafePathError, StoreError, TransferError, GitRemoteError (recorded here, not
            published; the next call publishes it).
        """
        return self._upload(path, metrics, message, dry_run, force, verbose, notify, params)

    def tag_model_checkpoint(
        self, version_tag: str | None = None, message: str | None = None, *,
        metrics: Mapping[str, float] | str | Path | None = None, force: bool = False,
        dry_run: bool = False, verbose: bool = False, notify: bool = False,
    ) -> str:
        """Tag the current model version: ``v{major}.{minor}``, auto-incremented numerically.

        Raises:
            TagExistsError (unless force), InvalidTagError, VersioningError (nothing to tag,
            or the version is already tagged), GitRemoteError.
        """
        return self._tag(version_tag, message, metrics, force, dry_run, verbose, notify)

    def read_checkpoint_tag(self) -> list[VersionInfo]:
        """Model versions, oldest first, with dates, authors, messages and metrics."""
        return self.service.line_versions(self.track)

    def download_model_checkpoint(
        self, tag: str | None = None, *, dest: str | Path | None = None, force: bool = False,
        verbose: bool = False,
    ) -> ModelArtifacts:
        """Bring the model files of ``tag`` (default: the current version) to disk."""
        with _verbose_logging(verbose or self.verbose):
            manifest, label, target, _ = self.service.download("model", tag, dest=dest,
                                                               force=force, track=self.track)
            return ModelArtifacts(
                model_path=str(target), metrics=dict(manifest.metrics),
                timestamp=manifest.created_at.isoformat(), tag=label,
                size_mb=round(manifest.total_size / MB, 3), snapshot_id=manifest.snapshot_id,
                files=manifest.file_count)

    def revert_model_checkpoint(
        self, tag: str, *, force: bool = False, dry_run: bool = False, verbose: bool = False
    ) -> RevertResult:
        """Put the workspace's model files and manifest back to ``tag`` (a new commit)."""
        return self._revert(tag, force, dry_run, verbose)

    def get_model_metadata(self, tag: str | None = None) -> dict[str, Any]:
        """Size, metrics, snapshot, author and time of ``tag`` (default: current version),
        with its ``lineage`` (the data it was pushed with, or None) and ``params``."""
        return self.service.metadata("model", tag, track=self.track)

    def set_alias(self, alias: str, tag: str, message: str = "") -> str:
        """Point ``alias`` (``production``) at the version ``tag``; made or moved, recorded
        with who, when and ``message`` in Git, published with the versions. Returns the tag.

        Raises:
            InvalidAliasError: a bad name, one that shadows a version or branch, or a ``tag``
                that is not a version.
        """
        target = self.service.set_alias(alias, tag, message=message).target
        assert target is not None  # a move to a version, never a deletion
        return target

    def read_alias(self, alias: str) -> str:
        """The version tag ``alias`` points to.

        Raises:
            InvalidAliasError: no such alias.
        """
        target = self.service.read_alias(alias).target
        assert target is not None  # read_alias refuses a deleted alias
        return target

    def read_aliases(self) -> dict[str, str]:
        """Every alias -> the version tag it points to."""
        return {a.name: a.target for a in self.service.aliases() if a.target is not None}

    def delete_alias(self, alias: str, message: str = "") -> None:
        """Delete ``alias``; its log of moves stays in Git.

        Raises:
            InvalidAliasError: no such alias.
        """
        self.service.delete_alias(alias, message=message)

    def compare_model_checkpoints(self, tag_a: str, tag_b: str) -> list[MetricDelta]:
        """Per-metric values of two versions and their difference."""
        return self._compare(tag_a, tag_b)


class DataCheckpointsManage(_Facade):
    """Version the training data (``data/{train,validation,test}``) of a workspace.

    A model version name means the data of that number here too, as in the CLI: ``v0.1``
    reads ``data-v0.1``.
    """

    kind: Kind = "data"

    def import_data_init(
        self, data_path: str | Path | None = None, *, store_url: str | None = None,
        remote_url: str | None = None, dry_run: bool = False, verbose: bool = False,
    ) -> InitResult:
        """Create the workspace (as :meth:`ModelsCheckpointsManage.import_model_init`)."""
        return self._init(data_path, store_url, remote_url, dry_run, verbose)

    def upload_data_checkpoint(
        self, path: str | Path | None = None, *,
        metrics: Mapping[str, float] | str | Path | None = None, message: str = "",
        dry_run: bool = False, force: bool = False, verbose: bool = False, notify: bool = False,
    ) -> UploadResult:
        """Push the data folder (default ``<workspace>/data``) and record it as a version."""
        return self._upload(path, metrics, message, dry_run, force, verbose, notify)

    def tag_data_checkpoint(
        self, version_tag: str | None = None, message: str | None = None, *,
        metrics: Mapping[str, float] | str | Path | None = None, force: bool = False,
        dry_run: bool = False, verbose: bool = False, notify: bool = False,
    ) -> str:
        """Tag the current data version: ``data-v{major}.{minor}``."""
        return self._tag(version_tag, message, metrics, force, dry_run, verbose, notify)

    def read_data_checkpoint_tag(self) -> list[VersionInfo]:
        """Data versions, oldest first."""
        return self.service.line_versions(self.track)

    def download_data_checkpoint(
        self, tag: str | None = None, *, dest: str | Path | None = None,
        splits: Sequence[str] | None = None, force: bool = False, verbose: bool = False,
    ) -> DataArtifacts:
        """Bring the data of ``tag`` to disk; ``splits`` limits it to e.g. ``["validation"]``."""
        if splits is not None:
            unknown = [s for s in splits if "/" in s or s in ("", ".", "..")]
            if unknown:
                raise ConfigError(f"invalid split name {unknown[0]!r}",
                                  hint="give split folder names, e.g. splits=['validation']")
        with _verbose_logging(verbose or self.verbose):
            manifest, label, target, _ = self.service.download("data", tag, dest=dest,
                                                               paths=splits, force=force,
                                                               track=self.track)
            counts = {k.split(".", 1)[1]: v for k, v in manifest.extra.items()
                      if k.startswith("samples.") and isinstance(v, int)}
            return DataArtifacts(
                data_path=str(target), version=label, timestamp=manifest.created_at.isoformat(),
                tag=label, size_mb=round(manifest.total_size / MB, 3),
                sample_count=manifest.file_count, splits=counts,
                snapshot_id=manifest.snapshot_id)

    def revert_data_checkpoint(
        self, tag: str, *, force: bool = False, dry_run: bool = False, verbose: bool = False
    ) -> RevertResult:
        """Put the workspace's data files and manifest back to ``tag``."""
        return self._revert(tag, force, dry_run, verbose)

    def get_data_metadata(self, tag: str | None = None) -> dict[str, Any]:
        """Size, file counts per split, snapshot, author and time of ``tag``."""
        meta = self.service.metadata("data", tag, track=self.track)
        meta["sample_count"] = meta["files"]
        return meta

    def compare_data_checkpoints(self, tag_a: str, tag_b: str) -> list[MetricDelta]:
        """Per-metric values of two data versions and their difference."""
        return self._compare(tag_a, tag_b)


class CombinedCheckpointsManage:
    """Model and data of one workspace versioned together: one number for both, atomically."""

    def __init__(
        self, team_name: str | None = None, model_name: str | None = None, *,
        workspace: str | Path | None = None, config: CPVConfig | None = None,
        progress: Progress | None = None, verbose: bool = False,
    ) -> None:
        self.models = ModelsCheckpointsManage(team_name, model_name, workspace=workspace,
                                              config=config, progress=progress, verbose=verbose)
        self.data = DataCheckpointsManage(team_name, model_name, workspace=workspace,
                                          config=self.models.config, progress=progress,
                                          verbose=verbose)
        self.verbose = verbose

    def close(self) -> None:
        self.models.close()
        self.data.close()

    def __enter__(self) -> CombinedCheckpointsManage:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def tag_model_and_data(
        self, version_tag: str | None = None, message: str | None = None, *,
        metrics: Mapping[str, float] | str | Path | None = None, force: bool = False,
        dry_run: bool = False, verbose: bool = False, notify: bool = False,
    ) -> tuple[str, str]:
        """Tag model and data with one version (``vX.Y`` + ``data-vX.Y``); all or nothing."""
        with _verbose_logging(verbose or self.verbose):
            model, data = self.models.service.tag(
                ["model", "data"], version_tag, message=message, metrics=metrics, force=force,
                dry_run=dry_run, notify=notify)
            return model, data

    def revert_model_and_data(
        self, tag: str, *, force: bool = False, dry_run: bool = False, verbose: bool = False
    ) -> tuple[RevertResult, RevertResult]:
        """Revert both model and data to the version ``tag`` (``vX.Y``)."""
        _, version = parse_tag(tag)
        with _verbose_logging(verbose or self.verbose):
            service = self.models.service
            model = service.checkout(tag_name("model", version), force=force, dry_run=dry_run,
                                     kinds=["model"])[0]
            data = service.checkout(tag_name("data", version), force=force, dry_run=dry_run,
                                    kinds=["data"])[0]
            return model, data

    def get_combined_metadata(self, tag: str | None = None) -> dict[str, Any]:
        """Model and data metadata of one version side by side."""
        if tag is None:
            return {"model": self.models.get_model_metadata(),
                    "data": self.data.get_data_metadata()}
        _, version = parse_tag(tag)
        return {"tag": tag_name("model", version),
                "model": self.models.get_model_metadata(tag_name("model", version)),
                "data": self.data.get_data_metadata(tag_name("data", version))}


# -- batch operations ------------------------------------------------------------------------


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
            out.append(ModelSummary(child.name, child, last.tag if last else None,
                                    dict(last.metrics) if last else {}, len(versions)))
    return out


def upload_team_models(
    team_root: str | Path, *, message: str = "", dry_run: bool = False,
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
                results[child.name] = mcm.upload_model_checkpoint(message=message,
                                                                  dry_run=dry_run)
        except CPVError as exc:
            results[child.name] = exc
    return results


def compare_versions(a: Mapping[str, float], b: Mapping[str, float]) -> list[MetricDelta]:
    """Compare two metric mappings (e.g. from two ``get_model_metadata`` calls)."""
    return compare(a, b)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
