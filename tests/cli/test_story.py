"""The newcomer's story, end to end with the real `cpv` program, a real bare Git remote and
both stores: init, push, tag, change part of the checkpoint, push again (little uploaded),
versions with metrics, diff, checkout of the first version, verify, and a second machine that
clones the Git remote and pulls v0.1."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, git, overwrite_part, write_checkpoint

MiB = 1024 * 1024
SIZE = 6 * MiB


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def story(
    cpv: Runner,
    tmp_path: Path,
    env: dict[str, str],
    bare_remote: Path,
    *,
    store: str,
    extra: dict[str, str] | None = None,
    git_side: bool = True,
) -> None:
    """The story; ``git_side=False`` skips the steps that never touch the store."""
    ws = tmp_path / "ws"
    init = cpv("init", str(ws), "--store", store, "--remote", bare_remote.as_uri(),
               "--team", "AI-Convo", "--model", "whisper", "--json", env_extra=extra).json()
    assert init["created"] is True and init["remote"] == bare_remote.as_uri()
    weights = write_checkpoint(ws / "model", SIZE, seed=1)
    (ws / "data" / "train").mkdir(parents=True, exist_ok=True)
    (ws / "data" / "train" / "a.txt").write_text("the cat sat\n")
    (ws / "data" / "validation" / "b.txt").write_text("on the mat\n")
    v1_hash = sha(weights)

    first = cpv("push", "-m", "first", "--metric", "loss=0.5", "--tag", "--json",
                cwd=ws, env_extra=extra).json()
    assert first["tags"] == ["v0.1", "data-v0.1"]
    assert [r["kind"] for r in first["results"]] == ["model", "data"]
    model1 = first["results"][0]
    assert model1["files"] == 2 and model1["total_bytes"] > SIZE
    assert model1["uploaded_bytes"] >= SIZE  # all new
    assert first["pushed_to"] == "origin"

    # Fine-tune: a tenth of the weights changes; a sub-folder run must find the workspace.
    overwrite_part(weights, offset=2 * MiB, length=SIZE // 10, seed=2)
    status = cpv("status", "--json", cwd=ws / "model", env_extra=extra).json()
    assert status["kinds"]["model"]["changed"] == ["model/model.safetensors"]
    assert status["clean"] is False
    second = cpv("push", "model", "-m", "second", "--metric", "loss=0.25",
                 "--metric", "accuracy=0.9", "--tag", "--json", cwd=ws / "model",
                 env_extra=extra).json()
    assert second["tags"] == ["v0.2"]
    model2 = second["results"][0]
    # Dedup below file level: about a tenth (plus chunk boundaries) goes over the wire.
    assert model2["uploaded_bytes"] < 0.6 * model2["total_bytes"], model2
    assert model2["reused_ratio"] > 0.4

    if git_side:
        git_only_steps(cpv, ws, extra)

    # Back to the first version: bytes and manifests.
    checkout = cpv("checkout", "v0.1", "--json", cwd=ws, env_extra=extra).json()
    assert [r["kinds"] for r in checkout["results"]] == [["model"], ["data"]]
    assert sha(weights) == v1_hash
    status = cpv("status", "--json", cwd=ws, env_extra=extra).json()
    assert status["clean"] is True and status["kinds"]["model"]["version"] == "v0.1"

    verify = cpv("verify", "--all", "--deep", "--json", cwd=ws, env_extra=extra).json()
    assert verify["ok"] is True and verify["snapshots_checked"] == 3
    assert {"v0.1", "v0.2", "data-v0.1"} <= set(verify["checked"])

    # A second machine: git clone + cpv pull v0.1 (only the Git remote and the store shared).
    clone = tmp_path / "second"
    git(tmp_path, "clone", "-q", bare_remote.as_uri(), str(clone), env=env)
    pulled = cpv("pull", "v0.1", "--json", cwd=clone, env_extra=extra).json()
    assert {p["kind"]: p["ref"] for p in pulled["results"]} == {"model": "v0.1",
                                                                "data": "data-v0.1"}
    assert sha(clone / "model" / "model.safetensors") == v1_hash
    assert (clone / "data" / "validation" / "b.txt").read_text() == "on the mat\n"
    # v0.2 over v0.1: only the changed chunks come from the store.
    again = cpv("pull", "v0.2", "model", "--force", "--json", cwd=clone, env_extra=extra).json()
    p = again["results"][0]
    assert p["local_bytes"] > 0 and p["downloaded_bytes"] < 0.6 * p["total_bytes"], p
    assert cpv("versions", "--json", cwd=clone, env_extra=extra).json()[-1]["tag"] == "v0.2"


def git_only_steps(cpv: Runner, ws: Path, extra: dict[str, str] | None) -> None:
    """versions, diff and metrics: Git-side only, so checked once (on the local store)."""
    versions = cpv("versions", "--json", cwd=ws, env_extra=extra).json()
    assert [v["tag"] for v in versions] == ["v0.1", "v0.2"]
    assert versions[0]["metrics"] == {"loss": 0.5}
    assert versions[1]["metrics"] == {"accuracy": 0.9, "loss": 0.25}
    assert versions[1]["author"].startswith("Ada Tester")
    table = cpv("versions", cwd=ws, env_extra=extra).stdout
    assert "v0.2" in table and "loss=0.25" in table and "second" in table

    diff = cpv("diff", "v0.1", "v0.2", "--json", cwd=ws, env_extra=extra).json()
    assert [(f["path"], f["state"]) for f in diff["files"]] == [("model.safetensors", "changed")]
    assert {m["name"]: m["delta"] for m in diff["metrics"]}["loss"] == pytest.approx(-0.25)
    metrics = cpv("metrics", "--json", cwd=ws, env_extra=extra).json()
    assert [m["metrics"].get("loss") for m in metrics] == [0.5, 0.25]


def test_full_story_on_the_local_store(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path
) -> None:
    story(cpv, tmp_path, env, bare_remote, store=str(tmp_path / "shared-store"))


@pytest.mark.integration
def test_full_story_on_s3(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    story(cpv, tmp_path, env, bare_remote, store=s3_url, extra=s3_env, git_side=False)
