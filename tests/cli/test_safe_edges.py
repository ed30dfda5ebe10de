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


def test_cpvignore_is_the_one_rule_of_push_status_and_checkout(
    cpv: Runner, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    model = ws / "model"
    model.mkdir(exist_ok=True)
    (model / "weights.bin").write_bytes(b"w" * 1000)
    (model / "optimizer.pt").write_bytes(b"o" * 1000)
    (model / "__pycache__").mkdir()
    (model / "__pycache__" / "x.pyc").write_bytes(b"c")
    (ws / ".cpvignore").write_text("model/optimizer.pt\n")
    cpv("push", "--tag", "-q", cwd=ws)
    listed = [f["path"] for f in cpv("ls", "--json", cwd=ws).json()["files"]]
    assert listed == ["model/weights.bin"]  # the rule and the defaults left the rest out
    (model / "optimizer.pt").write_bytes(b"changed, still ignored")
    assert cpv("status", "--json", cwd=ws).json()["clean"] is True
    (model / "weights.bin").write_bytes(b"v2")
    cpv("push", "--tag", "-q", cwd=ws)
    cpv("checkout", "v0.1", "-q", cwd=ws)  # never deletes an ignored file
    assert (model / "optimizer.pt").read_bytes() == b"changed, still ignored"
    assert (model / "__pycache__" / "x.pyc").exists()


def test_a_nested_git_repository_hint_names_the_cpvignore_way_out(
    cpv: Runner, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    (ws / "model" / "tokenizer" / ".git").mkdir(parents=True)
    (ws / "model" / "tokenizer" / "vocab.txt").write_text("a b c\n")
    r = cpv("push", cwd=ws, expect=1)
    assert ".cpvignore" in r.stderr and "Traceback" not in r.stderr
    (ws / ".cpvignore").write_text("model/tokenizer/\n")
    (ws / "model" / "w.bin").write_bytes(b"x")
    cpv("push", "-q", cwd=ws)


def test_absolute_symlinks_are_refused_or_skipped_with_the_cli_option(
    cpv: Runner, tmp_path: Path
) -> None:
    ws = tmp_path / "ws"
    cpv("init", str(ws), "-q")
    (ws / "model" / "w.bin").write_bytes(b"x" * 100)
    (ws / "model" / "python3").symlink_to("/usr/bin/python3")
    r = cpv("push", cwd=ws, expect=1)
    assert "--symlinks skip" in r.stderr and "symlinks='" not in r.stderr
    done = cpv("push", "--symlinks", "skip", "--json", cwd=ws).json()
    assert done["results"][0]["skipped_links"] == ["python3"]
