"""cpv: version model checkpoints and data sets; Git holds history, a store holds the bytes."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
