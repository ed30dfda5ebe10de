"""What the server behind a store actually does: probed once per store, remembered, never assumed.

S3-compatible servers differ in ways the API does not announce: some silently ignore
``If-None-Match: *`` (they answer 200 and overwrite), some have no ListMultipartUploads or
AbortMultipartUpload, some answer a ranged GET with 200 (``docs/store-contract.md`` has the table).
Invariant 9 says such features are probed, not assumed; this module is the one owner of the answer.

- :func:`store_features` returns a :class:`ServerFeatures` for a store: the remembered record
  (``probe/features`` in the store, keyed by the endpoint that probed it) when there is a fresh
  one, else a new probe. ``refresh=True`` probes again (``cpv doctor`` does).
- The probe itself is the adapter's (:meth:`cpv.store.s3.S3Store.probe_features`): it needs raw
  HTTP statuses only the adapter sees. Local and in-memory stores support everything by
  construction and are not probed.
- Who uses the answer: the gc lock chooses its protocol by ``conditional_put``
  (:mod:`cpv.engine.locks`); the S3 adapter degrades on its own where a safe fallback exists
  (no multipart listing: skip that housekeeping; no multi-object delete: delete one by one) and
  refuses with :class:`~cpv.errors.UnsupportedFeatureError` where none exists (ranged reads).

A feature is ``True`` (seen working), ``False`` (seen missing or ignored) or ``None`` (could not
be probed, e.g. read-only credentials cannot try a write); ``details`` says what was seen.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final, Protocol, runtime_checkable

from cpv.errors import CPVError, ObjectNotFoundError
from cpv.store import ObjectStore

log = logging.getLogger(__name__)

FEATURES_KEY: Final = "probe/features"
"""Where a store remembers its probe (a small JSON object; see docs/format.md)."""
PROBE_PREFIX: Final = "probe/"
PROBE_MAX_AGE_S: Final = 7 * 24 * 3600.0
"""A remembered probe older than this is repeated (servers get upgraded)."""
FORMAT_VERSION: Final = 1

FEATURE_NAMES: Final[Mapping[str, str]] = {
    "conditional_put": "conditional writes (PUT If-None-Match: *)",
    "multipart_listing": "listing multipart uploads (ListMultipartUploads)",
    "abort_multipart": "aborting multipart uploads (AbortMultipartUpload)",
    "multi_delete": "multi-object delete (DeleteObjects)",
    "ranged_get": "ranged reads (GET Range)",
}
"""Each probed feature and how it is named to the user (doctor lines, refusals)."""

_CONSEQUENCE: Final[Mapping[str, str]] = {
    "conditional_put": "gc uses lock files and a re-check instead of a conditional write",
    "multipart_listing": "abandoned uploads are not looked for (housekeeping skipped)",
    "abort_multipart": "abandoned uploads stay until the server expires them",
    "multi_delete": "objects are deleted one by one",
    "ranged_get": "pull, verify and gc cannot read packs from this server",
}

_NO_FALLBACK: Final = ("ranged_get",)


@dataclass(frozen=True, slots=True)
class ServerFeatures:
    """The probed features of one store's server; see the module docstring.

    Attributes:
        conditional_put: ``If-None-Match: *`` makes a second create fail with 412.
        multipart_listing: ListMultipartUploads answers (and finds a started upload).
        abort_multipart: AbortMultipartUpload works.
        multi_delete: DeleteObjects removes several keys in one request.
        ranged_get: a GET with ``Range`` returns exactly those bytes (200 or 206).
        endpoint: the endpoint the probe went through ('' for local stores).
        probed_at: epoch seconds of the probe (0 for stores that are never probed).
        details: per feature, what the probe saw (status codes, error codes).
    """

    conditional_put: bool | None
    multipart_listing: bool | None
    abort_multipart: bool | None
    multi_delete: bool | None
    ranged_get: bool | None
    endpoint: str = ""
    probed_at: float = 0.0
    details: Mapping[str, str] = field(default_factory=dict)

    def supports(self, feature: str) -> bool | None:
        value: bool | None = getattr(self, feature)
        return value

    def unusable(self) -> list[str]:
        """Features seen missing that cpv has no way around (the doctor reports these as
        problems; everything else missing is absorbed, see ``_CONSEQUENCE``)."""
        return [FEATURE_NAMES[name] for name in _NO_FALLBACK if self.supports(name) is False]

    def lines(self) -> list[str]:
        """One line per feature for ``cpv doctor``: name, yes/no/unknown, what it means."""
        out = []
        for name, label in FEATURE_NAMES.items():
            value = self.supports(name)
            seen = self.details.get(name, "")
            if value is True:
                text = f"{label}: yes"
            elif value is False:
                text = f"{label}: NO ({seen}); {_CONSEQUENCE[name]}" if seen else (
                    f"{label}: NO; {_CONSEQUENCE[name]}")
            else:
                text = f"{label}: not probed ({seen or 'no permission to try'})"
            out.append(text)
        return out

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"version": FORMAT_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            doc[f.name] = dict(value) if f.name == "details" else value
        return json.dumps(doc, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ServerFeatures | None:
        """The record in ``raw``, or None if it is not one this version understands."""
        try:
            doc: Any = json.loads(raw)
            if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
                return None
            flags = {}
            for name in FEATURE_NAMES:
                value = doc.get(name)
                if value is not None and not isinstance(value, bool):
                    return None
                flags[name] = value
            details = doc.get("details", {})
            if not isinstance(details, dict):
                return None
            return cls(
                **flags,
                endpoint=str(doc.get("endpoint", "")),
                probed_at=float(doc.get("probed_at", 0.0)),
                details={str(k): str(v) for k, v in details.items()},
            )
        except (ValueError, TypeError, UnicodeDecodeError):
            return None


ALL_FEATURES: Final = ServerFeatures(
    conditional_put=True, multipart_listing=True, abort_multipart=True, multi_delete=True,
    ranged_get=True,
)
"""What a local folder or memory store offers: everything, by construction."""


@runtime_checkable
class ProbingStore(ObjectStore, Protocol):
    """A store adapter that can probe its server (the S3 adapter); ``probed`` caches the answer
    for the life of the adapter object."""

    endpoint: str
    probed: ServerFeatures | None

    def probe_features(self) -> ServerFeatures: ...


def _unwrap(store: ObjectStore) -> ObjectStore:
    """The adapter under a wrapper such as the engine's CountingStore (it has ``inner``)."""
    inner: ObjectStore | None = getattr(store, "inner", None)
    return _unwrap(inner) if inner is not None else store


