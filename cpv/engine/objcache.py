"""The local cache of immutable, content-addressed store objects (index objects, root records).

Such objects never change once written, so a copy whose blake3 matches its id is as good as the
store's: opening a store later costs one LIST and GETs of only the objects not seen before. The
cache only saves work; deleting it is always safe.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cpv.engine.hashing import chunk_id

log = logging.getLogger(__name__)


def read_cached(cache_dir: Path | None, folder: str, object_id: str) -> bytes | None:
    """The cached copy of ``object_id``, or None if absent or damaged (then fetch it again)."""
    if cache_dir is None:
        return None
    path = cache_dir / folder / object_id
    try:
        raw = path.read_bytes()
    except OSError:
        return None
    if chunk_id(raw).hex() != object_id:
        log.warning("cached %s object %s is damaged; fetching it again", folder, object_id)
        return None
    return raw


def write_cached(cache_dir: Path | None, folder: str, object_id: str, raw: bytes) -> None:
    """Best effort: a cache that cannot be written only costs a re-download next time."""
    if cache_dir is None:
        return
    target = cache_dir / folder
    final = target / object_id
    if final.exists():
        return
    try:
        target.mkdir(parents=True, exist_ok=True)
        tmp = target / f".{object_id}.{os.getpid()}.tmp"
        tmp.write_bytes(raw)
        os.replace(tmp, final)
    except OSError as exc:
        log.debug("could not cache %s object %s: %s", folder, object_id, exc)
