"""The one path rule of cpv (invariant 7): which relative paths and symlinks a tree may hold.

Manifests (versioning) and snapshots (engine) come from other people's repositories, and a push
records the user's own tree; all three must agree on what a path may be, or a path one layer
accepts becomes a write the other never checked (a ``.git`` segment accepted by the engine
plants Git hooks on the puller's machine). So both layers import this leaf module, which
knows nothing but :mod:`cpv.errors`.

A path is a non-empty, ``/``-separated, relative path whose segments are neither empty, ``.``,
``..`` nor ``.git`` (any case, with or without trailing dots or spaces, which Windows and macOS
strip), holding no NUL and no backslash, with no drive prefix, each segment at most 255 bytes,
and valid UTF-8 (a name Python decoded with ``surrogateescape`` is not).

A symlink's target must be relative and, resolved *against the other links of the same tree*
(a link whose target climbs through another link), stay inside the tree. Links are resolved
lexically, never on the disk, so the answer depends only on the tree being checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from cpv.errors import UnsafePathError

MAX_SEGMENT_BYTES: Final = 255
MAX_LINK_HOPS: Final = 40
"""Links followed while resolving one target; Linux gives ELOOP after 40 as well."""

_DRIVE: Final = re.compile(r"[A-Za-z]:")
_SEGMENT = r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}"
_PLAIN: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
"""Paths that obey the rule at a glance: ASCII segments of letters, digits, ``._-`` not starting
with ``.`` (so no ``.``, ``..`` or ``.git``), at most 255 bytes. One regex match instead of the
per-segment checks below: a 100,000-file version is checked in milliseconds (``cpv ls``)."""


_PLAIN_NAMES: Final = re.compile(rf"(?:{_SEGMENT}\n)*")


def all_plain_names(names: list[str]) -> bool:
    """True if every one of ``names`` is a single segment that :data:`_PLAIN` accepts: one
    regex pass over a whole tree node's names (False: check them one by one, as
    :func:`path_problem` does, to say which breaks the rule and why)."""
    try:
        text = "\n".join(names) + "\n"
    except TypeError:
        return False
    # As many lines as names: a name holding a newline must not pass as two plain ones.
    return text.count("\n") == len(names) and _PLAIN_NAMES.fullmatch(text) is not None


def path_problem(path: object) -> str | None:
    """Why ``path`` breaks the path rule, or None if it is a valid relative tree path.

    Callers that know better than "hostile input" (a push naming the user's own file) use the
    reason with their own hint; everyone else calls :func:`check_relpath`.
    """
    if not isinstance(path, str):
        return f"is a {type(path).__name__}, not a string"
    if _PLAIN.fullmatch(path):
        return None
    if not path:
        return "is empty"
    if "\x00" in path:
        return "contains a NUL byte"
    if "\\" in path:
        return "contains a backslash (paths are '/'-separated)"
    if path.startswith("/"):
        return "is absolute"
    if _DRIVE.match(path):
        return "starts with a drive letter"
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            return f"has an empty, '.' or '..' segment ({segment!r})"
        if is_git_segment(segment):
            return "has a '.git' segment (it could plant Git hooks or config)"
        try:
            size = len(segment.encode("utf-8"))
        except UnicodeEncodeError:
            return "is not valid UTF-8"
        if size > MAX_SEGMENT_BYTES:
            return f"has a segment longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def is_git_segment(segment: str) -> bool:
    """True for ``.git`` in any case, and the spellings file systems fold into it."""
    return segment.lower().rstrip(". ") == ".git"


def check_relpath(path: str, *, what: str = "path") -> str:
    """Return ``path`` if it obeys the path rule, else raise UnsafePathError naming the rule."""
    problem = path_problem(path)
    if problem is not None:
        raise UnsafePathError(str(path), f"{what} {problem}")
    return path


def check_symlink_target(relpath: str, target: str) -> str:
    """A link's target on its own: relative, well-formed, not climbing out of the tree.

    This sees one link only; :func:`check_link_graph` also follows links through links.
    """
    if (
        not isinstance(target, str)
        or not target
        or target.startswith("/")
        or _DRIVE.match(target)
        or "\x00" in target
        or "\\" in target
    ):
        raise UnsafePathError(relpath, f"symlink target {target!r} is absolute or malformed")
    if any(is_git_segment(part) for part in target.split("/")):
        raise UnsafePathError(relpath, f"symlink target {target!r} has a '.git' segment")
    try:
        target.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(relpath, f"symlink target {target!r} is not valid UTF-8") from None
    depth = relpath.count("/")
    for part in target.split("/"):
        if part == "..":
            depth -= 1
        elif part not in ("", "."):
            depth += 1
        if depth < 0:
            raise UnsafePathError(relpath, f"symlink target {target!r} escapes the tree")
    return target


def check_link_graph(links: Mapping[str, str]) -> None:
    """Refuse any link that, followed through the tree's other links, leaves the tree.

    ``links`` maps each symlink's path to its target. ``x/s -> ..`` is harmless alone, but
    ``l -> x/s/../../etc/hostname`` climbs through it to outside the tree; a lexical check per
    link accepts both.

    Raises:
        UnsafePathError: naming the link, its target and why (escapes, or loops).
    """
    resolved: dict[str, list[str]] = {}
    for path in sorted(links):
        _resolve_link(path, links, resolved, hops=0)


def resolve_in_tree(path: str, links: Mapping[str, str]) -> str:
    """Where ``path`` lands inside the tree once every link on it is followed ("" = the root).

    Raises:
        UnsafePathError: it leaves the tree or loops.
    """
    resolved: dict[str, list[str]] = {}
    return "/".join(_walk(path.split("/"), [], links, resolved, origin=path, hops=0))


def _resolve_link(
    path: str, links: Mapping[str, str], resolved: dict[str, list[str]], *, hops: int
) -> list[str]:
    done = resolved.get(path)
    if done is not None:
        return done
    if hops > MAX_LINK_HOPS:
        raise UnsafePathError(path, "symlinks loop (more than 40 links on one path)")
    target = links[path]
    check_symlink_target(path, target)
    parent = path.split("/")[:-1]
    result = _walk(target.split("/"), parent, links, resolved, origin=path, hops=hops + 1)
    resolved[path] = result
    return result


def _walk(
    parts: list[str],
    base: list[str],
    links: Mapping[str, str],
    resolved: dict[str, list[str]],
    *,
    origin: str,
    hops: int,
) -> list[str]:
    current = list(base)
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if not current:
                raise UnsafePathError(
                    origin, f"symlink target {links.get(origin, origin)!r} leaves the tree "
                    "through another symlink"
                )
            current.pop()
            continue
        current.append(part)
        here = "/".join(current)
        if here in links:
            current = list(_resolve_link(here, links, resolved, hops=hops + 1))
    return current


def in_scope(scope: Iterable[str] | None) -> Callable[[str], bool]:
    """A test for "this path is one of, or under one of, ``scope``" (None: everything).

    A set lookup of the path and each of its parent folders, so a scope of 100,000 chosen
    files (a filtered pull) costs per path its depth, not the scope's length. The one test
    of scope: the service's (what a pull may remove) and the engine's (what it writes).
    """
    if scope is None:
        return lambda _rel: True
    prefixes = frozenset(s.strip("/") for s in scope)

    def inside(rel: str) -> bool:
        if rel in prefixes:
            return True
        while "/" in rel:
            rel = rel.rsplit("/", 1)[0]
            if rel in prefixes:
                return True
        return False

    return inside
