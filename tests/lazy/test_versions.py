"""cpv.lazy and cpv:// on a workspace built by the real `cpv` program, bytes in the S3 server."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import fsspec  # type: ignore[import-untyped, unused-ignore]
import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load as st_load

import cpv
from cpv import lazy
from cpv.errors import (
    ConfigError,
    FormatError,
    InvalidTagError,
    NotAFileError,
    PathNotFoundError,
    TagNotFoundError,
)
from cpv.lazy import WorkspaceResolver

from .conftest import TENSOR_SHAPE, Workspace

pytestmark = pytest.mark.integration

WEIGHTS = "model/model.safetensors"


def test_open_reads_files_of_a_version_and_lists_them(workspace: Workspace) -> None:
    ws = workspace.root
    with cpv.open("v0.1", "model/config.json", workspace=ws) as fh:  # the public name
        assert json.loads(fh.read()) == {"hidden": 1024}
    with lazy.open("data-v0.1", "data/train/part-0.csv", workspace=ws) as fh:
        assert fh.read() == (ws / "data/train/part-0.csv").read_bytes()
    files = {f.path: f.size for f in lazy.list_files("v0.1", "model", workspace=ws)}
    assert files == {WEIGHTS: (ws / WEIGHTS).stat().st_size, "model/config.json": 16}
    data = lazy.list_files("data-v0.1", "", workspace=ws)
    assert [f.path for f in data] == ["data/train/part-0.csv", "data/validation/part-0.csv"]


def test_open_errors_name_what_is_wrong(workspace: Workspace) -> None:
    ws = workspace.root
    with pytest.raises(PathNotFoundError, match=r"not in v0\.1: model/nope\.bin") as err:
        lazy.open("v0.1", "model/nope.bin", workspace=ws)
    assert "model" in err.value.hint
    with pytest.raises(FileNotFoundError):
        lazy.open("v0.1", "elsewhere/x", workspace=ws)
    with pytest.raises(NotAFileError):
        lazy.open("v0.1", "model", workspace=ws)
    with pytest.raises(TagNotFoundError):
        lazy.open("v9.9", "model/config.json", workspace=ws)
    with pytest.raises(InvalidTagError):
        lazy.open("latest", "model/config.json", workspace=ws)


def test_load_tensors_reads_only_the_chosen_tensors(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace.root
    with WorkspaceResolver(ws, cache_dir=tmp_path / "empty-cache") as resolver:
        # v0.1 means what it means to `cpv pull`: the model and data-v0.1's data.
        mounts = {m.root: m for m in resolver("v0.1")}
        assert set(mounts) == {"model", "data"}
        mount = mounts["model"]
        store = mount.repo.store
        got = lazy.load_tensors("v0.1", WEIGHTS, ["layer7.weight", "head.bias"],
                                resolver=resolver)
        fetched = store.bytes_down
    np.testing.assert_array_equal(got["layer7.weight"], workspace.tensors["layer7.weight"])
    np.testing.assert_array_equal(got["head.bias"], workspace.tensors["head.bias"])
    assert got["layer7.weight"].shape == TENSOR_SHAPE
    size = (ws / WEIGHTS).stat().st_size
    tensor = 4 * TENSOR_SHAPE[0] * TENSOR_SHAPE[1]
    # The tensors plus at most a 4 MiB chunk on each side of each range, the snapshot and index.
    assert fetched < 2 * tensor + 4 * 4 * 1024 * 1024 < size
    assert fetched < size / 2

    with pytest.raises(PathNotFoundError, match="layer99"):
        lazy.load_tensors("v0.1", WEIGHTS, ["layer99.weight"], workspace=ws)
    with pytest.raises(ConfigError):
        lazy.load_tensors("v0.1", WEIGHTS, ["head.bias"], workspace=ws,
                          framework="tf")  # type: ignore[arg-type]
    with pytest.raises(FormatError, match="not a safetensors file"):
        lazy.load_tensors("v0.1", "model/config.json", ["x"], workspace=ws)


def test_load_tensors_as_torch_needs_torch(workspace: Workspace) -> None:
    try:
        import torch  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="needs torch"):
            lazy.load_tensors("v0.1", WEIGHTS, ["head.bias"], workspace=workspace.root,
                              framework="pt")
    else:
        got = lazy.load_tensors("v0.1", WEIGHTS, ["head.bias"], workspace=workspace.root,
                                framework="pt")
        assert got["head.bias"].tolist() == list(range(10))


def test_pandas_fsspec_and_safetensors_read_through_cpv_urls(workspace: Workspace) -> None:
    ws = str(workspace.root)
    frame = pd.read_csv("cpv://data-v0.1/data/train/part-0.csv",
                        storage_options={"workspace": ws})
    pd.testing.assert_frame_equal(frame, workspace.frame)

    fs = fsspec.filesystem("cpv", workspace=ws)
    assert {e["name"] for e in fs.ls("")} == {"v0.1", "data-v0.1"}
    assert fs.ls("data-v0.1/data", detail=False) == ["data-v0.1/data/train",
                                                     "data-v0.1/data/validation"]
    assert fs.ls("v0.1", detail=False) == ["v0.1/data", "v0.1/model"]
    assert fs.isdir("v0.1/model") and fs.isfile(f"v0.1/{WEIGHTS}")
    assert not fs.exists("v0.1/model/missing.bin")
    assert fs.size(f"v0.1/{WEIGHTS}") == (workspace.root / WEIGHTS).stat().st_size

    # safetensors' own parser on bytes read through cpv://
    tensors = st_load(fs.cat_file(f"cpv://v0.1/{WEIGHTS}"))
    assert set(tensors) == set(workspace.tensors)
    np.testing.assert_array_equal(tensors["layer3.weight"], workspace.tensors["layer3.weight"])

    raw = (workspace.root / WEIGHTS).read_bytes()
    assert fs.cat_file(f"v0.1/{WEIGHTS}", start=100, end=200) == raw[100:200]
    assert fs.cat_file(f"v0.1/{WEIGHTS}", start=-50) == raw[-50:]
    with fsspec.open(f"cpv://v0.1/{WEIGHTS}", "rb", workspace=ws) as fh:
        fh.seek(-8, io.SEEK_END)
        assert fh.read() == raw[-8:]
    with fsspec.open("cpv://v0.1/model/config.json", "rt", workspace=ws) as text:
        assert json.load(text) == {"hidden": 1024}
    with pytest.raises(NotImplementedError, match="read-only"):
        fs.open("v0.1/model/new.bin", "wb")
    assert fs.ukey(f"v0.1/{WEIGHTS}") == fs.info(f"v0.1/{WEIGHTS}")["blake3"]


def test_fsspec_takes_the_service_resolver(workspace: Workspace, tmp_path: Path) -> None:
    calls: list[str] = []
    with WorkspaceResolver(workspace.root, cache_dir=tmp_path / "c") as inner:

        def resolver(version: str) -> list[lazy.Mount]:
            calls.append(version)
            return list(inner(version))

        fs = fsspec.filesystem("cpv", resolver=resolver)
        assert json.loads(fs.cat_file("cpv://v0.1/model/config.json")) == {"hidden": 1024}
        assert fs.info("v0.1/model/config.json")["size"] == 16
    assert calls == ["v0.1"]  # resolved once per filesystem and version


def test_cpv_imports_without_fsspec() -> None:
    code = ("import sys; sys.modules['fsspec'] = None\n"
            "import cpv, cpv.lazy, cpv.engine.reader\n"
            "assert cpv.open is cpv.lazy.open\n"
            "print(cpv.open.__name__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "open"
