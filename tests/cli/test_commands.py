"""Output contracts of the commands: help with examples and exit codes, --json shapes,
--quiet, -C, dry runs, config, doctor and the set-up wizard."""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cpv.cli.main import cli
from tests.cli.conftest import Runner, write_checkpoint

COMMANDS = sorted(cli.commands)


@pytest.fixture
def restore_cpv_logger() -> Iterator[None]:
    """In-process runs configure the 'cpv' logger; put it back for the other tests."""
    logger = logging.getLogger("cpv")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved


@pytest.mark.usefixtures("restore_cpv_logger")
def test_every_command_documents_examples_and_exit_codes() -> None:
    # Help text only: rendered in-process (fast); the binary's --help is checked below.
    runner = CliRunner()
    paths = [[name] for name in COMMANDS]
    config = cli.commands["config"]
    assert isinstance(config, click.Group)
    paths += [["config", sub] for sub in config.commands]
    for path in paths:
        out = runner.invoke(cli, [*path, "--help"], obj=None)
        assert out.exit_code == 0, out.output
        assert "Examples:" in out.output and "  cpv " in out.output, path
        assert "Exit codes:" in out.output and "  0    success" in out.output, path
    assert {"init", "push", "pull", "tag", "versions", "checkout", "status", "diff", "metrics",
            "verify", "config", "doctor"} <= set(COMMANDS)


def test_binary_help_and_version(cpv: Runner) -> None:
    out = cpv("--help").stdout
    assert "Examples:" in out and "130  interrupted" in out and "push" in out
    assert cpv("--version").stdout.strip() == "cpv, version 0.1.0"


