"""The workspace service: the one layer the CLI and the seed facades call.

See :class:`WorkspaceService` for operations on an open workspace, :func:`init_workspace` and
:func:`clone_workspace` for making one, :func:`doctor_checks` for ``cpv doctor``.

Names are imported on first use (PEP 562), so a command that opens a workspace does not also
import workspace creation, doctor checks and every result type's dependencies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

_HOME = {
    "clone_workspace": "create",
    "init_workspace": "create",
    "doctor_checks": "doctor",
    "validate_credentials": "doctor",
    "WorkspaceService": "workspace",
    "find_workspace": "workspace",
    "load_metric_inputs": "workspace",
}


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module 'cpv.service' has no attribute {name!r}")
    # __import__, not importlib.import_module: the module then shows in ``-X importtime``.
    module = __import__(f"cpv.service.{_HOME.get(name, 'results')}", fromlist=[name])
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
