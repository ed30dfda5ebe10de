"""The `cpv` commands. Each one parses, calls :mod:`cpv.service`, and renders (STYLE Rule 10).

No command catches a library error: they travel to the one boundary in :mod:`cpv.cli.main`,
which maps them to a message, a hint and an exit code. Commands that must report a result
*and* fail (``verify`` finding damage, ``doctor`` finding problems) store the result in
:attr:`State.result` before raising, so ``--json`` still prints one document.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import click

from cpv.cli import errors as _exit_table
from cpv.cli import render
from cpv.cli.progress import TqdmProgress
from cpv.cli.render import Output

if TYPE_CHECKING:
    from cpv.config import CPVConfig
    from cpv.service import WorkspaceService
    from cpv.workspace import Kind, Track

F = TypeVar("F", bound=Callable[..., Any])

AUTO_TAG = "\0auto"  # --tag given without a value
TRACKED_NAMES = ("model", "data")

#: exit code -> meaning, read from the one table's docstring (cpv/cli/errors.py).
EXIT_MEANINGS: dict[int, str] = {
    int(m.group(1)): m.group(2).strip()
    for m in re.finditer(r"^(\d+)\s{2,}(.+)$", _exit_table.__doc__ or "", re.MULTILINE)
}


class _LowerLevelFormatter(logging.Formatter):
    """``cpv: warning: ...`` like the error lines, not ``WARNING``."""

    def format(self, record: logging.LogRecord) -> str:
        record.levelname = record.levelname.lower()
        return super().format(record)


# -- state shared by all commands --------------------------------------------------------------


@dataclass
class State:
    """Global options and the output sink of one `cpv` run (click's ``ctx.obj``)."""

    json_mode: bool = False
    quiet: bool = False
    verbose: int = 0
    debug: bool = False
    result: object = None
    out: Output = field(default_factory=Output)
    _handler: logging.Handler | None = None

    def apply(self) -> None:
        """Push the flags into the output sink and the ``cpv`` logger (stderr)."""
        self.out.json_mode = self.json_mode
        self.out.quiet = self.quiet
        logger = logging.getLogger("cpv")
        if self._handler is None:
            self._handler = logging.StreamHandler(sys.stderr)
            self._handler.setFormatter(_LowerLevelFormatter("cpv: %(levelname)s: %(message)s"))
            logger.addHandler(self._handler)
            logger.propagate = False
        if self.quiet:
            level = logging.ERROR
        elif self.verbose >= 2:
            level = logging.DEBUG
        elif self.verbose == 1:
            level = logging.INFO
        else:
            level = logging.WARNING
        logger.setLevel(level)

    def root(self) -> Path:
        """The workspace the command runs in (found upwards from the current folder)."""
        from cpv.service import find_workspace

        return find_workspace(Path.cwd())

    def config(self, root: Path | None) -> CPVConfig:
        from cpv.config import CPVConfig

        return CPVConfig.load(workspace=root)

    def service(self, *, progress: bool = False) -> WorkspaceService:
        """The workspace service of this command: config, Git and store opened once."""
        from cpv.service import WorkspaceService

        if not progress:
            return WorkspaceService.open(Path.cwd())
        bars = self.progress()
        bars.announce(f"cpv {click.get_current_context().info_name}: starting...")
        return WorkspaceService.open(Path.cwd(), progress=bars)

    def progress(self) -> TqdmProgress:
        enabled = not self.quiet and not self.json_mode and sys.stderr.isatty()
        return TqdmProgress(enabled=enabled, file=sys.stderr)


def _state(ctx: click.Context) -> State:
    state = ctx.find_object(State)
    if state is None:  # pragma: no cover - main() always passes one
        state = ctx.ensure_object(State)
    return state


def _set_json(ctx: click.Context, _p: click.Parameter, value: bool) -> None:
    if value:
        _state(ctx).json_mode = True
        _state(ctx).apply()


def _set_quiet(ctx: click.Context, _p: click.Parameter, value: bool) -> None:
    if value:
        _state(ctx).quiet = True
        _state(ctx).apply()


def _set_verbose(ctx: click.Context, _p: click.Parameter, value: int) -> None:
    if value:
        _state(ctx).verbose += value
        _state(ctx).apply()


def _decorate(func: F, *decorators: Callable[[F], F]) -> F:
    """Apply decorators as if stacked in this order above ``func``."""
    for decorator in reversed(decorators):
        func = decorator(func)
    return func


def common(func: F) -> F:
    """``--json``, ``-q`` and ``-v`` after the command name too (``cpv versions --json``)."""
    return _decorate(
        func,
        click.option("--json", "json_mode", is_flag=True, expose_value=False,
                     callback=_set_json, is_eager=True,
                     help="Print one JSON document on stdout (errors too)."),
        click.option("-q", "--quiet", is_flag=True, expose_value=False, callback=_set_quiet,
                     is_eager=True, help="Only errors (and the data a query shows)."),
        click.option("-v", "--verbose", count=True, expose_value=False,
                     callback=_set_verbose, is_eager=True,
                     help="More log lines on stderr (-vv: debug)."),
    )


def epilog(examples: Sequence[tuple[str, str]], codes: Sequence[int] = (0, 1, 2, 10)) -> str:
    """The Examples and Exit codes sections of a command's --help (kept as written)."""
    lines = ["\b", "Examples:"]
    for cmd, what in examples:
        if what:
            lines.append(f"  # {what}")
        lines.append(f"  {cmd}")
    lines += ["", "\b", "Exit codes:"]
    lines += [f"  {code:<3}  {EXIT_MEANINGS.get(code, '')}" for code in codes]
    lines += ["", "Every command: cpv --help; one command: cpv COMMAND --help."]
    return "\n".join(lines)


# -- small parsers -------------------------------------------------------------------------------


def parse_metric(
    _ctx: click.Context, _p: click.Parameter, values: Sequence[str]
) -> dict[str, float]:
    """``--metric loss=0.25`` (repeatable) -> ``{"loss": 0.25}``; bad syntax is a usage error."""
    out: dict[str, float] = {}
    for item, name, raw in _name_values(values, "--metric", "loss=0.25"):
        try:
            out[name] = float(raw)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {raw!r} is not a number",
                                     param_hint="--metric") from None
    return out


def _name_values(
    values: Sequence[str], option: str, example: str
) -> Iterator[tuple[str, str, str]]:
    """``(item, name, value)`` of each ``NAME=VALUE`` given to ``option``; bad syntax is a
    usage error naming the option."""
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{item!r} is not NAME=VALUE (e.g. {example})",
                                     param_hint=option)
        yield item, name, raw


