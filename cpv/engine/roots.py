"""Roots: the store's own record of its versions, so that liveness never depends on a Git clone.

A clone's Git history can be shallow, stale, forked, merged or lost; the store cannot. Every
pushed snapshot and every tag is therefore recorded *in the store* as an immutable root record,
and gc keeps exactly what the live roots name (``docs/gc.md``). A version leaves only through
:func:`forget`, which writes a retire record; nothing is ever rewritten, so concurrent writers
never conflict and the history of the store's versions is append-only::

    roots/<record id>   one record, canonical JSON; id = blake3 hex of the stored bytes
    roots.json          marker: this store records roots (written at init or by migration)

Records (``"format": "cpv-root"``, ``"version": 1``) have an ``op``:

* ``push``   — a version: ``snapshot``, ``kind``, ``name``, ``message``, ``author``,
  ``metrics``, ``workspace``, ``parents`` (lineage), ``adopted`` (true for format-1 snapshots
  a migration recorded). Every field but ``snapshot`` is optional.
* ``tag``    — ``tags``: ``{tag: {"snapshot", "kind", "name"}}``. One record may tag several
  snapshots at once (a combined ``v0.2`` / ``data-v0.2``), so the store side of a combined tag is
  one write: all or nothing. ``supersedes`` lists earlier tag records whose entries of the same
  tag names this one replaces (a tag move).
* ``retire`` — ``retires``: record ids; with ``tags`` only those tag names of those records are
  retired (an untag), otherwise the whole records (a forget). ``reason`` says why.

A record is live unless a retire (or, for tag entries, a superseding tag) names it. Retiring by
record id rather than by snapshot makes the fold independent of clocks: a push of a snapshot that
a concurrent forget is retiring writes a new record the forget cannot name, so it stays.

Room for format v2 (issue 11): ``snapshot`` is an opaque id of any snapshot format (a v2 tree
root included), and ``alias`` or other future ops are kept as *unknown* records: a client that
meets one (or a newer record version) lists the rest with a warning but refuses to collect
garbage ("upgrade cpv"), because it cannot know what the unknown record keeps alive.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cpv.engine.hashing import chunk_id
from cpv.engine.objcache import read_cached, write_cached
from cpv.engine.snapshot import SNAPSHOT_PREFIX, check_snapshot_id, snapshot_key
from cpv.errors import (
    ForgetPolicyError,
    FormatError,
    MigrationNeededError,
    ObjectNotFoundError,
)

if TYPE_CHECKING:
    from cpv.engine.repository import Repository
    from cpv.store import ObjectStore

log = logging.getLogger(__name__)

ROOTS_PREFIX = "roots/"
ROOTS_MARKER_KEY = "roots.json"
ROOT_FORMAT = "cpv-root"
ROOT_VERSION = 1
MAX_ROOT_BYTES = 1024 * 1024
MIGRATE_HINT = "migrate the store once so its existing snapshots are recorded as roots"
"""What to tell a user whose store predates roots. The CLI names its own command in its hint."""

_KNOWN_OPS = frozenset({"push", "tag", "retire"})
_HEX = frozenset("0123456789abcdef")


# -- records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RootInfo:
    """What a push knows about the version it records (all optional but the kind/name pair)."""

    kind: str = ""
    name: str = ""
    message: str = ""
    author: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    workspace: str = ""
    parents: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TagTarget:
    """One tag a tag record sets: the tag name and the snapshot it names."""

    tag: str
    snapshot_id: str
    kind: str = ""
    name: str = ""


@dataclass(frozen=True, slots=True)
class RootRecord:
    """One parsed record; ``stored_at`` is the store's mtime of the object (server clock)."""

    record_id: str
    op: str
    doc: Mapping[str, Any]
    stored_at: float

    @property
    def created_at(self) -> str:
        return str(self.doc.get("created_at", ""))


def _now_iso() -> str:
    # Microseconds: stores' mtimes have one-second resolution, and two pushes in one second
    # must still order (keep-last).
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def _encode(doc: dict[str, Any]) -> tuple[str, bytes]:
    full = {"format": ROOT_FORMAT, "version": ROOT_VERSION, "created_at": _now_iso(),
            "nonce": secrets.token_hex(8), **doc}
    raw = (json.dumps(full, sort_keys=True, separators=(",", ":"), ensure_ascii=False)).encode()
    return chunk_id(raw).hex(), raw


