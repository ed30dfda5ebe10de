"""Many writers, one version: what a writer runs (store only) and what the coordinator runs (Git).

The protocol itself is the engine's (:mod:`cpv.engine.sessions`); this module adds what only the
service knows: how a writer with no workspace opens the store from its settings, and how the
coordinator records the combined snapshot as one version (one manifest commit, optionally one
tag), publishes it, and then lets the parts' own roots go.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.config import CPVConfig
from cpv.engine import Repository
from cpv.engine.roots import RootInfo, record_push
from cpv.engine.sessions import (
    PartRecord,
    check_name,
    claim_session,
    combine_parts,
    default_coordinator,
    push_part,
    release_parts,
)
from cpv.errors import LocalIOError, NoStoreError
from cpv.progress import NULL_PROGRESS, Progress
from cpv.service.filelist import regular
from cpv.versioning import pointer_manifest
from cpv.versioning.metrics import resolve_metrics
from cpv.workspace import TRACKED, Kind, store_from_config

if TYPE_CHECKING:
    from cpv.service.workspace import WorkspaceService


@dataclass(frozen=True, slots=True)
class PartOutcome:
    """What one writer pushed."""

    session: str
    part: str
    snapshot_id: str
    files: int
    total_bytes: int
    uploaded_bytes: int
    seconds: float


@dataclass(frozen=True, slots=True)
class SessionCommit:
    """The version a coordinator recorded from a session's parts."""

    session: str
    kind: Kind
    snapshot_id: str
    parts: tuple[str, ...]
    files: int
    total_bytes: int
    commit: str | None
    tags: tuple[str, ...]
    pushed_to: str | None
    seconds: float


def open_session_repository(store_url: str, config: CPVConfig | None = None) -> Repository:
    """The store a writer pushes its part to, opened with store credentials only (no Git).

    Raises:
        NoStoreError: no cpv store there yet (the coordinator's ``cpv init`` makes it).
    """
    config = config or CPVConfig.load()
    store = store_from_config(config, store_url)
    try:
        return Repository.open(store, cache_dir=config.cache_dir)
    except NoStoreError as exc:
        store.close()
        raise NoStoreError(f"no cpv store at {store_url}",
                           hint="create it once from the coordinator's workspace (cpv init "
                                "--store URL), then push the parts") from exc


def push_session_part(
    store_url: str,
    session: str,
    part: str | int,
    folder: str | Path,
    *,
    config: CPVConfig | None = None,
    progress: Progress = NULL_PROGRESS,
    repository: Repository | None = None,
) -> PartOutcome:
    """Push ``folder`` as writer ``part`` of ``session`` to the store at ``store_url``.

    Needs store credentials only. Running it again with the same files is harmless.

    Raises:
        LocalIOError: the folder does not exist. SessionError and subclasses (see
            :func:`cpv.engine.sessions.push_part`), plus what a push raises.
    """
    source = Path(folder).absolute()
    if not source.exists():
        raise LocalIOError(f"nothing to push: {source} does not exist", path=str(source),
                           hint="save this writer's files there first")
    config = config or CPVConfig.load()
    repo = repository or open_session_repository(store_url, config)
    t = config.transfer
    from cpv.engine import TransferLimits

    try:
        record, result = push_part(
            repo, session, str(part), source, progress=progress,
            limits=TransferLimits(workers=t.effective_workers, part_size=t.part_size))
    finally:
        if repository is None:
            repo.close()
            repo.store.close()
    return PartOutcome(session, record.part, record.snapshot_id, record.files,
                       record.total_bytes, result.uploaded_bytes, result.seconds)


def expected_parts(parts: int | Sequence[str | int] | None) -> list[str] | None:
    """``4`` -> writers "0".."3" (ranks); a list -> those names; None -> whichever pushed."""
    if parts is None:
        return None
    if isinstance(parts, int):
        return [str(r) for r in range(parts)]
    return [check_name(str(p), "part name") for p in parts]


def commit_session(
    service: WorkspaceService,
    session: str,
    *,
    parts: int | Sequence[str | int] | None = None,
    kind: Kind = "model",
    message: str = "",
    metrics: Mapping[str, float] | str | Path | None = None,
    tag: bool = False,
    version: str | None = None,
    coordinator: str | None = None,
    extra: Mapping[str, str | int | float | bool] | None = None,
) -> SessionCommit:
    """Record every part of ``session`` as one version of ``kind``: one commit (and tag).

    Order (invariant 1): the combined snapshot and its root are durable in the store, the
    claim names this coordinator, then Git records the manifest and the tag; the parts' roots
    are retired last. A re-run by the same coordinator after a crash finishes the job.

    Raises:
        MissingPartsError: a writer has not pushed (nothing is written).
        SessionCommittedError: another coordinator committed the session.
        SessionConflictError: parts disagree about a file, or an unexpected part is present.
    """
    started = time.monotonic()
    ws = service.ws
    repo = ws.repository()
    combined = combine_parts(repo, session, expected_parts(parts))
    claim_session(repo, combined, coordinator or f"{default_coordinator()}:{ws.root}")
    history = ws.history
    resolved = resolve_metrics(metrics) if metrics is not None else {}
    current = history.current_manifest(kind, TRACKED[kind])
    record_push(repo, combined.snapshot_id, RootInfo(
        kind=kind, name=TRACKED[kind], message=message, author=history.default_author(),
        metrics=resolved, workspace=ws.workspace_id or "",
        parents=(current.snapshot_id,) if current is not None else ()))
    snapshot = combined.snapshot
    listing = service.remember_listing(combined.snapshot_id, snapshot)
    files = regular(listing)
    manifest = pointer_manifest(
        kind=kind, path=TRACKED[kind], snapshot_id=combined.snapshot_id,
        store_url=ws.store_url, file_count=len(files), total_size=sum(f.size for f in files),
        changes=service.changes_since(current, listing), message=message,
        author=history.default_author(), metrics=resolved,
        extra={"session": session, "parts": len(combined.parts), **(extra or {})})
    record = history.record_version(manifest, message=message or f"cpv: session {session}")
    tags: list[str] = []
    if tag and (record.changed or version is not None):
        tags = service.tag([kind], version, message=message or None, publish=False)
    pushed_to = service.publish()
    release_parts(repo, combined.parts, reason=f"session {session} committed")
    return SessionCommit(
        session=session, kind=kind, snapshot_id=combined.snapshot_id,
        parts=tuple(combined.parts), files=len(snapshot.files),
        total_bytes=snapshot.total_size, commit=record.commit, tags=tuple(tags),
        pushed_to=pushed_to, seconds=time.monotonic() - started)


def session_parts(service: WorkspaceService, session: str) -> dict[str, PartRecord]:
    """The parts pushed so far (what ``cpv session status`` shows)."""
    from cpv.engine.sessions import list_parts

    return list_parts(service.ws.repository(), session)


__all__ = ["PartOutcome", "SessionCommit", "commit_session", "expected_parts",
           "open_session_repository", "push_session_part", "session_parts"]
