"""Two machines racing for one version, and server-side encryption from configuration."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cpv import CPVConfig, ModelsCheckpointsManage
from cpv.api import clone_workspace
from cpv.errors import GitRemoteError
from tests.s3server import S3Server

from .test_facade import write_model


def _remote_tags(remote: str) -> dict[str, str]:
    out = subprocess.run(["git", "ls-remote", "--tags", remote], capture_output=True, text=True,
                         check=True).stdout
    return {line.split()[1].removeprefix("refs/tags/"): line.split()[0]
            for line in out.splitlines() if not line.endswith("^{}")}


def test_two_machines_racing_for_the_same_version(
    tmp_path: Path, s3_config: CPVConfig, bare_remote: str
) -> None:
    a_dir = tmp_path / "machine-a"
    a = ModelsCheckpointsManage("AI-Convo", "racer", workspace=a_dir, config=s3_config)
    a.import_model_init(remote_url=bare_remote)
    write_model(a_dir, 1, size=256 * 1024)
    a.upload_model_checkpoint()
    assert a.tag_model_checkpoint() == "v0.1"
    b_dir = tmp_path / "machine-b"
    clone_workspace(bare_remote, b_dir, config=s3_config)
    b = ModelsCheckpointsManage(workspace=b_dir, config=s3_config)

    # Both train on from v0.1; A publishes v0.2 first.
    write_model(a_dir, 2, size=256 * 1024)
    a.upload_model_checkpoint(metrics={"loss": 0.2})
    assert a.tag_model_checkpoint() == "v0.2"
    write_model(b_dir, 3, size=256 * 1024)
    with pytest.raises(GitRemoteError) as raised:
        b.upload_model_checkpoint(metrics={"loss": 0.3})
    # B's bytes are safe in the store and its commit is kept locally; only publishing failed.
    assert "recorded here" in str(raised.value) and "nothing is lost" in (raised.value.hint or "")
    assert b.get_model_metadata()["metrics"] == {"loss": 0.3}
    # B cannot take v0.2: it exists on the remote, and B is told so; A's v0.2 is untouched.
    before = _remote_tags(bare_remote)
    with pytest.raises(GitRemoteError):
        b.tag_model_checkpoint("v0.2")
    assert _remote_tags(bare_remote) == before
    local_tags = subprocess.run(["git", "-C", str(b_dir), "tag"], capture_output=True, text=True,
                                check=True).stdout.split()
    assert "v0.2" not in local_tags or _remote_tags(bare_remote)["v0.2"] == before["v0.2"]
    # A's v0.2 still downloads byte-identical from the store.
    art = a.download_model_checkpoint(tag="v0.2", dest=tmp_path / "check")
    assert art.metrics == {"loss": 0.2}
    a.close()
    b.close()


def test_sse_setting_reaches_every_object(
    tmp_path: Path, s3_config: CPVConfig, s3_server: S3Server
) -> None:
    cfg = s3_config.replace(aws={"sse": "AES256"})
    ws = tmp_path / "enc"
    m = ModelsCheckpointsManage(workspace=ws, config=cfg)
    m.import_model_init()
    write_model(ws, 4, size=512 * 1024)
    m.upload_model_checkpoint()
    url = cfg.store_url(workspace=ws)
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    client = s3_server.client()
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix + "/") for o in page.get("Contents", [])]
    packs = [k for k in keys if "/packs/" in k]
    assert packs
    for key in packs + [k for k in keys if "/snapshots/" in k]:
        assert client.head_object(Bucket=bucket, Key=key).get("ServerSideEncryption") == "AES256"
    m.close()
