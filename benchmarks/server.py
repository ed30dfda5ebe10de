"""The one SeaweedFS server of a benchmark run, with its Prometheus metrics switched on.

It is ``tests/s3server.py``'s :class:`S3Server` (the project's launcher) plus ``-metricsPort``:
SeaweedFS then counts, per bucket, the S3 requests it served (by type and status) and the body
bytes it received and sent. Those counters measure every tool the same way, cpv included, without
trusting anything the tool says about itself. The server's CPU time comes from psutil.
"""

from __future__ import annotations

import contextlib
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest import mock

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.s3server import S3Server, find_weed  # noqa: E402

_LINE = re.compile(r"^(\w+)\{([^}]*)\}\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Counters:
    """SeaweedFS's own counters for one bucket, plus its process CPU seconds."""

    requests: int
    by_type: dict[str, int]
    received_bytes: int
    sent_bytes: int
    cpu_seconds: float

    def minus(self, before: Counters) -> Counters:
        types = set(self.by_type) | set(before.by_type)
        return Counters(
            requests=self.requests - before.requests,
            by_type={
                t: self.by_type.get(t, 0) - before.by_type.get(t, 0)
                for t in sorted(types)
                if self.by_type.get(t, 0) - before.by_type.get(t, 0)
            },
            received_bytes=self.received_bytes - before.received_bytes,
            sent_bytes=self.sent_bytes - before.sent_bytes,
            cpu_seconds=self.cpu_seconds - before.cpu_seconds,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BenchServer:
    """Start with :meth:`start`; ``server`` is the underlying :class:`S3Server`."""

    def __init__(self, server: S3Server, metrics_port: int) -> None:
        self.server = server
        self.metrics_port = metrics_port
        self._proc: Any = None
        with contextlib.suppress(ImportError):
            import psutil

            self._proc = psutil.Process(server.process.pid)

    @classmethod
    def start(cls, tmpdir: Path) -> BenchServer:
        port = _free_port()
        real_popen = subprocess.Popen

        def popen(args: list[str], **kwargs: Any) -> Any:
            # S3Server builds the ``weed mini`` command line; add the metrics listener to it.
            return real_popen([*args, f"-metricsPort={port}", "-metricsIp=127.0.0.1"], **kwargs)

        with mock.patch.object(subprocess, "Popen", popen):
            server = S3Server.start(tmpdir)
        return cls(server, port)

    @property
    def pid(self) -> int:
        return int(self.server.process.pid)

    def cpu_seconds(self) -> float:
        if self._proc is None:
            return 0.0
        t = self._proc.cpu_times()
        return float(t.user + t.system + t.children_user + t.children_system)

    def rss_bytes(self) -> int:
        return int(self._proc.memory_info().rss) if self._proc is not None else 0

    def counters(self) -> Counters:
        """Current totals for the benchmark bucket (SeaweedFS counts HEAD requests as GET)."""
        bucket = self.server.bucket
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10
        ) as r:
            text = r.read().decode()
        requests = 0
        by_type: dict[str, int] = {}
        received = sent = 0
        for line in text.splitlines():
            m = _LINE.match(line)
            if not m:
                continue
            name, labels_raw, value = m.groups()
            labels = dict(_LABEL.findall(labels_raw))
            if labels.get("bucket") != bucket:
                continue
            v = int(float(value))
            if name == "SeaweedFS_s3_request_total":
                requests += v
                by_type[labels.get("type", "?")] = by_type.get(labels.get("type", "?"), 0) + v
            elif name == "SeaweedFS_s3_bucket_traffic_received_bytes_total":
                received += v
            elif name == "SeaweedFS_s3_bucket_traffic_sent_bytes_total":
                sent += v
        return Counters(requests, by_type, received, sent, self.cpu_seconds())

    def vacuum(self) -> None:
        """Reclaim deleted objects' disk space now (SeaweedFS otherwise keeps it until vacuum).

        Without this a full run would write ~180 GiB. ``/vol/vacuum`` on the master answers 200
        but did nothing in ``weed mini`` 4.48; ``weed shell``'s ``volume.vacuum`` works.
        """
        master = f"127.0.0.1:{self.server.ports['master']}"
        script = "lock\nvolume.vacuum -garbageThreshold 0.0001\nunlock\n"
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(
                [find_weed(), "shell", f"-master={master}"],
                input=script,
                text=True,
                capture_output=True,
                timeout=600,
                check=False,
            )

    def list_prefix(self, client: Any, prefix: str) -> Iterator[tuple[str, int]]:
        for page in client.get_paginator("list_objects_v2").paginate(
            Bucket=self.server.bucket, Prefix=prefix.rstrip("/") + "/"
        ):
            for o in page.get("Contents", []):
                yield o["Key"], int(o["Size"])

    def delete_prefix(self, client: Any, prefix: str) -> None:
        keys = [k for k, _ in self.list_prefix(client, prefix)]
        for i in range(0, len(keys), 1000):
            client.delete_objects(
                Bucket=self.server.bucket,
                Delete={"Objects": [{"Key": k} for k in keys[i : i + 1000]], "Quiet": True},
            )

    def stop(self) -> None:
        self.server.stop()
