"""The one-regex exclude test answers exactly what pathspec answers, pattern by pattern."""

from __future__ import annotations

import random
from pathlib import Path

import pathspec
import pytest

from cpv.service.tree import DEFAULT_IGNORES, IGNORE_FILE, IgnoreRules
from cpv.workspace import exclude_internal

_NAMES = ["a", "b.pyc", "__pycache__", "x~", ".DS_Store", "c.swp", "d.tmp", "cache", "e.bin",
          "f.safetensors", ".ipynb_checkpoints", "g.txt", ".git", ".cpv", ".a.cpv-tmp"]


@pytest.mark.parametrize("lines", [
    [], ["*.tmp"], ["cache/"], ["data/**/cache/"], ["model/*.bin", "/data/train/x"],
    ["# a comment", "", "**/g.txt"], ["*.bin", "!e.bin"], ["!b.pyc"],
    # one search of "path/" stands for "path" and "path/": anchored, folder-only, any depth
    ["/a", "cache", "x~/"], ["a/**", "e.bin/", "?.txt"], ["/data/a/b.pyc", "**/a/cache"],
])
def test_exclude_matches_pathspec(tmp_path: Path, lines: list[str]) -> None:
    (tmp_path / IGNORE_FILE).write_text("\n".join(lines) + "\n")
    spec = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_IGNORES, *lines])
    rng = random.Random(len(lines))
    for folder in ("model", "data"):
        excluded = IgnoreRules(tmp_path).for_folder(folder)
        for _ in range(400):
            rel = "/".join(rng.choice(_NAMES) for _ in range(rng.randint(1, 4)))
            want = (exclude_internal(rel) or spec.match_file(f"{folder}/{rel}")
                    or spec.match_file(f"{folder}/{rel}/"))
            assert excluded(rel) == want, (lines, folder, rel)
