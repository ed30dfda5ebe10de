"""PyTorch Lightning: version every checkpoint ``ModelCheckpoint`` writes, in the background.

::

    from cpv.integrations.lightning import CPVCallback
    trainer = L.Trainer(..., callbacks=[CPVCallback("path/to/workspace")])

Lightning has no hook *after* a checkpoint file is written (``on_save_checkpoint`` runs before,
and checkpoint callbacks run after every other callback of the same hook), so the callback looks
at the checkpoint callbacks' saved paths at the next hook (batch end, validation end, epoch end,
training end) and hands each new file, with the step and the logged metrics, to a
:class:`~cpv.Checkpointer`. The end of training flushes, so the last checkpoint is versioned
before ``fit`` returns. Only global rank 0 versions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from cpv.checkpointer import Checkpointer


class CPVCallback(Callback):
    """Version each new checkpoint file; arguments are :class:`~cpv.Checkpointer`'s."""

    def __init__(self, workspace: str | Path | None = None, **options: Any) -> None:
        self.checkpointer = Checkpointer(workspace, **options)
        self._seen: set[tuple[str, int]] = set()

    def _collect(self, trainer: pl.Trainer) -> None:
        if not trainer.is_global_zero:
            return
        paths: set[str] = set()
        for cb in trainer.checkpoint_callbacks:
            if isinstance(cb, ModelCheckpoint):
                paths.update(p for p in (cb.last_model_path, cb.best_model_path, *cb.best_k_models)
                             if p)
        fresh = []
        for p in paths:
            try:
                stamp = (p, Path(p).stat().st_mtime_ns)
            except OSError:
                continue  # rotated away already
            if stamp not in self._seen:
                self._seen.add(stamp)
                fresh.append((stamp[1], p))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if v.numel() == 1 and math.isfinite(float(v))}
        for _, p in sorted(fresh):
            self.checkpointer.save(p, step=trainer.global_step, metrics=metrics)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        self._collect(trainer)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._collect(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._collect(trainer)

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._collect(trainer)
        if trainer.is_global_zero:
            self.checkpointer.flush()
