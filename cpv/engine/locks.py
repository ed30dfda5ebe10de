"""Lock, lease and condemnation objects: how gc and pushes on other machines stay out of each other.

Three kinds of small JSON objects live in the store (see ``docs/gc.md`` for the full protocol and
why it is safe)::

    locks/gc                   the exclusive gc lock; created with a conditional write
                               (S3 ``If-None-Match: *``), so at most one gc runs at a time
    locks/gc-<lock id>         the same lock on a server that ignores conditional writes:
                               a uniquely named file, then list and re-check (see GCLock)
    locks/push-<lease id>      one per running push (a shared lease); rewritten every
                               ``refresh_s`` so its mtime says the push is alive; deleted at the end
    gc/condemned/<record id>   packs a gc run decided to delete, and the push leases that were
                               alive when it decided; the packs are deleted by a later sweep, once
                               those pushes are over and the grace period has passed

Every age is measured on the *store's* clock (object mtimes), never the local one, so a client
whose clock is off cannot make a live lease look stale. Objects hold a host name, a process id and
a random id, never a credential (invariant 8).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Final

from cpv.errors import (
    CPVError,
    FormatError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StoreError,
    StoreLockedError,
)
from cpv.store.capabilities import store_features

if TYPE_CHECKING:
    from types import TracebackType

    from cpv.store import ObjectStore

log = logging.getLogger(__name__)

LOCKS_PREFIX: Final = "locks/"
GC_LOCK_KEY: Final = "locks/gc"
GC_LOCKFILE_PREFIX: Final = "locks/gc-"
GC_LOCK_PREFIX: Final = "locks/gc"
"""Lists the gc locks of both protocols: ``locks/gc`` and every ``locks/gc-<lock id>``."""
LEASE_PREFIX: Final = "locks/push-"
CLOCK_PREFIX: Final = "locks/clock-"
CONDEMNED_PREFIX: Final = "gc/condemned/"

DEFAULT_REFRESH_S: Final = 60.0
"""How often a holder rewrites its lock or lease."""
DEFAULT_LEASE_STALE_S: Final = 15 * 60.0
"""A push lease not rewritten for this long belongs to a dead process."""
DEFAULT_LOCK_STALE_S: Final = 30 * 60.0
"""A gc lock not rewritten for this long may be broken (only with an explicit flag)."""
DEFAULT_SETTLE_S: Final = 2.0
"""How long the lock-file protocol waits between writing its lock and the re-check."""
MAX_LOCK_OBJECT: Final = 64 * 1024
MAX_RECORD_OBJECT: Final = 256 * 1024 * 1024
_HEX = frozenset("0123456789abcdef")


def _raw_store(store: ObjectStore) -> ObjectStore:
    """The store under a :class:`~cpv.engine.transfer.CountingStore`.

    Lock traffic is bookkeeping, not data: it must not show up in a push's byte counts (an
    unchanged tree uploads nothing, invariant 3).
    """
    inner = getattr(store, "inner", None)
    return inner if inner is not None else store


def _lock_body(kind: str, holder_id: str, refresh_s: float) -> bytes:
    doc = {
        "kind": kind,
        "id": holder_id,
        "refresh_s": refresh_s,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return json.dumps(doc, sort_keys=True).encode()


@dataclass(frozen=True, slots=True)
class LockInfo:
    """A lock or lease as found in the store; ``age_s`` is on the store's clock."""

    key: str
    holder_id: str
    holder: str
    age_s: float
    refresh_s: float = DEFAULT_REFRESH_S

    @property
    def dead(self) -> bool:
        """Missed three refreshes (plus the store's one-second mtime resolution): its holder is
        gone, or has stopped itself (holders check their own refreshes, see GCLock)."""
        return self.age_s >= 3 * self.refresh_s + 2.0

    def describe(self) -> str:
        return f"{self.holder} (lock {self.holder_id[:12]}, last refreshed {self.age_s:.0f} s ago)"


