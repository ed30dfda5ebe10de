"""Pointer manifests (store format v2, Git side) with the real `cpv`, the real S3 server and a
real bare Git remote.

Git holds a schema-2 manifest per version (snapshot id and a summary, no file list); a second
clone reads the file list from the store and caches it, so ``cpv ls``/``cpv diff`` still show
every file; a workspace of schema-1 manifests keeps working and ``cpv migrate`` rewrites its
current manifests; a manifest from a newer cpv says "upgrade cpv".
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Runner, git

EXIT_FORMAT = 1
EXIT_UNREACHABLE = 13
MANIFEST = ".cpv/manifests/model/model.json"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _write(folder: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)


def _ls(cpv: Runner, rev: str, cwd: Path, env: dict[str, str]) -> dict[str, int]:
    out = cpv("ls", rev, "--json", cwd=cwd, env_extra=env).json()
    return {f["path"]: f["size"] for f in out["files"]}


@pytest.mark.integration
def test_second_clone_reads_file_lists_from_the_store_and_caches_them(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    cpv("init", str(a), "--store", s3_url, "--remote", bare_remote.as_uri(), "-q",
        env_extra=s3_env)
    _write(a / "model", {"w.bin": b"w" * 1000, "cfg.json": b"{}", "old.txt": b"old",
                         "sub/t.json": b"[1]"})
    cpv("push", "-m", "first", "--tag", cwd=a, env_extra=s3_env)
    first = json.loads((a / MANIFEST).read_text())
    assert first["schema_version"] == 2 and "files" not in first
    assert first["summary"] == {"file_count": 4, "total_size": 1008, "added": 4, "changed": 0,
                                "removed": 0}
    (a / "model" / "old.txt").unlink()
    _write(a / "model", {"w.bin": b"v" * 1001, "new.txt": b"new"})
    cpv("push", "-m", "second", "--tag", cwd=a, env_extra=s3_env)
    text = (a / MANIFEST).read_bytes()
    assert len(text) < 4096
    assert json.loads(text)["summary"] == {"file_count": 4, "total_size": 1009, "added": 1,
                                           "changed": 1, "removed": 1}

    git(tmp_path, "clone", "-q", bare_remote.as_uri(), str(b), env=env)
    assert _ls(cpv, "v0.1", b, s3_env) == {"model/w.bin": 1000, "model/cfg.json": 2,
                                           "model/old.txt": 3, "model/sub/t.json": 3}
    diff = cpv("diff", "v0.1", "v0.2", "--json", cwd=b, env_extra=s3_env).json()
    assert {f["path"]: f["state"] for f in diff["files"]} == {
        "new.txt": "added", "old.txt": "removed", "w.bin": "changed"}
    assert diff["unchanged"] == 2
    # The diff compared the two trees node by node: it cached no whole list; ls does.
    listed_v2 = _ls(cpv, "v0.2", b, s3_env)
    cached = sorted(p.name for p in (b / ".cpv" / "local" / "filelists").iterdir())
    assert len(cached) == 2
    assert git(b, "status", "--porcelain", env=env) == ""  # the cache is not for Git

    # Offline: what this machine has seen is listed from the cache ...
    dead = {**s3_env, "CPV_ENDPOINT_URL": f"http://127.0.0.1:{closed_port()}"}
    assert _ls(cpv, "v0.2", b, dead)["model/new.txt"] == 3
    offline = cpv("diff", "v0.1", "v0.2", "--json", cwd=b, env_extra=dead).json()
    assert offline["files"] == diff["files"]
    # ... a damaged cache entry is read again from the store ...
    for entry in (b / ".cpv" / "local" / "filelists" / name for name in cached):
        entry.write_bytes(entry.read_bytes()[:-3] + b"xyz")
    assert _ls(cpv, "v0.2", b, s3_env) == listed_v2
    assert cpv("diff", "v0.1", "v0.2", "--json", cwd=b, env_extra=s3_env).json() == diff
    # ... and a clone that never read the list says the store is unreachable, in one line.
    git(tmp_path, "clone", "-q", bare_remote.as_uri(), str(c), env=env)
    refused = cpv("ls", "v0.1", cwd=c, env_extra=dead, expect=EXIT_UNREACHABLE)
    first_line = refused.stderr.strip().splitlines()[0]
    assert first_line.startswith("cpv: error: cannot reach"), refused.stderr


def _as_schema_one(root: Path, s3_env: dict[str, str]) -> None:
    """Rewrite the current model manifest as cpv wrote it before pointer manifests (schema 1,
    every file listed), from its own snapshot, and commit it."""
    script = (
        "import sys\n"
        "from cpv.service.workspace import WorkspaceService\n"
        "from cpv.versioning.manifest import Manifest, manifest_for_files\n"
        "from pathlib import Path\n"
        "root = Path(sys.argv[1])\n"
        f"path = root / {MANIFEST!r}\n"
        "m = Manifest.from_json(path.read_text())\n"
        "with WorkspaceService.open(root) as s:\n"
        "    snap = s.ws.repository().load_snapshot(m.snapshot_id)\n"
        "old = manifest_for_files(kind=m.kind, path=m.path, snapshot_id=m.snapshot_id,\n"
        "    store_url=m.store_url, files=[(f.path, f.size, f.blake3) for f in snap.files],\n"
        "    message=m.message, author=m.author, metrics=m.metrics, extra=m.extra,\n"
        "    created_at=m.created_at)\n"
        "path.write_text(old.to_json())\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(root)], env={**os.environ, **s3_env},
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.integration
def test_schema_one_workspace_keeps_working_and_migrates(
    cpv: Runner, tmp_path: Path, env: dict[str, str], bare_remote: Path,
    s3_env: dict[str, str], s3_url: str,
) -> None:
    a = tmp_path / "a"
    cpv("init", str(a), "--store", s3_url, "--remote", bare_remote.as_uri(), "-q",
        env_extra=s3_env)
    _write(a / "model", {"w.bin": b"w" * 100, "sub/cfg.json": b"{}"})
    cpv("push", "-m", "old format", cwd=a, env_extra=s3_env)
    _as_schema_one(a, {**env, **s3_env})
    git(a, "commit", "-q", "-m", "an old cpv wrote this", "--", MANIFEST, env=env)
    assert json.loads((a / MANIFEST).read_text())["schema_version"] == 1
    cpv("tag", "v0.1", cwd=a, env_extra=s3_env)

    status = cpv("status", "--json", cwd=a, env_extra=s3_env).json()
    model = status["kinds"]["model"]
    assert (model["files"], model["changed"]) == (2, [])
    assert _ls(cpv, "v0.1", a, s3_env) == {"model/w.bin": 100, "model/sub/cfg.json": 2}

    done = cpv("migrate", "--json", cwd=a, env_extra=s3_env).json()
    assert done["manifests_rewritten"] == [MANIFEST]
    current = json.loads((a / MANIFEST).read_text())
    assert current["schema_version"] == 2 and current["summary"]["file_count"] == 2
    assert current["summary"]["added"] is None  # not known for a migrated version
    old = json.loads(git(a, "show", f"v0.1:{MANIFEST}", env=env))
    assert old["schema_version"] == 1 and len(old["files"]) == 2  # tags keep their bytes
    assert git(a, "status", "--porcelain", "--", ".cpv", env=env) == ""
    assert cpv("migrate", "--json", cwd=a, env_extra=s3_env).json()["manifests_rewritten"] == []

    # Without this machine's records (baseline, cached lists) the status of a folder that holds
    # the files compares them with the pointer manifest's list, read from the store.
    shutil.rmtree(a / ".cpv" / "local")
    status = cpv("status", "--json", cwd=a, env_extra=s3_env).json()
    assert (status["kinds"]["model"]["changed"], status["kinds"]["model"]["behind"]) == ([], False)
    (a / "model" / "sub" / "cfg.json").write_bytes(b"{ }")
    status = cpv("status", "--json", cwd=a, env_extra=s3_env).json()
    assert status["kinds"]["model"]["changed"] == ["model/sub/cfg.json"]
    (a / "model" / "sub" / "cfg.json").write_bytes(b"{}")
    assert _ls(cpv, "HEAD", a, s3_env) == _ls(cpv, "v0.1", a, s3_env)
    same = cpv("diff", "v0.1", "HEAD", "--json", cwd=a, env_extra=s3_env).json()
    assert (same["files"], same["unchanged"]) == ([], 2)
    (a / "model" / "w.bin").write_bytes(b"x" * 100)
    cpv("push", "-m", "after migrate", "--tag", cwd=a, env_extra=s3_env)
    summary = json.loads((a / MANIFEST).read_text())["summary"]
    assert (summary["added"], summary["changed"], summary["removed"]) == (0, 1, 0)
    diff = cpv("diff", "v0.1", "v0.2", "--json", cwd=a, env_extra=s3_env).json()
    assert [(f["path"], f["state"]) for f in diff["files"]] == [("w.bin", "changed")]
    cpv("pull", "v0.1", "--force", cwd=a, env_extra=s3_env)
    assert (a / "model" / "w.bin").read_bytes() == b"w" * 100


@pytest.mark.integration
def test_a_manifest_from_a_newer_cpv_says_upgrade_cpv_in_one_line(
    cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str,
) -> None:
    a = tmp_path / "a"
    cpv("init", str(a), "--store", s3_url, "-q", env_extra=s3_env)
    _write(a / "model", {"w.bin": b"w"})
    cpv("push", cwd=a, env_extra=s3_env)
    doc = json.loads((a / MANIFEST).read_text())
    doc["schema_version"] = 3
    doc["tree"] = {"root": "0" * 64}
    (a / MANIFEST).write_text(json.dumps(doc))
    for command in (["status"], ["ls"]):
        refused = cpv(*command, cwd=a, env_extra=s3_env, expect=None)
        assert refused.code != 0, refused
        first = refused.stderr.strip().splitlines()[0]
        assert "upgrade cpv" in first and "schema_version 3" in first, refused
