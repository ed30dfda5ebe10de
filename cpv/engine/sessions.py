"""One version from many writers: parts pushed under a session id, combined by one coordinator.

Large checkpoints are written by many processes at once (every rank of an FSDP or DeepSpeed job,
a Ray or Dask task, another machine). Each writer pushes *its* files to the store with store
credentials only, no Git, and records that its part is there; one coordinator then combines the
parts into one snapshot, which the caller records as one version (one Git commit and tag). The
protocol needs nothing but the store, so any engine can drive it (docs/integrations.md)::

    sessions/<session>/parts/<part>   JSON: the part's snapshot and push record; one per writer
    sessions/<session>/commit         JSON: the coordinator that claimed the session, and the
                                      combined snapshot it commits (written once)

Rules, each a test in ``tests/engine/test_sessions.py``:

* **A part is an ordinary push** (:func:`cpv.engine.push.push`, with its crash safety): packs,
  index, snapshot, then a ``push`` root record of kind ``part`` (so gc keeps the part's data
  until the session is committed or abandoned, docs/gc.md), then the part record. A writer
  killed mid-push leaves no part record; running it again uploads only what is missing.
* **Pushing a part again is harmless** (engines retry tasks): the same files give the same
  snapshot, and the existing record is accepted. Other content under the same part of the same
  session is refused (:class:`~cpv.errors.SessionConflictError`): a reused session id must not
  mix two checkpoints.
* **The coordinator commits all or nothing**: a missing part is refused with one line naming
  the missing writers (:class:`~cpv.errors.MissingPartsError`), and nothing is written.
* **One coordinator wins.** The commit claim is a create-if-absent write where the server
  honours conditional writes (``cpv/store/capabilities.py``); elsewhere it is read, written,
  and read back after a pause, so a second coordinator sees the first one's claim. The loser
  gets :class:`~cpv.errors.SessionCommittedError` naming the winner. The winner (same
  ``coordinator`` id) may run the commit again after a crash: the claim names the same snapshot.
* **The combined snapshot re-uses the parts' chunks**: no byte is uploaded again. Files of
  different parts sit side by side at their own paths (each writer's folder mirrors the
  checkpoint's layout); a path two parts both hold must have the same content. Which part
  wrote which file is kept in the snapshot's ``meta["parts"]`` so a pull can fetch one
  writer's files (``cpv pull --part RANK``).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpv.engine.roots import RootInfo, record_retire
from cpv.engine.snapshot import FileEntry, Snapshot
from cpv.errors import (
    FormatError,
    MissingPartsError,
    ObjectNotFoundError,
    PreconditionFailedError,
    SessionCommittedError,
    SessionConflictError,
    SessionError,
)
from cpv.progress import NULL_PROGRESS, Progress
from cpv.store.capabilities import store_features

if TYPE_CHECKING:
    from cpv.engine.push import Exclude, PushResult, SymlinkPolicy
    from cpv.engine.repository import Repository
    from cpv.engine.transfer import TransferLimits

log = logging.getLogger(__name__)

SESSIONS_PREFIX = "sessions/"
PART_KIND = "part"
"""The ``kind`` of a part's push root: keeps its data alive, never a version of its own."""
PARTS_META_KEY = "parts"
"""Snapshot ``meta`` key of a combined snapshot: JSON ``{part: [paths]}``."""
SESSION_META_KEY = "session"
CLAIM_SETTLE_S = 1.0
"""Pause between writing a claim and reading it back on a server without conditional writes."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_MAX_RECORD_BYTES = 64 * 1024


def check_name(value: str, what: str) -> str:
    """A session id or part name: a store key segment, so no '/', no '..', not empty."""
    if not _NAME.match(value):
        raise SessionError(
            f"invalid {what} {value!r}",
            session=value if what == "session id" else "",
            hint=f"a {what} is 1-128 letters, digits, '.', '_' or '-', starting with a letter "
                 "or digit (e.g. run-42-step-1000)")
    return value


def part_key(session: str, part: str) -> str:
    return f"{SESSIONS_PREFIX}{session}/parts/{part}"


def claim_key(session: str) -> str:
    return f"{SESSIONS_PREFIX}{session}/commit"


def default_coordinator() -> str:
    return socket.gethostname()


@dataclass(frozen=True, slots=True)
class PartRecord:
    """One writer's finished part: its snapshot and the push record that keeps it alive."""

    session: str
    part: str
    snapshot_id: str
    root_id: str
    files: int
    total_bytes: int
    writer: str = ""

    def to_json(self) -> bytes:
        doc = {"format": "cpv-session-part", "version": 1, "session": self.session,
               "part": self.part, "snapshot": self.snapshot_id, "root": self.root_id,
               "files": self.files, "bytes": self.total_bytes, "writer": self.writer,
               "created_at": datetime.now(timezone.utc).isoformat()}
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, where: str) -> PartRecord:
        try:
            doc: Any = json.loads(raw)
            if doc.get("format") != "cpv-session-part" or doc.get("version") != 1:
                raise ValueError("not a cpv session part record")
            return cls(str(doc["session"]), str(doc["part"]), str(doc["snapshot"]),
                       str(doc.get("root", "")), int(doc.get("files", 0)),
                       int(doc.get("bytes", 0)), str(doc.get("writer", "")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FormatError(f"session record {where} is malformed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class Claim:
    """Who commits a session, and which combined snapshot."""

    coordinator: str
    snapshot_id: str
    parts: tuple[str, ...]
    token: str

    def to_json(self) -> bytes:
        doc = {"format": "cpv-session-commit", "version": 1, "coordinator": self.coordinator,
               "snapshot": self.snapshot_id, "parts": list(self.parts), "token": self.token,
               "created_at": datetime.now(timezone.utc).isoformat()}
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes, *, where: str) -> Claim:
        try:
            doc: Any = json.loads(raw)
            return cls(str(doc["coordinator"]), str(doc["snapshot"]),
                       tuple(str(p) for p in doc.get("parts", [])), str(doc.get("token", "")))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise FormatError(f"session record {where} is malformed: {exc}") from exc


def _read(repo: Repository, key: str) -> bytes | None:
    try:
        raw = repo.store.get(key)
    except ObjectNotFoundError:
        return None
    if len(raw) > _MAX_RECORD_BYTES:
        raise FormatError(f"session record {key} is implausibly large")
    return raw


def read_claim(repo: Repository, session: str) -> Claim | None:
    raw = _read(repo, claim_key(check_name(session, "session id")))
    return None if raw is None else Claim.from_json(raw, where=claim_key(session))


def list_parts(repo: Repository, session: str) -> dict[str, PartRecord]:
    """The finished parts of ``session``, by part name (one LIST, one GET each)."""
    prefix = f"{SESSIONS_PREFIX}{check_name(session, 'session id')}/parts/"
    out: dict[str, PartRecord] = {}
    for obj in repo.store.list(prefix):
        raw = _read(repo, obj.key)
        if raw is not None:
            record = PartRecord.from_json(raw, where=obj.key)
            out[record.part] = record
    return out


def push_part(
    repo: Repository,
    session: str,
    part: str,
    folder: Path,
    *,
    writer: str = "",
    exclude: Exclude | None = None,
    progress: Progress = NULL_PROGRESS,
    limits: TransferLimits | None = None,
    symlinks: SymlinkPolicy = "keep",
) -> tuple[PartRecord, PushResult]:
    """Push one writer's files as ``part`` of ``session``; idempotent for the same files.

    Raises:
        SessionConflictError: the part was pushed before with other files.
        SessionCommittedError: the session was committed already (start a new session).
        SessionError: a malformed session id or part name. Plus what :func:`push` raises.
    """
    check_name(session, "session id")
    check_name(part, "part name")
    claim = read_claim(repo, session)
    if claim is not None:
        raise SessionCommittedError(
            f"session {session} was already committed by {claim.coordinator}; "
            f"part {part} cannot join it", session=session, holder=claim.coordinator,
            snapshot_id=claim.snapshot_id, hint="push the next checkpoint under a new session id")
    from cpv.engine.push import push  # here: reading a snapshot's parts (ls, pull) needs no push

    result = push(repo, Path(folder), exclude=exclude, progress=progress, limits=limits,
                  symlinks=symlinks, meta={SESSION_META_KEY: session, "part": part},
                  record_root=RootInfo(kind=PART_KIND, name=f"{session}/{part}"))
    record = PartRecord(session, part, result.snapshot_id, result.root_id or "", result.files,
                        result.total_bytes, writer or default_coordinator())
    key = part_key(session, part)
    existing = _read(repo, key)
    if existing is None:
        try:
            _create(repo, key, record.to_json())
            return record, result
        except PreconditionFailedError:
            existing = _read(repo, key)
    if existing is not None:
        before = PartRecord.from_json(existing, where=key)
        if before.snapshot_id != record.snapshot_id:
            release_parts(repo, {part: record}, reason="conflicting session part")
            raise SessionConflictError(
                f"part {part} of session {session} was already pushed with other content "
                f"(snapshot {before.snapshot_id[:12]}, now {record.snapshot_id[:12]})",
                session=session,
                hint="use a new session id for a new checkpoint; a retried writer must push "
                     "the same files")
        # The same files again (a retried task): its new root record is redundant but harmless.
        return before, result
    return record, result


def _create(repo: Repository, key: str, raw: bytes) -> None:
    """Create ``key`` unless it exists (PreconditionFailedError), as atomically as the server
    allows (see the module docstring)."""
    if store_features(repo.store).conditional_put is True:
        repo.store.put(key, raw, if_absent=True)
        return
    if repo.store.exists(key):
        raise PreconditionFailedError(key)
    repo.store.put(key, raw)
    time.sleep(CLAIM_SETTLE_S)
    if repo.store.get(key) != raw:
        raise PreconditionFailedError(key)


@dataclass(frozen=True, slots=True)
class Combined:
    """The combined snapshot of a session, and the parts it holds."""

    session: str
    snapshot_id: str
    snapshot: Snapshot
    parts: Mapping[str, PartRecord]
    written: bool


def combine_parts(
    repo: Repository, session: str, expected: Sequence[str] | None = None
) -> Combined:
    """Build and store the snapshot holding every part of ``session`` (no byte re-uploaded).

    ``expected`` names the writers that must have pushed (None: whichever did, at least one).

    Raises:
        MissingPartsError: an expected part is missing (nothing written).
        SessionConflictError: two parts hold one path with different content, or a part not
            expected is present.
    """
    check_name(session, "session id")
    parts = list_parts(repo, session)
    if expected is not None:
        wanted = [check_name(p, "part name") for p in expected]
        missing = [p for p in wanted if p not in parts]
        if missing:
            raise MissingPartsError(
                f"session {session}: {len(missing)} of {len(wanted)} writers have not pushed "
                f"their part: {', '.join(missing)}", session=session, missing=missing,
                hint="wait for those writers (or re-run them: a re-run resumes), then commit "
                     "again")
        extra = sorted(set(parts) - set(wanted))
        if extra:
            raise SessionConflictError(
                f"session {session} holds parts no writer was expected for: {', '.join(extra)}",
                session=session, hint="name every writer's part, or use a new session id")
    elif not parts:
        raise MissingPartsError(f"session {session} has no pushed part", session=session,
                                missing=[], hint="push the parts first (each writer), then commit")
    by_path: dict[str, tuple[FileEntry, str]] = {}
    owned: dict[str, list[str]] = {}
    for name in sorted(parts, key=_part_order):
        record = parts[name]
        snapshot = repo.load_snapshot(record.snapshot_id)
        owned[name] = [f.path for f in snapshot.files]
        for f in snapshot.files:
            seen = by_path.get(f.path)
            if seen is None:
                by_path[f.path] = (f, name)
            elif (seen[0].size, seen[0].blake3, seen[0].link) != (f.size, f.blake3, f.link):
                raise SessionConflictError(
                    f"session {session}: parts {seen[1]} and {name} both hold {f.path!r} with "
                    "different content", session=session,
                    hint="each writer must write its own files (e.g. one shard per rank)")
    files = tuple(by_path[p][0] for p in sorted(by_path))
    meta = {SESSION_META_KEY: session,
            PARTS_META_KEY: json.dumps(owned, sort_keys=True, separators=(",", ":"))}
    combined = Snapshot(files=files, meta=meta)
    # The paths must make one valid tree (a file in one part, a folder in another is not).
    snapshot_id, raw = combined.encode()
    Snapshot.decode(raw, snapshot_id=snapshot_id)
    snapshot_id, written = repo.save_snapshot(combined)
    return Combined(session, snapshot_id, combined, parts, written)


def _part_order(name: str) -> tuple[int, str]:
    return (int(name), "") if name.isdigit() else (1 << 62, name)


def claim_session(repo: Repository, combined: Combined, coordinator: str) -> Claim:
    """Claim the commit of ``combined`` for ``coordinator``; the same coordinator may claim
    again (a re-run after a crash).

    Raises:
        SessionCommittedError: another coordinator holds the claim (it committed, or is
            committing, the session).
    """
    claim = Claim(coordinator, combined.snapshot_id, tuple(sorted(combined.parts, key=_part_order)),
                  token=combined.snapshot_id[:16])
    key = claim_key(combined.session)
    try:
        _create(repo, key, claim.to_json())
        return claim
    except PreconditionFailedError:
        held = read_claim(repo, combined.session)
    if held is not None and held.coordinator == coordinator \
            and held.snapshot_id == combined.snapshot_id:
        return held
    holder = held.coordinator if held else "another coordinator"
    raise SessionCommittedError(
        f"session {combined.session} was already committed by {holder}",
        session=combined.session, holder=holder,
        snapshot_id=held.snapshot_id if held else "",
        hint="nothing was changed here; pull that version (git pull, then cpv pull)")


def release_parts(repo: Repository, parts: Mapping[str, PartRecord], *, reason: str) -> None:
    """Retire the parts' push records once the combined version keeps their chunks alive (or
    the session is abandoned). Best effort: a failure only leaves them alive longer."""
    ids = [p.root_id for p in parts.values() if p.root_id]
    try:
        record_retire(repo, ids, reason=reason)
    except Exception as exc:  # noqa: BLE001 - the version is recorded; this is tidying only
        log.warning("could not retire the parts' roots (they stay alive until forgotten): %s",
                    exc)


def parts_of(snapshot: Snapshot) -> dict[str, list[str]]:
    """Which part wrote which paths of a combined snapshot ({} for an ordinary snapshot)."""
    raw = snapshot.meta.get(PARTS_META_KEY)
    if not raw:
        return {}
    try:
        doc = json.loads(raw)
        return {str(k): [str(p) for p in v] for k, v in dict(doc).items()}
    except (ValueError, TypeError) as exc:
        raise FormatError(f"the snapshot's parts list is malformed: {exc}") from exc


__all__ = [
    "PARTS_META_KEY", "PART_KIND", "SESSIONS_PREFIX", "Claim", "Combined", "PartRecord",
    "check_name", "claim_session", "combine_parts", "list_parts", "parts_of", "push_part",
    "read_claim", "release_parts",
]
