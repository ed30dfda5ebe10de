"""Ctrl-C on the real `cpv` program: a push of a large checkpoint stops within 2 seconds with
exit 130 and no traceback, the workspace and store stay consistent, and the next push resumes
and records the version."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, cpv_command

GiB = 1024**3


@pytest.mark.slow
def test_ctrl_c_stops_a_push_within_2_s_and_the_next_push_resumes(
    cpv: Runner, tmp_path: Path, env: dict[str, str]
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    with open(ws / "model" / "weights.bin", "wb") as fh:
        for _ in range(GiB // (16 * 1024 * 1024)):
            fh.write(os.urandom(16 * 1024 * 1024))
    proc = subprocess.Popen([*cpv_command(), "push", "-m", "big"], cwd=ws, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL)
    store = ws / ".cpv" / "store"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any((store / "packs").rglob("*")):
        time.sleep(0.05)  # wait until bytes are moving
    assert proc.poll() is None, "the push ended before it could be interrupted"
    sent = time.monotonic()
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    took = time.monotonic() - sent
    assert proc.returncode == 130, err
    assert took < 2.0, f"Ctrl-C took {took:.2f} s"
    assert b"Traceback" not in err and b"interrupted" in err
    assert cpv("versions", "--json", cwd=ws).json() == []  # nothing half-published
    resumed = cpv("push", "-m", "big", "--json", cwd=ws).json()["results"][0]
    assert resumed["changed"] is True and resumed["files"] == 1
    assert cpv("verify", "--deep", "--json", cwd=ws).json()["ok"] is True
