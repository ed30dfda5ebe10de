"""The framework hooks with the real libraries on CPU and tiny models built from configs (no hub
download): a transformers Trainer, a Lightning Trainer, a plain PyTorch loop, and four
torch.distributed processes (gloo) committing one version from four shards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from cpv import ModelsCheckpointsManage
from cpv.api import CPVConfig
from cpv.service import WorkspaceService

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[2]


def _workspace(tmp_path: Path, config: CPVConfig) -> Path:
    ws = tmp_path / "ws"
    ModelsCheckpointsManage("AI-Convo", "tiny", workspace=ws, config=config).import_model_init()
    return ws


def _history(ws: Path, config: CPVConfig) -> list[tuple[str, dict[str, float], Any, set[str]]]:
    with WorkspaceService.open(ws, config=config) as service:
        out = []
        for info in service.versions("model"):
            m = info.manifests[0]
            out.append((info.tag, dict(m.metrics), m.extra.get("step"),
                        {f.path for f in service.files_of(m, info.tag)}))
        return out


def test_transformers_trainer_versions_each_checkpoint(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    transformers = pytest.importorskip("transformers")
    from cpv.integrations.transformers import CPVCallback

    ws = _workspace(tmp_path, local_config)
    config = transformers.BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1,
                                     num_attention_heads=2, intermediate_size=32,
                                     max_position_embeddings=16, num_labels=2)
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(config)
    rows = [{"input_ids": torch.randint(0, 64, (8,)), "attention_mask": torch.ones(8, dtype=torch.long),
             "labels": torch.tensor(i % 2)} for i in range(12)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=3, save_steps=1, logging_steps=1,
        per_device_train_batch_size=4, report_to=[], use_cpu=True, save_strategy="steps",
        disable_tqdm=True)
    callback = CPVCallback(ws, config=local_config, tag=True)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=rows,
                                   callbacks=[callback])
    trainer.train()
    callback.checkpointer.close()
    versions = _history(ws, local_config)
    assert [v[2] for v in versions] == [s.step for s in callback.checkpointer.saved]
    assert versions[-1][2] == 3  # the last checkpoint is always versioned
    _, metrics, _, files = versions[-1]
    assert "loss" in metrics
    assert "model.safetensors" in files
    assert "trainer_state.json" in files


@pytest.mark.filterwarnings("ignore:.*LeafSpec.*:FutureWarning")
@pytest.mark.filterwarnings("ignore:The '.*dataloader' does not have many workers")
@pytest.mark.filterwarnings("ignore:.*is smaller than the logging interval")
def test_lightning_trainer_versions_each_checkpoint_file(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    pl = pytest.importorskip("lightning.pytorch")
    from lightning.pytorch.callbacks import ModelCheckpoint

    from cpv.integrations.lightning import CPVCallback

    class Tiny(pl.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, _idx: int) -> Any:
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    ws = _workspace(tmp_path, local_config)
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=4)
    callback = CPVCallback(ws, config=local_config, supersede=False)
    trainer = pl.Trainer(
        max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path),
        callbacks=[ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=2,
                                   save_top_k=-1), callback])
    trainer.fit(Tiny(), loader)
    callback.checkpointer.close()
    saved = list(callback.checkpointer.saved)
    files = sorted(p.name for p in (tmp_path / "ckpt").iterdir())
    assert len(saved) == len(files) == 4  # 8 steps, a checkpoint every 2
    with WorkspaceService.open(ws, config=local_config) as service:
        current = service.ws.history.current_manifest("model", "model")
        assert current is not None
        assert [f.path for f in service.files_of(current)] == [files[-1]]
        assert "train_loss" in current.metrics
        assert current.extra["step"] == 8


def test_plain_pytorch_example_runs_and_versions(tmp_path: Path, local_config: CPVConfig) -> None:
    ws = _workspace(tmp_path, local_config)
    user = tmp_path / "user.json"
    local_config.save(user)
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_torch.py"), "--workspace", str(ws),
         "--steps", "30", "--every", "10", "--config", str(user)],
        capture_output=True, text=True, timeout=240, check=False,
        env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert "versioned steps [10, 20, 30]" in done.stdout
    log = subprocess.run(["git", "-C", str(ws), "log", "--format=%s"], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    assert log[:3] == ["step 30", "step 20", "step 10"]
    with WorkspaceService.open(ws, config=local_config) as service:
        current = service.ws.history.current_manifest("model", "model")
        assert current is not None
        assert current.extra["step"] == 30
        assert "loss" in current.metrics
        assert [f.path for f in service.files_of(current)] == ["checkpoint.pt"]


_RANK = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import torch, torch.distributed as dist
    from cpv.api import CPVConfig
    from cpv.integrations.torch_distributed import save_distributed

    rank, world, init, ws, cfg, out = int(sys.argv[1]), 4, sys.argv[2], sys.argv[3], sys.argv[4], Path(sys.argv[5])
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=world)
    torch.manual_seed(rank)
    shard = out / f"rank{rank}"
    shard.mkdir(parents=True)
    torch.save({"w": torch.randn(256, 256)}, shard / f"shard_{rank}.pt")
    (shard / "meta.json").write_text('{"world_size": 4}')
    config = CPVConfig.load(path=Path(cfg), env={})
    result = save_distributed(shard, "run1-step5", workspace=ws, config=config, step=5,
                              metrics={"loss": 0.25}, tag=True)
    print(json.dumps({"rank": rank, "tags": list(result.tags), "parts": list(result.parts)}))
    dist.destroy_process_group()
""")


@pytest.mark.integration
def test_four_gloo_ranks_commit_one_version(tmp_path: Path, s3_config: CPVConfig) -> None:
    ws = _workspace(tmp_path, s3_config)
    user = tmp_path / "user.json"
    s3_config.save(user)
    script = tmp_path / "rank.py"
    script.write_text(_RANK)
    init = f"file://{tmp_path / 'rendezvous'}"
    procs = [subprocess.Popen(
        [sys.executable, str(script), str(r), init, str(ws), str(user), str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)}) for r in range(4)]
    outs = [p.communicate(timeout=240) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    results = [json.loads(o.strip().splitlines()[-1]) for o, _ in outs]
    # Every rank gets the same outcome: one version holding all four parts.
    assert all(r["tags"] == ["v0.1"] for r in results)
    assert all(sorted(r["parts"]) == ["0", "1", "2", "3"] for r in results)
    versions = _history(ws, s3_config)
    assert len(versions) == 1
    tag, metrics, step, files = versions[0]
    assert (tag, metrics, step) == ("v0.1", {"loss": 0.25}, 5)
    assert files == {"meta.json", *[f"shard_{r}.pt" for r in range(4)]}
    with WorkspaceService.open(ws, config=s3_config) as service:
        service.pull("v0.1", paths=["model"], parts=["2"], dest=tmp_path / "r2")
    assert sorted(p.name for p in (tmp_path / "r2").iterdir()) == ["meta.json", "shard_2.pt"]
    reloaded = torch.load(tmp_path / "r2" / "shard_2.pt")
    assert reloaded["w"].shape == (256, 256)