def _write(repo: Repository, doc: dict[str, Any]) -> str:
    """Store one record. The key is the hash of the bytes, so a retried put is idempotent."""
    record_id, raw = _encode(doc)
    repo.store.put(ROOTS_PREFIX + record_id, raw)
    write_cached(repo.cache_dir, "roots", record_id, raw)
    return record_id


def _decode(record_id: str, raw: bytes, *, stored_at: float) -> RootRecord:
    if chunk_id(raw).hex() != record_id:
        raise FormatError(f"root record {record_id} does not match its id (damaged)")
    try:
        doc: Any = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"root record {record_id} is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("format") != ROOT_FORMAT:
        raise FormatError(f"root record {record_id} is not a cpv root record")
    return RootRecord(record_id, str(doc.get("op", "")), doc, stored_at)


def record_push(repo: Repository, snapshot_id: str, info: RootInfo | None = None, *,
                adopted: bool = False) -> str:
    """Record a pushed snapshot as a version of the store; returns the record id.

    Call it only once the snapshot object is stored (invariant 1): a root names only what is
    durable. :func:`cpv.engine.push.push` calls it itself when given a :class:`RootInfo`.
    """
    check_snapshot_id(snapshot_id)
    info = info or RootInfo()
    doc: dict[str, Any] = {"op": "push", "snapshot": snapshot_id, "kind": info.kind,
                           "name": info.name}
    if info.message:
        doc["message"] = info.message
    if info.author:
        doc["author"] = info.author
    if info.metrics:
        doc["metrics"] = {str(k): float(v) for k, v in info.metrics.items()}
    if info.workspace:
        doc["workspace"] = info.workspace
    if info.parents:
        doc["parents"] = list(info.parents)
    if adopted:
        doc["adopted"] = True
    return _write(repo, doc)


def record_tags(
    repo: Repository,
    targets: Sequence[TagTarget],
    *,
    message: str = "",
    move: bool = False,
) -> str:
    """Record one or more tags in one write (a combined tag is all or nothing); returns its id.

    With ``move``, the live entries of the same tag names are superseded by this record. Tag
    naming rules and "tag exists" errors belong to the caller (the versioning layer); here a
    second live entry for a name simply keeps its snapshot alive too, and the newest one wins
    in :attr:`RootSet.tags`.

    The snapshots must be in the store. A gc that decided a snapshot was dead before this record
    existed may be deleting it right now: once no gc runs, each snapshot is checked again, and
    :class:`~cpv.errors.ObjectNotFoundError` says it is gone (push the files again, then tag).
    """
    from cpv.engine.locks import wait_while_gc_runs

    if not targets:
        raise ValueError("record_tags needs at least one tag")
    for t in targets:
        check_snapshot_id(t.snapshot_id)
        if not repo.store.exists(snapshot_key(t.snapshot_id)):
            raise ObjectNotFoundError(
                snapshot_key(t.snapshot_id),
                message=f"cannot tag {t.tag}: snapshot {t.snapshot_id} is not in {repo.url}",
                hint="push the files again, then tag",
            )
    doc: dict[str, Any] = {
        "op": "tag",
        "tags": {t.tag: {"snapshot": t.snapshot_id, "kind": t.kind, "name": t.name}
                 for t in targets},
    }
    if message:
        doc["message"] = message
    if move:
        names = {t.tag for t in targets}
        current = list_roots(repo)
        superseded = sorted({rid for tag in names for rid in current.tag_records.get(tag, ())})
        if superseded:
            doc["supersedes"] = superseded
    record_id = _write(repo, doc)
    wait_while_gc_runs(repo.store)
    for t in targets:
        if not repo.store.exists(snapshot_key(t.snapshot_id)):
            raise ObjectNotFoundError(
                snapshot_key(t.snapshot_id),
                message=f"snapshot {t.snapshot_id} was collected by a gc while {t.tag} was "
                "being recorded",
                hint="push the files again, then tag",
            )
    return record_id


