"""ls, diff and status on a few hundred files, read the streaming way: a diff of two tree
snapshots reads only the nodes that differ, ``ls PATH`` only that sub-tree, and a format-1
store gives the same answers. Real workspace, real Git, the embedded local store; node reads
are counted on the repository's own reader (the real reads still happen)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest

from cpv.api import CPVConfig
from cpv.engine import Repository
from cpv.service import WorkspaceService
from cpv.service.create import init_workspace
from cpv.service.filelist import CACHE_DIR

FOLDERS, PER_FOLDER = 8, 20


def _init(root: Path, store: Path, config: CPVConfig, *, store_format: int = 2) -> CPVConfig:
    """A workspace on the local store ``store``; returns the config that opens it."""
    config = config.replace(store={"url": str(store)})
    init_workspace(root, config=config, store_url=str(store))
    if store_format != 2:  # what a store made by a format-1 cpv looks like
        doc = json.loads((store / "config").read_text())
        doc["version"] = store_format
        (store / "config").write_text(json.dumps(doc))
    for d in range(FOLDERS):
        folder = root / "model" / f"d{d:02d}"
        folder.mkdir(parents=True)
        for i in range(PER_FOLDER):
            (folder / f"f{i:03d}.bin").write_bytes(f"{d}:{i}:".encode() * (i + 1))
    return config


def _open(root: Path, config: CPVConfig) -> WorkspaceService:
    return WorkspaceService.open(root, config=config, search_parents=False)


def _push(root: Path, config: CPVConfig, message: str) -> None:
    with _open(root, config) as service:
        service.push(["model"], message=message)


def _count_node_reads(repo: Repository) -> list[bytes]:
    """Every tree node id the repository reads from now on (the read itself is the real one)."""
    seen: list[bytes] = []
    real = repo.read_chunks

    def counted(ids: Sequence[bytes], *, what: str) -> dict[bytes, bytes]:
        seen.extend(ids)
        return real(ids, what=what)

    repo.read_chunks = counted  # type: ignore[method-assign]
    return seen


@pytest.fixture
def config(tmp_path: Path, local_config: CPVConfig) -> CPVConfig:
    return local_config.replace(store={"url": str(tmp_path / "store")})


@pytest.fixture
def two_versions(tmp_path: Path, config: CPVConfig) -> Path:
    """Version 1, then version 2 with one file of ``d03`` changed; no list cached."""
    root = tmp_path / "ws"
    _init(root, tmp_path / "store", config)
    _push(root, config, "one")
    (root / "model" / "d03" / "f007.bin").write_bytes(b"changed")
    _push(root, config, "two")
    shutil.rmtree(root / CACHE_DIR)
    return root


def test_diff_of_two_trees_reads_only_the_changed_folder(two_versions: Path,
                                                        config: CPVConfig) -> None:
    with _open(two_versions, config) as service:
        reads = _count_node_reads(service.ws.repository())
        diff = service.diff("HEAD~1", "HEAD")
    assert [(f.path, f.state) for f in diff.files] == [("d03/f007.bin", "changed")]
    assert diff.unchanged == FOLDERS * PER_FOLDER - 1
    # The top folder and d03, on each side; the nine other folders share their node ids.
    assert len(set(reads)) == 4
    assert not (two_versions / CACHE_DIR).exists(), "a tree diff caches no whole list"


def test_ls_path_walks_only_that_subtree_and_ls_streams_the_whole_version(
    two_versions: Path, config: CPVConfig,
) -> None:
    with _open(two_versions, config) as service:
        reads = _count_node_reads(service.ws.repository())
        sub = list(service.iter_ls(None, ["model/d05"]))
        assert len(set(reads)) == 2  # the top folder, then d05
        assert [p for p, _ in sub] == [f"model/d05/f{i:03d}.bin" for i in range(PER_FOLDER)]
        assert sub[4][1] == len(b"5:4:") * 5
        one = list(service.iter_ls(None, ["model/d03/f007.bin"]))
        assert one == [("model/d03/f007.bin", 7)]
        every = list(service.iter_ls())
    assert len(every) == FOLDERS * PER_FOLDER and every == sorted(every)
    assert sum(n for _, n in every) == sum(
        f.stat().st_size for f in (two_versions / "model").rglob("*.bin"))
    # The whole list was cached on the way: the next command reads no node.
    with _open(two_versions, config) as service:
        reads = _count_node_reads(service.ws.repository())
        assert list(service.iter_ls()) == every
        assert list(service.iter_ls(None, ["model/d05"])) == sub
    assert reads == []


def test_status_after_edits_names_each_change(two_versions: Path,
                                              config: CPVConfig) -> None:
    model = two_versions / "model"
    (model / "d01" / "f000.bin").write_bytes(b"edited")
    (model / "d07" / "new.bin").write_bytes(b"new")
    (model / "d05" / "f010.bin").unlink()
    with _open(two_versions, config) as service:
        report = service.status()
    (kind,) = [k for k in report.kinds if k.kind == "model"]
    assert kind.changed == ("model/d01/f000.bin", "model/d05/f010.bin", "model/d07/new.bin")


def test_format_1_store_lists_and_diffs_the_same(tmp_path: Path,
                                                 config: CPVConfig) -> None:
    root = tmp_path / "ws"
    config = _init(root, tmp_path / "store", config, store_format=1)
    _push(root, config, "one")
    (root / "model" / "d03" / "f007.bin").write_bytes(b"changed")
    (root / "model" / "d00" / "f000.bin").unlink()
    _push(root, config, "two")
    assert {p.read_bytes()[:8] for p in (tmp_path / "store" / "snapshots").rglob("*")
            if p.is_file()} == {b"CPVSNAP1"}
    shutil.rmtree(root / CACHE_DIR)
    with _open(root, config) as service:
        diff = service.diff("HEAD~1", "HEAD")
        sub = list(service.iter_ls(None, ["model/d03"]))
    assert [(f.path, f.state) for f in diff.files] == [("d00/f000.bin", "removed"),
                                                       ("d03/f007.bin", "changed")]
    assert diff.unchanged == FOLDERS * PER_FOLDER - 2
    assert ("model/d03/f007.bin", 7) in sub and len(sub) == PER_FOLDER
