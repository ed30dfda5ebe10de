"""Where a configuration comes from, and what the last validated one of a workspace answered.

:mod:`cpv.config` owns the schema and its validation (pydantic): what a valid setting is. This
module owns the sources: the two files, the ``CPV_*`` variables and their precedence
(:class:`ConfigInputs`), none of which needs pydantic. Why apart: importing pydantic and
building the validators costs about 0.2 CPU-s, more than everything else a no-op ``cpv push``
or ``cpv status`` does, and those commands need two answers from a configuration that already
validated: where the store is and where the local cache is (docs/benchmarks.md, "No-op push").

So :class:`ConfigInputs` remembers, in the workspace's git-ignored ``.cpv/local/``, the
:class:`ConfigAnswers` of the last configuration :mod:`cpv.config` validated there, keyed by
its exact inputs (every setting of both files and of the environment, ``HOME`` and
``XDG_CACHE_HOME``, the workspace's path, and the cpv version and files holding the rules).
The same inputs give the same answers without validating again; any difference, or an
unreadable record, means validation first, as every command did before. An invalid
configuration is never recorded, so it fails every command with the same one line as before.

Precedence, lowest to highest (``docs/config.md`` has the full table)::

    defaults  <  user file (~/.cpv/config.json)  <  workspace file (<ws>/.cpv/config.json)
              <  CPV_* environment variables     <  explicit arguments (CPVConfig.replace)
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from cpv.errors import ConfigError
from cpv.localmemo import file_stamp, key_of, recall, record

if TYPE_CHECKING:
    from cpv.config import CPVConfig

# Warnings about the configuration come from cpv.config's logger, wherever they are raised.
logger = logging.getLogger("cpv.config")

CONFIG_DIRNAME: Final = ".cpv"
CONFIG_FILENAME: Final = "config.json"
#: The answers of the last configuration validated in a workspace (git-ignored, per machine).
ANSWERS_FILE: Final = ".cpv/local/config-answers.json"

#: ``CPV_*`` environment variables that override a setting, and the setting they override.
ENV_OVERRIDES: Final[Mapping[str, str]] = {
    "CPV_STORE_URL": "store.url",
    "CPV_AWS_PROFILE": "aws.profile",
    "CPV_AWS_REGION": "aws.region",
    "CPV_AWS_BUCKET": "aws.bucket",
    "CPV_AWS_PREFIX": "aws.prefix",
    "CPV_ENDPOINT_URL": "aws.endpoint_url",
    "CPV_CACHE_DIR": "cache.dir",
    "CPV_GIT_REMOTE": "git.remote_url",
    "CPV_GIT_BRANCH": "git.branch",
    "CPV_GIT_SSH_KEY": "git.ssh_key_path",
    "CPV_WORKERS": "transfer.workers",
    "CPV_NOTIFY_WEBHOOK": "notify.webhook_url",
    "CPV_TEAM": "team",
    "CPV_MODEL": "model",
}
#: Settings whose value is itself a secret (a webhook URL is its own token). They live only in
#: the user's private file (``~/.cpv/config.json``, 0600) or the environment, never in a
#: workspace's ``.cpv/config.json``, which is committed to Git and pushed.
SECRET_SETTINGS: Final[frozenset[str]] = frozenset({"notify.webhook_url"})
#: ``CPV_*`` variables that are meaningful but are not settings (so they are not "unknown").
ENV_OTHER: Final[frozenset[str]] = frozenset({"CPV_CONFIG", "CPV_DEBUG"})

#: The modules whose code decides whether a setting is valid; their file stamps are part of a
#: remembered answer's key (with cpv's version), so an edited rule (a development tree, not
#: only a new release) validates again.
_RULE_MODULES: Final = ("config.py", "configsource.py", "secrets.py", "engine/limits.py")


# --------------------------------------------------------------------------------------------
# Environment and files


@dataclass(frozen=True, slots=True)
class Environment:
    """The few environment values config resolution needs, captured once by ``load``."""

    home: str | None = None
    xdg_cache_home: str | None = None
    aws_credentials_file: str | None = None
    aws_config_file: str | None = None

    @classmethod
    def capture(cls, env: Mapping[str, str]) -> Environment:
        return cls(
            home=env.get("HOME") or env.get("USERPROFILE") or None,
            xdg_cache_home=env.get("XDG_CACHE_HOME") or None,
            aws_credentials_file=env.get("AWS_SHARED_CREDENTIALS_FILE") or None,
            aws_config_file=env.get("AWS_CONFIG_FILE") or None,
        )

    def home_dir(self) -> Path:
        return Path(self.home) if self.home else Path.home()

    def expand(self, value: str | os.PathLike[str]) -> Path:
        text = os.fspath(value)
        if text == "~" or text.startswith(("~/", "~" + os.sep)):
            return self.home_dir() / text[2:]
        return Path(text).expanduser() if text.startswith("~") else Path(text)


def default_config_path(*, env: Mapping[str, str] | None = None) -> Path:
    """``$CPV_CONFIG`` if set, else ``~/.cpv/config.json`` (``env`` None: ``os.environ``)."""
    environ: Mapping[str, str] = os.environ if env is None else env
    captured = Environment.capture(environ)
    explicit = environ.get("CPV_CONFIG")
    if explicit:
        return captured.expand(explicit)
    return captured.home_dir() / CONFIG_DIRNAME / CONFIG_FILENAME


def workspace_config_path(workspace: str | os.PathLike[str]) -> Path:
    """``<workspace>/.cpv/config.json``: settings for one workspace, over the user file."""
    return Path(workspace) / CONFIG_DIRNAME / CONFIG_FILENAME


def holds(doc: Mapping[str, Any], key: str) -> bool:
    section, _, sub = key.partition(".")
    if not sub:
        return doc.get(section) is not None
    holder = doc.get(section)
    return isinstance(holder, Mapping) and holder.get(sub) is not None


def refuse_committed_secrets(doc: Mapping[str, Any], path: Path) -> None:
    """A workspace file is committed and pushed: a secret in it is already on its way out."""
    for key in sorted(SECRET_SETTINGS):
        if holds(doc, key):
            variable = next((v for v, k in ENV_OVERRIDES.items() if k == key), None)
            alt = f" (or set {variable})" if variable else ""
            raise ConfigError(
                f"{path} holds {key}, a secret, in a file committed to Git",
                hint=f"run cpv config unset {key}, then cpv config set --global {key} URL{alt}; "
                     "if that file was ever committed, replace the webhook too",
            )


def read_config_file(path: Path, *, warn_if_shared: bool = True) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None if there is no such file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise ConfigError(f"config path {path} is a directory", hint="point to a file") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {path}: {exc.strerror or exc}",
            hint="check the file's permissions",
        ) from exc
    try:
        if warn_if_shared and os.name == "posix" and stat.S_IMODE(path.stat().st_mode) & 0o077:
            logger.warning("config file %s is readable by others; run: chmod 600 %s", path, path)
    except OSError:
        pass
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not UTF-8 text", hint="re-save it as UTF-8 JSON"
        ) from exc
    if not text.strip():
        return {}
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {path} is not valid JSON: {exc.msg} at line {exc.lineno} "
            f"column {exc.colno}",
            hint="fix the JSON syntax (a trailing comma or a missing quote is usual)",
        ) from exc
    except _DuplicateKeyError as exc:
        raise ConfigError(
            f"config file {path} sets {exc.key!r} twice", hint="keep only one"
        ) from exc
    return as_dict(doc, str(path))


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def as_dict(doc: object, source: str) -> dict[str, Any]:
    if not isinstance(doc, Mapping):
        raise ConfigError(
            f"config in {source} must be a JSON object, not {type(doc).__name__}",
            hint='e.g. {"aws": {"profile": "ml"}}',
        )
    return {str(k): (dict(v) if isinstance(v, Mapping) else v) for k, v in doc.items()}


def env_layers(env: Mapping[str, str]) -> list[tuple[str, dict[str, Any]]]:
    layers: list[tuple[str, dict[str, Any]]] = []
    for name in sorted(env):
        if not name.startswith("CPV_"):
            continue
        if name not in ENV_OVERRIDES:
            if name not in ENV_OTHER:
                import difflib  # here: only for a misspelt variable

                close = difflib.get_close_matches(name, [*ENV_OVERRIDES, *ENV_OTHER], n=1)
                logger.warning(
                    "ignoring unknown environment variable %s%s",
                    name,
                    f" (did you mean {close[0]}?)" if close else "",
                )
            continue
        value = env[name]
        if value == "":
            continue  # VAR= means "unset", as with most tools
        section, _, key = ENV_OVERRIDES[name].partition(".")
        layer: dict[str, Any] = {section: {key: value}} if key else {section: value}
        layers.append((f"environment variable {name}", layer))
    return layers


def merge_layers(
    layers: Iterable[tuple[str, dict[str, Any]]],
) -> tuple[dict[str, Any], dict[str, str]]:
    """Deep-merge by section (later wins key by key) and remember which source set what."""
    merged: dict[str, Any] = {}
    origins: dict[str, str] = {}
    for source, doc in layers:
        for key, value in doc.items():
            if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = dict(value) if isinstance(value, Mapping) else value
            origins[key] = source
            if isinstance(value, Mapping):
                for sub in value:
                    origins[f"{key}.{sub}"] = source
    return merged, origins


@dataclass(frozen=True, slots=True)
class ConfigAnswers:
    """What a command that moves no byte asks of a validated configuration."""

    store_url: str
    """The store's URL, as :meth:`cpv.config.CPVConfig.store_url` gives it for the workspace."""
    cache_dir: Path
    """:attr:`cpv.config.CPVConfig.cache_dir`: the stat cache, index and chunk cache."""
    git_ssh_command: str | None = None
    """:attr:`cpv.config.CPVConfig.git_ssh_command`: the configured key for Git's push/fetch."""

    @classmethod
    def of(cls, config: CPVConfig, workspace: Path) -> ConfigAnswers:
        """The answers of a validated ``config`` for ``workspace``."""
        return cls(config.store_url(workspace=workspace), config.cache_dir,
                   config.git_ssh_command)


