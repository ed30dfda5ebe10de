"""The composition root: one workspace = one Git repository + one store + caches.

:meth:`Workspace.open` is the only place that turns a :class:`~cpv.config.CPVConfig` into a
store adapter, an engine :class:`~cpv.engine.Repository`, transfer limits and a
:class:`~cpv.versioning.History`. The facade (``cpv.api``) and the CLI take a workspace and
never build these parts themselves.

Workspace layout (see ``docs/versioning.md``)::

    <workspace>/                 a Git repository, one per model
      .cpv/config.json           workspace settings (store URL, team, model, remote; no secrets)
      .cpv/manifests/model/model.json   manifest of the model folder (written per version)
      .cpv/manifests/data/data.json     manifest of the data folder (train/validation/test)
      .cpv/store/                the embedded local store when no S3 store is configured
      model/                     model files (bytes in the store, git-ignored)
      data/{train,validation,test}/     data splits (bytes in the store, git-ignored)
      train.py, README.md        templates written by init
"""

from __future__ import annotations

import logging
import posixpath
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cpv.configsource import ConfigAnswers, ConfigInputs
from cpv.engine.statcache import STAT_CACHE_FILE, StatCache
from cpv.errors import NoStoreError, NotAWorkspaceError
from cpv.progress import NULL_PROGRESS, Progress
from cpv.store import open_store
from cpv.versioning import GitRepo, History
from cpv.versioning.manifest import manifest_name
from cpv.versioning.tags import Version, line_tag

if TYPE_CHECKING:
    from cpv.config import CPVConfig
    from cpv.engine import Repository, TransferLimits
    from cpv.store import ObjectStore
    from cpv.versioning import Manifest

log = logging.getLogger(__name__)

Kind = Literal["model", "data"]
TRACKED: dict[Kind, str] = {"model": "model", "data": "data"}
DATA_SPLITS = ("train", "validation", "test")
INTERNAL_DIRS = frozenset({".git", ".cpv"})
WORKSPACE_ID_FILE = ".cpv/workspace-id"


@dataclass(frozen=True, slots=True)
class Track:
    """One tracked path and its version line: ``model/`` and ``data/`` (the seed layout), or
    any folder or single file of the workspace a push named (``outputs/checkpoint-500``,
    ``runs/exp1/model.safetensors``).

    The line's name is the path's manifest name (or the ``--name`` its first push chose, kept
    in the manifest), so the manifest file, the tag prefix and the path can never disagree;
    :func:`~cpv.versioning.tags.line_tag` makes its tags.

    A single file lives in a folder it does not own: :attr:`folder` is where its bytes are
    written and compared (its parent), and the version holds one file, named after it.
    """

    kind: Kind
    path: str
    """Workspace-relative, ``/``-separated."""
    is_dir: bool = True
    line: str | None = None
    """The line name a push chose with ``--name``; None: the path's slug."""

    @classmethod
    def of(cls, manifest: Manifest) -> Track:
        """The tracked path a manifest records."""
        return cls(manifest.kind, manifest.path, manifest.is_dir, manifest.line)

    @property
    def name(self) -> str:
        return self.line if self.line is not None else manifest_name(self.path)

    @property
    def is_default(self) -> bool:
        return self.is_dir and self.path == TRACKED[self.kind]

    @property
    def folder(self) -> str:
        """The workspace folder its version's paths are relative to ("" = the root)."""
        return self.path if self.is_dir else posixpath.dirname(self.path)

    def workspace_path(self, rel: str) -> str:
        """A path of its version (relative to :attr:`folder`) as a workspace path."""
        return f"{self.folder}/{rel}" if self.folder else rel

    def tag(self, version: Version) -> str:
        return line_tag(self.name, version)


DEFAULT_TRACKS: dict[Kind, Track] = {k: Track(k, TRACKED[k]) for k in ("model", "data")}


def exclude_internal(relpath: str) -> bool:
    """Never push Git's or cpv's own folders, nor temporary files of an interrupted pull."""
    if relpath[:1] != "." and "/." not in relpath:
        return False  # no segment starts with "." (most paths): two scans, no split
    head = relpath.split("/", 1)[0]
    name = relpath.rsplit("/", 1)[-1]
    return head in INTERNAL_DIRS or (name.startswith(".") and ".cpv-" in name)


def store_from_config(config: CPVConfig, url: str) -> ObjectStore:
    """The store at ``url`` opened with the settings of ``config`` (AWS profile, endpoint,
    region, encryption, connections): a workspace's store, or a writer's that has no Git."""
    aws = config.aws
    return open_store(
        url,
        profile=aws.profile,
        region=aws.region,
        endpoint_url=aws.endpoint_url,
        max_connections=config.transfer.workers,
        sse=aws.sse,
        sse_kms_key_id=aws.sse_kms_key_id,
    )


