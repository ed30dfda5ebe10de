"""The real-training benchmark runs end to end (tiny model, one repetition) against the real S3
server, and its byte counts say what the tensor-boundary rule is for: a LoRA fine-tune costs
the old rule many times what changed and the new rule about what changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(900)
def test_finetune_real_runs_and_reports(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "finetune_real.py"), "--reps", "1",
         "--layers", "1", "--dim", "128", "--steps", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    doc = json.loads((out / "finetune_real.json").read_text())
    for fmt in ("safetensors", "pt"):
        runs = {r["rule"]: r for r in doc["runs"] if r["format"] == fmt}
        lora = doc["changed"]["lora-next"]
        assert runs["old"]["lora-next"]["new"] > 10 * lora
        assert runs["new"]["lora-next"]["new"] < 3 * lora
        assert runs["new"]["full"]["new"] <= runs["old"]["full"]["new"] * 1.01
    assert "| safetensors | lora |" in (out / "finetune_real.md").read_text()
