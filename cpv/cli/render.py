"""Everything the `cpv` command writes: human tables and lines, or one JSON document.

Rules (docs/cli.md): results go to stdout, messages/hints/progress go to stderr. With
``--json`` a command writes exactly one JSON document to stdout (an error too), and nothing
else to stdout. ``--quiet`` hides informational output of commands that *do* something
(push, pull, tag, checkout...); commands whose point is to show something (versions, status,
diff...) still show it.

This is the only module of cpv that prints (ruff T20 is relaxed for ``cpv/cli``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import click

if TYPE_CHECKING:
    from cpv.engine import ForgetReport
    from cpv.service import (
        DoctorCheck,
        GCOutcome,
        PullSummary,
        RevertResult,
        StatusReport,
        UploadResult,
        VerifyOutcome,
        VersionDiff,
    )
    from cpv.versioning import VersionInfo
    from cpv.versioning.aliases import Alias

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB
SHORT = 12


# -- formatting ------------------------------------------------------------------------------


def fmt_bytes(n: int | float | None) -> str:
    """``1536`` -> ``1.5 KiB``; binary units, one decimal."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover - loop always returns


def fmt_seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


def fmt_number(x: float | None) -> str:
    if x is None:
        return "-"
    if math.isfinite(x) and x == int(x) and abs(x) < 1e15:
        return str(int(x))
    return f"{x:.6g}"


def fmt_delta(x: float | None) -> str:
    if x is None:
        return ""
    return ("+" if x > 0 else "") + fmt_number(x)


def fmt_date(d: datetime) -> str:
    return d.astimezone().strftime("%Y-%m-%d %H:%M")


def short(sha: str | None) -> str:
    return sha[:SHORT] if sha else "-"


def author_name(author: str) -> str:
    """``Jane <jane@x>`` -> ``Jane``."""
    return author.split(" <", 1)[0] if " <" in author else author


def one_line(text: str, width: int = 40) -> str:
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first if len(first) <= width else first[: width - 1] + "…"


def fmt_metrics(metrics: Mapping[str, float], limit: int = 3) -> str:
    items = list(metrics.items())
    shown = " ".join(f"{k}={fmt_number(v)}" for k, v in items[:limit])
    return shown + (f" (+{len(items) - limit})" if len(items) > limit else "")


def table(rows: Sequence[Sequence[str]], *, header: Sequence[str]) -> list[str]:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    all_rows = [list(header), *[list(r) for r in rows]]
    widths = [max(len(r[i]) for r in all_rows) for i in range(len(header))]
    out = []
    for r in all_rows:
        cells = [c.ljust(widths[i]) if i < len(r) - 1 else c for i, c in enumerate(r)]
        out.append("  ".join(cells).rstrip())
    return out


# -- JSON ----------------------------------------------------------------------------------


def jsonable(obj: Any) -> Any:
    """Plain JSON data from results: dataclasses, mappings, paths, datetimes, versions."""
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if type(obj).__name__ == "Version":
            return str(obj)
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        items = sorted(obj) if isinstance(obj, set | frozenset) else obj
        return [jsonable(v) for v in items]
    return str(obj)


# -- the output sink -----------------------------------------------------------------------


