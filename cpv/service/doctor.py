"""``cpv doctor`` and the seed's ``CPVConfig.validate_credentials``: what works on this machine.

Never raises for a failed check: each check says what it found and how to fix a problem.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from cpv.config import CPVConfig
from cpv.credentials import validate_credentials
from cpv.errors import ConfigError, CPVError

if TYPE_CHECKING:
    from cpv.engine.format import StoreConfig
from cpv.service.results import DoctorCheck
from cpv.store import open_store

MB = 1024 * 1024

__all__ = ["doctor_checks", "validate_credentials"]


_MIN_GIT = (2, 20)
_MIN_FREE_BYTES = 1024 * MB


def _git_version() -> DoctorCheck:
    exe = shutil.which("git")
    if exe is None:
        return DoctorCheck("git", False, "git is not installed",
                           "install git 2.20 or newer (e.g. apt-get install git)")
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return DoctorCheck("git", False, f"git does not run: {exc}", "reinstall git")
    numbers = re.findall(r"\d+", out)
    version = tuple(int(n) for n in numbers[:2]) if len(numbers) >= 2 else (0, 0)
    if version < _MIN_GIT:
        return DoctorCheck("git", False, f"{out} is too old", "install git 2.20 or newer")
    return DoctorCheck("git", True, out)


def _git_identity(root: Path | None) -> DoctorCheck:
    exe = shutil.which("git")
    if exe is None:
        return DoctorCheck("git identity", False, "git is not installed", "install git")
    done = subprocess.run([exe, "var", "GIT_AUTHOR_IDENT"], capture_output=True, text=True,
                          timeout=30, check=False, cwd=root)
    if done.returncode != 0:
        return DoctorCheck(
            "git identity", False, "git has no user name/email; versions are recorded as cpv",
            'git config --global user.name "Your Name" && '
            "git config --global user.email you@example.com",
        )
    return DoctorCheck("git identity", True, done.stdout.strip().rsplit(" ", 2)[0])


def doctor_checks(
    root: Path | None,
    *,
    config_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
) -> list[DoctorCheck]:
    """Check what cpv needs on this machine and say how to fix each problem.

    ``root`` is the workspace (``None`` outside one). Never raises for a failed check.
    """
    import platform

    from cpv._version import __version__

    checks = [
        DoctorCheck("python", sys.version_info >= (3, 10),
                    f"{platform.python_version()} ({sys.executable})",
                    "" if sys.version_info >= (3, 10) else "use Python 3.10 or newer"),
        DoctorCheck("cpv", True, __version__),
        _git_version(),
        _git_identity(root),
    ]
    try:
        cfg = CPVConfig.load(config_path, workspace=root, env=env)
    except ConfigError as exc:
        checks.append(DoctorCheck("config", False, exc.message,
                                  exc.hint or "fix the file named above (see docs/config.md)"))
        return checks
    sources = ", ".join(cfg.sources) or "defaults only"
    checks.append(DoctorCheck("config", True, sources))
    if root is None:
        checks.append(DoctorCheck("workspace", False, f"{Path.cwd()} is not in a cpv workspace",
                                  "cd into a workspace, or create one: cpv init"))
    else:
        checks.append(DoctorCheck("workspace", True, str(root)))
    try:
        store_url = cfg.store_url(workspace=root)
    except ConfigError as exc:
        store_url = None
        if root is not None:
            checks.append(DoctorCheck("store", False, exc.message, exc.hint))
    if store_url is not None:
        for check in validate_credentials(cfg, workspace=root):
            fix = ""
            if not check.ok and check.name == "store":
                fix = ("check the AWS profile/keys, bucket and endpoint (cpv config wizard); "
                       "for a new store run cpv init")
            elif not check.ok:
                fix = "check the remote URL and your SSH key (cpv config wizard)"
            checks.append(DoctorCheck(check.name, check.ok, check.detail, fix))
            if check.name == "store" and check.ok:
                checks += _store_checks(cfg, store_url)
    if root is not None and not cfg.git.remote_url:
        checks.append(DoctorCheck("git remote", True,
                                  "none configured (versions stay on this machine)"))
    where = root if root is not None else Path.cwd()
    try:
        usage = shutil.disk_usage(where)
    except OSError as exc:
        checks.append(DoctorCheck("disk", False, f"cannot read free space of {where}: {exc}",
                                  "check the folder"))
    else:
        ok = usage.free >= _MIN_FREE_BYTES
        checks.append(DoctorCheck(
            "disk", ok, f"{usage.free / (1024 * MB):.1f} GiB free in {where}",
            "" if ok else "free some disk space: pulls write each file next to its target first",
        ))
    return checks


def _format_check(config: StoreConfig) -> DoctorCheck:
    """The store's format and features: a store with a cutting rule this cpv does not know can
    be pulled from but not pushed to, which is better said before a push fails."""
    known = [f for f in config.write_features if f not in config.unknown_write_features]
    detail = f"version {config.version}, features: {', '.join(known) or 'none'}"
    if config.unknown_write_features:
        detail += (f"; unknown to this cpv: {', '.join(config.unknown_write_features)} "
                   "(pull works, push is refused)")
        return DoctorCheck("store format", False, detail,
                           "upgrade cpv (python -m pip install -U cpv-checkpoints)")
    return DoctorCheck("store format", True, detail)


def _store_checks(cfg: CPVConfig, store_url: str) -> list[DoctorCheck]:
    """What the server supports (probed, never assumed) and whether the store records its
    versions (a store from before roots needs one migration before gc and forget)."""
    from cpv.engine import Repository
    from cpv.engine.roots import list_roots
    from cpv.store.capabilities import store_features

    out: list[DoctorCheck] = []
    try:
        store = open_store(store_url, profile=cfg.aws.profile, region=cfg.aws.region,
                           endpoint_url=cfg.aws.endpoint_url)
    except CPVError as exc:
        return [DoctorCheck("server features", False, exc.one_line(), exc.hint)]
    try:
        features = store_features(store, refresh=True)
        missing = features.unusable()
        out.append(DoctorCheck(
            "server features", not missing, "; ".join(features.lines()),
            f"cpv cannot work without: {', '.join(missing)}; use an S3 server that supports "
            "them" if missing else ""))
        with Repository.open(store, cache_dir=cfg.cache_dir) as repo:
            out.append(_format_check(repo.config))
            roots = list_roots(repo)
            if roots.enabled:
                out.append(DoctorCheck(
                    "versions in the store", not roots.damaged and not roots.unknown,
                    f"{len(roots.versions)} version(s), {len(roots.tags)} tag(s) recorded",
                    "cpv verify --all, then cpv repair" if roots.damaged else
                    "upgrade cpv (python -m pip install -U cpv-checkpoints)"
                    if roots.unknown else ""))
            else:
                out.append(DoctorCheck("versions in the store", False,
                                       "a store from before cpv recorded its versions",
                                       "run cpv migrate once in a workspace of this store"))
    except CPVError as exc:
        out.append(DoctorCheck("server features", False, exc.one_line(), exc.hint))
    finally:
        store.close()
    return out
