"""A glob pull of a sparse 1% of a data set's small files reads what it asked for, not the
packs around it: through the real `cpv` program, the real S3 server, a fresh clone with an
empty cache. (Ranged GETs used to read any gap under 1 MiB between two wanted chunks: every
hundredth 16 KiB file then cost most of the data set.)"""

from __future__ import annotations

import random
from pathlib import Path

from tests.cli.conftest import Runner, git

KiB = 1024


def test_a_sparse_glob_pull_downloads_little_more_than_it_selects(
    cpv: Runner, tmp_path: Path, env: dict[str, str], s3_env: dict[str, str], s3_url: str,
) -> None:
    ws, other = tmp_path / "ws", tmp_path / "other"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    rng = random.Random(3)
    total = 0
    for i in range(600):
        size = rng.randint(8 * KiB, 24 * KiB)
        path = ws / "data" / "train" / f"shard-{i // 100}" / f"file-{i:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(size))
        total += size
    cpv("push", "data", "--tag", "-q", cwd=ws, env_extra=s3_env)
    git(tmp_path, "clone", "-q", str(ws), str(other), env=env)
    pulled = cpv("pull", "data-v0.1", "*00.bin", "--json", cwd=other,
                 env_extra={**s3_env, "XDG_CACHE_HOME": str(tmp_path / "empty-cache")}).json()
    selected = sorted(p.relative_to(other).as_posix() for p in (other / "data").rglob("*.bin"))
    assert selected == [f"data/train/shard-{i}/file-{i * 100:04d}.bin" for i in range(6)]
    wanted = sum((other / p).stat().st_size for p in selected)
    downloaded = pulled["results"][0]["downloaded_bytes"]
    # Each range drops at most as many bytes as it delivers: at most twice the selection.
    assert wanted <= downloaded <= 2 * wanted, (wanted, downloaded, total)
