"""Big-file pull (cpv, s5cmd, restic) and cpv's deep verify of the same data, on one server.

    python benchmarks/pull_verify.py --size-gib 1 --reps 3 [--baseline DIR]

A focused companion to ``run.py`` for the pull path: one checkpoint is pushed once (by cpv, by
s5cmd and by restic with ``--compression off``, each to its own prefix), then every repetition
pulls it with each tool into an empty folder and runs ``verify --deep`` of the snapshot. s5cmd and
restic are skipped when not installed (``setup_peers.sh s5cmd``, ``apt-get install restic``).
Each command runs as a child under ``measure_child.py`` (wall time, CPU seconds, peak RSS), like
in ``run.py``; the pulled file is compared with the source once. Prints a Markdown table of
medians (min-max) and the load average at the start and the end.

``--baseline DIR`` also runs the pull and the verify with the cpv of another checkout (e.g.
``git archive main | tar -x -C DIR``) against the same server and snapshot, interleaved in every
repetition: before/after figures from one run, on one machine state.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

from server import BenchServer  # noqa: E402
from tools import PEERS, clean_environ  # noqa: E402
from workloads import evict, plan_checkpoint, write_checkpoint  # noqa: E402

GIB = 1024**3


def _s5cmd() -> Path | None:
    found = sorted((PEERS / "s5cmd").glob("lib/python*/site-packages/s5cmd/bin/s5cmd"))
    return found[0] if found else None


def _measure(argv: list[str], env: dict[str, str], scratch: Path) -> dict[str, Any]:
    out = scratch / "rusage.json"
    proc = subprocess.run(
        [sys.executable, "-I", "-S", str(HERE / "measure_child.py"), str(out), "--", *argv],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{argv[:3]} failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["stdout"] = proc.stdout
    return result


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(16 * 1024 * 1024):
            h.update(block)
    return h.hexdigest()


def _summary(name: str, runs: list[dict[str, Any]], size: int) -> str:
    wall = [r["wall_s"] for r in runs]
    med = statistics.median(wall)
    cpu = statistics.median(r["cpu_s"] for r in runs)
    rss = max(r["rss_bytes"] for r in runs) / 2**20
    return (
        f"| {name} | {len(runs)} | {med:.2f} ({min(wall):.2f}-{max(wall):.2f}) | "
        f"{size / med / 1e6:.0f} | {cpu:.2f} | {rss:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--scratch", type=Path, default=None)
    parser.add_argument("--baseline", type=Path, default=None, help="another cpv checkout")
    args = parser.parse_args(argv)

    load_start = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="cpv-pullbench-", dir=args.scratch))
    bs = BenchServer.start(scratch / "server")
    try:
        srv = bs.server
        env = {
            **clean_environ(),
            "AWS_ACCESS_KEY_ID": srv.access_key,
            "AWS_SECRET_ACCESS_KEY": srv.secret_key,
            "AWS_DEFAULT_REGION": srv.region,
            "PYTHONPATH": str(ROOT),
        }
        src = scratch / "src"
        ckpt = plan_checkpoint(int(args.size_gib * GIB))
        write_checkpoint(src / "model.safetensors", ckpt, seed=1)
        size = ckpt.size
        digest = _sha256(src / "model.safetensors")
        common = ["--endpoint", srv.endpoint_url, "--bucket", srv.bucket, "--prefix", "cpv"]
        driver = [sys.executable, str(HERE / "cpv_driver.py")]
        evict(src)
        pushed = _measure([*driver, "push", *common, "--cache-dir", str(scratch / "c0"),
                           str(src)], env, scratch)
        sid = json.loads(pushed["stdout"].splitlines()[-1])["snapshot_id"]
        s5 = _s5cmd()
        if s5 is not None:
            _measure([str(s5), "--log", "error", "--endpoint-url", srv.endpoint_url, "cp",
                      f"{src}/model.safetensors", f"s3://{srv.bucket}/s5/"], env, scratch)
        restic = shutil.which("restic")
        restic_env = {**env, "RESTIC_PASSWORD": "cpv-benchmark"}
        restic_repo = ["-r", f"s3:{srv.endpoint_url}/{srv.bucket}/restic"]
        if restic is not None:
            subprocess.run([restic, *restic_repo, "init", "--repository-version", "2"],
                           env=restic_env, check=True, capture_output=True)
            subprocess.run([restic, *restic_repo, "backup", "--quiet", "--compression", "off",
                            "--host", "bench", "."], cwd=src, env=restic_env, check=True,
                           capture_output=True)
        # This driver runs both trees: a copy of it outside any checkout imports the cpv that
        # PYTHONPATH names (the baseline may predate the driver's verify op).
        copy = scratch / "driver" / "benchmarks" / "cpv_driver.py"
        copy.parent.mkdir(parents=True)
        shutil.copy(HERE / "cpv_driver.py", copy)
        cpvs = [("cpv", ROOT)] + ([("baseline", args.baseline.resolve())] if args.baseline else [])
        for _, root in cpvs:  # .pyc files now, so no timed run pays for compiling
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "cpv")],
                           env=env, check=False, capture_output=True)
        runs: dict[str, list[dict[str, Any]]] = {}
        for rep in range(args.reps):
            dest = scratch / "dest"
            for label, root in cpvs:
                tree_env = {**env, "PYTHONPATH": str(root)}
                tree_driver = [sys.executable, str(copy)]
                runs.setdefault(f"{label} pull", []).append(_measure(
                    [*tree_driver, "pull", *common, "--cache-dir",
                     str(scratch / f"c-{label}-{rep}"), "--snapshot", sid, str(dest)],
                    tree_env, scratch))
                if rep == 0 and _sha256(dest / "model.safetensors") != digest:
                    raise SystemExit(f"{label} pulled wrong bytes")
                shutil.rmtree(dest)
            if s5 is not None:
                runs.setdefault("s5cmd pull", []).append(_measure(
                    [str(s5), "--log", "error", "--endpoint-url", srv.endpoint_url, "cp",
                     f"s3://{srv.bucket}/s5/*", f"{dest}/"], env, scratch))
                shutil.rmtree(dest)
            if restic is not None:
                runs.setdefault("restic restore", []).append(_measure(
                    [restic, *restic_repo, "restore", "latest", "--host", "bench", "--target",
                     str(dest), "--cache-dir", str(scratch / f"r-{rep}")], restic_env, scratch))
                if rep == 0 and _sha256(dest / "model.safetensors") != digest:
                    raise SystemExit("restic restored wrong bytes")
                shutil.rmtree(dest)
            for label, root in cpvs:
                tree_env = {**env, "PYTHONPATH": str(root)}
                runs.setdefault(f"{label} verify --deep", []).append(_measure(
                    [sys.executable, str(copy), "verify", *common,
                     "--cache-dir", str(scratch / f"v-{label}-{rep}"), "--snapshot", sid, "."],
                    tree_env, scratch))
        print(f"{size / 1e9:.2f} GB, {args.reps} repetitions, SeaweedFS on 127.0.0.1; load "
              f"average {load_start[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end\n")
        print("| Tool / op | Runs | Wall s median (min-max) | MB/s | CPU s | Peak RSS MiB |")
        print("|---|---|---|---|---|---|")
        for name, rs in runs.items():
            if rs:
                print(_summary(name, rs, size))
    finally:
        bs.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
