"""The newcomer's day on two machines, with the real `cpv` program, the real S3 server and a
bare Git remote made by plain ``git init --bare`` (HEAD names ``master``).

Machine A pushes and tags; machine B clones with plain git, follows A's new version with
``git pull && cpv pull``, moves between versions, checks one out, and never needs ``--force``
for an untouched tree; once B edits a file, every command that would overwrite it refuses and
leaves it as it was.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, git, overwrite_part, write_checkpoint

MiB = 1024 * 1024
EXIT_ERROR = 1


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): sha(p)
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def plain_bare_remote(tmp_path: Path, env: dict[str, str]) -> Path:
    """``git init --bare`` as a newcomer types it: HEAD names master, which cpv never pushes."""
    path = tmp_path / "remote.git"
    git(tmp_path, "-c", "init.defaultBranch=master", "init", "-q", "--bare", str(path), env=env)
    return path


@pytest.mark.integration
def test_a_second_machine_follows_without_force(
    cpv: Runner, tmp_path: Path, env: dict[str, str], plain_bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    remote = plain_bare_remote.as_uri()
    cpv("init", str(a), "--store", s3_url, "--remote", remote, "-q", env_extra=s3_env)
    weights = write_checkpoint(a / "model", 3 * MiB, seed=1)
    for i in range(40):
        (a / "data" / "train" / f"s{i:03d}.txt").write_text(f"sample {i}\n")
    (a / "data" / "validation" / "v.txt").write_text("held out\n")
    first = cpv("push", "-m", "baseline", "--tag", "--json", cwd=a, env_extra=s3_env).json()
    assert first["tags"] == ["v0.1", "data-v0.1"]
    v1_model, v1_data = tree(a / "model"), tree(a / "data")

    # B: a plain git clone gives a working checkout although the remote's HEAD said master.
    git(tmp_path, "clone", "-q", remote, str(b), env=env)
    assert (b / ".cpv" / "config.json").is_file()
    fresh = cpv("status", "--json", cwd=b, env_extra=s3_env).json()
    # Nothing pulled yet is not a local change: the folder is behind, and clean.
    assert fresh["clean"] is True and fresh["kinds"]["model"]["behind"] is True
    cpv("pull", "-q", cwd=b, env_extra=s3_env)
    assert tree(b / "model") == v1_model and tree(b / "data") == v1_data
    assert cpv("status", "--json", cwd=b, env_extra=s3_env).json()["clean"] is True

    # A: a tenth of the weights changes and the data set drops 30 samples.
    overwrite_part(weights, offset=MiB, length=300_000, seed=2)
    for i in range(30):
        (a / "data" / "train" / f"s{i:03d}.txt").unlink()
    cpv("push", "-m", "fine-tune", "--tag", "-q", cwd=a, env_extra=s3_env)
    v2_model, v2_data = tree(a / "model"), tree(a / "data")

    # B follows: git pull && cpv pull, no --force; the dropped samples go away on B too.
    git(b, "pull", "-q", env=env)
    behind = cpv("status", "--json", cwd=b, env_extra=s3_env).json()
    assert behind["kinds"]["model"]["behind"] is True and behind["clean"] is True
    pulled = cpv("pull", "--json", cwd=b, env_extra=s3_env).json()
    assert {r["kind"]: r["files_removed"] for r in pulled["results"]} == {"model": 0, "data": 30}
    assert tree(b / "model") == v2_model and tree(b / "data") == v2_data
    status = cpv("status", "--json", cwd=b, env_extra=s3_env).json()
    assert status["clean"] is True and status["kinds"]["model"]["behind"] is False

    # Between versions and back, still without --force.
    cpv("pull", "v0.1", "-q", cwd=b, env_extra=s3_env)
    assert tree(b / "model") == v1_model and tree(b / "data") == v1_data
    cpv("pull", "v0.2", "-q", cwd=b, env_extra=s3_env)
    assert tree(b / "model") == v2_model
    cpv("checkout", "v0.1", "-q", cwd=b, env_extra=s3_env)
    assert tree(b / "model") == v1_model and tree(b / "data") == v1_data
    status = cpv("status", "--json", cwd=b, env_extra=s3_env).json()
    assert status["clean"] is True and status["kinds"]["model"]["version"] == "v0.1"
    assert status["unpublished_commits"] == 0  # the checkout commit went to the remote

    # B edits a file: every command that would overwrite it refuses, and it stays as it was.
    edited = b / "model" / "model.safetensors"
    overwrite_part(edited, offset=0, length=1000, seed=9)
    mine = sha(edited)
    for args in (("pull", "v0.2"), ("pull", "v0.2", "model"), ("checkout", "v0.2"),
                 ("pull",), ):
        r = cpv(*args, cwd=b, env_extra=s3_env, expect=EXIT_ERROR)
        assert "model/model.safetensors" in r.stderr and "--force" in r.stderr, r
        assert sha(edited) == mine
    status = cpv("status", "--json", cwd=b, env_extra=s3_env).json()
    assert status["kinds"]["model"]["changed"] == ["model/model.safetensors"]

    # --to: a folder that holds a pulled version and an edit is protected the same way.
    elsewhere = tmp_path / "copy"
    cpv("pull", "v0.1", "model", "--to", str(elsewhere), "-q", cwd=b, env_extra=s3_env)
    cpv("pull", "v0.2", "model", "--to", str(elsewhere), "-q", cwd=b, env_extra=s3_env)
    (elsewhere / "config.json").write_text("{}")
    r = cpv("pull", "v0.1", "model", "--to", str(elsewhere), cwd=b, env_extra=s3_env,
            expect=EXIT_ERROR)
    assert "config.json" in r.stderr
    assert (elsewhere / "config.json").read_text() == "{}"


def test_unpublished_work_is_published_by_the_next_command(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", str(tmp_path / "store"), "--remote", bare_remote.as_uri(),
        "-q")
    write_checkpoint(ws / "model", 100_000, seed=1)
    cpv("push", "--tag", "-q", cwd=ws)
    # The remote goes away during the Git step of the next push (as a Ctrl-C there would).
    write_checkpoint(ws / "model", 100_000, seed=2)
    hidden = tmp_path / "away.git"
    shutil.move(bare_remote, hidden)
    r = cpv("push", "--tag", cwd=ws, expect=EXIT_ERROR)
    assert "nothing is lost" in r.stderr
    shutil.move(hidden, bare_remote)
    status = cpv("status", "--json", cwd=ws).json()
    assert status["unpublished_commits"] >= 1 and status["unpublished_tags"] == ["v0.2"]
    assert "not on the remote" in cpv("status", cwd=ws).stdout
    # Nothing changed, so no new version; but what was left behind is published now.
    again = cpv("push", "--json", cwd=ws).json()
    assert again["results"][0]["changed"] is False and again["pushed_to"] == "origin"
    tags = git(tmp_path, "ls-remote", "--tags", bare_remote.as_uri(), env=env)
    assert "refs/tags/v0.2" in tags
    assert cpv("status", "--json", cwd=ws).json()["unpublished_tags"] == []


def test_init_remote_on_a_workspace_with_versions_publishes_its_tags(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    write_checkpoint(ws / "model", 100_000, seed=1)
    cpv("push", "--tag", "-q", cwd=ws)
    cpv("init", str(ws), "--remote", bare_remote.as_uri(), "-q")
    tags = git(tmp_path, "ls-remote", "--tags", bare_remote.as_uri(), env=env)
    assert "refs/tags/v0.1" in tags
    upstream = git(ws, "rev-parse", "--abbrev-ref", "main@{upstream}", env=env)
    assert upstream.strip() == "origin/main"


def test_store_switch_on_a_workspace_with_versions_needs_saying_so(
    cpv: Runner, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", str(tmp_path / "first"), "-q")
    write_checkpoint(ws / "model", 100_000, seed=1)
    cpv("push", "--tag", "-q", cwd=ws)
    r = cpv("init", str(ws), "--store", str(tmp_path / "second"), expect=1)
    assert "--switch-store" in r.stderr and "first" in r.stderr
    assert str(tmp_path / "first") in cpv("config", "get", "store.url", cwd=ws).stdout
    cpv("init", str(ws), "--store", str(tmp_path / "second"), "--switch-store", "-q")
    # verify names the store the version lives in instead of calling it damaged.
    r = cpv("verify", "v0.1", cwd=ws, expect=10)
    assert "lives in another store" in r.stderr and "DAMAGED" not in r.stdout + r.stderr
