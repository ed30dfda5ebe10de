"""Metrics of a version: validated, stored, repeated in tag messages, compared.

Metrics are a flat mapping of name -> finite number (``{"loss": 0.245, "accuracy": 0.967}``).
They live in each version's manifest (the authoritative copy) and are repeated in the annotated
tag's message as one ``cpv-metrics: {...}`` line, so ``git show v1.0`` tells a reader the numbers
without cpv installed.

They can be given as a mapping or as a JSON file holding one object (``metrics.json``). Numbers
are stored as floats; NaN and infinities are refused because JSON cannot carry them portably and
a comparison against them means nothing.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cpv.errors import FormatError, LocalIOError

METRICS_TRAILER: Final = "cpv-metrics:"
"""Prefix of the line in an annotated tag message that repeats the version's metrics as JSON."""

_MAX_NAME_LEN: Final = 200


def _bad(source: str, what: str, hint: str) -> FormatError:
    return FormatError(f"{source}: {what}", hint=hint)


def normalize_metrics(values: Mapping[str, object], *, source: str = "metrics") -> dict[str, float]:
    """Validate ``values`` and return them as a name-sorted ``dict[str, float]``.

    Names must be non-empty strings without control characters (at most 200 characters);
    values must be ints or floats (not bools), finite.

    Raises:
        FormatError: naming ``source`` and the offending metric.
    """
    if not isinstance(values, Mapping):
        raise _bad(source, f"expected a mapping of name -> number, got {type(values).__name__}",
                   'pass e.g. {"loss": 0.25, "accuracy": 0.97}')
    result: dict[str, float] = {}
    for name, value in values.items():
        if not isinstance(name, str) or not name or len(name) > _MAX_NAME_LEN:
            raise _bad(source, f"invalid metric name {name!r}",
                       f"metric names are non-empty strings of at most {_MAX_NAME_LEN} characters")
        if any(ord(ch) < 0x20 or ch == "\x7f" for ch in name):
            raise _bad(source, f"metric name {name!r} contains control characters",
                       "use printable names such as 'val_loss'")
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise _bad(source, f"metric {name!r} is {value!r}, not a number",
                       "metric values are ints or floats")
        number = float(value)
        if not math.isfinite(number):
            raise _bad(source, f"metric {name!r} is {value!r}, not a finite number",
                       "NaN and infinities cannot be stored; record a finite value")
        result[name] = number
    return dict(sorted(result.items()))


def load_metrics_file(path: str | os.PathLike[str]) -> dict[str, float]:
    """Read metrics from a JSON file holding one object of name -> number.

    Raises:
        LocalIOError: the file cannot be read.
        FormatError: it is not JSON, not an object, or holds a non-number.
    """
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise LocalIOError(f"cannot read metrics file {file}: {exc}", path=str(file),
                           hint="pass an existing JSON file, or metrics as a mapping") from exc
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise _bad(str(file), f"not valid JSON ({exc})",
                   'write one JSON object, e.g. {"loss": 0.25}') from exc
    if not isinstance(data, dict):
        raise _bad(str(file), f"expected a JSON object, got {type(data).__name__}",
                   'write one JSON object, e.g. {"loss": 0.25}')
    return normalize_metrics(data, source=str(file))


def resolve_metrics(
    metrics: Mapping[str, object] | str | os.PathLike[str] | None,
) -> dict[str, float]:
    """Turn what a caller passed as ``metrics=`` into validated metrics.

    ``None`` -> ``{}``; a mapping is validated; a ``str``/path names a JSON file.
    """
    if metrics is None:
        return {}
    if isinstance(metrics, str | os.PathLike):
        return load_metrics_file(metrics)
    return normalize_metrics(metrics)


def merge_metrics(*layers: Mapping[str, float]) -> dict[str, float]:
    """Merge metric mappings, later ones winning per name; result sorted by name."""
    merged: dict[str, float] = {}
    for layer in layers:
        merged.update(layer)
    return dict(sorted(merged.items()))


def format_metrics_trailer(metrics: Mapping[str, float]) -> str:
    """The ``cpv-metrics: {...}`` line for a tag message (compact, sorted JSON)."""
    return f"{METRICS_TRAILER} " + json.dumps(
        dict(sorted(metrics.items())), separators=(", ", ": "), ensure_ascii=False
    )


def parse_metrics_trailer(message: str) -> dict[str, float] | None:
    """Find the ``cpv-metrics:`` line in a tag message; ``None`` if absent or unreadable.

    Tag messages are free text written by anyone, so a damaged line is not an error here: the
    manifest holds the authoritative metrics and this is only a convenience copy.
    """
    for line in reversed(message.splitlines()):
        if line.startswith(METRICS_TRAILER):
            try:
                data = json.loads(line[len(METRICS_TRAILER):])
                return normalize_metrics(data, source="tag message") if isinstance(
                    data, dict) else None
            except (json.JSONDecodeError, RecursionError, FormatError):
                return None
    return None


def strip_metrics_trailer(message: str) -> str:
    """The tag message without cpv's trailer lines, as the user wrote it."""
    lines = [ln for ln in message.splitlines() if not ln.startswith(METRICS_TRAILER)]
    return "\n".join(lines).strip()


@dataclass(frozen=True, slots=True)
class MetricDelta:
    """One row of a comparison: the metric's value in ``a`` and ``b`` and ``b - a``.

    ``a``/``b`` are ``None`` when the metric is missing on that side; ``delta`` is then ``None``.
    """

    name: str
    a: float | None
    b: float | None
    delta: float | None


def compare(a: Mapping[str, float], b: Mapping[str, float]) -> list[MetricDelta]:
    """Compare two versions' metrics: one row per metric name in either, sorted by name."""
    rows: list[MetricDelta] = []
    for name in sorted(set(a) | set(b)):
        va, vb = a.get(name), b.get(name)
        delta = vb - va if va is not None and vb is not None else None
        rows.append(MetricDelta(name=name, a=va, b=vb, delta=delta))
    return rows
