"""Where cpv's push and pull spend their time: py-spy samples of the cpv driver on a checkpoint.

    python benchmarks/profile_cpv.py [--size-gib 0.5] [--small-files 0] [--out DIR]

Starts the benchmark's SeaweedFS server, writes a safetensors checkpoint (and optionally a
small-file tree), and runs ``cpv_driver.py push`` and ``pull`` under ``py-spy record`` (all
threads, idle samples included, so waiting on the network or a lock shows up). Writes the
collapsed stacks (``*.folded``) and prints, per thread group, the functions that hold the most
samples (self and total). Needs ``pip install py-spy``.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import workloads as wl  # noqa: E402
from server import BenchServer  # noqa: E402

GiB = 1024**3


def summarize(folded: Path, top: int = 25) -> str:
    """Top functions by total (inclusive) and self samples, over non-idle and all samples."""
    total: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    threads: collections.Counter[str] = collections.Counter()
    n = 0
    for line in folded.read_text().splitlines():
        stack, _, count_s = line.rpartition(" ")
        count = int(count_s)
        frames = stack.split(";")
        n += count
        threads[frames[0].split(" ")[0] if frames else "?"] += count
        seen = set()
        for f in frames[1:]:
            name = f.split(" (")[0] + (" " + f.split("/")[-1].rstrip(")") if "/" in f else "")
            if name not in seen:
                total[name] += count
                seen.add(name)
        if len(frames) > 1:
            leaf = frames[-1]
            self_[
                leaf.split(" (")[0] + (" " + leaf.split("/")[-1].rstrip(")") if "/" in leaf else "")
            ] += count
    lines = [f"{folded.name}: {n} samples"]
    lines.append(
        "  by thread: " + ", ".join(f"{t} {c * 100 / n:.0f} %" for t, c in threads.most_common(8))
    )
    lines.append("  top self:")
    lines += [f"    {c * 100 / n:5.1f} %  {f}" for f, c in self_.most_common(top)]
    lines.append("  top total:")
    lines += [f"    {c * 100 / n:5.1f} %  {f}" for f, c in total.most_common(top)]
    return "\n".join(lines)


def _json_line(stdout: str) -> dict[str, object]:
    """The driver's JSON result among py-spy's own messages."""
    line = next(x for x in reversed(stdout.splitlines()) if x.startswith("{"))
    result: dict[str, object] = json.loads(line)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-gib", type=float, default=0.5)
    parser.add_argument("--small-files", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "profile")
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    args = parser.parse_args()
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        sys.exit("py-spy not found: python -m pip install py-spy")
    args.out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="cpv-prof-"))
    server = BenchServer.start(scratch / "server")
    try:
        s = server.server
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(
            {
                "AWS_ACCESS_KEY_ID": s.access_key,
                "AWS_SECRET_ACCESS_KEY": s.secret_key,
                "AWS_DEFAULT_REGION": s.region,
                "PYTHONPATH": str(ROOT),
            }
        )
        trees: list[tuple[str, Path]] = []
        ckpt = wl.plan_checkpoint(int(args.size_gib * GiB), seed=1)
        big = scratch / "big"
        wl.write_checkpoint(big / "model.safetensors", ckpt, seed=11)
        trees.append(("big", big))
        if args.small_files:
            small = scratch / "small"
            wl.write_smallfiles(small, args.small_files)
            trees.append(("smallfiles", small))
        def profiled(out: Path, *driver_args: str) -> dict[str, object]:
            """Run ``cpv_driver.py`` under py-spy into ``out``; return the driver's report."""
            cmd = [
                pyspy, "record", "--idle", "--threads", "--rate", str(args.rate),
                "--format", "raw", "-o", str(out), "--",
                sys.executable, str(HERE / "cpv_driver.py"), *driver_args,
            ]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
            return _json_line(res.stdout)

        for name, tree in trees:
            prefix = f"prof-{name}"
            common = ["--endpoint", s.endpoint_url, "--bucket", s.bucket, "--prefix", prefix]
            wl.evict(tree)
            push_out = args.out / f"{name}-push.folded"
            report = profiled(
                push_out, "push", str(tree), *common, "--cache-dir", str(scratch / f"cache-{name}")
            )
            print(report)
            print(summarize(push_out))
            pull_out = args.out / f"{name}-pull.folded"
            print(
                profiled(
                    pull_out, "pull", str(scratch / f"pulled-{name}"), *common,
                    "--cache-dir", str(scratch / f"pullcache-{name}"),
                    "--snapshot", str(report["snapshot_id"]),
                )
            )
            print(summarize(pull_out))
    finally:
        server.stop()
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
