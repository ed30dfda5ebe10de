"""S3, or any S3-compatible server, as an :class:`~cpv.store.ObjectStore` through boto3.

The only module of cpv that imports boto3/botocore. ``S3Store`` takes an injected client (tests,
benchmarks and the composition root build it); :meth:`S3Store.from_url` builds one the standard
way: a boto3 ``Session`` (profile honoured; ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``,
environment credentials and ``~/.aws`` honoured by boto3 itself; explicit arguments win) and the
client settings of :func:`client_config`.

Why the client is configured as it is (``docs/store-contract.md`` has the measurements):

- ``payload_signing_enabled=False`` and ``request_checksum_calculation="when_required"``: by
  default botocore SHA-256-signs every body over plain http and adds a CRC32, which doubles the
  client CPU per uploaded GiB. ``response_checksum_validation="when_required"`` skips the CRC32 on
  download. cpv checks every chunk it reads against its blake3 id, so nothing is lost.
- ``retries={"mode": "standard", "total_max_attempts": 5}``: botocore owns request-level retries
  (throttling, 5xx, connection errors). This module retries only what botocore cannot, both on
  GetObject and both :data:`BODY_ATTEMPTS` times: a body stream that breaks after the response
  started (resumed at the first missing byte), and an error answer cut inside its body, which
  botocore reads after its retry loop (asked again).
- ``max_pool_connections = max_connections + 4``, so a full transfer pool plus a few metadata
  requests never wait for a pooled connection.
- path-style addressing whenever the endpoint is not AWS: S3-compatible servers on an IP or
  ``localhost`` cannot do virtual-hosted buckets.

Reads go into the caller's buffer: :meth:`S3Store.get_range_into` hands the caller's memoryview
to the socket (``http.client`` ``readinto``) instead of building ``bytes`` and copying them.
Every botocore/urllib3 failure is translated once, by :func:`translate_error`; anything it does
not recognise propagates unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, MutableSequence, Sequence
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any, Final, cast
from urllib.parse import urlsplit

import boto3
import botocore.exceptions as bexc
import urllib3.exceptions
from botocore.config import Config

from cpv.errors import (
    ConfigError,
    CPVError,
    ObjectNotFoundError,
    PreconditionFailedError,
    StoreAccessError,
    StoreError,
    StoreUnreachableError,
    TransientStoreError,
    UnsupportedFeatureError,
)
from cpv.store import Buffer, MiB, ObjectInfo, PendingUpload, StoreCaps, check_key
from cpv.store.capabilities import PROBE_PREFIX, ServerFeatures
from cpv.store.memory import check_part_number, check_part_sequence, check_range

if TYPE_CHECKING:
    from botocore.response import StreamingBody
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import GetObjectOutputTypeDef

__all__ = [
    "BODY_ATTEMPTS",
    "SSE_MODES",
    "S3Store",
    "client_config",
    "parse_s3_url",
    "sse_arguments",
    "translate_error",
]

logger = logging.getLogger(__name__)

BODY_ATTEMPTS: Final = 3
"""How often a read whose body stream broke is tried in all (each resumes where it stopped)."""

S3_MIN_PART_SIZE: Final = 5 * MiB
DELETE_BATCH: Final = 1000  # DeleteObjects takes at most 1000 keys

_ACCESS_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AccountProblem",
        "InvalidSecurity",
        "403",
        "Forbidden",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "ConditionalRequestConflict",  # a concurrent conditional write; retrying settles it
    }
)
_UNSUPPORTED_CODES = frozenset(
    {
        "NotImplemented",  # s3rver's ListMultipartUploads
        "MethodNotAllowed",  # s3rver's AbortMultipartUpload (405)
        "MissingContentMD5",  # a server that wants Content-MD5 where botocore sends a CRC
    }
)
_CREDENTIAL_ERRORS: tuple[type[Exception], ...] = (
    bexc.NoCredentialsError,
    bexc.PartialCredentialsError,
    bexc.CredentialRetrievalError,
    bexc.TokenRetrievalError,
    bexc.NoAuthTokenError,
    bexc.SSOError,
    bexc.LoginError,
    bexc.UnknownCredentialError,
)


class _ShortBodyError(Exception):
    """The connection ended cleanly but before Content-Length bytes arrived."""


# What a broken body stream raises, depending on which layer notices first.
_BODY_ERRORS: tuple[type[Exception], ...] = (
    _ShortBodyError,
    OSError,  # ConnectionResetError, TimeoutError (socket timeout), BrokenPipeError
    http.client.HTTPException,  # IncompleteRead
    urllib3.exceptions.HTTPError,  # ProtocolError, ReadTimeoutError
    bexc.HTTPClientError,  # ResponseStreamingError, ReadTimeoutError, ConnectionClosedError
    bexc.IncompleteReadError,
)
_ANSWER_CUT: tuple[type[Exception], ...] = (
    urllib3.exceptions.HTTPError,  # ProtocolError: reset or short read of an answer
    http.client.HTTPException,
)
"""What botocore lets through unwrapped and unretried when an answer it reads whole (an
error's body) is cut: a reset in a 404's body reached the user as a traceback."""
_TRANSLATED: tuple[type[Exception], ...] = (bexc.ClientError, bexc.BotoCoreError, *_ANSWER_CUT)
"""What :meth:`S3Store._boundary` hands to :func:`translate_error`."""
_AWS_HOST = re.compile(r"(^|\.)(amazonaws\.com|amazonaws\.com\.cn|api\.aws)$")
_CONTENT_RANGE = re.compile(r"bytes \d+-\d+/(\d+)")


def client_config(
    *,
    max_connections: int = 16,
    path_style: bool = False,
    max_attempts: int = 5,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
) -> Config:
    """The botocore ``Config`` cpv uses for S3; see the module docstring for why.

    Args:
        max_connections: requests the caller runs at once; the pool gets 4 more.
        path_style: address buckets as ``endpoint/bucket/key`` (needed by most non-AWS servers).
        max_attempts: botocore's attempts per request, first one included (standard mode).
        connect_timeout: seconds to wait for a TCP connection.
        read_timeout: seconds to wait for the next bytes of a response.
    """
    return Config(
        max_pool_connections=max_connections + 4,
        # total_max_attempts counts the first try; botocore's "max_attempts" key counts retries.
        retries={"total_max_attempts": max_attempts, "mode": "standard"},
        s3={"payload_signing_enabled": False, "addressing_style": "path" if path_style else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        tcp_keepalive=True,
    )


SSE_MODES: Final = ("AES256", "aws:kms")


def sse_arguments(sse: str | None, kms_key_id: str | None) -> dict[str, Any]:
    """The PutObject/CreateMultipartUpload arguments for a server-side encryption setting.

    Only the mode and the key *id* are passed: SSE-C (customer keys sent with every request)
    is not supported, because cpv would have to hold the key (invariant 8).
    """
    if sse is None:
        if kms_key_id is not None:
            raise ConfigError("an SSE-KMS key id was given without sse='aws:kms'",
                              hint="set sse to 'aws:kms', or drop the key id")
        return {}
    if sse not in SSE_MODES:
        raise ConfigError(f"unknown server-side encryption {sse!r}",
                          hint="use 'AES256' (SSE-S3) or 'aws:kms' (SSE-KMS)")
    if kms_key_id is not None and sse != "aws:kms":
        raise ConfigError("an SSE-KMS key id needs sse='aws:kms'",
                          hint="set sse to 'aws:kms', or drop the key id")
    args: dict[str, Any] = {"ServerSideEncryption": sse}
    if kms_key_id is not None:
        args["SSEKMSKeyId"] = kms_key_id
    return args


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix/`` -> ``("bucket", "some/prefix")``; refuses anything else."""
    parts = urlsplit(url)
    bucket = parts.netloc
    prefix = parts.path.strip("/")
    if parts.scheme != "s3" or not bucket or parts.query or parts.fragment:
        raise ConfigError(f"invalid S3 URL {url!r}", hint="use s3://bucket or s3://bucket/prefix")
    if prefix:
        try:
            check_key(prefix)
        except StoreError:
            raise ConfigError(
                f"invalid prefix {prefix!r} in S3 URL {url!r}",
                hint="use '/'-separated names without empty, '.' or '..' parts",
            ) from None
    return bucket, prefix


class S3Store:
    """Objects under ``s3://bucket/prefix/`` through an injected boto3 S3 client.

    The client is shared by all threads (boto3 clients are thread-safe); size its connection pool
    with :func:`client_config`. ``close()`` closes the client only when this store built it
    (``owns_client``).

    Args:
        client: a boto3 S3 client.
        bucket: the bucket name.
        prefix: the folder inside the bucket ('' for the bucket's root).
        max_connections: what ``caps.max_connections`` reports.
        owns_client: close the client in :meth:`close`.
        sse: server-side encryption for every object written: ``"AES256"`` (SSE-S3) or
            ``"aws:kms"`` (SSE-KMS); None leaves it to the bucket's default.
        sse_kms_key_id: the KMS key for ``"aws:kms"`` (None: the account's default key).
    """

    def __init__(
        self,
        *,
        client: S3Client,
        bucket: str,
        prefix: str = "",
        max_connections: int = 16,
        owns_client: bool = False,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
    ) -> None:
        prefix = prefix.strip("/")
        self._sse_args = sse_arguments(sse, sse_kms_key_id)
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.endpoint = str(client.meta.endpoint_url)
        self.caps = StoreCaps(
            max_connections=max_connections,
            conditional_put=True,
            min_part_size=S3_MIN_PART_SIZE,
        )
        self._client = client
        self._owns_client = owns_client
        self._key_prefix = f"{prefix}/" if prefix else ""
        # What the server was probed to support (cpv.store.capabilities owns the answer).
        self.probed: ServerFeatures | None = None
        # Fallbacks switched on by the first refusal, so a missing feature costs one request.
        self._list_uploads_refused = False
        self._delete_one_by_one = False
        # A HEAD on a missing bucket answers a bare 404, like a missing key; one HeadBucket
        # per store tells the two apart (see stat()).
        self._bucket_seen = False
        # botocore sends "Expect: 100-continue" with every PUT body and then waits for the
        # "100". When the server answers at once instead (an empty body, an early error),
        # botocore keeps that answer's status for the next request on the same connection,
        # whose response then fails to parse and hangs until read_timeout (seen with
        # SeaweedFS: 60 s stalls after an empty put). Without the header the body goes out
        # straight away, which also saves one round trip per PUT. unique_id keeps it to one
        # registration per client when several stores share a client.
        client.meta.events.register(
            "before-sign.s3", _drop_expect_header, unique_id="cpv-drop-expect-100-continue"
        )
        # DeleteObjects must carry a body checksum; botocore sends a CRC32 only, and servers
        # built on MinIO's gateway code (JuiceFS) refuse it without Content-MD5.
        client.meta.events.register(
            "before-call.s3.DeleteObjects", _add_content_md5, unique_id="cpv-delete-content-md5"
        )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        profile: str | None = None,
        region: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 16,
        sse: str | None = None,
        sse_kms_key_id: str | None = None,
    ) -> S3Store:
        """Open ``s3://bucket/prefix`` with the standard AWS configuration; arguments win.

        ``sse``/``sse_kms_key_id`` pass server-side encryption settings through (see the class).

        Raises:
            ConfigError: the URL is not ``s3://bucket[/prefix]``.
            StoreAccessError: the profile does not exist or its credentials cannot be loaded.
        """
        bucket, prefix = parse_s3_url(url)
        sse_arguments(sse, sse_kms_key_id)  # refuse bad settings before touching the network
        try:
            session = boto3.session.Session(profile_name=profile, region_name=region)
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                config=client_config(
                    max_connections=max_connections, path_style=endpoint_url is not None
                ),
            )
            resolved = str(client.meta.endpoint_url)
            if endpoint_url is None and _is_custom_endpoint(resolved):
                # The endpoint came from AWS_ENDPOINT_URL(_S3) or the profile: not AWS, so
                # rebuild with path-style addressing.
                client.close()
                client = session.client(
                    "s3",
                    endpoint_url=resolved,
                    config=client_config(max_connections=max_connections, path_style=True),
                )
        except bexc.BotoCoreError as exc:
            err = translate_error(
                exc,
                action="open",
                bucket=bucket,
                key=None,
                endpoint=endpoint_url or "",
                profile=profile,
            )
            if err is None:
                raise
            raise err from exc
        return cls(
            client=client,
            bucket=bucket,
            prefix=prefix,
            max_connections=max_connections,
            owns_client=True,
            sse=sse,
            sse_kms_key_id=sse_kms_key_id,
        )

    def __repr__(self) -> str:
        return f"S3Store({self.url!r}, endpoint={self.endpoint!r})"

    # -- objects -----------------------------------------------------------------------------

    def put(self, key: str, data: Buffer, *, if_absent: bool = False) -> None:
        full = self._full(key)
        with self._boundary("write", key):
            if if_absent:
                self._client.put_object(
                    Bucket=self.bucket, Key=full, Body=_request_body(data), IfNoneMatch="*",
                    **self._sse_args,
                )
            else:
                self._client.put_object(
                    Bucket=self.bucket, Key=full, Body=_request_body(data), **self._sse_args
                )
        self._bucket_seen = True

    def get(self, key: str) -> bytes:
        resp = self._get_object(key)
        self._bucket_seen = True
        buf = bytearray(resp["ContentLength"])
        self._stream_into(key, 0, memoryview(buf), first_body=resp["Body"])
        return bytes(buf)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(key, start, length, size=None)
        buf = bytearray(length)
        self.get_range_into(key, start, memoryview(buf))
        return bytes(buf)

    def get_range_into(self, key: str, start: int, buf: memoryview) -> None:
        view = buf.cast("B") if buf.format != "B" or buf.ndim != 1 else buf
        check_range(key, start, len(view), size=None)
        if not view:
            # S3 cannot express an empty range; check the object exists and is long enough.
            check_range(key, start, 0, size=self.stat(key).size)
            return
        self._stream_into(key, start, view, first_body=None)

    def stat(self, key: str) -> ObjectInfo:
        full = self._full(key)
        try:
            with self._boundary("stat", key):
                resp = self._client.head_object(Bucket=self.bucket, Key=full)
        except ObjectNotFoundError:
            self._check_bucket()
            raise
        self._bucket_seen = True
        return ObjectInfo(
            key=key, size=resp["ContentLength"], mtime=resp["LastModified"].timestamp()
        )

    def exists(self, key: str) -> bool:
        try:
            self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        paginator = self._client.get_paginator("list_objects_v2")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=self._key_prefix + prefix))
        cut = len(self._key_prefix)
        while True:
            with self._boundary("list", None):
                page = next(pages, None)
            if page is None:
                return
            self._bucket_seen = True
            for obj in page.get("Contents", ()):
                if obj["Key"].endswith("/"):
                    # A folder marker (the JuiceFS gateway lists one for every folder that
                    # held objects); cpv never writes such keys (check_key refuses them).
                    continue
                yield ObjectInfo(
                    key=obj["Key"][cut:], size=obj["Size"], mtime=obj["LastModified"].timestamp()
                )

    def delete(self, key: str) -> None:
        full = self._full(key)
        with self._boundary("delete", key, ignore=("NoSuchKey",)):
            self._client.delete_object(Bucket=self.bucket, Key=full)

    def delete_many(self, keys: Iterable[str]) -> None:
        """Delete every key (missing ones are fine) with DeleteObjects, 1000 keys a request."""
        batch: list[str] = []
        for key in keys:
            batch.append(self._full(key))
            if len(batch) == DELETE_BATCH:
                self._delete_batch(batch)
                batch = []
        if batch:
            self._delete_batch(batch)

    # -- multipart ---------------------------------------------------------------------------

    def start_multipart(self, key: str) -> _S3Upload:
        full = self._full(key)
        with self._boundary("start a multipart upload of", key):
            resp = self._client.create_multipart_upload(
                Bucket=self.bucket, Key=full, **self._sse_args
            )
        return _S3Upload(self, key, full, resp["UploadId"])

    def list_multipart(self, prefix: str = "") -> Iterator[PendingUpload]:
        """Uploads left behind under ``prefix``. Housekeeping only, so it never blocks: when the
        server refuses the listing (an IAM policy without ``s3:ListBucketMultipartUploads``, a
        server that does not implement it) this yields nothing and says so at debug level."""
        if self._list_uploads_refused:
            return
        paginator = self._client.get_paginator("list_multipart_uploads")
        pages = iter(paginator.paginate(Bucket=self.bucket, Prefix=self._key_prefix + prefix))
        cut = len(self._key_prefix)
        while True:
            with self._boundary("list multipart uploads", None):
                try:
                    page = next(pages, None)
                except bexc.ClientError as exc:
                    if _error_code(exc) == "NoSuchUpload":
                        # rclone serve s3 (gofakes3) says so for a bucket that never had an
                        # upload: there is nothing to list.
                        return
                    # Only a refusal of this one request; wrong keys still raise.
                    if _error_code(exc) not in ("AccessDenied", *_UNSUPPORTED_CODES):
                        raise
                    self._list_uploads_refused = True
                    logger.debug("not looking for abandoned uploads in %s: %s", self.url, exc)
                    return
            if page is None:
                return
            for up in page.get("Uploads", ()):
                yield PendingUpload(
                    key=up["Key"][cut:],
                    upload_id=up["UploadId"],
                    initiated=up["Initiated"].timestamp(),
                )

    def abort_multipart(self, key: str, upload_id: str) -> None:
        full = self._full(key)
        with self._boundary("abort the multipart upload of", key, ignore=("NoSuchUpload",)):
            self._client.abort_multipart_upload(Bucket=self.bucket, Key=full, UploadId=upload_id)

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    # -- feature probe -----------------------------------------------------------------------

    def probe_features(self) -> ServerFeatures:
        """Try each feature of :mod:`cpv.store.capabilities` on scratch objects under
        ``probe/<random>/`` (removed afterwards): about a dozen small requests.

        Use :func:`cpv.store.capabilities.store_features`, which remembers the answer. What the
        credentials may not try is reported as ``None``; only a failure that is about the store
        itself (unreachable, every request denied) raises.
        """
        base = f"{PROBE_PREFIX}{secrets.token_hex(8)}/"
        flags: dict[str, bool | None] = dict.fromkeys(
            ("conditional_put", "multipart_listing", "abort_multipart", "multi_delete",
             "ranged_get"))
        seen: dict[str, str] = {}
        body = bytes(range(64))
        made: MutableSequence[str] = []
        try:
            self._probe_conditional_put(base + "once", body, made, flags, seen)
            self._probe_ranged_get(base + "once" if made else None, body, flags, seen)
            if made:
                self._probe_multipart(base + "upload", flags, seen)
                self._probe_multi_delete(base, made, flags, seen)
        finally:
            for key in made:
                try:
                    self.delete(key)
                except CPVError as exc:
                    logger.debug("could not remove probe object %s: %s", key, exc)
        return ServerFeatures(**flags, endpoint=self.endpoint, probed_at=time.time(),
                              details=seen)

    def _probe_conditional_put(
        self, key: str, body: bytes, made: MutableSequence[str], flags: dict[str, bool | None],
        seen: dict[str, str],
    ) -> None:
        try:
            self.put(key, body, if_absent=True)
        except StoreAccessError as exc:
            seen["conditional_put"] = f"no permission to write: {exc}"
            return
        except UnsupportedFeatureError as exc:
            flags["conditional_put"] = False
            seen["conditional_put"] = str(exc)
            self.put(key, body)
            made.append(key)
            return
        made.append(key)
        try:
            self.put(key, body, if_absent=True)
        except PreconditionFailedError:
            flags["conditional_put"] = True
        except UnsupportedFeatureError as exc:
            flags["conditional_put"] = False
            seen["conditional_put"] = str(exc)
        else:
            flags["conditional_put"] = False
            seen["conditional_put"] = "a second create-if-absent overwrote the object (ignored)"

    def _probe_ranged_get(
        self, key: str | None, body: bytes, flags: dict[str, bool | None], seen: dict[str, str]
    ) -> None:
        if key is None:
            # Read-only credentials: try the range on the store's own config object.
            try:
                key, body = "config", self.get("config")
            except CPVError as exc:
                seen["ranged_get"] = f"nothing to read: {exc}"
                return
            if len(body) < 20:
                seen["ranged_get"] = "nothing long enough to read"
                return
        resp = self._get_object(key, "bytes=10-19")
        with self._boundary("read", key):
            got = resp["Body"].read()
        status = int(resp.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
        if got == body[10:20]:
            flags["ranged_get"] = True
            if status != 206:
                seen["ranged_get"] = f"HTTP {status} instead of 206, with just the range"
        else:
            flags["ranged_get"] = False
            seen["ranged_get"] = f"HTTP {status} with {len(got)} bytes for a 10-byte range"

    def _probe_multipart(
        self, key: str, flags: dict[str, bool | None], seen: dict[str, str]
    ) -> None:
        full = self._full(key)
        try:
            with self._boundary("start a multipart upload of", key):
                upload_id = self._client.create_multipart_upload(
                    Bucket=self.bucket, Key=full, **self._sse_args)["UploadId"]
        except (StoreAccessError, UnsupportedFeatureError) as exc:
            seen["multipart_listing"] = seen["abort_multipart"] = f"cannot start one: {exc}"
            return
        try:
            with self._boundary("list multipart uploads", None):
                page = self._client.list_multipart_uploads(Bucket=self.bucket, Prefix=full)
            found = any(u.get("UploadId") == upload_id for u in page.get("Uploads", ()))
            flags["multipart_listing"] = found
            if not found:
                seen["multipart_listing"] = "the listing did not show a started upload"
        except (StoreAccessError, UnsupportedFeatureError) as exc:
            flags["multipart_listing"] = False
            seen["multipart_listing"] = str(exc)
        try:
            with self._boundary("abort the multipart upload of", key):
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=full,
                                                    UploadId=upload_id)
            flags["abort_multipart"] = True
        except (StoreAccessError, UnsupportedFeatureError) as exc:
            flags["abort_multipart"] = False
            seen["abort_multipart"] = str(exc)

    def _probe_multi_delete(
        self,
        base: str,
        made: MutableSequence[str],
        flags: dict[str, bool | None],
        seen: dict[str, str],
    ) -> None:
        keys = [base + "del-1", base + "del-2"]
        for key in keys:
            self.put(key, b"x")
            made.append(key)
        try:
            with self._boundary("delete objects in", None):
                resp = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._full(k)} for k in keys], "Quiet": True},
                )
        except (StoreAccessError, UnsupportedFeatureError) as exc:
            flags["multi_delete"] = False
            seen["multi_delete"] = str(exc)
            return
        except bexc.ClientError as exc:
            flags["multi_delete"] = False
            seen["multi_delete"] = f"{_error_code(exc)}: {exc}"
            return
        left = [k for k in keys if self.exists(k)]
        flags["multi_delete"] = not left and not resp.get("Errors")
        if not flags["multi_delete"]:
            seen["multi_delete"] = f"answered but left {len(left)} of 2 objects"

    # -- internals ---------------------------------------------------------------------------

    def _full(self, key: str) -> str:
        return self._key_prefix + check_key(key)

    @contextmanager
    def _boundary(
        self, action: str, key: str | None, *, ignore: tuple[str, ...] = ()
    ) -> Iterator[None]:
        """Translate botocore errors raised inside the block; swallow the ``ignore`` codes."""
        try:
            yield
        except _TRANSLATED as exc:
            if isinstance(exc, bexc.ClientError) and _error_code(exc) in ignore:
                return
            err = translate_error(
                exc,
                action=action,
                bucket=self.bucket,
                key=None if key is None else self._key_prefix + key,
                endpoint=self.endpoint,
                relative_key=key,
            )
            if err is None:
                raise
            raise err from exc

    def _check_bucket(self) -> None:
        """Raise StoreAccessError if the bucket does not exist (checked once per store)."""
        if self._bucket_seen:
            return
        with self._boundary("open bucket", None):
            self._client.head_bucket(Bucket=self.bucket)
        self._bucket_seen = True

    def _get_object(self, key: str, range_: str = "") -> GetObjectOutputTypeDef:
        """GetObject, asked again when the server's answer is cut inside an error's body.

        botocore reads a streamed operation's error body (a 404's XML) after its retry loop,
        so a connection that breaks there escapes it: rclone does this to a lock object that a
        contender deletes while it is read. A body that breaks after a 200 is
        :meth:`_stream_into`'s to resume.
        """
        for attempt in range(1, BODY_ATTEMPTS + 1):
            try:
                with self._boundary("read", key):
                    if range_:
                        return self._client.get_object(
                            Bucket=self.bucket, Key=self._full(key), Range=range_
                        )
                    return self._client.get_object(Bucket=self.bucket, Key=self._full(key))
            except TransientStoreError as exc:
                if attempt == BODY_ATTEMPTS or not isinstance(exc.__cause__, _ANSWER_CUT):
                    raise
                logger.debug(
                    "attempt %d/%d reading s3://%s/%s from %s: the answer broke (%s); asking again",
                    attempt, BODY_ATTEMPTS, self.bucket, self._full(key), self.endpoint,
                    exc.__cause__,
                )
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _open_range(self, key: str, start: int, length: int) -> StreamingBody:
        resp = self._get_object(key, f"bytes={start}-{start + length - 1}")
        self._bucket_seen = True
        body = resp["Body"]
        got = resp["ContentLength"]
        if got != length:
            body.close()
            match = _CONTENT_RANGE.fullmatch(resp.get("ContentRange", ""))
            size = match.group(1) if match else "?"
            if got > length:
                raise UnsupportedFeatureError(
                    f"{self.endpoint} ignored the Range header reading s3://{self.bucket}/"
                    f"{self._full(key)} ({got} bytes for {length}); cpv reads packs in ranges",
                    feature="ranged_get",
                    hint="use an S3 server that supports ranged GETs (cpv doctor shows what it "
                    "supports)",
                )
            raise StoreError(
                f"short read of {key}: asked bytes {start}..{start + length} of a "
                f"{size}-byte object"
            )
        return body

    def _stream_into(
        self, key: str, start: int, view: memoryview, *, first_body: StreamingBody | None
    ) -> None:
        """Fill ``view`` from ``start``; a broken body is resumed at its first missing byte."""
        done = 0
        body = first_body
        for attempt in range(1, BODY_ATTEMPTS + 1):
            if body is None:
                body = self._open_range(key, start + done, len(view) - done)
            try:
                _fill(body, view[done:])
                return
            except _BrokenBodyError as broken:
                done += broken.filled
                cause = broken.__cause__
                body = None
            if attempt < BODY_ATTEMPTS:
                logger.debug(
                    "attempt %d/%d reading s3://%s/%s from %s: body broke (%s); resuming at %d",
                    attempt, BODY_ATTEMPTS, self.bucket, self._full(key), self.endpoint,
                    cause, start + done,
                )
        raise TransientStoreError(
            f"reading s3://{self.bucket}/{self._full(key)} from {self.endpoint} failed "
            f"{BODY_ATTEMPTS} times: {cause}"
        ) from cause

    def _delete_batch(self, full_keys: Sequence[str]) -> None:
        if self._delete_one_by_one:
            for full in full_keys:
                self.delete(full[len(self._key_prefix) :])
            return
        try:
            with self._boundary("delete objects in", None):
                resp = self._client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in full_keys], "Quiet": True},
                )
        except UnsupportedFeatureError as exc:
            logger.debug("%s: deleting one by one instead: %s", self.url, exc)
            self._delete_one_by_one = True
            self._delete_batch(full_keys)
            return
        errors = [e for e in resp.get("Errors", ()) if e.get("Code") != "NoSuchKey"]
        if not errors:
            return
        first = errors[0]
        code = first.get("Code", "")
        message = (
            f"could not delete {len(errors)} of {len(full_keys)} objects in s3://{self.bucket} "
            f"at {self.endpoint}; first: {first.get('Key', '')}: {code} {first.get('Message', '')}"
        )
        if code in _ACCESS_CODES:
            raise StoreAccessError(message, hint="check AWS credentials / profile")
        raise StoreError(message)


