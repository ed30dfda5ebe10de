"""Benchmark data: a safetensors checkpoint, fine-tuned variants of it, and a small-file data set.

Everything is random (incompressible, like trained float32 weights) and seeded, so two runs with
the same arguments produce the same bytes. Files are written once per run and shared by all tools.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import blake3
import numpy as np

MiB = 1024 * 1024
ROW = 256  # float32 columns per tensor row: tensor sizes are multiples of 1 KiB


@dataclass(frozen=True)
class Tensor:
    name: str
    rows: int

    @property
    def nbytes(self) -> int:
        return self.rows * ROW * 4


@dataclass
class Checkpoint:
    """One safetensors file's layout: the header and where each tensor's bytes start."""

    tensors: list[Tensor]
    header: bytes
    data_start: int
    offsets: dict[str, int] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return self.data_start + sum(t.nbytes for t in self.tensors)


def plan_checkpoint(
    total_bytes: int, *, seed: int = 1, min_mib: int = 1, max_mib: int = 64
) -> Checkpoint:
    """Tensors of 1-64 MiB (log-uniform) until ``total_bytes``, in the safetensors layout.

    The layout is the real one: 8-byte little-endian header length, a JSON header
    (``{"name": {"dtype": "F32", "shape": [...], "data_offsets": [begin, end]}, "__metadata__":
    {...}}`` padded with spaces to 8 bytes), then the tensors back to back.
    """
    rng = np.random.default_rng(seed)
    tensors: list[Tensor] = []
    used = 0
    i = 0
    # Small (quick-mode) checkpoints still get a dozen-plus tensors, so fractions are meaningful.
    max_mib = max(min_mib + 1, min(max_mib, total_bytes // (16 * MiB)))
    while used < total_bytes:
        mib = float(np.exp(rng.uniform(np.log(min_mib), np.log(max_mib))))
        nbytes = min(int(mib * MiB), total_bytes - used)
        rows = max(1, nbytes // (ROW * 4))
        layer, kind = divmod(i, 6)
        name = (
            f"model.layers.{layer}."
            + (
                "self_attn.q_proj",
                "self_attn.k_proj",
                "self_attn.v_proj",
                "self_attn.o_proj",
                "mlp.up_proj",
                "mlp.down_proj",
            )[kind]
            + ".weight"
        )
        tensors.append(Tensor(name, rows))
        used += rows * ROW * 4
        i += 1
    header: dict[str, object] = {"__metadata__": {"format": "pt", "generator": "cpv-benchmark"}}
    offsets: dict[str, int] = {}
    pos = 0
    for t in tensors:
        header[t.name] = {
            "dtype": "F32",
            "shape": [t.rows, ROW],
            "data_offsets": [pos, pos + t.nbytes],
        }
        offsets[t.name] = pos
        pos += t.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    blob = struct.pack("<Q", len(raw)) + raw
    return Checkpoint(tensors, blob, len(blob), offsets)


def _random_block(rng: np.random.Generator, n: int) -> bytes:
    return rng.bytes(n)


def write_checkpoint(
    path: Path,
    ckpt: Checkpoint,
    *,
    seed: int,
    base: Path | None = None,
    changed: Iterable[str] = (),
) -> None:
    """Write ``ckpt`` to ``path``: random tensors, or ``base``'s bytes except ``changed`` ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    changed_set = set(changed)
    rng = np.random.default_rng(seed)
    with open(path, "wb") as out, open(base, "rb") if base else open(os.devnull, "rb") as src:
        out.write(ckpt.header)
        for t in ckpt.tensors:
            left = t.nbytes
            if base is not None and t.name not in changed_set:
                src.seek(ckpt.data_start + ckpt.offsets[t.name])
                while left:
                    block = src.read(min(left, 8 * MiB))
                    out.write(block)
                    left -= len(block)
            else:
                while left:
                    n = min(left, 8 * MiB)
                    out.write(_random_block(rng, n))
                    left -= n


def choose_changed(ckpt: Checkpoint, fraction: float, *, seed: int) -> tuple[list[str], float]:
    """Tensors to change so that about ``fraction`` of the tensor bytes change; and the share."""
    total = sum(t.nbytes for t in ckpt.tensors)
    if fraction >= 1.0:
        return [t.name for t in ckpt.tensors], 1.0
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ckpt.tensors))
    chosen: list[str] = []
    got = 0
    target = fraction * total
    for i in order:  # greedy: take a tensor when it brings the changed share closer to target
        t = ckpt.tensors[int(i)]
        if abs(got + t.nbytes - target) < abs(got - target):
            chosen.append(t.name)
            got += t.nbytes
    return chosen, got / total


def write_smallfiles(
    root: Path, count: int, *, seed: int = 7, min_kib: int = 4, max_kib: int = 64
) -> int:
    """``count`` random files of 4-64 KiB in train/validation/test (80/10/10), 1000 per folder."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(min_kib * 1024, max_kib * 1024 + 1, size=count)
    total = 0
    n_train = int(count * 0.8)
    n_val = int(count * 0.1)
    for i, size in enumerate(sizes):
        if i < n_train:
            split, j = "train", i
        elif i < n_train + n_val:
            split, j = "validation", i - n_train
        else:
            split, j = "test", i - n_train - n_val
        folder = root / split / f"shard-{j // 1000:03d}"
        if j % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"sample-{j:06d}.bin").write_bytes(rng.bytes(int(size)))
        total += int(size)
    return total


def tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def hash_file(path: Path) -> str:
    h = blake3.blake3()
    with open(path, "rb") as fh:
        while block := fh.read(8 * MiB):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: Path) -> dict[str, tuple[int, str]]:
    """Relative path -> (size, blake3 hex) of every regular file under ``root``."""
    files = tree_files(root)
    with ThreadPoolExecutor(4) as ex:
        digests = list(ex.map(hash_file, files))
    pairs = zip(files, digests, strict=True)
    return {p.relative_to(root).as_posix(): (p.stat().st_size, d) for p, d in pairs}


def evict(root: Path) -> None:
    """Drop a tree's pages from the page cache, so every tool reads it cold (posix_fadvise)."""
    for p in [root] if root.is_file() else tree_files(root):
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            continue
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def touch_tree(root: Path) -> None:
    """Give every file a fresh mtime, as a training job that just wrote it would."""
    for p in tree_files(root):
        os.utime(p)
