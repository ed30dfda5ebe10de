"""``torch.distributed``: every rank pushes its shard, rank 0 commits one version.

::

    from cpv.integrations.torch_distributed import save_distributed
    dcp.save(state, checkpoint_id=f"ckpt/step-{step}/rank{rank}")   # or any per-rank writer
    save_distributed(f"ckpt/step-{step}/rank{rank}", session=f"run7-step{step}",
                     workspace="ws", step=step)

The many-writers protocol of :mod:`cpv.engine.sessions` over a process group: each rank pushes
its folder as part ``<rank>`` with store credentials only (no Git on that machine), the results
are gathered on rank 0, which commits the session as one version (one Git commit, and a tag if
asked), and every rank gets the same outcome back (the commit, or the same error). A rank whose
push failed is named on every rank; nothing is committed then, and re-running the same call
resumes (a part already pushed is not uploaded again).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch.distributed as dist

from cpv.config import CPVConfig
from cpv.errors import CPVError, MissingPartsError, SessionError
from cpv.service import WorkspaceService
from cpv.service.sessions import SessionCommit, push_session_part


def save_distributed(
    folder: str | Path,
    session: str,
    *,
    workspace: str | Path | None = None,
    store_url: str | None = None,
    config: CPVConfig | None = None,
    step: int | None = None,
    metrics: Mapping[str, float] | None = None,
    message: str = "",
    tag: bool = False,
    group: Any = None,
) -> SessionCommit:
    """Push this rank's ``folder`` as its part of ``session``; rank 0 commits; all return it.

    ``workspace`` is the coordinator's workspace (needed on rank 0; elsewhere it only supplies
    the store URL when ``store_url`` is not given).

    Raises:
        MissingPartsError: some ranks failed to push (named); nothing was committed.
        CPVError: the commit failed (the same error on every rank).
    """
    rank = dist.get_rank(group)
    world = dist.get_world_size(group)
    ws = Path(workspace).absolute() if workspace is not None else None
    config = config or CPVConfig.load(workspace=ws)
    url = store_url or config.store_url(workspace=ws)
    pushed: tuple[int, str | None] = (rank, None)
    try:
        push_session_part(url, session, rank, folder, config=config)
    except CPVError as exc:
        pushed = (rank, exc.one_line())
    gathered: list[Any] | None = [None] * world if rank == 0 else None
    dist.gather_object(pushed, gathered, dst=dist.get_global_rank(group, 0) if group else 0,
                       group=group)
    error: CPVError | None = None
    outcome: list[Any] = [None]
    if rank == 0:
        assert gathered is not None
        failed = sorted((r, why) for r, why in gathered if why is not None)
        if failed:
            error = MissingPartsError(
                f"session {session}: rank(s) {', '.join(str(r) for r, _ in failed)} could not "
                f"push their part ({failed[0][1]})", session=session,
                missing=[str(r) for r, _ in failed],
                hint="fix the cause and call save_distributed again: it resumes")
        else:
            try:
                with WorkspaceService.open(ws, config=config, interface="python") as service:
                    extra = {"step": step} if step is not None else None
                    outcome[0] = service.commit_session(
                        session, parts=world, message=message or (
                            f"step {step}" if step is not None else ""),
                        metrics=dict(metrics) if metrics else None, tag=tag, extra=extra)
            except CPVError as exc:
                error = exc
        if error is not None:
            # Errors travel as plain values: CPVError subclasses take keyword-only fields that
            # pickle does not restore.
            outcome[0] = (error.message, error.hint,
                          list(error.missing) if isinstance(error, MissingPartsError) else None)
    dist.broadcast_object_list(outcome, src=dist.get_global_rank(group, 0) if group else 0,
                               group=group)
    if error is not None:
        raise error
    if isinstance(outcome[0], tuple):
        text, hint, missing = outcome[0]
        if missing is not None:
            raise MissingPartsError(text, session=session, missing=missing, hint=hint)
        raise SessionError(text, session=session, hint=hint)
    result: SessionCommit = outcome[0]
    return result