@dataclass(frozen=True, slots=True)
class ConfigInputs:
    """Every setting given by the files and the environment, merged, not yet validated.

    :meth:`cpv.config.CPVConfig.load` is ``CPVConfig.from_inputs(ConfigInputs.read(...))``;
    a workspace reads its inputs here and asks :meth:`remembered` before validating.
    """

    merged: dict[str, Any]
    origins: dict[str, str]
    """Dotted setting -> the file or variable that set it, for error messages."""
    environment: Environment
    sources: tuple[str, ...]

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        workspace: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> ConfigInputs:
        """Read the user file, the workspace file and ``CPV_*`` variables, merged in that order.

        Arguments as :meth:`cpv.config.CPVConfig.load`, which documents them.

        Raises:
            ConfigError: a file is not valid JSON (names file and line), or the workspace file
                holds a secret setting.
        """
        environ: Mapping[str, str] = os.environ if env is None else env
        captured = Environment.capture(environ)
        user_path = captured.expand(path) if path is not None else default_config_path(env=environ)
        layers: list[tuple[str, dict[str, Any]]] = []
        user_doc = read_config_file(user_path)
        if user_doc is not None:
            layers.append((str(user_path), user_doc))
        if workspace is not None:
            ws_path = workspace_config_path(Path(workspace))
            # Committed to Git (no secrets by construction), so its mode after a clone is 0644.
            ws_doc = read_config_file(ws_path, warn_if_shared=False)
            if ws_doc is not None:
                refuse_committed_secrets(ws_doc, ws_path)
                layers.append((str(ws_path), ws_doc))
        layers.extend(env_layers(environ))
        merged, origins = merge_layers(layers)
        return cls(merged, origins, captured, tuple(dict.fromkeys(src for src, _ in layers)))

    def _key(self, workspace: Path) -> str:
        here = Path(__file__).parent
        return key_of({
            "rules": [file_stamp(here / name) for name in _RULE_MODULES],
            "settings": self.merged,
            "environment": dataclasses.astuple(self.environment),
            "workspace": os.fspath(workspace),
        })

    def remembered(self, workspace: Path) -> ConfigAnswers | None:
        """The answers recorded by :meth:`remember` for exactly these inputs, else None."""
        doc = recall(workspace / ANSWERS_FILE, self._key(workspace))
        if doc is None:
            return None
        store_url, cache_dir = doc.get("store_url"), doc.get("cache_dir")
        ssh_command = doc.get("git_ssh_command")
        if not (isinstance(store_url, str) and isinstance(cache_dir, str)
                and os.path.isabs(cache_dir)
                and (ssh_command is None or isinstance(ssh_command, str))):
            return None
        return ConfigAnswers(store_url, Path(cache_dir), ssh_command)

    def remember(self, workspace: Path, answers: ConfigAnswers) -> None:
        """Record the answers of these inputs, just validated (best effort: a workspace that
        cannot be written validates on every command, as before)."""
        record(workspace / ANSWERS_FILE, self._key(workspace),
               {"store_url": answers.store_url, "cache_dir": os.fspath(answers.cache_dir),
                "git_ssh_command": answers.git_ssh_command})


__all__ = [
    "ANSWERS_FILE",
    "CONFIG_DIRNAME",
    "CONFIG_FILENAME",
    "ENV_OTHER",
    "ENV_OVERRIDES",
    "SECRET_SETTINGS",
    "ConfigAnswers",
    "ConfigInputs",
    "Environment",
    "as_dict",
    "default_config_path",
    "env_layers",
    "holds",
    "merge_layers",
    "read_config_file",
    "refuse_committed_secrets",
    "workspace_config_path",
]
