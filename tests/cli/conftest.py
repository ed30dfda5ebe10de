"""Drive the real `cpv` program in a subprocess, as a user on a fresh machine would.

Every run gets an environment with nothing from the developer's machine: HOME is an empty
folder, git reads no global or system config, the Git identity comes from GIT_AUTHOR_* /
GIT_COMMITTER_*, AWS reads no ~/.aws (explicit keys and endpoint for the S3 test server only),
and no CPV_* variable leaks in. The program is the installed ``cpv`` console script next to this
Python when there is one, else ``python -m cpv``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.s3server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

AUTHOR = "Ada Tester"
EMAIL = "ada@example.test"


def cpv_command() -> list[str]:
    """The installed `cpv` entry point of this Python, or ``python -m cpv``."""
    script = Path(sysconfig.get_path("scripts")) / "cpv"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [sys.executable, "-m", "cpv"]


@dataclass
class Result:
    """One finished `cpv` run."""

    args: Sequence[str]
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def __str__(self) -> str:
        return (f"cpv {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


Runner = Callable[..., Result]


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: PATH and the Python basics only, plus isolation variables."""
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "PYENV_VERSION", "TMPDIR",
            "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    empty = home / ".empty-gitconfig"
    home.mkdir(parents=True, exist_ok=True)
    empty.write_text("")
    env.update({
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_CACHE_HOME": str(home / ".cache"),
        "GIT_CONFIG_GLOBAL": str(empty),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": AUTHOR,
        "GIT_AUTHOR_EMAIL": EMAIL,
        "GIT_COMMITTER_NAME": AUTHOR,
        "GIT_COMMITTER_EMAIL": EMAIL,
        "AWS_CONFIG_FILE": str(home / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONWARNINGS": "ignore::DeprecationWarning",
        "COLUMNS": "120",
    })
    return env


def run_cpv(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    input: str | None = None,
    allow_traceback: bool = False,
) -> Result:
    done = subprocess.run(
        [*cpv_command(), *args], cwd=cwd, env=dict(env), input=input, capture_output=True,
        text=True, timeout=240, check=False,
    )
    result = Result(list(args), done.returncode, done.stdout, done.stderr)
    if not allow_traceback:
        assert "Traceback" not in done.stderr, str(result)
    return result


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def env(home: Path) -> dict[str, str]:
    return base_env(home)


@pytest.fixture
def cpv(env: dict[str, str], tmp_path: Path) -> Runner:
    """``cpv(*args, cwd=..., env_extra=..., input=..., expect=0)`` -> :class:`Result`.

    ``expect`` is the exit code the run must end with (None: any).
    """

    def runner(
        *args: str,
        cwd: Path | None = None,
        env_extra: Mapping[str, str] | None = None,
        input: str | None = None,
        expect: int | None = 0,
        allow_traceback: bool = False,
    ) -> Result:
        result = run_cpv(args, cwd=cwd or tmp_path, env={**env, **(env_extra or {})},
                         input=input, allow_traceback=allow_traceback)
        if expect is not None:
            assert result.code == expect, str(result)
        return result

    return runner


def git(cwd: Path, *args: str, env: Mapping[str, str]) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=dict(env), capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, f"git {' '.join(args)}: {done.stderr}"
    return done.stdout


@pytest.fixture
def bare_remote(tmp_path: Path, env: dict[str, str]) -> Path:
    """A real bare repository whose HEAD names 'main', like a hosted remote."""
    path = tmp_path / "remote.git"
    git(tmp_path, "init", "-q", "--bare", str(path), env=env)
    git(path, "symbolic-ref", "HEAD", "refs/heads/main", env=env)
    return path


@pytest.fixture
def s3_env(s3_server: S3Server) -> dict[str, str]:
    """Variables that point cpv at the S3 test server with the right keys."""
    return {
        "CPV_ENDPOINT_URL": s3_server.endpoint_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": REGION,
    }


@pytest.fixture
def s3_url(s3_server: S3Server) -> str:
    """A fresh store URL in the test bucket."""
    return f"s3://{s3_server.bucket}/cli-{uuid.uuid4().hex[:12]}"


def write_checkpoint(folder: Path, size: int, *, seed: int) -> Path:
    """A model folder with one pseudo-random weights file and a small config."""
    import random

    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    weights.write_bytes(random.Random(seed).randbytes(size))
    (folder / "config.json").write_text(json.dumps({"hidden": 64, "seed": seed}))
    return weights


def overwrite_part(path: Path, *, offset: int, length: int, seed: int) -> None:
    """Replace ``length`` bytes at ``offset`` in place (a fine-tuning step touching a tensor)."""
    import random

    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(random.Random(seed).randbytes(length))
