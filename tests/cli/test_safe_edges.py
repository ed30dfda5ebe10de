"""Issue 12 through the real `cpv` program: what a user sees at the unsafe edges."""

from __future__ import annotations

from pathlib import Path

from .conftest import Runner


def test_init_refuses_to_make_a_busy_folder_a_store(cpv: Runner, tmp_path: Path) -> None:
    """``cpv init --store file:///etc`` wrote /etc/config; a busy folder is left as it was."""
    busy = tmp_path / "etc"
    busy.mkdir()
    (busy / "hostname").write_text("box\n")
    ws = tmp_path / "ws"
    result = cpv("init", str(ws), "--store", busy.as_uri(), "-q", expect=None)
    assert result.code != 0, str(result)
    assert "not empty and is not a cpv store" in result.stderr, str(result)
    assert [p.name for p in busy.iterdir()] == ["hostname"]
    # An empty folder is fine.
    empty = tmp_path / "store"
    empty.mkdir()
    cpv("init", str(ws), "--store", empty.as_uri(), "-q")
    assert (empty / "config").is_file()


def test_push_names_a_nested_git_repository_before_uploading(cpv: Runner, tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    (ws / "model" / "tokenizer" / ".git").mkdir(parents=True)
    (ws / "model" / "tokenizer" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (ws / "model" / "w.bin").write_bytes(b"w" * 1000)
    result = cpv("push", "-m", "first", cwd=ws, expect=None)
    assert result.code != 0, str(result)
    assert "tokenizer/.git" in result.stderr and "nested Git repository" in result.stderr
    assert "malformed or hostile" not in result.stderr
    assert not list((ws / ".cpv" / "store").glob("packs/*/*")), "nothing uploaded"