@dataclass
class Workspace:
    """An open workspace. Use as a context manager, or call :meth:`close`.

    Its configuration is validated when it is opened, or was validated with exactly the same
    inputs by an earlier command (:meth:`~cpv.configsource.ConfigInputs.remembered`): then
    the store URL and the cache folder are those answers, and the :attr:`config` object itself
    (pydantic) is built only when a command needs more of it.
    """

    root: Path
    git: GitRepo
    history: History
    answers: ConfigAnswers
    progress: Progress = NULL_PROGRESS
    _config: CPVConfig | None = None
    _inputs: ConfigInputs | None = None
    _repo: Repository | None = None
    _store: ObjectStore | None = None
    _digests: StatCache | None = None

    @classmethod
    def open(
        cls,
        root: str | Path,
        *,
        config: CPVConfig | None = None,
        progress: Progress = NULL_PROGRESS,
    ) -> Workspace:
        """Open an existing workspace, with ``config`` or the one its files and environment give.

        Raises:
            NotAWorkspaceError: ``root`` is not a Git repository initialised by cpv.
            ConfigError: the configuration is invalid (as :meth:`CPVConfig.load` says).
        """
        root = Path(root).absolute()
        git = GitRepo.open(root)
        if not (root / ".cpv").is_dir():
            git.close()
            raise NotAWorkspaceError(f"{root} is a Git repository but not a cpv workspace")
        inputs = None
        try:
            if config is not None:
                answers = ConfigAnswers.of(config, root)
            else:
                inputs = ConfigInputs.read(workspace=root)
                remembered = inputs.remembered(root)
                if remembered is None:
                    from cpv.config import CPVConfig  # pydantic: only when validating

                    config = CPVConfig.from_inputs(inputs)
                    remembered = ConfigAnswers.of(config, root)
                    inputs.remember(root, remembered)
                answers = remembered
        except BaseException:
            git.close()
            raise
        # The configured key (git.ssh_key_path) for push and fetch, whether the config was
        # handed in or read from the files: it is known only once the config is.
        git.use_ssh_command(answers.git_ssh_command)
        return cls(root=root, git=git, history=History(git), answers=answers, progress=progress,
                   _config=config, _inputs=inputs)

    @property
    def config(self) -> CPVConfig:
        """The validated configuration (built on first use when the answers were enough)."""
        if self._config is None:
            from cpv.config import CPVConfig

            assert self._inputs is not None  # opened without a config: its inputs were read
            self._config = CPVConfig.from_inputs(self._inputs)
        return self._config

    @property
    def store_url(self) -> str:
        return self.answers.store_url

    @property
    def cache_dir(self) -> Path:
        return self.answers.cache_dir

    @property
    def limits(self) -> TransferLimits:
        from cpv.engine import TransferLimits  # here: a no-op push moves no byte (and is quick)

        t = self.config.transfer
        return TransferLimits(workers=t.effective_workers, part_size=t.part_size)

    @property
    def remote(self) -> str | None:
        """The Git remote name to push to and fetch from, if one is configured."""
        if self.git.remote_url("origin") is not None:
            return "origin"
        return None

    def store(self) -> ObjectStore:
        if self._store is None:
            self._store = store_from_config(self.config, self.store_url)
        return self._store

    def repository(self, *, create: bool = False) -> Repository:
        """The engine's view of the store; ``create`` initialises a store that has none."""
        if self._repo is None:
            from cpv.engine import Repository

            cache = self.cache_dir
            try:
                self._repo = Repository.open(self.store(), cache_dir=cache)
            except NoStoreError:
                if not create:
                    raise
                self._repo = Repository.init(
                    self.store(), pack_size=self.config.transfer.pack_size, cache_dir=cache
                )
        return self._repo

    def stat_digests(self) -> StatCache:
        """The stat cache's file digests, without opening the store.

        Enough to tell whether a file is still what this machine last wrote, pulled or pushed,
        so ``status`` and a no-op ``push`` decide without the network (or importing boto3).
        """
        if self._digests is None:
            self._digests = StatCache(self.cache_dir / STAT_CACHE_FILE, chunker_key=None)
        return self._digests

    @property
    def workspace_id(self) -> str | None:
        """The id ``init`` gave this workspace (shared by its clones), or None if it has none.

        Pushes record it in their snapshots, so garbage collection run from one workspace can
        tell its own snapshots from those of other workspaces sharing the store.
        """
        try:
            text = (self.root / WORKSPACE_ID_FILE).read_text().strip()
        except OSError:
            return None
        return text if len(text) == 32 and all(c in "0123456789abcdef" for c in text) else None

    def tracked_dir(self, kind: Kind) -> Path:
        return self.root / TRACKED[kind]

    def close(self) -> None:
        if self._digests is not None:
            self._digests.close()
            self._digests = None
        if self._repo is not None:
            self._repo.close()
            self._repo = None
        if self._store is not None:
            self._store.close()
            self._store = None
        self.git.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
