"""Aliases: movable names (``production``, ``staging``) for version tags, with their history.

An alias is one small JSON file, ``.cpv/aliases/<name>.json``, committed on the branch like a
manifest. It holds the alias's whole log of moves: each with the tag it pointed to, who moved
it, when, and why; the last move is where it points now (a deletion is a move to ``null``, so
the log survives it). Why a file and not an annotated tag or ref:

* a commit on the branch is published by the same atomic ``git push`` as the versions and
  reaches another machine with a plain ``git pull`` (refs outside ``refs/tags`` and
  ``refs/heads`` are not fetched by default, and a moved tag needs ``--force`` on both sides);
* the log is in the file itself, readable without walking Git history, and ``git log --
  .cpv/aliases/production.json`` shows the same moves as commits;
* one file per alias: two machines moving different aliases never conflict.

An alias names a version tag, never a commit: it follows the versioning model (tags are what
``forget`` keeps and the store records), so an aliased version is always a kept version.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from cpv.errors import CPVError, FormatError, InvalidAliasError, VersioningError
from cpv.versioning.gitrepo import GitRepo
from cpv.versioning.manifest import format_timestamp, parse_timestamp
from cpv.versioning.tags import parse_line_tag

ALIAS_DIR: Final = ".cpv/aliases"
"""Folder (relative to the workspace root, posix) of ``<name>.json``, one file per alias."""

_NAME: Final = re.compile(r"[a-z][a-z0-9_-]{0,62}")
_RESERVED: Final = frozenset({"head", "model", "data"})
_HINT_DAMAGED: Final = ("the alias file is damaged or was edited by hand: restore it from Git "
                        "history (git log -- .cpv/aliases)")


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One move of an alias: to ``target`` (None: deleted), by whom, when, why."""

    target: str | None
    author: str
    at: datetime
    message: str = ""

    def to_dict(self) -> dict[str, object]:
        return {"at": format_timestamp(self.at), "author": self.author, "message": self.message,
                "target": self.target}


@dataclass(frozen=True, slots=True)
class Alias:
    """An alias and its log of moves, oldest first; ``target`` is where it points now."""

    name: str
    moves: tuple[AliasMove, ...]

    @property
    def target(self) -> str | None:
        return self.moves[-1].target if self.moves else None

    @property
    def last(self) -> AliasMove:
        return self.moves[-1]


def check_alias_name(name: str, *, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """Refuse a name that is not a plain lower-case word, or that would shadow a version.

    ``taken`` holds the Git tag and branch names an alias must not hide (``cpv pull main``
    must keep meaning the branch).

    Raises:
        InvalidAliasError: one line saying why, and what names work.
    """
    hint = "an alias is a lower-case word such as production or staging"
    if isinstance(name, str) and (parse_line_tag(name) is not None
                                  or re.fullmatch(r"v?\d+\.\d+", name)):
        raise InvalidAliasError(f"alias {name!r} would shadow the version tag {name}",
                                hint=hint)
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _RESERVED:
        raise InvalidAliasError(f"{name!r} cannot be an alias name",
                                hint=f"{hint} (letters, digits, '-' and '_'; not head, model "
                                     "or data)")
    if name in taken:
        raise InvalidAliasError(f"alias {name!r} would shadow the Git tag or branch {name!r}",
                                hint=hint)
    return name


class AliasBook:
    """The aliases of one workspace: read from the working tree, moved with one commit each."""

    def __init__(self, repo: GitRepo) -> None:
        self._repo = repo

    def _path(self, name: str) -> Path:
        return self._repo.root / ALIAS_DIR / f"{name}.json"

    def get(self, name: str) -> Alias | None:
        """The alias ``name`` (also a deleted one, whose ``target`` is None), or None."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            return None
        path = self._path(name)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise FormatError(f"cannot read {ALIAS_DIR}/{name}.json: {exc}") from exc
        return _parse(name, text)

    def all(self) -> list[Alias]:
        """Every alias that points somewhere now, by name."""
        folder = self._repo.root / ALIAS_DIR
        if not folder.is_dir():
            return []
        found = (self.get(p.stem) for p in sorted(folder.glob("*.json")))
        return [a for a in found if a is not None and a.target is not None]

    def move(self, name: str, target: str | None, *, author: str, at: datetime,
             message: str = "") -> Alias:
        """Append a move to ``name``'s log and commit it (only that file).

        Raises:
            VersioningError: HEAD is detached, or Git refused the commit (the file is put back).
        """
        if self._repo.current_branch() is None:
            raise VersioningError(
                f"cannot move alias {name}: HEAD is detached, a commit here would belong to "
                "no branch", hint="switch to a branch first, e.g. 'git switch main'")
        old = self.get(name)
        moves = (*(old.moves if old else ()), AliasMove(target, author, at, message))
        alias = Alias(name, moves)
        path = self._path(name)
        relpath = f"{ALIAS_DIR}/{name}.json"
        before = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_dump(alias), encoding="utf-8")
        what = f"-> {target}" if target is not None else "deleted"
        try:
            self._repo.commit_paths([relpath], f"cpv: alias {name} {what}"
                                    + (f"\n\n{message}" if message else ""))
        except BaseException:
            if before is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(before)
            raise
        return alias


def _dump(alias: Alias) -> str:
    doc = {"name": alias.name, "moves": [m.to_dict() for m in alias.moves]}
    return json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _parse(name: str, text: str) -> Alias:
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("name") != name:
            raise ValueError(f"it does not hold the alias {name!r}")
        moves = []
        for raw in doc["moves"]:
            target = raw["target"]
            if target is not None and parse_line_tag(target) is None:
                raise ValueError(f"{target!r} is not a version tag")
            moves.append(AliasMove(target, str(raw["author"]), parse_timestamp(raw["at"]),
                                   str(raw.get("message", ""))))
    except (ValueError, KeyError, TypeError, CPVError) as exc:
        raise FormatError(f"{ALIAS_DIR}/{name}.json: {exc}", hint=_HINT_DAMAGED) from exc
    if not moves:
        raise FormatError(f"{ALIAS_DIR}/{name}.json: no moves recorded", hint=_HINT_DAMAGED)
    return Alias(name, tuple(moves))
