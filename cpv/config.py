"""CPVConfig: one frozen, validated configuration object, loaded at the edge and passed down.

Why one object: settings that trickle in from files, environment variables and function
arguments at random depths make behaviour depend on where code happens to run. Here they are
merged once, in a documented order, validated once (pydantic, ``extra="forbid"`` so a misspelt
key fails loudly instead of being ignored), and handed to the api/workspace layer. This module
is the one owner of the schema and its rules; reading the files and variables is
:mod:`cpv.configsource`'s (no pydantic there, so a command that needs only the answers of a
configuration validated before does not import it). Nothing reads the environment at import
time; :meth:`CPVConfig.load` (through :meth:`~cpv.configsource.ConfigInputs.read`) and
:func:`default_config_path` are the only readers of ``os.environ``, and only when not given an
explicit ``env`` mapping.

Precedence, lowest to highest (``docs/config.md`` has the full table)::

    defaults  <  user file (~/.cpv/config.json)  <  workspace file (<ws>/.cpv/config.json)
              <  CPV_* environment variables     <  explicit arguments (replace/with_overrides)

Invariant 8: credentials are never written by cpv. The model has no field that can hold a
secret (``extra="forbid"`` rejects ``aws_secret_access_key`` & co. with a dedicated message),
every string is screened for things that look like keys or tokens, URLs must not carry a
password, and files are written with mode 0600 in a 0700 ``~/.cpv`` directory.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal
from urllib.parse import unquote, urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError
from typing_extensions import Self

from cpv.configsource import (
    CONFIG_DIRNAME,
    ENV_OVERRIDES,
    SECRET_SETTINGS,
    ConfigInputs,
    Environment,
    as_dict,
    default_config_path,
    holds,
    merge_layers,
    read_config_file,
    workspace_config_path,
)
from cpv.engine.limits import PART_SIZE_RANGE, WORKERS_RANGE
from cpv.errors import ConfigError
from cpv.secrets import find_secret, find_token, redact, redact_url, url_credential

if TYPE_CHECKING:
    from cpv.credentials import CredentialCheck

logger = logging.getLogger(__name__)

KiB: Final = 1024
MiB: Final = 1024 * KiB
GiB: Final = 1024 * MiB

TEAM_RE: Final = re.compile(r"^AI-[A-Za-z0-9][A-Za-z0-9_-]*$")
MODEL_RE: Final = re.compile(r"^[a-z0-9][a-z0-9._-]*$")
_NAME_MAX = 100
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PROFILE_RE = re.compile(r"^[A-Za-z0-9_.+@=,-]+$")
_REGION_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_HOST_ALIAS_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_HOSTNAME_RE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")

# A key with one of these words is somebody trying to store a credential, not a typo.
_SECRET_KEY_RE = re.compile(
    r"secret|passw|token|credential|private_?key|access_?key|api_?key|session", re.IGNORECASE
)
_NO_CREDENTIALS_HINT = (
    "cpv never stores credentials: keep AWS keys in ~/.aws (aws configure --profile NAME) and "
    "record only the profile name; for Git use an SSH key and record only its path"
)

_URL_CREDENTIAL_HINT = (
    "cpv never stores credentials: give the URL without its password or token; for Git use an "
    "SSH remote (git@host:team/repo.git), or set up git's own access to the HTTPS remote "
    "outside cpv"
)


# --------------------------------------------------------------------------------------------
# Value checks shared by the sections. They raise PydanticCustomError so that the hint travels
# with the error to the one place that turns a ValidationError into a ConfigError.


def _invalid(message: str, hint: str = "") -> PydanticCustomError:
    return PydanticCustomError("cpv_invalid", "{message}", {"message": message, "hint": hint})


def _refuse_secret(value: str) -> str:
    what = find_secret(value)
    if what:
        hint = _URL_CREDENTIAL_HINT if url_credential(value) else _NO_CREDENTIALS_HINT
        raise _invalid(f"looks like {what}; refusing to store it", hint)
    return value


def _refuse_credential(value: str) -> str:
    """For settings that are secret by nature (a webhook URL): no token or password in them.

    The webhook itself is allowed; where it may be written is decided by
    :data:`SECRET_SETTINGS`, not here.
    """
    credential = url_credential(value)
    what = f"a URL with {credential}" if credential else find_token(value)
    if what:
        raise _invalid(f"looks like {what}; refusing to store it", _URL_CREDENTIAL_HINT)
    return value


def _check_team(value: str) -> str:
    if len(value) > _NAME_MAX or not TEAM_RE.match(value):
        raise _invalid(
            f"team {value!r} is not of the form AI-<Team>",
            "use e.g. AI-Convo: 'AI-', then letters, digits, '_' or '-'",
        )
    return value


def _check_model(value: str) -> str:
    if len(value) > _NAME_MAX or not MODEL_RE.match(value):
        raise _invalid(
            f"model name {value!r} must be lowercase without spaces",
            "use e.g. faster-whisper: lowercase letters, digits, '.', '_' or '-'",
        )
    return value


def _check_bucket(value: str) -> str:
    if not _BUCKET_RE.match(value) or ".." in value:
        raise _invalid(
            f"{value!r} is not a valid S3 bucket name",
            "3-63 characters: lowercase letters, digits, '.' and '-'",
        )
    return value


def _normalize_prefix(value: str) -> str:
    prefix = value.strip("/")
    if prefix and any(part in ("", ".", "..") for part in prefix.split("/")):
        raise _invalid(
            f"prefix {value!r} has an empty, '.' or '..' segment", "use e.g. team/models"
        )
    return prefix


def _check_profile(value: str) -> str:
    if not _PROFILE_RE.match(value):
        raise _invalid(
            f"{value!r} is not an AWS profile name",
            "give the profile's name as in ~/.aws/config, e.g. ml-team",
        )
    return value


def _check_region(value: str) -> str:
    if not _REGION_RE.match(value):
        raise _invalid(f"{value!r} is not a region name", "use e.g. eu-west-1")
    return value


def _check_http_url(value: str) -> str:
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _invalid(f"{redact(value)!r} is not a URL: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise _invalid(f"{redact(value)!r} is not an http(s) URL", "use e.g. https://host:port")
    return value


def _check_abs_or_home_path(value: str) -> str:
    if not (value.startswith("~") or Path(value).is_absolute()) or "\0" in value:
        raise _invalid(f"{value!r} is not an absolute path", "use an absolute path or ~/...")
    return value


def _check_store_url(value: str) -> str:
    _parse_store_url(value)  # raises PydanticCustomError
    return value


def _check_git_remote(value: str) -> str:
    if not value or value != value.strip() or "\0" in value:
        raise _invalid(f"{value!r} is not a Git remote URL")
    if "://" in value:
        parts = urlsplit(value)
        if parts.scheme not in ("ssh", "git", "http", "https", "file", "git+ssh", "ssh+git"):
            raise _invalid(
                f"Git remote {value!r} has an unsupported scheme {parts.scheme!r}",
                "use git@host:team/repo.git, ssh://, https:// or file://",
            )
    return value


def _check_branch(value: str) -> str:
    bad = (
        not value
        or value.startswith(("-", "/", "."))
        or value.endswith(("/", ".", ".lock"))
        or ".." in value
        or "//" in value
        or "@{" in value
        or any(c.isspace() or c in "~^:?*[\\" or ord(c) < 32 for c in value)
    )
    if bad:
        raise _invalid(f"{value!r} is not a valid Git branch name", "use e.g. main")
    return value


def _check_host_alias(value: str) -> str:
    if not _HOST_ALIAS_RE.match(value):
        raise _invalid(
            f"{value!r} is not a valid SSH host alias", "letters, digits, '.', '_' and '-'"
        )
    return value


def _check_key_path(value: str) -> str:
    _check_abs_or_home_path(value)
    if value.endswith(".pub"):
        raise _invalid(f"{value!r} is a public key", "give the private key's path (without .pub)")
    return value


SafeStr = Annotated[str, AfterValidator(_refuse_secret)]
TeamName = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_team)]
ModelName = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_model)]
BucketName = Annotated[str, AfterValidator(_check_bucket)]
Prefix = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_normalize_prefix)]
ProfileName = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_profile)]
RegionName = Annotated[str, AfterValidator(_check_region)]
HttpUrl = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_http_url)]
WebhookUrl = Annotated[str, AfterValidator(_refuse_credential), AfterValidator(_check_http_url)]
AbsPath = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_abs_or_home_path)]
KeyPath = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_key_path)]
StoreUrl = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_store_url)]
GitRemote = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_git_remote)]
BranchName = Annotated[str, AfterValidator(_refuse_secret), AfterValidator(_check_branch)]
HostAlias = Annotated[str, AfterValidator(_check_host_alias)]


# --------------------------------------------------------------------------------------------
# Sections


class _Model(BaseModel):
    """Frozen, typo-intolerant base; direct construction raises ConfigError, not pydantic's."""

    # defer_build: the validators are built when first used, not when this module is imported;
    # loading the config validates CPVConfig alone (its sections inline), so the sections'
    # own validators are never built on the way (a no-op push's start-up, docs/benchmarks.md).
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True,
                              defer_build=True)

    if not TYPE_CHECKING:  # keep the field-typed __init__ that pydantic synthesises for mypy

        def __init__(self, **data: Any) -> None:
            try:
                super().__init__(**data)
            except ValidationError as exc:
                raise _config_error(exc, model=type(self), origins={}) from exc

        # Same trick as pydantic's own RootModel.__init__: this __init__ only translates the
        # error, so pydantic may keep validating nested sections and model_validate() without
        # calling it (else a nested ConfigError would be re-wrapped as a ValidationError).
        __init__.__pydantic_base_init__ = True