def record_untag(repo: Repository, tags: Iterable[str], *, reason: str = "untag") -> str | None:
    """Retire the live entries of ``tags``; returns the retire record's id (None: none live)."""
    names = sorted(set(tags))
    current = list_roots(repo)
    retires = sorted({rid for tag in names for rid in current.tag_records.get(tag, ())})
    if not retires:
        return None
    return _write(repo, {"op": "retire", "retires": retires, "tags": names, "reason": reason})


def record_retire(repo: Repository, record_ids: Iterable[str], *, reason: str) -> str | None:
    """Retire whole records (a forget of chosen records); returns the retire record's id.

    A many-writers session retires its parts' push records once the combined version is
    recorded (its own root keeps every chunk alive), or when the session is abandoned.
    """
    ids = sorted(set(record_ids))
    if not ids:
        return None
    return _write(repo, {"op": "retire", "retires": ids, "reason": reason})


# -- folding ------------------------------------------------------------------------------


@dataclass
class Version:
    """One live version: a snapshot of one tracked path, with every live record that names it."""

    snapshot_id: str
    kind: str
    name: str
    push_records: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    message: str = ""
    author: str = ""
    created_at: str = ""
    stored_at: float = 0.0
    metrics: dict[str, float] = field(default_factory=dict)
    workspace: str = ""
    parents: list[str] = field(default_factory=list)
    adopted: bool = False

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.name, self.snapshot_id)


@dataclass
class RootSet:
    """The store's current versions, folded from every root record.

    Attributes:
        versions: live versions, oldest first (by the store's clock).
        tags: each live tag name and the snapshot its newest live entry names.
        tag_records: each live tag name and the record ids that hold a live entry for it.
        live_snapshots: every snapshot a live push or tag record names: what gc keeps.
        records: how many records were read. enabled: the store records roots (marker present).
        unknown: records this cpv does not understand (gc refuses while there are any).
        damaged: records that could not be read or do not match their id.
    """

    versions: list[Version] = field(default_factory=list)
    tags: dict[str, str] = field(default_factory=dict)
    tag_records: dict[str, list[str]] = field(default_factory=dict)
    live_snapshots: set[str] = field(default_factory=set)
    records: int = 0
    enabled: bool = False
    unknown: list[str] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)


def roots_enabled(store: ObjectStore) -> bool:
    return store.exists(ROOTS_MARKER_KEY)


def mark_roots_enabled(store: ObjectStore, *, adopted: int = 0) -> None:
    doc = {"format": "cpv-roots", "version": ROOT_VERSION, "since": _now_iso(), "adopted": adopted}
    store.put(ROOTS_MARKER_KEY, (json.dumps(doc, sort_keys=True) + "\n").encode())


def read_records(repo: Repository, unreadable: list[str] | None = None) -> list[RootRecord]:
    """Every root record: one LIST, then GETs of only those not in the local cache."""
    records = []
    for obj in repo.store.list(ROOTS_PREFIX):
        record_id = obj.key[len(ROOTS_PREFIX) :]
        if len(record_id) != 64 or not set(record_id) <= _HEX:
            continue
        if obj.size == 0:
            # A record is never empty: this one's upload was killed before its body arrived
            # (SeaweedFS keeps such an empty object), so the command writing it (a push, tag or
            # forget) died before it told anyone the record existed, and a retry writes a
            # record of its own (a new nonce). Nothing is lost by ignoring it, and gc need not
            # refuse over it as it does over a damaged record.
            log.warning("ignoring empty root record %s (an upload of it was interrupted)",
                        record_id)
            continue
        raw = read_cached(repo.cache_dir, "roots", record_id)
        try:
            if raw is None:
                if obj.size > MAX_ROOT_BYTES:
                    raise FormatError(f"root record {record_id} is implausibly large")
                raw = repo.store.get(obj.key)
            record = _decode(record_id, raw, stored_at=obj.mtime)
        except ObjectNotFoundError:
            continue
        except FormatError as exc:
            log.warning("%s", exc)
            if unreadable is not None:
                unreadable.append(record_id)
            continue
        write_cached(repo.cache_dir, "roots", record_id, raw)
        records.append(record)
    return records