class Output:
    """Where a command's result and messages go, according to --json / --quiet."""

    def __init__(
        self,
        *,
        json_mode: bool = False,
        quiet: bool = False,
        stdout: TextIO | None = None,
        stderr: TextIO | None = None,
    ) -> None:
        self.json_mode = json_mode
        self.quiet = quiet
        self._stdout = stdout
        self._stderr = stderr
        self.emitted = False

    @property
    def stdout(self) -> TextIO:
        return self._stdout or sys.stdout

    @property
    def stderr(self) -> TextIO:
        return self._stderr or sys.stderr

    def emit(
        self,
        data: object,
        human: Callable[[], Iterable[str]] | Iterable[str],
        *,
        essential: bool = False,
    ) -> None:
        """The command's result: ``data`` as JSON, or the ``human`` lines on stdout.

        ``essential`` results (what a query command is for) are shown even with --quiet.
        """
        self.emitted = True
        if self.json_mode:
            self.json(data)
            return
        if self.quiet and not essential:
            return
        lines = iter(human() if callable(human) else human)
        out = self.stdout
        # A thousand lines per write: listing 10^6 files one print() each costs seconds.
        while batch := list(islice(lines, 1000)):
            out.write("\n".join(batch) + "\n")

    def json(self, data: object) -> None:
        print(json.dumps(jsonable(data), indent=2, ensure_ascii=False), file=self.stdout)

    def info(self, message: str) -> None:
        """A message for people (stderr); hidden with --quiet and --json."""
        if not self.quiet and not self.json_mode:
            print(message, file=self.stderr)

    def error(
        self, *, kind: str, message: str, hint: str, exit_code: int, result: object = None
    ) -> None:
        """One error: ``cpv: error: ...`` + ``  hint: ...`` on stderr, or a JSON document."""
        if self.json_mode:
            doc: dict[str, object] = {"error": {"type": kind, "message": message, "hint": hint,
                                                "exit_code": exit_code}}
            if result is not None:
                doc["result"] = result
            self.json(doc)
            return
        print(f"cpv: error: {message}", file=self.stderr)
        if hint:
            print(f"  hint: {hint}", file=self.stderr)


# -- per-command renderings ------------------------------------------------------------------


def upload_dict(r: UploadResult) -> dict[str, object]:
    reused = 1.0 - (r.new_bytes / r.total_bytes) if r.total_bytes else 1.0
    return {
        "kind": r.kind, "path": r.path, "snapshot_id": r.snapshot_id, "commit": r.commit,
        "files": r.files,
        "total_bytes": r.total_bytes, "uploaded_bytes": r.uploaded_bytes,
        "new_bytes": r.new_bytes, "reused_ratio": round(reused, 4),
        "chunks_new": r.chunks_new, "chunks_reused": r.chunks_reused,
        "seconds": round(r.seconds, 3), "changed": r.changed, "dry_run": r.dry_run,
        "next_tag": r.next_tag, "pushed_to": r.pushed_to, "skipped_links": list(r.skipped_links),
        "left_out": list(r.left_out),
    }


def upload_lines(r: UploadResult) -> list[str]:
    skipped = ([f"       left out {len(r.skipped_links)} symlink(s) pointing outside the folder: "
                + ", ".join(r.skipped_links[:5]) + (" ..." if len(r.skipped_links) > 5 else "")]
               if r.skipped_links else [])
    left = ([f"       left out {len(r.left_out)} file(s) of the previous version "
             "(--exclude/--include); this version does not hold them: "
             + ", ".join(r.left_out[:5]) + (" ..." if len(r.left_out) > 5 else "")]
            if r.left_out else [])
    return _upload_summary(r) + skipped + left


def _upload_summary(r: UploadResult) -> list[str]:
    reused = 1.0 - (r.new_bytes / r.total_bytes) if r.total_bytes else 1.0
    label = r.kind if r.path in ("", r.kind) else f"{r.path}{'/' if r.is_dir else ''}"
    head = f"{label:<5}  {r.files} file{'s' if r.files != 1 else ''}, {fmt_bytes(r.total_bytes)}"
    if r.dry_run:
        return [f"{head}: would upload {fmt_bytes(r.new_bytes)} of new data "
                f"({reused:.1%} already in the store, {r.chunks_new} new chunk(s)); "
                f"next tag {r.next_tag}"]
    if not r.changed:
        return [f"{head}: unchanged since the last push, uploaded {fmt_bytes(r.uploaded_bytes)} "
                f"(snapshot {short(r.snapshot_id)})"]
    return [f"{head}: uploaded {fmt_bytes(r.uploaded_bytes)} ({reused:.1%} reused) "
            f"in {fmt_seconds(r.seconds)}; snapshot {short(r.snapshot_id)}, "
            f"commit {short(r.commit)[:7]}"]


def pull_dict(p: PullSummary) -> dict[str, object]:
    return jsonable(p)  # type: ignore[no-any-return]