class AwsSection(_Model):
    """How to reach S3. Only the *name* of an AWS profile, never its keys (invariant 8)."""

    profile: ProfileName | None = None
    region: RegionName | None = None
    bucket: BucketName | None = None
    prefix: Prefix = ""
    endpoint_url: HttpUrl | None = None  # an S3-compatible server, e.g. the loopback test server
    # Server-side encryption of every object cpv writes: "AES256" (SSE-S3) or "aws:kms" (SSE-KMS,
    # with the key *id*, never key material). SSE-C is not offered: cpv would have to hold a key.
    sse: Literal["AES256", "aws:kms"] | None = None
    sse_kms_key_id: str | None = None


class StoreSection(_Model):
    """Where the bytes live: ``s3://bucket/prefix``, ``file:///abs/path`` or a folder path.

    ``None`` means: ``s3://{aws.bucket}/{aws.prefix}`` when a bucket is configured, otherwise a
    local folder store inside the workspace (see :meth:`CPVConfig.store_location`).
    """

    url: StoreUrl | None = None


class GitSection(_Model):
    """Where history goes. ``ssh_key_path`` is a *path*; the key itself stays in ~/.ssh."""

    remote_url: GitRemote | None = None
    branch: BranchName = "main"
    ssh_host_alias: HostAlias | None = None
    ssh_key_path: KeyPath | None = None


