"""The store knows its versions: gc from any clone (shallow, stale, merged) never loses one;
versions leave only through ``cpv forget``; a lost Git repository is rebuilt from the store; a
store written before roots is refused by gc until ``cpv migrate``. Real `cpv` program, real S3
server, real Git repositories and a bare remote."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, git, write_checkpoint

MiB = 1024 * 1024


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _versions(cpv: Runner, a: Path, extra: dict[str, str]) -> dict[str, str]:
    """Push v0.1, v0.2 (tagged) and an untagged experiment; return tag/commit -> weights hash."""
    made = {}
    for seed, tag in ((1, "--tag"), (2, "--tag"), (3, None)):
        write_checkpoint(a / "model", 400_000, seed=seed)
        args = ["push", "-m", f"seed {seed}", "-q"] + ([tag] if tag else [])
        cpv(*args, cwd=a, env_extra=extra)
        name = f"v0.{seed}" if tag else git(a, "rev-parse", "HEAD", env={}).strip()
        made[name] = sha(a / "model" / "model.safetensors")
    return made


def _check_restorable(cpv: Runner, tmp_path: Path, remote: str, env: dict[str, str],
                      extra: dict[str, str], made: dict[str, str], name: str) -> None:
    clone = tmp_path / name
    git(tmp_path, "clone", "-q", remote, str(clone), env=env)
    for ref, digest in made.items():
        cpv("pull", ref, "model", "--force", "-q", cwd=clone, env_extra=extra)
        assert sha(clone / "model" / "model.safetensors") == digest, ref
    assert cpv("verify", "--all", "--deep", "--json", cwd=clone, env_extra=extra).json()["ok"]


@pytest.mark.integration
def test_gc_from_shallow_stale_and_merged_clones_loses_nothing(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    a = tmp_path / "a"
    remote = bare_remote.as_uri()
    cpv("init", str(a), "--store", s3_url, "--remote", remote, "-q", env_extra=s3_env)
    stale = tmp_path / "stale"
    made = _versions(cpv, a, s3_env)
    git(tmp_path, "clone", "-q", remote, str(stale), env=env)  # knows v0.1, v0.2, experiment
    # An experiment on a branch, merged back into main: reachable only through the merge.
    git(a, "switch", "-q", "-c", "exp", env=env)
    write_checkpoint(a / "model", 400_000, seed=4)
    cpv("push", "-m", "on a branch", "-q", cwd=a, env_extra=s3_env)
    made[git(a, "rev-parse", "HEAD", env=env).strip()] = sha(a / "model" / "model.safetensors")
    git(a, "switch", "-q", "main", env=env)
    git(a, "merge", "-q", "--no-ff", "-X", "theirs", "-m", "merge exp", "exp", env=env)
    git(a, "push", "-q", "origin", "main", "exp", env=env)
    # Another machine tags v0.5 after the stale clone was made.
    write_checkpoint(a / "model", 400_000, seed=5)
    cpv("pull", "-q", "--force", cwd=a, env_extra=s3_env)
    cpv("push", "-m", "v0.5", "--tag", "v0.5", "-q", cwd=a, env_extra=s3_env)
    made["v0.5"] = sha(a / "model" / "model.safetensors")

    shallow = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", remote, str(shallow), env=env)
    for clone in (shallow, stale):
        done = cpv("gc", "--yes", "--grace-hours", "0", "--json", cwd=clone,
                   env_extra=s3_env).json()
        assert done["report"]["snapshots_deleted"] == [], done
    _check_restorable(cpv, tmp_path, remote, env, s3_env, made, "checker")


@pytest.mark.integration
def test_forget_is_the_only_way_out_and_dry_run_says_why(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    a = tmp_path / "a"
    remote = bare_remote.as_uri()
    cpv("init", str(a), "--store", s3_url, "--remote", remote, "-q", env_extra=s3_env)
    made = _versions(cpv, a, s3_env)
    experiment = next(name for name in made if not name.startswith("v"))
    write_checkpoint(a / "model", 400_000, seed=4)  # the current version: never forgotten
    cpv("push", "-m", "seed 4", "-q", cwd=a, env_extra=s3_env)
    made["HEAD"] = sha(a / "model" / "model.safetensors")
    r = cpv("forget", cwd=a, env_extra=s3_env, expect=1)
    assert "keep" in r.stderr  # a policy that keeps nothing is refused
    plan = cpv("forget", "--keep-last", "0", "--dry-run", "--json", cwd=a,
               env_extra=s3_env).json()
    assert [v["message"] for v in plan["forgotten"]] == ["seed 3"]
    kept = {tuple(v["tags"]) or (v["message"],): v["reasons"] for v in plan["kept"]}
    assert kept[("v0.1",)] == ["tagged v0.1"] and kept[("v0.2",)] == ["tagged v0.2"]
    assert kept[("seed 4",)] == ["the current version of the workspace running forget"]
    assert cpv("gc", "--dry-run", "--grace-hours", "0", "--json", cwd=a,
               env_extra=s3_env).json()["report"]["snapshots_deleted"] == []
    cpv("forget", "--keep-last", "0", "-q", cwd=a, env_extra=s3_env)
    done = cpv("gc", "--yes", "--grace-hours", "0", "--json", cwd=a, env_extra=s3_env).json()
    assert len(done["report"]["snapshots_deleted"]) == 1
    del made[experiment]
    _check_restorable(cpv, tmp_path, remote, env, s3_env, made, "checker")


@pytest.mark.integration
def test_a_lost_git_repository_is_rebuilt_from_the_store(
    cpv: Runner, tmp_path: Path, env: dict[str, str], s3_env: dict[str, str], s3_url: str,
) -> None:
    a = tmp_path / "a"
    cpv("init", str(a), "--store", s3_url, "-q", env_extra=s3_env)
    (a / "data" / "train").mkdir(parents=True, exist_ok=True)
    (a / "data" / "train" / "x.txt").write_text("a sample\n")
    made = _versions(cpv, a, s3_env)
    shutil.rmtree(a)  # the laptop is gone; the store is not
    b = tmp_path / "b"
    cpv("init", str(b), "--store", s3_url, "-q", env_extra=s3_env)
    rebuilt = cpv("rebuild", "--json", cwd=b, env_extra=s3_env).json()
    assert sorted(rebuilt["tags"]) == ["data-v0.1", "data-v0.2", "v0.1", "v0.2"]
    versions = cpv("versions", "--json", cwd=b, env_extra=s3_env).json()
    assert [v["tag"] for v in versions] == ["v0.1", "v0.2"]
    assert versions[0]["message"] == "seed 1"
    for tag in ("v0.1", "v0.2"):
        cpv("pull", tag, "model", "-q", cwd=b, env_extra=s3_env)
        assert sha(b / "model" / "model.safetensors") == made[tag]
    # The newest push (the untagged experiment) is the current version again.
    cpv("pull", "-q", cwd=b, env_extra=s3_env)
    assert sha(b / "model" / "model.safetensors") == made[next(n for n in made if "." not in n)]
    assert (b / "data" / "train" / "x.txt").read_text() == "a sample\n"


def test_a_store_from_before_roots_needs_one_migration(cpv: Runner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    store = tmp_path / "store"
    cpv("init", str(ws), "--store", str(store), "-q")
    write_checkpoint(ws / "model", 200_000, seed=1)
    cpv("push", "--tag", "-q", cwd=ws)
    write_checkpoint(ws / "model", 200_000, seed=2)
    cpv("push", "-q", cwd=ws)
    # What a store written by cpv before roots looks like: no roots, no marker.
    shutil.rmtree(store / "roots")
    (store / "roots.json").unlink()
    r = cpv("gc", "--yes", "--grace-hours", "0", cwd=ws, expect=1)
    assert "cpv migrate" in r.stderr and "Traceback" not in r.stderr
    assert "cpv migrate" in cpv("forget", "--keep-last", "1", cwd=ws, expect=1).stderr
    first = cpv("migrate", "--json", cwd=ws).json()
    assert first["adopted"] == 2 and first["tags_recorded"] == 1
    assert cpv("migrate", "--json", cwd=ws).json()["adopted"] == 0  # safe to re-run
    done = cpv("gc", "--yes", "--grace-hours", "0", "--json", cwd=ws).json()
    assert done["report"]["snapshots_deleted"] == []
    assert "v0.1" in done["live_versions"]


@pytest.mark.integration
def test_doctor_shows_what_the_server_supports_and_the_stores_versions(
    cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str,
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    write_checkpoint(ws / "model", 100_000, seed=1)
    cpv("push", "--tag", "-q", cwd=ws, env_extra=s3_env)
    checks = {c["name"]: c for c in cpv("doctor", "--json", cwd=ws, env_extra=s3_env).json()}
    features = checks["server features"]
    assert features["ok"] and "conditional writes" in features["detail"]
    assert "ranged" in features["detail"]
    versions = checks["versions in the store"]
    assert versions["ok"] and versions["detail"].startswith("1 version(s), 1 tag(s)")
