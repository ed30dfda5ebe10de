"""Versions saved from a training loop in the background (cpv/checkpointer.py): bounded, never
blocking the loop, failures surfaced, and a crash mid-push resumed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from cpv import Checkpointer, ModelsCheckpointsManage
from cpv.api import CPVConfig
from cpv.engine import Repository
from cpv.engine import verify as engine_verify
from cpv.errors import CheckpointError
from cpv.service import WorkspaceService
from cpv.store import MiB
from tests.engine.conftest import rand_bytes


def _workspace(tmp_path: Path, config: CPVConfig) -> Path:
    ws = tmp_path / "ws"
    ModelsCheckpointsManage("AI-Convo", "m", workspace=ws, config=config).import_model_init()
    return ws


def _checkpoint(root: Path, step: int, size: int = 256 * 1024) -> Path:
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(rand_bytes(size, step))
    (folder / "trainer_state.json").write_text(f'{{"step": {step}}}')
    return folder


def test_every_checkpoint_versioned_with_its_step_and_metrics(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    ws = _workspace(tmp_path, local_config)
    with Checkpointer(ws, config=local_config, supersede=False, tag=True) as cp:
        for step in (10, 20, 30):
            cp.save(_checkpoint(tmp_path / "out", step), step=step, metrics={"loss": 1 / step})
    assert [s.step for s in cp.saved] == [10, 20, 30]
    assert [s.tags for s in cp.saved] == [("v0.1",), ("v0.2",), ("v0.3",)]
    with WorkspaceService.open(ws, config=local_config) as service:
        manifest, _ = service.manifest_at("model", "v0.2")
        assert manifest.metrics == {"loss": 1 / 20}
        assert manifest.extra["step"] == 20
        assert manifest.message == "step 20"
        assert {f.path for f in service.files_of(manifest)} == {"model.bin", "trainer_state.json"}


def test_a_newer_checkpoint_supersedes_the_waiting_one_and_the_loop_never_waits(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    ws = _workspace(tmp_path, local_config)
    cp = Checkpointer(ws, config=local_config)
    folders = [_checkpoint(tmp_path / "out", s, size=4 * MiB) for s in range(1, 9)]
    started = time.monotonic()
    for step, folder in enumerate(folders, 1):
        cp.save(folder, step=step)
    loop_seconds = time.monotonic() - started
    cp.close()
    steps = [s.step or 0 for s in cp.saved]
    # The last is always versioned; those that were still waiting when a newer one came were
    # replaced, not queued.
    assert steps[-1] == 8
    assert steps == sorted(steps)
    assert len(steps) + cp.superseded == 8
    assert cp.superseded >= 1
    assert loop_seconds < 1.0, "save() must not wait for a push"


def test_an_unreachable_store_costs_the_loop_nothing_and_is_reported(
    tmp_path: Path, local_config: CPVConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = _workspace(tmp_path, local_config)
    down = local_config.replace(
        store={"url": "s3://bucket/prefix"},
        aws={"endpoint_url": "http://127.0.0.1:9", "region": "us-east-1"})
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "y")
    cp = Checkpointer(ws, config=down, on_error="warn")
    started = time.monotonic()
    for step in range(1, 21):
        cp.save(_checkpoint(tmp_path / "out", step, size=1024), step=step)
        # Never more than one push running and one waiting: no unbounded queue.
        assert cp._waiting is None or cp._waiting.step == step
    assert time.monotonic() - started < 2.0
    assert cp.flush(timeout=120)
    cp.close()
    assert cp.failures
    assert not cp.saved
    assert len(cp.failures) + cp.superseded == 20
    assert "was not versioned" in str(cp.failures[-1])
    assert "training went on" in cp.failures[-1].hint


def test_a_failure_is_raised_at_the_next_call_with_on_error_raise(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    ws = _workspace(tmp_path, local_config)
    cp = Checkpointer(ws, config=local_config)
    cp.save(tmp_path / "no-such-checkpoint", step=1)
    with pytest.raises(CheckpointError, match=r"step 1 was not versioned: .*does not exist"):
        cp.flush()
    cp.save(_checkpoint(tmp_path / "out", 2), step=2)  # reported once: the loop goes on
    cp.close()
    assert [s.step for s in cp.saved] == [2]


_TRAINER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cpv import Checkpointer
    from cpv.api import CPVConfig
    config = CPVConfig.load(path=Path(sys.argv[3]), env={})
    cp = Checkpointer(sys.argv[1], config=config)
    cp.save(sys.argv[2], step=int(sys.argv[4]))
    print("saved", flush=True)
    while sys.argv[5] == "hang":  # training goes on until it is killed
        time.sleep(0.1)
    cp.close()
    print("versioned", [s.step for s in cp.saved], flush=True)
""")


@pytest.mark.integration
@pytest.mark.slow
def test_a_training_job_killed_mid_push_leaves_nothing_referenced_missing_and_resumes(
    tmp_path: Path, s3_config: CPVConfig
) -> None:
    ws = _workspace(tmp_path, s3_config)
    user_config = tmp_path / "user.json"
    s3_config.save(user_config)
    folder = _checkpoint(tmp_path / "out", 100, size=96 * MiB)
    script = tmp_path / "train.py"
    script.write_text(_TRAINER)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    store_url = s3_config.store_url(workspace=ws)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(ws), str(folder), str(user_config), "100", "hang"],
        stdout=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"saved"
    with WorkspaceService.open(ws, config=s3_config) as service:
        store = service.ws.store()
        deadline = time.monotonic() + 120
        while not any(True for _ in store.list("packs/")) and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        # Nothing references missing data: no manifest recorded, the store consistent.
        assert service.ws.history.current_manifest("model", "model") is None
        repo = Repository.open(store, cache_dir=tmp_path / "check")
        assert engine_verify(repo).ok
    # The next run (a new process) versions the checkpoint, uploading only what is missing.
    done = subprocess.run(
        [sys.executable, str(script), str(ws), str(folder), str(user_config), "100", "go"],
        capture_output=True, env=env, timeout=240, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert b"versioned [100]" in done.stdout
    with WorkspaceService.open(ws, config=s3_config) as service:
        manifest = service.ws.history.current_manifest("model", "model")
        assert manifest is not None
        assert manifest.extra["step"] == 100
        assert store_url == service.ws.store_url
        assert service.verify(deep=True).report.ok


def test_cpv_never_imports_the_training_libraries_at_start_up() -> None:
    code = ("import sys, cpv, cpv.checkpointer, cpv.cli.main, cpv.service.sessions; "
            "print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in {'torch', 'transformers', 'lightning', 'accelerate'}))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread priority is Linux's")
def test_the_push_runs_at_a_lower_cpu_priority_than_the_loop(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    ws = _workspace(tmp_path, local_config)
    cp = Checkpointer(ws, config=local_config, nice=7)
    try:
        deadline = time.monotonic() + 10
        while cp._thread.native_id is None and time.monotonic() < deadline:
            time.sleep(0.01)
        loop = os.getpriority(os.PRIO_PROCESS, 0)
        if loop + 7 > 19:  # the kernel stops at 19: a suite run under `nice` cannot show it
            pytest.skip(f"the test process already runs at nice {loop}")
        time.sleep(0.2)  # the thread lowers itself first thing
        assert os.getpriority(os.PRIO_PROCESS, cp._thread.native_id or 0) == loop + 7
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop
    finally:
        cp.close()