def parse_param(
    _ctx: click.Context, _p: click.Parameter, values: Sequence[str]
) -> dict[str, str]:
    """``--param lr=3e-4`` (repeatable) -> ``{"lr": "3e-4"}``: values stay the strings typed
    (``3e-4`` and ``adamw`` alike); bad syntax is a usage error."""
    return {name: raw for _, name, raw in _name_values(values, "--param", "lr=3e-4")}


def _param_option(func: F) -> F:
    return click.option(
        "--param", "params", multiple=True, metavar="NAME=VALUE", callback=parse_param,
        help="A hyper-parameter to record with the model version (repeatable), "
             "e.g. --param lr=3e-4; kept as typed.")(func)


def _filter_options(verb: str) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        return _decorate(
            func,
            click.option("--exclude", "exclude", multiple=True, metavar="PATTERN",
                         help=f"Leave files matching PATTERN out of the {verb} (gitignore "
                              "syntax, workspace paths, repeatable)."),
            click.option("--include", "include", multiple=True, metavar="PATTERN",
                         help=f"{verb.capitalize()} only files matching PATTERN "
                              "(repeatable); --exclude wins."),
        )

    return decorator


def _relative_to_root(raw: str, root: Path) -> str:
    """A path the user typed as a workspace-relative path.

    Like git, an existing path is relative to the current folder (``cpv push .`` inside
    ``model/``); a name that does not exist there is taken as relative to the workspace
    (``cpv push model`` from anywhere in it).
    """
    candidate = Path(raw)
    full = candidate if candidate.is_absolute() else Path.cwd() / candidate
    if not candidate.is_absolute() and not full.exists():
        return Path(os.path.normpath(raw)).as_posix()
    try:
        rel = Path(os.path.normpath(full)).relative_to(root)
    except ValueError:
        return raw
    return rel.as_posix() if rel.parts else "."


def _push_targets(
    paths: Sequence[str], root: Path, service: WorkspaceService, kind: Kind | None,
    name: str | None = None,
) -> tuple[list[Kind], list[Track]]:
    """``.`` means model/ and data/; any other folder or file of the workspace is a tracked
    path (the first push of a new one starts tracking it, as ``kind``, on the line ``name``)."""
    if name is not None and len(paths) != 1:
        raise click.UsageError("--name names the line of one PATH: push that path alone, "
                               "e.g. cpv push runs/exp1/model.safetensors --name exp1")
    kinds: list[Kind] = []
    tracks: list[Track] = []
    for raw in paths:
        rel = _relative_to_root(raw, root).rstrip("/") or "/"
        if rel == "." and kind is None and name is None:
            kinds += [k for k in ("model", "data") if k not in kinds]
            continue
        track = service.track_for(rel, kind, name=name)
        if track.is_default and kind is None:
            kinds += [track.kind] if track.kind not in kinds else []
        elif track not in tracks:
            tracks.append(track)
    return kinds, tracks


def _kind_flag(model: bool, data: bool) -> Kind | None:
    if model and data:
        raise click.UsageError("--model and --data exclude each other")
    return "model" if model else "data" if data else None


def _kind_options(model_help: str, data_help: str) -> Callable[[F], F]:
    def decorator(func: F) -> F:
        return _decorate(
            func,
            click.option("--model", "model_flag", is_flag=True, help=model_help),
            click.option("--data", "data_flag", is_flag=True, help=data_help),
        )

    return decorator


def _metrics_options(func: F) -> F:
    return _decorate(
        func,
        click.option("--metrics", "metrics_file", type=click.Path(dir_okay=False),
                     help="A JSON file holding one object of metric name -> number."),
        click.option("--metric", "metric_pairs", multiple=True, metavar="NAME=VALUE",
                     callback=parse_metric,
                     help="A metric to record (repeatable), e.g. --metric loss=0.25."),
    )


def _load_metrics(metrics_file: str | None, pairs: dict[str, float]) -> dict[str, float] | None:
    if metrics_file is None and not pairs:
        return None
    from cpv.service import load_metric_inputs

    return load_metric_inputs(metrics_file, pairs)


# -- init --------------------------------------------------------------------------------------


@click.command(epilog=epilog([
    ("cpv init", "here, with the embedded local store (.cpv/store)"),
    ("cpv init my-model --team AI-Convo --model whisper", "in a new folder"),
    ("cpv init --store s3://ml-checkpoints/whisper", "bytes in S3 (see cpv config wizard)"),
    ("cpv init --store /mnt/shared/cpv --remote git@bitbucket.org:team/whisper.git", ""),
]))
@click.argument("directory", required=False, type=click.Path(file_okay=False))
@click.option("--store", metavar="URL",
              help="s3://bucket/prefix, file:///abs/path or a folder (default: .cpv/store).")
@click.option("--team", metavar="TEAM", help="Team name, e.g. AI-Convo.")
@click.option("--model", "model_name", metavar="NAME", help="Model name, e.g. faster-whisper.")
@click.option("--remote", metavar="GIT_URL", help="Git remote to push history to (origin).")
@click.option("--data-from", type=click.Path(exists=True, file_okay=False),
              help="Bring an existing data folder (train/validation/test) into data/.")
@click.option("--switch-store", is_flag=True,
              help="With --store: point a workspace that has versions at another store.")
@click.option("--dry-run", is_flag=True, help="Show what would be created.")
@common
@click.pass_obj
def init(
    state: State,
    directory: str | None,
    store: str | None,
    team: str | None,
    model_name: str | None,
    remote: str | None,
    data_from: str | None,
    switch_store: bool,
    dry_run: bool,
) -> None:
    """Create a workspace: Git repository, store, model/ and data/.

    Works in a new folder or an existing Git repository, and is safe to re-run
    (it only adds what is missing). Without --store the bytes go to the embedded
    local store in .cpv/store: a first run needs no cloud account.
    """
    from cpv.service import init_workspace

    root = Path(directory or ".").expanduser().absolute()
    enclosing = _try_root(root)
    if enclosing is not None and enclosing != root:
        raise click.UsageError(
            f"{root} is inside the cpv workspace {enclosing}; a workspace cannot hold another "
            "(run cpv init in a folder outside it)")
    if store is not None and "://" not in store:
        store = str(Path(store).expanduser().absolute())
    cfg = state.config(root if (root / ".cpv").is_dir() else None)
    changes: dict[str, Any] = {}
    if team is not None:
        changes["team"] = team
    if model_name is not None:
        changes["model"] = model_name
    if changes:
        cfg = cfg.replace(**changes)
    result = init_workspace(root, config=cfg, store_url=store, remote_url=remote,
                            data_path=data_from, dry_run=dry_run, switch_store=switch_store)

    def human() -> list[str]:
        verb = ("Would initialize" if dry_run else "Initialized") if result.created else (
            "Would reinitialize existing" if dry_run else "Reinitialized existing")
        lines = [f"{verb} cpv workspace in {result.workspace}",
                 f"  store:  {result.store_url}",
                 f"  remote: {result.remote or 'none (add one with --remote GIT_URL)'}"]
        if not dry_run:
            lines += ["Next: save checkpoint files under model/ (data under data/train, ...), then",
                      '  cpv push -m "first version" --tag']
        return lines

    state.out.emit({"workspace": str(result.workspace), "store_url": result.store_url,
                    "created": result.created, "remote": result.remote, "dry_run": dry_run},
                   human)


