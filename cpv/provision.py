"""Provisioning on this machine: AWS profile look-up, SSH keys and host aliases, private files.

The seed API's :meth:`cpv.config.CPVConfig.setup_aws_profile` and
:meth:`~cpv.config.CPVConfig.setup_bitbucket_ssh` decide what to set; the file work is here, so
the configuration module stays about settings. Nothing here reads or keeps a credential: AWS
files are scanned for section headers only, and private keys are made by ``ssh-keygen``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from cpv.errors import ConfigError

logger = logging.getLogger(__name__)

_SCP_REMOTE_RE = re.compile(r"^(?:(?P<user>[^@/:\s]+)@)?(?P<host>[^@/:\s]+):(?P<path>[^\s].*)$")


def ensure_private_dir(directory: Path) -> None:
    """Create ``directory`` 0700 if missing; tighten an existing cpv/ssh dir to 0700."""
    try:
        if not directory.is_dir():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)
        elif directory.name in (".cpv", ".ssh") and os.name == "posix":
            mode = stat.S_IMODE(directory.stat().st_mode)
            if mode & 0o077:
                os.chmod(directory, mode & 0o700)
    except OSError as exc:
        raise ConfigError(
            f"cannot create private folder {directory}: {exc.strerror or exc}",
            hint="check that the parent folder is writable",
        ) from exc

def write_private_file(path: Path, data: bytes) -> None:
    """Write ``path`` atomically (same-folder temp, fsync, rename), mode 0600.

    A symlinked file (dotfile managers) is written through to its target, so the link stays.
    """
    target = path.resolve() if path.is_symlink() else path
    ensure_private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            if hasattr(os, "fchmod"):
                os.fchmod(fd, 0o600)  # O_CREAT's mode is filtered by umask; be exact
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ConfigError(
            f"cannot write {target}: {exc.strerror or exc}",
            hint="check the folder's permissions and free space",
        ) from exc
    fsync_dir(target.parent)

def fsync_dir(directory: Path) -> None:
    if os.name != "posix":
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_INI_SECTION_RE = re.compile(r"^\s*\[\s*([^\]]+?)\s*\]\s*$")


def find_aws_profile(profile: str, files: Iterable[Path]) -> Path | None:
    """The first file with a ``[profile]`` or ``[profile NAME]`` header.

    Only section headers are looked at, so the keys below them are never parsed or kept.
    """
    wanted = {profile, f"profile {profile}"}
    for path in files:
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    match = _INI_SECTION_RE.match(line)
                    if match and " ".join(match.group(1).split()) in wanted:
                        return path
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise ConfigError(
                f"cannot read AWS file {path}: {exc.strerror or exc}",
                hint="check the file's permissions",
            ) from exc
    return None


def rewrite_remote(remote: str, *, host: str, alias: str) -> tuple[str, int | None]:
    """``remote`` pointed at ``alias`` instead of ``host``, and the SSH port if it had one.

    ``ssh://`` URLs keep their form (the port moves into the Host block); scp-like and HTTPS
    remotes become ``git@alias:team/repo.git``.
    """
    port: int | None = None
    keep_url_form = False
    user = "git"
    if "://" in remote:
        parts = urlsplit(remote)
        if parts.scheme in ("ssh", "git+ssh", "ssh+git"):
            keep_url_form = True
            port = parts.port
            user = parts.username or "git"
        elif parts.scheme not in ("https", "http"):
            raise ConfigError(
                f"remote {remote!r} is not an SSH or HTTPS URL; SSH setup does not apply",
                hint="use git@bitbucket.org:team/repo.git",
            )
        remote_host = parts.hostname or ""
        path = parts.path if keep_url_form else parts.path.lstrip("/")
    else:
        match = _SCP_REMOTE_RE.match(remote)
        if match is None:
            raise ConfigError(
                f"remote {remote!r} is not an SSH URL", hint="use git@bitbucket.org:team/repo.git"
            )
        remote_host, path = match.group("host"), match.group("path")
        user = match.group("user") or "git"
    if remote_host not in (host, alias):
        raise ConfigError(
            f"remote {remote!r} is on {remote_host!r}, not {host!r}",
            hint=f"pass host={remote_host!r} to set up SSH for that host",
        )
    if not path.strip("/"):
        raise ConfigError(f"remote {remote!r} names no repository", hint="e.g. team/repo.git")
    if keep_url_form:
        return urlunsplit(("ssh", f"{user}@{alias}", path, "", "")), port
    return f"{user}@{alias}:{path}", port


def ensure_ssh_key(key_path: Path, *, generate: bool, comment: str) -> tuple[str, bool]:
    """The public key text for ``key_path``, generating the pair if needed; (text, created)."""
    pub_path = key_path.with_name(key_path.name + ".pub")
    if key_path.exists():
        if pub_path.is_file():
            return pub_path.read_text(encoding="utf-8").strip(), False
        # Derive the public half; stdin is closed so a passphrase prompt fails, not hangs.
        result = _run_ssh_keygen(["-y", "-f", str(key_path)])
        public = result.strip()
        write_private_file(pub_path, (public + "\n").encode())
        return public, False
    if not generate:
        raise ConfigError(
            f"SSH key {key_path} does not exist",
            hint="pass generate=True to create it, or point keygen_filename to an existing key",
        )
    # Generate into a private temp folder beside the key, then link into place: a crash leaves
    # no half-written key, and an existing key is never overwritten (link fails if it exists).
    tmp_dir = Path(tempfile.mkdtemp(prefix=".cpv-keygen-", dir=key_path.parent))
    try:
        tmp_key = tmp_dir / "key"
        _run_ssh_keygen(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(tmp_key)])
        tmp_pub = tmp_dir / "key.pub"
        os.chmod(tmp_key, 0o600)
        os.chmod(tmp_pub, 0o600)
        public = tmp_pub.read_text(encoding="utf-8").strip()
        os.replace(tmp_pub, pub_path)
        try:
            os.link(tmp_key, key_path)
        except FileExistsError as exc:
            raise ConfigError(
                f"SSH key {key_path} appeared while cpv was generating it",
                hint="re-run; the existing key will be used",
            ) from exc
        except OSError:
            os.replace(tmp_key, key_path)  # filesystems without hard links
    except OSError as exc:
        raise ConfigError(
            f"cannot write SSH key {key_path}: {exc.strerror or exc}",
            hint="check the folder's permissions",
        ) from exc
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    logger.info("generated SSH key %s", key_path)
    return public, True


def _run_ssh_keygen(args: list[str]) -> str:
    exe = shutil.which("ssh-keygen")
    if exe is None:
        raise ConfigError(
            "ssh-keygen is not installed",
            hint="install OpenSSH (e.g. apt-get install openssh-client), then re-run",
        )
    try:
        done = subprocess.run(  # argv list, no shell
            [exe, *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(f"ssh-keygen could not run: {exc}") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()
        raise ConfigError(
            f"ssh-keygen failed: {detail[-1] if detail else f'exit code {done.returncode}'}",
            hint="a passphrase-protected key needs its .pub file next to it",
        )
    return done.stdout


def _ssh_markers(alias: str) -> tuple[str, str]:
    return f"# >>> cpv {alias} >>>", f"# <<< cpv {alias} <<<"


def write_ssh_host_block(
    config_path: Path, *, alias: str, host: str, key_path: Path, port: int | None
) -> bool:
    """Insert or refresh the marked ``Host alias`` block; True if the file changed."""
    begin, end = _ssh_markers(alias)
    identity = str(key_path)
    if any(c.isspace() for c in identity):
        identity = f'"{identity}"'
    block = [
        begin,
        "# managed by cpv (setup_bitbucket_ssh); edits inside this block are replaced",
        f"Host {alias}",
        f"    HostName {host}",
        "    User git",
        *([f"    Port {port}"] if port else []),
        f"    IdentityFile {identity}",
        "    IdentitiesOnly yes",
        end,
    ]
    try:
        old = config_path.read_text(encoding="utf-8") if config_path.exists() else ""
    except OSError as exc:
        raise ConfigError(f"cannot read SSH config {config_path}: {exc.strerror or exc}") from exc
    lines = old.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == begin]
    ends = [i for i, line in enumerate(lines) if line.strip() == end]
    if len(starts) > 1 or len(ends) != len(starts) or (starts and ends[0] < starts[0]):
        raise ConfigError(
            f"SSH config {config_path} has a damaged cpv block for {alias}",
            hint=f"remove the lines between {begin!r} and {end!r} by hand, then re-run",
        )
    outside = lines[: starts[0]] + lines[ends[0] + 1 :] if starts else lines
    for line in outside:
        words = line.split()
        if len(words) >= 2 and words[0].lower() == "host" and alias in words[1:]:
            raise ConfigError(
                f"SSH config {config_path} already has its own 'Host {alias}' entry",
                hint="remove it, or pass a different host_alias",
            )
    if starts:
        new_lines = lines[: starts[0]] + block + lines[ends[0] + 1 :]
    else:
        new_lines = [*lines, *([""] if lines and lines[-1].strip() else []), *block]
    new = "\n".join(new_lines) + "\n"
    if new == old:
        return False
    write_private_file(config_path, new.encode())
    return True
