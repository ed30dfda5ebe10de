from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from cpv.engine import ChunkerParams, Repository, TransferLimits
from cpv.engine.format import FORMAT_VERSION
from cpv.errors import CPVError
from cpv.store import KiB, MiB

# Small parameters keep tests fast while exercising multi-chunk files, multipart packs and
# several packs per push.
SMALL_CHUNKER = ChunkerParams(min_size=16 * KiB, avg_size=48 * KiB, max_size=256 * KiB)
SMALL_PACK = 2 * MiB
LIMITS = TransferLimits(
    workers=4, hash_workers=2, part_size=5 * MiB, max_range=1 * MiB, range_gap=64 * KiB
)


def make_repo(store: object, cache: Path, *, pack_size: int = SMALL_PACK,
              version: int = FORMAT_VERSION) -> Repository:
    return Repository.init(store, chunker=SMALL_CHUNKER, pack_size=pack_size, cache_dir=cache,  # type: ignore[arg-type]
                           version=version)


def rand_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def age(path: Path, seconds: int = 60) -> None:
    """Backdate mtimes so the stat cache treats files as settled (not 'racy')."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - seconds * 1_000_000_000))


def make_tree(root: Path, *, seed: int = 1, big: int = 3 * MiB, small: int = 40) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "model.bin").write_bytes(rand_bytes(big, seed))
    sub = root / "data" / "train"
    sub.mkdir(parents=True)
    for i in range(small):
        (sub / f"s{i:04d}.txt").write_bytes(rand_bytes(1000 + 37 * i, seed * 1000 + i))
    (root / "empty.txt").write_bytes(b"")
    exe = root / "run.sh"
    exe.write_bytes(b"#!/bin/sh\necho hi\n")
    exe.chmod(0o755)
    os.symlink("model.bin", root / "latest")
    return root


def tree_digest(root: Path) -> dict[str, tuple[str, int] | str]:
    """Every file's content and mode, every symlink's target: the identity a pull must restore."""
    import hashlib

    out: dict[str, tuple[str, int] | str] = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            out[rel] = "->" + os.readlink(p)
        elif p.is_file():
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode & 0o777)
    return out


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


def as_nobody(call: object) -> str:
    """Run ``call`` in a forked child whose effective user is nobody; its one-line outcome.

    Root reads everything, so permission errors are only seen as another user. The outcome is
    ``repr`` of the result, or the one line of a LocalIOError.
    """
    assert callable(call)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.setegid(65534)
            os.seteuid(65534)
            try:
                line = repr(call())
            except CPVError as exc:
                line = exc.one_line()
            except BaseException as exc:
                line = f"unexpected {exc!r}"
            os.write(write_end, line.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read().decode()
    os.waitpid(pid, 0)
    return out
