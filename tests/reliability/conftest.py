"""Helpers for the reliability suite: driver subprocesses with a clean environment, and checks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpv.engine import Repository, verify
from cpv.engine.index import INDEX_PREFIX, decode_index
from cpv.engine.packs import pack_id_from_key
from tests.s3server import S3Server

REPO_ROOT = Path(__file__).resolve().parents[2]

Driver = Callable[..., "subprocess.Popen[bytes]"]


def driver_env(server: S3Server, scratch: Path, **extra: str) -> dict[str, str]:
    """The environment a user's shell would give cpv: credentials in AWS_* variables only.

    ``~/.aws`` is hidden behind an empty config file so the developer's own profile never leaks
    into a test.
    """
    empty = scratch / "aws-empty"
    empty.write_text("[default]\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=server.access_key,
        AWS_SECRET_ACCESS_KEY=server.secret_key,
        AWS_DEFAULT_REGION=server.region,
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
        CPV_TEST_ENDPOINT=server.endpoint_url,
        PYTHONPATH=str(REPO_ROOT),
    )
    env.update(extra)
    return env


@pytest.fixture
def run_driver(s3_server: S3Server, tmp_path: Path) -> Driver:
    """Start ``tests.reliability.driver`` as a real process (stdout/stderr piped)."""
    scratch = tmp_path / "driver-env"
    scratch.mkdir(exist_ok=True)

    def start(*args: str, **env: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.reliability.driver", *args],
            cwd=REPO_ROOT,
            env=driver_env(s3_server, scratch, **env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    return start


def finish(proc: subprocess.Popen[bytes], timeout: float = 120) -> dict[str, Any]:
    """Wait for a driver; its JSON result, or an assertion naming its stderr."""
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, f"driver failed ({proc.returncode}): {err.decode()[-2000:]}"
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    return result


def s3_url(store: Any) -> str:
    return str(store.url)


def assert_store_consistent(store: Any) -> None:
    """Invariant 1: every snapshot verifies; no index entry points at a missing pack."""
    repo = Repository.open(store)
    report = verify(repo)
    assert report.ok, report.summary()
    packs = {pid for o in store.list("packs/") if (pid := pack_id_from_key(o.key))}
    for obj in store.list(INDEX_PREFIX):
        raw = store.get(obj.key)
        missing = {loc.pack_id for _, loc in decode_index(raw, where=obj.key)} - packs
        assert not missing, f"index {obj.key} names missing packs {sorted(missing)[:3]}"