# -- push --------------------------------------------------------------------------------------


@click.command(epilog=epilog([
    ("cpv push", "model/ and data/ (those holding files)"),
    ('cpv push model -m "epoch 12" --metric loss=0.231 --tag', "push and tag the next version"),
    ("cpv push --tag v1.0", "push both and tag v1.0 + data-v1.0"),
    ("cpv push data --metrics eval.json", "metrics from a JSON file"),
    ("cpv push --dry-run", "show what would be uploaded"),
    ("cpv push model --exclude 'model/optimizer*' --param lr=3e-4",
     "leave optimizer states out; record a hyper-parameter"),
    ("cpv push outputs/checkpoint-500 --tag", "track any folder: tag outputs-checkpoint-500@v0.1"),
    ("cpv push runs/eval-set --kind data", "a data set outside data/"),
    ("cpv push runs/exp1/model.safetensors --name exp1 --tag", "one file, on the line exp1@v0.1"),
], codes=(0, 1, 2, 3, 10, 11, 12)))
@click.argument("paths", nargs=-1, metavar="[PATH]...")
@click.option("-m", "--message", default="", help="What changed (stored in the version).")
@click.option("--tag", "tag", is_flag=False, flag_value=AUTO_TAG, default=None,
              metavar="[VERSION]",
              help="Tag after pushing: the next version, or VERSION (e.g. v1.0).")
@_metrics_options
@click.option("--force", is_flag=True,
              help="Re-hash every file (ignore the stat cache) and move an existing tag.")
@click.option("--notify", is_flag=True, help="Post to notify.webhook_url (Slack/Teams).")
@click.option("--symlinks", type=click.Choice(["keep", "skip", "follow"]), default="keep",
              show_default=True,
              help="Symlinks that point outside the folder: refuse the push (keep), leave "
                   "them out (skip), or push what they point to (follow).")
@click.option("--dry-run", is_flag=True, help="Show what would be uploaded; change nothing.")
@_param_option
@_filter_options("version")
@click.option("--kind", "kind", type=click.Choice(["model", "data"]), default=None,
              help="What a newly tracked PATH holds (default: model).")
@click.option("--name", "line_name", default=None, metavar="NAME",
              help="The version line of a newly tracked PATH (tags NAME@v0.1; default: the "
                   "path in lower case with '/' as '-').")
@common
@click.pass_obj
def push(
    state: State,
    paths: tuple[str, ...],
    message: str,
    tag: str | None,
    metrics_file: str | None,
    metric_pairs: dict[str, float],
    force: bool,
    notify: bool,
    symlinks: Literal["keep", "skip", "follow"],
    dry_run: bool,
    params: dict[str, str],
    exclude: tuple[str, ...],
    include: tuple[str, ...],
    kind: Kind | None,
    line_name: str | None,
) -> None:
    """Upload model/ and data/ (or any folder or file) and record a new version.

    PATH is 'model' and/or 'data' (default: both, if they hold files), or any
    folder or file of the workspace: its first push starts tracking it on a
    version line of its own (tags name@v0.1, the name being the path in lower
    case with '/' as '-', or --name). Only chunks the store does not already hold are
    uploaded; unchanged files are not even re-read. The manifest is
    committed to Git, tagged with --tag, and pushed to the Git remote if the
    workspace has one.
    """
    if tag is not None and tag != AUTO_TAG and (tag.strip("/") in TRACKED_NAMES
                                                or "/" in tag or Path(tag).is_dir()):
        # `cpv push --tag model`: click took the path as the option's value.
        paths, tag = (*paths, tag), AUTO_TAG
    metrics = _load_metrics(metrics_file, metric_pairs)
    with state.service(progress=True) as service:
        kinds, tracks = _push_targets(paths, service.root, service, kind, line_name)
        outcome = service.push(
            kinds or None, message=message, metrics=metrics, tag=tag is not None,
            version=None if tag in (None, AUTO_TAG) else tag, force=force, dry_run=dry_run,
            notify=notify, symlinks=symlinks, params=params or None, exclude=exclude,
            include=include, tracks=tracks)
    results, tags, pushed_to = outcome.results, list(outcome.tags), outcome.pushed_to

    def human() -> list[str]:
        lines = [line for r in results for line in render.upload_lines(r)]
        total = sum(r.total_bytes for r in results)
        if len(results) > 1:
            sent = sum(r.new_bytes if dry_run else r.uploaded_bytes for r in results)
            lines.append(f"total  {render.fmt_bytes(total)}, "
                         f"{'would upload' if dry_run else 'uploaded'} {render.fmt_bytes(sent)}")
        if tags:
            lines.append(("would tag " if dry_run else "tagged ") + ", ".join(tags))
        if pushed_to and not dry_run:
            lines.append(f"pushed history to the Git remote ({pushed_to})")
        return lines

    state.out.emit({"dry_run": dry_run, "results": [render.upload_dict(r) for r in results],
                    "tags": tags, "pushed_to": pushed_to}, human)


# -- pull --------------------------------------------------------------------------------------


_GLOB_CHARS = frozenset("*?[")
_VERSION_WORD = re.compile(r"(data-)?v?\d+\.\d+|[a-z0-9_][a-z0-9._-]*@v\d+\.\d+")


def _split_rev_and_paths(
    args: Sequence[str], root: Path, tracked: Callable[[], Sequence[str]] = tuple,
) -> tuple[str | None, list[str]]:
    """``[REV] [PATH|PATTERN...]``: the first word is a path when it starts with model/ or
    data/ (or another of the ``tracked()`` paths, read only when needed), or is a pattern
    (``'*fp16*'``); patterns are passed on as typed."""
    if not args:
        return None, []

    def in_tracked(p: str) -> bool:
        if p.split("/", 1)[0] in TRACKED_NAMES:
            return True
        if _VERSION_WORD.fullmatch(p):
            return False  # a version, never a path: no need to read the manifests
        return any(p == t or p.startswith(t + "/") for t in tracked())

    def word(a: str) -> str:
        if _GLOB_CHARS & set(a):
            return a
        return _relative_to_root(a, root) if ("/" in a or a in TRACKED_NAMES or a == ".") else a

    words = [word(a) for a in args]
    first = words[0]
    if _GLOB_CHARS & set(first) or in_tracked(first):
        return None, words
    rev, paths = args[0], words[1:]
    for p in paths:
        if not _GLOB_CHARS & set(p) and not in_tracked(p):
            raise click.BadParameter(f"{p!r} is not under a tracked path (model/, data/, ...)",
                                     param_hint="PATH")
    return rev, paths