def pull_lines(p: PullSummary) -> list[str]:
    return [
        f"{p.kind:<5}  {p.ref}: {p.files} file{'s' if p.files != 1 else ''}, "
        f"{fmt_bytes(p.total_bytes)} -> {p.path}",
        f"       {p.files_written} written, {p.files_unchanged} already there, "
        f"{p.files_removed} removed; downloaded "
        f"{fmt_bytes(p.downloaded_bytes)}, {fmt_bytes(p.local_bytes)} reused from local files, "
        f"{fmt_seconds(p.seconds)}",
    ]


def revert_lines(results: Sequence[RevertResult], rev: str, *, dry_run: bool) -> list[str]:
    if dry_run:
        kinds = ", ".join(f"{r.kinds[0]} ({r.tag})" for r in results)
        return [f"would check out {rev}: {kinds}"]
    lines = []
    for r in results:
        commit = f", commit {short(r.commit)[:7]}" if r.commit else " (manifest already there)"
        lines.append(f"{r.kinds[0]:<5}  {r.tag}: {r.files_written} file(s) written, "
                     f"{fmt_bytes(r.downloaded_bytes)} downloaded{commit}")
    return lines


def version_dict(v: VersionInfo, aliases: Sequence[str] = ()) -> dict[str, object]:
    lineage = next((m.lineage for m in v.manifests if m.lineage is not None), None)
    return {
        "tag": v.tag, "kind": v.kind, "version": str(v.version), "commit": v.commit,
        "date": v.date.isoformat(), "author": v.author, "message": v.message,
        "metrics": dict(v.metrics), "total_size": v.total_size, "file_count": v.file_count,
        "snapshot_ids": [m.snapshot_id for m in v.manifests], "problem": v.problem,
        "aliases": list(aliases), "lineage": lineage.to_dict() if lineage else None,
        "params": {k: p for m in v.manifests for k, p in m.params.items()},
    }


def versions_lines(versions: Sequence[VersionInfo], kind: str,
                   aliases: Mapping[str, Sequence[str]] | None = None,
                   data_tags: Mapping[str, str] | None = None) -> list[str]:
    """The versions table; a model version's DATA column names the data it was pushed with
    (its data tag, else ``@`` and the snapshot), aliases follow the tag in brackets."""
    if not versions:
        return [f"no {kind} versions yet (cpv push --tag creates one)"]
    aliases, data_tags = aliases or {}, data_tags or {}

    def data(v: VersionInfo) -> str:
        lineage = next((m.lineage for m in v.manifests if m.lineage is not None), None)
        if lineage is None:
            return "-"
        return (data_tags.get(lineage.data_snapshot_id) or lineage.data_tag
                or "@" + lineage.data_snapshot_id[:8])

    rows = [
        [v.tag + (f" ({', '.join(aliases[v.tag])})" if aliases.get(v.tag) else ""),
         fmt_date(v.date), author_name(v.author), one_line(v.message, 36),
         fmt_bytes(v.total_size), str(v.file_count), *([data(v)] if kind == "model" else []),
         f"! {v.problem}" if v.problem else fmt_metrics(v.metrics)]
        for v in versions
    ]
    header = ["TAG", "DATE", "AUTHOR", "MESSAGE", "SIZE", "FILES",
              *(["DATA"] if kind == "model" else []), "METRICS"]
    return table(rows, header=header)


def alias_dict(a: Alias) -> dict[str, object]:
    return {"name": a.name, "target": a.target,
            "moves": [{"target": m.target, "author": m.author, "at": m.at.isoformat(),
                       "message": m.message} for m in a.moves]}


def aliases_lines(found: Sequence[Alias]) -> list[str]:
    if not found:
        return ["no aliases yet (cpv alias production v0.3 makes one)"]
    rows = [[a.name, a.target or "-", fmt_date(a.last.at), author_name(a.last.author),
             one_line(a.last.message, 40)] for a in found]
    return table(rows, header=["ALIAS", "VERSION", "MOVED", "BY", "WHY"])


