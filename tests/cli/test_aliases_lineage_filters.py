"""Aliases, lineage and --exclude/--include with the real `cpv` program, the real S3 server and
a real bare Git remote: machine A names versions and records what trained them; machine B,
a plain clone, sees the same after `git pull` and resolves the alias everywhere a version
works."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, git, write_checkpoint

MiB = 1024 * 1024
EXIT_USAGE = 2


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _samples(folder: Path, count: int, tag: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"s{i:03d}.txt").write_text(f"{tag} sample {i}\n")


@pytest.mark.integration
def test_aliases_and_lineage_reach_a_second_machine(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    remote = bare_remote.as_uri()
    cpv("init", str(a), "--store", s3_url, "--remote", remote, "-q", env_extra=s3_env)
    write_checkpoint(a / "model", 300_000, seed=1)
    _samples(a / "data" / "train", 5, "first")
    cpv("push", "--tag", "-q", "--param", "lr=3e-4", "--param", "optimizer=adamw",
        cwd=a, env_extra=s3_env)
    data_v1 = cpv("versions", "--data", "--json", cwd=a, env_extra=s3_env).json()[0]
    v1_model = sha(a / "model" / "model.safetensors")

    # v0.2: new weights, new data, pushed together: the model records the data pushed with it.
    write_checkpoint(a / "model", 300_000, seed=2)
    _samples(a / "data" / "train", 8, "second")
    cpv("push", "--tag", "-q", "--param", "lr=1e-4", cwd=a, env_extra=s3_env)
    cpv("alias", "production", "v0.1", "-m", "passed the A/B test", cwd=a, env_extra=s3_env)
    cpv("alias", "staging", "v0.1", cwd=a, env_extra=s3_env)
    moved = cpv("alias", "staging", "0.2", "-m", "candidate", "--json", cwd=a,
                env_extra=s3_env).json()
    assert moved["target"] == "v0.2"
    assert [m["target"] for m in moved["moves"]] == ["v0.1", "v0.2"]
    assert moved["moves"][-1]["message"] == "candidate"
    assert moved["moves"][-1]["author"].startswith("Ada Tester")

    lineage = cpv("lineage", "v0.1", "--json", cwd=a, env_extra=s3_env).json()
    assert lineage["recorded"] is True
    assert lineage["data_tags"] == ["data-v0.1"]
    assert lineage["data_snapshot_id"] == data_v1["snapshot_ids"][0]
    assert lineage["params"] == {"lr": "3e-4", "optimizer": "adamw"}  # strings, as typed

    # B: a plain clone sees the aliases and the lineage; the alias resolves everywhere.
    git(tmp_path, "clone", "-q", remote, str(b), env=env)
    listed = cpv("alias", "--json", cwd=b, env_extra=s3_env).json()
    assert {x["name"]: x["target"] for x in listed} == {"production": "v0.1", "staging": "v0.2"}
    assert listed[0]["moves"][0]["message"] == "passed the A/B test"
    versions = cpv("versions", "--json", cwd=b, env_extra=s3_env).json()
    assert {v["tag"]: v["aliases"] for v in versions} == {"v0.1": ["production"],
                                                          "v0.2": ["staging"]}
    assert versions[1]["params"] == {"lr": "1e-4"}
    assert versions[1]["lineage"]["data_snapshot_id"] != versions[0]["lineage"][
        "data_snapshot_id"]
    table = cpv("versions", cwd=b, env_extra=s3_env).stdout
    assert "v0.1 (production)" in table and "DATA" in table and "data-v0.2" in table
    text = cpv("lineage", "staging", cwd=b, env_extra=s3_env).stdout
    assert "v0.2: trained on data data-v0.2" in text and "lr=1e-4" in text

    files = cpv("ls", "production", "--json", cwd=b, env_extra=s3_env).json()["files"]
    assert {f["path"] for f in files} >= {"model/model.safetensors", "data/train/s004.txt"}
    assert not any(f["path"] == "data/train/s007.txt" for f in files)  # v0.1's data
    cpv("pull", "production", "-q", cwd=b, env_extra=s3_env)
    assert sha(b / "model" / "model.safetensors") == v1_model
    assert not (b / "data" / "train" / "s007.txt").exists()

    # The fsspec filesystem resolves it too (cpv://ALIAS/path).
    code = ("import fsspec, sys; fs = fsspec.filesystem('cpv', workspace=sys.argv[1]); "
            "print(len(fs.cat_file('staging/model/model.safetensors')))")
    done = subprocess.run([sys.executable, "-c", code, str(b)], env={**env, **s3_env},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "300000", done.stderr

    # A deletion is a move too: the log stays, the alias stops resolving.
    cpv("alias", "--delete", "staging", "-m", "rolled back", cwd=a, env_extra=s3_env)
    git(b, "pull", "-q", env=env)
    assert [x["name"] for x in cpv("alias", "--json", cwd=b, env_extra=s3_env).json()] == [
        "production"]
    log = json.loads((b / ".cpv" / "aliases" / "staging.json").read_text())
    assert [m["target"] for m in log["moves"]] == ["v0.1", "v0.2", None]
    cpv("checkout", "staging", cwd=b, env_extra=s3_env, expect=1)
    # B checks out what production names: a new commit, published; A sees it.
    cpv("checkout", "production", "-q", cwd=b, env_extra=s3_env)
    status = cpv("status", "--json", cwd=b, env_extra=s3_env).json()
    assert status["kinds"]["model"]["version"] == "v0.1" and status["clean"] is True

def test_bad_aliases_and_unknown_versions_are_one_line_exit_2(
    cpv: Runner, tmp_path: Path,
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    write_checkpoint(ws / "model", 50_000, seed=1)
    before_lineage = cpv("push", "--tag", "-q", cwd=ws)
    assert before_lineage.code == 0
    for name, words in (("v0.1", "shadow the version tag"), ("0.3", "shadow the version tag"),
                        ("data-v0.1", "shadow the version tag"), ("main", "shadow the Git"),
                        ("Prod!", "cannot be an alias name"), ("model", "cannot be")):
        r = cpv("alias", name, "v0.1", cwd=ws, expect=EXIT_USAGE)
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 2, r.stderr
    r = cpv("alias", "production", "v9.9", cwd=ws, expect=EXIT_USAGE)
    assert "not a version" in r.stderr
    cpv("alias", "--delete", "nope", cwd=ws, expect=EXIT_USAGE)
    assert not (ws / ".cpv" / "aliases").exists()  # nothing made by the refusals
    r = cpv("lineage", "v9.9", cwd=ws, expect=EXIT_USAGE)
    assert "no version v9.9" in r.stderr
    # A model pushed with no data in the workspace: a clear line, not an error.
    text = cpv("lineage", "v0.1", cwd=ws).stdout
    assert "no lineage recorded" in text


def test_push_exclude_leaves_files_out_and_says_so(cpv: Runner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    write_checkpoint(ws / "model", 50_000, seed=1)
    (ws / "model" / "optimizer.pt").write_bytes(b"o" * 10_000)
    cpv("push", "--tag", "-q", cwd=ws)
    (ws / "model" / "config.json").write_text("{}")
    out = cpv("push", "model", "--exclude", "model/optimizer*", "--json", cwd=ws).json()
    assert out["results"][0]["left_out"] == ["model/optimizer.pt"]
    assert (ws / "model" / "optimizer.pt").is_file()  # never deleted
    listed = cpv("ls", "--json", cwd=ws).json()["files"]
    assert [f["path"] for f in listed] == ["model/config.json", "model/model.safetensors"]
    # The file is not in the version, so status shows it as a local file (not hidden).
    status = cpv("status", "--json", cwd=ws).json()
    assert status["kinds"]["model"]["changed"] == ["model/optimizer.pt"]
    hidden = cpv("status", "--exclude", "*.pt", "--json", cwd=ws).json()
    assert hidden["kinds"]["model"]["changed"] == []
    # --include: only what matches goes into the version.
    (ws / "model" / "notes.txt").write_text("n")
    only = cpv("push", "model", "--include", "*.safetensors", "--include", "*.json", "--json",
               cwd=ws).json()
    assert only["results"][0]["files"] == 2 and only["results"][0]["left_out"] == []


def test_cpvignore_that_hides_a_tracked_file_refuses_the_push(cpv: Runner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    write_checkpoint(ws / "model", 50_000, seed=1)
    cpv("push", "--tag", "-q", cwd=ws)
    (ws / ".cpvignore").write_text("*.json\n")
    (ws / "model" / "model.safetensors").write_bytes(b"x" * 1000)
    r = cpv("push", cwd=ws, expect=1)
    assert "hides 1 file(s) of the current model version" in r.stderr
    assert "model/config.json" in r.stderr and "--exclude" in r.stderr
    assert [v["tag"] for v in cpv("versions", "--json", cwd=ws).json()] == ["v0.1"]
    status = cpv("status", "--json", cwd=ws).json()
    assert status["kinds"]["model"]["hidden"] == ["model/config.json"]
    assert ".cpvignore hides 1 file(s)" in cpv("status", cwd=ws).stdout
    assert cpv("ls", "--json", cwd=ws).json()["count"] == 2  # nothing recorded
    # Said on purpose, it goes through; a '!' line keeps it instead.
    cpv("push", "--exclude", "model/config.json", "-q", cwd=ws)
    assert cpv("ls", "--json", cwd=ws).json()["count"] == 1


def test_pull_exclude_never_touches_excluded_files(cpv: Runner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    write_checkpoint(ws / "model", 50_000, seed=1)
    (ws / "model" / "weights-fp16.bin").write_bytes(b"h" * 5000)
    cpv("push", "--tag", "-q", cwd=ws)
    write_checkpoint(ws / "model", 50_000, seed=2)
    (ws / "model" / "weights-fp16.bin").unlink()
    cpv("push", "--tag", "-q", cwd=ws)
    (ws / "model" / "weights-fp16.bin").write_bytes(b"mine")  # the user's own file now
    v2_config = (ws / "model" / "config.json").read_text()
    done = cpv("pull", "v0.1", "--exclude", "*fp16*", "--exclude", "model/config.json",
               "--json", cwd=ws).json()
    assert done["results"][0]["files"] == 1
    assert (ws / "model" / "weights-fp16.bin").read_bytes() == b"mine"
    assert (ws / "model" / "config.json").read_text() == v2_config
    # --include narrows to matches; a filter that leaves nothing is exit 2, nothing changed.
    r = cpv("pull", "v0.1", "--include", "*.ckpt", cwd=ws, expect=EXIT_USAGE)
    assert "leaves no file" in r.stderr
    assert (ws / "model" / "weights-fp16.bin").read_bytes() == b"mine"


def test_tag_records_params(cpv: Runner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    write_checkpoint(ws / "model", 50_000, seed=1)
    cpv("push", "-q", "--param", "lr=3e-4", cwd=ws)
    cpv("tag", "--param", "epochs=3", "--param", "lr=1e-4", "-q", cwd=ws)
    (version,) = cpv("versions", "--json", cwd=ws).json()
    assert version["params"] == {"epochs": "3", "lr": "1e-4"}  # a name given again replaces
    r = cpv("tag", "v0.2", "--param", "novalue", cwd=ws, expect=EXIT_USAGE)
    assert "NAME=VALUE" in r.stderr