@click.command(epilog=epilog([
    ("cpv pull", "the current version of model and data"),
    ("cpv pull v0.1", "model v0.1 (and data-v0.1 if it exists)"),
    ("cpv pull v0.2 model", "only the model"),
    ("cpv pull data-v0.3 data/validation", "only one data split"),
    ("cpv pull v0.1 model --to /tmp/v0.1", "somewhere else, leaving model/ alone"),
    ("cpv pull v0.3 'model/*.safetensors'", "only files a pattern matches (gitignore syntax)"),
    ("cpv pull production --exclude '*fp16*'", "the version alias production points to, "
                                               "without fp16 files"),
    ("cpv pull v0.4 --part 3", "only what writer 3 pushed (cpv session)"),
], codes=(0, 1, 2, 3, 4, 10, 12)))
@click.argument("args", nargs=-1, metavar="[REV] [PATH]...")
@click.option("--to", "dest", type=click.Path(file_okay=False),
              help="Write into this folder instead of the workspace (one PATH kind).")
@click.option("--force", is_flag=True, help="Overwrite local changes that were not pushed.")
@_filter_options("pull")
@click.option("--part", "parts", multiple=True, metavar="PART",
              help="Only the files writer PART (e.g. a rank) pushed to a session's version.")
@common
@click.pass_obj
def pull(state: State, args: tuple[str, ...], dest: str | None, force: bool,
         exclude: tuple[str, ...], include: tuple[str, ...], parts: tuple[str, ...]) -> None:
    """Bring files to a version, fetching only what is missing.

    REV is a version tag (v0.1, data-v0.1, name@v0.1 of a tracked path), an
    alias, a branch or a commit; default: the current version. Files that are
    already right are left alone, and chunks that local files already hold are
    copied, not downloaded. This does not change the recorded version (cpv
    checkout does).
    """
    with state.service(progress=True) as service:
        rev, paths = _split_rev_and_paths(
            args, service.root, lambda: [t.path for t in service.tracked_paths()])
        results = service.pull(rev, paths=paths, dest=dest, force=force, exclude=exclude,
                               include=include, parts=parts)
    state.out.emit({"rev": rev, "results": [render.pull_dict(p) for p in results]},
                   lambda: [line for p in results for line in render.pull_lines(p)])


# -- ls ----------------------------------------------------------------------------------------


@click.command("ls", epilog=epilog([
    ("cpv ls", "the files of the current version, with sizes and a total"),
    ("cpv ls v0.3 model", "the model files of v0.3"),
    ("cpv ls data-v0.2 data/validation --json", ""),
], codes=(0, 1, 2, 10, 12)))
@click.argument("args", nargs=-1, metavar="[REV] [PATH]...")
@common
@click.pass_obj
def ls(state: State, args: tuple[str, ...]) -> None:
    """List the files of a version and their sizes, without downloading them.

    REV and PATH are read as by cpv pull (default: the current version, both folders).
    """
    with state.service() as service:
        rev, paths = _split_rev_and_paths(
            args, service.root, lambda: [t.path for t in service.tracked_paths()])
        files = service.iter_ls(rev, paths)
        if not state.json_mode:
            # Printed as the version streams in: a 10^6-file listing is never held whole.
            state.out.emit(None, render.ls_lines(files), essential=True)
            return
        listed = list(files)
    state.out.emit({"rev": rev, "files": [{"path": p, "size": n} for p, n in listed],
                    "count": len(listed), "total_bytes": sum(n for _, n in listed)}, (),
                   essential=True)


# -- tag ---------------------------------------------------------------------------------------


@click.command(epilog=epilog([
    ("cpv tag", "next version of model and data (v0.3 + data-v0.3)"),
    ('cpv tag v1.0 -m "release"', "a chosen version"),
    ("cpv tag --model --metric accuracy=0.97", "model only, with a metric"),
    ("cpv tag v0.2 --force", "move an existing tag"),
    ("cpv tag --path outputs/checkpoint-500", "a tracked path's own line: name@v0.2"),
]))
@click.argument("version", required=False)
@click.option("--path", "track_path", default=None, metavar="PATH",
              help="Tag this tracked path (its own version line, e.g. name@v0.2).")
@click.option("-m", "--message", default=None, help="Tag message.")
@_kind_options("Tag the model only.", "Tag the data only.")
@_metrics_options
@click.option("--force", is_flag=True, help="Move the tag if it exists.")
@click.option("--notify", is_flag=True, help="Post to notify.webhook_url (Slack/Teams).")
@click.option("--dry-run", is_flag=True, help="Show the tag that would be created.")
@_param_option
@common
@click.pass_obj
def tag(
    state: State,
    version: str | None,
    message: str | None,
    model_flag: bool,
    data_flag: bool,
    metrics_file: str | None,
    metric_pairs: dict[str, float],
    force: bool,
    notify: bool,
    dry_run: bool,
    params: dict[str, str],
    track_path: str | None,
) -> None:
    """Tag the current version: v0.1, v0.2, ... v0.10.

    Versions are v{major}.{minor}, numerically auto-incremented.

    Without --model/--data, model and data get one number together
    (v0.3 and data-v0.3) when both have a version; else the one that has.
    """
    only = _kind_flag(model_flag, data_flag)
    metrics = _load_metrics(metrics_file, metric_pairs)
    with state.service() as service:
        if track_path is not None:
            track = service.track_for(_relative_to_root(track_path, service.root), only)
            tags = service.tag_line(track, version, message=message, metrics=metrics,
                                    force=force, dry_run=dry_run, notify=notify,
                                    params=params or None)
        else:
            tags = service.tag([only] if only else None, version, message=message,
                               metrics=metrics, force=force, dry_run=dry_run, notify=notify,
                               params=params or None)
    state.out.emit({"tags": tags, "dry_run": dry_run},
                   [("would tag " if dry_run else "tagged ") + ", ".join(tags)])


# -- versions, metrics -------------------------------------------------------------------------


def _versions_and_aliases(
    state: State, kind: Kind, path: str | None = None,
) -> tuple[list[Any], dict[str, list[str]], dict[str, str]]:
    """The versions (of ``kind``'s default line, or of the tracked ``path``), the aliases of
    each tag, and data snapshot -> data tag (for lineage)."""
    with state.service() as service:
        if path is not None:
            track = service.track_for(_relative_to_root(path, service.root))
            infos = list(service.line_versions(track))
        else:
            infos = list(service.versions(kind))
        data_tags = ({m.snapshot_id: v.tag for v in service.versions("data")
                      for m in v.manifests} if kind == "model" else {})
        return infos, service.aliases_by_tag(), data_tags