def list_roots(repo: Repository) -> RootSet:
    """Fold every root record into the store's current versions and tags (see module docstring).

    Damaged and unknown records are skipped with a warning and reported; listing never fails
    because of one bad record.
    """
    result = RootSet(enabled=roots_enabled(repo.store))
    records = read_records(repo, result.damaged)
    result.records = len(records)
    retired: set[str] = set()
    retired_tags: set[tuple[str, str]] = set()
    for rec in records:
        version = rec.doc.get("version")
        if rec.op not in _KNOWN_OPS or version != ROOT_VERSION:
            result.unknown.append(rec.record_id)
            log.warning("root record %s has op %r version %r, unknown to this cpv (upgrade cpv)",
                        rec.record_id, rec.op, version)
            continue
        if rec.op == "retire":
            ids = [str(r) for r in rec.doc.get("retires", [])]
            tags = rec.doc.get("tags")
            if tags:
                retired_tags.update((rid, str(t)) for rid in ids for t in tags)
            else:
                retired.update(ids)
        elif rec.op == "tag":
            for rid in rec.doc.get("supersedes", []):
                for tag in rec.doc.get("tags", {}):
                    retired_tags.add((str(rid), str(tag)))

    versions: dict[tuple[str, str, str], Version] = {}
    tag_entries: dict[str, list[tuple[str, float, str, str]]] = defaultdict(list)

    def version_for(sid: str, kind: str, name: str) -> Version:
        key = (kind, name, sid)
        if key not in versions:
            versions[key] = Version(sid, kind, name)
        return versions[key]

    unknown = set(result.unknown)
    for rec in sorted(records, key=lambda r: (r.stored_at, r.created_at, r.record_id)):
        if rec.record_id in retired or rec.record_id in unknown:
            continue
        doc = rec.doc
        if rec.op == "push":
            sid = str(doc.get("snapshot", ""))
            v = version_for(sid, str(doc.get("kind", "")), str(doc.get("name", "")))
            v.push_records.append(rec.record_id)
            v.message = str(doc.get("message", v.message))
            v.author = str(doc.get("author", v.author))
            v.created_at = rec.created_at
            v.stored_at = rec.stored_at
            v.metrics = {str(k): float(x) for k, x in dict(doc.get("metrics", {})).items()}
            v.workspace = str(doc.get("workspace", v.workspace))
            v.parents = [str(p) for p in doc.get("parents", [])]
            v.adopted = bool(doc.get("adopted", False)) and (v.adopted or len(v.push_records) == 1)
            result.live_snapshots.add(sid)
        elif rec.op == "tag":
            for tag, target in dict(doc.get("tags", {})).items():
                if (rec.record_id, tag) in retired_tags:
                    continue
                sid = str(target.get("snapshot", ""))
                kind, name = str(target.get("kind", "")), str(target.get("name", ""))
                tag_entries[str(tag)].append((rec.created_at, rec.stored_at, rec.record_id, sid))
                v = version_for(sid, kind, name)
                if not v.stored_at:
                    v.stored_at, v.created_at = rec.stored_at, rec.created_at
                result.live_snapshots.add(sid)
                versions[(kind, name, sid)] = v
                if str(tag) not in v.tags:
                    v.tags.append(str(tag))
    for tag, entries in tag_entries.items():
        newest = max(entries, key=lambda e: (e[1], e[0], e[2]))
        result.tags[tag] = newest[3]
        result.tag_records[tag] = sorted(e[2] for e in entries)
    result.versions = sorted(versions.values(), key=lambda v: (v.stored_at, v.created_at))
    return result


