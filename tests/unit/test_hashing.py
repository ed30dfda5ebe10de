"""cpv.engine.hashing against the official BLAKE3 test vectors, streaming and files.

The vectors are from BLAKE3-team/BLAKE3 ``test_vectors/test_vectors.json`` (first 32 bytes of
each ``hash``); the input of length n is ``bytes(i % 251 for i in range(n))``. Chunk ids are store
keys, so these pin the store format as much as the chunker's golden vectors do.
"""

from __future__ import annotations

import array
from pathlib import Path

import pytest

from cpv.engine.hashing import DIGEST_SIZE, Hasher, chunk_id, hash_bytes_hex, hash_file

OFFICIAL = {
    0: "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
    1: "2d3adedff11b61f14c886e35afa036736dcd87a74d27b5c1510225d0f592e213",
    1023: "10108970eeda3eb932baac1428c7a2163b0e924c9a9e25b35bba72b28f70bd11",
    1024: "42214739f095a406f3fc83deb889744ac00df831c10daa55189b5d121c855af7",
    1025: "d00278ae47eb27b34faecf67b4fe263f82d5412916c1ffd97c8cb7fb814b8444",
    3073: "7124b49501012f81cc7f11ca069ec9226cecb8a2c850cfe644e327d22d3e1cd3",
    7169: "a003fc7a51754a9b3c7fae0367ab3d782dccf28855a03d435f8cfe74605e7817",
    102400: "bc3e3d41a1146b069abffad3c0d44860cf664390afce4d9661f7902e7943e085",
}


def vector_input(n: int) -> bytes:
    return (bytes(range(251)) * (n // 251 + 1))[:n]


@pytest.mark.parametrize(("length", "expected"), sorted(OFFICIAL.items()))
def test_official_vectors(length: int, expected: str) -> None:
    data = vector_input(length)
    assert hash_bytes_hex(data) == expected
    assert chunk_id(data) == bytes.fromhex(expected)
    assert len(chunk_id(data)) == DIGEST_SIZE == 32


@pytest.mark.parametrize("length", [0, 1, 1024, 102400])
def test_hasher_streaming_equals_one_shot(length: int) -> None:
    data = vector_input(length)
    for piece in (1, 7, 1024, 4096, 65536):
        h = Hasher()
        for i in range(0, len(data), piece):
            h.update(memoryview(data)[i : i + piece])
        assert h.hexdigest() == OFFICIAL[length]
        assert h.digest() == bytes.fromhex(OFFICIAL[length])


def test_hasher_initial_data_and_digest_does_not_finalise() -> None:
    data = vector_input(3073)
    h = Hasher(data[:1000])
    assert h.hexdigest() == hash_bytes_hex(data[:1000])  # reading the digest ...
    h.update(data[1000:])
    assert h.hexdigest() == OFFICIAL[3073]  # ... leaves the hasher usable


def test_accepts_byte_buffers_without_copying_them_first() -> None:
    data = vector_input(3073)
    assert chunk_id(bytearray(data)) == chunk_id(memoryview(b"x" + data)[1:])
    assert hash_bytes_hex(array.array("B", data)) == OFFICIAL[3073]


def test_hash_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty) == OFFICIAL[0]
    small = tmp_path / "small"
    small.write_bytes(vector_input(102400))
    assert hash_file(small) == OFFICIAL[102400]
    assert hash_file(str(small)) == OFFICIAL[102400]
    # Large enough for blake3's multi-threaded path to split the work.
    big = tmp_path / "big"
    data = vector_input(251 * 40_000)  # ~10 MB
    big.write_bytes(data)
    assert hash_file(big) == hash_bytes_hex(data)


def test_hash_file_missing(tmp_path: Path) -> None:
    with pytest.raises(OSError):  # callers translate it; they know the context
        hash_file(tmp_path / "nope")
