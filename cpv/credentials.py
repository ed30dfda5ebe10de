"""Can the store and the Git remote be reached with these settings? (``validate_credentials``)

Below the service so that :meth:`cpv.config.CPVConfig.validate_credentials`, the seed API's
method, can call it; ``cpv doctor`` prints the same checks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cpv.errors import CPVError

if TYPE_CHECKING:
    from cpv.config import CPVConfig


@dataclass(frozen=True, slots=True)
class CredentialCheck:
    """One line of :meth:`cpv.config.CPVConfig.validate_credentials` (and of ``cpv doctor``).

    Defined here, with the checks, and not with the config, so that the service's results can
    name it without importing the config's schema (pydantic).
    """

    name: str
    ok: bool
    detail: str


def validate_credentials(
    config: CPVConfig, *, workspace: str | os.PathLike[str] | None = None
) -> list[CredentialCheck]:
    """Really check that the store and the Git remote can be reached with ``config``."""
    # Here, not at the top: the service's results import this module for CredentialCheck.
    from cpv.engine.format import read_store_config
    from cpv.store import open_store
    from cpv.versioning import GitRepo

    checks = []
    url = config.store_url(workspace=workspace)
    try:
        store = open_store(url, profile=config.aws.profile, region=config.aws.region,
                           endpoint_url=config.aws.endpoint_url)
        try:
            cfg = read_store_config(store)
            checks.append(CredentialCheck("store", True, f"{url}: cpv store format {cfg.version}"))
        finally:
            store.close()
    except CPVError as exc:
        checks.append(CredentialCheck("store", False, f"{url}: {exc.one_line()}"))
    if config.git.remote_url:
        try:
            GitRepo.check_remote(config.git.remote_url, ssh_command=config.git_ssh_command)
            checks.append(CredentialCheck("git remote", True, config.git.remote_url))
        except CPVError as exc:
            checks.append(CredentialCheck("git remote", False, exc.one_line()))
    return checks
