"""`cpv session` and `cpv pull --part`, driving the real program: four writers with store
credentials only (one killed mid-push), one coordinator commit, pulls of the whole and of one
writer's files, on the real S3 server."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cpv.store import MiB
from tests.cli.conftest import Runner, cpv_command, git
from tests.engine.conftest import rand_bytes
from tests.s3server import S3Server

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

pytestmark = pytest.mark.integration


def _rank(root: Path, rank: int, size: int) -> Path:
    folder = root / f"rank{rank}"
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / f"shard_{rank}.bin").write_bytes(rand_bytes(size, rank))
    (folder / "ckpt" / "metadata.json").write_text('{"world_size": 4}')
    return folder


def _tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_four_writers_one_killed_then_one_commit_and_pulls_by_part(
    cpv: Runner, tmp_path: Path, env: dict[str, str], s3_env: dict[str, str], s3_url: str,
    s3_server: S3Server, s3_client: S3Client,
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    writers = tmp_path / "writers"
    folders = [_rank(writers, r, 40 * MiB if r == 3 else 512 * 1024) for r in range(4)]
    # Writers run outside any workspace, with the store URL and credentials only.
    for r in range(3):
        out = cpv("session", "push", "s1", str(r), str(folders[r]), "--store", s3_url,
                  "--json", cwd=writers, env_extra=s3_env).json()
        assert out["part"] == str(r)
    # A retried writer (an engine retrying a task) is harmless.
    cpv("session", "push", "s1", "0", str(folders[0]), "--store", s3_url, "-q", cwd=writers,
        env_extra=s3_env)

    # Writer 3 is killed in the middle of its upload.
    prefix = s3_url.split("/", 3)[3]
    proc = subprocess.Popen(
        [*cpv_command(), "session", "push", "s1", "3", str(folders[3]), "--store", s3_url],
        cwd=writers, env={**env, **s3_env}, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not s3_client.list_multipart_uploads(
            Bucket=s3_server.bucket, Prefix=f"{prefix}/packs/").get("Uploads"):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    # The coordinator never commits a partial checkpoint: one line names the missing writer.
    refused = cpv("session", "commit", "s1", "--parts", "4", cwd=ws, env_extra=s3_env,
                  expect=1)
    assert "s1: 1 of 4 writers have not pushed their part: 3" in refused.stderr
    assert cpv("versions", "--json", cwd=ws, env_extra=s3_env).json() == []
    status = cpv("session", "status", "s1", "--json", cwd=ws, env_extra=s3_env).json()
    assert [p["part"] for p in status["parts"]] == ["0", "1", "2"]

    # The killed writer runs again and resumes; now one commit records all four parts.
    cpv("session", "push", "s1", "3", str(folders[3]), "--store", s3_url, "-q", cwd=writers,
        env_extra=s3_env)
    done = cpv("session", "commit", "s1", "--parts", "4", "--tag", "-m", "step 1000",
               "--metric", "loss=0.5", "--json", cwd=ws, env_extra=s3_env).json()
    assert done["tags"] == ["v0.1"]
    assert done["files"] == 5
    assert done["seconds"] < 2.0 * 5  # generous here; the benchmark measures it properly
    log = git(ws, "log", "--format=%s", env=env).splitlines()
    assert log[0] == "step 1000"

    # A session id reused for another checkpoint is refused.
    other = _rank(tmp_path / "other", 0, 1000)
    again = cpv("session", "push", "s1", "0", str(other), "--store", s3_url, cwd=writers,
                env_extra=s3_env, expect=1)
    assert "already committed" in again.stderr

    # The whole checkpoint on one machine, or one writer's files for a resume.
    cpv("pull", "v0.1", "-q", cwd=ws, env_extra=s3_env)
    whole = _tree(ws / "model")
    assert set(whole) == {"ckpt/metadata.json", *[f"ckpt/shard_{r}.bin" for r in range(4)]}
    assert whole["ckpt/shard_3.bin"] == (folders[3] / "ckpt" / "shard_3.bin").read_bytes()
    cpv("pull", "v0.1", "model", "--part", "2", "--to", str(tmp_path / "r2"), "-q", cwd=ws,
        env_extra=s3_env)
    assert _tree(tmp_path / "r2") == _tree(folders[2])
    missing = cpv("pull", "v0.1", "model", "--part", "9", "--to", str(tmp_path / "r9"), cwd=ws,
                  env_extra=s3_env, expect=2)
    assert "part 9 wrote no file of v0.1" in missing.stderr
