"""What tracking a single file costs when its folder holds many other files (issue 13).

A tracked file's bytes are compared in its folder, and the rest of that folder is not its: a
status or a no-op push lists the folder once (``os.scandir``), drops every sibling by name
before any ``stat``, and does not enter sub-folders. This measures that against the yardstick
a user had before files could be tracked: the same file alone in a folder of its own.

Run: ``python benchmarks/track_file.py`` (about a minute on 2 shared cores). ``--siblings``
sets how many other files share the tracked file's folder (default 100,000), ``--repeat`` how
many times each command runs.

Steps: two workspaces on the embedded local store (status and a no-op push decide from the
stat cache without the store, so the store's kind does not enter the figures):

- ``beside``: ``runs/exp1/model.safetensors`` (8 MiB) tracked as a file, next to
  ``--siblings`` 1-byte files and a sub-folder of 1,000 more in ``runs/exp1/``;
- ``alone``: ``runs/exp1/model.safetensors`` tracked as the folder ``runs/exp1`` holding only it.

Then ``cpv status`` and ``cpv push PATH`` (nothing changed) ``--repeat`` times in each, through
the real ``cpv`` program (Python start-up included). Reported: CPU seconds (user + sys) of the
children and wall seconds, min and median, and the load average.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MiB = 1024 * 1024


def cpv_program() -> list[str]:
    script = Path(sys.executable).parent / "cpv"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cpv"]


def run_cpv(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(cpu seconds, wall seconds) of one run of the program; it must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    done = subprocess.run([*cpv_program(), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, check=False)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"cpv {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu, wall


def workspace(root: Path, env: dict[str, str], *, siblings: int, as_file: bool) -> str:
    """Build one workspace, push its tracked path; return the path to push again."""
    subprocess.run(["git", "init", "-q", "-b", "main", str(root)], check=True, env=env)
    run_cpv(["init", "-q"], cwd=root, env=env)
    folder = root / "runs" / "exp1"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(os.urandom(8 * MiB))
    if as_file:
        for i in range(siblings):
            (folder / f"event-{i:06d}.log").write_bytes(b"x")
        (folder / "samples").mkdir()
        for i in range(1000):
            (folder / "samples" / f"s-{i:04d}.png").write_bytes(b"y")
    path = "runs/exp1/model.safetensors" if as_file else "runs/exp1"
    run_cpv(["push", path, "-q"], cwd=root, env=env)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--siblings", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="cpv-track-file-"))
    env = {**os.environ, "HOME": str(scratch / "home"), "GIT_AUTHOR_NAME": "bench",
           "GIT_AUTHOR_EMAIL": "b@example.com", "GIT_COMMITTER_NAME": "bench",
           "GIT_COMMITTER_EMAIL": "b@example.com"}
    try:
        paths = {}
        for name, as_file in (("beside", True), ("alone", False)):
            paths[name] = workspace(scratch / name, env, siblings=args.siblings,
                                    as_file=as_file)
        print(f"siblings {args.siblings:,} (+1,000 in a sub-folder); load average "
              f"{' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        for command in ("status", "push"):
            for name in ("beside", "alone"):
                argv_ = ["status"] if command == "status" else ["push", paths[name]]
                runs = [run_cpv(argv_, cwd=scratch / name, env=env) for _ in range(args.repeat)]
                cpu = [c for c, _ in runs]
                wall = [w for _, w in runs]
                print(f"{command:<7} {name:<7} cpu min {min(cpu):.3f} s median "
                      f"{statistics.median(cpu):.3f} s | wall min {min(wall):.3f} s median "
                      f"{statistics.median(wall):.3f} s")
        print(f"load average at the end {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
