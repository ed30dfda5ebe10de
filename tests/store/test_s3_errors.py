"""S3 failure paths against the real test server: every botocore failure ends as a cpv error.

Wrong keys, a missing bucket and a closed port are real conditions on 127.0.0.1. Broken
response bodies and throttling cannot be asked of SeaweedFS, so :class:`FaultProxy` sits between
the client and the server and cuts or replaces responses; everything else is the real server.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cpv.errors import (
    ConfigError,
    ObjectNotFoundError,
    StoreAccessError,
    StoreUnreachableError,
    TransientStoreError,
    UnsupportedFeatureError,
)
from cpv.store import MiB, open_store
from cpv.store.s3 import BODY_ATTEMPTS, S3Store, parse_s3_url
from tests.s3server import S3Server

pytestmark = pytest.mark.integration

S3StoreFactory = Callable[..., S3Store]


def every_operation(store: S3Store) -> dict[str, Callable[[], object]]:
    return {
        "put": lambda: store.put("k", b"x"),
        "get": lambda: store.get("k"),
        "get_range_into": lambda: store.get_range_into("k", 0, memoryview(bytearray(1))),
        "stat": lambda: store.stat("k"),
        "exists": lambda: store.exists("k"),
        "list": lambda: list(store.list()),
        "delete": lambda: store.delete("k"),
        "delete_many": lambda: store.delete_many(["k"]),
        "start_multipart": lambda: store.start_multipart("k"),
        "list_multipart": lambda: list(store.list_multipart()),
    }


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- credentials, bucket, endpoint ----------------------------------------------------------


@pytest.mark.parametrize(
    "credentials",
    [{"secret_key": "not-the-secret"}, {"access_key": "nobody", "secret_key": "nothing"}],
    ids=["wrong-secret", "unknown-key"],
)
@pytest.mark.usefixtures("s3_checks_credentials")
def test_wrong_credentials_are_store_access_errors(
    make_s3_store: S3StoreFactory, s3_server: S3Server, credentials: dict[str, str]
) -> None:
    store = make_s3_store(**credentials)
    for name, call in every_operation(store).items():
        with pytest.raises(StoreAccessError) as info:
            call()
        message = str(info.value)
        assert s3_server.bucket in message, name
        assert s3_server.endpoint_url in message, name
        assert "credentials" in info.value.hint, name
        assert "\n" not in message


def test_missing_bucket_is_a_store_access_error_naming_it(
    make_s3_store: S3StoreFactory,
) -> None:
    store = make_s3_store(bucket="cpv-no-such-bucket")
    for name, call in every_operation(store).items():
        with pytest.raises(StoreAccessError, match="bucket cpv-no-such-bucket does not") as info:
            call()
        assert "create the bucket" in info.value.hint, name


def test_missing_key_in_existing_bucket_stays_not_found(s3_store: S3Store) -> None:
    # The HeadBucket that tells a missing bucket from a missing key must not change this.
    with pytest.raises(ObjectNotFoundError):
        s3_store.stat("nope")
    assert not s3_store.exists("nope")


def test_unreachable_endpoint_is_store_unreachable(make_s3_store: S3StoreFactory) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"
    store = make_s3_store(endpoint_url=endpoint, max_attempts=1, connect_timeout=1.0)
    for name, call in every_operation(store).items():
        with pytest.raises(StoreUnreachableError) as info:
            call()
        assert endpoint in str(info.value), name
        assert "endpoint" in info.value.hint


def test_invalid_s3_urls_are_config_errors() -> None:
    for url in ["s3://", "s3:///prefix", "http://bucket/x", "s3://b/a/../c", "s3://b/a//c"]:
        with pytest.raises(ConfigError):
            parse_s3_url(url)
    assert parse_s3_url("s3://bucket") == ("bucket", "")
    assert parse_s3_url("s3://bucket/a/b/") == ("bucket", "a/b")


# -- from_url and the standard AWS configuration ----------------------------------------------


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A clean AWS environment: no profile, no keys, no endpoint, empty config files, no IMDS."""
    for name in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_S3",
        "AWS_DEFAULT_REGION",
        "AWS_REGION",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
    ]:
        monkeypatch.delenv(name, raising=False)
    config = tmp_path / "aws-config"
    credentials = tmp_path / "aws-credentials"
    config.write_text("")
    credentials.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    # Never ask the EC2 metadata service (a non-loopback address) for credentials.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return tmp_path


