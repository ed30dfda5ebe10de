"""No secret is ever committed or printed, and a failing Git remote says what ssh said.

The real `cpv` program, a real workspace repository, real files. Every command's stdout and
stderr is kept and searched for the secret at the end of each test.
"""

from __future__ import annotations

import http.server
import json
import shlex
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Result, Runner, git, write_checkpoint

EXIT_ERROR = 1
WEBHOOK_SECRET = "T0AAA1111/B0BBB2222/XyzSecretWebhook123"
WEBHOOK = f"https://hooks.slack.com/services/{WEBHOOK_SECRET}"
TOKEN = "glpat-abcdefghij0123456789"
TOKEN_REMOTE = f"https://{TOKEN}@gitlab.example.test/team/model.git"


class _Recorder:
    """Runs cpv and keeps everything it printed."""

    def __init__(self, cpv: Runner) -> None:
        self.cpv = cpv
        self.printed: list[str] = []

    def __call__(self, *args: str, **kwargs: object) -> Result:
        result = self.cpv(*args, **kwargs)
        self.printed += [result.stdout, result.stderr]
        return result

    def never_printed(self, secret: str) -> None:
        assert self.printed
        assert not any(secret in out for out in self.printed), "\n".join(self.printed)


def test_a_webhook_set_in_a_workspace_stays_private_and_redacted(
    cpv: Runner, tmp_path: Path, home: Path, env: dict[str, str]
) -> None:
    run = _Recorder(cpv)
    ws = tmp_path / "ws"
    run("init", str(ws), "--store", str(tmp_path / "store"), "-q")
    said = run("config", "set", "notify.webhook_url", WEBHOOK, cwd=ws)
    private = home / ".cpv" / "config.json"
    assert "is a secret" in said.stdout and str(private) in said.stdout
    assert json.loads(private.read_text())["notify"]["webhook_url"] == WEBHOOK
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert WEBHOOK_SECRET not in (ws / ".cpv" / "config.json").read_text()
    as_json = run("config", "set", "notify.webhook_url", WEBHOOK, "--json", cwd=ws).json()
    assert as_json["scope"] == "user" and as_json["value"] == "https://hooks.slack.com/…"
    # It is in effect, and shown redacted everywhere.
    shown = run("config", "show", "--json", cwd=ws).json()
    assert shown["notify"]["webhook_url"] == "https://hooks.slack.com/…"
    assert run("config", "get", "notify.webhook_url", cwd=ws).stdout.strip() == (
        "https://hooks.slack.com/…")
    run("config", "show", cwd=ws)
    # A version is pushed and everything in the folder committed: Git never sees the webhook.
    write_checkpoint(ws / "model", 50_000, seed=1)
    run("push", "--tag", "-q", cwd=ws)
    git(ws, "add", "-A", env=env)
    git(ws, "commit", "-q", "--allow-empty", "-m", "everything", env=env)
    history = git(ws, "log", "-p", "--all", env=env) + git(ws, "show", env=env)
    assert ".cpv/config.json" in git(ws, "ls-files", env=env)
    assert WEBHOOK_SECRET not in history
    run.never_printed(WEBHOOK_SECRET)
    # Unset inside the workspace takes it out of the private file, where set put it.
    run("config", "unset", "notify.webhook_url", cwd=ws)
    assert "notify" not in json.loads(private.read_text())


def test_a_committed_webhook_is_refused_with_the_fix(
    cpv: Runner, tmp_path: Path, env: dict[str, str]
) -> None:
    run = _Recorder(cpv)
    ws = tmp_path / "ws"
    run("init", str(ws), "--store", str(tmp_path / "store"), "-q")
    shared = ws / ".cpv" / "config.json"
    shared.write_text(json.dumps({"notify": {"webhook_url": WEBHOOK}}))
    refused = run("config", "show", cwd=ws, expect=EXIT_ERROR)
    first = refused.stderr.splitlines()[0]
    assert str(shared) in first and "notify.webhook_url" in first and "secret" in first
    assert "cpv config unset notify.webhook_url" in refused.stderr
    assert "cpv config set --global notify.webhook_url" in refused.stderr
    run("status", cwd=ws, expect=EXIT_ERROR)
    # The fix it names works, and cpv is usable again.
    run("config", "unset", "notify.webhook_url", cwd=ws)
    assert WEBHOOK_SECRET not in shared.read_text()
    run("config", "show", cwd=ws)
    run.never_printed(WEBHOOK_SECRET)


