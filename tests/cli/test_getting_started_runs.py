"""docs/getting-started.md, "Version a run directory as it is", cannot rot: this test builds the
run directories the section shows, writes its ``.cpvignore`` block, runs every ``$ cpv ...``
line of its console block with the real `cpv` program against the real S3 server, and requires
the output the section shows (times, snapshot ids, commit ids and upload sizes aside)."""

from __future__ import annotations

import json
import os
import random
import re
import shlex
import subprocess
from pathlib import Path

from tests.cli.conftest import Runner

MiB = 1024 * 1024
DOC = Path(__file__).resolve().parents[2] / "docs" / "getting-started.md"
MARK = "<!-- run-directory-example"

# The trees the section draws, with the sizes it gives.
RUN_FILES: dict[str, int] = {
    "outputs/checkpoint-500/config.json": 0,
    "outputs/checkpoint-500/model.safetensors": 4 * MiB,
    "outputs/checkpoint-500/optimizer.pt": 8 * MiB,
    "outputs/checkpoint-500/rng_state.pth": 14_244,
    "outputs/checkpoint-500/trainer_state.json": 0,
    "runs/llama-ft/step-4000/adapter_config.json": 0,
    "runs/llama-ft/step-4000/adapter_model.safetensors": 2 * MiB,
    "runs/llama-ft/step-4000/optimizer.pt": 4 * MiB,
    "runs/llama-ft/step-4000/trainer_state.json": 0,
    "runs/llama-ft/step-4000/eval.tmp": 0,
    "runs/llama-ft/step-4000/__pycache__/callbacks.cpython-311.pyc": 0,
}


def section() -> str:
    text = DOC.read_text(encoding="utf-8")
    start = text.index("## 7. Version a run directory as it is")
    return text[start:text.index("\n## ", start + 1)]


def fenced(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def normalize(text: str) -> list[str]:
    text = re.sub(r"\bin [0-9.]+ m?s\b", "in T", text)
    text = re.sub(r"snapshot [0-9a-f]{12}", "snapshot S", text)
    text = re.sub(r"commit [0-9a-f]{7}", "commit C", text)
    text = re.sub(r"uploaded [0-9.]+ [KMG]?i?B", "uploaded N", text)
    return [line.rstrip() for line in text.strip().splitlines()]


def make_run_dirs(ws: Path) -> None:
    rng = random.Random(500)
    for rel, size in RUN_FILES.items():
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if size:
            path.write_bytes(rng.randbytes(size))
        else:
            path.write_text(json.dumps({"file": path.name, "step": 500}) + "\n")


def test_the_run_directory_section_runs_as_shown(
    cpv: Runner, tmp_path: Path, s3_env: dict[str, str], s3_url: str,
) -> None:
    part = section()
    assert MARK in part
    ws = tmp_path / "llama"
    cpv("init", str(ws), "--store", s3_url, "-q", env_extra=s3_env)
    make_run_dirs(ws)
    (ignore,) = fenced(part, "gitignore")
    (ws / ".cpvignore").write_text(ignore)
    (console,) = fenced(part.split(MARK, 1)[1], "console")
    blocks = re.split(r"^\$ ", console, flags=re.M)[1:]
    assert len(blocks) >= 3
    got_all = []
    for block in blocks:
        command, _, shown = block.partition("\n")
        args = shlex.split(command)
        if args[0] != "cpv":  # a shell line of the example (an edit between two pushes)
            subprocess.run(["bash", "-c", command], cwd=ws, check=True)
            continue
        got = cpv(*args[1:], cwd=ws, env_extra=s3_env).stdout
        got_all.append(f"$ {command}\n{got}")
        if os.environ.get("CPV_PRINT_DOC_OUTPUT"):
            continue
        assert normalize(got) == normalize(shown), (command, got)
    if os.environ.get("CPV_PRINT_DOC_OUTPUT"):
        print("".join(got_all))
    # What .cpvignore and the defaults leave out was never pushed.
    listed = cpv("ls", "--json", cwd=ws, env_extra=s3_env).json()
    paths = {f["path"] for f in listed["files"]}
    assert not {p for p in paths if p.endswith((".pt", ".pth", ".tmp", ".pyc"))}
    assert "runs/llama-ft/step-4000/adapter_model.safetensors" in paths
