"""The two targets of issue 14, measured on the real SeaweedFS server (docs/benchmarks.md).

1. **Background versioning from the loop.** A CPU training loop (torch matmuls) saves a
   ``--size-mib`` checkpoint (default 512 MiB, every byte changed since the last one, as
   training changes every weight) every ``--every`` steps, with and without
   :class:`cpv.Checkpointer`. Reported: steps/s of each loop (saving included, the final flush
   not), the loss in %, and how long the last push took after the loop ended.
2. **Many writers, one version.** ``--writers`` processes each push a ``--size-mib`` shard of
   one checkpoint as parts of one session, then one commit; against one process pushing
   ``--size-mib`` alone. Also 4 writers sharing the same total (``size/writers`` each), which
   separates the protocol's cost from the machine's. Reported: wall times, their ratio, and
   the commit's own time.

    python benchmarks/training_loop.py [--size-mib 512] [--repeats 3] [--json out.json]

Each repetition gets fresh store prefixes (nothing deduplicates against an earlier run). The
machine is shared: report min and median, and read them as such.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from tests.s3server import S3Server  # noqa: E402

MiB = 1024 * 1024

_WRITER = """
import sys, time
from pathlib import Path
from cpv.api import CPVConfig
from cpv.service.sessions import push_session_part
config = CPVConfig.load(path=Path(sys.argv[5]), env={})
started = time.monotonic()
push_session_part(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), config=config)
print(time.monotonic() - started)
"""


def _config(server: S3Server, work: Path, prefix: str) -> Any:
    from cpv.api import CPVConfig

    return CPVConfig.load(path=work / "none.json", env={}).replace(
        cache={"dir": str(work / "cache" / prefix)},
        aws={"endpoint_url": server.endpoint_url, "region": server.region},
        store={"url": f"s3://{server.bucket}/{prefix}"})


def _workspace(server: S3Server, work: Path, name: str) -> tuple[Path, Any]:
    from cpv import ModelsCheckpointsManage

    config = _config(server, work, name)
    ws = work / name
    ModelsCheckpointsManage("AI-Bench", "loop", workspace=ws, config=config).import_model_init()
    return ws, config


def _shard(path: Path, size: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        left = size
        block = os.urandom(8 * MiB)
        n = seed
        while left > 0:
            piece = block[: min(left, len(block))]
            fh.write(n.to_bytes(8, "little") + piece[8:])
            n += 1
            left -= len(piece)


# -- target 1 --------------------------------------------------------------------------------


def _loop(ws: Path, config: Any, *, size: int, every: int, checkpoints: int,
          version: bool) -> dict[str, float]:
    import torch

    from cpv import Checkpointer

    torch.manual_seed(0)
    a = torch.randn(384, 384)
    weights = [torch.randn(size // 4 // 16) for _ in range(16)]  # size bytes of float32
    out = ws.parent / f"ckpt-{'v' if version else 'b'}-{uuid.uuid4().hex[:6]}"
    cp = Checkpointer(ws, config=config, on_error="raise") if version else None
    steps = 0
    started = time.monotonic()
    for k in range(1, checkpoints + 1):
        for _ in range(every):
            a = torch.tanh(a @ a.T / 384)
            steps += 1
        for w in weights:
            w.add_(1e-3)  # every weight changes between checkpoints
        folder = out / f"step-{steps}"
        folder.mkdir(parents=True)
        torch.save({f"w{i}": w for i, w in enumerate(weights)}, folder / "model.pt")
        if cp is not None:
            cp.save(folder, step=steps, metrics={"k": float(k)})
    loop_s = time.monotonic() - started
    flush_s = 0.0
    versions = 0
    if cp is not None:
        t = time.monotonic()
        cp.close()
        flush_s = time.monotonic() - t
        versions = len(cp.saved)
    shutil.rmtree(out, ignore_errors=True)
    return {"steps": steps, "loop_s": loop_s, "steps_per_s": steps / loop_s,
            "flush_s": flush_s, "versions": versions,
            "superseded": cp.superseded if cp is not None else 0}


def target_loop(server: S3Server, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        ws, config = _workspace(server, work, f"loop-{rep}-{uuid.uuid4().hex[:6]}")
        # Baseline and versioned alternate first, so neither always gets the quieter minute.
        order = [False, True] if rep % 2 == 0 else [True, False]
        pair: dict[str, Any] = {}
        for version in order:
            pair["versioned" if version else "baseline"] = _loop(
                ws, config, size=args.size_mib * MiB, every=args.every,
                checkpoints=args.checkpoints, version=version)
        pair["loss_pct"] = 100 * (1 - pair["versioned"]["steps_per_s"]
                                  / pair["baseline"]["steps_per_s"])
        print(json.dumps(pair), flush=True)
        runs.append(pair)
        shutil.rmtree(ws, ignore_errors=True)
    losses = [r["loss_pct"] for r in runs]
    return {"runs": runs, "loss_pct_min": min(losses), "loss_pct_median": statistics.median(losses)}


# -- target 2 --------------------------------------------------------------------------------


def _writers(server: S3Server, work: Path, store_url: str, config_file: Path, session: str,
             folders: list[Path]) -> float:
    env = {**os.environ, "PYTHONPATH": str(_ROOT)}
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, store_url, session, str(r),
                               str(f), str(config_file)], env=env, stdout=subprocess.PIPE)
             for r, f in enumerate(folders)]
    for p in procs:
        p.communicate()
        if p.returncode != 0:
            raise RuntimeError("a writer failed")
    return time.monotonic() - started


def target_writers(server: S3Server, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from cpv.service import WorkspaceService

    size = args.size_mib * MiB
    shards = work / "shards"
    full = [shards / f"rank{r}" / f"shard_{r}.bin" for r in range(args.writers)]
    quarter = [shards / f"q{r}" / f"shard_{r}.bin" for r in range(args.writers)]
    for r in range(args.writers):
        _shard(full[r], size, seed=r << 40)
        _shard(quarter[r], size // args.writers, seed=(r + 100) << 40)
    runs = []
    for rep in range(args.repeats):
        row: dict[str, float] = {}
        for label, folders in (("one", [full[0].parent]),
                               ("many", [f.parent for f in full]),
                               ("many_same_total", [f.parent for f in quarter])):
            ws, config = _workspace(server, work, f"w-{label}-{rep}-{uuid.uuid4().hex[:6]}")
            config_file = work / f"{ws.name}.json"
            config.save(config_file)
            session = f"bench-{uuid.uuid4().hex[:8]}"
            row[f"{label}_s"] = _writers(server, work, config.store_url(workspace=ws),
                                         config_file, session, folders)
            with WorkspaceService.open(ws, config=config, interface="python") as service:
                t = time.monotonic()
                service.commit_session(session, parts=len(folders), tag=True)
                row[f"{label}_commit_s"] = time.monotonic() - t
            shutil.rmtree(ws, ignore_errors=True)
        row["ratio"] = row["many_s"] / row["one_s"]
        row["ratio_same_total"] = row["many_same_total_s"] / row["one_s"]
        print(json.dumps(row), flush=True)
        runs.append(row)
    shutil.rmtree(shards, ignore_errors=True)

    def stats(key: str) -> dict[str, float]:
        values = [r[key] for r in runs]
        return {"min": min(values), "median": statistics.median(values)}

    return {"runs": runs, **{k: stats(k) for k in runs[0]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--every", type=int, default=400, help="steps between checkpoints")
    parser.add_argument("--checkpoints", type=int, default=3)
    parser.add_argument("--writers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=["loop", "writers"])
    parser.add_argument("--json", type=Path)
    parser.add_argument("--server-nice", type=int, default=0,
                        help="lower the local server's CPU priority, as if it ran elsewhere")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="cpv-bench-loop-"))
    server = S3Server.start(work / "server")
    os.environ.update({"AWS_ACCESS_KEY_ID": server.access_key,
                       "AWS_SECRET_ACCESS_KEY": server.secret_key,
                       "AWS_DEFAULT_REGION": server.region,
                       "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.test",
                       "GIT_COMMITTER_NAME": "bench",
                       "GIT_COMMITTER_EMAIL": "bench@example.test"})
    result: dict[str, Any] = {"size_mib": args.size_mib, "cpus": os.cpu_count(),
                              "load_before": os.getloadavg()[0]}
    if args.server_nice:
        for task in Path(f"/proc/{server.process.pid}/task").iterdir():
            os.setpriority(os.PRIO_PROCESS, int(task.name), args.server_nice)
    result["server_nice"] = args.server_nice
    try:
        with server:
            if args.only in (None, "loop"):
                result["loop"] = target_loop(server, work, args)
            if args.only in (None, "writers"):
                result["writers"] = target_writers(server, work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["load_after"] = os.getloadavg()[0]
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
