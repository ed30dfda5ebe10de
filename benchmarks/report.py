"""Turn a benchmark run's results into the targets check, Markdown tables and PNG charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

MiB = 1024 * 1024
TOOL_ORDER = ("cpv", "boto3", "awscli", "s5cmd", "rclone", "dvc", "restic", "restic-auto")
WORKLOAD_ORDER = (
    "big",
    "noop-big",
    "finetune-base",
    "finetune-100",
    "finetune-50",
    "finetune-10",
    "smallfiles",
    "noop-small",
)
OP_ORDER = ("push", "add", "add+push", "pull")
PEERS_FOR_BIG = ("boto3", "awscli", "s5cmd", "rclone", "dvc", "restic", "restic-auto")
RESTICS = ("restic", "restic-auto")


def _row(summary: list[dict[str, Any]], tool: str, workload: str, op: str) -> dict[str, Any] | None:
    for r in summary:
        if r["tool"] == tool and r["workload"] == workload and r["op"] == op:
            return r
    return None


def _sort_key(r: dict[str, Any]) -> tuple[int, int, int]:
    def idx(seq: tuple[str, ...], v: str) -> int:
        return seq.index(v) if v in seq else len(seq)

    return (idx(WORKLOAD_ORDER, r["workload"]), idx(TOOL_ORDER, r["tool"]), idx(OP_ORDER, r["op"]))


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The project's performance targets, each with the measured value and pass/fail.

    ``pass`` is None when the run did not measure what the target needs (peer or workload
    left out).
    """
    s = result["summary"]
    out: list[dict[str, Any]] = []

    def add(name: str, value: str, ok: bool | None, detail: str = "") -> None:
        out.append({"target": name, "measured": value, "pass": ok, "detail": detail})

    for op in ("push", "pull"):
        cpv = _row(s, "cpv", "big", op)
        peers = [r for t in PEERS_FOR_BIG if (r := _row(s, t, "big", op)) is not None]
        if cpv and peers:
            best = min(peers, key=lambda r: r["wall_s"])
            add(
                f"big {op}: cpv at least as fast as the fastest peer",
                f"cpv {cpv['wall_s']:.2f} s vs {best['tool']} {best['wall_s']:.2f} s",
                cpv["wall_s"] <= best["wall_s"],
                f"{cpv['mb_s']:.0f} vs {best['mb_s']:.0f} MB/s",
            )
        else:
            add(f"big {op}: cpv at least as fast as the fastest peer", "not measured", None)

    ft = _row(s, "cpv", "finetune-10", "push")
    if ft:
        share = ft["uploaded_bytes"] / ft["dataset_bytes"]
        changed = result.get("data", {}).get("finetune_changed_share", {}).get("0.1")
        add(
            "finetune 10 %: cpv uploads <= 15 % of the checkpoint",
            f"{share * 100:.1f} % ({ft['uploaded_bytes'] / 1e6:.0f} MB)",
            share <= 0.15,
            f"tensors changed: {changed * 100:.1f} % of the bytes" if changed else "",
        )
    else:
        add("finetune 10 %: cpv uploads <= 15 % of the checkpoint", "not measured", None)

    cpv_small = _row(s, "cpv", "smallfiles", "push")
    for peer, op in (("dvc", "push"), ("dvc", "add+push"), ("awscli", "push"), ("boto3", "push")):
        r = _row(s, peer, "smallfiles", op)
        label = {
            "dvc": f"dvc {op}",
            "awscli": "aws s3 sync",
            "boto3": "boto3 (1 PUT/file, 16 threads)",
        }[peer]
        name = f"smallfiles push: cpv >= 10x faster than {label}"
        if cpv_small and r:
            ratio = r["wall_s"] / cpv_small["wall_s"]
            add(
                name,
                f"{ratio:.1f}x (cpv {cpv_small['wall_s']:.2f} s, {peer} {r['wall_s']:.2f} s)",
                ratio >= 10,
            )
        else:
            add(name, "not measured", None)
    restic_small = [r for t in RESTICS if (r := _row(s, t, "smallfiles", "push")) is not None]
    name = "smallfiles push: cpv >= 1.5x faster than restic (its faster compression setting)"
    if cpv_small and restic_small:
        best = min(restic_small, key=lambda r: r["wall_s"])
        ratio = best["wall_s"] / cpv_small["wall_s"]
        add(name, f"{ratio:.2f}x (cpv {cpv_small['wall_s']:.2f} s, {best['tool']} "
            f"{best['wall_s']:.2f} s)", ratio >= 1.5)
    else:
        add(name, "not measured", None)
    cpv_pull = _row(s, "cpv", "smallfiles", "pull")
    peer_pulls = [r for r in s if r["workload"] == "smallfiles" and r["op"] == "pull"
                  and r["tool"] != "cpv"]
    name = "smallfiles pull: cpv ahead of every peer"
    if cpv_pull and peer_pulls:
        best = min(peer_pulls, key=lambda r: r["wall_s"])
        add(name, f"cpv {cpv_pull['wall_s']:.2f} s vs {best['tool']} {best['wall_s']:.2f} s",
            cpv_pull["wall_s"] <= best["wall_s"])
    else:
        add(name, "not measured", None)
    if cpv_small:
        n = cpv_small["objects_total"]
        add(
            "smallfiles: the store holds at most a few dozen objects (<= 48)",
            f"{n:.0f} objects",
            n <= 48,
            f"for {cpv_small['files']} files",
        )
    else:
        add("smallfiles: the store holds at most a few dozen objects (<= 48)", "not measured", None)

    for w in ("noop-big", "noop-small"):
        r = _row(s, "cpv", w, "push")
        name = f"{w}: cpv push of an unchanged tree < 1 s"
        if r:
            add(
                name,
                f"{r['wall_s']:.2f} s (max {r['wall_max']:.2f} s)",
                r["wall_max"] < 1.0,
                f"uploaded {r['uploaded_bytes'] / 1e3:.0f} kB in {r['requests']:.0f} requests",
            )
        else:
            add(name, "not measured", None)

    for op in ("push", "pull"):
        rows = [r for r in s if r["tool"] == "cpv" and r["op"] == op]
        name = f"cpv {op}: peak RSS < 512 MiB"
        if rows:
            worst = max(rows, key=lambda r: r["rss_max"])
            add(
                name,
                f"{worst['rss_max'] / MiB:.0f} MiB (worst: {worst['workload']})",
                worst["rss_max"] < 512 * MiB,
            )
        else:
            add(name, "not measured", None)
    return out


