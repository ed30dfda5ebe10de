"""Creating and cloning workspaces (``cpv init``, ``import_model_init``, ``clone_workspace``).

Everything that can fail is checked before anything is created: the data folder to import,
the store (credentials, bucket), a store switch on a workspace that already has versions.
"""

from __future__ import annotations

import filecmp
import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cpv.config import CPVConfig, update_config_file, workspace_config_path
from cpv.engine import Repository
from cpv.errors import ConfigError, DirtyWorkspaceError, LocalIOError, NotAWorkspaceError
from cpv.service.results import InitResult
from cpv.service.tree import LOCAL_DIR
from cpv.store import open_store
from cpv.versioning import GitRepo, History
from cpv.workspace import DATA_SPLITS, WORKSPACE_ID_FILE

_TRAIN_TEMPLATE = '''"""Training entry point for {model}.

Save checkpoints under model/, then version them:

    cpv push model -m "what changed" --metric loss=0.25
    cpv tag
"""

from pathlib import Path

DATA = Path(__file__).parent / "data"
MODEL = Path(__file__).parent / "model"


def main() -> None:
    MODEL.mkdir(exist_ok=True)
    # train on DATA / "train", evaluate on DATA / "validation", write weights to MODEL


if __name__ == "__main__":
    main()
'''

_README_TEMPLATE = """# {team} / {model}

Model checkpoints and training data versioned with cpv: Git holds the history
(`.cpv/manifests/`, tags `v0.1`, `v0.2`, ...), the store `{store}` holds the bytes.

- `model/` — checkpoints (`cpv push model`, `cpv tag`)
- `data/train`, `data/validation`, `data/test` — data splits (`cpv push data`)

Get a version on another machine: `git clone <this repo> && cd <repo> && cpv pull v0.1`.
"""



def init_workspace(
    root: str | Path,
    *,
    config: CPVConfig,
    data_path: str | Path | None = None,
    store_url: str | None = None,
    remote_url: str | None = None,
    dry_run: bool = False,
    switch_store: bool = False,
) -> InitResult:
    """Create (or complete) a workspace at ``root``; safe to re-run.

    Raises:
        ConfigError: invalid names or store URL, or ``store_url`` would move a workspace that
            has versions to another store (unless ``switch_store``).
        LocalIOError: ``data_path`` is missing, or is (or holds) the workspace.
        DirtyWorkspaceError: importing ``data_path`` would overwrite edited files in data/.
        GitRemoteError: the remote refused.
    """
    root = Path(root).absolute()
    cfg = config
    existed = (root / ".cpv").is_dir()
    if store_url is not None and existed and not switch_store:
        _refuse_store_switch(root, cfg, store_url)
    if store_url is not None:
        cfg = cfg.replace(store={"url": store_url})
    if remote_url is not None:
        cfg = cfg.replace(git={"remote_url": remote_url})
    url = cfg.store_url(workspace=root)
    imports = _plan_import(Path(data_path), root) if data_path is not None else []
    if dry_run:
        return InitResult(root, url, not existed, cfg.git.remote_url)
    # The store first: wrong credentials or a missing bucket fail before anything is created.
    store = open_store(
        url, profile=cfg.aws.profile, region=cfg.aws.region, endpoint_url=cfg.aws.endpoint_url,
        sse=cfg.aws.sse, sse_kms_key_id=cfg.aws.sse_kms_key_id,
    )
    try:
        Repository.init(store, pack_size=cfg.transfer.pack_size).close()
    finally:
        store.close()
    root.mkdir(parents=True, exist_ok=True)
    try:
        git = GitRepo.open(root, ssh_command=cfg.git_ssh_command)
    except NotAWorkspaceError:
        git = GitRepo.init(root, branch=cfg.git.branch, message="cpv: initialize repository",
                           ssh_command=cfg.git_ssh_command)
    try:
        settings: dict[str, Any] = {}
        if cfg.team:
            settings["team"] = cfg.team
        if cfg.model:
            settings["model"] = cfg.model
        if store_url is not None or not workspace_config_path(root).exists():
            settings["store"] = {"url": store_url} if store_url else {}
        if cfg.git.remote_url:
            settings["git"] = {"remote_url": cfg.git.remote_url}
        update_config_file(workspace_config_path(root), settings)
        for folder in ("model", *(f"data/{s}" for s in DATA_SPLITS)):
            (root / folder).mkdir(parents=True, exist_ok=True)
        _copy_files(imports)
        _write_once(root / "train.py", _TRAIN_TEMPLATE.format(model=cfg.model or root.name))
        _write_once(root / "README.md", _README_TEMPLATE.format(
            team=cfg.team or "team", model=cfg.model or root.name, store=url))
        _ensure_ignored(root / ".gitignore", ["/.cpv/store/", f"/{LOCAL_DIR}/", "/model/",
                                              "/data/"])
        _write_once(root / WORKSPACE_ID_FILE, secrets.token_hex(16) + "\n")
        git.commit_paths(
            [".cpv/config.json", WORKSPACE_ID_FILE, ".gitignore", "train.py", "README.md"],
            "cpv: initialize workspace")
        if cfg.git.remote_url:
            git.set_remote("origin", cfg.git.remote_url)
            # The branch and every version tag: a workspace with versions arrives whole.
            History(git).publish("origin")
        return InitResult(root, url, not existed, cfg.git.remote_url)
    finally:
        git.close()