def store_features(store: ObjectStore, *, refresh: bool = False) -> ServerFeatures:
    """The features of ``store``'s server: remembered if fresh, else probed (and remembered).

    The answer is cached on the adapter object too, so a process probes a store at most once.
    A record probed through another endpoint, older than :data:`PROBE_MAX_AGE_S` or unreadable
    is ignored. Remembering is best effort: read-only credentials probe what they can and keep
    the answer in memory only.

    Raises:
        StoreError: the store failed in a way that is not about a feature (unreachable,
            wrong credentials on every request).
    """
    adapter = _unwrap(store)
    if not isinstance(adapter, ProbingStore):
        return ALL_FEATURES
    if adapter.probed is not None and not refresh:
        return adapter.probed
    features = None if refresh else _remembered(adapter)
    if features is None:
        features = adapter.probe_features()
        try:
            adapter.put(FEATURES_KEY, features.to_json())
        except CPVError as exc:
            log.debug("could not remember the server probe in %s: %s", FEATURES_KEY, exc)
    adapter.probed = features
    return features


def _remembered(adapter: ProbingStore) -> ServerFeatures | None:
    try:
        raw = adapter.get(FEATURES_KEY)
    except ObjectNotFoundError:
        return None
    except CPVError as exc:
        log.debug("could not read %s: %s", FEATURES_KEY, exc)
        return None
    features = ServerFeatures.from_json(raw[:65536])
    if features is None or features.endpoint != adapter.endpoint:
        return None
    if time.time() - features.probed_at > PROBE_MAX_AGE_S:
        return None
    return features


__all__ = [
    "ALL_FEATURES",
    "FEATURES_KEY",
    "FEATURE_NAMES",
    "PROBE_MAX_AGE_S",
    "PROBE_PREFIX",
    "ProbingStore",
    "ServerFeatures",
    "store_features",
]
