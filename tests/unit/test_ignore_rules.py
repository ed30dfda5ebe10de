"""The one-regex exclude test answers exactly what pathspec answers, pattern by pattern."""

from __future__ import annotations

import random
from pathlib import Path

import pathspec
import pytest

from cpv.service.tree import DEFAULT_IGNORES, IGNORE_FILE, PREFILTER_FILE, IgnoreRules
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


def test_remembered_prefilter_follows_the_rules(tmp_path: Path) -> None:
    """The prefilter is remembered in a workspace's .cpv/local (no pathspec import next time),
    keyed by the rules: an edited .cpvignore is compiled again, never answered from the
    record of the old one. A folder that is not a workspace gets no .cpv of its own."""
    plain = tmp_path / "plain"
    plain.mkdir()
    assert IgnoreRules(plain).for_folder("model")("a.tmp") is False
    assert not (plain / ".cpv").exists()

    ws = tmp_path / "ws"
    (ws / ".cpv").mkdir(parents=True)
    rng = random.Random(7)
    for lines in (["*.tmp", "!d.tmp"], ["cache/", "*.bin"], ["*.tmp", "!d.tmp"]):
        (ws / IGNORE_FILE).write_text("\n".join(lines) + "\n")
        spec = pathspec.GitIgnoreSpec.from_lines([*DEFAULT_IGNORES, *lines])
        for _ in range(2):  # the first may compile and record, the second reads the record
            excluded = IgnoreRules(ws).for_folder("model")
            for _ in range(200):
                rel = "/".join(rng.choice(_NAMES) for _ in range(rng.randint(1, 3)))
                want = (exclude_internal(rel) or spec.match_file(f"model/{rel}")
                        or spec.match_file(f"model/{rel}/"))
                assert excluded(rel) == want, (lines, rel)
        assert (ws / PREFILTER_FILE).is_file()