def _parse_lock(key: str, raw: bytes, age_s: float) -> LockInfo:
    """Lenient: a damaged lock object still names *something* so the user can act on it."""
    try:
        doc: Any = json.loads(raw[:MAX_LOCK_OBJECT])
        if not isinstance(doc, dict):
            raise ValueError("not an object")
        holder_id = str(doc.get("id", ""))
        holder = f"{doc.get('kind', '?')} on {doc.get('host', '?')} pid {doc.get('pid', '?')}"
        refresh_s = float(doc.get("refresh_s", DEFAULT_REFRESH_S))
        if not refresh_s > 0:
            refresh_s = DEFAULT_REFRESH_S
    except (ValueError, TypeError, UnicodeDecodeError):
        holder_id, holder, refresh_s = "", "an unreadable lock object", DEFAULT_REFRESH_S
    return LockInfo(key, holder_id, holder, max(0.0, age_s), min(refresh_s, DEFAULT_REFRESH_S))


def server_now(store: ObjectStore) -> float:
    """The store's current time (epoch seconds): the mtime of a probe object written now.

    Every age cpv computes for locks compares two store mtimes, so clock skew between machines
    cannot make a live holder look dead.
    """
    raw = _raw_store(store)
    key = CLOCK_PREFIX + secrets.token_hex(8)
    raw.put(key, b"{}")
    try:
        return raw.stat(key).mtime
    finally:
        try:
            raw.delete(key)
        except CPVError as exc:
            log.debug("could not remove clock probe %s: %s", key, exc)


def read_lock(store: ObjectStore, key: str, *, now: float) -> LockInfo | None:
    """The lock at ``key``, or None if there is none."""
    raw = _raw_store(store)
    try:
        info = raw.stat(key)
        body = raw.get(key)
    except ObjectNotFoundError:
        return None
    return _parse_lock(key, body, now - info.mtime)


def list_leases(store: ObjectStore, *, now: float) -> list[LockInfo]:
    """Every push lease in the store, fresh or stale."""
    raw = _raw_store(store)
    leases = []
    for obj in raw.list(LEASE_PREFIX):
        holder_id = obj.key[len(LEASE_PREFIX) :]
        age = max(0.0, now - obj.mtime)
        leases.append(LockInfo(obj.key, holder_id, f"push {holder_id[:12]}", age))
    return leases


