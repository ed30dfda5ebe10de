"""Versions saved from the training loop, in the background: :class:`Checkpointer`.

A training script calls :meth:`Checkpointer.save` right after it wrote a checkpoint folder; the
push (and the Git commit, optional tag and publish) runs on one background thread while training
goes on. What it guarantees, each a test in ``tests/api/test_checkpointer.py``:

* **At most one push in flight, at most one waiting.** A newer checkpoint supersedes the one
  waiting (``supersede=True``, the default: the store gets the latest state as often as it can
  take it), or ``save`` waits for the slot (``supersede=False``: every checkpoint is versioned,
  training slows down to the store's pace). Memory is bounded either way: one request waits,
  and the push itself streams (engine invariant 4).
* **Failures never stop the loop on their own.** A failed push is logged and kept; with
  ``on_error="raise"`` (default) the next :meth:`save`, :meth:`flush` or :meth:`close` raises
  it as :class:`~cpv.errors.CheckpointError`, with ``"warn"`` it is only logged and listed in
  :attr:`failures`. An unreachable store costs the loop nothing but the log line.
* **A final flush at normal exit** (``atexit``), so the last checkpoint is versioned.
* **Nothing half-published after a crash.** The push is the engine's (packs, index, snapshot,
  then Git): a process killed mid-push leaves at most unreferenced packs, and the next save
  (of any checkpoint) indexes them and uploads only what is missing.
* **The step and the metrics go into the version**: metrics as the version's metrics, the
  step in the manifest's ``extra`` and the commit message.

A checkpoint that is one file is versioned as a folder holding that file. Each checkpoint
should be written to its own folder (``checkpoint-<step>``, as Hugging Face
and Lightning do): a folder rewritten while it is being pushed is refused by the engine
(:class:`~cpv.errors.SourceChangedError`, reported like any failure) rather than versioned torn.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cpv.errors import CheckpointError, CPVError

if TYPE_CHECKING:
    from cpv.config import CPVConfig
    from cpv.service import WorkspaceService
    from cpv.workspace import Kind

log = logging.getLogger(__name__)

OnError = Literal["raise", "warn"]


@dataclass(frozen=True, slots=True)
class SaveRequest:
    """One checkpoint the loop asked to version."""

    path: Path | None
    step: int | None
    metrics: Mapping[str, float]
    message: str
    tag: bool
    queued_at: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class SavedVersion:
    """One checkpoint versioned in the background."""

    step: int | None
    snapshot_id: str
    commit: str | None
    tags: tuple[str, ...]
    uploaded_bytes: int
    total_bytes: int
    seconds: float


class Checkpointer:
    """Version checkpoints from a training loop without blocking it (see the module docstring).

    Args:
        workspace: the cpv workspace (a folder at or under it; default: the current folder).
        kind: which tracked kind a checkpoint becomes (``model``).
        tag: tag every version (``v0.N``); ``save(tag=True)`` tags one.
        supersede: a newer checkpoint replaces the one waiting (True) or waits (False).
        on_error: ``raise`` the failure at the next call, or only ``warn``.
        config: settings (default: the workspace's and the user's).
        flush_at_exit: push what is waiting when the interpreter exits normally.
        nice: how much lower than the loop's the push threads' CPU priority is (Linux; 0 keeps
            it equal). Where the loop itself needs the CPU, the push then takes the cores the
            loop leaves idle instead of sharing them evenly (docs/benchmarks.md).

    Use as a context manager, or call :meth:`close` at the end of training.
    """

    def __init__(
        self,
        workspace: str | Path | None = None,
        *,
        kind: Kind = "model",
        tag: bool = False,
        supersede: bool = True,
        on_error: OnError = "raise",
        config: CPVConfig | None = None,
        flush_at_exit: bool = True,
        nice: int = 10,
    ) -> None:
        if on_error not in ("raise", "warn"):
            raise ValueError(f"on_error must be 'raise' or 'warn', not {on_error!r}")
        self._workspace = Path(workspace) if workspace is not None else Path.cwd()
        self._kind: Kind = kind
        self._tag = tag
        self._supersede = supersede
        self._on_error = on_error
        self._config = config
        self._nice = nice
        self._cond = threading.Condition()
        self._waiting: SaveRequest | None = None
        self._running: SaveRequest | None = None
        self._closed = False
        self._unreported: list[CheckpointError] = []
        self.failures: list[CheckpointError] = []
        """Every failure so far (bounded: the last 100)."""
        self.saved: deque[SavedVersion] = deque(maxlen=100)
        """The versions made so far (the last 100)."""
        self.superseded = 0
        """Checkpoints replaced by a newer one before their push began."""
        self._thread = threading.Thread(target=self._run, name="cpv-checkpointer", daemon=True)
        self._thread.start()
        self._flush_at_exit = flush_at_exit
        if flush_at_exit:
            atexit.register(self._at_exit)

    # -- the loop's side -------------------------------------------------------------------

    def save(
        self,
        path: str | Path | None = None,
        *,
        step: int | None = None,
        metrics: Mapping[str, float] | None = None,
        message: str | None = None,
        tag: bool | None = None,
    ) -> None:
        """Version the checkpoint at ``path`` (default: the workspace's tracked folder) in the
        background; returns at once (or, with ``supersede=False``, once the slot is free).

        Raises:
            CheckpointError: an earlier background push failed (``on_error="raise"``).
        """
        self._raise_unreported()
        request = SaveRequest(
            path=Path(path).absolute() if path is not None else None, step=step,
            metrics={str(k): float(v) for k, v in (metrics or {}).items()},
            message=message if message is not None else (f"step {step}" if step is not None
                                                          else "checkpoint"),
            tag=self._tag if tag is None else tag)
        with self._cond:
            if self._closed:
                raise CheckpointError("this Checkpointer is closed",
                                      hint="make a new Checkpointer to save again")
            if self._waiting is not None:
                if self._supersede:
                    self.superseded += 1
                    log.info("checkpoint of step %s superseded by step %s before its push began",
                             self._waiting.step, step)
                else:
                    while self._waiting is not None and not self._closed:
                        self._cond.wait()
            self._waiting = request
            self._cond.notify_all()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every checkpoint asked for is versioned (or failed); False on timeout.

        Raises:
            CheckpointError: a background push failed (``on_error="raise"``).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._waiting is not None or self._running is not None:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                if not self._thread.is_alive():
                    break
                self._cond.wait(left)
        self._raise_unreported()
        return True

    @property
    def busy(self) -> bool:
        """A push is running or waiting."""
        with self._cond:
            return self._waiting is not None or self._running is not None

    def close(self, timeout: float | None = None) -> None:
        """Flush, then stop the background thread.

        Raises:
            CheckpointError: a background push failed and was not reported yet.
        """
        try:
            self.flush(timeout)
        finally:
            with self._cond:
                self._closed = True
                self._cond.notify_all()
            self._thread.join(timeout=5.0)
            if self._flush_at_exit:
                atexit.unregister(self._at_exit)

    def __enter__(self) -> Checkpointer:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the loop failed: still push what is waiting, but do not hide its error
            try:
                self.close()
            except CheckpointError as exc:
                log.warning("%s", exc)

    def _raise_unreported(self) -> None:
        with self._cond:
            pending, self._unreported = self._unreported, []
        if pending and self._on_error == "raise":
            raise pending[-1]

    def _at_exit(self) -> None:
        try:
            self.close()
        except CheckpointError as exc:
            log.error("cpv: the last checkpoint was not versioned: %s", exc.one_line())

    # -- the background thread -------------------------------------------------------------

    def _run(self) -> None:
        _lower_priority(self._nice)
        service: WorkspaceService | None = None
        try:
            while True:
                with self._cond:
                    while self._waiting is None and not self._closed:
                        self._cond.wait()
                    if self._waiting is None:
                        return
                    request, self._waiting = self._waiting, None
                    self._running = request
                    self._cond.notify_all()
                try:
                    if service is None:
                        service = self._open()
                    self._push(service, request)
                except Exception as exc:  # noqa: BLE001 - every failure is reported, never lost
                    self._failed(request, exc)
                finally:
                    with self._cond:
                        self._running = None
                        self._cond.notify_all()
        finally:
            if service is not None:
                service.close()

    def _open(self) -> WorkspaceService:
        from cpv.service import WorkspaceService

        return WorkspaceService.open(self._workspace, config=self._config, interface="python")

    def _push(self, service: WorkspaceService, request: SaveRequest) -> None:
        started = time.monotonic()
        extra = {"step": request.step} if request.step is not None else None
        with _as_folder(request.path) as source:
            result = service.upload(self._kind, path=source, metrics=request.metrics or None,
                                    message=request.message, extra=extra,
                                    publish=not request.tag)
        tags: list[str] = []
        if request.tag and result.changed:
            tags = service.tag([self._kind], message=request.message)
        self.saved.append(SavedVersion(
            step=request.step, snapshot_id=result.snapshot_id, commit=result.commit,
            tags=tuple(tags), uploaded_bytes=result.uploaded_bytes,
            total_bytes=result.total_bytes, seconds=time.monotonic() - started))
        log.info("versioned the checkpoint of step %s (%s) in %.1f s", request.step,
                 result.snapshot_id[:12], time.monotonic() - started)

    def _failed(self, request: SaveRequest, exc: Exception) -> None:
        what = exc.one_line() if isinstance(exc, CPVError) else f"{type(exc).__name__}: {exc}"
        error = CheckpointError(
            f"the checkpoint of step {request.step} was not versioned: {what}",
            step=request.step,
            hint="training went on; the next save retries (a re-run uploads only what is "
                 "missing)")
        error.__cause__ = exc
        log.warning("%s", error.one_line())
        with self._cond:
            self.failures.append(error)
            del self.failures[:-100]
            self._unreported.append(error)


def _lower_priority(nice: int) -> None:
    """Lower this thread's CPU priority; the push's worker threads, started from it, inherit
    it. Linux only: there a thread id names one thread, elsewhere it would renice the whole
    process, training loop included."""
    if nice <= 0 or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError as exc:
        log.debug("could not lower the push's CPU priority: %s", exc)


@contextlib.contextmanager
def _as_folder(path: Path | None) -> Iterator[Path | None]:
    """A checkpoint that is one file (Lightning's ``epoch=1-step=200.ckpt``) is versioned as a
    folder holding that file under its own name: the version of a tracked folder is a folder.

    The file is hard-linked into a private folder beside it (copied where links fail), which
    also keeps its bytes readable if the training library rotates the file away mid-push.
    """
    if path is None or not path.is_file():
        yield path
        return
    stage = Path(tempfile.mkdtemp(prefix=".cpv-stage-", dir=path.parent))
    try:
        try:
            os.link(path, stage / path.name)
        except OSError:
            shutil.copy2(path, stage / path.name)
        yield stage
    finally:
        shutil.rmtree(stage, ignore_errors=True)


__all__ = ["Checkpointer", "SaveRequest", "SavedVersion"]