@click.command(epilog=epilog([
    ("cpv versions", "model versions, oldest first"),
    ("cpv versions --data", "data versions"),
    ("cpv versions --json | jq '.[-1].metrics'", "metrics of the latest version"),
    ("cpv versions --path outputs/checkpoint-500", "versions of another tracked path"),
]))
@_kind_options("Model versions (the default).", "Data versions.")
@click.option("--path", "track_path", default=None, metavar="PATH",
              help="Versions of this tracked path (its own line, name@v0.1 ...).")
@common
@click.pass_obj
def versions(state: State, model_flag: bool, data_flag: bool, track_path: str | None) -> None:
    """List versions: tag, date, author, message, size and key metrics."""
    kind = _kind_flag(model_flag, data_flag) or "model"
    infos, aliases, data_tags = _versions_and_aliases(state, kind, track_path)
    state.out.emit([render.version_dict(v, aliases.get(v.tag, ())) for v in infos],
                   lambda: render.versions_lines(infos, kind, aliases, data_tags),
                   essential=True)


@click.command(epilog=epilog([
    ("cpv metrics", "every model version's metrics as a table"),
    ("cpv metrics v0.1 v0.4", "only these versions"),
    ("cpv metrics --plot metrics.png", "a chart (needs matplotlib)"),
    ("cpv metrics --path outputs/checkpoint-500", "the versions of a tracked path's own line"),
    ("cpv metrics exp1@v0.2 exp1@v0.5", "versions of the line exp1"),
]))
@click.argument("revs", nargs=-1, metavar="[REV]...")
@_kind_options("Model versions (the default).", "Data versions.")
@click.option("--path", "track_path", default=None, metavar="PATH",
              help="Versions of this tracked path (its own line, name@v0.1 ...).")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False),
              help="Also draw the metrics over versions into this PNG file.")
@common
@click.pass_obj
def metrics(
    state: State, revs: tuple[str, ...], model_flag: bool, data_flag: bool,
    track_path: str | None, plot_file: str | None,
) -> None:
    """Show metrics of versions side by side, or plot them.

    REV is a version of one line: v0.3 (or 0.3) of model/ (of data/ with
    --data, of PATH with --path), data-v0.3, or name@v0.3 of a tracked path.
    """
    kind = _kind_flag(model_flag, data_flag) or (
        "data" if revs and all(r.startswith("data-") for r in revs) else "model")
    with state.service() as service:
        track = (service.track_for(_relative_to_root(track_path, service.root))
                 if track_path is not None else None)
        infos = service.picked_versions(kind, revs, track=track)
    if plot_file is not None:
        _plot(infos, Path(plot_file))
        state.out.info(f"wrote {plot_file}")
    state.out.emit([{"tag": v.tag, "date": v.date.isoformat(), "metrics": dict(v.metrics)}
                    for v in infos], lambda: render.metrics_lines(infos), essential=True)


def _plot(infos: Sequence[Any], path: Path) -> None:
    from cpv.errors import ConfigError, LocalIOError

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib, which is not installed",
                          hint="python -m pip install 'cpv-checkpoints[plot]'") from exc
    names = sorted({k for v in infos for k in v.metrics})
    if not names:
        raise ConfigError("no metrics to plot in these versions",
                          hint="record some: cpv push --metric loss=0.25 (or cpv tag --metric)")
    fig, axes = plt.subplots(len(names), 1, figsize=(8, 2.6 * len(names)), squeeze=False)
    tags = [v.tag for v in infos]
    for ax, name in zip(axes[:, 0], names, strict=True):
        xs = [i for i, v in enumerate(infos) if name in v.metrics]
        ax.plot(xs, [infos[i].metrics[name] for i in xs], marker="o")
        ax.set_ylabel(name)
        ax.set_xticks(range(len(tags)), tags)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise LocalIOError(f"cannot write {path}: {exc.strerror or exc}", path=str(path)) from exc
    finally:
        plt.close(fig)


# -- alias, lineage ----------------------------------------------------------------------------


@click.command(epilog=epilog([
    ("cpv alias", "list the aliases and the versions they point to"),
    ('cpv alias production v0.3 -m "passed the A/B test"', "make or move an alias"),
    ("cpv alias --delete staging", "delete one (its log stays in Git)"),
    ("cpv pull production", "an alias works wherever a version does"),
], codes=(0, 1, 2, 10)))
@click.argument("name", required=False)
@click.argument("rev", required=False)
@click.option("-m", "--message", default="", help="Why the alias moves (kept in its log).")
@click.option("--delete", "delete", is_flag=True, help="Delete the alias NAME.")
@common
@click.pass_obj
def alias(state: State, name: str | None, rev: str | None, message: str, delete: bool) -> None:
    """Name a version with a movable alias (production, staging).

    Each move is one commit recording who moved it, when and why, published
    with the versions; another machine sees it after git pull. An alias
    works wherever a version does: cpv pull, checkout, ls, cpv://NAME/.
    """
    if delete and (name is None or rev is not None):
        raise click.UsageError("--delete takes one NAME: cpv alias --delete NAME")
    if name is not None and rev is None and not delete:
        raise click.UsageError("give the version too: cpv alias NAME REV (or --delete NAME)")
    with state.service() as service:
        if name is None:
            found = service.aliases()
            state.out.emit([render.alias_dict(a) for a in found],
                           lambda: render.aliases_lines(found), essential=True)
            return
        if delete:
            done = service.delete_alias(name, message=message)
        else:
            assert rev is not None
            done = service.set_alias(name, rev, message=message)
    line = (f"deleted alias {done.name}" if done.target is None
            else f"alias {done.name} -> {done.target}")
    state.out.emit(render.alias_dict(done), [line])


@click.command(epilog=epilog([
    ("cpv lineage v0.3", "which data trained model v0.3, and its hyper-parameters"),
    ("cpv lineage", "the current model version"),
    ("cpv lineage production --json", ""),
    ("cpv lineage exp1@v0.2", "a version of another tracked model path"),
], codes=(0, 1, 2, 10)))
@click.argument("rev", required=False)
@click.option("--path", "track_path", default=None, metavar="PATH",
              help="A tracked model path's own line (REV: its v0.3, or name@v0.3).")
@common
@click.pass_obj
def lineage(state: State, rev: str | None, track_path: str | None) -> None:
    """Show which data version a model version was pushed with.

    REV is v0.3 of model/, name@v0.3 of another tracked path, or an alias.
    Recorded at push time: the data snapshot in the workspace then, and its
    data tag (found again if it was tagged later), plus --param values.
    """
    with state.service() as service:
        track = (service.track_for(_relative_to_root(track_path, service.root))
                 if track_path is not None else None)
        found = service.lineage(rev, track=track)
    state.out.emit(found, lambda: render.lineage_lines(found), essential=True)


