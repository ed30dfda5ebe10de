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
from cpv.engine.push import PushResult, push
from cpv.engine.repair import RepairReport, repair
from cpv.engine.repository import Repository, SnapshotInfo
from cpv.engine.roots import ForgetPolicy, ForgetReport, RootInfo, RootSet, forget, list_roots
from cpv.engine.snapshot import FileEntry, Snapshot
from cpv.engine.transfer import TransferLimits
from cpv.engine.verify import VerifyReport, verify

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
    "TransferLimits",
    "VerifyReport",
    "forget",
    "list_roots",
    "pull",
    "push",
    "repair",
    "verify",
]
