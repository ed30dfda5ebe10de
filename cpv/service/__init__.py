"""The workspace service: the one layer the CLI and the seed facades call.

See :class:`WorkspaceService` for operations on an open workspace, :func:`init_workspace` and
:func:`clone_workspace` for making one, :func:`doctor_checks` for ``cpv doctor``.
"""

from cpv.service.create import clone_workspace, init_workspace
from cpv.service.doctor import doctor_checks, validate_credentials
from cpv.service.results import (
    CredentialCheck,
    DamagedVersion,
    DataArtifacts,
    DoctorCheck,
    FileChange,
    GCOutcome,
    InitResult,
    KindStatus,
    ModelArtifacts,
    PullSummary,
    PushOutcome,
    RevertResult,
    StatusReport,
    UploadResult,
    VerifyOutcome,
    VersionDiff,
)
from cpv.service.workspace import WorkspaceService, find_workspace, load_metric_inputs

__all__ = [
    "CredentialCheck",
    "DamagedVersion",
    "DataArtifacts",
    "DoctorCheck",
    "FileChange",
    "GCOutcome",
    "InitResult",
    "KindStatus",
    "ModelArtifacts",
    "PullSummary",
    "PushOutcome",
    "RevertResult",
    "StatusReport",
    "UploadResult",
    "VerifyOutcome",
    "VersionDiff",
    "WorkspaceService",
    "clone_workspace",
    "doctor_checks",
    "find_workspace",
    "init_workspace",
    "load_metric_inputs",
    "validate_credentials",
]
