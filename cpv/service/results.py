"""Typed results of the workspace service; the CLI renders them, the seed facades return them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cpv.credentials import CredentialCheck
from cpv.versioning import ManifestChange, MetricDelta
from cpv.workspace import Kind

if TYPE_CHECKING:  # fields' types only: a push's result needs neither gc nor verify
    from cpv.engine.gc import GCReport
    from cpv.engine.verify import VerifyReport

MB = 1024 * 1024

__all__ = ["CredentialCheck"]  # re-exported: the seed API returns it


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
    skipped_links: tuple[str, ...] = ()
    #: Files of the previous version this push's --exclude / --include left out of this one.
    left_out: tuple[str, ...] = ()
    path: str = ""
    """The tracked path pushed (``model``, ``outputs/checkpoint-500``)."""
    is_dir: bool = True
    """False when the tracked path is a single file."""

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
    files_removed: int = 0


@dataclass(frozen=True, slots=True)
class InitResult:
    workspace: Path
    store_url: str
    created: bool
    remote: str | None


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
    files_removed: int = 0


@dataclass(frozen=True, slots=True)
class KindStatus:
    """One tracked kind in ``cpv status``.

    ``version`` is the newest tag whose manifest is the current one (``None``: not tagged);
    ``changed`` lists files edited, added or deleted here since this machine last pushed,
    pulled or checked out; ``behind`` says the folder does not hold the current manifest's
    version (a fresh clone, another machine pushed, or an older version was pulled):
    ``cpv pull`` follows.
    """

    kind: Kind
    path: str
    recorded: bool
    snapshot_id: str | None
    files: int
    total_bytes: int
    version: str | None
    changed: tuple[str, ...]
    behind: bool = False
    #: Files of the current version still here that .cpvignore (or a default rule) hides:
    #: the next push would refuse rather than drop them unnoticed.
    hidden: tuple[str, ...] = ()
    is_dir: bool = True
    """False when the tracked path is a single file."""


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Where a workspace stands; see :meth:`WorkspaceService.status`."""

    root: Path
    branch: str | None
    head: str | None
    remote: str | None
    store_url: str
    kinds: tuple[KindStatus, ...]
    manifest_changes: tuple[ManifestChange, ...]
    unpublished_commits: int = 0
    unpublished_tags: tuple[str, ...] = ()
    remote_problem: str | None = None

    @property
    def clean(self) -> bool:
        return not self.manifest_changes and not any(k.changed for k in self.kinds)


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


@dataclass(frozen=True, slots=True)
class DamagedVersion:
    """A version (or an unreferenced snapshot) that cannot be fully restored, and which files.

    ``elsewhere`` names the store the version was pushed to when that is not this workspace's
    store: the version is not damaged, it lives in another store.
    """

    label: str
    kind: Kind | None
    snapshot_id: str
    files: tuple[str, ...]
    unreadable: bool = False
    elsewhere: str | None = None


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """The engine's :class:`~cpv.engine.VerifyReport` plus what it means in version names."""

    report: VerifyReport
    checked: tuple[str, ...]
    damaged: tuple[DamagedVersion, ...]

    @property
    def ok(self) -> bool:
        return self.report.ok


@dataclass(frozen=True, slots=True)
class DoctorCheck:
    """One line of ``cpv doctor``: what was checked, the finding, and how to fix a problem."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass(frozen=True, slots=True)
class GCOutcome:
    """What ``cpv gc`` kept live and what the engine's collector did (or would do)."""

    report: GCReport
    live_versions: tuple[str, ...]
    live_snapshots: int


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """``cpv push``: one upload per kind, the tags made, and where history was published."""

    results: tuple[UploadResult, ...]
    tags: tuple[str, ...]
    pushed_to: str | None
