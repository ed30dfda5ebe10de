"""Any folder of a workspace is a tracked path with its own version line, through the real
`cpv` program, the real S3 server and a real bare Git remote.

Machine A keeps the seed layout (model/ -> v0.1) and versions two run directories beside it
(``outputs/checkpoint-500`` -> ``outputs-checkpoint-500@v0.1``) and a data set outside data/;
machine B clones with plain git and pulls one line's version by its tag. Bad paths are exit 2
with nothing changed (no commit, no manifest, no tag).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.cli.conftest import Runner, git, write_checkpoint

MiB = 1024 * 1024
EXIT_USAGE = 2
CKPT = "outputs-checkpoint-500"


def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def state_of(ws: Path, env: dict[str, str]) -> tuple[str, str, str, list[str]]:
    """HEAD, tags, git status and manifest files: what a refused command must not change."""
    manifests = sorted(p.relative_to(ws).as_posix() for p in (ws / ".cpv/manifests").rglob("*"))
    return (git(ws, "rev-parse", "HEAD", env=env), git(ws, "tag", env=env),
            git(ws, "status", "--porcelain", env=env), manifests)


def test_run_directories_have_their_own_version_lines(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    a, b = tmp_path / "machine-a", tmp_path / "machine-b"
    remote = bare_remote.as_uri()
    cpv("init", str(a), "--store", s3_url, "--remote", remote, "-q", env_extra=s3_env)
    write_checkpoint(a / "model", MiB, seed=1)
    ckpt = a / "outputs" / "checkpoint-500"
    write_checkpoint(ckpt, MiB, seed=2)
    write_checkpoint(a / "runs" / "llama-ft" / "step-4000", MiB // 2, seed=3)
    (a / "evalsets" / "squad").mkdir(parents=True)
    (a / "evalsets" / "squad" / "dev.jsonl").write_text('{"q": 1}\n' * 100)

    first = cpv("push", "model", "outputs/checkpoint-500", "-m", "step 500", "--tag",
                "--json", cwd=a, env_extra=s3_env).json()
    assert first["tags"] == ["v0.1", f"{CKPT}@v0.1"]
    v1_ckpt = tree(ckpt)
    # From inside the run folder, `.` is that folder; --kind data starts a data line.
    cpv("push", ".", "--tag", "-q", cwd=a / "runs" / "llama-ft" / "step-4000",
        env_extra=s3_env)
    data = cpv("push", "evalsets/squad", "--kind", "data", "--tag", "--json", cwd=a,
               env_extra=s3_env).json()
    assert data["tags"] == ["evalsets-squad@v0.1"]

    # A second version of the checkpoint only: its line moves, model/ stays at v0.1.
    (ckpt / "config.json").write_text('{"hidden": 128}')
    (ckpt / "optimizer.pt").write_bytes(b"\1" * 1000)
    second = cpv("push", "outputs/checkpoint-500", "--tag", "--json", cwd=a,
                 env_extra=s3_env).json()
    assert second["tags"] == [f"{CKPT}@v0.2"]
    v2_ckpt = tree(ckpt)

    lines = cpv("versions", "--path", "outputs/checkpoint-500", "--json", cwd=a,
                env_extra=s3_env).json()
    assert [v["tag"] for v in lines] == [f"{CKPT}@v0.1", f"{CKPT}@v0.2"]
    model_versions = cpv("versions", "--json", cwd=a, env_extra=s3_env).json()
    assert [v["tag"] for v in model_versions] == ["v0.1"]
    assert model_versions[0]["file_count"] == 2  # model/ alone, not the other model lines
    assert cpv("tag", "--path", "outputs/checkpoint-500", "v1.0", "--json", cwd=a,
               env_extra=s3_env).json()["tags"] == [f"{CKPT}@v1.0"]
    # A plain push: model/ and data/, plus every other tracked path changed here.
    (a / "runs" / "llama-ft" / "step-4000" / "config.json").write_text('{"lr": 0.0001}')
    plain = cpv("push", "--json", cwd=a, env_extra=s3_env).json()
    assert {r["path"]: r["changed"] for r in plain["results"]} == {
        "model": False, "runs/llama-ft/step-4000": True}

    listed = cpv("ls", f"{CKPT}@v0.1", "--json", cwd=a, env_extra=s3_env).json()
    assert [f["path"] for f in listed["files"]] == [
        "outputs/checkpoint-500/config.json", "outputs/checkpoint-500/model.safetensors"]
    diff = cpv("diff", f"{CKPT}@v0.1", f"{CKPT}@v0.2", "--json", cwd=a,
               env_extra=s3_env).json()
    assert {(f["path"], f["state"]) for f in diff["files"]} == {
        ("config.json", "changed"), ("optimizer.pt", "added")}
    status = cpv("status", "--json", cwd=a, env_extra=s3_env).json()
    assert status["clean"] is True
    by_path = {p["path"]: p for p in status["paths"]}
    assert by_path["outputs/checkpoint-500"]["version"] == f"{CKPT}@v1.0"
    assert by_path["evalsets/squad"]["kind"] == "data"
    assert status["kinds"]["model"]["version"] == "v0.1"

    # B: a plain clone pulls one version of one line, and nothing else.
    git(tmp_path, "clone", "-q", remote, str(b), env=env)
    cpv("pull", f"{CKPT}@v0.1", "-q", cwd=b, env_extra=s3_env)
    assert tree(b / "outputs" / "checkpoint-500") == v1_ckpt
    assert not (b / "model").exists() and not (b / "runs").exists()
    cpv("pull", "*.jsonl", "-q", cwd=b, env_extra=s3_env)  # a glob over every line
    assert (b / "evalsets" / "squad" / "dev.jsonl").is_file()
    cpv("pull", "-q", cwd=b, env_extra=s3_env)  # the current version of every tracked path
    assert tree(b / "outputs" / "checkpoint-500") == v2_ckpt
    assert (b / "runs" / "llama-ft" / "step-4000" / "model.safetensors").is_file()

    # A checks the line out at v0.1: that folder and its manifest only.
    model_before = tree(a / "model")
    cpv("checkout", f"{CKPT}@v0.1", "-q", cwd=a, env_extra=s3_env)
    assert tree(ckpt) == v1_ckpt and tree(a / "model") == model_before
    status = cpv("status", "--json", cwd=a, env_extra=s3_env).json()
    assert {p["path"]: p["version"] for p in status["paths"]} == {
        "model": "v0.1", "data": None, "evalsets/squad": "evalsets-squad@v0.1",
        "outputs/checkpoint-500": f"{CKPT}@v0.1",
        "runs/llama-ft/step-4000": None}  # pushed since its v0.1, not tagged

    # gc keeps every tagged version of every line (roots in the store, not one clone's Git).
    cpv("forget", "--keep-last", "0", "-q", cwd=a, env_extra=s3_env)
    cpv("gc", "--grace-hours", "0", "--yes", "-q", cwd=a, env_extra=s3_env)
    cpv("pull", f"{CKPT}@v0.2", "--force", "-q", cwd=b, env_extra=s3_env)
    assert tree(b / "outputs" / "checkpoint-500") == v2_ckpt
    verified = cpv("verify", f"{CKPT}@v0.2", "--json", cwd=a, env_extra=s3_env).json()
    assert f"{CKPT}@v0.2" in verified["checked"]
    current = cpv("verify", "--json", cwd=a, env_extra=s3_env).json()["checked"]
    assert {f"{CKPT}@v0.1", "evalsets-squad@v0.1"} <= set(current)


def test_bad_paths_are_refused_with_nothing_changed(
    cpv: Runner, tmp_path: Path, env: dict[str, str], s3_env: dict[str, str], s3_url: str,
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    write_checkpoint(ws / "model", 1000, seed=1)
    write_checkpoint(ws / "outputs" / "checkpoint-500" / "sub", 1000, seed=2)
    cpv("push", "model", "outputs/checkpoint-500", "-q", cwd=ws, env_extra=s3_env)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "w.bin").write_bytes(b"x" * 100)
    write_checkpoint(ws / "outputs-checkpoint-500", 1000, seed=3)  # same line name
    write_checkpoint(ws / "Model", 1000, seed=4)  # the model line's name
    (ws / "loose.bin").write_bytes(b"x" * 10)
    (ws / "loose-link").symlink_to("loose.bin")
    before = state_of(ws, env)
    cases = {
        str(tmp_path / "elsewhere"): "outside the workspace",
        "../elsewhere": "outside the workspace",
        "outputs/checkpoint-500/sub": "cannot nest",
        "outputs": "cannot nest",
        "model/sub": "cannot nest",
        ".cpv/manifests": "which Git and cpv own",
        ".git": "which Git and cpv own",
        "outputs-checkpoint-500": "share the version line",
        "Model": "share the version line 'model'",
        "outputs/checkpoint-500/sub/model.safetensors": "cannot nest",
        "loose-link": "is a symlink",
        "nowhere": "does not exist",
    }
    for path, why in cases.items():
        r = cpv("push", path, "--tag", cwd=ws, env_extra=s3_env, expect=EXIT_USAGE)
        assert why in r.stderr and "hint" in r.stderr.lower(), r
        assert len([line for line in r.stderr.splitlines() if line.startswith("error")]) <= 1
        assert state_of(ws, env) == before, path
    r = cpv("push", "loose.bin", "model", "--name", "x", cwd=ws, env_extra=s3_env,
            expect=EXIT_USAGE)
    assert "names the line of one PATH" in r.stderr, r
    r = cpv("push", "model", "--kind", "data", cwd=ws, env_extra=s3_env, expect=EXIT_USAGE)
    assert "model folder" in r.stderr
    r = cpv("push", "outputs/checkpoint-500", "--kind", "data", cwd=ws, env_extra=s3_env,
            expect=EXIT_USAGE)
    assert "tracked as model" in r.stderr
    assert state_of(ws, env) == before


def test_a_single_file_on_a_named_line_through_the_cli(
    cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str,
) -> None:
    """``cpv push FILE --name NAME`` versions one file of a run folder; ``metrics --path`` and
    ``lineage name@v0.1`` read that line (refusals: tests/api/test_tracked_paths.py)."""
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    weights = ws / "runs" / "exp1" / "model.safetensors"
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"1" * 5000)
    (weights.parent / "events.log").write_text("not versioned\n")
    first = cpv("push", "runs/exp1/model.safetensors", "--name", "exp1", "--tag",
                "--metric", "loss=0.5", "--json", cwd=ws, env_extra=s3_env).json()
    assert first["tags"] == ["exp1@v0.1"] and first["results"][0]["files"] == 1
    weights.write_bytes(b"2" * 4000)
    cpv("push", "runs/exp1/model.safetensors", "--tag", "--metric", "loss=0.25", "-q",
        cwd=ws, env_extra=s3_env)
    table = cpv("metrics", "--path", "runs/exp1/model.safetensors", "v0.1", "exp1@v0.2",
                "--json", cwd=ws, env_extra=s3_env).json()
    assert [(v["tag"], v["metrics"]) for v in table] == [
        ("exp1@v0.1", {"loss": 0.5}), ("exp1@v0.2", {"loss": 0.25})]
    assert cpv("lineage", "exp1@v0.1", "--json", cwd=ws,
               env_extra=s3_env).json()["tag"] == "exp1@v0.1"
