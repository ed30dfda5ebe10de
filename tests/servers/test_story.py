"""The whole story with the real `cpv` program on every S3-compatible server the suite can start.

init, push + tag, a tenth of the checkpoint changes, push, a fresh clone pulls v0.1
byte-identical, verify --deep, gc, verify again. SeaweedFS runs the same story in
``tests/cli/test_story.py``; here it runs on moto, rclone ``serve s3``, the JuiceFS gateway and
s3rver, whose quirks (ignored conditional writes, no multipart listing or abort, folder markers,
Content-MD5 on DeleteObjects) cpv must absorb (docs/store-contract.md, compatibility table).
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from tests.cli.conftest import Runner
from tests.cli.test_story import story
from tests.servers.compat import CompatServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.parametrize("name", ["moto", "rclone", "juicefs", "s3rver"])
def test_story_on_each_server(
    name: str, request: pytest.FixtureRequest, cpv: Runner, tmp_path: Path,
    env: dict[str, str], bare_remote: Path,
) -> None:
    server: CompatServer = request.getfixturevalue(f"{name}_server")
    extra = {
        "CPV_ENDPOINT_URL": server.endpoint_url,
        "AWS_ACCESS_KEY_ID": server.access_key,
        "AWS_SECRET_ACCESS_KEY": server.secret_key,
        "AWS_DEFAULT_REGION": server.region,
    }
    url = f"s3://{server.bucket}/story-{uuid.uuid4().hex[:12]}"
    story(cpv, tmp_path, env, bare_remote, store=url, extra=extra, git_side=False)
    ws = tmp_path / "ws"
    gc = cpv("gc", "--yes", "--grace-hours", "0", "--json", cwd=ws, env_extra=extra).json()
    assert gc["report"]["snapshots_deleted"] == []  # every version is live
    verify = cpv("verify", "--all", "--deep", "--json", cwd=ws, env_extra=extra).json()
    assert verify["ok"] is True and verify["snapshots_checked"] == 3
