"""Version numbers and tag names: numeric order, parsing, auto-increment."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cpv.errors import InvalidTagError
from cpv.versioning.tags import (
    FIRST_VERSION,
    Version,
    coerce_version,
    next_version,
    parse_tag,
    tag_name,
    try_parse_tag,
    versions_of_kind,
)

components = st.integers(min_value=0, max_value=999_999_999)


def test_order_is_numeric_not_lexicographic() -> None:
    tags = ["v0.9", "v0.10", "v0.2", "v1.0", "v0.11"]
    versions = sorted(Version.parse(t) for t in tags)
    assert [str(v) for v in versions] == ["v0.2", "v0.9", "v0.10", "v0.11", "v1.0"]
    # The seed's bug, for contrast: string order puts v0.9 after v0.10.
    assert max(["v0.9", "v0.10"]) == "v0.9"
    assert max(Version.parse(t) for t in ["v0.9", "v0.10"]) == Version(0, 10)


def test_next_version_bumps_the_numerically_greatest_minor() -> None:
    assert next_version([]) == FIRST_VERSION == Version(0, 1)
    assert next_version([Version(0, 9), Version(0, 3)]) == Version(0, 10)
    assert next_version([Version(1, 0), Version(0, 12)]) == Version(1, 1)
    assert Version(1, 9).next_major() == Version(2, 0)


@pytest.mark.parametrize(
    ("name", "kind", "version"),
    [("v1.0", "model", Version(1, 0)), ("v0.10", "model", Version(0, 10)),
     ("data-v2.3", "data", Version(2, 3)), ("v999999999.0", "model", Version(999_999_999, 0))],
)
def test_parse_tag(name: str, kind: str, version: Version) -> None:
    assert parse_tag(name) == (kind, version)
    assert tag_name(parse_tag(name)[0], version) == name


@pytest.mark.parametrize(
    "name",
    ["", "v", "v1", "1.0", "v1.0.0", "V1.0", "v01.0", "v1.01", "v-1.0", "v1.-1", "v1.0 ",
     " v1.0", "data-1.0", "datav1.0", "data-v1", "model-v1.0", "v1.0\n", "v1e3.0",
     "v1234567890.0", "v\u0661.\u0660"],
)
def test_invalid_tag_strings_are_refused(name: str) -> None:
    with pytest.raises(InvalidTagError) as info:
        parse_tag(name)
    assert info.value.tag == name
    assert info.value.hint
    assert try_parse_tag(name) is None


def test_version_parse_accepts_bare_numbers_but_not_noise() -> None:
    assert Version.parse("1.2") == Version.parse("v1.2") == Version(1, 2)
    for bad in ["v1", "1", "v1.2.3", "x1.2", ""]:
        with pytest.raises(InvalidTagError):
            Version.parse(bad)
    with pytest.raises(InvalidTagError):
        Version(-1, 0)
    with pytest.raises(InvalidTagError):
        Version(True, 0)


def test_coerce_version_by_kind() -> None:
    assert coerce_version("model", "v1.2") == Version(1, 2)
    assert coerce_version("data", "data-v1.2") == Version(1, 2)
    assert coerce_version("data", "1.2") == Version(1, 2)
    assert coerce_version("model", Version(3, 4)) == Version(3, 4)
    with pytest.raises(InvalidTagError, match=r"data-v1\.2"):
        coerce_version("model", "data-v1.2")
    with pytest.raises(InvalidTagError) as info:
        coerce_version("data", "d1.2")
    assert "data-v" in info.value.hint


def test_versions_of_kind_skips_foreign_tags() -> None:
    names = ["v0.1", "data-v0.1", "release-2024", "v0.10", "data-v0.3", "latest"]
    assert versions_of_kind(names, "model") == {Version(0, 1): "v0.1", Version(0, 10): "v0.10"}
    assert versions_of_kind(names, "data") == {Version(0, 1): "data-v0.1",
                                               Version(0, 3): "data-v0.3"}


@given(components, components, components, components)
def test_order_matches_integer_tuples(a: int, b: int, c: int, d: int) -> None:
    assert (Version(a, b) < Version(c, d)) == ((a, b) < (c, d))


@given(components, components, st.sampled_from(["model", "data"]))
def test_format_parse_round_trip(major: int, minor: int, kind: str) -> None:
    version = Version(major, minor)
    assert parse_tag(tag_name(kind, version)) == (kind, version)  # type: ignore[arg-type]
    assert Version.parse(str(version)) == version
