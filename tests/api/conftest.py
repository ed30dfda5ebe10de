from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cpv.api import CPVConfig
from tests.conftest import unique_prefix
from tests.s3server import S3Server


@pytest.fixture(autouse=True)
def git_identity(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A fresh machine has no git identity and no global config: give every test its own."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for var, value in {
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Ada",
        "GIT_COMMITTER_EMAIL": "ada@example.com",
    }.items():
        monkeypatch.setenv(var, value)


@pytest.fixture
def bare_remote(tmp_path: Path) -> str:
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    subprocess.run(
        ["git", "-C", str(remote), "symbolic-ref", "HEAD", "refs/heads/main"], check=True
    )
    return f"file://{remote}"


@pytest.fixture
def local_config(tmp_path: Path) -> CPVConfig:
    """Config with nothing from the machine: the embedded local store, a private cache."""
    return CPVConfig.load(path=tmp_path / "user.json", env={}).replace(
        cache={"dir": str(tmp_path / "cache")}
    )


@pytest.fixture
def s3_config(
    tmp_path: Path, s3_server: S3Server, monkeypatch: pytest.MonkeyPatch
) -> CPVConfig:
    """Config pointing at the real S3 test server, credentials from the environment as AWS does."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", s3_server.region)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))
    (tmp_path / "aws-config").write_text("")
    (tmp_path / "aws-credentials").write_text("")
    return CPVConfig.load(path=tmp_path / "user.json", env={}).replace(
        cache={"dir": str(tmp_path / "cache")},
        aws={"endpoint_url": s3_server.endpoint_url, "region": s3_server.region},
        store={"url": f"s3://{s3_server.bucket}/{unique_prefix()}"},
    )