class CacheSection(_Model):
    """Local cache (index, stat cache, chunks). ``None``: $XDG_CACHE_HOME/cpv or ~/.cache/cpv."""

    dir: AbsPath | None = None


class TransferSection(_Model):
    """Concurrency and memory budget of transfers; the engine gets these as plain numbers.

    Peak transfer memory is about ``(workers + 2) * part_size`` (parts and ranges being moved);
    ``max_inflight_bytes`` caps it by lowering the workers a transfer uses
    (:attr:`effective_workers`), so it must hold three parts. The bounds of ``workers`` and
    ``part_size`` are the engine's own (:mod:`cpv.engine.transfer`), declared once there.
    """

    workers: int = Field(default=8, ge=WORKERS_RANGE[0], le=WORKERS_RANGE[1])
    max_inflight_bytes: int = Field(default=256 * MiB, ge=1 * MiB, le=64 * GiB)
    part_size: int = Field(default=16 * MiB, ge=PART_SIZE_RANGE[0], le=PART_SIZE_RANGE[1])
    pack_size: int = Field(default=64 * MiB, ge=1 * MiB, le=5 * GiB)

    @model_validator(mode="after")
    def _budget_holds_a_part(self) -> Self:
        if self.max_inflight_bytes < 3 * self.part_size:
            raise _invalid(
                f"max_inflight_bytes ({self.max_inflight_bytes}) is smaller than three parts "
                f"(part_size {self.part_size})",
                "raise max_inflight_bytes or lower part_size",
            )
        return self

    @property
    def effective_workers(self) -> int:
        """Workers within the memory budget: ``(workers + 2) * part_size <= max_inflight``."""
        return max(1, min(self.workers, self.max_inflight_bytes // self.part_size - 2))


class NotifySection(_Model):
    """Where to announce new versions (Slack/Teams incoming webhook). Redacted in displays."""

    webhook_url: WebhookUrl | None = None


# --------------------------------------------------------------------------------------------
# Environment snapshot and store location


@dataclass(frozen=True, slots=True)
class StoreLocation:
    """A parsed store address: an S3 bucket + prefix, or an absolute local folder."""

    kind: Literal["s3", "file"]
    bucket: str = ""
    prefix: str = ""
    path: Path | None = None

    @property
    def url(self) -> str:
        """``s3://bucket/prefix`` or ``file:///abs/path`` (percent-encoded, as Path.as_uri)."""
        if self.kind == "s3":
            return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        assert self.path is not None  # "file" locations always have a path
        return self.path.as_uri()


def _parse_store_url(url: str) -> StoreLocation | str:
    """A StoreLocation for s3/file URLs, or the plain path text; PydanticCustomError if bad."""
    if "\0" in url or not url:
        raise _invalid(f"{url!r} is not a store URL")
    if "://" not in url:
        return url  # a folder path; relative ones are resolved against the workspace
    parts = urlsplit(url)
    if parts.scheme == "s3":
        if not parts.netloc:
            raise _invalid(f"store URL {url!r} has no bucket", "use s3://bucket/prefix")
        _check_bucket(parts.netloc)
        return StoreLocation(kind="s3", bucket=parts.netloc, prefix=_normalize_prefix(parts.path))
    if parts.scheme == "file":
        path = unquote(parts.path)
        if parts.netloc not in ("", "localhost") or not Path(path).is_absolute():
            raise _invalid(f"store URL {url!r} is not an absolute file URL", "use file:///abs/path")
        return StoreLocation(kind="file", path=Path(path))
    raise _invalid(
        f"store URL {url!r} has unsupported scheme {parts.scheme!r}",
        "use s3://bucket/prefix, file:///abs/path or a folder path",
    )


# --------------------------------------------------------------------------------------------
# The configuration object


class CPVConfig(_Model):
    """The whole cpv configuration: frozen, validated, secret-free.

    Build it with :meth:`load` (files + environment) at the edge of the program, adjust it
    with :meth:`replace` / :meth:`with_overrides` (explicit arguments win over everything),
    and pass it down. The api layer may subclass it (e.g. to add ``validate_credentials``);
    every constructor here returns an instance of the subclass it was called on.

    Example::

        cfg = CPVConfig.load(workspace=Path("."))
        cfg = cfg.with_overrides({"transfer.workers": 16})
        cfg.store_url(workspace=Path("."))     # 's3://vmo-model-checkpoints/AI-Convo'
    """

    aws: AwsSection = Field(default_factory=AwsSection)
    store: StoreSection = Field(default_factory=StoreSection)
    git: GitSection = Field(default_factory=GitSection)
    cache: CacheSection = Field(default_factory=CacheSection)
    transfer: TransferSection = Field(default_factory=TransferSection)
    notify: NotifySection = Field(default_factory=NotifySection)
    team: TeamName | None = None
    model: ModelName | None = None

    _env: Environment = PrivateAttr(default_factory=Environment)
    _origins: dict[str, str] = PrivateAttr(default_factory=dict)
    _sources: tuple[str, ...] = PrivateAttr(default=())

    def __eq__(self, other: object) -> bool:
        # Settings only: where they came from (private provenance) does not make two configs
        # different. pydantic's default would also compare the private attributes.
        if not isinstance(other, CPVConfig):
            return NotImplemented
        return self.model_dump() == other.model_dump()

    def __hash__(self) -> int:
        return hash(_to_json(self.model_dump(mode="json")))

    # ---- building ------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        workspace: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Self:
        """Read user file, workspace file and ``CPV_*`` variables, merged in that order.

        Args:
            path: the user config file; default ``$CPV_CONFIG`` or ``~/.cpv/config.json``.
                A missing file is fine (defaults apply).
            workspace: a workspace folder; its ``.cpv/config.json`` overrides the user file,
                section by section, key by key.
            env: the environment to read ``CPV_*``, ``HOME``, ``XDG_CACHE_HOME`` from. ``None``
                means ``os.environ``; tests pass ``{}``. Apart from
                :func:`default_config_path`, this is the only reader of the process environment.

        Raises:
            ConfigError: a file is not valid JSON (names file and line), holds an unknown or
                invalid setting, or something that looks like a credential.
        """
        return cls.from_inputs(ConfigInputs.read(path, workspace=workspace, env=env))

    @classmethod
    def from_inputs(cls, inputs: ConfigInputs) -> Self:
        """Validate settings read by :meth:`ConfigInputs.read`; errors name their file or
        variable.

        Raises:
            ConfigError: an unknown or invalid setting, or something that looks like a
                credential.
        """
        return cls._build(dict(inputs.merged), origins=dict(inputs.origins),
                          environment=inputs.environment, sources=inputs.sources)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "arguments") -> Self:
        """Validate a plain mapping (e.g. parsed JSON); errors name ``source``."""
        merged, origins = merge_layers([(source, as_dict(data, source))])
        return cls._build(merged, origins=origins, environment=Environment(), sources=[source])

    @classmethod
    def _build(
        cls,
        data: dict[str, Any],
        *,
        origins: dict[str, str],
        environment: Environment,
        sources: Iterable[str],
    ) -> Self:
        try:
            cfg = cls.model_validate(data)
        except ValidationError as exc:
            raise _config_error(exc, model=cls, origins=origins) from exc
        cfg._env = environment
        cfg._origins = origins
        cfg._sources = tuple(dict.fromkeys(sources))
        return cfg

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied; they beat every file and environment variable.

        A dict for a section is merged into it (``aws={"profile": "ml"}`` keeps the bucket);
        a section object replaces it whole; a top-level value replaces the value.

        Raises:
            ConfigError: an unknown key or an invalid value (the message says "arguments").
        """
        data = self.model_dump()
        origins = dict(self._origins)
        for key, value in changes.items():
            if isinstance(value, BaseModel):
                data[key] = value.model_dump()
                for sub in data[key]:
                    origins[f"{key}.{sub}"] = "arguments"
            elif isinstance(value, Mapping) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
                for sub in value:
                    origins[f"{key}.{sub}"] = "arguments"
            else:
                data[key] = value
            origins[key] = "arguments"
        return type(self)._build(
            data, origins=origins, environment=self._env, sources=[*self._sources, "arguments"]
        )

    def with_overrides(self, overrides: Mapping[str, object]) -> Self:
        """Apply dotted-key overrides such as ``{"aws.profile": "ml", "transfer.workers": 4}``.

        ``None`` values are skipped, so a CLI can pass every option it has, set or not.
        """
        changes: dict[str, Any] = {}
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if key:
                nested = changes.setdefault(section, {})
                if not isinstance(nested, dict):
                    raise ConfigError(f"override {dotted!r} conflicts with {section!r}")
                nested[key] = value
            else:
                changes[section] = value
        return self.replace(**changes) if changes else self

    # ---- saving --------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the non-default settings to ``path`` atomically, mode 0600 (invariant 8).

        The file holds only what differs from the defaults, so later cpv versions can improve
        defaults. Note that a config produced by :meth:`load` includes environment overrides;
        to change one setting in a file without copying the rest in, use
        :func:`update_config_file`.

        Returns:
            The path written.

        Raises:
            ConfigError: the file or its folder cannot be written.
        """
        target = self._env.expand(path)
        from cpv.provision import write_private_file  # here: loading needs none of it

        write_private_file(target, _to_json(self.model_dump(mode="json", exclude_defaults=True)))
        logger.info("saved cpv config to %s", target)
        return target

    # ---- resolved values -----------------------------------------------------------------

    @property
    def sources(self) -> tuple[str, ...]:
        """Files and environment variables that contributed, lowest precedence first."""
        return self._sources

    @property
    def cache_dir(self) -> Path:
        """``cache.dir``, else ``$XDG_CACHE_HOME/cpv`` (if absolute), else ``~/.cache/cpv``."""
        if self.cache.dir:
            return self._env.expand(self.cache.dir)
        xdg = self._env.xdg_cache_home
        if xdg and Path(xdg).is_absolute():
            return Path(xdg) / "cpv"
        return self._env.home_dir() / ".cache" / "cpv"

    @property
    def ssh_key_file(self) -> Path | None:
        """``git.ssh_key_path`` with ``~`` expanded."""
        return self._env.expand(self.git.ssh_key_path) if self.git.ssh_key_path else None

    @property
    def git_ssh_command(self) -> str | None:
        """A ``GIT_SSH_COMMAND`` that uses only the configured key, or None if none is set.

        Not needed when the remote uses the host alias written by :meth:`setup_bitbucket_ssh`
        (the alias's ``IdentityFile`` already does this); harmless if both are present.
        """
        key = self.ssh_key_file
        if key is None:
            return None
        return f"ssh -i {shlex.quote(str(key))} -o IdentitiesOnly=yes"

    def store_location(self, *, workspace: str | os.PathLike[str] | None = None) -> StoreLocation:
        """Where the store is: ``store.url``, else ``aws.bucket``/``aws.prefix``, else a local
        folder ``<workspace>/.cpv/store`` (the embedded default for a first run).

        Relative folder paths in ``store.url`` are relative to the workspace.

        Raises:
            ConfigError: the answer depends on a workspace and none was given.
        """
        if self.store.url is not None:
            parsed = _parse_store_url(self.store.url)
            if isinstance(parsed, StoreLocation):
                return parsed
            folder = self._env.expand(parsed)
            if not folder.is_absolute():
                if workspace is None:
                    raise ConfigError(
                        f"store.url {self.store.url!r} is relative and no workspace was given",
                        hint="use an absolute path or file:///abs/path",
                    )
                folder = Path(workspace) / folder
            return StoreLocation(kind="file", path=Path(os.path.abspath(folder)))
        if self.aws.bucket:
            return StoreLocation(kind="s3", bucket=self.aws.bucket, prefix=self.aws.prefix)
        if workspace is None:
            raise ConfigError(
                "no store configured",
                hint="set store.url (or CPV_STORE_URL) or aws.bucket, or open a workspace",
            )
        folder = Path(os.path.abspath(Path(workspace) / CONFIG_DIRNAME / "store"))
        return StoreLocation(kind="file", path=folder)

    def store_url(self, *, workspace: str | os.PathLike[str] | None = None) -> str:
        """:meth:`store_location` as a URL string."""
        return self.store_location(workspace=workspace).url

    def get_config(self) -> dict[str, Any]:
        """Every setting (defaults included) for display: webhook URLs redacted, paths resolved.

        Safe to print or log: the model holds no credentials, and the one secret-bearing value
        (a webhook URL) is shown as ``scheme://host/…``.
        """
        view: dict[str, Any] = self.model_dump(mode="json")
        if self.notify.webhook_url:
            view["notify"]["webhook_url"] = redact_url(self.notify.webhook_url)
        view["cache"]["dir"] = str(self.cache_dir)
        view["sources"] = list(self._sources)
        return view

    def validate_credentials(
        self, *, workspace: str | os.PathLike[str] | None = None
    ) -> list[CredentialCheck]:
        """Really check that the store and the Git remote can be reached with these settings.

        The seed API's method; the checks live with the service that owns store and Git
        access, imported here on call so that configuration stays free of them.
        """
        from cpv.credentials import validate_credentials

        return validate_credentials(self, workspace=workspace)

    # ---- one-time setup (seed API) -------------------------------------------------------

    def setup_aws_profile(
        self,
        profile: str = "default",
        *,
        region: str | None = None,
        bucket: str | None = None,
        prefix: str = "",
        endpoint_url: str | None = None,
        credential_path: str | os.PathLike[str] | None = None,
        save_to: str | os.PathLike[str] | None = None,
    ) -> Self:
        """Record which AWS profile (and bucket) cpv uses; the keys stay where they are.

        The profile must exist in ``credential_path`` if given, else in the AWS shared
        credentials or config file (``~/.aws/credentials``, ``~/.aws/config``, or the files
        named by ``AWS_SHARED_CREDENTIALS_FILE``/``AWS_CONFIG_FILE`` at load time). Nothing is
        copied out of those files. The returned config has its ``aws`` section set exactly to
        these arguments.

        Args:
            save_to: also merge the new ``aws`` section into this config file (e.g.
                ``default_config_path()``); other settings in that file are kept.

        Raises:
            ConfigError: the profile is not found (hint: ``aws configure --profile NAME``),
                or a value is invalid.

        Example::

            cfg = CPVConfig.load().setup_aws_profile("ml", bucket="vmo-model-checkpoints",
                                                     save_to=default_config_path())
        """
        aws = {
            "profile": profile,
            "region": region,
            "bucket": bucket,
            "prefix": prefix,
            "endpoint_url": endpoint_url,
        }
        new = self.replace(aws=aws)
        candidates = (
            [self._env.expand(credential_path)]
            if credential_path is not None
            else [
                self._env.expand(self._env.aws_credentials_file or "~/.aws/credentials"),
                self._env.expand(self._env.aws_config_file or "~/.aws/config"),
            ]
        )
        if credential_path is not None and not candidates[0].is_file():
            raise ConfigError(
                f"AWS credential file not found: {candidates[0]}",
                hint=f"check the path, or run: aws configure --profile {profile}",
            )
        from cpv.provision import find_aws_profile

        if find_aws_profile(profile, candidates) is None:
            raise ConfigError(
                f"AWS profile {profile!r} not found in {', '.join(map(str, candidates))}",
                hint=f"run: aws configure --profile {profile}",
            )
        if save_to is not None:
            _update_config_file(save_to, {"aws": new.aws.model_dump()}, self._env)
        return new

    def setup_bitbucket_ssh(
        self,
        *,
        remote_url: str | None = None,
        keygen_filename: str = "id_rsa_bitbucket",
        ssh_dir: str | os.PathLike[str] | None = None,
        host: str = "bitbucket.org",
        host_alias: str | None = None,
        generate: bool = True,
        save_to: str | os.PathLike[str] | None = None,
    ) -> SshSetup:
        """Give cpv its own SSH key and host alias for the Git remote (default: Bitbucket).

        Finds ``<ssh_dir>/<keygen_filename>`` or generates it (ed25519, no passphrase), writes
        a marked ``Host <alias>`` block to ``<ssh_dir>/config`` (replaced in place on re-runs,
        never duplicated) and rewrites the remote URL to use the alias. Returns the public key
        to paste into Bitbucket (Personal settings → SSH keys, or the repository's access keys).
        The private key is never read into the config or written anywhere else.

        Args:
            remote_url: e.g. ``git@bitbucket.org:team/repo.git``; default ``git.remote_url``.
            keygen_filename: key file name inside ``ssh_dir`` (the public key gets ``.pub``).
            ssh_dir: default ``~/.ssh`` (created 0700 if missing).
            host: the real SSH host the alias points to.
            host_alias: default ``<first label of host>-cpv``, e.g. ``bitbucket-cpv``.
            generate: create the key if missing; if False a missing key is an error.
            save_to: also merge the new ``git`` settings into this config file.

        Raises:
            ConfigError: no or unsuitable remote URL, key missing (with ``generate=False``),
                ``ssh-keygen`` not installed or failing, or an unmanaged ``Host <alias>``
                block already in the SSH config.
        """
        remote = remote_url if remote_url is not None else self.git.remote_url
        if not remote:
            raise ConfigError(
                "no Git remote URL to set up SSH for",
                hint="pass remote_url='git@bitbucket.org:team/repo.git' or set git.remote_url",
            )
        if not _HOSTNAME_RE.match(host):
            raise ConfigError(f"{host!r} is not a host name", hint="e.g. bitbucket.org")
        alias = host_alias or f"{host.split('.')[0]}-cpv"
        if not _HOST_ALIAS_RE.match(alias):
            raise ConfigError(f"{alias!r} is not a valid SSH host alias")
        if (
            not keygen_filename
            or Path(keygen_filename).name != keygen_filename
            or keygen_filename.startswith(".")
            or keygen_filename.endswith(".pub")
        ):
            raise ConfigError(
                f"keygen_filename {keygen_filename!r} must be a plain file name",
                hint="e.g. id_rsa_bitbucket (the public key is written next to it as .pub)",
            )
        from cpv.provision import (
            ensure_private_dir,
            ensure_ssh_key,
            rewrite_remote,
            write_ssh_host_block,
        )

        new_remote, port = rewrite_remote(remote, host=host, alias=alias)
        directory = Path(
            os.path.abspath(
                self._env.expand(ssh_dir) if ssh_dir is not None else self._env.home_dir() / ".ssh"
            )
        )
        key_path = directory / keygen_filename
        git = {"remote_url": new_remote, "ssh_host_alias": alias, "ssh_key_path": str(key_path)}
        new = self.replace(git=git)  # validate before touching any file
        ensure_private_dir(directory)
        public_key, created = ensure_ssh_key(key_path, generate=generate, comment=f"cpv@{alias}")
        config_path = directory / "config"
        changed = write_ssh_host_block(
            config_path, alias=alias, host=host, key_path=key_path, port=port
        )
        if save_to is not None:
            _update_config_file(save_to, {"git": git}, self._env)
        return SshSetup(
            key_path=key_path,
            public_key=public_key,
            remote_url=new_remote,
            host_alias=alias,
            ssh_config_path=config_path,
            key_created=created,
            ssh_config_changed=changed,
            config=new,
        )


@dataclass(frozen=True, slots=True)
class SshSetup:
    """What :meth:`CPVConfig.setup_bitbucket_ssh` did, and what the user must do next."""

    key_path: Path
    public_key: str  # paste this into Bitbucket; it is the *public* half
    remote_url: str  # the remote rewritten to use ``host_alias``
    host_alias: str
    ssh_config_path: Path
    key_created: bool
    ssh_config_changed: bool
    config: CPVConfig  # the config with git.remote_url / ssh_host_alias / ssh_key_path set


# --------------------------------------------------------------------------------------------
# Public helpers


def validate_team_name(name: str) -> str:
    """Return ``name`` if it is ``AI-<Team>``; else ConfigError with the rule as hint."""
    return _check_name(name, _check_team, "team")


def validate_model_name(name: str) -> str:
    """Return ``name`` if it is lowercase without spaces; else ConfigError with the rule."""
    return _check_name(name, _check_model, "model")


def _check_name(name: str, check: Any, what: str) -> str:
    try:
        _refuse_secret(name)
        checked: str = check(name)
    except PydanticCustomError as exc:
        ctx = exc.context or {}
        raise ConfigError(str(ctx.get("message", exc)), hint=str(ctx.get("hint", ""))) from exc
    return checked


def update_config_file(path: str | os.PathLike[str], changes: Mapping[str, Any]) -> CPVConfig:
    """Merge ``changes`` (section dicts or top-level values) into one config file, atomically.

    Only that file's own content is read and rewritten, so environment overrides or the other
    file never leak into it. The result is validated before anything is written.

    Returns:
        The configuration held by that file alone.

    Raises:
        ConfigError: the existing file is malformed, or the result would be invalid.
    """
    return _update_config_file(path, changes, Environment())


def _update_config_file(
    path: str | os.PathLike[str], changes: Mapping[str, Any], environment: Environment
) -> CPVConfig:
    target = environment.expand(path)
    current = read_config_file(target, warn_if_shared=False) or {}
    merged, origins = merge_layers([(str(target), current), (str(target), dict(changes))])
    cfg = CPVConfig._build(merged, origins=origins, environment=environment, sources=[str(target)])
    cfg.save(target)
    return cfg


@dataclass(frozen=True, slots=True)
class SettingChange:
    """What :func:`set_setting` / :func:`unset_setting` did, in words safe to print.

    ``shown`` is the value as it may be displayed (a secret is redacted); ``moved`` is True when a
    secret setting asked for the workspace went to the user's private file instead.
    """

    key: str
    shown: str | None
    path: Path
    scope: Literal["workspace", "user"]
    changed: bool
    moved: bool


def is_secret_setting(key: str) -> bool:
    """True if the dotted ``key`` holds a secret and so never goes into a workspace file."""
    return key in SECRET_SETTINGS


def set_setting(
    key: str,
    value: str,
    *,
    workspace: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
) -> SettingChange:
    """Set the dotted ``key`` in the workspace's file (or the user's, if ``workspace`` is None).

    A secret setting (:data:`SECRET_SETTINGS`) asked for a workspace is written to the user's
    private file instead, because the workspace file is committed and pushed; the returned
    ``moved`` says so, so the caller can tell the user.

    Raises:
        ConfigError: an unknown key, an invalid value, a credential, or an unwritable file.
    """
    environment = Environment.capture(os.environ if env is None else env)
    path, scope, moved = _setting_file(key, workspace, env)
    section, _, sub = key.partition(".")
    change: dict[str, Any] = {section: {sub: value}} if sub else {section: value}
    _update_config_file(path, change, environment)
    return SettingChange(key, _shown(key, value), path, scope, True, moved)


def unset_setting(
    key: str,
    *,
    workspace: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
) -> SettingChange:
    """Remove the dotted ``key`` from the workspace's (or user's) file; the default applies again.

    For a secret setting inside a workspace, a copy left in the workspace file (written by an
    older cpv, or by hand) is removed first: that is the fix :meth:`CPVConfig.load` asks for.
    Otherwise the user's private file, where :func:`set_setting` put it, is the one changed.

    Raises:
        ConfigError: the file is not valid JSON, or cannot be written.
    """
    environment = Environment.capture(os.environ if env is None else env)
    path, scope, moved = _setting_file(key, workspace, env)
    if moved and workspace is not None:
        ws_path = workspace_config_path(workspace)
        if holds(read_config_file(ws_path, warn_if_shared=False) or {}, key):
            path, scope, moved = ws_path, "workspace", False
    target = environment.expand(path)
    doc = read_config_file(target, warn_if_shared=False) or {}
    changed = holds(doc, key)
    if changed:
        section, _, sub = key.partition(".")
        if sub:
            del doc[section][sub]
            if not doc[section]:
                del doc[section]
        else:
            del doc[section]
        merged, origins = merge_layers([(str(target), doc)])
        CPVConfig._build(merged, origins=origins, environment=environment,
                         sources=[str(target)]).save(target)
    return SettingChange(key, None, target, scope, changed, moved)


def _setting_file(
    key: str, workspace: str | os.PathLike[str] | None, env: Mapping[str, str] | None
) -> tuple[Path, Literal["workspace", "user"], bool]:
    if workspace is None:
        return default_config_path(env=env), "user", False
    if is_secret_setting(key):
        return default_config_path(env=env), "user", True
    return workspace_config_path(workspace), "workspace", False


def _shown(key: str, value: str) -> str:
    return redact_url(value) if is_secret_setting(key) else redact(value)


# --------------------------------------------------------------------------------------------
# Files, layers and error translation


def _config_error(
    exc: ValidationError, *, model: type[BaseModel], origins: Mapping[str, str]
) -> ConfigError:
    """One line naming the setting and where it came from, plus a hint."""
    # A credential in the wrong place matters more than anything else wrong in the same file.
    errors = sorted(
        exc.errors(),
        key=lambda e: (
            not (e["type"] == "extra_forbidden" and _SECRET_KEY_RE.search(str(e["loc"][-1])))
        ),
    )
    first = errors[0]
    loc = [str(p) for p in first["loc"]]
    dotted = ".".join(loc) or model.__name__
    source = _origin_of(loc, origins)
    where = f" in {source}" if source else ""
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    more = more if len(errors) > 1 else ""
    ctx = first.get("ctx") or {}
    if first["type"] == "extra_forbidden":
        name = loc[-1] if loc else ""
        if _SECRET_KEY_RE.search(name):
            return ConfigError(
                f"{dotted}{where} looks like a credential; cpv does not store credentials{more}",
                hint=_NO_CREDENTIALS_HINT,
            )
        valid = _valid_keys(model, loc[:-1])
        close = difflib.get_close_matches(name, valid, n=1)
        hint = (f"did you mean {close[0]!r}? " if close else "") + (
            f"valid keys: {', '.join(valid)}" if valid else ""
        )
        return ConfigError(f"unknown setting {dotted}{where}{more}", hint=hint)
    if first["type"] == "cpv_invalid":
        return ConfigError(
            f"invalid {dotted}{where}: {ctx.get('message', first['msg'])}{more}",
            hint=str(ctx.get("hint", "")),
        )
    shown = first.get("input")
    if isinstance(shown, str):
        shown = redact(shown)
    got = f" (got {shown!r})" if isinstance(shown, (str, int, float, bool)) else ""
    if isinstance(shown, str) and len(shown) > 60:
        got = ""
    return ConfigError(
        f"invalid {dotted}{where}: {first['msg']}{got}{more}",
        hint="cpv config show lists every setting; cpv config --help says how to change one",
    )


def _origin_of(loc: list[str], origins: Mapping[str, str]) -> str:
    for end in range(len(loc), 0, -1):
        found = origins.get(".".join(loc[:end]))
        if found:
            return found
    return ""


def _valid_keys(model: type[BaseModel], path: list[str]) -> list[str]:
    current: type[BaseModel] = model
    for part in path:
        field = current.model_fields.get(part)
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        current = annotation
    return sorted(current.model_fields)


def _to_json(doc: Any) -> bytes:
    return (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode()


__all__ = [
    "ENV_OVERRIDES",
    "SECRET_SETTINGS",
    "AwsSection",
    "CPVConfig",
    "CacheSection",
    "GitSection",
    "NotifySection",
    "SettingChange",
    "SshSetup",
    "StoreLocation",
    "StoreSection",
    "TransferSection",
    "default_config_path",
    "is_secret_setting",
    "redact_url",
    "set_setting",
    "unset_setting",
    "update_config_file",
    "validate_model_name",
    "validate_team_name",
    "workspace_config_path",
]
