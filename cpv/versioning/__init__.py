"""Versioning: manifests, tags, metrics and history in Git. Knows nothing of S3 or chunks.

The API layer hands :class:`History` a :class:`Manifest` built from the engine's push result
and gets commits, tags and version listings back; GitPython stays inside
:mod:`cpv.versioning.gitrepo`. See ``docs/versioning.md``.
"""

from __future__ import annotations

from cpv.versioning.gitrepo import GitRepo, TagInfo
from cpv.versioning.history import (
    CombinedTagRecord,
    History,
    ManifestChange,
    RevertRecord,
    TagRecord,
    VersionInfo,
    VersionRecord,
    WorkspaceStatus,
)
from cpv.versioning.manifest import (
    READ_SCHEMAS,
    SCHEMA_VERSION,
    ChangeCounts,
    FileEntry,
    Lineage,
    Manifest,
    manifest_for_files,
    manifest_name,
    manifest_relpath,
    pointer_manifest,
)
from cpv.versioning.metrics import MetricDelta, compare, load_metrics_file, resolve_metrics
from cpv.versioning.tags import KINDS, Kind, Version, parse_tag, tag_name

__all__ = [
    "KINDS",
    "READ_SCHEMAS",
    "SCHEMA_VERSION",
    "ChangeCounts",
    "CombinedTagRecord",
    "FileEntry",
    "GitRepo",
    "History",
    "Kind",
    "Lineage",
    "Manifest",
    "ManifestChange",
    "MetricDelta",
    "RevertRecord",
    "TagInfo",
    "TagRecord",
    "Version",
    "VersionInfo",
    "VersionRecord",
    "WorkspaceStatus",
    "compare",
    "load_metrics_file",
    "manifest_for_files",
    "manifest_name",
    "manifest_relpath",
    "parse_tag",
    "pointer_manifest",
    "resolve_metrics",
    "tag_name",
]
