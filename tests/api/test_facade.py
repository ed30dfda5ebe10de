"""The seed API end to end: real Git repositories, a real bare remote, real stores."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from cpv import (
    CombinedCheckpointsManage,
    CPVConfig,
    DataCheckpointsManage,
    ModelsCheckpointsManage,
)
from cpv.api import clone_workspace, list_team_models, upload_team_models
from cpv.errors import (
    DirtyWorkspaceError,
    GitRemoteError,
    InvalidTagError,
    NotAWorkspaceError,
    TagExistsError,
    VersioningError,
)

MiB = 1024 * 1024


def write_model(ws: Path, seed: int, size: int = 3 * MiB) -> None:
    import random

    (ws / "model").mkdir(parents=True, exist_ok=True)
    (ws / "model" / "model.safetensors").write_bytes(random.Random(seed).randbytes(size))
    (ws / "model" / "config.json").write_text(json.dumps({"seed": seed}))


def write_data(ws: Path, n: int = 4) -> None:
    for split in ("train", "validation", "test"):
        d = ws / "data" / split
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            (d / f"{i}.jsonl").write_text(f'{{"split": "{split}", "i": {i}}}\n')


def test_model_story_on_s3_with_second_clone(
    tmp_path: Path, s3_config: CPVConfig, bare_remote: str
) -> None:
    ws = tmp_path / "faster-whisper"
    mcm = ModelsCheckpointsManage("AI-Convo", "faster-whisper", workspace=ws, config=s3_config)
    init = mcm.import_model_init(remote_url=bare_remote)
    assert init.store_url.startswith("s3://")
    write_model(ws, 1, size=24 * MiB)
    first = mcm.upload_model_checkpoint(metrics={"loss": 0.5}, message="baseline")
    assert first.commit and first.pushed_to == "origin" and first.uploaded_bytes > 24 * MiB
    assert mcm.tag_model_checkpoint(message="baseline") == "v0.1"
    # A fine-tune: a tenth of the weights change, a tenth (plus chunk slack) is uploaded.
    with open(ws / "model" / "model.safetensors", "r+b") as fh:
        fh.seek(10 * MiB)
        fh.write(os.urandom(1 * MiB))
    second = mcm.upload_model_checkpoint(metrics={"loss": 0.4})
    assert second.new_bytes < 8 * MiB  # ~1 MiB changed + at most a few ~2 MiB chunks around it
    assert mcm.tag_model_checkpoint() == "v0.2"
    versions = mcm.read_checkpoint_tag()
    assert [v.tag for v in versions] == ["v0.1", "v0.2"]
    assert versions[1].metrics == {"loss": 0.4}
    mcm.close()

    # Another machine: clone the Git remote, download v0.1 from the same store.
    other = tmp_path / "other"
    clone_workspace(bare_remote, other, config=s3_config)
    with ModelsCheckpointsManage(workspace=other, config=s3_config) as m2:
        art = m2.download_model_checkpoint(tag="v0.1")
        assert art.metrics == {"loss": 0.5} and art.tag == "v0.1"
        assert art.files == 2 and art.size_mb > 23.9
        import random

        expected = random.Random(1).randbytes(24 * MiB)
        assert (other / "model" / "model.safetensors").read_bytes() == expected


def test_tags_order_numerically_and_validate(tmp_path: Path, local_config: CPVConfig) -> None:
    ws = tmp_path / "m"
    mcm = ModelsCheckpointsManage(workspace=ws, config=local_config)
    mcm.import_model_init()

    def new_version(seed: int) -> None:
        write_model(ws, seed, size=16 * 1024)
        mcm.upload_model_checkpoint()

    tags = []
    for seed in range(10):
        new_version(seed)
        tags.append(mcm.tag_model_checkpoint())
    assert tags[-2:] == ["v0.9", "v0.10"]
    # An auto-numbered tag on a version that already has one would mint an identical version.
    with pytest.raises(VersioningError, match=r"already tagged v0\.10"):
        mcm.tag_model_checkpoint()
    new_version(10)
    assert mcm.tag_model_checkpoint() == "v0.11"  # not "v0.10" again: numeric, not string order
    assert mcm.tag_model_checkpoint("v1.0") == "v1.0"  # an explicit second name is fine
    new_version(11)
    assert mcm.tag_model_checkpoint() == "v1.1"
    with pytest.raises(TagExistsError):
        mcm.tag_model_checkpoint("v1.0")
    assert mcm.tag_model_checkpoint("v1.0", force=True) == "v1.0"
    with pytest.raises(InvalidTagError):
        mcm.tag_model_checkpoint("version-one")
    new_version(12)
    assert mcm.tag_model_checkpoint(dry_run=True) == "v1.2"
    assert "v1.2" not in [v.tag for v in mcm.read_checkpoint_tag()]


def test_revert_refuses_local_changes_then_restores(
    tmp_path: Path, local_config: CPVConfig
) -> None:
    ws = tmp_path / "m"
    mcm = ModelsCheckpointsManage(workspace=ws, config=local_config)
    mcm.import_model_init()
    write_model(ws, 1, size=512 * 1024)
    v1_bytes = (ws / "model" / "model.safetensors").read_bytes()
    mcm.upload_model_checkpoint()
    mcm.tag_model_checkpoint()
    write_model(ws, 2, size=700 * 1024)
    (ws / "model" / "extra.bin").write_bytes(b"added in v0.2")
    mcm.upload_model_checkpoint()
    mcm.tag_model_checkpoint()
    # Unsaved edits to a file the revert would overwrite: refused, nothing touched.
    v2_bytes = (ws / "model" / "model.safetensors").read_bytes()
    (ws / "model" / "model.safetensors").write_bytes(b"my unsaved edit" + v2_bytes[15:])
    with pytest.raises(DirtyWorkspaceError, match="not pushed") as refused:
        mcm.revert_model_checkpoint("v0.1")
    assert "force=True" in (refused.value.hint or "")  # Python errors speak Python
    assert (ws / "model" / "model.safetensors").read_bytes().startswith(b"my unsaved edit")
    (ws / "model" / "model.safetensors").write_bytes(v2_bytes)
    # A file this machine never pushed nor received is the user's: kept, and no reason to refuse.
    (ws / "model" / "notes.txt").write_text("my unsaved notes")
    result = mcm.revert_model_checkpoint("v0.1")
    assert result.commit
    assert (ws / "model" / "model.safetensors").read_bytes() == v1_bytes
    assert not (ws / "model" / "extra.bin").exists()  # the old version did not have it
    assert (ws / "model" / "notes.txt").read_text() == "my unsaved notes"
    assert mcm.get_model_metadata()["snapshot_id"] == mcm.get_model_metadata("v0.1")["snapshot_id"]


def test_dry_run_touches_nothing(tmp_path: Path, local_config: CPVConfig) -> None:
    ws = tmp_path / "m"
    mcm = ModelsCheckpointsManage(workspace=ws, config=local_config)
    mcm.import_model_init()
    write_model(ws, 3, size=256 * 1024)
    head = subprocess.run(
        ["git", "-C", str(ws), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout
    store_files = sorted(p for p in (ws / ".cpv" / "store").rglob("*") if p.is_file())
    plan = mcm.upload_model_checkpoint(dry_run=True)
    assert plan.dry_run and plan.new_bytes >= 256 * 1024 and plan.next_tag == "v0.1"
    assert sorted(p for p in (ws / ".cpv" / "store").rglob("*") if p.is_file()) == store_files
    assert (
        subprocess.run(
            ["git", "-C", str(ws), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
        ).stdout
        == head
    )


def test_misspelt_option_fails_loudly(tmp_path: Path, local_config: CPVConfig) -> None:
    mcm = ModelsCheckpointsManage(workspace=tmp_path / "m", config=local_config)
    with pytest.raises(TypeError):
        mcm.upload_model_checkpoint(dryrun=True)  # type: ignore[call-arg]


def test_not_a_workspace(tmp_path: Path, local_config: CPVConfig) -> None:
    with pytest.raises(NotAWorkspaceError):
        ModelsCheckpointsManage(
            workspace=tmp_path / "nowhere", config=local_config
        ).read_checkpoint_tag()


def test_data_splits_and_combined_tag(tmp_path: Path, local_config: CPVConfig) -> None:
    ws = tmp_path / "m"
    comb = CombinedCheckpointsManage("AI-Vision", "yolo", workspace=ws, config=local_config)
    comb.models.import_model_init()
    write_model(ws, 4, size=128 * 1024)
    write_data(ws, n=5)
    comb.models.upload_model_checkpoint(metrics={"map": 0.5})
    up = comb.data.upload_data_checkpoint()
    assert up.files == 15
    assert comb.tag_model_and_data(message="release") == ("v0.1", "data-v0.1")
    meta = comb.get_combined_metadata("v0.1")
    assert meta["model"]["metrics"] == {"map": 0.5}
    assert meta["data"]["sample_count"] == 15
    art = comb.data.download_data_checkpoint(
        "data-v0.1", dest=tmp_path / "val", splits=["validation"]
    )
    assert art.sample_count == 15 and art.splits == {"train": 5, "validation": 5, "test": 5}
    assert sorted(p.name for p in (tmp_path / "val" / "validation").iterdir()) == [
        "0.jsonl",
        "1.jsonl",
        "2.jsonl",
        "3.jsonl",
        "4.jsonl",
    ]
    assert not (tmp_path / "val" / "train").exists()
    # Second release, then revert both to v0.1.
    write_data(ws, n=7)
    comb.data.upload_data_checkpoint()
    write_model(ws, 5, size=128 * 1024)
    comb.models.upload_model_checkpoint()
    assert comb.tag_model_and_data() == ("v0.2", "data-v0.2")
    comb.revert_model_and_data("v0.1")
    assert len(list((ws / "data" / "train").iterdir())) == 5


def test_combined_tag_is_atomic_when_the_remote_refuses(
    tmp_path: Path, local_config: CPVConfig, bare_remote: str
) -> None:
    ws = tmp_path / "m"
    comb = CombinedCheckpointsManage(workspace=ws, config=local_config)
    comb.models.import_model_init(remote_url=bare_remote)
    write_model(ws, 6, size=64 * 1024)
    write_data(ws)
    comb.models.upload_model_checkpoint()
    comb.data.upload_data_checkpoint()
    hook = Path(bare_remote[len("file://") :]) / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'tags are frozen' >&2\nexit 1\n")
    hook.chmod(0o755)
    with pytest.raises(GitRemoteError, match="frozen"):
        comb.tag_model_and_data()
    local_tags = subprocess.run(
        ["git", "-C", str(ws), "tag"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert local_tags == []  # neither v0.1 nor data-v0.1 was left behind


def test_tag_without_any_upload_is_a_clear_error(tmp_path: Path, local_config: CPVConfig) -> None:
    mcm = ModelsCheckpointsManage(workspace=tmp_path / "m", config=local_config)
    mcm.import_model_init()
    with pytest.raises(VersioningError, match="no model version"):
        mcm.tag_model_checkpoint()


def test_notify_posts_json_to_webhook(tmp_path: Path, local_config: CPVConfig) -> None:
    received: list[dict[str, Any]] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        cfg = local_config.replace(
            notify={"webhook_url": f"http://127.0.0.1:{server.server_port}/h"}
        )
        ws = tmp_path / "m"
        mcm = ModelsCheckpointsManage("AI-Convo", "whisper", workspace=ws, config=cfg)
        mcm.import_model_init()
        write_model(ws, 7, size=64 * 1024)
        mcm.upload_model_checkpoint(notify=True)
        mcm.tag_model_checkpoint(notify=True)
    finally:
        server.shutdown()
    events = [e["cpv"] for e in received]
    assert [e["event"] for e in events] == ["upload", "tag"]
    assert events[1]["tag"] == "v0.1" and events[1]["model"] == "whisper"


def test_batch_over_a_team(tmp_path: Path, local_config: CPVConfig) -> None:
    team = tmp_path / "AI-Convo"
    for name in ("alpha", "beta"):
        m = ModelsCheckpointsManage("AI-Convo", name, workspace=team / name, config=local_config)
        m.import_model_init()
        write_model(team / name, hash(name) & 0xFF, size=32 * 1024)
        m.close()
    results = upload_team_models(team, message="nightly")
    assert set(results) == {"alpha", "beta"}
    assert all(not isinstance(r, Exception) and r.commit for r in results.values())
    listing = list_team_models(team)
    assert [s.model_name for s in listing] == ["alpha", "beta"]


def test_validate_credentials_checks_store_and_remote(
    tmp_path: Path, s3_config: CPVConfig, bare_remote: str
) -> None:
    ws = tmp_path / "m"
    DataCheckpointsManage(workspace=ws, config=s3_config).import_data_init()
    good = s3_config.replace(git={"remote_url": bare_remote}).validate_credentials(workspace=ws)
    assert [(c.name, c.ok) for c in good] == [("store", True), ("git remote", True)]
    bad = s3_config.replace(
        store={"url": "s3://no-such-bucket-cpv/x"},
        git={"remote_url": f"file://{tmp_path}/missing.git"},
    )
    checks = bad.validate_credentials(workspace=ws)
    assert [(c.name, c.ok) for c in checks] == [("store", False), ("git remote", False)]
    assert "no-such-bucket-cpv" in checks[0].detail


def test_unchanged_upload_makes_no_new_commit(tmp_path: Path, local_config: CPVConfig) -> None:
    ws = tmp_path / "m"
    mcm = ModelsCheckpointsManage(workspace=ws, config=local_config)
    mcm.import_model_init()
    write_model(ws, 8, size=64 * 1024)
    first = mcm.upload_model_checkpoint(metrics={"loss": 1.0})
    again = mcm.upload_model_checkpoint()
    assert first.changed and not again.changed and again.commit is None
    # No data moves: only the store's small record that this version was pushed again (it
    # keeps a concurrent forget from retiring what this push relies on, docs/gc.md).
    assert again.uploaded_bytes < 1024 and again.chunks_new == 0
    # New metrics for the same bytes are a new record.
    assert mcm.upload_model_checkpoint(metrics={"loss": 0.9}).changed
