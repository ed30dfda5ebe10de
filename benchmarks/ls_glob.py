"""Listing and glob pulls of a version of 100,000 files, through the real `cpv` program.

Targets (issue 13): ``cpv ls`` of a version of 100,000 files in under 2 seconds; a glob pull of
1% of those files transfers at most ~2% of the data set's bytes.

Run: ``python benchmarks/ls_glob.py`` (several minutes on 2 shared cores; about 2x the data set
of scratch disk: the files and the server's copy; deleted at the end). ``--files`` and
``--avg-kib`` scale it down (``--files 2000`` for a smoke run).

Steps: start SeaweedFS with its Prometheus counters (``benchmarks/server.py``); ``cpv init`` a
workspace on it; write ``--files`` files of random bytes (sizes uniform in 0.25x..1.75x
``--avg-kib``; 100 folders ``data/train/shard-NN/file-NNNNNN.bin``); ``cpv push data --tag``.
Then:

- ``cpv ls data-v0.1`` (all files, human output to /dev/null), ``--repeat`` times in the
  workspace that pushed (its cache holds the snapshot) and as many times in a fresh ``git
  clone`` with an empty cache; wall time of the whole program, Python start-up included.
- ``cpv pull data-v0.1 PATTERN`` into fresh clones with empty caches, for two 1% selections:
  ``*00.bin`` (every hundredth file, spread over the whole data set: the worst case for range
  coalescing) and ``data/train/shard-07/`` (one folder: neighbours in the packs). Bytes are
  the server's ``sent_bytes`` counter for the bucket (every GET body: config, index, snapshot,
  chunk ranges) and cpv's own ``downloaded_bytes``; each is compared to the data set's bytes.

Timings on this shared 2-core machine are noisy: min and median are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
for p in (str(HERE), str(HERE.parent)):
    if p not in sys.path:
        sys.path.insert(0, p)

from server import BenchServer  # noqa: E402

MiB = 1024 * 1024
SHARDS = 100


def cpv_program() -> list[str]:
    script = Path(sys.executable).parent / "cpv"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cpv"]


def environment(server: BenchServer, home: Path) -> dict[str, str]:
    s3 = server.server
    home.mkdir(parents=True, exist_ok=True)
    gitconfig = home / ".gitconfig-empty"
    gitconfig.write_text("")
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update({
        "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"),
        "XDG_CONFIG_HOME": str(home / ".config"), "GIT_CONFIG_GLOBAL": str(gitconfig),
        "GIT_CONFIG_NOSYSTEM": "1", "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "b@x.test",
        "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "b@x.test",
        "CPV_ENDPOINT_URL": s3.endpoint_url, "AWS_ACCESS_KEY_ID": s3.access_key,
        "AWS_SECRET_ACCESS_KEY": s3.secret_key, "AWS_DEFAULT_REGION": s3.region,
        "AWS_CONFIG_FILE": str(home / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    })
    return env


def cpv(args: list[str], *, cwd: Path, env: dict[str, str], capture: bool = True) -> str:
    done = subprocess.run([*cpv_program(), *args], cwd=cwd, env=env, check=False, text=True,
                          stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                          stderr=subprocess.PIPE)
    if done.returncode != 0:
        raise SystemExit(f"cpv {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout if capture else ""


def write_dataset(root: Path, files: int, avg: int, seed: int) -> int:
    rng = random.Random(seed)
    total = 0
    per = max(1, files // SHARDS)
    for i in range(files):
        folder = root / "data" / "train" / f"shard-{i // per:02d}"
        if i % per == 0:
            folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(avg // 4, avg * 7 // 4)
        (folder / f"file-{i:06d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return total


def clone(ws: Path, dest: Path, env: dict[str, str]) -> None:
    subprocess.run(["git", "clone", "-q", str(ws), str(dest)], env=env, check=True)


CPU: list[float] = []
"""CPU seconds (user + system, cpv and the git it runs) of each :func:`timed` run: on a shared
machine the wall time also counts waiting for a core."""


def timed(args: list[str], *, cwd: Path, env: dict[str, str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    cpv(args, cwd=cwd, env=env, capture=False)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    CPU.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--avg-kib", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: $TMPDIR)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    scratch = Path(tempfile.mkdtemp(prefix="cpv-lsglob-bench-", dir=args.tmp))
    try:
        return run(args, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def run(args: argparse.Namespace, scratch: Path) -> int:
    server = BenchServer.start(scratch / "server")
    try:
        return measure(args, scratch, server)
    finally:
        server.stop()


def measure(args: argparse.Namespace, scratch: Path, server: BenchServer) -> int:
    log = sys.stderr
    env = environment(server, scratch / "home")
    ws = scratch / "ws"
    cpv(["init", str(ws), "--store", f"s3://{server.server.bucket}/lsglob", "-q"],
        cwd=scratch, env=env)
    t0 = time.monotonic()
    dataset_bytes = write_dataset(ws, args.files, args.avg_kib * 1024, seed=13)
    print(f"wrote {args.files} files, {dataset_bytes / MiB:.1f} MiB, in "
          f"{time.monotonic() - t0:.1f} s", file=log)
    push_s = timed(["push", "data", "--tag", "-q"], cwd=ws, env=env)
    print(f"pushed in {push_s:.1f} s", file=log)
    listed = json.loads(cpv(["ls", "data-v0.1", "--json"], cwd=ws, env=env))
    assert listed["count"] == args.files, listed["count"]

    warm = [timed(["ls", "data-v0.1"], cwd=ws, env=env) for _ in range(args.repeat)]
    warm_cpu = CPU[-args.repeat:]
    cold = []
    for i in range(args.repeat):
        other = scratch / f"ls-clone-{i}"
        clone(ws, other, env)
        cold_env = {**env, "XDG_CACHE_HOME": str(scratch / f"ls-cache-{i}")}
        cold.append(timed(["ls", "data-v0.1"], cwd=other, env=cold_env))
        shutil.rmtree(other)
    cold_cpu = CPU[-args.repeat:]
    print(f"ls warm: min {min(warm):.2f} s, median {statistics.median(warm):.2f} s "
          f"(CPU min {min(warm_cpu):.2f} s); fresh clone + empty cache: min {min(cold):.2f} s, "
          f"median {statistics.median(cold):.2f} s (CPU min {min(cold_cpu):.2f} s)", file=log)

    pulls: dict[str, dict[str, Any]] = {}
    for label, pattern in (("spread", "*00.bin"), ("one-folder", "data/train/shard-07/")):
        other = scratch / f"pull-{label}"
        clone(ws, other, env)
        pull_env = {**env, "XDG_CACHE_HOME": str(scratch / f"pull-cache-{label}")}
        before = server.counters()
        started = time.perf_counter()
        out = json.loads(cpv(["pull", "data-v0.1", pattern, "--json"], cwd=other, env=pull_env))
        seconds = time.perf_counter() - started
        after = server.counters().minus(before)
        (result,) = out["results"]
        files = sum(1 for _ in (other / "data").rglob("*.bin"))
        picked = sum(f.stat().st_size for f in (other / "data").rglob("*.bin"))
        pulls[label] = {
            "pattern": pattern, "files": files, "selected_bytes": picked,
            "server_sent_bytes": after.sent_bytes, "requests": after.requests,
            "cpv_downloaded_bytes": result["downloaded_bytes"], "seconds": seconds,
            "server_share": after.sent_bytes / dataset_bytes,
        }
        print(f"pull {pattern}: {files} files ({files / args.files:.1%}), "
              f"{picked / MiB:.1f} MiB selected; server sent {after.sent_bytes / MiB:.1f} MiB "
              f"({after.sent_bytes / dataset_bytes:.2%} of the data set) in {after.requests} "
              f"requests; cpv downloaded {result['downloaded_bytes'] / MiB:.1f} MiB; "
              f"{seconds:.1f} s", file=log)
        shutil.rmtree(other)

    report = {
        "files": args.files, "dataset_bytes": dataset_bytes, "push_seconds": push_s,
        "ls_warm_seconds": {"min": min(warm), "median": statistics.median(warm), "runs": warm,
                            "cpu": warm_cpu},
        "ls_cold_seconds": {"min": min(cold), "median": statistics.median(cold), "runs": cold,
                            "cpu": cold_cpu},
        "load_average": os.getloadavg(),
        "pulls": pulls,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    ok = (min(warm) < 2.0
          and all(p["server_share"] <= 0.02 for p in pulls.values()))
    print("targets met" if ok else "TARGET MISSED", file=log)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
