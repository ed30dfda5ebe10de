"""The feature probe and the adapter's fallbacks, against each real server.

Expected answers are what ``/work/shared/notes/s3-servers.md`` measured by hand; the table in
``docs/store-contract.md`` is the same one.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from botocore.exceptions import ClientError

from cpv.engine import Repository
from cpv.errors import UnsupportedFeatureError
from cpv.store import MiB
from cpv.store.capabilities import FEATURES_KEY, ServerFeatures, store_features
from cpv.store.s3 import S3Store, translate_error
from tests.s3server import S3Server
from tests.servers.compat import CompatServer

pytestmark = pytest.mark.integration

Server = S3Server | CompatServer

# server -> (conditional_put, multipart_listing, abort_multipart, multi_delete, ranged_get)
EXPECTED = {
    "seaweedfs": (True, True, True, True, True),
    "moto": (True, True, True, True, True),
    "rclone": (False, True, True, True, True),
    "juicefs": (False, True, True, True, True),
    "s3rver": (False, False, False, True, True),
}


@pytest.fixture(params=list(EXPECTED))
def server(request: pytest.FixtureRequest) -> Server:
    name = "s3" if request.param == "seaweedfs" else request.param
    found: Server = request.getfixturevalue(f"{name}_server")
    return found


def _name(server: Server) -> str:
    return server.name if isinstance(server, CompatServer) else "seaweedfs"


@pytest.fixture
def store(server: Server) -> Iterator[S3Store]:
    made = S3Store(client=server.client(), bucket=server.bucket,
                   prefix=f"f-{uuid.uuid4().hex[:12]}", owns_client=True)
    yield made
    made.close()


def test_probe_finds_what_each_server_really_does(server: Server, store: S3Store) -> None:
    features = store_features(store)
    got = (features.conditional_put, features.multipart_listing, features.abort_multipart,
           features.multi_delete, features.ranged_get)
    assert got == EXPECTED[_name(server)], features.details
    assert features.endpoint == server.endpoint_url
    # The probe cleans up after itself: only the remembered record is left.
    assert [o.key for o in store.list()] == [FEATURES_KEY]
    assert list(store.list_multipart()) == []
    lines = features.lines()
    assert len(lines) == 5
    assert features.unusable() == []  # every server here is usable
    if not features.conditional_put:
        assert "conditional writes (PUT If-None-Match: *): NO" in lines[0]


def test_probe_is_remembered_per_store_and_repeated_on_request(
    s3_server: S3Server, rclone_server: CompatServer
) -> None:
    prefix = f"f-{uuid.uuid4().hex[:12]}"
    first = S3Store(client=rclone_server.client(), bucket=rclone_server.bucket, prefix=prefix,
                    owns_client=True)
    probed = store_features(first)
    assert store_features(first) is probed  # once per adapter object
    # Another process (a new adapter) reads the record instead of probing again.
    second = S3Store(client=rclone_server.client(), bucket=rclone_server.bucket, prefix=prefix,
                     owns_client=True)
    again = store_features(second)
    assert again == probed
    refreshed = store_features(second, refresh=True)
    assert refreshed.probed_at > probed.probed_at
    assert refreshed.conditional_put is False
    # A record written through another endpoint does not answer for this one.
    forged = ServerFeatures(conditional_put=True, multipart_listing=True, abort_multipart=True,
                            multi_delete=True, ranged_get=True, endpoint="http://elsewhere:1",
                            probed_at=refreshed.probed_at)
    second.put(FEATURES_KEY, forged.to_json())
    third = S3Store(client=rclone_server.client(), bucket=rclone_server.bucket, prefix=prefix,
                    owns_client=True)
    assert store_features(third).conditional_put is False
    for made in (first, second, third):
        made.close()


def test_a_server_without_ranged_reads_is_unusable() -> None:
    broken = ServerFeatures(conditional_put=False, multipart_listing=False, abort_multipart=False,
                            multi_delete=False, ranged_get=False,
                            details={"ranged_get": "HTTP 200 with 64 bytes for a 10-byte range"})
    assert broken.unusable() == ["ranged reads (GET Range)"]
    assert "ranged reads (GET Range): NO (HTTP 200 with 64 bytes" in broken.lines()[4]
    assert ServerFeatures.from_json(broken.to_json()) == broken


def test_local_stores_support_everything_without_a_probe(local_store: object) -> None:
    features = store_features(local_store)  # type: ignore[arg-type]
    assert features.conditional_put and features.multi_delete and features.ranged_get


def test_missing_multipart_listing_skips_housekeeping(s3rver_server: CompatServer) -> None:
    """s3rver answers ListMultipartUploads with 501 NotImplemented: that used to fail every
    push as a "transient" error; now the housekeeping is skipped."""
    store = S3Store(client=s3rver_server.client(), bucket=s3rver_server.bucket,
                    prefix=f"f-{uuid.uuid4().hex[:12]}", owns_client=True)
    repo = Repository.init(store)
    assert repo.abort_stale_uploads(older_than_s=0) == 0
    assert list(store.list_multipart()) == []
    store.close()


def test_delete_many_on_a_gateway_that_wants_content_md5(juicefs_server: CompatServer) -> None:
    """JuiceFS (MinIO gateway code) refuses DeleteObjects without Content-MD5 (400)."""
    store = S3Store(client=juicefs_server.client(), bucket=juicefs_server.bucket,
                    prefix=f"f-{uuid.uuid4().hex[:12]}", owns_client=True)
    for i in range(5):
        store.put(f"packs/{i}", b"x" * i)
    store.delete_many([f"packs/{i}" for i in range(5)] + ["packs/missing"])
    assert list(store.list()) == []
    store.close()


def test_multipart_upload_round_trip(server: Server, store: S3Store) -> None:
    """The pack upload path (several parts, from threads) on each server."""
    upload = store.start_multipart("packs/aa/big")
    upload.upload_part(2, b"b" * 100)
    upload.upload_part(1, b"a" * (5 * MiB))
    upload.complete()
    assert store.stat("packs/aa/big").size == 5 * MiB + 100
    assert store.get_range("packs/aa/big", 5 * MiB - 2, 4) == b"aabb"


def test_listing_uploads_in_a_bucket_that_never_had_one(rclone_server: CompatServer) -> None:
    """rclone answers ListMultipartUploads with NoSuchUpload until the bucket's first upload,
    which failed every first push ("the multipart upload does not exist")."""
    client = rclone_server.client()
    bucket = f"fresh-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    store = S3Store(client=client, bucket=bucket, prefix="p", owns_client=True)
    assert list(store.list_multipart("packs/")) == []
    repo = Repository.init(store)
    assert repo.abort_stale_uploads(older_than_s=0) == 0
    store.close()


def test_not_implemented_is_an_unsupported_feature_not_a_flaky_store(
    s3rver_server: CompatServer,
) -> None:
    """s3rver: 405 on AbortMultipartUpload (was an untranslated botocore error) and 501 on
    ListMultipartUploads (was "overloaded or flaky; re-run")."""
    store = S3Store(client=s3rver_server.client(), bucket=s3rver_server.bucket,
                    prefix=f"f-{uuid.uuid4().hex[:12]}", owns_client=True)
    upload = store.start_multipart("packs/aa/x")
    with pytest.raises(UnsupportedFeatureError, match="does not support abort") as info:
        store.abort_multipart(upload.key, upload.upload_id)
    assert "re-run" not in info.value.hint and "store-contract" in info.value.hint
    with pytest.raises(ClientError) as raw:
        store._client.list_multipart_uploads(Bucket=store.bucket)
    err = translate_error(raw.value, action="list multipart uploads", bucket=store.bucket,
                          key=None, endpoint=store.endpoint)
    assert isinstance(err, UnsupportedFeatureError) and "NotImplemented" in str(err)
    store.close()
