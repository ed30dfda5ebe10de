"""What a failed Git remote says: ssh's own reason with a hint for it, and HTTPS never prompts.

No sshd here: ``GIT_SSH_COMMAND`` points at a tiny script that prints what ssh really prints and
exits 255, which is exactly how git sees ssh fail. HTTPS goes to real sockets on 127.0.0.1: a
closed port, and a small HTTP server answering 401 to the smart-HTTP ``info/refs`` request.
"""

from __future__ import annotations

import http.server
import shlex
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpv.errors import GitRemoteError, VersioningError
from cpv.versioning.gitrepo import GitRepo
from tests.versioning.conftest import git

HOST = "git.example.test"
SSH_URL = f"git@{HOST}:team/model.git"

# (what ssh prints, words the hint must contain)
SSH_FAILURES = [
    ("Host key verification failed.", f"ssh-keyscan {HOST}"),
    (f"git@{HOST}: Permission denied (publickey).", f"ssh -T git@{HOST}"),
    (f"ssh: Could not resolve hostname {HOST}: Name or service not known",
     f"host name {HOST} is not known"),
    (f"ssh: connect to host {HOST} port 22: Connection refused", "refused the connection"),
    (f"ssh: connect to host {HOST} port 22: Connection timed out", "check your network"),
]


def _fake_ssh(folder: Path, message: str) -> str:
    # Named ssh so that git passes it ssh's options (a port, for one), as it would to ssh.
    script = folder / "bin" / "ssh"
    script.parent.mkdir(exist_ok=True)
    script.write_text(f"#!/bin/sh\necho {shlex.quote(message)} >&2\nexit 255\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.mark.parametrize(("said", "hint"), SSH_FAILURES, ids=lambda v: v[:24])
def test_ssh_failure_keeps_sshs_line_and_hints_at_its_fix(
    tmp_path: Path, repo: GitRepo, said: str, hint: str
) -> None:
    ssh = _fake_ssh(tmp_path, said)
    with pytest.raises(GitRemoteError) as checked:
        GitRepo.check_remote(SSH_URL, ssh_command=ssh)
    assert said.rstrip(".") in str(checked.value)
    assert "Could not read from remote repository" not in str(checked.value)
    assert hint in checked.value.hint
    # The same through a workspace's remote, as push/fetch see it.
    with GitRepo.open(repo.root, ssh_command=ssh) as workspace:
        workspace.set_remote("origin", SSH_URL)
        with pytest.raises(GitRemoteError) as fetched:
            workspace.fetch("origin")
    assert said.rstrip(".") in str(fetched.value) and SSH_URL in str(fetched.value)
    assert hint in fetched.value.hint


def test_a_changed_host_key_says_so(tmp_path: Path) -> None:
    ssh = _fake_ssh(tmp_path, "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@\n"
                              "@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\n"
                              "Host key verification failed.")
    with pytest.raises(GitRemoteError) as info:
        GitRepo.check_remote(f"ssh://git@{HOST}:2222/team/model.git", ssh_command=ssh)
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in str(info.value)
    assert f"ssh-keygen -R {HOST}" in info.value.hint


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    """A Git host that wants a login for everything, as a private HTTPS repository does."""

    def do_GET(self) -> None:
        self.send_response(401)
        self.send_header("WWW-Authenticate", 'Basic realm="git"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def login_wall() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/team/model.git"
    finally:
        server.shutdown()
        server.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_https_login_fails_at_once_without_prompting(
    tmp_path: Path, repo: GitRepo, login_wall: str
) -> None:
    # Any credential helper git runs (Git Credential Manager included) is told not to open a
    # window: this helper records what it was told, and answers nothing.
    seen = tmp_path / "helper-env"
    helper = tmp_path / "helper"
    helper.write_text(f'#!/bin/sh\necho "GCM_INTERACTIVE=$GCM_INTERACTIVE" >> {seen}\n')
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    git(repo.root, "config", "credential.helper", str(helper))
    repo.set_remote("origin", login_wall)
    started = time.monotonic()
    with pytest.raises(GitRemoteError) as info:
        repo.fetch("origin")
    assert time.monotonic() - started < 20
    assert "terminal prompts disabled" in str(info.value)
    hint = info.value.hint
    assert "SSH remote" in hint and "outside cpv" in hint
    assert "credential" not in hint.lower()
    assert "GCM_INTERACTIVE=never" in seen.read_text()
    with pytest.raises(GitRemoteError) as checked:
        GitRepo.check_remote(login_wall)
    assert checked.value.hint == hint


def test_https_closed_port_fails_fast_with_a_network_hint(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/team/model.git"
    started = time.monotonic()
    with pytest.raises(GitRemoteError) as info:
        GitRepo.clone(url, tmp_path / "clone")
    assert time.monotonic() - started < 20
    assert "127.0.0.1 refused the connection" in info.value.hint
    assert "credential" not in info.value.hint.lower()


TOKEN_URLS = [
    "https://github_pat_11ABCDEFG0abcdefghijklmnopqrstuvwxyz0123@github.com/team/model.git",
    "https://ghp_abcdefghijklmnopqrstuvwxyz0123456789@github.com/team/model.git",
    "https://glpat-abcdefghij0123456789@gitlab.example.test/team/model.git",
    "https://oauth2:glpat-abcdefghij0123456789@gitlab.example.test/team/model.git",
    "https://x-token-auth:ATBBabcdefghijklmnopqrstuvwxyz012345@bitbucket.org/team/model.git",
    "https://alice:hunter2@git.example.test/team/model.git",
]


@pytest.mark.parametrize("url", TOKEN_URLS)
def test_a_remote_url_with_a_token_is_refused_and_never_printed(
    tmp_path: Path, repo: GitRepo, url: str
) -> None:
    secret = url.split("//", 1)[1].split("@", 1)[0].split(":")[-1]
    for attempt in (lambda: repo.set_remote("origin", url),
                    lambda: GitRepo.check_remote(url),
                    lambda: GitRepo.clone(url, tmp_path / "clone")):
        with pytest.raises(VersioningError) as info:
            attempt()
        assert "cpv never stores secrets" in str(info.value)
        assert secret not in str(info.value) and secret not in info.value.hint
        assert "credential helper" not in info.value.hint
    assert repo.remote_url("origin") is None
    assert secret not in (repo.root / ".git" / "config").read_text()
    assert not (tmp_path / "clone").exists()