def lineage_lines(found: Mapping[str, Any]) -> list[str]:
    params = found["params"]
    shown = " ".join(f"{k}={v}" for k, v in sorted(params.items())) if params else "none"
    if not found["recorded"]:
        return [f"{found['tag']}: no lineage recorded (pushed before cpv recorded it, or "
                "with no data version in the workspace)", f"params  {shown}"]
    tags = ", ".join(found["data_tags"]) or "untagged"
    return [f"{found['tag']}: trained on {found['data_path']} {tags} "
            f"(snapshot {short(found['data_snapshot_id'])})", f"params  {shown}"]


def metrics_lines(versions: Sequence[VersionInfo]) -> list[str]:
    names = sorted({k for v in versions for k in v.metrics})
    if not names:
        return ["no metrics recorded (cpv push --metric loss=0.25, or --metrics FILE.json)"]
    rows = [[v.tag, *(fmt_number(v.metrics.get(n)) for n in names)] for v in versions]
    return table(rows, header=["TAG", *names])


def status_dict(s: StatusReport) -> dict[str, object]:
    return {
        "root": str(s.root), "branch": s.branch, "head": s.head, "remote": s.remote,
        "store_url": s.store_url, "clean": s.clean,
        "kinds": {k.kind: {"path": k.path, "recorded": k.recorded, "version": k.version,
                           "snapshot_id": k.snapshot_id, "files": k.files,
                           "total_bytes": k.total_bytes, "changed": list(k.changed),
                           "behind": k.behind, "hidden": list(k.hidden)}
                  for k in s.kinds if k.path == k.kind},
        # Every tracked path (model/, data/ and any other a push started tracking).
        "paths": [{"path": k.path, "kind": k.kind, "recorded": k.recorded,
                   "version": k.version, "snapshot_id": k.snapshot_id, "files": k.files,
                   "total_bytes": k.total_bytes, "changed": list(k.changed),
                   "behind": k.behind, "hidden": list(k.hidden), "is_dir": k.is_dir}
                  for k in s.kinds],
        "manifest_changes": [jsonable(c) for c in s.manifest_changes],
        "unpublished_commits": s.unpublished_commits,
        "unpublished_tags": list(s.unpublished_tags), "remote_problem": s.remote_problem,
    }


def status_lines(s: StatusReport) -> list[str]:
    where = f"on branch {s.branch}" if s.branch else "HEAD detached"
    lines = [f"workspace {s.root} ({where}, HEAD {short(s.head)[:7]})",
             f"store     {s.store_url}",
             f"remote    {s.remote or 'none'}", ""]
    for k in s.kinds:
        if not k.recorded:
            state = "no version yet"
        else:
            tag = k.version or "not tagged"
            state = (f"{tag}, {k.files} file(s), {fmt_bytes(k.total_bytes)}, "
                     f"snapshot {short(k.snapshot_id)}")
        shown = f"{k.path}/" if k.is_dir else k.path
        lines.append(f"{k.kind:<5}  {state}" if k.path == k.kind
                     else f"{shown} ({k.kind})  {state}")
        if k.behind:
            lines.append(f"       {shown} is not at this version here (a fresh clone, a "
                         "git pull, or an older version pulled): 'cpv pull' brings it there")
        if k.changed:
            lines.append(f"       {len(k.changed)} file(s) changed here since the last push, "
                         "pull or checkout:")
            lines.extend(f"         {p}" for p in k.changed[:20])
            if len(k.changed) > 20:
                lines.append(f"         ... and {len(k.changed) - 20} more")
        if k.hidden and not k.is_dir:
            lines.append(f"       .cpvignore hides this tracked file: add '!{k.path}' to "
                         ".cpvignore, or the next push of it records nothing")
        elif k.hidden:
            lines.append(f"       .cpvignore hides {len(k.hidden)} file(s) of this version "
                         f"({', '.join(k.hidden[:3])}{' ...' if len(k.hidden) > 3 else ''}): "
                         f"add '!{k.hidden[0]}' to .cpvignore to keep them, or push with "
                         "--exclude to drop them")
    if s.unpublished_commits or s.unpublished_tags:
        lines.append("")
        tags = f" and tag(s) {', '.join(s.unpublished_tags)}" if s.unpublished_tags else ""
        lines.append(f"{s.unpublished_commits} commit(s){tags} not on the remote yet: the next "
                     "cpv command publishes them (or 'git push --follow-tags')")
    elif s.remote_problem:
        lines.append("")
        lines.append(f"remote not reachable: {s.remote_problem}")
    if s.manifest_changes:
        lines.append("")
        lines.append("manifests not committed:")
        lines.extend(f"  {c.state:<8} {c.path}" for c in s.manifest_changes)
    lines.append("")
    if s.clean:
        lines.append("nothing to push: the files are the current version")
    else:
        lines.append("record the changes with 'cpv push', or restore the current version with "
                     "'cpv pull --force'")
    return lines


