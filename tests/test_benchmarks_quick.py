"""The benchmark suite's quick mode runs end to end against the real S3 server and pulls back
exactly what it pushed (every file of every transfer is hash-checked by the benchmark itself).

No timing is asserted: the benchmark's figures are for people, not for CI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.integration


def test_quick_benchmark_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "run.py"),
            "--quick",
            "--out",
            str(out),
            "--scratch",
            str(tmp_path / "scratch"),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    result = json.loads((out / "results.json").read_text())
    assert result["failures"] == []
    assert set(result["versions"]) == {"cpv", "boto3"}
    seen = {(r["tool"], r["workload"], r["op"]) for r in result["records"]}
    for tool in ("cpv", "boto3"):
        for workload, op in [
            ("big", "push"),
            ("big", "pull"),
            ("noop-big", "push"),
            ("finetune-10", "push"),
            ("finetune-10", "pull"),
            ("smallfiles", "push"),
            ("smallfiles", "pull"),
            ("noop-small", "push"),
        ]:
            assert (tool, workload, op) in seen, (tool, workload, op)
    for r in result["records"]:
        assert r["ok"], r
        assert r["wall_s"] > 0
        assert r["rss_bytes"] > 0
        assert r["cpu_s"] >= 0
        assert {"requests", "received_bytes", "sent_bytes"} <= set(r["server"])
        assert "io_pressure_start" in r and isinstance(r["io_stalled"], bool)
    by = {(r["tool"], r["workload"], r["op"]): r for r in result["records"]}
    size = result["data"]["checkpoint_bytes"]
    # The server's own byte counters see every pushed byte: the first push uploads it all ...
    assert by[("boto3", "big", "push")]["server"]["received_bytes"] >= size
    assert by[("cpv", "big", "push")]["server"]["received_bytes"] >= size
    # ... a pull downloads at least the data, and cpv's fine-tune push only part of it.
    assert by[("cpv", "big", "pull")]["server"]["sent_bytes"] >= size
    assert by[("cpv", "finetune-10", "push")]["server"]["received_bytes"] < size / 2
    assert by[("boto3", "finetune-10", "push")]["server"]["received_bytes"] >= size
    assert by[("cpv", "noop-big", "push")]["server"]["received_bytes"] < 64 * 1024
    summary_keys = {
        "tool",
        "workload",
        "op",
        "n",
        "wall_s",
        "wall_min",
        "wall_max",
        "mb_s",
        "uploaded_bytes",
        "requests",
        "objects_total",
        "rss_max",
        "cpu_s",
    }
    assert all(summary_keys <= set(row) for row in result["summary"])
    assert {t["target"] for t in result["targets"]}
    assert (out / "results.md").read_text().startswith("# cpv benchmark")


def test_io_pressure_is_read_and_a_stalled_step_is_flagged(tmp_path: Path) -> None:
    """A step that starts while the shared disk stalls is marked in the report, so its time is
    never read as the tool's regression."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import report
        import run
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    psi = tmp_path / "io"
    psi.write_text("some avg10=63.50 avg60=20.00 avg300=5.00 total=1\n"
                   "full avg10=40.00 avg60=10.00 avg300=2.00 total=1\n")
    assert run.io_pressure(psi) == 63.5
    assert run.io_pressure(tmp_path / "missing") is None

    def record(rep: int, pressure: float) -> dict[str, object]:
        return {"tool": "cpv", "workload": "smallfiles", "op": "push", "rep": rep, "ok": True,
                "wall_s": 1.0 + rep, "mb_s": 1.0, "dataset_bytes": 10, "files": 1,
                "rss_bytes": 1, "cpu_s": 1.0, "objects_total": 1, "objects_new": 1,
                "server": {"received_bytes": 1, "sent_bytes": 0, "requests": 1, "cpu_s": 0.1},
                "io_pressure_start": pressure, "io_stalled": pressure > run.IO_STALL_PCT}

    summary = run.summarize([record(0, 3.0), record(1, 72.0), record(2, 10.0)])
    assert summary[0]["io_stalled_reps"] == 1 and summary[0]["io_pressure_max"] == 72.0
    text = report.markdown({"summary": summary, "targets": []}, brief=True)
    assert "I/O stall**: 1 of 3 started at 72 % I/O pressure" in text
