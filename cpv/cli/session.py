"""``cpv session``: one version from many writers (docs/integrations.md, engine/sessions.py).

``cpv session push`` runs on each writer's machine with store credentials only (no workspace,
no Git); ``cpv session commit`` runs once, in the workspace, and records every part as one
version; ``cpv session status`` shows which writers have pushed.
"""

from __future__ import annotations

from pathlib import Path

import click

from cpv.cli import render
from cpv.cli.commands import (
    AUTO_TAG,
    State,
    _load_metrics,
    _metrics_options,
    _try_root,
    common,
    epilog,
)


@click.group(epilog=epilog([
    ("cpv session push run7-step1000 3 ckpt/rank3 --store s3://ml/whisper", "on writer 3"),
    ("cpv session commit run7-step1000 --parts 4 --tag", "once, in the workspace"),
    ("cpv session status run7-step1000", "which writers have pushed"),
]))
def session() -> None:
    """One version from many writers (ranks, tasks, machines).

    Each writer pushes its own files as a part of a session (store credentials
    only, no Git; pushing the same part again is harmless); one coordinator then
    commits every part as one version (one commit, one tag). A missing writer
    is refused by name. cpv pull --part RANK later fetches one writer's files.
    """


@session.command("push", epilog=epilog([
    ("cpv session push run7-step1000 0 ckpt/rank0", "inside a workspace: its store"),
    ("cpv session push run7-step1000 0 ckpt/rank0 --store s3://ml/whisper", "anywhere"),
], codes=(0, 1, 2, 10, 12, 13)))
@click.argument("session_id", metavar="SESSION")
@click.argument("part", metavar="PART")
@click.argument("folder", type=click.Path(file_okay=True))
@click.option("--store", "store_url", metavar="URL",
              help="The store to push to (default: the workspace's store).")
@common
@click.pass_obj
def session_push(state: State, session_id: str, part: str, folder: str,
                 store_url: str | None) -> None:
    """Push FOLDER as writer PART (e.g. the rank) of SESSION, with store credentials only."""
    from cpv.service.sessions import push_session_part

    root = _try_root()
    config = state.config(root)
    if store_url is None:
        if root is None:
            raise click.UsageError("outside a workspace, say where to push: --store URL")
        store_url = config.store_url(workspace=root)
    outcome = push_session_part(store_url, session_id, part, Path(folder), config=config,
                                progress=state.progress())
    state.out.emit(render.jsonable(outcome), [
        f"session {outcome.session}: part {outcome.part} pushed: {outcome.files} file(s), "
        f"{render.fmt_bytes(outcome.total_bytes)} ({render.fmt_bytes(outcome.uploaded_bytes)} "
        f"uploaded, {render.fmt_seconds(outcome.seconds)})"])


@session.command("commit", epilog=epilog([
    ("cpv session commit run7-step1000 --parts 4", "writers 0..3 must all have pushed"),
    ("cpv session commit s1 --part a --part b --tag -m 'epoch 3'", "named writers, tagged"),
], codes=(0, 1, 2, 10)))
@click.argument("session_id", metavar="SESSION")
@click.option("--parts", "count", type=click.IntRange(min=1), default=None,
              help="How many writers (named 0..N-1, e.g. ranks) must have pushed.")
@click.option("--part", "names", multiple=True, metavar="NAME",
              help="A writer that must have pushed (repeatable).")
@click.option("-m", "--message", default="", help="What this version is.")
@click.option("--tag", "tag", is_flag=False, flag_value=AUTO_TAG, default=None,
              metavar="[VERSION]", help="Also tag it (next v0.N, or the VERSION given).")
@_metrics_options
@common
@click.pass_obj
def session_commit(state: State, session_id: str, count: int | None, names: tuple[str, ...],
                   message: str, tag: str | None, metrics_file: str | None,
                   metric_pairs: dict[str, float]) -> None:
    """Record every part of SESSION as one version of the model (one commit)."""
    if count is not None and names:
        raise click.UsageError("give --parts N or --part NAME..., not both")
    parts: int | list[str] | None = count if count is not None else (list(names) or None)
    with state.service(progress=True) as service:
        done = service.commit_session(
            session_id, parts=parts, message=message,
            metrics=_load_metrics(metrics_file, metric_pairs), tag=tag is not None,
            version=None if tag in (None, AUTO_TAG) else tag)
    tags = f", tagged {', '.join(done.tags)}" if done.tags else ""
    state.out.emit(render.jsonable(done), [
        f"session {done.session}: {len(done.parts)} part(s), {done.files} file(s), "
        f"{render.fmt_bytes(done.total_bytes)} recorded as one version "
        f"({(done.commit or 'unchanged')[:12]}{tags}) in {render.fmt_seconds(done.seconds)}"])


@session.command("status", epilog=epilog([("cpv session status run7-step1000", "")],
                                         codes=(0, 1, 10)))
@click.argument("session_id", metavar="SESSION")
@common
@click.pass_obj
def session_status(state: State, session_id: str) -> None:
    """Which writers of SESSION have pushed their part."""
    from cpv.service.sessions import session_parts

    with state.service() as service:
        parts = session_parts(service, session_id)
    rows = sorted(parts.values(), key=lambda p: (len(p.part), p.part))
    state.out.emit(
        {"session": session_id, "parts": [render.jsonable(p) for p in rows]},
        [f"part {p.part}: {p.files} file(s), {render.fmt_bytes(p.total_bytes)}, snapshot "
         f"{p.snapshot_id[:12]} (from {p.writer})" for p in rows]
        + [f"{len(rows)} part(s) pushed to session {session_id}"], essential=True)
