"""tqdm bars behind the library's :class:`cpv.progress.Progress` protocol.

The library never draws; the CLI hands it this. Bars go to stderr, show bytes, rate and ETA,
and are off when stderr is not a terminal or with ``--quiet``/``--json``.
"""

from __future__ import annotations

import os
import sys
import threading
from functools import cache
from typing import TYPE_CHECKING, Any

from cpv.cli.render import fmt_bytes
from cpv.progress import Phase, Unit

if TYPE_CHECKING:
    from tqdm import tqdm

_KNOWN = "{desc}: {percentage:3.0f}%|{bar}| {done}/{all} [{elapsed}<{remaining}, {speed}]"
_UNKNOWN = "{desc}: {done} [{elapsed}, {speed}]"

_LABELS: dict[str, str] = {
    "scan": "scanning",
    "list": "listing",
    "check": "checking",
    "hash": "hashing",
    "upload": "uploading",
    "download": "downloading",
    "write": "writing",
    "verify": "verifying",
    "gc": "collecting",
}


def _terminal_size(file: Any) -> tuple[int, int]:
    """The columns and lines of the terminal ``file`` writes to; 0 for what it reports none of.

    A fresh pty or some CI consoles report 0 columns or 0 lines, and tqdm, sizing its bars to
    them, draws nothing at all (0 lines hide every bar). Such bars get a fixed size instead.
    ``shutil.get_terminal_size`` cannot tell: it answers its fallback for a width of 0 and
    passes a height of 0 through.
    """
    try:
        size = os.get_terminal_size(file.fileno())
    except (AttributeError, OSError, ValueError):
        return 0, 0
    return size.columns, size.lines


@cache
def _bar_class() -> type[tqdm]:
    """The bar class, built on first use: a command that draws no bar (``-q``, a pipe, a
    no-op push) does not import tqdm."""
    from tqdm import tqdm

    class _Bar(tqdm):  # type: ignore[misc]
        """Byte counts and rates in the same binary units as every summary line (``12.0 MiB``).

        tqdm's own scaling shows sizes divided by 1024 but rates by 1000, both labelled ``MB``.
        """

        # No monitor thread: it outlives the bars, and a process with a second thread never
        # forks walkers (`cpv push` of data, then model, would push the model in one process).
        monitor_interval = 0

        @property
        def format_dict(self) -> dict[str, Any]:
            d: dict[str, Any] = super().format_dict
            if d.get("unit") == "B":
                elapsed = d.get("elapsed") or 0
                rate = d.get("rate") or (d["n"] / elapsed if elapsed else None)
                d["done"] = fmt_bytes(d["n"])
                d["all"] = fmt_bytes(d["total"]) if d.get("total") else "?"
                d["speed"] = f"{fmt_bytes(rate)}/s" if rate else "- B/s"
            else:
                d["done"], d["all"] = str(d["n"]), str(d.get("total") or "?")
                d["speed"] = f"{d['rate']:.0f} {d.get('unit')}/s" if d.get("rate") else "-"
            return d

    return _Bar


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
            columns, lines = _terminal_size(self._file)
            fixed = columns <= 0 or lines <= 0  # tqdm would size the bars to nothing
            self._bars[phase] = _bar_class()(
                total=total or None,
                desc=_LABELS.get(phase, phase),
                unit=unit,
                bar_format=_KNOWN if total else _UNKNOWN,
                file=self._file,
                leave=False,
                dynamic_ncols=not fixed,
                ncols=(columns if columns > 0 else 80) if fixed else None,
                nrows=(lines if lines > 0 else 24) if fixed else None,
                mininterval=0.2,
                position=len(self._bars),
            )

    def advance(self, phase: Phase, amount: int) -> None:
        bar = self._bars.get(phase)
        if bar is not None:
            with self._lock:
                bar.update(amount)

    def set_total(self, phase: Phase, total: int) -> None:
        """Cheap enough to call per chunk: the next regular redraw shows the new total."""
        bar = self._bars.get(phase)
        if bar is not None:
            with self._lock:
                first = bar.total is None and total
                bar.total = total or None
                bar.bar_format = _KNOWN if total else _UNKNOWN
                if first:
                    bar.refresh()  # show the percentage as soon as there is one

    def announce(self, text: str) -> None:
        """A first line on the terminal at once, before any bar: the command has started."""
        if self._enabled:
            with self._lock:
                self._file.write(f"{text}\r")
                self._file.flush()

    def end(self, phase: Phase) -> None:
        with self._lock:
            bar = self._bars.pop(phase, None)
            if bar is not None:
                bar.close()
            if self._enabled and not self._bars:
                # Leave the cursor at column 0 of a clean line, so the summary that follows
                # on stdout starts at the left edge instead of after a cleared bar.
                self._file.write("\r\x1b[K")
                self._file.flush()