LS_SIZE_WIDTH = 10
"""Width of the size column of ``cpv ls`` ("1023.9 KiB"): fixed, since lines are printed as
the listing streams in, before the largest size is known."""


def ls_lines(files: Iterable[tuple[str, int]]) -> Iterator[str]:
    """``cpv ls``'s lines, one per file as ``files`` streams, then the count and total."""
    count = total = 0
    shown: dict[int, str] = {}  # sizes repeat: each formatted once
    for path, size in files:
        count += 1
        total += size
        text = shown.get(size)
        if text is None:
            text = shown[size] = f"{fmt_bytes(size):>{LS_SIZE_WIDTH}}"
        yield f"{text}  {path}"
    yield f"{count} file(s), {fmt_bytes(total)}"


def diff_dict(d: VersionDiff) -> dict[str, object]:
    return jsonable(d)  # type: ignore[no-any-return]


def diff_lines(d: VersionDiff) -> list[str]:
    lines = [f"{d.kind} {d.ref_a} -> {d.ref_b}: {fmt_bytes(d.size_a)} -> {fmt_bytes(d.size_b)}"
             + (", same snapshot" if d.snapshot_a == d.snapshot_b else "")]
    marks = {"added": "A", "removed": "D", "changed": "M"}
    for f in d.files:
        sizes = (fmt_bytes(f.size_b) if f.state == "added" else fmt_bytes(f.size_a)
                 if f.state == "removed" else f"{fmt_bytes(f.size_a)} -> {fmt_bytes(f.size_b)}")
        lines.append(f"  {marks[f.state]} {f.path}  ({sizes})")
    lines.append(f"  {len(d.files)} file(s) differ, {d.unchanged} unchanged")
    if d.metrics:
        lines.append("metrics:")
        rows = [[m.name, fmt_number(m.a), fmt_number(m.b), fmt_delta(m.delta)]
                for m in d.metrics]
        lines.extend("  " + r for r in table(rows, header=["NAME", d.ref_a, d.ref_b, "DELTA"]))
    return lines


def verify_dict(o: VerifyOutcome) -> dict[str, object]:
    r = o.report
    return {
        "ok": o.ok, "deep": r.deep, "summary": r.summary(),
        "snapshots_checked": r.snapshots_checked, "chunks_checked": r.chunks_checked,
        "bytes_read": r.bytes_read, "seconds": round(r.seconds, 3), "checked": list(o.checked),
        "missing_packs": sorted(r.missing_packs), "missing_chunks": sorted(r.missing_chunks),
        "damaged_chunks": sorted(r.damaged_chunks),
        "unreadable_snapshots": dict(r.unreadable_snapshots),
        "damaged": [jsonable(d) for d in o.damaged],
    }