class _S3Upload:
    """One S3 multipart upload; ``upload_part`` is safe from many threads at once."""

    def __init__(self, store: S3Store, key: str, full_key: str, upload_id: str) -> None:
        self.key = key
        self.upload_id = upload_id
        self._store = store
        self._full_key = full_key
        self._lock = threading.Lock()
        self._parts: dict[int, tuple[str, int]] = {}  # part number -> (ETag, size)

    def upload_part(self, part_number: int, data: Buffer) -> None:
        store = self._store
        check_part_number(self.key, part_number, store.caps.max_parts)
        size = memoryview(data).nbytes
        with store._boundary(f"upload part {part_number} of", self.key):
            resp = store._client.upload_part(
                Bucket=store.bucket,
                Key=self._full_key,
                UploadId=self.upload_id,
                PartNumber=part_number,
                Body=_request_body(data),
            )
        with self._lock:
            self._parts[part_number] = (resp["ETag"], size)

    def complete(self) -> None:
        store = self._store
        with self._lock:
            parts = sorted(self._parts.items())
        check_part_sequence(self.key, [number for number, _ in parts])
        for number, (_, size) in parts[:-1]:
            if size < store.caps.min_part_size:
                raise StoreError(
                    f"part {number} of {self.key} is {size} bytes; every part but the last must "
                    f"be at least {store.caps.min_part_size} bytes on S3",
                    hint="use larger parts (caps.min_part_size), or a single put for small objects",
                )
        with store._boundary("complete the multipart upload of", self.key):
            store._client.complete_multipart_upload(
                Bucket=store.bucket,
                Key=self._full_key,
                UploadId=self.upload_id,
                MultipartUpload={
                    "Parts": [{"ETag": etag, "PartNumber": number} for number, (etag, _) in parts]
                },
            )
        store._bucket_seen = True

    def abort(self) -> None:
        self._store.abort_multipart(self.key, self.upload_id)


