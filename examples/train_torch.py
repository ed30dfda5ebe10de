"""A plain PyTorch loop that versions a checkpoint every N steps without waiting for the upload.

    python examples/train_torch.py --workspace path/to/workspace [--steps 300] [--every 100]

Each checkpoint is written to its own folder (``ckpt/step-<N>``) and handed to a
:class:`cpv.Checkpointer`; the push runs in the background while training goes on, and the
last one is flushed when the loop ends.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from cpv import Checkpointer
from cpv.api import CPVConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--config", type=Path, help="a cpv config file (default: the user's)")
    args = parser.parse_args()
    config = CPVConfig.load(path=args.config) if args.config else None

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    with Checkpointer(args.workspace, config=config, supersede=False) as checkpointer:
        for step in range(1, args.steps + 1):
            x = torch.randn(16, 32)
            loss = torch.nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
            optimizer.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimizer.step()
            if step % args.every == 0:
                folder = args.workspace / "ckpt" / f"step-{step}"
                folder.mkdir(parents=True, exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "step": step}, folder / "checkpoint.pt")
                checkpointer.save(folder, step=step, metrics={"loss": loss.item()})
    print(f"versioned steps {[s.step for s in checkpointer.saved]}")


if __name__ == "__main__":
    main()