def _fmt_bytes(n: float) -> str:
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    if n >= 1e6:
        return f"{n / 1e6:.1f} MB"
    if n >= 1e3:
        return f"{n / 1e3:.0f} kB"
    return f"{n:.0f} B"


def markdown(result: dict[str, Any], *, brief: bool = False) -> str:
    s = sorted(result["summary"], key=_sort_key)
    lines: list[str] = []
    if not brief:
        args = result["args"]
        data = result["data"]
        lines += [
            f"# cpv benchmark, {result['started']}",
            "",
            f"Checkpoint {data['checkpoint_bytes'] / MiB:.0f} MiB, "
            f"{data['small_files']} small files "
            f"({data['small_bytes'] / 1e6:.0f} MB), {args['reps']} repetition(s), server "
            f"{result['server']['software']}; run took {result['seconds'] / 60:.1f} min.",
            "",
            "Versions: " + "; ".join(f"{k}: {v}" for k, v in result["versions"].items()),
            "",
        ]
        if result.get("boto3_calibration"):
            c = result["boto3_calibration"]
            lines += [
                "boto3 TransferConfig calibration (push+pull of `big`, once each): "
                + ", ".join(
                    f"{t['part_mib']} MiB parts x {t['concurrency']} threads "
                    f"{t['push_pull_s']:.1f} s"
                    for t in c["trials"]
                )
                + f"; used {c['chosen']['part_mib']} MiB x {c['chosen']['concurrency']}.",
                "",
            ]
        if result.get("unavailable"):
            lines += [
                "Not run: " + "; ".join(f"{k} ({v})" for k, v in result["unavailable"].items()),
                "",
            ]
        if result.get("skipped_reps"):
            lines += [
                "Repetitions skipped after the time budget: "
                + ", ".join(f"{k} x{v}" for k, v in result["skipped_reps"].items()),
                "",
            ]
        lines += ["## Targets", "", "| Target | Measured | Pass | Detail |", "|---|---|---|---|"]
        for t in result["targets"]:
            mark = {True: "yes", False: "**no**", None: "n/a"}[t["pass"]]
            lines.append(f"| {t['target']} | {t['measured']} | {mark} | {t['detail']} |")
        lines += ["", "## Results (median of the repetitions; min-max in brackets)", ""]
    header = (
        "| Workload | Tool | Op | n | Wall s | MB/s | Uploaded | Downloaded | Requests | "
        "Objects (new) | Peak RSS MiB | CPU s | Server CPU s | Notes |"
    )
    lines += [header, "|" + "---|" * 14]
    for r in s:
        notes = []
        if "dedup_ratio" in r:
            notes.append(f"dedup {r['dedup_ratio'] * 100:.1f} %")
        if not r["ok"]:
            notes.append("**FAILED**")
        if r.get("io_stalled_reps"):
            notes.append(
                f"**I/O stall**: {r['io_stalled_reps']} of {r['n']} started at "
                f"{r['io_pressure_max']:.0f} % I/O pressure"
            )
        wall = f"{r['wall_s']:.2f}"
        if r["n"] > 1:
            wall += f" ({r['wall_min']:.2f}-{r['wall_max']:.2f})"
        lines.append(
            f"| {r['workload']} | {r['tool']} | {r['op']} | {r['n']} | {wall} | {r['mb_s']:.0f} | "
            f"{_fmt_bytes(r['uploaded_bytes'])} | {_fmt_bytes(r['downloaded_bytes'])} | "
            f"{r['requests']:.0f} | {r['objects_total']:.0f} ({r['objects_new']:+.0f}) | "
            f"{r['rss_max'] / MiB:.0f} | {r['cpu_s']:.1f} | {r['server_cpu_s']:.1f} | "
            f"{', '.join(notes)} |"
        )
    if brief:
        lines += ["", "Targets:"]
        for t in result["targets"]:
            mark = {True: "PASS", False: "MISS", None: "n/a "}[t["pass"]]
            lines.append(f"  [{mark}] {t['target']}: {t['measured']}")
    else:
        lines += [
            "",
            "Wall s: from spawning the tool to its exit (includes interpreter start-up). MB/s: the "
            "data set's size / wall time (for finetune: the whole checkpoint). Uploaded / "
            "Downloaded: body bytes the server received / sent (SeaweedFS metrics). Requests: S3 "
            "requests the server counted (HEAD counts as GET). Objects: under the tool's prefix "
            "after the op (new in this op). Peak RSS and CPU s: the client process tree "
            "(os.wait4). Server CPU s: SeaweedFS during the op. I/O stall: the repetitions "
            "that started while the disk's I/O pressure (/proc/pressure/io, some avg10) was "
            "above 50 %; their times say more about the shared disk than about the tool.",
        ]
        stalled = [r for r in result.get("records", []) if r.get("io_stalled")]
        if stalled:
            lines += ["", "## Steps started under I/O pressure (> 50 %)", ""] + [
                f"- {r['tool']} {r['workload']} {r['op']} rep {r['rep']}: "
                f"{r['io_pressure_start']:.0f} % at the start, {r['wall_s']:.2f} s"
                for r in stalled
            ]
        if result.get("failures"):
            lines += ["", "## Failures", ""] + [f"- {f}" for f in result["failures"]]
    return "\n".join(lines) + "\n"


