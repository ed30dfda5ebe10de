"""Hugging Face ``transformers``: version every checkpoint the ``Trainer`` saves, in the background.

::

    from cpv.integrations.transformers import CPVCallback
    trainer = Trainer(..., callbacks=[CPVCallback("path/to/workspace")])

On each save the callback hands the ``checkpoint-<step>`` folder, the step and the latest logged
metrics to a :class:`~cpv.Checkpointer`; training goes on while it is pushed. Only the main
process versions (the Trainer's checkpoint folder is complete there); at the end of training the
callback waits for the last push and reports a failure as :class:`~cpv.errors.CheckpointError`.
Keep ``save_total_limit`` unset or above 1 so a folder is not deleted while it is pushed.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from cpv.checkpointer import Checkpointer


def latest_metrics(log_history: list[dict[str, Any]]) -> dict[str, float]:
    """The newest value of every numeric metric the Trainer logged (loss, eval_loss, ...)."""
    out: dict[str, float] = {}
    for entry in log_history:
        for name, value in entry.items():
            if name in ("step", "epoch") or isinstance(value, bool):
                continue
            if isinstance(value, int | float) and math.isfinite(value):
                out[name] = float(value)
    return out


class CPVCallback(TrainerCallback):
    """Version each saved checkpoint; arguments are :class:`~cpv.Checkpointer`'s."""

    def __init__(self, workspace: str | Path | None = None, **options: Any) -> None:
        self.checkpointer = Checkpointer(workspace, **options)

    def on_save(self, args: TrainingArguments, state: TrainerState, control: TrainerControl,
                **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        folder = Path(args.output_dir or ".") / f"{PREFIX_CHECKPOINT_DIR}-{state.global_step}"
        self.checkpointer.save(folder, step=state.global_step,
                               metrics=latest_metrics(state.log_history))

    def on_train_end(self, args: TrainingArguments, state: TrainerState,
                     control: TrainerControl, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.checkpointer.flush()
