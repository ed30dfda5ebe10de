"""A snapshot's per-file blake3 must be exactly 64 lowercase hex digits: the cheap check
(``bytes.fromhex`` and back) refuses what ``fromhex`` alone would accept."""

from __future__ import annotations

import json
import zlib

import pytest

from cpv.engine.snapshot import SNAPSHOT_MAGIC, Snapshot
from cpv.errors import FormatError

GOOD = "ab" * 32


def raw(digest: object) -> bytes:
    doc = {"version": 1, "meta": {}, "files": [
        {"p": "a/b.bin", "s": 3, "m": 0o644, "h": digest, "c": None}]}
    return SNAPSHOT_MAGIC + zlib.compress(json.dumps(doc).encode())


def test_a_good_digest_decodes_to_its_single_chunk() -> None:
    (entry,) = Snapshot.decode(raw(GOOD)).files
    assert entry.blake3 == GOOD and entry.chunks == (bytes.fromhex(GOOD),)


@pytest.mark.parametrize("digest", [
    GOOD.upper(), "ab " * 21 + "a", GOOD[:-2] + " a", GOOD[:-1], GOOD + "ab", "zz" * 32, 7, None,
])
def test_a_bad_digest_is_refused(digest: object) -> None:
    with pytest.raises(FormatError, match="bad blake3"):
        Snapshot.decode(raw(digest))
