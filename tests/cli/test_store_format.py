"""Store format 2 from the command line: a format-1 store keeps working, ``cpv migrate
--store-format`` moves it to tree snapshots, and both kinds of version stay restorable. Real
`cpv` program, real Git repository, the embedded local store."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.cli.conftest import Runner, write_checkpoint


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _snapshot_magics(store: Path) -> set[bytes]:
    return {p.read_bytes()[:8] for p in (store / "snapshots").rglob("*") if p.is_file()}


def test_format_1_store_is_upgraded_by_migrate(cpv: Runner, tmp_path: Path) -> None:
    ws, store = tmp_path / "ws", tmp_path / "store"
    cpv("init", str(ws), "--store", str(store), "-q")
    config = json.loads((store / "config").read_text())
    assert config["version"] == 2  # a new store writes tree snapshots
    # What a store created by a format-1 cpv looks like: the same config, version 1.
    config["version"] = 1
    (store / "config").write_text(json.dumps(config))
    write_checkpoint(ws / "model", 200_000, seed=1)
    cpv("push", "--tag", "-q", cwd=ws)
    old = sha(ws / "model" / "model.safetensors")
    assert _snapshot_magics(store) == {b"CPVSNAP1"}

    r = cpv("migrate", "--store-format", "--json", cwd=ws).json()
    assert r["store_format"] == {"before": 1, "after": 2}
    assert json.loads((store / "config").read_text())["version"] == 2
    again = cpv("migrate", "--store-format", "--json", cwd=ws).json()
    assert again["store_format"] == {"before": 2, "after": 2}  # safe to re-run

    write_checkpoint(ws / "model", 200_000, seed=2)
    cpv("push", "--tag", "-q", cwd=ws)
    new = sha(ws / "model" / "model.safetensors")
    assert _snapshot_magics(store) == {b"CPVSNAP1", b"CPVSNAP2"}
    cpv("pull", "v0.1", "model", "--force", "-q", cwd=ws)
    assert sha(ws / "model" / "model.safetensors") == old
    cpv("pull", "v0.2", "model", "--force", "-q", cwd=ws)
    assert sha(ws / "model" / "model.safetensors") == new
    assert cpv("verify", "--json", cwd=ws).code == 0


def test_a_store_from_a_newer_cpv_is_refused_in_one_line(cpv: Runner, tmp_path: Path) -> None:
    ws, store = tmp_path / "ws", tmp_path / "store"
    cpv("init", str(ws), "--store", str(store), "-q")
    config = json.loads((store / "config").read_text())
    config["version"] = 3
    (store / "config").write_text(json.dumps(config))
    write_checkpoint(ws / "model", 1000, seed=1)
    r = cpv("push", "-q", cwd=ws, expect=None)
    assert r.code != 0 and "Traceback" not in r.stderr
    assert "upgrade cpv" in r.stderr and "format version 3" in r.stderr