class _Refresher:
    """Rewrites one lock object every ``refresh_s`` on a daemon thread until stopped."""

    def __init__(
        self, store: ObjectStore, key: str, body: bytes, refresh_s: float, *,
        recreate: bool = True,
    ) -> None:
        self._store = store
        self._key = key
        # A uniquely named lock that someone deleted was broken: rewriting it would take the
        # lock back behind the breaker's back, so such a refresher stops and reports ``lost``.
        self._recreate = recreate
        self._body = body
        self._refresh_s = refresh_s
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.last_ok = time.monotonic()
        self.lost = False
        self._thread = threading.Thread(target=self._run, name=f"cpv-lease-{key[-8:]}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_s):
            try:
                self.refresh_once()
            except CPVError as exc:
                log.warning("could not refresh %s (will retry): %s", self._key, exc)

    def refresh_once(self) -> None:
        with self._lock:
            if self._stop.is_set():
                return
            if not self._recreate:
                try:
                    self._store.stat(self._key)
                except ObjectNotFoundError:
                    self.lost = True
                    self._stop.set()
                    return
            self._store.put(self._key, self._body)
            self.last_ok = time.monotonic()

    def stop(self) -> None:
        with self._lock:
            self._stop.set()
        self._thread.join(timeout=5)


class PushLease:
    """A running push's shared lease (``locks/push-<id>``); see the module docstring.

    Many pushes may hold leases at once; gc reads them to know which pushes might still rely
    on data it wants to delete. Use as a context manager.

    Args:
        store: the store.
        refresh_s: how often the lease is rewritten.
        stale_s: after how long without a rewrite gc treats the lease as dead.
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        refresh_s: float = DEFAULT_REFRESH_S,
        stale_s: float = DEFAULT_LEASE_STALE_S,
    ) -> None:
        self.lease_id = secrets.token_hex(16)
        self.key = LEASE_PREFIX + self.lease_id
        self.stale_s = stale_s
        self._store = _raw_store(store)
        body = _lock_body("push", self.lease_id, refresh_s)
        self._store.put(self.key, body)
        self._refresher = _Refresher(self._store, self.key, body, refresh_s)

    def check_alive(self) -> None:
        """Raise if the lease went unrefreshed long enough that a gc may think this push dead.

        Called just before a push publishes its snapshot: a process that was suspended (a laptop
        lid, SIGSTOP) past the stale time must not reference data a gc may since have removed.
        """
        idle = time.monotonic() - self._refresher.last_ok
        if idle > self.stale_s * 0.8:
            raise StoreLockedError(
                f"this push's lease {self.key} was not refreshed for {idle:.0f} s; a concurrent gc "
                "may have treated the push as dead",
                holder=self.lease_id,
                hint="re-run the push: what was uploaded is reused",
            )

    def release(self) -> None:
        self._refresher.stop()
        try:
            self._store.delete(self.key)
        except CPVError as exc:
            log.warning(
                "could not remove push lease %s (gc ignores it once stale): %s", self.key, exc
            )

    def __enter__(self) -> PushLease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class GCLock:
    """The exclusive gc lock: one gc at a time on every server, or a refusal.

    Two protocols, chosen by what the server was probed to do
    (:func:`cpv.store.capabilities.store_features`):

    - **conditional write** (the server honours ``If-None-Match: *``): create ``locks/gc`` only
      if absent. A second gc's create fails with 412.
    - **lock file and re-check** (the server ignores conditional writes, as rclone ``serve s3``,
      the JuiceFS/MinIO gateway and s3rver do; restic's model): write ``locks/gc-<lock id>``,
      list ``locks/gc*``, back off (deleting ours) if any other gc lock is there, wait
      ``settle_s``, and list again. Of two gcs that start together the later writer sees the
      earlier one's file, because a listing after a write shows it (S3's read-after-write
      consistency); at worst both back off. Never both hold.

    Either protocol also backs off when it finds the other's lock, so clients that chose
    differently (a probe through another endpoint) still exclude each other.

    Args:
        store: the store.
        stale_s: a lock not refreshed for this long counts as abandoned.
        break_stale: delete an abandoned lock and take over; without it an abandoned lock is
            reported, never silently broken (restic#3219 shows why users want the choice).
        refresh_s: how often the lock is rewritten while held.
        settle_s: how long the lock-file protocol waits before its re-check.
        conditional_writes: force a protocol (tests); ``None`` asks the probe.

    Raises:
        StoreLockedError: another gc holds the lock (``.holder`` names it, the message its age).
    """

    def __init__(
        self,
        store: ObjectStore,
        *,
        stale_s: float = DEFAULT_LOCK_STALE_S,
        break_stale: bool = False,
        refresh_s: float = DEFAULT_REFRESH_S,
        settle_s: float = DEFAULT_SETTLE_S,
        conditional_writes: bool | None = None,
    ) -> None:
        self.lock_id = secrets.token_hex(16)
        self.refresh_s = refresh_s
        self._store = _raw_store(store)
        self._body = _lock_body("gc", self.lock_id, refresh_s)
        if conditional_writes is None:
            conditional_writes = store_features(self._store).conditional_put is True
        self.conditional = conditional_writes
        if conditional_writes:
            self.key = GC_LOCK_KEY
            self._take_conditional(stale_s, break_stale)
            try:
                self._contest(stale_s, break_stale=False)
            except BaseException:
                self._delete_own()
                raise
        else:
            self.key = GC_LOCKFILE_PREFIX + self.lock_id
            self._store.put(self.key, self._body)
            try:
                self._contest(stale_s, break_stale=break_stale)
                time.sleep(settle_s)
                self._contest(stale_s, break_stale=False)
            except BaseException:
                self._delete_own()
                raise
        self.acquired_at = self._store.stat(self.key).mtime
        self._refresher = _Refresher(
            self._store, self.key, self._body, refresh_s, recreate=conditional_writes
        )

    def _take_conditional(self, stale_s: float, break_stale: bool) -> None:
        for attempt in (1, 2):
            try:
                self._store.put(GC_LOCK_KEY, self._body, if_absent=True)
                return
            except PreconditionFailedError:
                now = server_now(self._store)
                held = read_lock(self._store, GC_LOCK_KEY, now=now)
                if held is not None and held.holder_id == self.lock_id:
                    return  # our first try landed but its answer was lost; the retry found it
                if held is None and attempt == 1:
                    continue  # released between our write and our read
                if held is None:
                    raise StoreLockedError(
                        "the gc lock changed hands twice while cpv tried to take it",
                        hint="another gc is starting; try again in a minute",
                    ) from None
                if held.age_s >= stale_s and break_stale and attempt == 1:
                    log.warning("breaking stale gc lock held by %s", held.describe())
                    self._store.delete(GC_LOCK_KEY)
                    continue
                raise _locked_by(held, stale_s) from None

    def _contest(self, stale_s: float, *, break_stale: bool) -> None:
        """Raise if any gc lock other than ours exists (breaking abandoned ones if asked)."""
        now = server_now(self._store)
        for obj in self._store.list(GC_LOCK_PREFIX):
            if obj.key == self.key or not _is_gc_lock_key(obj.key):
                continue
            held = read_lock(self._store, obj.key, now=now)
            if held is None or held.holder_id == self.lock_id:
                continue  # gone meanwhile (a contender backed off), or our own
            if held.age_s >= stale_s and break_stale:
                log.warning("breaking stale gc lock held by %s", held.describe())
                self._store.delete(obj.key)
                continue
            raise _locked_by(held, stale_s)

    def _delete_own(self) -> None:
        try:
            held = read_lock(self._store, self.key, now=0.0)
            if held is not None and held.holder_id == self.lock_id:
                self._store.delete(self.key)
        except CPVError as exc:
            log.warning("could not remove gc lock %s (it goes stale on its own): %s",
                        self.key, exc)

    def check_held(self) -> None:
        """Raise if someone broke our lock, or if our refreshes fell so far behind that waiting
        pushes may think us dead: a gc must stop deleting the moment it is not alone."""
        idle = time.monotonic() - self._refresher.last_ok
        if idle > 2.5 * self.refresh_s:
            raise StoreLockedError(
                f"this gc could not refresh its lock for {idle:.0f} s; stopping",
                holder=self.lock_id,
                hint="re-run gc: what it did so far is safe",
            )
        now = server_now(self._store)
        held = read_lock(self._store, self.key, now=now)
        if self._refresher.lost or held is None or held.holder_id != self.lock_id:
            raise StoreLockedError(
                "this gc lost its lock (it was broken by another process); stopping",
                holder=held.holder if held else "",
                hint="run gc again once the other gc has finished",
            )

    def release(self) -> None:
        self._refresher.stop()
        self._delete_own()

    def __enter__(self) -> GCLock:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _is_gc_lock_key(key: str) -> bool:
    return key == GC_LOCK_KEY or key.startswith(GC_LOCKFILE_PREFIX)


def _locked_by(held: LockInfo, stale_s: float) -> StoreLockedError:
    hint = (
        f"it looks abandoned (older than {stale_s:.0f} s): re-run with the "
        "break-stale-lock option if no gc is running"
        if held.age_s >= stale_s
        else "wait for that gc to finish"
    )
    return StoreLockedError(
        f"store is locked by gc {held.describe()}", holder=held.holder, hint=hint
    )


def live_gc_lock(store: ObjectStore) -> LockInfo | None:
    """A gc lock whose holder is alive (of either protocol), or None."""
    raw = _raw_store(store)
    keys = [o.key for o in raw.list(GC_LOCK_PREFIX) if _is_gc_lock_key(o.key)]
    if not keys:
        return None
    now = server_now(raw)
    for key in keys:
        held = read_lock(raw, key, now=now)
        if held is not None and not held.dead:
            return held
    return None


def wait_while_gc_runs(
    store: ObjectStore, *, timeout_s: float = DEFAULT_LOCK_STALE_S, poll_s: float = 1.0
) -> None:
    """Return once no live gc lock exists; StoreLockedError after ``timeout_s``.

    A dead lock (a gc that died: three refreshes missed) does not block, because it cannot be
    deleting anything: a gc stops itself when its own refreshes fall behind
    (:meth:`GCLock.check_held`). So a crashed gc holds pushes up for minutes, not until someone
    breaks its lock.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        held = live_gc_lock(store)
        if held is None:
            return
        if time.monotonic() >= deadline:
            raise StoreLockedError(
                f"a gc has held the store for too long: {held.describe()}",
                holder=held.holder,
                hint="wait for the gc to finish, then re-run",
            )
        log.info("waiting for gc %s to finish", held.holder)
        time.sleep(poll_s)


# -- condemnation records ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CondemnedRecord:
    """Packs a gc run decided to delete, and the push leases alive at that moment."""

    record_id: str
    packs: frozenset[str]
    leases: frozenset[str]
    written_at: float = 0.0

    @property
    def key(self) -> str:
        return CONDEMNED_PREFIX + self.record_id

    def to_json(self) -> bytes:
        doc = {"version": 1, "packs": sorted(self.packs), "leases": sorted(self.leases)}
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, record_id: str, raw: bytes, *, written_at: float) -> CondemnedRecord:
        try:
            doc: Any = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise FormatError(f"gc record {record_id} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("version") != 1:
            raise FormatError(
                f"gc record {record_id} has an unknown format", hint="upgrade cpv to run gc here"
            )
        packs, leases = doc.get("packs"), doc.get("leases")
        if not isinstance(packs, list) or not isinstance(leases, list):
            raise FormatError(f"gc record {record_id} is malformed")
        for pid in packs:
            if not isinstance(pid, str) or len(pid) != 64 or not set(pid) <= _HEX:
                raise FormatError(f"gc record {record_id} names an invalid pack id {pid!r}")
        return cls(record_id, frozenset(packs), frozenset(str(x) for x in leases), written_at)


def write_record(
    store: ObjectStore, packs: Iterable[str], leases: Iterable[str]
) -> CondemnedRecord:
    record = CondemnedRecord(secrets.token_hex(16), frozenset(packs), frozenset(leases))
    _raw_store(store).put(record.key, record.to_json())
    return record


def iter_records(store: ObjectStore) -> Iterator[CondemnedRecord]:
    """Every condemnation record; unreadable ones raise FormatError (gc must not guess)."""
    raw = _raw_store(store)
    for obj in raw.list(CONDEMNED_PREFIX):
        record_id = obj.key[len(CONDEMNED_PREFIX) :]
        if obj.size > MAX_RECORD_OBJECT:
            raise FormatError(f"gc record {record_id} is implausibly large ({obj.size} bytes)")
        try:
            body = raw.get(obj.key)
        except ObjectNotFoundError:
            continue
        if not body:
            # A gc killed while writing it (SeaweedFS keeps the empty object of such a PUT):
            # it condemned nothing, since the index it rewrote first leaves those packs
            # orphans that the next gc judges again. Any other unreadable record stops gc.
            log.warning("ignoring empty gc record %s (a gc was interrupted writing it)",
                        record_id)
            continue
        yield CondemnedRecord.from_json(record_id, body, written_at=obj.mtime)


def condemned_pack_ids(store: ObjectStore) -> set[str]:
    """Packs some gc run has condemned. Best effort: on any error, an empty set.

    Used by a push so that it does not re-index (and so resurrect) packs a gc is about to
    delete. Getting it wrong costs only efficiency: a gc never deletes a pack an index names.
    """
    found: set[str] = set()
    try:
        for record in iter_records(store):
            found |= record.packs
    except (StoreError, FormatError) as exc:
        log.debug("could not read gc records: %s", exc)
    return found


__all__ = [
    "CONDEMNED_PREFIX",
    "DEFAULT_LEASE_STALE_S",
    "DEFAULT_LOCK_STALE_S",
    "GC_LOCK_KEY",
    "LEASE_PREFIX",
    "CondemnedRecord",
    "GCLock",
    "LockInfo",
    "PushLease",
    "condemned_pack_ids",
    "iter_records",
    "list_leases",
    "read_lock",
    "server_now",
    "wait_while_gc_runs",
    "write_record",
]
