"""Scale of store format v2: what one version costs at 10^4, 10^5 (and 10^6) files.

    python benchmarks/scale.py [--files 10000,100000] [--changed 0.01] [--out DIR]
        [--scratch DIR] [--reuse] [--figures git_growth,read_commands]

A workspace with a local store is made per file count; ``model/`` gets N files of 1 KiB (random,
written fast), version 1 is pushed, then 1 % of the files are rewritten and version 2 is pushed.
Each figure is one function ``figure_<name>(run) -> list[dict]`` registered in :data:`FIGURES`
(the store side adds its own); every row names its figure, file count and format.

``git_growth``: the bytes of new Git objects (loose, zlib'd as Git stores them) that version 2
adds, for the pointer manifest cpv writes now (schema 2: measured on the workspace's own Git
after ``cpv push``) and for the schema-1 manifest (every file listed) of the same version,
committed the same way in a scratch repository; plus the size of the manifest blob itself.

``read_commands``: ``cpv ls HEAD``, ``cpv diff HEAD~1 HEAD`` and ``cpv status`` through the real
program, with the local list cache and without it: wall, CPU (user + sys) and peak RSS of each
``cpv`` process alone, and the load average.

Output: a Markdown table on stdout and ``scale.json`` in ``--out``. Timings on a shared machine
are noisy; the Git figures are exact byte counts.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from cpv.service.workspace import WorkspaceService  # noqa: E402
from cpv.versioning.manifest import Manifest, manifest_for_files  # noqa: E402

FILE_SIZE = 1024
MANIFEST = ".cpv/manifests/model/model.json"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test",
    "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@example.test",
    "GIT_CONFIG_NOSYSTEM": "1",
}


@dataclass
class ScaleRun:
    """One workspace at one file count, with two pushed versions (what figures measure)."""

    files: int
    changed: int
    root: Path
    seconds: dict[str, float] = field(default_factory=dict)
    git_objects: dict[str, int] = field(default_factory=dict)
    manifests: list[Manifest] = field(default_factory=list)


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV},
                          capture_output=True, text=True, check=True)
    return done.stdout


def loose_objects(repo: Path) -> dict[str, int]:
    """Every loose object of a repository -> its size on disk (what a version adds before gc)."""
    objects = repo / ".git" / "objects"
    return {f"{d.name}{f.name}": f.stat().st_size
            for d in objects.iterdir() if len(d.name) == 2 for f in d.iterdir()}


def write_files(folder: Path, count: int, *, seed: int, only: range | None = None) -> None:
    """``count`` files of 1 KiB under ``folder`` (1000 per sub-folder), distinct contents."""
    for i in only if only is not None else range(count):
        sub = folder / f"d{i // 1000:05d}"
        if i % 1000 == 0 or only is not None:
            sub.mkdir(parents=True, exist_ok=True)
        head = f"{seed}:{i}:".encode()
        (sub / f"f{i:07d}.bin").write_bytes(head + os.urandom(FILE_SIZE - len(head)))


def _push(root: Path, message: str) -> float:
    start = time.perf_counter()
    with WorkspaceService.open(root, search_parents=False) as service:
        service.push(["model"], message=message)
    return time.perf_counter() - start


def prepare(files: int, fraction: float, scratch: Path) -> ScaleRun:
    """Make the workspace, push version 1, change ``fraction`` of the files, push version 2."""
    root = scratch / f"ws-{files}"
    cli = [sys.executable, "-m", "cpv"]
    subprocess.run([*cli, "init", str(root), "--store", str(scratch / f"store-{files}"), "-q"],
                   env={**os.environ, **GIT_ENV}, check=True)
    run = ScaleRun(files=files, changed=max(1, int(files * fraction)), root=root)
    start = time.perf_counter()
    write_files(root / "model", files, seed=1)
    run.seconds["generate"] = time.perf_counter() - start
    run.seconds["push_v1"] = _push(root, "version 1")
    with WorkspaceService.open(root, search_parents=False) as service:
        run.manifests.append(service.manifest_at("model", None)[0])
    step = max(1, files // run.changed)
    write_files(root / "model", files, seed=2, only=range(0, files, step))
    before = loose_objects(root)
    run.seconds["push_v2"] = _push(root, "version 2")
    after = loose_objects(root)
    run.git_objects = {k: v for k, v in after.items() if k not in before}
    with WorkspaceService.open(root, search_parents=False) as service:
        run.manifests.append(service.manifest_at("model", None)[0])
    return run


def reuse(files: int, fraction: float, scratch: Path) -> ScaleRun:
    """A workspace an earlier run left in ``scratch`` (``--reuse``): its two versions, for the
    figures that only read them (not ``git_growth``, which needs the push's new objects)."""
    root = scratch / f"ws-{files}"
    run = ScaleRun(files=files, changed=max(1, int(files * fraction)), root=root)
    with WorkspaceService.open(root, search_parents=False) as service:
        run.manifests += [service.manifest_at("model", "HEAD~1")[0],
                          service.manifest_at("model", None)[0]]
    return run


def _schema_one(run: ScaleRun, manifest: Manifest) -> Manifest:
    """The schema-1 manifest (every file listed) of a version, as cpv wrote it before v2."""
    with WorkspaceService.open(run.root, search_parents=False) as service:
        snapshot = service.ws.repository().load_snapshot(manifest.snapshot_id)
    return manifest_for_files(
        kind=manifest.kind, path=manifest.path, snapshot_id=manifest.snapshot_id,
        store_url=manifest.store_url, files=[(f.path, f.size, f.blake3) for f in snapshot.files],
        message=manifest.message, author=manifest.author, metrics=manifest.metrics,
        created_at=manifest.created_at)


def _counts(manifest: Manifest) -> str | None:
    changes = manifest.changes
    return None if changes is None else f"{changes.added}/{changes.changed}/{changes.removed}"


def figure_git_growth(run: ScaleRun) -> list[dict[str, Any]]:
    """Bytes Git gains for version 2: pointer manifest (measured) vs schema-1 manifest."""
    rows = [{
        "figure": "git_growth", "files": run.files, "format": "v2 (pointer manifest)",
        "new_git_object_bytes": sum(run.git_objects.values()),
        "new_git_objects": len(run.git_objects),
        "manifest_bytes": len(run.manifests[1].to_json().encode()),
        "added/changed/removed": _counts(run.manifests[1]),
        "push_v2_s": round(run.seconds["push_v2"], 2),
    }]
    with tempfile.TemporaryDirectory(dir=run.root.parent) as tmp:
        repo = Path(tmp)
        _git(repo, "init", "-q")
        target = repo / MANIFEST
        target.parent.mkdir(parents=True)
        texts = [_schema_one(run, m).to_json().encode() for m in run.manifests]
        target.write_bytes(texts[0])
        _git(repo, "add", MANIFEST)
        _git(repo, "commit", "-q", "-m", "version 1")
        before = loose_objects(repo)
        target.write_bytes(texts[1])
        _git(repo, "commit", "-q", "-am", "version 2")
        added = {k: v for k, v in loose_objects(repo).items() if k not in before}
    rows.append({
        "figure": "git_growth", "files": run.files, "format": "v1 (files listed)",
        "new_git_object_bytes": sum(added.values()), "new_git_objects": len(added),
        "manifest_bytes": len(texts[1]), "added/changed/removed": None, "push_v2_s": None,
    })
    return rows


def _timed_cpv(root: Path, args: list[str]) -> dict[str, float]:
    """One ``cpv`` run in ``root`` (output discarded): wall, CPU (user + sys) and peak RSS of
    that process alone, and the load average it ran under.

    Started through a small ``python -c`` that execs it, whose ``wait4`` figures are the
    ``cpv`` process's own: a child forked straight from this (big, after an in-process push)
    process would report this process's RSS as its peak."""
    start = time.perf_counter()
    probe = ("import os, sys, json; pid = os.fork()\n"
             "if pid == 0:\n"
             "    os.dup2(os.open(os.devnull, os.O_WRONLY), 1)\n"
             "    os.execv(sys.executable, [sys.executable, '-m', 'cpv', *sys.argv[1:]])\n"
             "_, status, u = os.wait4(pid, 0)\n"
             "print(json.dumps([status, u.ru_utime + u.ru_stime, u.ru_maxrss]))")
    done = subprocess.run([sys.executable, "-c", probe, *args], cwd=root, capture_output=True,
                          text=True, check=False)
    wall = time.perf_counter() - start
    try:
        status, cpu, peak_kib = json.loads(done.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        status, cpu, peak_kib = 1, 0.0, 0
    if status != 0:
        raise RuntimeError(f"cpv {' '.join(args)} failed: {done.stderr.strip()}")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "peak_rss_mb": round(peak_kib / 1024), "load": round(os.getloadavg()[0], 1)}


READ_COMMANDS = (["ls", "HEAD"], ["diff", "HEAD~1", "HEAD"], ["status"])
"""What a user runs on a big version that only reads: issue 11's "status and diff under
10 s, peak RSS under 1 GiB" and issue 13's ``cpv ls``."""


def figure_read_commands(run: ScaleRun) -> list[dict[str, Any]]:
    """``cpv ls``, ``diff`` (v1 -> v2) and ``status`` through the real program: once with the
    local list cache as push left it, once without it (lists and trees from the store)."""
    cache = run.root / ".cpv" / "local" / "filelists"
    aside = run.root.parent / f"filelists-aside-{run.files}"
    rows: list[dict[str, Any]] = []
    for state in ("cached", "no cache"):
        for args in READ_COMMANDS:
            if state == "no cache":
                if args == ["status"]:
                    continue  # status reads the baseline and the stat cache, not the lists
                if cache.exists():
                    shutil.rmtree(aside, ignore_errors=True)
                    cache.rename(aside)
            try:
                timed = _timed_cpv(run.root, args)
            finally:
                if aside.exists():
                    shutil.rmtree(cache, ignore_errors=True)
                    aside.rename(cache)
            rows.append({"figure": "read_commands", "files": run.files,
                         "command": "cpv " + " ".join(args), "lists": state, **timed})
    return rows


FIGURES: dict[str, Callable[[ScaleRun], list[dict[str, Any]]]] = {
    "git_growth": figure_git_growth,
    "read_commands": figure_read_commands,
}
"""Figure name -> function; add one entry per figure (the store side adds its own)."""


def markdown(rows: list[dict[str, Any]]) -> str:
    """One table per figure, columns in the order of the first row."""
    out: list[str] = []
    for name in dict.fromkeys(r["figure"] for r in rows):
        mine = [r for r in rows if r["figure"] == name]
        cols = [c for c in mine[0] if c != "figure"]
        out += [f"### {name}", "", "| " + " | ".join(cols) + " |",
                "|" + "---|" * len(cols)]
        out += ["| " + " | ".join("" if r[c] is None else f"{r[c]:,}" if isinstance(r[c], int)
                                  else str(r[c]) for c in cols) + " |" for r in mine]
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", default="10000,100000",
                        help="comma-separated file counts (1 KiB each), e.g. 10000,100000,1000000")
    parser.add_argument("--changed", type=float, default=0.01,
                        help="fraction of the files version 2 rewrites")
    parser.add_argument("--figures", default=",".join(FIGURES), help="which figures to report")
    parser.add_argument("--out", type=Path, default=None, help="folder for scale.json")
    parser.add_argument("--scratch", type=Path, default=None,
                        help="where workspaces and stores go (default: a temporary folder)")
    parser.add_argument("--reuse", action="store_true",
                        help="measure the workspaces an earlier --scratch run left (read-only "
                             "figures such as read_commands)")
    args = parser.parse_args(argv)
    counts = [int(float(x)) for x in args.files.split(",") if x]
    chosen = [FIGURES[name] for name in args.figures.split(",") if name]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="cpv-scale-") as tmp:
        scratch = args.scratch or Path(tmp)
        scratch.mkdir(parents=True, exist_ok=True)
        for count in counts:
            reused = args.reuse and (scratch / f"ws-{count}").is_dir()
            run = (reuse if reused else prepare)(count, args.changed, scratch)
            print(f"# {count} files: " + ", ".join(f"{k} {v:.1f}s"
                                                  for k, v in run.seconds.items()),
                  file=sys.stderr)
            for figure in chosen:
                rows += figure(run)
    text = markdown(rows)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "scale.json").write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
