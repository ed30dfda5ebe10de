"""Every user error: one line saying what is wrong, a hint, the documented exit code, and no
traceback (the runner asserts that for every run). ``--json`` turns the error into one JSON
document on stdout."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, base_env, git, run_cpv, write_checkpoint


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built once: a workspace on its embedded store with one tagged model version (v0.1)."""
    base = tmp_path_factory.mktemp("template")
    env = base_env(base / "home")
    ws = base / "ws"
    for args, cwd in ((["init", str(ws), "-q"], base),
                      (["push", "-m", "first", "--tag", "-q"], ws)):
        if args[0] == "push":
            write_checkpoint(ws / "model", 300_000, seed=7)
        result = run_cpv(args, cwd=cwd, env=env)
        assert result.code == 0, str(result)
    return ws


@pytest.fixture
def workspace(template: Path, tmp_path: Path) -> Path:
    """A private copy of the template (Git repository and store move together)."""
    ws = tmp_path / "ws"
    shutil.copytree(template, ws, symlinks=True)
    return ws


def assert_one_error(result_stderr: str, *, contains: str) -> None:
    """One ``cpv: error:`` line and its hint (log warnings before it are allowed)."""
    lines = [ln for ln in result_stderr.strip().splitlines() if not ln.startswith("cpv: warning:")]
    assert lines[0].startswith("cpv: error: ") and contains in lines[0], result_stderr
    assert all(line.startswith("  hint: ") for line in lines[1:]), result_stderr


def test_not_a_workspace_exits_10_with_a_hint(cpv: Runner, tmp_path: Path) -> None:
    r = cpv("status", expect=10)
    assert_one_error(r.stderr, contains="not a cpv workspace")
    assert "cpv init" in r.stderr and r.stdout == ""
    doc = cpv("versions", "--json", expect=10).json()
    assert doc == {"error": {
        "type": "NotAWorkspaceError", "exit_code": 10,
        "message": f"not a cpv workspace (or any of its parent folders): {tmp_path}",
        "hint": "run 'cpv init' to make this folder one, or cd into a workspace (or use -C DIR)",
    }}


def test_debug_shows_the_traceback_and_keeps_the_exit_code(cpv: Runner) -> None:
    r = cpv("--debug", "status", expect=10, allow_traceback=True)
    assert "Traceback" in r.stderr and "NotAWorkspaceError" in r.stderr
    r = cpv("status", env_extra={"CPV_DEBUG": "1"}, expect=10, allow_traceback=True)
    assert "Traceback" in r.stderr


def test_existing_tag_exits_1_before_uploading(cpv: Runner, workspace: Path) -> None:
    r = cpv("tag", "v0.1", cwd=workspace, expect=1)
    assert_one_error(r.stderr, contains="tag v0.1 already exists")
    (workspace / "model" / "extra.bin").write_bytes(b"x" * 1000)
    doc = cpv("push", "--tag", "v0.1", "--json", cwd=workspace, expect=1).json()
    assert doc["error"]["type"] == "TagExistsError" and doc["error"]["exit_code"] == 1
    # Nothing was recorded: the new file is still an unpushed change.
    status = cpv("status", "--json", cwd=workspace).json()
    assert status["kinds"]["model"]["changed"] == ["model/extra.bin"]


@pytest.mark.parametrize("bad", ["loss", "=1", "loss=abc"])
def test_bad_metric_syntax_is_a_usage_error(cpv: Runner, workspace: Path, bad: str) -> None:
    r = cpv("push", "--metric", bad, cwd=workspace, expect=2)
    assert_one_error(r.stderr, contains="--metric")
    assert "cpv push --help" in r.stderr


def test_usage_errors_exit_2(cpv: Runner, workspace: Path) -> None:
    assert_one_error(cpv("frobnicate", expect=2).stderr, contains="No such command")
    # Any folder may be pushed (a tracked path of its own); one that does not exist is not.
    assert_one_error(cpv("push", "weights/", cwd=workspace, expect=2).stderr,
                     contains="weights does not exist")
    doc = cpv("verify", "v0.1", "--all", "--json", cwd=workspace, expect=2).json()
    assert doc["error"]["exit_code"] == 2 and "not both" in doc["error"]["message"]


def test_dirty_checkout_is_refused_and_changes_nothing(cpv: Runner, workspace: Path) -> None:
    weights = workspace / "model" / "model.safetensors"
    write_checkpoint(workspace / "model", 300_000, seed=8)
    cpv("push", "-m", "second", "--tag", "-q", cwd=workspace)
    weights.write_bytes(b"unsaved experiment")
    r = cpv("checkout", "v0.1", cwd=workspace, expect=1)
    assert_one_error(r.stderr, contains="cannot check out v0.1")
    assert "--force" in r.stderr
    assert weights.read_bytes() == b"unsaved experiment"
    pulled = cpv("pull", "v0.1", cwd=workspace, expect=1)
    assert_one_error(pulled.stderr, contains="not pushed")
    assert weights.read_bytes() == b"unsaved experiment"
    # --force discards the local change, as documented.
    cpv("checkout", "v0.1", "--force", "-q", cwd=workspace)
    assert weights.read_bytes() != b"unsaved experiment"


def test_unknown_version_exits_1(cpv: Runner, workspace: Path) -> None:
    r = cpv("checkout", "v9.9", cwd=workspace, expect=1)
    assert_one_error(r.stderr, contains="no version v9.9")
    assert_one_error(cpv("pull", "data-v0.1", cwd=workspace, expect=1).stderr,
                     contains="data-v0.1")


