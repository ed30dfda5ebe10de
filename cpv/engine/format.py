"""The store's ``config`` object: what every client reads first.

It pins the format version and the chunker parameters for the life of the store, the way
restic's config pins ``chunker_polynomial``: if two clients chunked the same bytes differently,
they would stop deduplicating against each other, so local settings never override it.

Layout of a store (one S3 prefix or one local folder)::

    config                      this object (JSON), written once with create-if-absent
    packs/<2 hex>/<pack id>     ~64 MiB immutable packs of chunks, self-describing footer
    index/<index id>            which chunk lives in which pack at which offset
    snapshots/<snapshot id>     one pushed file tree: paths, sizes, modes, blake3, chunk lists
    locks/gc, locks/push-<id>   the exclusive gc lock and running pushes' leases (engine/locks.py)
    gc/condemned/<id>           packs a gc run condemned, deleted by a later sweep (docs/gc.md)
    roots/<id>, roots.json      the store's versions and tags (engine/roots.py); the marker says
                                this store records them

Unknown format versions are refused with :class:`~cpv.errors.FormatError` rather than
guessed at: writing version-1 objects into a newer store could break its readers.

Version 2 stores snapshots as trees of nodes (:mod:`cpv.engine.tree`) and adds ``features``:
``{"read": [...], "write": [...]}``. A cpv must know every *read*
feature to use the store at all, and every *write* feature to push to it; a store whose write
features it does not know stays readable (pull, verify, ls). Version 1 (flat snapshots, no
features) is what stores created before were written in; they keep their rules and are read and
written as before until :func:`upgrade_store_format`. The
only feature so far is ``tensor-boundaries`` (a write feature: the cutting rule of
:mod:`cpv.engine.tensorcuts`; readers never cut). A version-1 cpv refuses a version-2 store with
"upgrade cpv", which is what keeps it from pushing with the old cutting rule.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from cpv.engine.chunking import DEFAULT_CHUNKER, ChunkerParams
from cpv.engine.index import INDEX_PREFIX
from cpv.engine.snapshot import SNAPSHOT_PREFIX
from cpv.engine.tensorcuts import FEATURE as TENSOR_BOUNDARIES
from cpv.errors import FormatError, NoStoreError, ObjectNotFoundError, PreconditionFailedError
from cpv.store import MiB

if TYPE_CHECKING:
    from cpv.store import ObjectStore

CONFIG_KEY = "config"
FORMAT_NAME = "cpv-store"
FORMAT_VERSION = 2
"""What a new store is created with. 2: snapshots are trees of nodes (``cpv/engine/tree.py``),
and the config lists ``features`` (below)."""
READABLE_VERSIONS = (1, 2)
"""A version-1 store is read and written in format 1 until :func:`upgrade_store_format`."""
FORMAT_VERSIONS = READABLE_VERSIONS
READ_FEATURES: frozenset[str] = frozenset()
"""Features this cpv knows that a reader must understand."""
WRITE_FEATURES = frozenset({TENSOR_BOUNDARIES})
"""Features this cpv knows that a writer must honour (readers may ignore them)."""
HASH_ALGORITHM = "blake3"
DEFAULT_PACK_SIZE = 64 * MiB


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """The parsed ``config`` object of a store."""

    version: int
    store_id: str
    chunker: ChunkerParams
    pack_size: int
    hash: str = HASH_ALGORITHM
    created_at: str = ""
    unknown_write_features: tuple[str, ...] = ()
    """Write features of the store this cpv does not know: it may read, not push."""

    @property
    def write_features(self) -> tuple[str, ...]:
        known = (TENSOR_BOUNDARIES,) if self.chunker.tensor_boundaries else ()
        return tuple(sorted({*known, *self.unknown_write_features}))

    def check_writable(self, where: str) -> None:
        """Refuse to write into a store whose rules this cpv does not know.

        Raises:
            FormatError: the store lists a write feature this cpv does not know (a newer
                cutting rule, say): pushing with the old rule would silently stop dedup.
        """
        if self.unknown_write_features:
            raise FormatError(
                f"store at {where} uses format features this cpv does not know: "
                f"{', '.join(self.unknown_write_features)}; it can read the store but not push",
                hint="upgrade cpv (pip install -U cpv-checkpoints) to push to this store",
            )

    @property
    def tree_snapshots(self) -> bool:
        """Whether pushes write format-2 tree snapshots (else format-1 flat ones)."""
        return self.version >= 2

    def to_json(self) -> bytes:
        features = self.write_features
        doc: dict[str, Any] = {
            "format": FORMAT_NAME,
            "version": self.version,
            "store_id": self.store_id,
            "chunker": self.chunker.to_dict(),
            "pack_size": self.pack_size,
            "hash": self.hash,
            "compression": "none",
            "created_at": self.created_at,
        }
        if self.version >= 2:
            doc["features"] = {"read": [], "write": list(features)}
        elif features:
            raise ValueError("format-1 stores have no features; upgrade the store first")
        return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()

    @classmethod
    def from_json(cls, raw: bytes, *, where: str) -> StoreConfig:
        try:
            doc: Any = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FormatError(f"store config at {where} is not valid JSON: {exc}") from exc
        if not isinstance(doc, dict) or doc.get("format") != FORMAT_NAME:
            raise FormatError(f"{where} is not a cpv store config (no format={FORMAT_NAME!r})")
        version = doc.get("version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            raise FormatError(
                f"store at {where} has format version {version!r}; this cpv understands "
                f"versions {' and '.join(map(str, READABLE_VERSIONS))}",
                hint="upgrade cpv (pip install -U cpv-checkpoints) to use this store",
            )
        if doc.get("hash") != HASH_ALGORITHM or doc.get("compression", "none") != "none":
            raise FormatError(f"store at {where} uses an unsupported hash or compression")
        try:
            chunker_doc = doc["chunker"]
            pack_size = int(doc["pack_size"])
            store_id = str(doc["store_id"])
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"store config at {where} is incomplete: {exc}") from exc
        if pack_size < 1 * MiB:
            raise FormatError(f"store config at {where} has an invalid pack_size {pack_size}")
        read, write = _features(doc, where) if version == 2 else ((), ())
        unknown_read = sorted(set(read) - READ_FEATURES)
        if unknown_read:
            raise FormatError(
                f"store at {where} uses format features this cpv does not know: "
                f"{', '.join(unknown_read)}",
                hint="upgrade cpv (pip install -U cpv-checkpoints) to use this store",
            )
        chunker = ChunkerParams.from_dict(
            chunker_doc, tensor_boundaries=TENSOR_BOUNDARIES in write
        )
        return cls(
            version=int(version),
            store_id=store_id,
            chunker=chunker,
            pack_size=pack_size,
            created_at=str(doc.get("created_at", "")),
            unknown_write_features=tuple(sorted(set(write) - WRITE_FEATURES)),
        )


def _features(doc: dict[str, Any], where: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (read, write) feature lists of a version-2 config."""
    features = doc.get("features")
    lists: list[tuple[str, ...]] = []
    for kind in ("read", "write"):
        names = features.get(kind) if isinstance(features, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise FormatError(
                f"store config at {where} has no valid features.{kind} list",
                hint="the store's config object is damaged or was written by an incompatible cpv",
            )
        lists.append(tuple(names))
    return lists[0], lists[1]


def read_store_config(store: ObjectStore) -> StoreConfig:
    """Read and check the store's config; :class:`NoStoreError` if there is none."""
    try:
        raw = store.get(CONFIG_KEY)
    except ObjectNotFoundError as exc:
        raise NoStoreError(f"no cpv store at {store.url}") from exc
    if not raw:
        # An init killed before the config's body arrived (SeaweedFS keeps an empty object
        # under the key): no store was made, and :func:`init_store` makes it now.
        raise NoStoreError(f"no cpv store at {store.url} (its config object is empty: an "
                           "init was interrupted)")
    return StoreConfig.from_json(raw, where=store.url)


def init_store(
    store: ObjectStore,
    *,
    chunker: ChunkerParams = DEFAULT_CHUNKER,
    pack_size: int = DEFAULT_PACK_SIZE,
    version: int = FORMAT_VERSION,
) -> StoreConfig:
    """Create the store's config, or return the existing one unchanged.

    ``version=1`` makes a store older clients can use (and tests of format-1 compatibility).

    Create-if-absent makes two clients initialising the same store at once safe: one config
    wins and both use it.
    """
    try:
        return read_store_config(store)
    except NoStoreError:
        pass
    if version not in READABLE_VERSIONS:
        raise ValueError(f"unknown store format version {version}")
    if version < 2 and chunker.tensor_boundaries:
        raise ValueError("tensor-boundary chunking needs store format 2")
    config = StoreConfig(
        version=version,
        store_id=secrets.token_hex(16),
        chunker=chunker,
        pack_size=pack_size,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    # A new store records roots from its first push, so gc may run on it without a migration.
    # The marker goes first: if another client wins the config race, its store is new as well.
    from cpv.engine.roots import mark_roots_enabled

    mark_roots_enabled(store)
    try:
        store.put(CONFIG_KEY, config.to_json(), if_absent=True)
    except PreconditionFailedError:
        try:
            return read_store_config(store)
        except NoStoreError:
            # The empty config of an interrupted init stands there: replaced, and what is
            # stored then is the store's (a client racing on the same empty object may win).
            # Not over a store that holds versions: its chunking and format are not ours to
            # guess (an interrupted upgrade_store_format leaves the same empty object).
            for prefix in (SNAPSHOT_PREFIX, INDEX_PREFIX, "packs/"):
                if next(iter(store.list(prefix)), None) is not None:
                    raise FormatError(
                        f"the config object of the store at {store.url} is empty, but the "
                        "store holds data: a write of its config was interrupted",
                        hint="restore the store's config object from a backup, or from the "
                             "server's earlier versions of the object") from None
            store.put(CONFIG_KEY, config.to_json())
            return read_store_config(store)
    return config


def upgrade_store_format(store: ObjectStore) -> tuple[StoreConfig, bool]:
    """Move a format-1 store to format 2; returns (config, changed). Idempotent.

    Nothing is rewritten but ``config``: format-1 snapshots stay as they are and stay readable,
    new pushes write tree snapshots. The bumped version is what makes a format-1 cpv refuse
    the store in one line ("upgrade cpv") instead of collecting garbage it cannot see (a
    format-1 gc would not know that tree nodes are live). Every client of the store must be
    upgraded first; a format-1 push racing the upgrade still writes a valid format-1 snapshot.
    """
    config = read_store_config(store)
    if config.version >= FORMAT_VERSION:
        return config, False
    upgraded = dataclasses.replace(config, version=FORMAT_VERSION)
    store.put(CONFIG_KEY, upgraded.to_json())
    return upgraded, True