class _ViewReader:
    """A seekable file-like over a memoryview whose ``read`` returns slices, not copies.

    botocore accepts bytes, bytearray or file-likes as a body, not memoryviews; this lets a
    caller's buffer (an mmap, a slice of a pack) go to the socket without being copied. botocore
    seeks it back to 0 when it retries a request.
    """

    def __init__(self, view: memoryview) -> None:
        self._view = view
        self._pos = 0

    def read(self, size: int | None = -1) -> memoryview:
        total = len(self._view)
        end = total if size is None or size < 0 else min(total, self._pos + size)
        chunk = self._view[self._pos : end]
        self._pos = max(self._pos, end)
        return chunk

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True


def _request_body(data: Buffer) -> IO[bytes]:
    """What to hand botocore as a body without copying ``data``.

    Even ``bytes`` go through the reader: botocore would wrap them in a ``BytesIO`` whose
    ``read`` copies every 128 KiB block, while the reader hands out views.
    """
    view = memoryview(data)
    reader = _ViewReader(view if view.format == "B" and view.ndim == 1 else view.cast("B"))
    return cast("IO[bytes]", reader)  # duck-typed: read/seek/tell are all botocore uses


def _add_content_md5(params: dict[str, Any], **_: Any) -> None:
    """Give a DeleteObjects request a Content-MD5 header (see S3Store.__init__ for why)."""
    headers = params.setdefault("headers", {})
    body = params.get("body")
    if isinstance(body, (bytes, bytearray)) and "Content-MD5" not in headers:
        digest = hashlib.md5(body, usedforsecurity=False).digest()
        headers["Content-MD5"] = base64.b64encode(digest).decode()


