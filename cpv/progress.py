"""How long work reports progress without the library drawing anything.

The engine calls a :class:`Progress` it was handed; the default is :data:`NULL_PROGRESS`,
which does nothing. The CLI passes a tqdm-backed implementation (``cpv/cli/progress.py``);
Python users may pass their own. Implementations must be thread-safe (workers call them) and
must accept negative ``advance`` amounts: a retried transfer rewinds what it had reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final, Literal, Protocol, TypeVar

Phase = Literal["scan", "list", "check", "hash", "upload", "download", "write", "verify", "gc"]
Unit = Literal["B", "files", "objects"]


class Progress(Protocol):
    """A sink for progress events. All methods may be called from any thread."""

    def begin(self, phase: Phase, *, total: int | None, unit: Unit = "B") -> None:
        """A phase starts; ``total`` is None when unknown."""

    def advance(self, phase: Phase, amount: int) -> None:
        """``amount`` more units are done (negative on a retry rewind)."""

    def set_total(self, phase: Phase, total: int) -> None:
        """The phase's total became known or changed."""

    def end(self, phase: Phase) -> None:
        """The phase is over."""


class _NullProgress:
    def begin(self, phase: Phase, *, total: int | None, unit: Unit = "B") -> None:
        pass

    def advance(self, phase: Phase, amount: int) -> None:
        pass

    def set_total(self, phase: Phase, total: int) -> None:
        pass

    def end(self, phase: Phase) -> None:
        pass


NULL_PROGRESS: Final[Progress] = _NullProgress()

_T = TypeVar("_T")


def counted(items: Iterable[_T], progress: Progress, phase: Phase, *,
            every: int = 4096) -> Iterator[_T]:
    """``items``, telling ``progress`` of them ``every`` at a time: a loop over 10^6 files
    shows how far it is without a call per file."""
    n = 0
    for item in items:
        yield item
        n += 1
        if n == every:
            progress.advance(phase, n)
            n = 0
    if n:
        progress.advance(phase, n)