def test_a_token_remote_is_refused_everywhere_and_never_printed(
    cpv: Runner, tmp_path: Path, home: Path, env: dict[str, str]
) -> None:
    run = _Recorder(cpv)
    fresh = tmp_path / "fresh"
    refused = run("init", str(fresh), "--remote", TOKEN_REMOTE, expect=EXIT_ERROR)
    assert "GitLab token" in refused.stderr and "SSH remote" in refused.stderr
    assert not (fresh / ".git").exists()
    ws = tmp_path / "ws"
    run("init", str(ws), "--store", str(tmp_path / "store"), "-q")
    run("config", "set", "git.remote_url", TOKEN_REMOTE, cwd=ws, expect=EXIT_ERROR)
    run("config", "set", "--global", "git.remote_url", TOKEN_REMOTE, cwd=ws, expect=EXIT_ERROR)
    run("init", str(ws), "--remote", TOKEN_REMOTE, expect=EXIT_ERROR)
    github = "github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz0123"
    run("init", str(ws), "--remote", f"https://{github}@github.com/t/m.git", expect=EXIT_ERROR)
    run.never_printed(TOKEN)
    run.never_printed(github)
    for written in [*ws.rglob("config*"), *home.rglob("*.json")]:
        if written.is_file():
            assert TOKEN not in written.read_text(errors="replace")
    assert TOKEN not in git(ws, "log", "-p", "--all", env=env)


def test_an_ssh_failure_reaches_the_user_with_sshs_words(
    cpv: Runner, tmp_path: Path, env: dict[str, str]
) -> None:
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    said = "git@git.example.test: Permission denied (publickey)."
    fake.write_text(f"#!/bin/sh\necho {shlex.quote(said)} >&2\nexit 255\n")
    fake.chmod(0o755)
    r = cpv("init", str(tmp_path / "ws"), "--store", str(tmp_path / "store"), "--remote",
            "git@git.example.test:team/model.git", env_extra={"GIT_SSH_COMMAND": str(fake)},
            expect=EXIT_ERROR)
    assert said in r.stderr
    assert "ssh -T git@git.example.test" in r.stderr
    assert "Could not read from remote repository" not in r.stderr
    # A push to that remote keeps the version, and still says what ssh said and what to do.
    ws = tmp_path / "ws2"
    cpv("init", str(ws), "--store", str(tmp_path / "store2"), "-q")
    git(ws, "remote", "add", "origin", "git@git.example.test:team/model.git", env=env)
    write_checkpoint(ws / "model", 20_000, seed=4)
    pushed = cpv("push", "--tag", cwd=ws, env_extra={"GIT_SSH_COMMAND": str(fake)},
                 expect=EXIT_ERROR)
    assert said in pushed.stderr and "nothing is lost" in pushed.stderr
    assert "ssh -T git@git.example.test" in pushed.stderr


class _LoginWall(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def login_wall() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LoginWall)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/team/model.git"
    finally:
        server.shutdown()
        server.server_close()


def test_an_https_remote_that_wants_a_login_never_prompts(
    tmp_path: Path, env: dict[str, str], login_wall: str
) -> None:
    from tests.cli.conftest import cpv_command

    started = time.monotonic()
    done = subprocess.run(
        [*cpv_command(), "init", str(tmp_path / "ws"), "--store", str(tmp_path / "store"),
         "--remote", login_wall], env=env, stdin=subprocess.DEVNULL, capture_output=True,
        text=True, timeout=60, check=False, start_new_session=True,
    )
    assert time.monotonic() - started < 30
    assert done.returncode == EXIT_ERROR, done.stderr
    assert "terminal prompts disabled" in done.stderr
    assert "SSH remote" in done.stderr and "outside cpv" in done.stderr
    assert "credential" not in done.stderr.lower()


def test_a_token_remote_set_with_git_itself_is_never_printed(
    cpv: Runner, tmp_path: Path, env: dict[str, str]
) -> None:
    run = _Recorder(cpv)
    ws = tmp_path / "ws"
    run("init", str(ws), "--store", str(tmp_path / "store"), "-q")
    # Nobody listens on port 9 (discard) here, so git fails to connect, and says where.
    git(ws, "remote", "add", "origin", f"https://{TOKEN}@127.0.0.1:9/team/model.git", env=env)
    shown = run("status", "--json", cwd=ws).json()
    assert shown["remote"] == "https://***@127.0.0.1:9/team/model.git"
    run("status", cwd=ws)
    write_checkpoint(ws / "model", 20_000, seed=3)
    run("push", "--tag", cwd=ws, expect=EXIT_ERROR)
    run.never_printed(TOKEN)