def _drop_expect_header(request: Any, **_: Any) -> None:
    """Send bodies without ``Expect: 100-continue`` (see S3Store.__init__ for why)."""
    if "Expect" in request.headers:
        del request.headers["Expect"]


class _BrokenBodyError(Exception):
    """A response body stopped early; ``filled`` bytes of the view were written."""

    def __init__(self, filled: int) -> None:
        super().__init__(f"body broke after {filled} bytes")
        self.filled = filled


def _fill(body: StreamingBody, view: memoryview) -> None:
    """Read exactly ``len(view)`` body bytes into ``view``, or raise _BrokenBodyErrorError."""
    if not view:
        body.read()
        return
    readinto, release = _raw_reader(body)
    filled = 0
    try:
        while filled < len(view):
            n = readinto(view[filled:])
            if not n:
                raise _ShortBodyError(f"connection closed after {filled} of {len(view)} bytes")
            filled += n
    except _BODY_ERRORS as exc:
        body.close()
        raise _BrokenBodyError(filled) from exc
    release()


def _raw_reader(body: StreamingBody) -> tuple[Callable[[memoryview], int], Callable[[], None]]:
    """``readinto`` that reaches the socket with no copy, and how to hand the connection back.

    botocore's StreamingBody wraps a urllib3 response, which wraps an ``http.client`` response.
    urllib3 2's ``readinto`` is ``read()`` plus a copy, and ``http.client``'s ``read(n)`` copies
    again; ``http.client``'s ``readinto`` receives straight into our buffer. That path is taken
    only when urllib3 has read nothing yet and does no decoding (botocore asks for raw bytes);
    otherwise the public urllib3 ``readinto`` is used.
    """
    raw: Any = getattr(body, "_raw_stream", None)
    fp = getattr(raw, "_fp", None)
    if (
        isinstance(fp, http.client.HTTPResponse)
        and getattr(raw, "_fp_bytes_read", None) == 0
        and getattr(raw, "_decoder", None) is None
        and callable(getattr(raw, "release_conn", None))
    ):
        # Once http.client has read Content-Length bytes it marks itself closed, so the
        # connection can go back to urllib3's pool, as urllib3 does after its own reads.
        return fp.readinto, raw.release_conn
    if raw is not None and callable(getattr(raw, "readinto", None)):
        return raw.readinto, _nothing

    def copy_into(view: memoryview) -> int:
        data = body.read(len(view))
        view[: len(data)] = data
        return len(data)

    return copy_into, _nothing