@pytest.fixture
def ws(cpv: Runner, tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    write_checkpoint(ws / "model", 200_000, seed=1)
    return ws


def test_dry_run_quiet_and_dash_c(cpv: Runner, ws: Path, tmp_path: Path) -> None:
    dry = cpv("-C", str(ws), "push", "--dry-run", "--tag", "--json").json()
    assert dry["dry_run"] is True and dry["tags"] == ["v0.1"]
    assert dry["results"][0]["new_bytes"] > 200_000 and dry["results"][0]["commit"] is None
    assert cpv("-C", str(ws), "versions", "--json").json() == []  # nothing was recorded
    human = cpv("-C", str(ws), "push", "--dry-run").stdout
    assert "would upload" in human
    quiet = cpv("-q", "-C", str(ws), "push", "--tag")
    assert quiet.stdout == "" and quiet.stderr == ""
    assert [v["tag"] for v in cpv("versions", "--json", cwd=ws).json()] == ["v0.1"]
    unchanged = cpv("push", "--json", cwd=ws).json()["results"][0]
    assert unchanged["new_bytes"] == 0 and unchanged["chunks_new"] == 0
    # The current version is tagged already: an auto-numbered tag would name it twice.
    again = cpv("tag", "--dry-run", cwd=ws, expect=1)
    assert "already tagged v0.1" in again.stderr
    write_checkpoint(ws / "model", 200_000, seed=2)
    cpv("push", "-q", cwd=ws)
    tag = cpv("tag", "--dry-run", "--json", cwd=ws).json()
    assert tag == {"tags": ["v0.2"], "dry_run": True}
    cpv("tag", "v1.0", "-m", "release", "--metric", "acc=0.97", "-q", cwd=ws)
    table = cpv("metrics", cwd=ws).stdout.splitlines()
    assert table[0].split() == ["TAG", "acc"] and table[-1].split() == ["v1.0", "0.97"]


def test_push_with_tag_value_that_is_a_path(cpv: Runner, ws: Path) -> None:
    # `--tag` takes an optional value; `cpv push --tag model` must not tag "model".
    doc = cpv("push", "--tag", "model", "--json", cwd=ws).json()
    assert doc["tags"] == ["v0.1"] and [r["kind"] for r in doc["results"]] == ["model"]


def test_config_set_get_show_unset(cpv: Runner, ws: Path, home: Path) -> None:
    cpv("config", "set", "transfer.workers", "4", cwd=ws)
    assert cpv("config", "get", "transfer.workers", cwd=ws).stdout.strip() == "4"
    cfg = ws / ".cpv" / "config.json"
    assert json.loads(cfg.read_text())["transfer"] == {"workers": 4}
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600
    cpv("config", "set", "--global", "aws.region", "eu-west-1", cwd=ws)
    user = home / ".cpv" / "config.json"
    assert json.loads(user.read_text()) == {"aws": {"region": "eu-west-1"}}
    show = cpv("config", "show", "--json", cwd=ws).json()
    assert show["aws"]["region"] == "eu-west-1" and show["transfer"]["workers"] == 4
    assert str(user) in show["sources"]
    cpv("config", "unset", "transfer.workers", cwd=ws)
    assert cpv("config", "get", "transfer.workers", cwd=ws).stdout.strip() == "8"
    bad = cpv("config", "set", "aws.profle", "x", cwd=ws, expect=1)
    assert "unknown setting aws.profle" in bad.stderr and "did you mean 'profile'" in bad.stderr
    secret = cpv("config", "set", "aws.secret_access_key", "abc", cwd=ws, expect=1)
    assert "credential" in secret.stderr
    assert cpv("config", "get", "nope.key", cwd=ws, expect=2).stderr.startswith("cpv: error:")


def test_doctor_reports_each_check_and_a_fix(cpv: Runner, ws: Path, tmp_path: Path) -> None:
    doc = cpv("doctor", "--json", cwd=ws).json()
    names = {c["name"]: c for c in doc}
    assert {"python", "cpv", "git", "git identity", "config", "workspace", "store",
            "disk"} <= set(names)
    assert all(c["ok"] for c in doc), doc
    # Outside a workspace, with a store that does not exist: problems, each with a fix.
    r = cpv("doctor", cwd=tmp_path, env_extra={"CPV_STORE_URL": str(tmp_path / "nowhere")},
            expect=1)
    assert "FAIL  workspace" in r.stdout and "fix: " in r.stdout
    assert r.stderr.startswith("cpv: error: ") and "problem(s) found" in r.stderr
    doc = cpv("doctor", "--json", cwd=tmp_path,
              env_extra={"CPV_STORE_URL": str(tmp_path / "nowhere")}, expect=1).json()
    failed = {c["name"] for c in doc["result"] if not c["ok"]}
    assert failed == {"workspace", "store"}


def test_wizard_sets_up_a_local_store_and_remote(cpv: Runner, tmp_path: Path, home: Path) -> None:
    store = tmp_path / "team-store"
    answers = "\n".join([
        "local",                  # where the bytes go
        str(store),               # store folder
        "https://example.test/team/model.git",  # Git remote (https: no SSH key question)
        "n",                      # no connection check
    ]) + "\n"
    doc = cpv("config", "wizard", "--json", input=answers, cwd=tmp_path).json()
    assert doc["store_url"] == str(store) and doc["remote_url"].startswith("https://")
    # Outside a workspace, one model's store and remote are nobody's default: the wizard says
    # which init line uses them, and the user-wide file gets neither.
    assert doc["init_command"] == (f"cpv init NAME --store {store} "
                                   "--remote https://example.test/team/model.git")
    user_file = home / ".cpv" / "config.json"
    assert not user_file.exists() or "remote_url" not in user_file.read_text()
    cpv("init", str(tmp_path / "other-model"), "-q")
    other = cpv("config", "show", "--json", cwd=tmp_path / "other-model").json()
    assert other["git"]["remote_url"] is None and str(store) not in str(other["store"])


def test_wizard_in_a_workspace_writes_its_store_and_remote_there(
    cpv: Runner, tmp_path: Path, home: Path
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    store = tmp_path / "team-store"
    answers = "\n".join(["local", str(store), "https://example.test/team/model.git", "n"]) + "\n"
    cpv("config", "wizard", "--json", input=answers, cwd=ws)
    saved = json.loads((ws / ".cpv" / "config.json").read_text())
    assert saved["store"] == {"url": str(store)}
    assert saved["git"] == {"remote_url": "https://example.test/team/model.git"}
    user_file = home / ".cpv" / "config.json"
    assert not user_file.exists() or "remote_url" not in user_file.read_text()


def test_wizard_s3_checks_the_profile_and_reasks(cpv: Runner, tmp_path: Path, home: Path) -> None:
    creds = home / "aws-credentials"
    creds.write_text("[ml-team]\naws_access_key_id = AKIAEXAMPLEEXAMPLE00\n"
                     "aws_secret_access_key = x\n")
    answers = "\n".join([
        "s3",
        "no-such-profile", "", "ml-checkpoints", "", "",   # first try: unknown profile
        "y",                                               # try again
        "ml-team", "eu-west-1", "ml-checkpoints", "whisper", "",
        "",                                                # no Git remote
        "n",
    ]) + "\n"
    r = cpv("config", "wizard", input=answers,
            env_extra={"AWS_SHARED_CREDENTIALS_FILE": str(creds)}, cwd=tmp_path)
    assert "AWS profile 'no-such-profile' not found" in r.stderr
    saved = json.loads((home / ".cpv" / "config.json").read_text())
    # The profile is the user's; the bucket and prefix belong to one model (its init line).
    assert saved["aws"]["profile"] == "ml-team" and saved["aws"]["region"] == "eu-west-1"
    assert "store" not in saved and not saved["aws"].get("bucket")
    assert "cpv init NAME --store s3://ml-checkpoints/whisper" in r.stderr
    assert "aws_secret_access_key" not in (home / ".cpv" / "config.json").read_text()


def test_metrics_plot(cpv: Runner, ws: Path, tmp_path: Path) -> None:
    cpv("push", "--metric", "loss=0.5", "--tag", "-q", cwd=ws)
    png = tmp_path / "m.png"
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        r = cpv("metrics", "--plot", str(png), cwd=ws, expect=1)
        assert "matplotlib" in r.stderr
        return
    cpv("metrics", "--plot", str(png), cwd=ws)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gc_keeps_every_version_and_collects_an_unreferenced_push(
    cpv: Runner, ws: Path
) -> None:
    cpv("push", "-m", "v1", "--tag", "-q", cwd=ws)
    write_checkpoint(ws / "model", 200_000, seed=2)
    cpv("push", "-m", "experiment, never tagged", "-q", cwd=ws)
    # Dropping the commit from Git history does not drop the version: the store records it.
    subprocess.run(["git", "-C", str(ws), "reset", "-q", "--hard", "HEAD~1"], check=True)
    write_checkpoint(ws / "model", 200_000, seed=3)
    cpv("push", "-m", "v2", "--tag", "-q", cwd=ws)
    # Refuses to delete without --yes when it cannot ask.
    assert "--yes" in cpv("gc", cwd=ws, expect=2).stderr
    keeps = cpv("gc", "--dry-run", "--grace-hours", "0", "--json", cwd=ws).json()
    assert keeps["report"]["snapshots_deleted"] == []
    # Versions leave through forget: the untagged experiment goes, the tagged ones stay.
    cpv("forget", "--keep-last", "0", "-q", cwd=ws)
    dry = cpv("gc", "--dry-run", "--grace-hours", "0", "--json", cwd=ws).json()
    assert dry["report"]["dry_run"] is True and len(dry["report"]["snapshots_deleted"]) == 1
    assert {"v0.1", "v0.2"} <= set(dry["live_versions"])
    # With the default 24 h grace nothing this young goes.
    young = cpv("gc", "--yes", "--json", cwd=ws).json()
    assert young["report"]["snapshots_deleted"] == []
    done = cpv("gc", "--yes", "--grace-hours", "0", "--json", cwd=ws).json()
    assert done["report"]["snapshots_deleted"] == dry["report"]["snapshots_deleted"]
    assert cpv("verify", "--all", "--deep", "--json", cwd=ws).json()["snapshots_checked"] == 2
    cpv("checkout", "v0.1", "-q", cwd=ws)
    assert cpv("verify", "v0.1", "--deep", "--json", cwd=ws).json()["ok"] is True


def _run_with_terminal_stderr(
    args: list[str], *, cwd: Path, env: dict[str, str], stdout_too: bool = False,
    size: tuple[int, int] = (24, 100),
) -> str:
    """Run cpv with stderr (and, with ``stdout_too``, stdout) on a pseudo-terminal of ``size``
    (lines, columns); return what the terminal showed."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import termios

    from tests.cli.conftest import cpv_command

    master, slave = pty.openpty()
    # A real terminal has a size; a fresh pty is 0x0 (some CI consoles too).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen([*cpv_command(), *args], cwd=cwd, env=env,
                            stdout=slave if stdout_too else subprocess.PIPE,
                            stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    if proc.stdout is not None:
        proc.stdout.close()
    return b"".join(chunks).decode(errors="replace")


def test_progress_bars_only_on_a_terminal_and_not_with_quiet(
    cpv: Runner, ws: Path, env: dict[str, str]
) -> None:
    shown = _run_with_terminal_stderr(["push", "-m", "a"], cwd=ws, env=env)
    assert "uploading" in shown and "B/s" in shown, shown
    write_checkpoint(ws / "model", 200_000, seed=9)
    quiet = _run_with_terminal_stderr(["push", "-q", "-m", "b"], cwd=ws, env=env)
    assert quiet == ""
    # Not a terminal (the usual runner): no bars, the summary on stdout only.
    write_checkpoint(ws / "model", 200_000, seed=10)
    plain = cpv("push", "-m", "c", cwd=ws)
    assert plain.stderr == "" and "uploaded" in plain.stdout


@pytest.mark.parametrize("size", [(0, 0), (0, 100), (24, 0)])
def test_a_terminal_that_reports_no_size_still_shows_the_bars(
    ws: Path, env: dict[str, str], size: tuple[int, int]
) -> None:
    """tqdm sizes its bars to the terminal: with 0 columns or 0 lines it drew nothing at all,
    so a push in a fresh pty or a CI console showed no progress."""
    write_checkpoint(ws / "model", 3_000_000, seed=12)
    screen = _run_with_terminal_stderr(["push", "-m", "a"], cwd=ws, env=env, size=size)
    assert "scanning:" in screen and "uploading:" in screen, screen


def test_a_pull_shows_each_phase_before_the_first_byte_moves(
    cpv: Runner, ws: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Before downloading, a pull reads the version's list and checks where every file goes
    (at 10^6 files, half a minute that showed only 'starting...')."""
    write_checkpoint(ws / "model", 3_000_000, seed=13)
    cpv("push", "-q", "-m", "a", cwd=ws)
    screen = _run_with_terminal_stderr(["pull", "HEAD", "model", "--to", str(tmp_path / "out")],
                                       cwd=ws, env=env)
    shown = [screen.find(label) for label in ("listing:", "checking:", "downloading:")]
    assert -1 not in shown and shown == sorted(shown), screen


def test_a_terminal_shows_a_start_line_bars_with_totals_and_a_summary_at_column_0(
    ws: Path, env: dict[str, str]
) -> None:
    write_checkpoint(ws / "model", 6_000_000, seed=11)
    screen = _run_with_terminal_stderr(["push", "-m", "a"], cwd=ws, env=env, stdout_too=True)
    assert screen.startswith("cpv push: starting"), screen[:80]
    # The upload bar knows its total: a percentage, and sizes and rates in the summary's units.
    assert "uploading:   0%|" in screen and "/5.7 MiB" in screen, screen
    assert " MB" not in screen and "MB/s" not in screen, screen
    summary = screen.index("model  2 files")
    before = screen[:summary]
    assert before.endswith(("\r", "\n", "\x1b[K")), repr(before[-40:])


def test_ctrl_c_exits_130_without_traceback(env: dict[str, str], tmp_path: Path) -> None:
    import signal
    import subprocess
    import time

    from tests.cli.conftest import cpv_command

    proc = subprocess.Popen([*cpv_command(), "config", "wizard"], cwd=tmp_path, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = ""
    while "Where should the bytes go" not in seen:  # waiting at the first prompt
        char = proc.stderr.read(1)
        assert char, seen
        seen += char
    # The prompt is printed just before the read starts; a signal in between would only be
    # seen after the read returns (as for a real user, who is never that fast). Wait until the
    # process sleeps in its read.
    stat_file = Path(f"/proc/{proc.pid}/stat")
    for _ in range(200):
        if not stat_file.exists() or stat_file.read_text().split(") ", 1)[1][0] == "S":
            break
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    # Keep stdin open until it exits: closing it first could end the prompt with EOF instead.
    proc.wait(timeout=60)
    err = proc.stderr.read()
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    out = proc.stdout.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 130, (out, err)
    assert "Traceback" not in err and "cpv: error: interrupted" in err


def test_wizard_creates_a_dedicated_ssh_key_for_the_git_remote(
    cpv: Runner, tmp_path: Path, home: Path
) -> None:
    import shutil

    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed")
    answers = "\n".join([
        "local", str(tmp_path / "store"),
        "git@bitbucket.org:ai-convo/whisper.git",
        "y",                      # create a dedicated SSH key
        "n",                      # no connection check (no network here)
    ]) + "\n"
    r = cpv("config", "wizard", "--json", input=answers, cwd=tmp_path)
    doc = r.json()
    assert doc["remote_url"] == "git@bitbucket-cpv:ai-convo/whisper.git"
    key = home / ".ssh" / "id_rsa_bitbucket"
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "ssh-ed25519 " in r.stderr  # the public key to paste into Bitbucket
    assert "Host bitbucket-cpv" in (home / ".ssh" / "config").read_text()
    saved = json.loads((home / ".cpv" / "config.json").read_text())
    assert "remote_url" not in saved["git"]  # one model's remote is not the user's default
    assert saved["git"]["ssh_key_path"] == str(key)
    assert "--remote git@bitbucket-cpv:ai-convo/whisper.git" in doc["init_command"]
    assert "PRIVATE KEY" not in (home / ".cpv" / "config.json").read_text()


def test_git_push_uses_the_configured_ssh_key(
    cpv: Runner, ws: Path, env: dict[str, str], tmp_path: Path, home: Path
) -> None:
    """``git.ssh_key_path`` (what the wizard sets up) reaches Git when the workspace reads its
    configuration from the files, as every command does: once it only did when a config object
    was handed in. No sshd: a fake ``ssh`` on PATH records what Git ran and refuses."""
    key = home / ".ssh" / "id_cpv"
    key.parent.mkdir(parents=True)
    key.write_text("not a real key\n")
    calls = tmp_path / "ssh-calls"
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$@" >> {calls}\n'
                    'echo "git@git.example.test: Permission denied (publickey)." >&2\nexit 255\n')
    fake.chmod(0o755)
    cpv("config", "set", "git.ssh_key_path", str(key), cwd=ws)
    subprocess.run(["git", "remote", "add", "origin", "git@git.example.test:team/model.git"],
                   cwd=ws, env=env, check=True)
    path = {"PATH": f"{fake.parent}{os.pathsep}{env['PATH']}"}

    pushed = cpv("push", "-m", "v1", cwd=ws, env_extra=path, expect=None)
    assert "Permission denied" in pushed.stderr, str(pushed)
    ran = calls.read_text().splitlines()
    assert ran and all(f"-i {key}" in line and "IdentitiesOnly=yes" in line for line in ran), ran


def test_gc_keeps_untagged_history_and_other_workspaces(
    cpv: Runner, ws: Path, tmp_path: Path
) -> None:
    cpv("push", "-m", "v1", "--tag", "-q", cwd=ws)
    write_checkpoint(ws / "model", 200_000, seed=4)
    cpv("push", "-m", "experiment kept in history", "-q", cwd=ws)
    write_checkpoint(ws / "model", 200_000, seed=5)
    cpv("push", "-m", "v2", "--tag", "-q", cwd=ws)
    # A second workspace pushes into the same store; its data is not ours to collect.
    other = tmp_path / "other-model"
    cpv("init", str(other), "--store", str(ws / ".cpv" / "store"), "-q")
    write_checkpoint(other / "model", 150_000, seed=6)
    cpv("push", "-m", "theirs", "-q", cwd=other)
    done = cpv("gc", "--yes", "--grace-hours", "0", "--json", cwd=ws).json()
    assert done["report"]["snapshots_deleted"] == []
    assert cpv("verify", "--all", "--deep", "--json", cwd=ws).json()["ok"] is True
    assert cpv("verify", "--deep", "--json", cwd=other).json()["ok"] is True


def test_ls_lists_a_version_with_sizes_and_a_total(cpv: Runner, ws: Path) -> None:
    (ws / "data" / "train").mkdir(parents=True, exist_ok=True)
    (ws / "data" / "train" / "a.txt").write_text("12345")
    cpv("push", "--tag", "-q", cwd=ws)
    write_checkpoint(ws / "model", 300_000, seed=5)
    cpv("push", "--tag", "-q", cwd=ws)
    listed = cpv("ls", "v0.1", "--json", cwd=ws).json()
    assert [f["path"] for f in listed["files"]] == [
        "data/train/a.txt", "model/config.json", "model/model.safetensors"]
    assert listed["total_bytes"] == sum(f["size"] for f in listed["files"])
    sizes = {f["path"]: f["size"] for f in listed["files"]}
    assert sizes["model/model.safetensors"] == 200_000  # v0.1's, not the working tree's
    only = cpv("ls", "v0.2", "data/train", cwd=ws).stdout.splitlines()
    assert only == ["       5 B  data/train/a.txt", "1 file(s), 5 B"]  # sizes: 10 wide
    missing = cpv("ls", "v0.2", "model/nope.bin", cwd=ws, expect=1)
    assert "model/nope.bin" in missing.stderr and "Traceback" not in missing.stderr


def test_pull_and_ls_take_gitignore_patterns(cpv: Runner, ws: Path, tmp_path: Path) -> None:
    (ws / "model" / "model-fp16.safetensors").write_bytes(b"half" * 1000)
    (ws / "data" / "train").mkdir(parents=True, exist_ok=True)
    (ws / "data" / "train" / "x-fp16.txt").write_text("a sample\n")
    cpv("push", "--tag", "-q", cwd=ws)
    listed = cpv("ls", "v0.1", "*fp16*", "--json", cwd=ws).json()
    assert [f["path"] for f in listed["files"]] == ["data/train/x-fp16.txt",
                                                    "model/model-fp16.safetensors"]
    assert [f["path"] for f in cpv("ls", "v0.1", "model/*.safetensors", "--json",
                                   cwd=ws).json()["files"]] == [
        "model/model-fp16.safetensors", "model/model.safetensors"]
    # A glob pull into another folder brings only the matching files.
    target = tmp_path / "only"
    done = cpv("pull", "v0.1", "model/*fp16*", "--to", str(target), "--json", cwd=ws).json()
    assert done["results"][0]["files"] == 1
    assert sorted(p.name for p in target.iterdir()) == ["model-fp16.safetensors"]
    # A pattern that matches nothing: one line, exit 2 (usage), nothing changed.
    before = sorted(p.name for p in (ws / "model").iterdir())
    r = cpv("pull", "v0.1", "model/*.bin", cwd=ws, expect=2)
    assert "matches no file" in r.stderr and "Traceback" not in r.stderr
    assert sorted(p.name for p in (ws / "model").iterdir()) == before
