"""A fault-injecting HTTP proxy on 127.0.0.1, between cpv's S3 client and the real S3 server.

It forwards requests byte-for-byte (the Host header too, so SigV4 signatures stay valid) and can,
per request, answer with a throttling or server error, reset the connection in the middle of the
response body, drop the response after the server executed the request, or stall. Faults are
programmed as rules: ``proxy.add(Fault("slowdown", method="PUT", path="/packs/", times=2))``.
Every request is logged with the fault applied, so tests assert what really happened.

Only loopback addresses are ever contacted; every loop is bounded (tests stop the proxy).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import socketserver
import struct
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType
from urllib.parse import urlsplit

ERROR_BODIES = {
    "slowdown": (503, "Slow Down", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>"
                 b"SlowDown</Code><Message>Please reduce your request rate.</Message></Error>"),
    "unavailable": (503, "Service Unavailable", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                    b"<Error><Code>ServiceUnavailable</Code><Message>busy</Message></Error>"),
    "internal": (500, "Internal Server Error", b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                 b"<Error><Code>InternalError</Code><Message>We encountered an internal error."
                 b"</Message></Error>"),
}
ACTIONS = frozenset({*ERROR_BODIES, "reset_mid_body", "drop_response", "reset_before", "stall"})


@dataclass
class Fault:
    """One rule: requests matching ``method`` and containing ``path`` (and ``query``) get
    ``action``, ``times`` times (None = forever). ``stall_s`` is the delay of a ``stall``."""

    action: str
    method: str | None = None
    path: str = ""
    query: str | None = None
    times: int | None = 1
    stall_s: float = 3.0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"unknown fault {self.action!r}")

    def matches(self, method: str, target: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        path, _, query = target.partition("?")
        if self.method is not None and method != self.method:
            return False
        if self.path not in path:
            return False
        return self.query is None or self.query in query


@dataclass
class Logged:
    method: str
    target: str
    status: int | None
    fault: str | None


@dataclass
class _State:
    faults: list[Fault] = field(default_factory=list)
    log: list[Logged] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class FaultProxy:
    """``with FaultProxy(upstream_url) as proxy: ... proxy.url ...``"""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        assert parts.hostname in ("127.0.0.1", "localhost", "::1"), "loopback only"
        self.upstream = (parts.hostname, parts.port or 80)
        self.state = _State()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                proxy._serve_connection(self.request)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # -- programming -----------------------------------------------------------------------

    def add(self, fault: Fault) -> Fault:
        with self.state.lock:
            self.state.faults.append(fault)
        return fault

    def clear(self) -> None:
        with self.state.lock:
            self.state.faults.clear()

    def faults_applied(self, action: str | None = None) -> list[Logged]:
        with self.state.lock:
            return [e for e in self.state.log if e.fault and (action is None or e.fault == action)]

    @property
    def requests(self) -> list[Logged]:
        with self.state.lock:
            return list(self.state.log)

    def _pick(self, method: str, target: str) -> Fault | None:
        with self.state.lock:
            for fault in self.state.faults:
                if fault.matches(method, target):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, method: str, target: str, status: int | None, fault: Fault | None) -> None:
        with self.state.lock:
            self.state.log.append(Logged(method, target, status, fault.action if fault else None))

    # -- serving ---------------------------------------------------------------------------

    def _serve_connection(self, client: socket.socket) -> None:
        rfile = client.makefile("rb")
        upstream: http.client.HTTPConnection | None = None
        try:
            while True:
                request = _read_request(rfile)
                if request is None:
                    return
                method, target, headers, body = request
                fault = self._pick(method, target)
                action = fault.action if fault else None
                if action == "reset_before":
                    self._record(method, target, None, fault)
                    _reset(client)
                    return
                if action in ERROR_BODIES:
                    status, reason, payload = ERROR_BODIES[action]
                    self._record(method, target, status, fault)
                    _send(client, status, reason, [("Content-Type", "application/xml")], payload,
                          head=False)
                    continue
                if action == "stall":
                    assert fault is not None
                    self._record(method, target, None, fault)  # logged now: the client moves on
                    time.sleep(fault.stall_s)
                    fault = action = None
                if upstream is None:
                    upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
                upstream.putrequest(method, target, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    upstream.putheader(name, value)
                upstream.endheaders(body if body else None)
                resp = upstream.getresponse()
                payload = resp.read()
                out_headers = [
                    (k, v) for k, v in resp.getheaders()
                    if k.lower() not in ("transfer-encoding", "connection")
                ]
                self._record(method, target, resp.status, fault)
                if action == "drop_response":
                    _reset(client)  # the server did it; the client never hears so
                    return
                if action == "reset_mid_body" and len(payload) > 1:
                    head = _response_head(resp.status, resp.reason, out_headers, len(payload))
                    client.sendall(head + payload[: len(payload) // 2])
                    _reset(client)
                    return
                _send(client, resp.status, resp.reason, out_headers, payload, head=method == "HEAD")
        except (OSError, http.client.HTTPException):
            return
        finally:
            if upstream is not None:
                upstream.close()
            with contextlib.suppress(OSError):
                rfile.close()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _read_request(rfile: object) -> tuple[str, str, list[tuple[str, str]], bytes] | None:
    readline = rfile.readline  # type: ignore[attr-defined]
    line = readline(65537)
    if not line:
        return None
    method, target, _version = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
    headers: list[tuple[str, str]] = []
    length = 0
    while True:
        raw = readline(65537)
        if raw in (b"\r\n", b"\n", b""):
            break
        name, _, value = raw.decode("latin-1").partition(":")
        name, value = name.strip(), value.strip()
        headers.append((name, value))
        if name.lower() == "content-length":
            length = int(value)
        if name.lower() == "transfer-encoding":
            raise http.client.HTTPException("chunked requests are not supported by the proxy")
    body = rfile.read(length) if length else b""  # type: ignore[attr-defined]
    return method, target, headers, body


def _response_head(status: int, reason: str, headers: list[tuple[str, str]], length: int) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}"]
    lines += [f"{k}: {v}" for k, v in headers if k.lower() != "content-length"]
    lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send(
    client: socket.socket,
    status: int,
    reason: str,
    headers: list[tuple[str, str]],
    payload: bytes,
    *,
    head: bool,
) -> None:
    if head:
        lines = [f"HTTP/1.1 {status} {reason}", *(f"{k}: {v}" for k, v in headers)]
        client.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        return
    client.sendall(_response_head(status, reason, headers, len(payload)) + payload)


def _reset(client: socket.socket) -> None:
    """Close with RST (SO_LINGER 0), as a dying middlebox or server does."""
    with contextlib.suppress(OSError):
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        client.close()
