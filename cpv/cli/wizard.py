"""``cpv config wizard``: set up the store and the Git remote by answering questions.

The wizard only asks and reports; the work is done by the seed API's
:meth:`CPVConfig.setup_aws_profile` (checks the profile exists in ``~/.aws``, records only its
name) and :meth:`CPVConfig.setup_bitbucket_ssh` (dedicated SSH key + host alias), and by
:func:`cpv.config.update_config_file`, which validates and writes with mode 0600. Prompts and
messages go to stderr, so ``--json`` keeps stdout for the one result document.

Each answer lands in its scope: what is about the user (AWS profile, region, endpoint, SSH key)
in the user's file; what is about one model (its store URL, its Git remote) in the workspace's
file, or, outside a workspace, nowhere: the wizard prints the ``cpv init`` line that uses it, so
one model's remote never becomes every model's default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import click

from cpv.errors import ConfigError

if TYPE_CHECKING:
    from cpv.config import CPVConfig

_SCP_HOST = re.compile(r"^(?:[^@/:\s]+@)?(?P<host>[^@/:\s]+):(?!//)")


def _ask(text: str, default: str | None = None, **kwargs: Any) -> str:
    value: str = click.prompt(text, default=default, err=True, **kwargs)
    return value.strip()


def _say(text: str) -> None:
    click.echo(text, err=True)


def ssh_host(remote: str) -> str | None:
    """The SSH host of a Git remote URL, or ``None`` for https/file remotes."""
    if "://" in remote:
        parts = urlsplit(remote)
        return parts.hostname if parts.scheme in ("ssh", "git+ssh", "ssh+git") else None
    match = _SCP_HOST.match(remote)
    return match.group("host") if match else None


def _setup_s3(
    config: CPVConfig, user_file: Path, workspace_file: Path | None
) -> tuple[CPVConfig, dict[str, Any]]:
    from cpv.config import update_config_file

    aws = config.aws
    while True:
        profile = _ask("AWS profile (a name from ~/.aws/credentials)", aws.profile or "default")
        region = _ask("AWS region (Enter: the profile's own)", aws.region or "",
                      show_default=bool(aws.region))
        bucket = _ask("S3 bucket", aws.bucket or None)
        prefix = _ask("Prefix inside the bucket (Enter: none)", aws.prefix or "",
                      show_default=bool(aws.prefix))
        endpoint = _ask("Endpoint URL of an S3-compatible server (Enter: AWS itself)",
                        aws.endpoint_url or "", show_default=bool(aws.endpoint_url))
        try:
            new = config.setup_aws_profile(profile, region=region or None,
                                           endpoint_url=endpoint or None, save_to=user_file)
            prefix = prefix.strip("/")
            url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
            new = new.replace(store={"url": url})  # validates the bucket name
            if workspace_file is not None:
                update_config_file(workspace_file, {"store": {"url": url}})
        except ConfigError as exc:
            _say(f"  ! {exc.one_line()}")
            if not click.confirm("Try again?", default=True, err=True):
                raise
            continue
        return new, {"store_url": url, "aws_profile": profile, "bucket": bucket,
                     "endpoint_url": endpoint or None}


def _setup_local(config: CPVConfig, workspace_file: Path | None) -> dict[str, Any]:
    from cpv.config import update_config_file

    while True:
        folder = _ask("Store folder (Enter: .cpv/store inside each workspace)",
                      config.store.url or "", show_default=bool(config.store.url))
        url = None
        if folder:
            url = folder if "://" in folder else str(Path(folder).expanduser().absolute())
        try:
            checked = config.replace(store={"url": url})
            if workspace_file is not None:
                update_config_file(workspace_file, {"store": {"url": checked.store.url}})
        except ConfigError as exc:
            _say(f"  ! {exc.one_line()}")
            continue
        return {"store_url": url}


def _setup_remote(
    config: CPVConfig, user_file: Path, workspace_file: Path | None
) -> dict[str, Any]:
    from cpv.config import update_config_file

    while True:
        remote = _ask("Git remote URL for the history, e.g. git@bitbucket.org:team/model.git "
                      "(Enter: none)", config.git.remote_url or "",
                      show_default=bool(config.git.remote_url))
        if not remote:
            return {"remote_url": None}
        host = ssh_host(remote)
        try:
            if host and click.confirm(f"Create a dedicated SSH key for {host}?", default=False,
                                      err=True):
                setup = config.setup_bitbucket_ssh(remote_url=remote, host=host)
                update_config_file(user_file, {"git": {
                    "ssh_host_alias": setup.host_alias, "ssh_key_path": str(setup.key_path)}})
                _say(f"SSH key: {setup.key_path} ({'new' if setup.key_created else 'existing'}); "
                     f"host alias {setup.host_alias} in {setup.ssh_config_path}")
                _say(f"Add this public key to {host} (e.g. Bitbucket: Personal settings -> "
                     "SSH keys):")
                _say(f"  {setup.public_key}")
                remote = setup.remote_url
            if workspace_file is not None:
                update_config_file(workspace_file, {"git": {"remote_url": remote}})
            else:
                config.replace(git={"remote_url": remote})  # validates it
        except ConfigError as exc:
            _say(f"  ! {exc.one_line()}")
            continue
        if workspace_file is not None:
            _say(f"Point this workspace's origin at it with: cpv init --remote {remote}")
        return {"remote_url": remote, "ssh_host": host}


def run_wizard(
    *, config: CPVConfig, user_file: Path, workspace_file: Path | None, root: Path | None
) -> dict[str, Any]:
    """Ask, save each answer in its scope, optionally check the result; return what was set
    up (with ``init_command`` outside a workspace: the line that creates one with them)."""
    from cpv.config import CPVConfig as LoadedConfig

    where = f"{user_file}" + (f" and {workspace_file}" if workspace_file else "")
    _say(f"cpv set-up: answers are saved to {where} (mode 0600). Enter keeps [the default].")
    _say("cpv never stores credentials: only an AWS profile name and an SSH key path.")
    default_kind = "s3" if config.aws.bucket or (config.store.url or "").startswith("s3://") \
        else "local"
    kind = _ask("Where should the bytes go? s3 (AWS or compatible) or local (a folder)",
                default_kind, type=click.Choice(["s3", "local"]))
    summary: dict[str, Any] = {"file": str(user_file), "store": kind,
                               "workspace_file": str(workspace_file) if workspace_file else None}
    if kind == "s3":
        config, details = _setup_s3(config, user_file, workspace_file)
        summary.update(details)
    else:
        summary.update(_setup_local(config, workspace_file))
    summary.update(_setup_remote(config, user_file, workspace_file))
    if workspace_file is None:
        words = ["cpv init NAME"]
        if summary.get("store_url"):
            words.append(f"--store {summary['store_url']}")
        if summary.get("remote_url"):
            words.append(f"--remote {summary['remote_url']}")
        summary["init_command"] = " ".join(words)
        _say("The store and the remote belong to one model: create its workspace with")
        _say(f"  {summary['init_command']}")
    checks: list[dict[str, Any]] = []
    if click.confirm("Check the store and the Git remote now?", default=True, err=True):
        loaded = LoadedConfig.load(workspace=root)
        if workspace_file is None:
            loaded = loaded.replace(store={"url": summary.get("store_url")},
                                    git={"remote_url": summary.get("remote_url")})
        try:
            results = loaded.validate_credentials(workspace=root)
        except ConfigError as exc:
            _say(f"  ! {exc.one_line()}")
            results = []
        for check in results:
            _say(f"  {'ok  ' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
            checks.append({"name": check.name, "ok": check.ok, "detail": check.detail})
        if any(not c["ok"] for c in checks):
            _say("  a new store is created by 'cpv init --store URL'")
    summary["checks"] = checks
    return summary
