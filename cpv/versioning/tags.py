"""Version numbers and the Git tag names that carry them.

A version is ``v{major}.{minor}`` with two non-negative integers, ordered *numerically*:
``v0.9 < v0.10 < v1.0``. (The seed sketch picked the latest tag with ``max()`` over strings, which
ranks ``v0.9`` above ``v0.10``; that is the bug this module exists to avoid.)

Tag names by kind of tracked path:

=========  ====================  ===========
kind       tag                   example
=========  ====================  ===========
``model``  ``v{major}.{minor}``  ``v1.0``
``data``   ``data-v{major}.{minor}``  ``data-v1.0``
=========  ====================  ===========

Any other tracked path (``outputs/checkpoint-500``, ``runs/llama-ft/step-4000``) has its own
version line, named GTO's way: ``{name}@v{major}.{minor}`` (``outputs-checkpoint-500@v0.1``),
where ``name`` is the path's manifest name (:func:`cpv.versioning.manifest.manifest_name`, or
the ``--name`` its first push chose, checked by :func:`line_name_problem`). The
default folders keep their seed tags: the line named ``model`` (the ``model/`` folder) is
``v0.1``, the line named ``data`` (``data/``) is ``data-v0.1``. :func:`line_tag` and
:func:`parse_line_tag` are the one rule for both.

Numbers are written without leading zeros (``v01.2`` is refused: it would be a second spelling of
``v1.2`` and Git would happily hold both) and have at most 9 digits.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, get_args

from cpv.errors import InvalidTagError

Kind = Literal["model", "data"]
"""What a tracked path holds: model weights or a data set (split)."""

KINDS: Final[tuple[Kind, ...]] = get_args(Kind)

TAG_PREFIXES: Final[dict[Kind, str]] = {"model": "v", "data": "data-v"}

_MAX_COMPONENT: Final = 999_999_999
_NUMBER = r"(0|[1-9][0-9]{0,8})"
_VERSION_RE: Final = re.compile(rf"v?{_NUMBER}\.{_NUMBER}")
_TAG_RE: Final = re.compile(rf"(?P<prefix>data-v|v){_NUMBER}\.{_NUMBER}")


def check_kind(kind: str) -> Kind:
    """Return ``kind`` typed as :data:`Kind`, or raise ValueError for anything else.

    A wrong kind is a programming error of the caller (the API only ever passes the two
    literals), so it is a plain ``ValueError`` rather than a user-facing CPVError.
    """
    if kind == "model":
        return "model"
    if kind == "data":
        return "data"
    raise ValueError(f"kind must be 'model' or 'data', not {kind!r}")


@dataclass(frozen=True, slots=True, order=True)
class Version:
    """A ``v{major}.{minor}`` version; comparisons are numeric (``v0.9 < v0.10``)."""

    major: int
    minor: int

    def __post_init__(self) -> None:
        for name in ("major", "minor"):
            value = getattr(self, name)
            if (
                not isinstance(value, int)
                or isinstance(value, bool)
                or not 0 <= value <= _MAX_COMPONENT
            ):
                raise InvalidTagError(
                    f"v{self.major}.{self.minor}",
                    hint=f"{name} must be an integer between 0 and {_MAX_COMPONENT}",
                )

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse ``"v1.2"`` (or ``"1.2"``) into ``Version(1, 2)``.

        Raises:
            InvalidTagError: ``text`` is not a canonical ``v{major}.{minor}``.
        """
        match = _VERSION_RE.fullmatch(text) if isinstance(text, str) else None
        if match is None:
            raise InvalidTagError(str(text))
        return cls(int(match.group(1)), int(match.group(2)))

    def __str__(self) -> str:
        return f"v{self.major}.{self.minor}"

    def next_minor(self) -> Version:
        """``v1.9`` -> ``v1.10``."""
        return Version(self.major, self.minor + 1)

    def next_major(self) -> Version:
        """``v1.9`` -> ``v2.0``."""
        return Version(self.major + 1, 0)

    def tag(self, kind: Kind) -> str:
        """The Git tag name of this version for ``kind`` (``v1.2`` or ``data-v1.2``)."""
        return tag_name(kind, self)


FIRST_VERSION: Final = Version(0, 1)
"""What auto-increment gives when no version of a kind exists yet."""


def tag_name(kind: Kind, version: Version) -> str:
    """Format the tag of ``version`` for ``kind``: ``v1.2`` for models, ``data-v1.2`` for data."""
    return f"{TAG_PREFIXES[check_kind(kind)]}{version.major}.{version.minor}"


def parse_tag(name: str) -> tuple[Kind, Version]:
    """Split a tag name into its kind and version.

    Raises:
        InvalidTagError: ``name`` is neither ``v{major}.{minor}`` nor ``data-v{major}.{minor}``.
    """
    match = _TAG_RE.fullmatch(name) if isinstance(name, str) else None
    if match is None:
        raise InvalidTagError(
            str(name), hint="use v{major}.{minor} for models or data-v{major}.{minor} for data"
        )
    kind: Kind = "data" if match.group("prefix") == "data-v" else "model"
    return kind, Version(int(match.group(2)), int(match.group(3)))


def try_parse_tag(name: str) -> tuple[Kind, Version] | None:
    """Like :func:`parse_tag`, but ``None`` for tags that are not cpv versions (``release-x``)."""
    try:
        return parse_tag(name)
    except InvalidTagError:
        return None


