"""The seed Python API over the workspace service: where it finds the workspace, what it
refuses before touching anything, and that version names mean what they mean on the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cpv import CombinedCheckpointsManage, DataCheckpointsManage, ModelsCheckpointsManage
from cpv.api import CPVConfig
from cpv.errors import DirtyWorkspaceError, LocalIOError, VersioningError
from tests.api.test_facade import write_data, write_model


def _init(ws: Path, config: CPVConfig) -> ModelsCheckpointsManage:
    mcm = ModelsCheckpointsManage("AI-Convo", ws.name, workspace=ws, config=config)
    mcm.import_model_init()
    return mcm


def test_the_workspace_is_found_from_a_subfolder_and_by_its_model_name(
    tmp_path: Path, local_config: CPVConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "whisper"
    mcm = _init(ws, local_config)
    write_model(ws, 1, size=64 * 1024)
    mcm.upload_model_checkpoint()
    mcm.tag_model_checkpoint()
    monkeypatch.chdir(ws / "model")
    with ModelsCheckpointsManage(config=local_config) as from_sub:
        assert from_sub.workspace_dir == ws
        assert [v.tag for v in from_sub.read_checkpoint_tag()] == ["v0.1"]
    monkeypatch.chdir(ws)
    # Standing in the workspace, the team/model constructor means this one, not ./whisper/.
    with ModelsCheckpointsManage("AI-Convo", "whisper", config=local_config) as by_name:
        assert by_name.workspace_dir == ws
        assert by_name.get_model_metadata("v0.1")["files"] == 2
    monkeypatch.chdir(tmp_path)
    with ModelsCheckpointsManage("AI-Convo", "whisper", config=local_config) as beside:
        assert beside.workspace_dir == ws


def test_init_with_a_missing_data_folder_touches_nothing(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    ws = tmp_path / "m"
    mcm = ModelsCheckpointsManage(workspace=ws, config=local_config)
    with pytest.raises(LocalIOError, match="does not exist"):
        mcm.import_model_init(data_path=tmp_path / "no-such-data")
    assert not ws.exists()


def test_data_import_copies_refuses_overwrites_and_the_workspace_itself(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    source = tmp_path / "corpus"
    (source / "train").mkdir(parents=True)
    (source / "train" / "a.txt").write_text("original\n")
    ws = tmp_path / "m"
    mcm = ModelsCheckpointsManage(workspace=ws, config=local_config)
    mcm.import_model_init(data_path=source)
    imported = ws / "data" / "train" / "a.txt"
    # A copy, not a hard link: editing data/ must not change the user's source.
    imported.write_text("edited in the workspace\n")
    assert (source / "train" / "a.txt").read_text() == "original\n"
    # Re-running ("safe to re-run") refuses to overwrite the edit.
    with pytest.raises(DirtyWorkspaceError, match=r"data/train/a\.txt"):
        mcm.import_model_init(data_path=source)
    assert imported.read_text() == "edited in the workspace\n"
    with pytest.raises(LocalIOError, match="workspace"):
        mcm.import_model_init(data_path=ws)


def test_an_empty_folder_records_no_version(tmp_path: Path, local_config: CPVConfig) -> None:
    ws = tmp_path / "m"
    mcm = _init(ws, local_config)
    with pytest.raises(LocalIOError, match="holds no files"):
        mcm.upload_model_checkpoint()
    assert mcm.read_checkpoint_tag() == []
    with pytest.raises(VersioningError, match="no model version"):
        mcm.tag_model_checkpoint()


def test_a_tag_message_never_replaces_the_push_message(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    ws = tmp_path / "m"
    mcm = _init(ws, local_config)
    write_model(ws, 1, size=64 * 1024)
    mcm.upload_model_checkpoint(message="epoch 3, lr 1e-4")
    mcm.tag_model_checkpoint("v0.1", "release candidate")
    (info,) = mcm.read_checkpoint_tag()
    assert info.message == "epoch 3, lr 1e-4" and info.tag_message == "release candidate"


def test_version_names_mean_the_same_in_the_data_api_as_in_the_cli(
    tmp_path: Path, local_config: CPVConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = tmp_path / "m"
    _init(ws, local_config).close()
    write_model(ws, 1, size=64 * 1024)
    write_data(ws, n=3)
    with CombinedCheckpointsManage(workspace=ws, config=local_config) as both:
        both.models.upload_model_checkpoint()
        both.data.upload_data_checkpoint(metrics={"rows": 9})
        assert both.tag_model_and_data() == ("v0.1", "data-v0.1")
        write_data(ws, n=5)
        both.data.upload_data_checkpoint(metrics={"rows": 15})
        write_model(ws, 2, size=64 * 1024)
        both.models.upload_model_checkpoint()
        assert both.tag_model_and_data() == ("v0.2", "data-v0.2")
    dcm = DataCheckpointsManage(workspace=ws, config=local_config)
    # "v0.1" is data-v0.1 for the data, as `cpv pull v0.1` reads it.
    assert dcm.get_data_metadata("v0.1")["tag"] == "data-v0.1"
    deltas = {d.name: d.delta for d in dcm.compare_data_checkpoints("v0.1", "v0.2")}
    assert deltas == {"rows": 6}
    # dest is relative to the current folder, as `cpv pull ... --to DIR` is.
    monkeypatch.chdir(tmp_path)
    art = dcm.download_data_checkpoint("v0.1", dest="restored", splits=["train"])
    assert Path(art.data_path) == tmp_path / "restored"
    assert sorted(os.listdir(tmp_path / "restored" / "train")) == ["0.jsonl", "1.jsonl", "2.jsonl"]
    dcm.close()
