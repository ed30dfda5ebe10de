"""Fixtures for lazy reads: a pushed tree in the real S3 test server, opened through the engine."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from cpv.engine import Repository, push
from cpv.store import MiB
from cpv.store.s3 import S3Store
from tests.cli.conftest import base_env, run_cpv
from tests.engine.conftest import LIMITS, SMALL_CHUNKER, make_repo, make_tree, rand_bytes
from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server


@dataclass
class Pushed:
    """A tree pushed to S3: where it came from, the store, and the snapshot id."""

    src: Path
    store: S3Store
    snapshot_id: str
    cache: Path

    def repo(self, cache: Path | Literal["pushed"] | None = "pushed") -> Repository:
        """A fresh Repository on the same store (its own index and counters).

        ``cache``: the pusher's cache dir by default, another folder, or None for no cache.
        """
        return Repository.open(self.store, cache_dir=self.cache if cache == "pushed" else cache)


@pytest.fixture
def pushed(s3_store: S3Store, tmp_path: Path) -> Pushed:
    """``make_tree`` plus an 8 MiB file of many small chunks, pushed with the small chunker."""
    src = make_tree(tmp_path / "src")
    (src / "big.bin").write_bytes(rand_bytes(8 * MiB, 99))
    cache = tmp_path / "cache"
    repo = make_repo(s3_store, cache)
    assert repo.config.chunker == SMALL_CHUNKER
    result = push(repo, src, limits=LIMITS)
    repo.close()
    return Pushed(src, s3_store, result.snapshot_id, cache)


@dataclass
class Workspace:
    """A workspace built by the real `cpv` program and pushed to S3 as v0.1 / data-v0.1."""

    root: Path
    tensors: dict[str, Any]
    frame: Any
    env: dict[str, str]


TENSORS = 12
TENSOR_SHAPE = (512, 1024)  # float32: 2 MiB each


@pytest.fixture(scope="module")
def built_workspace(tmp_path_factory: pytest.TempPathFactory, s3_server: S3Server) -> Workspace:
    """``model/`` (a 24 MiB safetensors file and a config) and ``data/`` (CSV splits).

    Built once per module by the real `cpv` program (init, push --tag): the tests only read it.
    """
    import numpy as np
    import pandas as pd
    from safetensors.numpy import save_file

    tmp = tmp_path_factory.mktemp("lazy-ws")
    cli_env = {**base_env(tmp / "home"), **_s3_vars(s3_server)}
    ws = tmp / "ws"
    store_url = f"s3://{s3_server.bucket}/lazy-{uuid.uuid4().hex[:12]}"
    result = run_cpv(["init", str(ws), "--store", store_url], cwd=tmp, env=cli_env)
    assert result.code == 0, str(result)

    rng = np.random.default_rng(3)
    tensors: dict[str, Any] = {
        f"layer{i}.weight": rng.standard_normal(TENSOR_SHAPE, dtype=np.float32)
        for i in range(TENSORS)
    }
    tensors["head.bias"] = np.arange(10, dtype=np.int64)
    (ws / "model").mkdir(exist_ok=True)
    save_file(tensors, str(ws / "model" / "model.safetensors"), metadata={"step": "100"})
    (ws / "model" / "config.json").write_text('{"hidden": 1024}')
    frame = pd.DataFrame({"text": [f"sample {i}" for i in range(500)],
                          "label": [i % 3 for i in range(500)]})
    for split, rows in (("train", frame), ("validation", frame.head(20))):
        (ws / "data" / split).mkdir(parents=True, exist_ok=True)
        rows.to_csv(ws / "data" / split / "part-0.csv", index=False)
    result = run_cpv(["push", "-m", "first", "--tag"], cwd=ws, env=cli_env)
    assert result.code == 0, str(result)
    return Workspace(ws, tensors, frame, cli_env)


@pytest.fixture
def workspace(built_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """The module's workspace, with this process in the environment the `cpv` runs had.

    In-process reads then resolve the workspace as the CLI does (S3 endpoint and keys from
    ``CPV_ENDPOINT_URL``/``AWS_*``, an empty HOME whose cache is the default cache).
    """
    for key in [k for k in os.environ if k.startswith("CPV_")]:
        monkeypatch.delenv(key)
    for key, value in built_workspace.env.items():
        monkeypatch.setenv(key, value)
    return built_workspace


def _s3_vars(server: S3Server) -> dict[str, str]:
    return {
        "CPV_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }
