"""cpv: version model checkpoints and data sets; Git holds history, a store holds the bytes.

The public surface is the seed design's facade::

    from cpv import CPVConfig, ModelsCheckpointsManage, DataCheckpointsManage, CombinedCheckpointsManage

The storage engine is usable on its own from :mod:`cpv.engine` (push/pull/verify of file trees).
"""

from __future__ import annotations

__version__ = "0.1.0"

from cpv.api import (  # noqa: E402  (after __version__: cpv.notify reads it)
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
from cpv.errors import CPVError  # noqa: E402

__all__ = [
    "CPVConfig",
    "CPVError",
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
