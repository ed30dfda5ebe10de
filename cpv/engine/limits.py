"""The transfer knobs and their bounds, declared once: the engine's pools size themselves by
:class:`TransferLimits`, and the configuration validates its settings against the same ranges.

A module of its own so that reading the configuration (every command, a no-op push too) does
not import the transfer machinery (:mod:`cpv.engine.transfer`, which re-exports these).
"""

from __future__ import annotations

from dataclasses import dataclass

from cpv.store import MiB

#: The bounds of the transfer knobs, declared once: the configuration validates against them.
WORKERS_RANGE = (1, 256)
PART_SIZE_RANGE = (5 * MiB, 512 * MiB)  # 5 MiB: S3's multipart minimum


@dataclass(frozen=True, slots=True)
class TransferLimits:
    """Concurrency and memory knobs for push and pull.

    Peak buffer memory is about ``(workers + 2) * part_size`` on push and
    ``(workers + 2) * max_range`` on pull.
    """

    workers: int = 8
    hash_workers: int = 2
    part_size: int = 16 * MiB
    max_range: int = 16 * MiB
    range_gap: int = 1 * MiB
    serial: bool = False
    """Run every task inline on the submitting thread: deterministic, for tests and debugging."""

    def __post_init__(self) -> None:
        if not WORKERS_RANGE[0] <= self.workers <= WORKERS_RANGE[1] or not (
                1 <= self.hash_workers <= 64):
            raise ValueError("workers must be 1..256 and hash_workers 1..64")
        if not PART_SIZE_RANGE[0] <= self.part_size <= PART_SIZE_RANGE[1]:
            raise ValueError("part_size must be between 5 MiB and 512 MiB")
        if not 1 * MiB <= self.max_range <= 512 * MiB:
            raise ValueError("max_range must be between 1 MiB and 512 MiB")