# -- forget -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ForgetPolicy:
    """Which versions :func:`forget` keeps. Tagged versions are always kept.

    Rules apply per stream (workspace id, kind, name), so a fork or another project sharing
    the store keeps its own last N; they apply to untagged versions; a version kept by any rule
    stays. At least one rule is required: a policy that keeps nothing is refused, not guessed.

    Attributes:
        keep_last: the newest N untagged versions.
        keep_within_s: untagged versions recorded less than this many seconds ago.
        keep_best: the best K versions by ``metric``.
        metric: the metric ``keep_best`` ranks by. higher_is_better: its direction.
        keep_adopted: versions a format-1 migration adopted (their tags are unknown to the
            store, so they are kept unless this is False).
        keep_snapshots: snapshots the caller keeps on its own account (a clone's current
            versions): a caller's view can only add protection, never remove any.
    """

    keep_last: int | None = None
    keep_within_s: float | None = None
    keep_best: int | None = None
    metric: str | None = None
    higher_is_better: bool = True
    keep_adopted: bool = True
    keep_snapshots: frozenset[str] = frozenset()

    def check(self) -> None:
        for name in ("keep_last", "keep_within_s", "keep_best"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ForgetPolicyError(f"{name} must be >= 0, not {value}")
        if self.keep_best is not None and not self.metric:
            raise ForgetPolicyError("keep_best needs a metric to rank versions by")
        if self.keep_last is None and self.keep_within_s is None and self.keep_best is None:
            raise ForgetPolicyError("a forget policy needs at least one keep rule")


@dataclass
class ForgetReport:
    """What :func:`forget` removed (or would), and why each remaining version stays."""

    dry_run: bool
    forgotten: list[tuple[Version, str]] = field(default_factory=list)
    kept: list[tuple[Version, list[str]]] = field(default_factory=list)
    record_id: str | None = None
    requests: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        verb = "would forget" if self.dry_run else "forgot"
        return f"{verb} {len(self.forgotten)} version(s); kept {len(self.kept)}"


def _age(seconds: float) -> str:
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} d"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def forget(
    repo: Repository, policy: ForgetPolicy, *, dry_run: bool = False, now: float | None = None
) -> ForgetReport:
    """Retire the versions ``policy`` does not keep, with one retire record (never a rewrite).

    Nothing is deleted here: the data goes at the next gc (after its grace period). A version
    pushed or tagged while this runs is not affected: the retire record names only the records
    read here.

    Raises:
        ForgetPolicyError: the policy keeps nothing or is inconsistent.
        FormatError: the store holds root records this cpv does not understand (upgrade cpv).
    """
    policy.check()
    started = time.monotonic()
    requests_before = repo.store.request_count
    roots = list_roots(repo)
    if roots.unknown:
        raise FormatError(
            f"forget stopped: {len(roots.unknown)} root record(s) have a format this cpv does "
            "not know", hint="upgrade cpv (pip install -U cpv-checkpoints)",
        )
    now = time.time() if now is None else now
    report = ForgetReport(dry_run=dry_run)
    streams: dict[tuple[str, str, str], list[Version]] = defaultdict(list)
    for v in roots.versions:
        streams[(v.workspace, v.kind, v.name)].append(v)
    retire: list[str] = []
    for stream in streams.values():
        untagged = [v for v in stream if not v.tags]
        newest_first = sorted(untagged, key=lambda v: (v.stored_at, v.created_at), reverse=True)
        last = {id(v): n for n, v in enumerate(newest_first[: policy.keep_last or 0], 1)}
        best: dict[int, int] = {}
        if policy.keep_best and policy.metric:
            metric = policy.metric
            ranked = [v for v in stream if metric in v.metrics]
            ranked.sort(key=lambda v: v.metrics[metric], reverse=policy.higher_is_better)
            best = {id(v): n for n, v in enumerate(ranked[: policy.keep_best], 1)}
        for v in stream:
            reasons: list[str] = []
            if v.tags:
                reasons.append("tagged " + ", ".join(sorted(v.tags)))
            if id(v) in last:
                reasons.append(f"among the last {policy.keep_last} untagged (#{last[id(v)]})")
            age = now - v.stored_at
            if policy.keep_within_s is not None and age < policy.keep_within_s:
                reasons.append(f"recorded {_age(age)} ago, within {_age(policy.keep_within_s)}")
            if id(v) in best:
                reasons.append(f"best {policy.keep_best} by {policy.metric} (#{best[id(v)]}, "
                               f"{v.metrics[policy.metric or '']:g})")
            if v.snapshot_id in policy.keep_snapshots:
                reasons.append("the current version of the workspace running forget")
            if v.adopted and policy.keep_adopted:
                reasons.append("adopted from a format-1 store (tags unknown to the store)")
            if reasons:
                report.kept.append((v, reasons))
            else:
                why = [f"untagged, recorded {_age(age)} ago"]
                if policy.keep_last is not None:
                    why.append(f"not among the last {policy.keep_last}")
                if policy.keep_best:
                    why.append(f"not among the best {policy.keep_best} by {policy.metric}")
                report.forgotten.append((v, "; ".join(why)))
                retire.extend(v.push_records)
    if retire and not dry_run:
        report.record_id = _write(repo, {"op": "retire", "retires": sorted(retire),
                                         "reason": "forget", "policy": _policy_doc(policy)})
    report.requests = repo.store.request_count - requests_before
    report.seconds = time.monotonic() - started
    return report