# -- checkout, status, diff --------------------------------------------------------------------


@click.command(epilog=epilog([
    ("cpv checkout v0.1", "model v0.1 and data-v0.1 (if it exists)"),
    ("cpv checkout data-v0.2", "data only"),
    ("cpv checkout v0.1 --force", "discard local changes that were not pushed"),
], codes=(0, 1, 2, 3, 4, 10, 12)))
@click.argument("rev")
@click.option("--force", is_flag=True, help="Discard local changes that were not pushed.")
@click.option("--dry-run", is_flag=True, help="Show what would be checked out.")
@common
@click.pass_obj
def checkout(state: State, rev: str, force: bool, dry_run: bool) -> None:
    """Make REV the current version again (files + manifests).

    History is kept: the checkout is a new commit, which can be pushed (and
    checked out in turn). Refused while tracked files have changes that were
    not pushed, unless --force.
    """
    with state.service(progress=True) as service:
        results = service.checkout(rev, force=force, dry_run=dry_run)
    state.out.emit({"rev": rev, "dry_run": dry_run, "results": [render.jsonable(r)
                                                                  for r in results]},
                   lambda: render.revert_lines(results, rev, dry_run=dry_run))


@click.command(epilog=epilog([
    ("cpv status", ""),
    ("cpv status --json", "for scripts: .clean, .kinds.model.changed"),
]))
@_filter_options("report")
@common
@click.pass_obj
def status(state: State, exclude: tuple[str, ...], include: tuple[str, ...]) -> None:
    """Show the current versions and what changed since the last push."""
    with state.service() as service:
        report = service.status(exclude=exclude, include=include)
    state.out.emit(render.status_dict(report), lambda: render.status_lines(report),
                   essential=True)


@click.command(epilog=epilog([
    ("cpv diff v0.1 v0.2", "files and metrics between two model versions"),
    ("cpv diff v0.1", "v0.1 against the current commit"),
    ("cpv diff data-v0.1 data-v0.2", "data versions"),
    ("cpv diff v0.1 v0.2 --data", "the same, written shorter"),
]))
@click.argument("rev1")
@click.argument("rev2", required=False, default="HEAD")
@_kind_options("Compare model versions (default, unless a REV is data-v...).",
               "Compare data versions (v0.1 then means data-v0.1).")
@common
@click.pass_obj
def diff(state: State, rev1: str, rev2: str, model_flag: bool, data_flag: bool) -> None:
    """Show files and metrics that differ between versions.

    Lists files added, removed and changed between REV1 and REV2 (default: the
    current commit), and each metric's values and delta.
    """
    with state.service() as service:
        result = service.diff(rev1, rev2, kind=_kind_flag(model_flag, data_flag))
    state.out.emit(render.diff_dict(result), lambda: render.diff_lines(result), essential=True)


# -- verify ------------------------------------------------------------------------------------


@click.command(epilog=epilog([
    ("cpv verify", "the current versions: every chunk indexed, every pack present"),
    ("cpv verify v0.1 --deep", "re-read and re-hash every byte of v0.1"),
    ("cpv verify --all", "every snapshot in the store, and which versions are damaged"),
], codes=(0, 1, 2, 4, 10, 12)))
@click.argument("rev", required=False)
@click.option("--all", "all_snapshots", is_flag=True, help="Every snapshot in the store.")
@click.option("--deep", is_flag=True, help="Read every needed chunk back and re-hash it.")
@common
@click.pass_obj
def verify(state: State, rev: str | None, all_snapshots: bool, deep: bool) -> None:
    """Check that the store holds every byte, undamaged.

    Checks every byte the versions need.

    Exit code 4 when something is damaged or missing; the output names the
    affected versions and files (other versions are intact).
    """
    from cpv.errors import IntegrityError, NoStoreError

    if rev is not None and all_snapshots:
        raise click.UsageError("give a REV or --all, not both")
    with state.service(progress=True) as service:
        outcome = service.verify(rev, all_snapshots=all_snapshots, deep=deep)
    data = render.verify_dict(outcome)
    if outcome.ok:
        state.out.emit(data, lambda: render.verify_lines(outcome), essential=True)
        return
    if not state.json_mode:
        for line in render.verify_lines(outcome):
            click.echo(line)
    state.result = data
    if outcome.damaged and all(d.elsewhere for d in outcome.damaged):
        first = outcome.damaged[0]
        raise NoStoreError(
            f"{first.label} lives in another store ({first.elsewhere}), not in this "
            "workspace's; it was not checked",
            hint="verify it from a workspace whose store.url is that store, or point this one "
                 "there: cpv config set store.url URL")
    labels = sorted({d.label for d in outcome.damaged if not d.elsewhere})
    error = IntegrityError(
        f"the store is damaged: {len(labels)} version(s) cannot be fully restored "
        f"({', '.join(labels[:5])}{', ...' if len(labels) > 5 else ''})",
    )
    error.hint = ("the versions not listed are intact; push the damaged versions' files again "
                  "from a machine that still has them (cpv push --force re-reads them)")
    raise error


# -- gc ----------------------------------------------------------------------------------------


@click.command(epilog=epilog([
    ("cpv gc --dry-run", "what would be deleted, and how many bytes freed"),
    ("cpv gc", "the same, then asks before deleting"),
    ("cpv gc --yes", "delete without asking (scripts, cron)"),
], codes=(0, 1, 2, 10, 11, 12)))
@click.option("--dry-run", is_flag=True, help="Only report what would be deleted.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask before deleting.")
@click.option("--grace-hours", type=click.FloatRange(min=0), default=None, metavar="HOURS",
              help="Keep everything younger than this (default 24): protects running pushes.")
@click.option("--break-stale-lock", is_flag=True,
              help="Take over the lock of a gc that died (its lock was not refreshed).")
@common
@click.pass_obj
def gc(
    state: State, dry_run: bool, yes: bool, grace_hours: float | None, break_stale_lock: bool
) -> None:
    """Delete store data that no version recorded in the store needs.

    The store records every push and every tag itself; gc keeps all of them
    (whatever this clone's Git history holds: shallow, stale and merged clones
    are safe). Versions leave only through cpv forget. Anything younger than
    the grace period is kept too, which protects pushes running elsewhere.
    """
    grace = None if grace_hours is None else grace_hours * 3600.0
    if not dry_run and not yes and (state.json_mode or not sys.stdin.isatty()):
        raise click.UsageError("gc deletes data: pass --yes to confirm, or --dry-run")
    with state.service(progress=True) as service:
        if not dry_run and not yes:
            plan = service.gc(dry_run=True, grace_period_s=grace)
            for line in render.gc_lines(plan):
                click.echo(line)
            if not plan.report.snapshots_deleted and not plan.report.packs_condemned:
                return
            click.confirm("Delete this data?", abort=True, err=True)
        outcome = service.gc(dry_run=dry_run, grace_period_s=grace,
                             break_stale_lock=break_stale_lock)
    state.out.emit(render.gc_dict(outcome), lambda: render.gc_lines(outcome))


