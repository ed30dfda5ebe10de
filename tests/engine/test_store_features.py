"""Store format features: new stores cut at tensor boundaries, old stores keep their rule, and a
cpv that does not know a store's write feature reads it but refuses to push ("upgrade cpv")."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from cpv.engine import ChunkerParams, Repository, pull, push, verify
from cpv.engine.format import CONFIG_KEY, read_store_config
from cpv.errors import FormatError
from cpv.store import KiB

from .conftest import LIMITS, SMALL_CHUNKER, age, make_repo

TENSOR_CHUNKER = ChunkerParams(
    min_size=16 * KiB, avg_size=48 * KiB, max_size=256 * KiB, tensor_boundaries=True
)

# A config as cpv wrote it before features existed (format version 1): it must keep reading
# as the plain FastCDC rule, whatever this cpv gives new stores.
OLD_CONFIG = b"""{
  "chunker": {"algorithm": "fastcdc2020", "avg_size": 786432, "max_size": 4194304,
              "min_size": 262144, "seed": 0},
  "compression": "none",
  "created_at": "2026-11-23T17:00:55+00:00",
  "format": "cpv-store",
  "hash": "blake3",
  "pack_size": 67108864,
  "store_id": "1b9d125a29e65de7d581a74de2e464f2",
  "version": 1
}
"""


def xof(label: str, n: int) -> bytes:
    return blake3(label.encode()).digest(length=n)


def lora_model(tuned: str = "") -> bytes:
    """A safetensors state dict: base weights, LoRA adapters between them; ``tuned`` reseeds
    the adapters only (what a LoRA fine-tune changes)."""
    header: dict[str, Any] = {}
    body = []
    offset = 0
    for layer in range(6):
        for name, size in (("lora_A", 8 * KiB), ("lora_B", 8 * KiB), ("weight", 200 * KiB)):
            seed = f"{tuned}{layer}{name}" if name != "weight" else f"{layer}{name}"
            data = xof(seed, size)
            header[f"l{layer}.{name}"] = {"dtype": "F32", "shape": [size // 4],
                                          "data_offsets": [offset, offset + size]}
            body.append(data)
            offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + b"".join(body)


def edit_config(store: Any, change: dict[str, Any]) -> None:
    doc = json.loads(store.get(CONFIG_KEY))
    doc.update(change)
    store.put(CONFIG_KEY, json.dumps(doc).encode())


def test_new_store_records_the_feature_and_old_configs_keep_the_plain_rule(
    memory_store: Any, tmp_path: Path
) -> None:
    Repository.init(memory_store, chunker=TENSOR_CHUNKER, cache_dir=tmp_path / "c")
    doc = json.loads(memory_store.get(CONFIG_KEY))
    assert doc["version"] == 2
    assert doc["features"] == {"read": [], "write": ["tensor-boundaries"]}
    assert "tensor_boundaries" not in doc["chunker"]
    assert read_store_config(memory_store).chunker == TENSOR_CHUNKER

    memory_store.put(CONFIG_KEY, OLD_CONFIG)
    config = read_store_config(memory_store)
    assert config.version == 1 and not config.chunker.tensor_boundaries
    assert config.unknown_write_features == ()
    # A store made for format-1 clients has no features; a plain format-2 store lists none.
    old = make_repo(type(memory_store)(), tmp_path / "p", version=1)
    assert json.loads(old.store.get(CONFIG_KEY))["version"] == 1
    assert "features" not in json.loads(old.store.get(CONFIG_KEY))
    plain = make_repo(type(memory_store)(), tmp_path / "q")
    assert json.loads(plain.store.get(CONFIG_KEY))["features"] == {"read": [], "write": []}


def test_unknown_write_feature_reads_but_refuses_push(memory_store: Any, tmp_path: Path) -> None:
    repo = Repository.init(memory_store, chunker=TENSOR_CHUNKER, cache_dir=tmp_path / "c")
    src = tmp_path / "src"
    src.mkdir()
    (src / "model.safetensors").write_bytes(lora_model())
    age(src)
    pushed = push(repo, src, limits=LIMITS)
    edit_config(memory_store, {"features": {"read": [], "write": ["tensor-boundaries",
                                                                  "from-the-future"]}})
    newer = Repository.open(memory_store, cache_dir=tmp_path / "c2")
    assert newer.config.unknown_write_features == ("from-the-future",)
    out = tmp_path / "out"
    pull(newer, pushed.snapshot_id, out, limits=LIMITS)
    assert (out / "model.safetensors").read_bytes() == lora_model()
    assert verify(newer, deep=True, limits=LIMITS).ok
    (src / "model.safetensors").write_bytes(lora_model(tuned="t"))
    before = [o.key for o in memory_store.list("")]
    with pytest.raises(FormatError, match="from-the-future") as caught:
        push(newer, src, limits=LIMITS)
    assert "upgrade cpv" in (caught.value.hint or "")
    assert [o.key for o in memory_store.list("")] == before


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"features": {"read": ["from-the-future"], "write": []}}, "from-the-future"),
        ({"features": {"write": []}}, "features.read"),
        ({"features": ["tensor-boundaries"]}, "features.read"),
        ({"version": 3}, "version 3"),
        ({"version": True}, "version True"),
    ],
)
def test_unknown_read_feature_or_bad_feature_list_is_refused(
    memory_store: Any, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    Repository.init(memory_store, chunker=TENSOR_CHUNKER, cache_dir=tmp_path / "c")
    edit_config(memory_store, change)
    with pytest.raises(FormatError, match=message):
        Repository.open(memory_store, cache_dir=tmp_path / "c")


@pytest.mark.integration
def test_lora_fine_tune_uploads_about_what_changed_on_s3(make_s3_store: Any,
                                                        tmp_path: Path) -> None:
    """The finding: adapters saved in the state dict cost whole chunks; now their own bytes."""
    src = tmp_path / "src"
    src.mkdir()
    results = {}
    for name, params in (("plain", SMALL_CHUNKER), ("tensors", TENSOR_CHUNKER)):
        store = make_s3_store()
        repo = Repository.init(store, chunker=params, cache_dir=tmp_path / name)
        (src / "model.safetensors").write_bytes(lora_model())
        age(src)
        push(repo, src, limits=LIMITS)
        (src / "model.safetensors").write_bytes(lora_model(tuned="t"))
        age(src)
        tuned = push(repo, src, limits=LIMITS)
        results[name] = tuned.new_bytes
        out = tmp_path / f"out-{name}"
        pull(repo, tuned.snapshot_id, out, limits=LIMITS)
        assert (out / "model.safetensors").read_bytes() == lora_model(tuned="t")
    changed = 6 * 2 * 8 * KiB
    assert results["tensors"] <= 1.5 * changed
    assert results["plain"] > 3 * changed
