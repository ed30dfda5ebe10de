"""A remembered answer is trusted only in the folder that recorded it (cpv.localmemo)."""

from __future__ import annotations

import shutil
from pathlib import Path

from cpv.localmemo import key_of, recall, record


def test_an_answer_is_recalled_under_its_key_only(tmp_path: Path) -> None:
    memo = tmp_path / ".cpv" / "local" / "answers.json"
    memo.parent.parent.mkdir()
    record(memo, key_of("inputs", 1), {"store": "s3://mine"})
    answer = recall(memo, key_of("inputs", 1))
    assert answer is not None and answer["store"] == "s3://mine"
    assert recall(memo, key_of("inputs", 2)) is None
    assert (memo.parent / ".gitignore").read_text() == "*\n"


def test_a_copy_at_the_same_path_is_not_trusted(tmp_path: Path) -> None:
    """What a clone of a repository that committed ``.cpv/local`` (``git add -f``) would hold:
    the same file, at the same path, with a key computed for exactly these inputs; only the
    folder is new. It must be worked out again, not believed."""
    ws = tmp_path / "ws"
    memo = ws / ".cpv" / "local" / "answers.json"
    memo.parent.parent.mkdir(parents=True)
    key = key_of(str(ws), "HOME=/home/someone")
    record(memo, key, {"store": "s3://attacker"})
    assert recall(memo, key) is not None

    shutil.move(ws, tmp_path / "original")
    memo.parent.mkdir(parents=True)
    shutil.copy2(tmp_path / "original" / ".cpv" / "local" / "answers.json", memo)

    assert recall(memo, key) is None
    record(memo, key, {"store": "s3://worked-out-again"})
    assert recall(memo, key)["store"] == "s3://worked-out-again"  # type: ignore[index]
