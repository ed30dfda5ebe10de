"""Metrics: validation, JSON files, the tag-message line, comparisons."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpv.errors import FormatError, LocalIOError
from cpv.versioning.metrics import (
    MetricDelta,
    compare,
    format_metrics_trailer,
    load_metrics_file,
    merge_metrics,
    normalize_metrics,
    parse_metrics_trailer,
    resolve_metrics,
    strip_metrics_trailer,
)


def test_normalize_sorts_and_converts_to_float() -> None:
    result = normalize_metrics({"loss": 0.245, "accuracy": 1, "epoch": 3})
    assert result == {"accuracy": 1.0, "epoch": 3.0, "loss": 0.245}
    assert list(result) == ["accuracy", "epoch", "loss"]
    assert all(isinstance(v, float) for v in result.values())


@pytest.mark.parametrize(
    ("metrics", "match"),
    [({"loss": float("nan")}, "finite"), ({"loss": float("inf")}, "finite"),
     ({"loss": "0.2"}, "number"), ({"ok": True}, "number"), ({"": 1.0}, "name"),
     ({1: 1.0}, "name"), ({"a\nb": 1.0}, "control"), ({"loss": None}, "number")],
)
def test_bad_metrics_are_refused(metrics: dict[object, object], match: str) -> None:
    with pytest.raises(FormatError, match=match) as info:
        normalize_metrics(metrics)  # type: ignore[arg-type]
    assert info.value.hint


def test_load_from_json_file(tmp_path: Path) -> None:
    file = tmp_path / "metrics.json"
    file.write_text('{"loss": 0.25, "accuracy": 0.97}')
    assert load_metrics_file(file) == {"accuracy": 0.97, "loss": 0.25}
    assert resolve_metrics(str(file)) == resolve_metrics(file) == {"accuracy": 0.97, "loss": 0.25}
    assert resolve_metrics({"a": 1}) == {"a": 1.0}
    assert resolve_metrics(None) == {}


def test_bad_metrics_files(tmp_path: Path) -> None:
    with pytest.raises(LocalIOError, match="cannot read metrics file"):
        load_metrics_file(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("loss=0.2")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_metrics_file(bad)
    bad.write_text("[0.2]")
    with pytest.raises(FormatError, match="JSON object"):
        load_metrics_file(bad)
    bad.write_text('{"loss": {"train": 0.2}}')
    with pytest.raises(FormatError, match=str(bad).replace("\\", "\\\\")):
        load_metrics_file(bad)


def test_trailer_round_trip() -> None:
    trailer = format_metrics_trailer({"loss": 0.25, "acc": 1})
    message = "Baseline run\n\nwith more data\n\n" + trailer
    assert message.endswith('cpv-metrics: {"acc": 1, "loss": 0.25}')
    assert parse_metrics_trailer(message) == {"acc": 1.0, "loss": 0.25}
    assert strip_metrics_trailer(message) == "Baseline run\n\nwith more data"
    assert parse_metrics_trailer("no metrics here") is None
    assert parse_metrics_trailer("cpv-metrics: {broken") is None
    assert parse_metrics_trailer('cpv-metrics: {"a": "x"}') is None


def test_compare_and_merge() -> None:
    rows = compare({"loss": 0.5, "acc": 0.9}, {"loss": 0.25, "f1": 0.7})
    assert rows == [
        MetricDelta("acc", 0.9, None, None),
        MetricDelta("f1", None, 0.7, None),
        MetricDelta("loss", 0.5, 0.25, -0.25),
    ]
    assert merge_metrics({"a": 1.0, "b": 2.0}, {"b": 3.0}) == {"a": 1.0, "b": 3.0}