def _refuse_store_switch(root: Path, cfg: CPVConfig, store_url: str) -> None:
    """A workspace with versions keeps its store unless the user says to switch on purpose."""
    current = cfg.store_url(workspace=root)
    wanted = cfg.replace(store={"url": store_url}).store_url(workspace=root)
    if wanted == current:
        return
    manifests = root / ".cpv" / "manifests"
    if not manifests.is_dir() or not any(manifests.rglob("*.json")):
        return
    raise ConfigError(
        f"this workspace's versions live in {current}; --store {store_url} would leave them "
        "behind",
        hint="pass --switch-store to point the workspace at the new store anyway (versions "
             "pushed before stay in the old one)")


def clone_workspace(
    remote_url: str, root: str | Path, *, config: CPVConfig | None = None
) -> Path:
    """Clone a workspace another machine pushed (then download any version from it)."""
    root = Path(root).absolute()
    cfg = config or CPVConfig.load(workspace=root)
    GitRepo.clone(remote_url, root, ssh_command=cfg.git_ssh_command).close()
    if not (root / ".cpv").is_dir():
        raise NotAWorkspaceError(f"{remote_url} is a Git repository but not a cpv workspace")
    return root


def _write_once(path: Path, text: str) -> None:
    if not path.exists():
        path.write_text(text)


def _ensure_ignored(gitignore: Path, lines: Sequence[str]) -> None:
    existing = gitignore.read_text().splitlines() if gitignore.exists() else []
    missing = [line for line in lines if line not in existing]
    if missing:
        with open(gitignore, "a") as fh:
            if existing and existing[-1].strip():
                fh.write("\n")
            fh.write("# cpv: bytes live in the store\n" + "\n".join(missing) + "\n")


def _plan_import(source: Path, root: Path) -> list[tuple[Path, Path]]:
    """Which files of ``source`` to copy into ``root/data``; refuses before anything is copied.

    Copies, never hard links: an edit in data/ must not change the user's source. A file that
    is already in data/ with the same content is skipped; one with other content is refused
    (it may hold edits that were never pushed).
    """
    source = source.expanduser().absolute()
    data_dir = root / "data"
    if not source.is_dir():
        raise LocalIOError(f"data folder {source} does not exist or is not a folder",
                           path=str(source), hint="pass the folder that holds train/, ...")
    resolved, root_r = source.resolve(), root.resolve()
    if resolved == data_dir.resolve():
        return []
    if resolved == root_r or root_r in resolved.parents or resolved in root_r.parents:
        raise LocalIOError(
            f"cannot import data from {source}: it is, holds or is inside the workspace",
            path=str(source), hint="pass a data folder outside the workspace")
    plan: list[tuple[Path, Path]] = []
    clashes: list[str] = []
    for dirpath, _dirs, files in os.walk(source):
        for name in files:
            src = Path(dirpath) / name
            dst = data_dir / src.relative_to(source)
            if dst.exists() or dst.is_symlink():
                if dst.is_file() and filecmp.cmp(src, dst, shallow=False):
                    continue
                clashes.append(dst.relative_to(root).as_posix())
            else:
                plan.append((src, dst))
    if clashes:
        raise DirtyWorkspaceError(
            f"{len(clashes)} file(s) in data/ differ from {source} (e.g. {clashes[0]}); "
            "importing would overwrite them", paths=clashes,
            hint="push or move them first; files already identical are skipped on a re-run")
    return plan


def _copy_files(plan: Sequence[tuple[Path, Path]]) -> None:
    for src, dst in plan:
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
        except OSError as exc:
            raise LocalIOError(f"cannot import {src}: {exc.strerror}", path=str(src)) from exc