def verify_lines(o: VerifyOutcome) -> list[str]:
    r = o.report
    mode = "deep: every chunk re-hashed" if r.deep else "shallow: presence and sizes"
    lines = [f"{r.summary()} ({mode}, {fmt_seconds(r.seconds)})"]
    if o.checked:
        lines.append("versions checked: " + ", ".join(o.checked))
    for d in o.damaged:
        if d.elsewhere:
            lines.append(f"  {d.label}{f' ({d.kind})' if d.kind else ''}: lives in another "
                         f"store, {d.elsewhere} (not checked here)")
            continue
        what = "snapshot unreadable" if d.unreadable else f"{len(d.files)} file(s) damaged"
        lines.append(f"  DAMAGED {d.label}{f' ({d.kind})' if d.kind else ''}: {what}")
        lines.extend(f"    {p}" for p in d.files[:20])
        if len(d.files) > 20:
            lines.append(f"    ... and {len(d.files) - 20} more")
    return lines


def gc_dict(o: GCOutcome) -> dict[str, object]:
    return {"live_versions": list(o.live_versions), "live_snapshots": o.live_snapshots,
            "summary": o.report.summary(), "report": jsonable(o.report)}


def gc_lines(o: GCOutcome) -> list[str]:
    r = o.report
    freed = r.would_free_bytes if r.dry_run else r.bytes_freed
    lines = [
        f"live: {o.live_snapshots} snapshot(s) of {len(o.live_versions)} version(s)",
        f"{'would delete' if r.dry_run else 'deleted'} {len(r.snapshots_deleted)} snapshot(s) "
        f"of {r.snapshots_total}; condemned {len(r.packs_condemned)} pack(s) of "
        f"{r.packs_total} ({len(r.packs_repacked)} repacked); "
        f"{'would free' if r.dry_run else 'freed'} {fmt_bytes(freed)} "
        f"in {fmt_seconds(r.seconds)}",
    ]
    if r.sweep_deferred:
        lines.append(f"{len(r.sweep_deferred)} batch(es) of condemned packs wait for the grace "
                     "period or running pushes; a later 'cpv gc' deletes them")
    lines.extend(f"warning: {w}" for w in r.warnings)
    return lines


def forget_dict(r: ForgetReport) -> dict[str, object]:
    def version(v: Any) -> dict[str, object]:
        return {"snapshot_id": v.snapshot_id, "kind": v.kind, "name": v.name,
                "tags": list(v.tags), "message": v.message, "created_at": v.created_at,
                "metrics": dict(v.metrics)}

    return {"dry_run": r.dry_run, "summary": r.summary(),
            "forgotten": [{**version(v), "reason": why} for v, why in r.forgotten],
            "kept": [{**version(v), "reasons": list(why)} for v, why in r.kept],
            "requests": r.requests, "seconds": round(r.seconds, 3)}


def forget_lines(r: ForgetReport) -> list[str]:
    def label(v: Any) -> str:
        name = ", ".join(v.tags) if v.tags else f"snapshot {short(v.snapshot_id)}"
        return f"{v.kind or '?':<5}  {name}  {one_line(v.message, 30)}".rstrip()

    verb = "would forget" if r.dry_run else "forget"
    lines = [f"{verb}  {label(v)}: {why}" for v, why in r.forgotten]
    lines += [f"keep    {label(v)}: {'; '.join(why)}" for v, why in r.kept]
    lines.append(r.summary() + ("" if r.dry_run or not r.forgotten else
                                "; cpv gc frees their data after its grace period"))
    return lines


def doctor_lines(checks: Sequence[DoctorCheck]) -> list[str]:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{'ok' if c.ok else 'FAIL':<4}  {c.name:<{width}}  {c.detail}")
        if not c.ok and c.fix:
            lines.append(f"{'':<4}  {'':<{width}}  fix: {c.fix}")
    return lines


def config_lines(view: Mapping[str, Any]) -> list[str]:
    lines: list[str] = []
    for section, value in view.items():
        if section == "sources":
            continue
        if isinstance(value, Mapping):
            lines.extend(f"{section}.{k} = {_show(v)}" for k, v in value.items())
        else:
            lines.append(f"{section} = {_show(value)}")
    sources = view.get("sources") or []
    lines.append("# from: " + (", ".join(sources) if sources else "defaults only"))
    return lines


def _show(value: object) -> str:
    return "(unset)" if value is None else str(value)


def echo_err(message: str) -> None:
    """A line on stderr for interactive flows (the wizard)."""
    click.echo(message, err=True)
