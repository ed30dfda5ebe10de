"""Small answers a workspace remembers between commands, keyed by everything they depend on.

Why: a few answers cost more to work out than the whole command that needs them. Validating
the configuration imports pydantic; compiling the ignore rules imports pathspec; together
about half of a no-op ``cpv push`` (docs/benchmarks.md, "No-op push"). Yet they depend on a
few inputs that rarely change. Each such answer is one small JSON file under the workspace's
git-ignored ``.cpv/local/``, stored with the key of the exact inputs it was worked out from
(:func:`key_of`); a different key, or an unreadable file, means "work it out again".
Recording is best effort: a workspace that cannot be written recomputes every time, as
before. Nothing here decides anything: the owner of each rule computes the answer.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cpv._version import __version__

log = logging.getLogger(__name__)


def key_of(*inputs: object) -> str:
    """A key for ``inputs`` (JSON-able values) and this cpv's version."""
    text = json.dumps([__version__, *inputs], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def file_stamp(path: str | os.PathLike[str] | None) -> list[int]:
    """``[mtime_ns, size]`` of a file holding code an answer depends on; ``[0, 0]`` if it has
    none (a zipped or frozen install, where the version alone keys the code)."""
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        st = None
    return [st.st_mtime_ns, st.st_size] if st is not None else [0, 0]


def keep_out_of_git(local: Path) -> None:
    """Give ``local`` (a workspace's ``.cpv/local``) a ``.gitignore`` of ``*``, so what cpv
    keeps there for this machine is never committed, whatever the workspace's own
    ``.gitignore`` says (a workspace made before it listed ``/.cpv/local/``).

    Raises:
        OSError: the file cannot be written.
    """
    ignore = local / ".gitignore"
    if not ignore.exists():
        ignore.write_text("*\n")


def _placed(folder: Path, key: str) -> str:
    """``key`` bound to this very folder (device and inode), not just to its path.

    A memo is trusted without validation, so it must be one this machine wrote: a repository
    can commit ``.cpv/local/config-answers.json`` (``git add -f``) with a key computed for a
    guessed path and HOME, and have a clone take its store URL or cache folder unchecked. The
    folder a clone's checkout creates has an inode nobody could predict, so such a file never
    matches and is simply worked out again (and overwritten).
    """
    st = folder.stat()
    return hashlib.sha256(f"{key}:{st.st_dev}:{st.st_ino}".encode()).hexdigest()


def recall(path: Path, key: str) -> dict[str, Any] | None:
    """The answer recorded at ``path`` under ``key``, or None (none, another key, unreadable,
    or recorded in another folder than this one: see :func:`_placed`)."""
    try:
        doc = json.loads(path.read_bytes())
        placed = _placed(path.parent, key)
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != placed:
        return None
    return doc


def record(path: Path, key: str, answer: Mapping[str, Any]) -> None:
    """Record ``answer`` at ``path`` under ``key``, atomically; failures are only logged.

    Only the file's own folder is created (``.cpv/local``), never ``.cpv`` itself: a folder
    that is not a workspace must not start looking like one.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(exist_ok=True)
        keep_out_of_git(path.parent)
        placed = _placed(path.parent, key)
        tmp.write_text(json.dumps({**answer, "key": placed}, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        log.debug("not remembering %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


__all__ = ["file_stamp", "keep_out_of_git", "key_of", "recall", "record"]
