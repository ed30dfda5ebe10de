"""cpv: version model checkpoints and data sets; Git holds history, a store holds the bytes.

The public surface is the seed design's facade::

    from cpv import CPVConfig, ModelsCheckpointsManage
    from cpv import DataCheckpointsManage, CombinedCheckpointsManage

The storage engine is usable on its own from :mod:`cpv.engine` (push/pull/verify of file trees).
Names are imported lazily, so ``cpv --version`` and ``import cpv.engine`` do not pay for the
facade's imports (Git, pydantic).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cpv._version import __version__

if TYPE_CHECKING:
    from cpv.api import (
        CombinedCheckpointsManage,
        CPVConfig,
        DataArtifacts,
        DataCheckpointsManage,
        InitResult,
        ModelArtifacts,
        ModelsCheckpointsManage,
        RevertResult,
        UploadResult,
    )
    from cpv.checkpointer import Checkpointer
    from cpv.errors import CPVError

_LAZY = {
    "CombinedCheckpointsManage": "cpv.api",
    "CPVConfig": "cpv.api",
    "DataArtifacts": "cpv.api",
    "DataCheckpointsManage": "cpv.api",
    "InitResult": "cpv.api",
    "ModelArtifacts": "cpv.api",
    "ModelsCheckpointsManage": "cpv.api",
    "RevertResult": "cpv.api",
    "UploadResult": "cpv.api",
    "CPVError": "cpv.errors",
    "Checkpointer": "cpv.checkpointer",
    "open": "cpv.lazy",
}

__all__ = [
    "CPVConfig",
    "CPVError",
    "Checkpointer",
    "CombinedCheckpointsManage",
    "DataArtifacts",
    "DataCheckpointsManage",
    "InitResult",
    "ModelArtifacts",
    "ModelsCheckpointsManage",
    "RevertResult",
    "UploadResult",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cpv' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
