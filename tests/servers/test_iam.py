"""The IAM policies of docs/store-contract.md §7, as written there, against moto enforcing IAM.

Each role does its job (reader: pull + verify; pusher: push; gc: gc) and is denied what it must
not do. The pusher test is the issue's finding: with a least-privilege policy every push failed
with "access denied ... (list multipart uploads)".
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpv.engine import Repository, pull, push, verify
from cpv.engine.gc import collect_garbage
from cpv.errors import StoreAccessError
from cpv.store.capabilities import store_features
from cpv.store.s3 import S3Store
from tests.engine.conftest import LIMITS, SMALL_CHUNKER, make_tree, tree_digest
from tests.servers.compat import CompatServer, start_moto_with_iam

pytestmark = pytest.mark.integration

DOC = Path(__file__).resolve().parents[2] / "docs" / "store-contract.md"
BUCKET = "cpv-iam"
PREFIX = "team/model"
ROLES = ("reader", "pusher", "gc", "four")  # "four": the four-permission policy
# create_bucket, then per user: create_user, put_user_policy, create_access_key
SETUP_REQUESTS = 1 + 3 * (len(ROLES) + 1)


def documented_policies() -> dict[str, str]:
    """The ```json <role> blocks of the doc, with BUCKET/PREFIX filled in."""
    text = DOC.read_text()
    found = dict(re.findall(r"```json (\w+)\n(.*?)```", text, flags=re.S))
    assert set(found) == {"reader", "pusher", "gc"}, "the doc's policy blocks moved"
    return {role: body.replace("BUCKET", BUCKET).replace("PREFIX", PREFIX)
            for role, body in found.items()}


@dataclass
class Users:
    server: CompatServer
    keys: dict[str, tuple[str, str]]

    def store(self, role: str, prefix: str = PREFIX) -> S3Store:
        key, secret = self.keys[role]
        client = self.server.client(access_key=key, secret_key=secret, max_attempts=1)
        return S3Store(client=client, bucket=BUCKET, prefix=prefix, owns_client=True)


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Users]:
    policies = documented_policies()
    four = json.loads(policies["pusher"])
    four["Statement"][1]["Action"] = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]
    policies["four"] = json.dumps(four)
    policies["admin"] = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]})
    with start_moto_with_iam(tmp_path_factory.mktemp("iam"),
                             free_requests=SETUP_REQUESTS) as server:
        setup = server.session()
        iam = setup.client("iam", endpoint_url=server.endpoint_url)
        s3 = server.client(max_attempts=1)
        s3.create_bucket(Bucket=BUCKET)
        keys = {}
        for role, policy in policies.items():
            iam.create_user(UserName=role)
            iam.put_user_policy(UserName=role, PolicyName=f"cpv-{role}", PolicyDocument=policy)
            made = iam.create_access_key(UserName=role)["AccessKey"]
            keys[role] = (made["AccessKeyId"], made["SecretAccessKey"])
        iam.close()
        s3.close()
        yield Users(server, keys)


def test_iam_is_enforced(users: Users) -> None:
    """Without this, the tests below would prove nothing."""
    stranger = users.server.client(access_key="AKIANOBODY", secret_key="nothing",
                                   max_attempts=1)
    with pytest.raises(Exception, match="InvalidAccessKeyId"):
        stranger.list_objects_v2(Bucket=BUCKET)


@pytest.mark.parametrize("role", ["pusher", "four"])
def test_pusher_pushes_without_permission_to_list_uploads(
    users: Users, role: str, tmp_path: Path
) -> None:
    store = users.store(role, prefix=f"{PREFIX}/{role}-{uuid.uuid4().hex[:8]}")
    repo = Repository.init(store, chunker=SMALL_CHUNKER, cache_dir=tmp_path / "cache")
    tree = make_tree(tmp_path / "tree", big=3 * 1024 * 1024)
    result = push(repo, tree, limits=LIMITS)
    assert verify(Repository.open(store), snapshot_ids=[result.snapshot_id], deep=True).ok
    # And no more: the multipart listing is denied (the push skipped it).
    with pytest.raises(Exception, match="AccessDenied"):
        store._client.list_multipart_uploads(Bucket=BUCKET, Prefix=PREFIX)
    with pytest.raises(StoreAccessError):
        users.store(role, prefix="elsewhere").put("x", b"1")
    store.close()


def test_reader_pulls_and_verifies_and_writes_nothing(users: Users, tmp_path: Path) -> None:
    writer = users.store("gc")
    repo = Repository.init(writer, chunker=SMALL_CHUNKER, cache_dir=tmp_path / "wcache")
    tree = make_tree(tmp_path / "tree", seed=7)
    sid = push(repo, tree, limits=LIMITS).snapshot_id
    writer.close()

    reader = users.store("reader")
    rrepo = Repository.open(reader, cache_dir=tmp_path / "rcache")
    pull(rrepo, sid, tmp_path / "out", limits=LIMITS)
    assert tree_digest(tmp_path / "out") == tree_digest(tree)
    assert verify(rrepo, snapshot_ids=[sid], deep=True).ok
    # The probe tries what it may: the write features stay unknown, the ranged read works.
    features = store_features(reader, refresh=True)
    assert features.conditional_put is None and features.ranged_get is True
    with pytest.raises(StoreAccessError):
        reader.put("probe/x", b"1")
    with pytest.raises(StoreAccessError):
        reader.delete("config")
    with pytest.raises(StoreAccessError):
        collect_garbage(rrepo, live_snapshots=[sid], grace_period_s=0)
    reader.close()


def test_gc_role_runs_gc(users: Users, tmp_path: Path) -> None:
    store = users.store("gc", prefix=f"{PREFIX}/gc-{uuid.uuid4().hex[:8]}")
    repo = Repository.init(store, chunker=SMALL_CHUNKER, cache_dir=tmp_path / "cache")
    old = push(repo, make_tree(tmp_path / "a", seed=1), limits=LIMITS).snapshot_id
    keep = push(repo, make_tree(tmp_path / "b", seed=2), limits=LIMITS).snapshot_id
    abandoned = store.start_multipart("packs/00/abandoned")
    abandoned.upload_part(1, b"x" * 100)
    report = collect_garbage(repo, live_snapshots=[keep], grace_period_s=0, limits=LIMITS)
    assert report.snapshots_deleted == [old]
    # Listing and aborting abandoned uploads is the gc role's (grace 0: any age is abandoned).
    assert report.packs_deleted and report.uploads_aborted == 1
    assert list(store.list_multipart()) == []
    assert verify(Repository.open(store), deep=True).ok
    store.close()
