"""tqdm bars behind the library's :class:`cpv.progress.Progress` protocol.

The library never draws; the CLI hands it this. Bars go to stderr, show bytes, rate and ETA,
and are off when stderr is not a terminal or with ``--quiet``/``--json``.
"""

from __future__ import annotations

import shutil
import sys
import threading
from typing import Any

from tqdm import tqdm

from cpv.progress import Phase, Unit

_LABELS: dict[str, str] = {
    "scan": "scanning",
    "hash": "hashing",
    "upload": "uploading",
    "download": "downloading",
    "write": "writing",
    "verify": "verifying",
    "gc": "collecting",
}


class TqdmProgress:
    """Thread-safe: workers call ``advance`` concurrently; tqdm's own lock is not enough for
    creating and closing bars from several threads."""

    def __init__(self, *, enabled: bool | None = None, file: Any = None) -> None:
        self._file = file if file is not None else sys.stderr
        self._enabled = self._file.isatty() if enabled is None else enabled
        self._bars: dict[str, tqdm] = {}
        self._lock = threading.Lock()

    def begin(self, phase: Phase, *, total: int | None, unit: Unit = "B") -> None:
        if not self._enabled:
            return
        with self._lock:
            if phase in self._bars:
                self._bars[phase].close()
            # A fresh pty or some CI consoles report 0 columns; tqdm then draws nothing.
            narrow = shutil.get_terminal_size((80, 24)).columns <= 0
            self._bars[phase] = tqdm(
                total=total,
                desc=_LABELS.get(phase, phase),
                unit=unit,
                unit_scale=unit == "B",
                unit_divisor=1024 if unit == "B" else 1000,
                file=self._file,
                leave=False,
                dynamic_ncols=not narrow,
                ncols=80 if narrow else None,
                mininterval=0.2,
                position=len(self._bars),
            )

    def advance(self, phase: Phase, amount: int) -> None:
        bar = self._bars.get(phase)
        if bar is not None:
            with self._lock:
                bar.update(amount)

    def set_total(self, phase: Phase, total: int) -> None:
        bar = self._bars.get(phase)
        if bar is not None:
            with self._lock:
                bar.total = total
                bar.refresh()

    def end(self, phase: Phase) -> None:
        with self._lock:
            bar = self._bars.pop(phase, None)
            if bar is not None:
                bar.close()
