"""Tensor-boundary chunking through the real ``cpv`` program: a new store cuts checkpoints at
their tensors, so a LoRA fine-tune saved in the full state dict uploads about the adapters'
bytes; a store whose cutting rule this cpv does not know is pulled from, never pushed to."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from blake3 import blake3

from tests.cli.conftest import Runner

KiB = 1024
LAYERS = 6
ADAPTER = 16 * KiB  # lora_A and lora_B of each layer: rank 8 x 512 float32


def lora_state_dict(path: Path, *, step: int) -> int:
    """Write base weights + LoRA adapters (safetensors); ``step`` changes the adapters only.
    Returns the bytes a step changes."""
    header: dict[str, object] = {}
    body = []
    offset = 0
    for layer in range(LAYERS):
        for name, size in (("lora_A", ADAPTER), ("lora_B", ADAPTER), ("weight", 1024 * KiB),
                           ("bias", 2 * KiB)):
            label = f"{layer}.{name}" + (f"@{step}" if name.startswith("lora") else "")
            header[f"layers.{layer}.q_proj.{name}"] = {
                "dtype": "F32", "shape": [size // 4], "data_offsets": [offset, offset + size]}
            body.append(blake3(label.encode()).digest(length=size))
            offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(body))
    return LAYERS * 2 * ADAPTER


@pytest.mark.integration
def test_lora_push_uploads_about_the_adapters(
    cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    weights = ws / "model" / "model.safetensors"
    lora_state_dict(weights, step=0)
    cpv("push", "--tag", "-q", cwd=ws, env_extra=s3_env)
    changed = lora_state_dict(weights, step=1)
    tuned = cpv("push", "--tag", "--json", cwd=ws, env_extra=s3_env).json()["results"][0]
    # Before tensor boundaries: each layer's adapters shared a ~1.1 MiB chunk with the base
    # weight, ~35x the changed bytes.
    assert tuned["new_bytes"] <= 1.5 * changed, tuned
    checks = {c["name"]: c for c in cpv("doctor", "--json", cwd=ws, env_extra=s3_env).json()}
    assert checks["store format"]["ok"]
    assert checks["store format"]["detail"] == "version 2, features: tensor-boundaries"
    clone = tmp_path / "out"
    cpv("pull", "v0.1", "model", "--to", str(clone), "-q", cwd=ws, env_extra=s3_env)
    lora_state_dict(tmp_path / "expect.safetensors", step=0)
    assert next(clone.rglob("model.safetensors")).read_bytes() == (
        tmp_path / "expect.safetensors").read_bytes()


def test_unknown_cutting_rule_pulls_but_refuses_push(cpv: Runner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    weights = ws / "model" / "model.safetensors"
    lora_state_dict(weights, step=0)
    cpv("push", "--tag", "-q", cwd=ws)
    config = ws / ".cpv" / "store" / "config"
    doc = json.loads(config.read_text())
    assert doc["version"] == 2 and doc["features"]["write"] == ["tensor-boundaries"]
    doc["features"]["write"].append("cut-by-moonlight")
    config.write_text(json.dumps(doc))
    lora_state_dict(weights, step=1)
    refused = cpv("push", "-q", cwd=ws, expect=1)
    assert "cut-by-moonlight" in refused.stderr and "upgrade cpv" in refused.stderr
    assert "v0.2" not in cpv("versions", "--json", cwd=ws).stdout
    cpv("pull", "v0.1", "model", "--force", "-q", cwd=ws)
    expect = tmp_path / "expect.safetensors"
    lora_state_dict(expect, step=0)
    assert weights.read_bytes() == expect.read_bytes()
    failed = cpv("doctor", "--json", cwd=ws, expect=1).json()
    checks = {c["name"]: c for c in failed["result"]}
    assert not checks["store format"]["ok"]
    assert "cut-by-moonlight" in checks["store format"]["detail"]
    assert "upgrade cpv" in checks["store format"]["fix"]