def _nothing() -> None:
    pass


def _is_custom_endpoint(endpoint: str) -> bool:
    host = urlsplit(endpoint).hostname or ""
    return not _AWS_HOST.search(host)


def _error_code(exc: bexc.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate_error(
    exc: Exception,
    *,
    action: str,
    bucket: str,
    key: str | None,
    endpoint: str,
    relative_key: str | None = None,
    profile: str | None = None,
) -> CPVError | None:
    """The one place a botocore error becomes a cpv error; ``None`` means "not ours, re-raise".

    Args:
        exc: what botocore raised (after its own retries).
        action: what was being done, for the message ("read", "write", ...).
        bucket: the bucket.
        key: the full key in the bucket, or None for bucket-level operations.
        endpoint: the endpoint URL, for the message.
        relative_key: the key as the caller named it (for ``ObjectNotFoundError.key``).
        profile: the AWS profile asked for, if any.
    """
    where = f"s3://{bucket}/{key}" if key is not None else f"s3://{bucket}"
    at = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, bexc.ClientError):
        code = _error_code(exc)
        meta = exc.response.get("ResponseMetadata", {})
        status = int(meta.get("HTTPStatusCode", 0) or 0)
        message = str(exc.response.get("Error", {}).get("Message", "")) or code
        if code == "NoSuchBucket" or (status == 404 and key is None and code != "NoSuchUpload"):
            return StoreAccessError(
                f"bucket {bucket} does not exist{at}",
                hint="create the bucket, or fix the store URL",
            )
        if code == "NoSuchUpload":
            return StoreError(
                f"the multipart upload of {where} does not exist (completed or aborted){at}",
                hint="start a new multipart upload",
            )
        if code in ("NoSuchKey", "404", "NotFound") or status == 404:
            name = relative_key if relative_key is not None else (key or "")
            return ObjectNotFoundError(name, message=f"object not found: {where}{at}")
        if code in _ACCESS_CODES or status == 403:
            return StoreAccessError(
                f"access denied to {where}{at}: {code} ({action})",
                hint="check AWS credentials / profile, and that the IAM policy allows this "
                f"({action}) on the store's prefix",
            )
        if code in _UNSUPPORTED_CODES or status in (405, 501):
            return UnsupportedFeatureError(
                f"the server{at} does not support {action} {where}: {code or status}",
                feature=action,
                hint="this S3-compatible server lacks the feature; cpv doctor shows what it "
                "supports (the project's store-contract page lists tested servers)",
            )
        if code == "PreconditionFailed" or status == 412:
            return PreconditionFailedError(relative_key if relative_key is not None else where)
        if code == "InvalidRange" or status == 416:
            return StoreError(f"short read of {where}{at}: the range starts past the end")
        if code in _TRANSIENT_CODES or status >= 500:
            return TransientStoreError(
                f"{action} {where}{at} failed after retries: {code} {message}"
            )
        return None
    if isinstance(exc, bexc.ProfileNotFound):
        return StoreAccessError(
            f"AWS profile {profile or exc.kwargs.get('profile', '')!r} not found",
            hint="check the profile name (aws configure list-profiles) or change the aws.profile "
                 "setting (cpv config set aws.profile NAME)",
        )
    if isinstance(exc, _CREDENTIAL_ERRORS):
        return StoreAccessError(
            f"cannot {action} {where}: no usable AWS credentials ({exc})",
            hint="check AWS credentials / profile: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or choose a profile (AWS_PROFILE, or cpv config set "
            "aws.profile NAME)",
        )
    if isinstance(exc, bexc.SSLError):
        return StoreUnreachableError(
            f"TLS error talking to {endpoint or 'S3'} for {where}: {exc}",
            hint="check the endpoint URL (http vs https) and the CA bundle (AWS_CA_BUNDLE)",
        )
    if isinstance(exc, (bexc.EndpointConnectionError, bexc.ConnectionError, bexc.ReadTimeoutError)):
        target = endpoint or str(exc.kwargs.get("endpoint_url", "")) or "the S3 endpoint"
        return StoreUnreachableError(f"cannot reach {target} to {action} {where}: {exc}")
    if isinstance(exc, (bexc.HTTPClientError, bexc.CapacityNotAvailableError)):
        return TransientStoreError(f"{action} {where}{at} failed after retries: {exc}")
    if isinstance(exc, _ANSWER_CUT):
        return TransientStoreError(
            f"{action} {where}{at} failed: the connection broke in the middle of the server's "
            f"answer ({exc})")
    return None