def _policy_doc(policy: ForgetPolicy) -> dict[str, Any]:
    return {k: getattr(policy, k) for k in ForgetPolicy.__slots__
            if getattr(policy, k) is not None and k != "keep_snapshots"}


# -- migration ----------------------------------------------------------------------------


@dataclass
class AdoptReport:
    """What :func:`adopt_snapshots` recorded."""

    adopted: list[str] = field(default_factory=list)
    already_rooted: int = 0
    tags_recorded: int = 0


def adopt_snapshots(
    repo: Repository,
    *,
    known: Mapping[str, RootInfo] | None = None,
    tags: Sequence[TagTarget] = (),
) -> AdoptReport:
    """Migrate a store written before roots: every snapshot becomes a (kept) root.

    Idempotent: snapshots a live root already names are skipped, so a re-run writes nothing new.
    ``known`` may give the kind/name/message of snapshots the caller knows from Git, and ``tags``
    the tags Git holds; every other snapshot is adopted anonymously. The marker that lets gc run
    is written last, so a migration killed half-way is simply run again.
    """
    report = AdoptReport()
    roots = list_roots(repo)
    known = known or {}
    for obj in repo.store.list(SNAPSHOT_PREFIX):
        sid = obj.key[len(SNAPSHOT_PREFIX) :]
        if sid in roots.live_snapshots:
            report.already_rooted += 1
            continue
        record_push(repo, sid, known.get(sid), adopted=True)
        report.adopted.append(sid)
    fresh = [t for t in tags if roots.tags.get(t.tag) != t.snapshot_id]
    if fresh:
        record_tags(repo, fresh, message="adopted from Git")
        report.tags_recorded = len(fresh)
    mark_roots_enabled(repo.store, adopted=len(report.adopted))
    return report


def live_for_gc(repo: Repository) -> set[str]:
    """The snapshots gc must keep, or an error if the roots cannot say (see module docstring).

    Raises:
        MigrationNeededError: the store has snapshots but was never migrated to roots.
        FormatError: a root record is damaged or of an unknown format: what it keeps is unknown.
    """
    roots = list_roots(repo)
    if not roots.enabled and any(True for _ in repo.store.list(SNAPSHOT_PREFIX)):
        raise MigrationNeededError(
            f"gc refused: the store at {repo.url} holds snapshots but records no roots yet",
            hint=MIGRATE_HINT,
        )
    if roots.unknown:
        raise FormatError(
            f"gc refused: {len(roots.unknown)} root record(s) have a format this cpv does not "
            "know", hint="upgrade cpv (pip install -U cpv-checkpoints)",
        )
    if roots.damaged:
        raise FormatError(
            f"gc refused: root record {roots.damaged[0]} is damaged, so what it keeps is unknown",
            hint=f"delete {ROOTS_PREFIX}{roots.damaged[0]} after checking which version it named, "
            "then re-run",
        )
    return roots.live_snapshots


__all__ = [
    "MIGRATE_HINT", "ROOTS_MARKER_KEY", "ROOTS_PREFIX", "AdoptReport", "ForgetPolicy",
    "ForgetReport", "MigrationNeededError", "RootInfo", "RootRecord", "RootSet", "TagTarget",
    "Version", "adopt_snapshots", "forget", "list_roots", "live_for_gc", "mark_roots_enabled",
    "record_push", "record_retire", "record_tags", "record_untag", "roots_enabled",
]
