"""The storage engine: file trees <-> snapshots in a content-addressed, chunked store.

Knows nothing of Git. Entry points::

    repo = Repository.init(store)            # or Repository.open(store)
    result = push(repo, Path("checkpoint/")) # -> PushResult (snapshot_id, bytes, chunks, ...)
    pull(repo, result.snapshot_id, Path("restore/"))
    verify(repo, deep=True)
    forget(repo, ForgetPolicy(keep_last=10))  # versions are roots in the store (roots.py)
    repair(repo, sources=[Path("checkpoint/")])
"""

from cpv.engine.chunking import DEFAULT_CHUNKER, ChunkerParams
from cpv.engine.pull import PullResult, pull
from cpv.engine.push import PushResult, SymlinkPolicy, push
from cpv.engine.repair import RepairReport, repair
from cpv.engine.repository import Repository, SnapshotInfo
from cpv.engine.roots import ForgetPolicy, ForgetReport, RootInfo, RootSet, forget, list_roots
from cpv.engine.snapshot import FileEntry, Snapshot, check_snapshot_matches
from cpv.engine.transfer import TransferLimits
from cpv.engine.verify import VerifyReport, verify
from cpv.engine.worktree import local_changes, remove_replaced

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