def coerce_version(kind: Kind, value: Version | str) -> Version:
    """Accept what a user may type for a ``kind`` version and return the :class:`Version`.

    ``Version(1, 2)``, ``"v1.2"`` and ``"1.2"`` are accepted for either kind; the full tag name of
    the *same* kind (``"data-v1.2"`` for data) is accepted too. A data tag given for a model (or
    the reverse) is refused, because silently re-prefixing it would tag something else than the
    user named.

    Raises:
        InvalidTagError: the string is not a valid version of this kind.
    """
    kind = check_kind(kind)
    if isinstance(value, Version):
        return value
    if not isinstance(value, str):
        raise InvalidTagError(repr(value), hint="pass a string such as 'v1.0' or a Version")
    parsed = try_parse_tag(value)
    if parsed is not None:
        tag_kind, version = parsed
        if tag_kind != kind:
            raise InvalidTagError(
                value,
                hint=f"{value} is a {tag_kind} tag; a {kind} version is written "
                f"{TAG_PREFIXES[kind]}{{major}}.{{minor}}",
            )
        return version
    try:
        return Version.parse(value)
    except InvalidTagError:
        raise InvalidTagError(
            value, hint=f"use {TAG_PREFIXES[kind]}{{major}}.{{minor}}, e.g. {TAG_PREFIXES[kind]}1.0"
        ) from None


def latest_version(versions: Iterable[Version]) -> Version | None:
    """The numerically greatest version, or ``None`` for an empty iterable."""
    return max(versions, default=None)


def next_version(existing: Iterable[Version]) -> Version:
    """Auto-increment: bump the minor of the greatest existing version; ``v0.1`` if none."""
    latest = latest_version(existing)
    return FIRST_VERSION if latest is None else latest.next_minor()


def versions_of_kind(tag_names: Iterable[str], kind: Kind) -> dict[Version, str]:
    """Map each version of ``kind`` found among ``tag_names`` to its tag; other tags are skipped."""
    kind = check_kind(kind)
    found: dict[Version, str] = {}
    for name in tag_names:
        parsed = try_parse_tag(name)
        if parsed is not None and parsed[0] == kind:
            found[parsed[1]] = name
    return found


LINE_NAME: Final = r"[a-z0-9_][a-z0-9._-]{0,127}"
"""What a version line's name may be (and so a manifest's file name): lower case, digits,
``._-``, not starting with ``.`` or ``-``, at most 128 characters. The one rule: a path's slug
(:func:`cpv.versioning.manifest.manifest_name`) always obeys it, a ``--name`` is checked by
:func:`line_name_problem`, and :func:`parse_line_tag` reads tags by it."""

_LINE_NAME_RE: Final = re.compile(LINE_NAME)
_LINE_TAG_RE: Final = re.compile(rf"(?P<name>{LINE_NAME})@v{_NUMBER}\.{_NUMBER}")


def line_name_problem(name: object) -> str | None:
    """Why ``name`` cannot name a version line of a tracked path other than ``model/`` and
    ``data/`` (their names ``model`` and ``data`` are the seed's tags), or None if it can."""
    if not isinstance(name, str) or not _LINE_NAME_RE.fullmatch(name):
        return ("a line name is 1-128 characters of a-z, 0-9, '.', '_' and '-', starting with "
                "a letter, digit or '_'")
    if name in KINDS:
        first = tag_name(check_kind(name), FIRST_VERSION)
        return f"{name!r} is the line of the {name}/ folder (tags {first}, ...)"
    return None


def line_tag(line: str, version: Version) -> str:
    """The tag of ``version`` on the version line ``line`` (a tracked path's manifest name).

    ``model`` and ``data`` are the seed layout's lines and keep ``v0.1`` / ``data-v0.1``; every
    other line is ``{line}@v0.1`` (GTO's convention), so versions stay numeric and ordered per
    tracked path and one line's numbers never take another's.
    """
    if line in KINDS:
        return tag_name(check_kind(line), version)
    return f"{line}@v{version.major}.{version.minor}"


def parse_line_tag(tag: str) -> tuple[str, Version] | None:
    """``v0.2`` -> ``("model", v0.2)``, ``data-v0.2`` -> ``("data", ...)``,
    ``outputs-checkpoint-500@v0.2`` -> ``("outputs-checkpoint-500", ...)``; None for any other
    name (a branch, ``release-x``)."""
    parsed = try_parse_tag(tag)
    if parsed is not None:
        return parsed[0], parsed[1]
    match = _LINE_TAG_RE.fullmatch(tag)
    if match is None or match.group("name") in KINDS:
        return None
    return match.group("name"), Version(int(match.group(2)), int(match.group(3)))


def versions_of_line(tag_names: Iterable[str], line: str) -> dict[Version, str]:
    """Map each version of the line ``line`` found among ``tag_names`` to its tag."""
    found: dict[Version, str] = {}
    for name in tag_names:
        parsed = parse_line_tag(name)
        if parsed is not None and parsed[0] == line:
            found[parsed[1]] = name
    return found


def coerce_line_version(line: str, value: Version | str) -> Version:
    """What a user may type for a version of ``line``: ``v1.2``, ``1.2`` or the line's own full
    tag (``name@v1.2``); another line's tag is refused rather than silently re-prefixed.

    Raises:
        InvalidTagError: not a version of this line.
    """
    if line in KINDS:
        return coerce_version(check_kind(line), value)
    if isinstance(value, str):
        parsed = parse_line_tag(value)
        if parsed is not None and "@" in value:
            if parsed[0] != line:
                raise InvalidTagError(value, hint=f"{value} is a tag of {parsed[0]}; a version "
                                      f"of {line} is written {line}@v{{major}}.{{minor}}")
            return parsed[1]
    return coerce_version("model", value)