# -- forget, migrate, repair ------------------------------------------------------------------

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(_ctx: click.Context, _p: click.Parameter, value: str | None) -> float | None:
    """``30d``, ``12h``, ``90m`` -> seconds; a bad value is a usage error."""
    if value is None:
        return None
    match = _DURATION.match(value.strip())
    if not match:
        raise click.BadParameter(f"{value!r} is not a duration like 30d, 12h or 90m",
                                 param_hint="--keep-within")
    return float(match.group(1)) * _SECONDS[match.group(2)]


@click.command(epilog=epilog([
    ("cpv forget --keep-last 5 --dry-run", "what would go, and why every other version stays"),
    ("cpv forget --keep-last 5 --keep-within 30d", "untagged pushes: the last 5, and a month's"),
    ("cpv forget --keep-best 3 --metric loss --lower-is-better", "the 3 best by loss"),
], codes=(0, 1, 2, 10, 12)))
@click.option("--keep-last", type=click.IntRange(min=0), default=None, metavar="N",
              help="Keep the newest N untagged pushes of each tracked path.")
@click.option("--keep-within", callback=parse_duration, default=None, metavar="DURATION",
              help="Keep pushes younger than this (30d, 12h, 90m).")
@click.option("--keep-best", type=click.IntRange(min=1), default=None, metavar="K",
              help="Keep the K best versions by --metric.")
@click.option("--metric", default=None, metavar="NAME", help="The metric --keep-best ranks by.")
@click.option("--lower-is-better", is_flag=True, help="With --keep-best: lower values win.")
@click.option("--dry-run", is_flag=True, help="List what would go and why the rest stays.")
@common
@click.pass_obj
def forget(
    state: State, keep_last: int | None, keep_within: float | None, keep_best: int | None,
    metric: str | None, lower_is_better: bool, dry_run: bool,
) -> None:
    """Remove versions by a retention policy; every tagged version is kept.

    Nothing is deleted yet: the versions are marked forgotten in the store, and
    the next cpv gc (after its grace period) frees their data. Pushes made while
    this runs are never forgotten.
    """
    from cpv.engine import ForgetPolicy

    policy = ForgetPolicy(keep_last=keep_last, keep_within_s=keep_within, keep_best=keep_best,
                          metric=metric, higher_is_better=not lower_is_better)
    with state.service() as service:
        report = service.forget(policy, dry_run=dry_run)
    state.out.emit(render.forget_dict(report), lambda: render.forget_lines(report))


@click.command(epilog=epilog([("cpv migrate", "once, on a store written before cpv 0.2"),
                              ("cpv migrate --store-format",
                               "move the store to format 2 (tree snapshots)")],
                             codes=(0, 1, 4, 10, 12)))
@click.option("--store-format", "store_format", is_flag=True,
              help="Also move the store to the newest format (2: tree snapshots). Every "
                   "machine using the store needs this cpv or newer afterwards.")
@common
@click.pass_obj
def migrate(state: State, store_format: bool = False) -> None:
    """Record the versions of a store written before the store kept its own.

    Every snapshot in the store becomes a kept version, with what this clone's
    Git knows of it (kind, message, metrics, tags). Safe to re-run; needed once
    before cpv gc or cpv forget on such a store. Current manifests that still
    list every file (schema 1) are rewritten as pointer manifests (schema 2) in
    one commit; tagged versions keep theirs and stay readable.
    """
    with state.service() as service:
        report = service.migrate()
        rewritten = service.migrate_manifests()
        formats = service.upgrade_store_format() if store_format else None
    doc: dict[str, object] = {"adopted": len(report.adopted),
                              "already_recorded": report.already_rooted,
                              "tags_recorded": report.tags_recorded,
                              "manifests_rewritten": rewritten}
    lines = [f"recorded {len(report.adopted)} version(s) and {report.tags_recorded} "
             f"tag(s) in the store ({report.already_rooted} were recorded already)",
             f"rewrote {len(rewritten)} manifest(s) as schema 2 (file lists in the "
             "store; tagged versions keep theirs)"]
    if formats is not None:
        doc["store_format"] = {"before": formats[0], "after": formats[1]}
        lines.append(f"store format {formats[0]} -> {formats[1]}" if formats[0] != formats[1]
                     else f"store format is {formats[1]} already")
    state.out.emit(doc, lines)


@click.command(epilog=epilog([
    ("cpv init lost-model --store s3://ml-checkpoints/whisper && cd lost-model && cpv rebuild",
     "a lost Git repository: its versions come back from the store"),
], codes=(0, 1, 10, 12)))
@click.option("--workspace-id", default=None, metavar="ID",
              help="Whose versions, when several workspaces share the store.")
@common
@click.pass_obj
def rebuild(state: State, workspace_id: str | None) -> None:
    """Rebuild manifests and tags in Git from the versions the store records.

    For a lost or rewritten Git repository: every tagged version the store
    records and Git lacks gets its manifest committed and its tag made, and each
    folder's newest version becomes the current one. Tags Git has are kept.
    """
    with state.service() as service:
        made = service.rebuild(workspace_id=workspace_id)
    state.out.emit({"tags": made},
                   [f"rebuilt {len(made)} tag(s) from the store"
                    + (f": {', '.join(made)}" if made else "")])


@click.command(epilog=epilog([("cpv repair", "after cpv verify reported damage")],
                             codes=(0, 1, 4, 10, 12)))
@common
@click.pass_obj
def repair(state: State) -> None:
    """Heal a damaged store from what this machine still has.

    Rebuilds damaged or missing index objects from the packs themselves, and
    re-uploads damaged or missing chunks from the files in model/ and data/.
    Exit 4 when some damage is left (the output names the versions' files).
    """
    from cpv.errors import IntegrityError

    with state.service(progress=True) as service:
        report = service.repair()
    data = {"ok": report.ok, "summary": report.summary(),
            "unrepaired": {sid: list(paths) for sid, paths in report.unrepaired.items()}}
    lines = [report.summary()] + [f"  still damaged: snapshot {sid[:12]}: {len(paths)} file(s)"
                                  for sid, paths in report.unrepaired.items()]
    if report.ok:
        state.out.emit(data, lines)
        return
    if not state.json_mode:
        for line in lines:
            click.echo(line)
    state.result = data
    raise IntegrityError(f"{len(report.unrepaired)} snapshot(s) could not be repaired from "
                         "this machine's files",
                         hint="run cpv repair on a machine that still has those files")