def charts(result: dict[str, Any], out: Path) -> list[Path]:
    """``throughput.png`` and ``finetune_bytes.png``; [] if matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    s = result["summary"]
    tools = [t for t in TOOL_ORDER if any(r["tool"] == t for r in s)]
    made: list[Path] = []

    cats = [
        ("big", "push"),
        ("big", "pull"),
        ("finetune-10", "push"),
        ("smallfiles", "push"),
        ("smallfiles", "pull"),
    ]
    cats = [c for c in cats if any(r["workload"] == c[0] and r["op"] == c[1] for r in s)]
    if cats and tools:
        fig, ax = plt.subplots(figsize=(10, 4.8))
        width = 0.8 / len(tools)
        for i, tool in enumerate(tools):
            vals, errs_lo, errs_hi = [], [], []
            for w, op in cats:
                r = _row(s, tool, w, op)
                v = r["mb_s"] if r else 0.0
                vals.append(v)
                errs_lo.append(v - r["mb_s_min"] if r else 0.0)
                errs_hi.append(r["mb_s_max"] - v if r else 0.0)
            xs = [j + (i - (len(tools) - 1) / 2) * width for j in range(len(cats))]
            ax.bar(xs, vals, width, label=tool, yerr=[errs_lo, errs_hi], capsize=2)
        ax.set_xticks(range(len(cats)))
        ax.set_xticklabels([f"{w}\n{op}" for w, op in cats])
        ax.set_ylabel("MB/s (data set size / wall time; higher is better)")
        ax.set_title("Throughput against one local SeaweedFS (median, min-max bars)")
        ax.legend(ncol=len(tools), fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / "throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)

    fts = [
        w
        for w in ("finetune-10", "finetune-50", "finetune-100")
        if any(r["workload"] == w for r in s)
    ]
    if fts and tools:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        width = 0.8 / len(tools)
        size = result["data"]["checkpoint_bytes"]
        for i, tool in enumerate(tools):
            vals = []
            for w in fts:
                r = _row(s, tool, w, "push") or _row(s, tool, w, "add+push")
                vals.append((r["uploaded_bytes"] / size * 100) if r else 0.0)
            xs = [j + (i - (len(tools) - 1) / 2) * width for j in range(len(fts))]
            ax.bar(xs, vals, width, label=tool)
        ax.axhline(100, color="grey", linestyle="--", linewidth=1)
        ax.set_xticks(range(len(fts)))
        ax.set_xticklabels([f"{w.split('-')[1]} % of tensors changed" for w in fts])
        ax.set_ylabel("bytes uploaded, % of the checkpoint")
        ax.set_title("Second push after a fine-tune step (lower is better)")
        ax.legend(ncol=3, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        fig.tight_layout()
        path = out / "finetune_bytes.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        made.append(path)
    return made
