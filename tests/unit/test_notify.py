"""post_event against a real HTTP server on 127.0.0.1 (in a thread), and real failures."""

from __future__ import annotations

import json
import math
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from cpv.errors import CPVError
from cpv.notify import NotifyError, post_event, summarize_event


@dataclass
class Receiver:
    """A webhook receiver: records requests, answers with ``status`` and ``body``."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: bytes = b"ok"
    hold: threading.Event | None = None  # when set, the handler waits for it before answering


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: Receiver | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            assert state is not None
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            state.requests.append(
                {
                    "path": self.path,
                    "headers": dict(self.headers.items()),
                    "json": json.loads(raw.decode("utf-8")),
                }
            )
            if state.hold is not None:
                state.hold.wait(30)
            self.send_response(state.status)
            self.send_header("Content-Length", str(len(state.body)))
            self.end_headers()
            self.wfile.write(state.body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    class Server(ThreadingHTTPServer):
        def handle_error(self, request: object, client_address: object) -> None:
            pass  # the timeout test's client hangs up before the answer; that is expected

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    state = Receiver(url=f"http://127.0.0.1:{port}/services/T000/B000/secret-token")
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        if state.hold is not None:
            state.hold.set()
        server.shutdown()
        server.server_close()
        thread.join()


def test_post_event_sends_slack_compatible_json(receiver: Receiver) -> None:
    event = {
        "event": "tag",
        "team": "AI-Convo",
        "model": "faster-whisper",
        "tag": "v1.3",
        "metrics": {"loss": 0.245, "accuracy": 0.967, "bleu": math.nan},
        "files": [Path("model.safetensors")],
    }
    post_event(receiver.url, event)
    assert len(receiver.requests) == 1
    req = receiver.requests[0]
    assert req["path"] == "/services/T000/B000/secret-token"
    assert req["headers"]["Content-Type"].startswith("application/json")
    assert req["headers"]["User-Agent"].startswith("cpv/")
    body = req["json"]
    assert body["text"] == "cpv tag: team=AI-Convo, model=faster-whisper, tag=v1.3"
    assert body["cpv"]["tag"] == "v1.3"
    assert body["cpv"]["metrics"] == {"loss": 0.245, "accuracy": 0.967, "bleu": "nan"}
    assert body["cpv"]["files"] == ["model.safetensors"]


def test_summary_is_one_bounded_line() -> None:
    assert summarize_event({"summary": "pushed\nv1.0\t ok"}) == "pushed v1.0 ok"
    long = summarize_event({"event": "push", "message": "x" * 1000})
    assert len(long) == 300
    assert long.endswith("…")
    assert summarize_event({}) == "cpv event"


def test_http_error_status_is_notify_error(receiver: Receiver) -> None:
    receiver.status = 400
    receiver.body = b"invalid_payload"
    with pytest.raises(NotifyError) as info:
        post_event(receiver.url, {"event": "tag"})
    err = info.value
    assert isinstance(err, CPVError)
    assert "HTTP 400" in str(err)
    assert "invalid_payload" in str(err)
    assert "secret-token" not in err.one_line()  # the webhook URL's token is never shown
    assert "notify.webhook_url" in err.hint


def test_unreachable_port_is_notify_error() -> None:
    with socket.socket() as sock:  # a port that was free a moment ago: nobody listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(NotifyError, match="unreachable") as info:
        post_event(f"http://127.0.0.1:{port}/hooks/secret-token", {"event": "push"})
    assert "secret-token" not in info.value.one_line()


def test_timeout_is_notify_error(receiver: Receiver) -> None:
    receiver.hold = threading.Event()
    with pytest.raises(NotifyError, match="unreachable"):
        post_event(receiver.url, {"event": "push"}, timeout_s=0.2)
    receiver.hold.set()


@pytest.mark.parametrize("url", ["ftp://host/x", "not a url", "file:///etc/passwd"])
def test_non_http_url_is_refused(url: str) -> None:
    with pytest.raises(NotifyError, match="not an http"):
        post_event(url, {"event": "push"})
