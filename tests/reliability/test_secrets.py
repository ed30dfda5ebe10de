"""Invariant 8: cpv never writes a credential; config files are 0600; SSE settings pass through."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

import pytest

from cpv.config import CPVConfig
from cpv.engine import Repository, push
from cpv.errors import ConfigError
from cpv.store import MiB
from cpv.store.s3 import S3Store
from tests.engine.conftest import LIMITS, make_repo, make_tree
from tests.s3server import S3Server

from .conftest import Driver, finish

pytestmark = pytest.mark.integration


def _files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]


def test_no_credential_reaches_any_file_or_log(
    s3_server: S3Server, s3_store: Any, run_driver: Driver, tmp_path: Path
) -> None:
    """push, pull and gc in real processes with the keys in the environment and DEBUG logging
    (botocore's included); then every byte cpv wrote, locally and in the store, is searched."""
    secret = s3_server.secret_key.encode()
    src = make_tree(tmp_path / "src", big=2 * MiB, small=5)
    make_repo(s3_store, tmp_path / "init")
    url, log = str(s3_store.url), tmp_path / "written" / "cpv-debug.log"
    log.parent.mkdir()
    written = tmp_path / "written"
    env = {"CPV_TEST_LOG": str(log)}
    pushed = finish(run_driver("push", url, str(src), str(written / "cache"), **env))
    finish(run_driver("pull", url, pushed["snapshot_id"], str(written / "dest"),
                      str(written / "cache2"), **env))
    finish(run_driver("gc", url, pushed["snapshot_id"], "0", **env))
    assert log.stat().st_size > 10_000  # DEBUG logging really ran (botocore is chatty)
    files = _files_under(written)
    assert len(files) > 10
    for path in files:
        assert secret not in path.read_bytes(), f"{path} contains the secret key"
    keys = [o.key for o in s3_store.list("")]
    assert any(k.startswith("snapshots/") for k in keys)
    for key in keys:
        assert secret not in s3_store.get(key), f"store object {key} contains the secret key"


def test_config_file_is_private_and_refuses_secrets(tmp_path: Path) -> None:
    path = tmp_path / "home" / "config.json"
    saved = CPVConfig().replace(aws={"profile": "training"}).save(path)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert json.loads(saved.read_text()) == {"aws": {"profile": "training"}}
    path.write_text(json.dumps({"aws": {"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG"}}))
    with pytest.raises(ConfigError):
        CPVConfig.load(path, env={})


def _text(headers: Any) -> dict[str, str]:
    return {k: v.decode() if isinstance(v, bytes) else str(v) for k, v in dict(headers).items()}


def _recording(client: Any) -> list[tuple[str, dict[str, str]]]:
    """Record the operation name and headers of every request the client sends."""
    seen: list[tuple[str, dict[str, str]]] = []

    def record(request: Any, **kw: Any) -> None:
        seen.append((kw["event_name"].split(".")[-1], _text(request.headers)))

    client.meta.events.register("before-send.s3", record)
    return seen


def test_sse_s3_is_applied_to_every_object(s3_server: S3Server, tmp_path: Path) -> None:
    client = s3_server.client()
    seen = _recording(client)
    store = S3Store(client=client, bucket=s3_server.bucket, prefix="sse-s3-test", sse="AES256",
                    owns_client=True)
    src = make_tree(tmp_path / "src", big=7 * MiB, small=3)
    repo = make_repo(store, tmp_path / "c", pack_size=6 * MiB)  # one multipart pack at least
    push(repo, src, limits=LIMITS)
    writes = [(op, h) for op, h in seen if op in ("PutObject", "CreateMultipartUpload")]
    assert {op for op, _ in writes} == {"PutObject", "CreateMultipartUpload"}
    for op, headers in writes:
        assert headers.get("x-amz-server-side-encryption") == "AES256", op
    # The server really stored them encrypted (it says so on HEAD).
    for obj in Repository.open(store).store.list("snapshots/"):
        head = client.head_object(Bucket=s3_server.bucket, Key=f"sse-s3-test/{obj.key}")
        assert head["ServerSideEncryption"] == "AES256"
    store.close()


def test_sse_kms_settings_reach_the_request(s3_server: S3Server) -> None:
    """The test server has no KMS, so the request is inspected and answered locally."""
    from botocore.awsrequest import AWSResponse
    from botocore.compat import HTTPHeaders

    class _Raw:
        def stream(self, **_: Any) -> Any:
            return iter([b""])

    client = s3_server.client()
    seen: list[dict[str, str]] = []

    def answer(request: Any, **_: Any) -> AWSResponse:
        seen.append(_text(request.headers))
        return AWSResponse(request.url, 200, HTTPHeaders.from_dict({"ETag": '"x"'}), _Raw())

    # botocore's hook type says handlers return None; before-send handlers may return a response.
    client.meta.events.register("before-send.s3.PutObject", answer)  # type: ignore[arg-type]
    store = S3Store(client=client, bucket=s3_server.bucket, prefix="kms", sse="aws:kms",
                    sse_kms_key_id="alias/cpv-checkpoints", owns_client=True)
    store.put("config", b"{}")
    assert seen[0]["x-amz-server-side-encryption"] == "aws:kms"
    assert seen[0]["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/cpv-checkpoints"
    store.close()


@pytest.mark.parametrize(
    ("sse", "key"), [("AES128", None), (None, "alias/x"), ("AES256", "alias/x")]
)
def test_bad_sse_settings_are_refused(s3_server: S3Server, sse: str | None, key: str | None) -> None:
    with pytest.raises(ConfigError):
        S3Store.from_url("s3://b/p", endpoint_url=s3_server.endpoint_url, sse=sse,
                         sse_kms_key_id=key)
