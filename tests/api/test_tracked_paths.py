"""The seed API versions any tracked path of a workspace, not only model/: the facades take
``path=`` and then upload, tag, list, download, revert and compare that path's own line
(``name@v0.1``), on the real S3 server with a real bare Git remote and a second clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv import ModelsCheckpointsManage
from cpv.api import CPVConfig, DataCheckpointsManage, clone_workspace
from cpv.errors import TrackedPathError

MiB = 1024 * 1024


def test_a_facade_versions_a_run_directory_beside_model(
    tmp_path: Path, s3_config: CPVConfig, bare_remote: str
) -> None:
    ws = tmp_path / "llama"
    mcm = ModelsCheckpointsManage("AI-Convo", "llama", workspace=ws, config=s3_config)
    mcm.import_model_init(remote_url=bare_remote)
    (ws / "model" / "w.bin").write_bytes(b"m" * 1000)
    mcm.upload_model_checkpoint()
    assert mcm.tag_model_checkpoint() == "v0.1"

    run = ModelsCheckpointsManage(workspace=ws, config=s3_config,
                                  path="runs/llama-ft/step-4000")
    step = ws / "runs" / "llama-ft" / "step-4000"
    step.mkdir(parents=True)
    (step / "adapter.bin").write_bytes(b"a" * MiB)
    run.upload_model_checkpoint(metrics={"loss": 0.9})
    assert run.tag_model_checkpoint() == "runs-llama-ft-step-4000@v0.1"
    (step / "adapter.bin").write_bytes(b"b" * MiB)
    run.upload_model_checkpoint(metrics={"loss": 0.7})
    assert run.tag_model_checkpoint() == "runs-llama-ft-step-4000@v0.2"
    assert [v.tag for v in run.read_checkpoint_tag()] == [
        "runs-llama-ft-step-4000@v0.1", "runs-llama-ft-step-4000@v0.2"]
    assert [v.tag for v in mcm.read_checkpoint_tag()] == ["v0.1"]  # model/'s line untouched
    assert [d.delta for d in run.compare_model_checkpoints("v0.1", "v0.2")] == [
        pytest.approx(-0.2)]
    meta = run.get_model_metadata("v0.1")
    assert meta["path"] == "runs/llama-ft/step-4000" and meta["metrics"] == {"loss": 0.9}
    run.revert_model_checkpoint("v0.1")  # this line's v0.1, not model/'s
    assert (step / "adapter.bin").read_bytes() == b"a" * MiB
    assert (ws / "model" / "w.bin").read_bytes() == b"m" * 1000
    with pytest.raises(TrackedPathError, match="cannot nest"):
        DataCheckpointsManage(workspace=ws, config=s3_config,
                              path="runs/llama-ft").upload_data_checkpoint()
    run.close()
    mcm.close()

    other = tmp_path / "other"
    clone_workspace(bare_remote, other, config=s3_config)
    with ModelsCheckpointsManage(workspace=other, config=s3_config,
                                 path="runs/llama-ft/step-4000") as again:
        art = again.download_model_checkpoint(tag="runs-llama-ft-step-4000@v0.2")
        assert Path(art.model_path) == other / "runs" / "llama-ft" / "step-4000"
        assert (Path(art.model_path) / "adapter.bin").read_bytes() == b"b" * MiB
        assert not (other / "model" / "w.bin").exists()
