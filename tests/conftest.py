"""Fixtures shared by the whole suite: the three stores and the real S3 test server.

The S3 server (SeaweedFS, ``tests/s3server.py``) starts once per session (per xdist worker) and
every test gets its own prefix in its one bucket. If the server cannot start, tests that need it
FAIL with the reason: CI must prove the real S3 path, so it is never silently skipped.

Nothing here reads the developer's ``~/.aws``: clients get explicit keys, endpoint and region and
an isolated config file (``tests.s3server.isolated_session``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from cpv.store import ObjectStore
from cpv.store.local import LocalStore
from cpv.store.memory import MemoryStore
from cpv.store.s3 import S3Store
from tests.s3server import S3Server, S3ServerError, find_weed

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

S3StoreFactory = Callable[..., S3Store]


def unique_prefix() -> str:
    """A fresh prefix in the shared bucket, so tests never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:16]}"


def main_server_name() -> str:
    """Which real server the suite talks to: SeaweedFS where its wheel has a build (Linux,
    Windows), else moto's server (pure Python: macOS). ``CPV_TEST_S3_SERVER=moto`` forces the
    fallback, so it is tried on Linux too."""
    wanted = os.environ.get("CPV_TEST_S3_SERVER", "")
    if wanted:
        return wanted
    try:
        find_weed()
    except S3ServerError:
        return "moto"
    return "seaweedfs"


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """The real S3 server on 127.0.0.1, started once for the session (see main_server_name)."""
    name = main_server_name()
    if name != "seaweedfs":
        from tests.servers.compat import start_server

        with start_server(name, tmp_path_factory.mktemp("s3server")) as fallback:
            yield fallback  # type: ignore[misc]  # the same attributes as S3Server
        return
    try:
        server = S3Server.start(tmp_path_factory.mktemp("s3server"))
    except S3ServerError as exc:
        pytest.fail(f"the S3 test server (SeaweedFS) did not start: {exc}", pytrace=False)
    with server:
        yield server


@pytest.fixture
def s3_checks_credentials(s3_server: S3Server) -> None:
    """Skip a test that needs the server to refuse wrong keys (moto accepts any)."""
    if not isinstance(s3_server, S3Server):
        pytest.skip("the fallback S3 server (moto) accepts any credentials")


@pytest.fixture(scope="session")
def s3_client(s3_server: S3Server) -> Iterator[S3Client]:
    """One boto3 client for the session (creating clients costs tens of ms each)."""
    client = s3_server.client()
    yield client
    client.close()


@pytest.fixture
def s3_store(s3_server: S3Server, s3_client: S3Client) -> Iterator[S3Store]:
    """An S3Store on a unique prefix of the test bucket."""
    store = S3Store(client=s3_client, bucket=s3_server.bucket, prefix=unique_prefix())
    yield store
    store.close()


@pytest.fixture
def make_s3_store(s3_server: S3Server) -> Iterator[S3StoreFactory]:
    """Build S3Stores with any (wrong) credentials, bucket or endpoint, for error tests.

    Keyword arguments: access_key, secret_key, bucket, prefix, endpoint_url, max_attempts,
    connect_timeout, read_timeout. Anything not given is the test server's.
    """
    made: list[S3Store] = []

    def make(
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        bucket: str | None = None,
        prefix: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> S3Store:
        client = s3_server.client(
            access_key=access_key,
            secret_key=secret_key,
            endpoint_url=endpoint_url,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        store = S3Store(
            client=client,
            bucket=s3_server.bucket if bucket is None else bucket,
            prefix=unique_prefix() if prefix is None else prefix,
            owns_client=True,
        )
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def local_store(tmp_path: Path) -> LocalStore:
    """A LocalStore in a fresh folder (not created until the first write)."""
    return LocalStore(tmp_path / "store")


@pytest.fixture
def memory_store() -> MemoryStore:
    """A fresh, empty MemoryStore."""
    return MemoryStore()


@pytest.fixture(params=["memory", "local", pytest.param("s3", marks=pytest.mark.integration)])
def any_store(request: pytest.FixtureRequest) -> ObjectStore:
    """Each of the three adapters in turn: the contract suite runs once per adapter."""
    store: ObjectStore = request.getfixturevalue(f"{request.param}_store")
    return store


#: Longest parameter id allowed. Ids made from long data (a whole JSON document, say)
#: can carry a clock reading or a temporary path, and xdist refuses to run when its
#: workers collect different ids; such parameters must be given ``ids=``.
_MAX_PARAM_ID = 160


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and len(callspec.id) > _MAX_PARAM_ID:
            raise pytest.UsageError(
                f"{item.nodeid[:120]}…: its parameter id is {len(callspec.id)} characters; "
                f"give the parametrize ids= (at most {_MAX_PARAM_ID})")