def _packs(ws: Path) -> list[Path]:
    return sorted(p for p in (ws / ".cpv" / "store" / "packs").rglob("*") if p.is_file())


def test_corrupt_pack_is_found_by_deep_verify_with_exit_4(cpv: Runner, workspace: Path) -> None:
    assert cpv("verify", "--deep", cwd=workspace).stdout.startswith("ok:")
    pack = _packs(workspace)[0]
    data = bytearray(pack.read_bytes())
    data[100] ^= 0xFF  # one flipped bit inside the first chunk
    pack.chmod(0o644)
    pack.write_bytes(bytes(data))
    r = cpv("verify", "--deep", cwd=workspace, expect=4)
    assert "DAMAGED v0.1 (model)" in r.stdout and "model.safetensors" in r.stdout
    assert_one_error(r.stderr, contains="the store is damaged")
    doc = cpv("verify", "--deep", "--json", cwd=workspace, expect=4).json()
    assert doc["error"]["type"] == "IntegrityError" and doc["error"]["exit_code"] == 4
    assert doc["result"]["ok"] is False and doc["result"]["damaged_chunks"]
    labels = {d["label"] for d in doc["result"]["damaged"]}
    assert labels == {"HEAD", "v0.1"}
    # A pull of that version refuses the damaged bytes (invariant 2): exit 4 as well.
    r = cpv("pull", "v0.1", "--to", str(workspace.parent / "restore"), "model", cwd=workspace,
            expect=4)
    assert r.stderr.startswith("cpv: error: ")


def test_missing_pack_is_found_by_shallow_verify(cpv: Runner, workspace: Path) -> None:
    for pack in _packs(workspace):
        pack.unlink()
    doc = cpv("verify", "--json", cwd=workspace, expect=4).json()
    assert doc["result"]["missing_packs"]
    assert {d["label"] for d in doc["result"]["damaged"]} >= {"v0.1"}


def test_a_pull_that_meets_a_missing_pack_exits_4_and_keeps_the_files(
    cpv: Runner, workspace: Path, tmp_path: Path
) -> None:
    for pack in _packs(workspace):
        pack.unlink()
    target = tmp_path / "elsewhere"
    r = cpv("pull", "v0.1", "model", "--to", str(target), cwd=workspace, expect=4)
    assert_one_error(r.stderr, contains="lost data this version needs")
    assert "cpv repair" in r.stderr
    assert not any(p.is_file() for p in target.rglob("*")) if target.exists() else True


@pytest.mark.integration
@pytest.mark.usefixtures("s3_checks_credentials")
def test_wrong_s3_credentials_exit_12(
    cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    write_checkpoint(ws / "model", 100_000, seed=3)
    wrong = {**s3_env, "AWS_SECRET_ACCESS_KEY": "not-the-secret"}
    r = cpv("push", cwd=ws, env_extra=wrong, expect=12)
    assert_one_error(r.stderr, contains="access denied")
    assert "credentials" in r.stderr
    doc = cpv("versions", "--json", cwd=ws, env_extra=wrong).json()
    assert doc == []  # listing versions needs Git only, not the store
    doc = cpv("push", "--json", cwd=ws, env_extra=wrong, expect=12).json()
    assert doc["error"]["type"] == "StoreAccessError"


@pytest.mark.integration
def test_missing_bucket_exits_12(cpv: Runner, tmp_path: Path, s3_env: dict[str, str]) -> None:
    r = cpv("init", str(tmp_path / "ws"), "--store", "s3://no-such-bucket-cpv/x",
            env_extra=s3_env, expect=12)
    assert_one_error(r.stderr, contains="no-such-bucket-cpv")
    assert "bucket" in r.stderr


def test_clone_of_a_workspace_on_its_own_local_store_says_where_the_bytes_are(
    cpv: Runner, tmp_path: Path, bare_remote: Path, env: dict[str, str]
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--remote", bare_remote.as_uri(), "-q")  # store: ws/.cpv/store
    write_checkpoint(ws / "model", 50_000, seed=4)
    cpv("push", "--tag", "-q", cwd=ws)
    git(tmp_path, "clone", "-q", bare_remote.as_uri(), str(tmp_path / "clone"), env=env)
    r = cpv("pull", "v0.1", cwd=tmp_path / "clone", expect=10)
    assert_one_error(r.stderr, contains=f"was pushed to {(ws / '.cpv' / 'store').as_uri()}")
    assert "cpv config set store.url" in r.stderr


def test_json_error_is_the_only_stdout(cpv: Runner, workspace: Path) -> None:
    r = cpv("diff", "v0.1", "v7.0", "--json", cwd=workspace, expect=1)
    doc = json.loads(r.stdout)  # exactly one document
    assert set(doc) == {"error"} and doc["error"]["type"] == "TagNotFoundError"


def test_status_with_a_conflicted_manifest_says_how_to_resolve_it(
    cpv: Runner, workspace: Path
) -> None:
    manifest = workspace / ".cpv" / "manifests" / "model" / "model.json"
    text = manifest.read_text()
    manifest.write_text(f"<<<<<<< HEAD\n{text}=======\n{text}>>>>>>> other\n")
    r = cpv("status", cwd=workspace, expect=1)  # the exit code docs/cli.md gives
    assert_one_error(r.stderr, contains="merge conflict")
    assert "git checkout --theirs" in r.stderr
