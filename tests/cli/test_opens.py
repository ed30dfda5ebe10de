"""One command opens each part once: the workspace, the store, the repository; and publishes
with one ``git push``. Counted by wrapping the real constructors around real runs of the
command (in-process, through the CLI's own entry point)."""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cpv.engine.repository as repository_module
import cpv.service.create as create_module
import cpv.versioning.gitrepo as gitrepo_module
import cpv.workspace as workspace_module
from cpv.cli.main import run


@pytest.fixture
def counts(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    seen: Counter[str] = Counter()

    def counting(key: str, func: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen[key] += 1
            return func(*args, **kwargs)
        return wrapper

    ws_open = workspace_module.Workspace.open.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(workspace_module.Workspace, "open",
                        classmethod(counting("workspace", ws_open)))
    repo_open = repository_module.Repository.open.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(repository_module.Repository, "open",
                        classmethod(counting("repository", repo_open)))
    for module in (workspace_module, create_module):
        monkeypatch.setattr(module, "open_store", counting("store", module.open_store))
    monkeypatch.setattr(gitrepo_module.GitRepo, "push",
                        counting("git push", gitrepo_module.GitRepo.push))
    return seen


def test_each_command_opens_each_part_once(
    counts: Counter[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Ada Tester")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "ada@example.test")
    remote = tmp_path / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", str(remote)], check=True)
    ws = tmp_path / "ws"
    assert run(["init", str(ws), "--store", str(tmp_path / "store"), "--remote",
                remote.as_uri(), "-q"]) == 0
    monkeypatch.chdir(ws)
    weights = ws / "model" / "w.bin"
    steps: list[tuple[list[str], Callable[[], object]]] = [
        (["push", "--tag", "-q"], lambda: weights.write_bytes(random.randbytes(300_000))),
        (["push", "--tag", "-q"], lambda: weights.write_bytes(random.randbytes(300_000))),
        (["pull", "v0.1", "-q"], lambda: None),
        (["status", "-q"], lambda: None),
        (["checkout", "v0.2", "-q"], lambda: None),
        (["verify", "-q"], lambda: None),
        (["diff", "v0.1", "v0.2", "-q"], lambda: None),
    ]
    for args, before in steps:
        before()
        counts.clear()
        assert run(args) == 0, args
        assert counts["workspace"] == 1, (args, counts)
        assert counts["store"] <= 1 and counts["repository"] <= 1, (args, counts)
        assert counts["git push"] <= 1, (args, counts)