# -- config, doctor ----------------------------------------------------------------------------


def _try_root(start: Path | None = None) -> Path | None:
    from cpv.errors import NotAWorkspaceError
    from cpv.service import find_workspace

    try:
        return find_workspace(start or Path.cwd())
    except NotAWorkspaceError:
        return None


_KEY_RE = re.compile(r"^[a-z_]+(\.[a-z_]+)?$")


def _dotted(key: str) -> tuple[str, str | None]:
    if not _KEY_RE.match(key):
        raise click.BadParameter(f"{key!r} is not a setting name like aws.profile or team",
                                 param_hint="KEY")
    section, _, sub = key.partition(".")
    return section, sub or None


@click.group(epilog=epilog([
    ("cpv config show", "every setting and where it came from"),
    ("cpv config get store.url", ""),
    ("cpv config set aws.profile ml-team", "in the workspace (or ~/.cpv/config.json outside)"),
    ("cpv config set --global transfer.workers 16", "for every workspace of this user"),
    ("cpv config wizard", "set up the AWS profile, bucket and Git SSH remote interactively"),
]))
def config() -> None:
    """Show and change settings (cpv config show lists them all).

    Settings come from ~/.cpv/config.json, then the workspace's .cpv/config.json,
    then CPV_* environment variables. cpv never stores credentials: only an
    AWS profile name and an SSH key path.
    """


@config.command("show", epilog=epilog([("cpv config show", ""), ("cpv config show --json", "")],
                                      codes=(0, 1)))
@common
@click.pass_obj
def config_show(state: State) -> None:
    """Every setting with its value (defaults included)."""
    view = state.config(_try_root()).get_config()
    state.out.emit(view, lambda: render.config_lines(view), essential=True)


@config.command("get", epilog=epilog([("cpv config get aws.bucket", "")], codes=(0, 1, 2)))
@click.argument("key")
@common
@click.pass_obj
def config_get(state: State, key: str) -> None:
    """Print one setting's value (empty line if unset)."""
    section, sub = _dotted(key)
    view = state.config(_try_root()).get_config()
    if section not in view or section == "sources" or (
            sub is not None and not (isinstance(view[section], dict) and sub in view[section])):
        raise click.BadParameter(f"unknown setting {key!r} (see cpv config show)",
                                 param_hint="KEY")
    value = view[section] if sub is None else view[section][sub]
    state.out.emit({"key": key, "value": value},
                   ["" if value is None else str(value)], essential=True)


@config.command("set", epilog=epilog([
    ("cpv config set store.url s3://ml-checkpoints/whisper", ""),
    ("cpv config set --global aws.profile ml-team", ""),
], codes=(0, 1, 2)))
@click.argument("key")
@click.argument("value")
@click.option("--global", "global_", is_flag=True, help="Write ~/.cpv/config.json.")
@common
@click.pass_obj
def config_set(state: State, key: str, value: str, global_: bool) -> None:
    """Set one setting in the workspace's (or with --global the user's) config file."""
    _write_setting(state, key, value, global_)


@config.command("unset", epilog=epilog([("cpv config unset aws.endpoint_url", "")],
                                       codes=(0, 1, 2)))
@click.argument("key")
@click.option("--global", "global_", is_flag=True, help="Write ~/.cpv/config.json.")
@common
@click.pass_obj
def config_unset(state: State, key: str, global_: bool) -> None:
    """Remove one setting from the config file (the default applies again)."""
    from cpv.config import unset_setting

    _dotted(key)
    done = unset_setting(key, workspace=None if global_ else _try_root())
    state.out.emit({"key": key, "removed": done.changed, "file": str(done.path),
                    "scope": done.scope},
                   [f"{'unset' if done.changed else 'was not set:'} {key} in {done.path}"])


def _write_setting(state: State, key: str, value: str, global_: bool) -> None:
    from cpv.config import set_setting

    _dotted(key)
    done = set_setting(key, value, workspace=None if global_ else _try_root())
    note = ""
    if done.moved:
        note = (f"{key} is a secret: it is kept in your private {done.path} (mode 0600), "
                "never in the workspace's committed .cpv/config.json")
    elif done.scope == "workspace":
        note = "commit .cpv/config.json to share it (git commit .cpv/config.json -m ...)"
    state.out.emit({"key": key, "value": done.shown, "file": str(done.path), "scope": done.scope},
                   [f"set {key} in {done.path}"]
                   + ([note] if note else []))


@config.command("wizard", epilog=epilog([("cpv config wizard", "")], codes=(0, 1)))
@common
@click.pass_obj
def config_wizard(state: State) -> None:
    """Set up the store (AWS profile, bucket, endpoint) and the Git remote (SSH key).

    Asks on the terminal, checks the profile exists in ~/.aws, can create a
    dedicated SSH key for the Git host, and saves with mode 0600: the profile
    and key in ~/.cpv/config.json, the store URL and remote in this workspace's
    .cpv/config.json (outside a workspace it prints the cpv init line instead).
    """
    from cpv.cli.wizard import run_wizard
    from cpv.config import default_config_path, workspace_config_path

    root = _try_root()
    workspace_file = workspace_config_path(root) if root is not None else None
    summary = run_wizard(config=state.config(root), user_file=default_config_path(),
                         workspace_file=workspace_file, root=root)
    state.out.emit(summary, [f"saved to {summary['file']}"
                             + (f" and {workspace_file}" if workspace_file else "")])


@click.command(epilog=epilog([("cpv doctor", ""), ("cpv doctor --json", "")], codes=(0, 1)))
@common
@click.pass_obj
def doctor(state: State) -> None:
    """Check the set-up and say what to fix.

    Checks git, Python, the config, the store, the Git remote and disk space.

    Prints one line per check and a 'fix:' line for each problem.
    """
    from cpv.errors import CPVError
    from cpv.service import doctor_checks

    checks = doctor_checks(_try_root())
    data = [render.jsonable(c) for c in checks]
    failed = [c for c in checks if not c.ok]
    if not failed:
        state.out.emit(data, lambda: render.doctor_lines(checks), essential=True)
        return
    if not state.json_mode:
        for line in render.doctor_lines(checks):
            click.echo(line)
    state.result = data
    raise CPVError(f"{len(failed)} problem(s) found: {', '.join(c.name for c in failed)}",
                   hint="apply the 'fix:' lines above, then run cpv doctor again")


COMMANDS: tuple[click.Command, ...] = (
    init, push, pull, ls, tag, versions, checkout, status, diff, metrics, verify, repair, gc,
    forget, migrate, rebuild, config, doctor, alias, lineage,
)
