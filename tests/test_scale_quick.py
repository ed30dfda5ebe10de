"""``benchmarks/scale.py`` runs end to end at a small file count and reports the Git growth of a
version for both manifest formats (the figures themselves are for docs/benchmarks.md)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_scale_benchmark_reports_git_growth_per_format(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale.py"), "--files", "300",
         "--figures", "git_growth", "--out", str(out), "--scratch", str(tmp_path / "scratch")],
        capture_output=True, text=True, timeout=240, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {r["format"]: r for r in json.loads((out / "scale.json").read_text())}
    pointer, listed = rows["v2 (pointer manifest)"], rows["v1 (files listed)"]
    assert pointer["files"] == listed["files"] == 300
    assert 0 < pointer["new_git_object_bytes"] < 4096
    assert pointer["added/changed/removed"] == "0/3/0"  # 1 % of 300
    assert listed["manifest_bytes"] > 300 * 100 > pointer["manifest_bytes"]
    assert "| git_growth" not in proc.stdout and "### git_growth" in proc.stdout
