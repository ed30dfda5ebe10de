"""The storage engine: file trees <-> snapshots in a content-addressed, chunked store.

Knows nothing of Git. Entry points::

    repo = Repository.init(store)            # or Repository.open(store)
    result = push(repo, Path("checkpoint/")) # -> PushResult (snapshot_id, bytes, chunks, ...)
    pull(repo, result.snapshot_id, Path("restore/"))
    verify(repo, deep=True)
    forget(repo, ForgetPolicy(keep_last=10))  # versions are roots in the store (roots.py)
    repair(repo, sources=[Path("checkpoint/")])

Names are imported on first use (PEP 562): ``import cpv.engine.statcache`` (what a no-op
``cpv push`` needs) must not pull in the transfer pools, push, pull and gc with it.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cpv.engine.chunking import DEFAULT_CHUNKER, ChunkerParams
    from cpv.engine.limits import TransferLimits
    from cpv.engine.pull import PullResult, pull
    from cpv.engine.push import PushResult, SymlinkPolicy, push
    from cpv.engine.repair import RepairReport, repair
    from cpv.engine.repository import Repository, SnapshotInfo
    from cpv.engine.roots import (
        ForgetPolicy,
        ForgetReport,
        RootInfo,
        RootSet,
        forget,
        list_roots,
    )
    from cpv.engine.snapshot import FileEntry, Snapshot, check_snapshot_matches
    from cpv.engine.verify import VerifyReport, verify
    from cpv.engine.worktree import local_changes, remove_replaced

_LAZY = {
    "DEFAULT_CHUNKER": "chunking",
    "ChunkerParams": "chunking",
    "FileEntry": "snapshot",
    "ForgetPolicy": "roots",
    "ForgetReport": "roots",
    "PullResult": "pull",
    "PushResult": "push",
    "RepairReport": "repair",
    "Repository": "repository",
    "RootInfo": "roots",
    "RootSet": "roots",
    "Snapshot": "snapshot",
    "SnapshotInfo": "repository",
    "SymlinkPolicy": "push",
    "TransferLimits": "limits",
    "VerifyReport": "verify",
    "check_snapshot_matches": "snapshot",
    "forget": "roots",
    "list_roots": "roots",
    "local_changes": "worktree",
    "pull": "pull",
    "push": "push",
    "remove_replaced": "worktree",
    "repair": "repair",
    "verify": "verify",
}

__all__ = [
    "DEFAULT_CHUNKER",
    "ChunkerParams",
    "FileEntry",
    "ForgetPolicy",
    "ForgetReport",
    "PullResult",
    "PushResult",
    "RepairReport",
    "Repository",
    "RootInfo",
    "RootSet",
    "Snapshot",
    "SnapshotInfo",
    "SymlinkPolicy",
    "TransferLimits",
    "VerifyReport",
    "check_snapshot_matches",
    "forget",
    "list_roots",
    "local_changes",
    "pull",
    "push",
    "remove_replaced",
    "repair",
    "verify",
]

#: Names that are also submodules: ``cpv.engine.push`` stays the function, as it was when this
#: package imported everything eagerly, even after ``cpv.engine.push`` (the module) is imported.
_SHADOWED = frozenset(n for n, m in _LAZY.items() if n == m)


class _Engine(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SHADOWED and isinstance(value, types.ModuleType):
            return  # the import system binding a submodule: the function keeps the name
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Engine


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'cpv.engine' has no attribute {name!r}")
    # __import__, not importlib.import_module: the module then shows in ``-X importtime``.
    value = getattr(__import__(f"cpv.engine.{module}", fromlist=[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*__all__, *globals()})