def roundtrip(store: S3Store) -> None:
    try:
        store.put("hello", b"world")
        assert store.get("hello") == b"world"
        assert [info.key for info in store.list()] == ["hello"]
    finally:
        store.close()


@pytest.mark.parametrize("variable", ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"])
def test_from_url_honours_endpoint_and_credentials_from_env(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, variable: str
) -> None:
    monkeypatch.setenv(variable, s3_server.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    store = S3Store.from_url(f"s3://{s3_server.bucket}/env-{variable.lower()}")
    assert store.endpoint == s3_server.endpoint_url
    roundtrip(store)


def test_open_store_builds_an_s3_store(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    store = open_store(
        f"s3://{s3_server.bucket}/via-open-store", endpoint_url=s3_server.endpoint_url
    )
    assert isinstance(store, S3Store)
    roundtrip(store)


def test_explicit_endpoint_beats_env(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    store = S3Store.from_url(
        f"s3://{s3_server.bucket}/explicit", endpoint_url=s3_server.endpoint_url
    )
    roundtrip(store)


def test_profile_is_honoured_over_env_keys(
    aws_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server
) -> None:
    (aws_env / "aws-config").write_text(
        f"[profile cpvtest]\nregion = {s3_server.region}\n"
        f"endpoint_url = {s3_server.endpoint_url}\n"
    )
    (aws_env / "aws-credentials").write_text(
        f"[cpvtest]\naws_access_key_id = {s3_server.access_key}\n"
        f"aws_secret_access_key = {s3_server.secret_key}\n"
    )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "wrong-env-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-env-secret")
    store = S3Store.from_url(f"s3://{s3_server.bucket}/profile", profile="cpvtest")
    assert store.endpoint == s3_server.endpoint_url  # endpoint_url from the profile
    roundtrip(store)


def test_unknown_profile_is_a_store_access_error(aws_env: Path) -> None:
    with pytest.raises(StoreAccessError, match="no-such-profile") as info:
        S3Store.from_url("s3://bucket/prefix", profile="no-such-profile")
    assert "profile" in info.value.hint


@pytest.mark.usefixtures("s3_checks_credentials")
def test_no_credentials_is_a_store_access_error(aws_env: Path, s3_server: S3Server) -> None:
    store = S3Store.from_url(
        f"s3://{s3_server.bucket}/anon", endpoint_url=s3_server.endpoint_url
    )
    try:
        with pytest.raises(StoreAccessError, match="credentials") as info:
            store.put("k", b"x")
        assert "AWS_ACCESS_KEY_ID" in info.value.hint
    finally:
        store.close()


# -- broken bodies and throttling, through a fault-injecting proxy -----------------------------


class FaultProxy:
    """A loopback HTTP proxy in front of the S3 server that can cut or replace responses.

    One request per connection (it asks the server for ``Connection: close`` and passes that
    on), so it never has to parse keep-alive framing. GET-only use: it does not forward request
    bodies, so tests write through the normal store and read through the proxy.

    Attributes:
        cut_next: how many upcoming GET responses to cut after ``cut_after`` body bytes.
        slow_down: answer every request with ``503 SlowDown`` instead of forwarding it.
        ignore_range: answer ranged GETs as a server that ignores ``Range`` does: status 200
            and a body longer than the range (the range padded to look like a whole object).
        requests: ``(method, path, Range header)`` of every request seen.
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_next = 0
        self.cut_after = 100_000
        self.slow_down = False
        self.ignore_range = False
        self.requests: list[tuple[str, str, str]] = []
        self._closing = False
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._server.getsockname()[1])
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._closing = True
        # Closing a listening socket does not wake a thread blocked in accept(); a connection does.
        with socket.create_connection(("127.0.0.1", self.port)):
            pass
        self._thread.join(5)
        self._server.close()

    def _serve(self) -> None:
        while True:
            conn, _ = self._server.accept()
            if self._closing:
                conn.close()
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                head += chunk
            head = head.split(b"\r\n\r\n", 1)[0]
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = [line for line in lines[1:] if not line.lower().startswith("connection:")]
            ranges = [
                line.split(":", 1)[1].strip()
                for line in headers
                if line.lower().startswith("range:")
            ]
            with self._lock:
                self.requests.append((method, path, ranges[0] if ranges else ""))
                cut = method == "GET" and self.cut_next > 0
                if cut:
                    self.cut_next -= 1
            if self.slow_down:
                body = b"<Error><Code>SlowDown</Code><Message>Reduce your rate.</Message></Error>"
                conn.sendall(
                    b"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\n"
                    + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                    + body
                )
                return
            request = "\r\n".join([lines[0], *headers, "Connection: close", "", ""])
            with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                upstream.sendall(request.encode("latin-1"))
                response = b""
                while chunk := upstream.recv(1 << 20):
                    response += chunk
            if cut:
                header_end = response.index(b"\r\n\r\n") + 4
                response = response[: header_end + self.cut_after]
            if self.ignore_range and method == "GET" and ranges:
                response = _as_whole_object(response)
            conn.sendall(response)


def _as_whole_object(response: bytes) -> bytes:
    """A 206 response turned into what a server that ignores Range sends: 200, more bytes."""
    head, body = response.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    kept = [line for line in lines[1:]
            if not line.lower().startswith(("content-range:", "content-length:"))]
    body += b"\0" * 1000
    new_head = ["HTTP/1.1 200 OK", *kept, f"Content-Length: {len(body)}"]
    return "\r\n".join(new_head).encode("latin-1") + b"\r\n\r\n" + body


@pytest.fixture
def proxy(s3_server: S3Server) -> Iterator[FaultProxy]:
    fault_proxy = FaultProxy(s3_server.ports["s3"])
    yield fault_proxy
    fault_proxy.close()


def test_broken_body_is_resumed_where_it_stopped(
    s3_store: S3Store, make_s3_store: S3StoreFactory, proxy: FaultProxy
) -> None:
    data = bytes(range(256)) * (4 * MiB // 256)
    s3_store.put("big", data)
    reader = make_s3_store(prefix=s3_store.prefix, endpoint_url=proxy.endpoint_url)

    proxy.cut_next = BODY_ATTEMPTS - 1
    buf = bytearray(3 * MiB)
    reader.get_range_into("big", 1000, memoryview(buf))
    assert buf == data[1000 : 1000 + 3 * MiB]
    # Each retry asked only for the bytes still missing.
    ranges = [r for method, _, r in proxy.requests if method == "GET"]
    first = 1000
    last = 1000 + 3 * MiB - 1
    assert ranges == [
        f"bytes={first}-{last}",
        f"bytes={first + proxy.cut_after}-{last}",
        f"bytes={first + 2 * proxy.cut_after}-{last}",
    ]

    proxy.requests.clear()
    proxy.cut_next = 1
    assert reader.get("big") == data
    ranges = [r for method, _, r in proxy.requests if method == "GET"]
    assert ranges == ["", f"bytes={proxy.cut_after}-{len(data) - 1}"]


def test_body_that_keeps_breaking_is_a_transient_error(
    s3_store: S3Store, make_s3_store: S3StoreFactory, proxy: FaultProxy
) -> None:
    s3_store.put("big", bytes(1 * MiB))
    reader = make_s3_store(prefix=s3_store.prefix, endpoint_url=proxy.endpoint_url)
    proxy.cut_next = BODY_ATTEMPTS
    with pytest.raises(TransientStoreError, match=re.escape(f"failed {BODY_ATTEMPTS} times")):
        reader.get_range("big", 0, 1 * MiB)
    assert len([r for r in proxy.requests if r[0] == "GET"]) == BODY_ATTEMPTS


def test_throttling_after_botocore_retries_is_transient(
    make_s3_store: S3StoreFactory, proxy: FaultProxy
) -> None:
    proxy.slow_down = True
    store = make_s3_store(endpoint_url=proxy.endpoint_url, max_attempts=2)
    with pytest.raises(TransientStoreError, match="SlowDown") as info:
        store.get("k")
    assert proxy.endpoint_url in str(info.value)
    assert len(proxy.requests) == 2  # botocore retried once, as configured


def test_a_server_that_ignores_range_is_refused_naming_the_feature(
    s3_store: S3Store, make_s3_store: S3StoreFactory, proxy: FaultProxy
) -> None:
    s3_store.put("pack", bytes(range(256)) * 64)
    reader = make_s3_store(prefix=s3_store.prefix, endpoint_url=proxy.endpoint_url)
    proxy.ignore_range = True
    with pytest.raises(UnsupportedFeatureError, match="ignored the Range header") as info:
        reader.get_range("pack", 10, 100)
    assert info.value.feature == "ranged_get"
    assert "\n" not in str(info.value) and "ranged GETs" in info.value.hint
