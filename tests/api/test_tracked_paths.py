"""The seed API versions any tracked path of a workspace, not only model/: the facades take
``path=`` and then upload, tag, list, download, revert and compare that path's own line
(``name@v0.1``), on the real S3 server with a real bare Git remote and a second clone."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv import ModelsCheckpointsManage
from cpv.api import CPVConfig, DataCheckpointsManage, clone_workspace
from cpv.engine.roots import ForgetPolicy
from cpv.errors import ConfigError, InvalidAliasError, TrackedPathError, UnknownVersionError

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


def test_a_single_file_is_a_tracked_path_with_a_named_line(
    tmp_path: Path, s3_config: CPVConfig, bare_remote: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One file of a run folder is versioned alone (its siblings are not its files), on a
    line its first upload names; every way of reading a version takes that line's tags, an
    alias of one, and a branch; gc keeps its tagged versions."""
    import fsspec  # type: ignore[import-untyped, unused-ignore]

    import cpv
    from cpv.service import WorkspaceService

    ws = tmp_path / "runs-ws"
    mcm = ModelsCheckpointsManage("AI-Convo", "runs", workspace=ws, config=s3_config)
    mcm.import_model_init(remote_url=bare_remote)
    exp = ws / "runs" / "exp1"
    exp.mkdir(parents=True)
    weights, sibling = exp / "model.safetensors", exp / "events.log"
    weights.write_bytes(b"1" * 200_000)
    sibling.write_text("step 1\n")
    one = ModelsCheckpointsManage(workspace=ws, config=s3_config,
                                  path="runs/exp1/model.safetensors", name="exp1")
    one.upload_model_checkpoint(metrics={"loss": 0.5})
    assert one.tag_model_checkpoint() == "exp1@v0.1"
    weights.write_bytes(b"2" * 150_000)
    sibling.write_text("step 2\n")  # not tracked: never part of a version
    one.upload_model_checkpoint(metrics={"loss": 0.25})
    assert one.tag_model_checkpoint() == "exp1@v0.2"
    # A second file of the same folder has a line (and a baseline) of its own.
    (exp / "optimizer.pt").write_bytes(b"o" * 1000)
    opt = ModelsCheckpointsManage(workspace=ws, config=s3_config, path="runs/exp1/optimizer.pt")
    opt.upload_model_checkpoint()
    assert opt.tag_model_checkpoint() == "runs-exp1-optimizer.pt@v0.1"
    svc = one.service
    svc.set_alias("best", "exp1@v0.2", message="lowest loss")
    refused = {
        ("runs/exp1/events.log", "model"): "is the line of the model/ folder",
        ("runs/exp1/events.log", "Run 1"): "a line name is",
        ("runs/exp1/events.log", "exp1"): "would share the version line 'exp1'",
        ("runs/exp1/model.safetensors", "weights"): "keeps the name its first push gave",
        ("model", "weights"): "keeps its seed line",
    }
    for (path, name), why in refused.items():
        with pytest.raises(TrackedPathError, match=why):
            svc.track_for(path, name=name)
    with pytest.raises(UnknownVersionError, match=r"exp1@v0\.9"):
        svc.picked_versions("model", ["exp1@v0.9"])
    with pytest.raises(InvalidAliasError, match=r"would shadow the version tag exp1@v0\.1"):
        svc.set_alias("exp1@v0.1", "exp1@v0.2")
    # cpv.open and cpv:// find the store as a user's program does: from the environment.
    monkeypatch.setenv("CPV_STORE_URL", svc.ws.store_url)
    monkeypatch.setenv("CPV_ENDPOINT_URL", str(s3_config.aws.endpoint_url))

    manifest = (ws / ".cpv/manifests/model/exp1.json").read_text()
    assert '"line": "exp1"' in manifest and '"is_dir": false' in manifest
    assert "/runs/exp1/model.safetensors\n" in (ws / ".gitignore").read_text()
    assert svc.ls("exp1@v0.1") == [("runs/exp1/model.safetensors", 200_000)]
    assert svc.ls("main", ["runs/exp1/model.safetensors"]) == [
        ("runs/exp1/model.safetensors", 150_000)]
    assert [c.path for c in svc.diff("exp1@v0.1", "best").files] == ["model.safetensors"]
    assert [v.tag for v in svc.picked_versions("model", ["v0.1", "best"],
                                               track=one.track)] == ["exp1@v0.1", "exp1@v0.2"]
    assert [dict(v.metrics) for v in svc.picked_versions("model", ["exp1@v0.1"])] == [
        {"loss": 0.5}]
    assert svc.lineage("best")["tag"] == "exp1@v0.2"
    status = {k.path: k for k in svc.status().kinds}
    assert not status["runs/exp1/model.safetensors"].changed  # the sibling is not its change
    assert not status["runs/exp1/model.safetensors"].is_dir

    # Lazy reads take the line's tags and aliases, in Python and as cpv:// URLs.
    with cpv.open("exp1@v0.1", "runs/exp1/model.safetensors", workspace=ws) as fh:
        assert fh.read() == b"1" * 200_000
    fs = fsspec.filesystem("cpv", workspace=str(ws))
    assert fs.cat_file("cpv://best/runs/exp1/model.safetensors") == b"2" * 150_000
    assert fs.ls("exp1@v0.1/runs/exp1", detail=False) == [
        "exp1@v0.1/runs/exp1/model.safetensors"]

    # Back to v0.1: that file only; its sibling and the other tracked file stay as they are.
    art = one.download_model_checkpoint("v0.1")
    assert Path(art.model_path) == weights and weights.read_bytes() == b"1" * 200_000
    assert sibling.read_text() == "step 2\n" and (exp / "optimizer.pt").exists()
    with WorkspaceService.open(ws, config=s3_config, interface="python") as fresh:
        # The branch means every tracked path recorded on it, as it does for model/.
        weights.unlink()
        assert sorted(p.ref for p in fresh.pull("main")) == ["main", "main"]
        assert weights.read_bytes() == b"2" * 150_000
        assert [k.changed for k in fresh.status().kinds if k.path.startswith("runs/")] == [
            (), ()]
        fresh.forget(ForgetPolicy(keep_last=0))
        fresh.gc(grace_period_s=0)
        fresh.pull("exp1@v0.1")
        assert weights.read_bytes() == b"1" * 200_000
    # An ignore rule that hides the tracked file: one line saying which rule line keeps it.
    (ws / ".cpvignore").write_text("*.safetensors\n")
    weights.write_bytes(b"3" * 1000)
    again = ModelsCheckpointsManage(workspace=ws, config=s3_config,
                                    path="runs/exp1/model.safetensors")
    with pytest.raises(ConfigError, match=r"hides the tracked file runs/exp1/model\.safetensors"):
        again.upload_model_checkpoint()
    again.close()
    one.close()
    opt.close()
    mcm.close()
